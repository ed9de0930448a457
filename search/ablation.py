"""One-knob ablations around a trial: the labs' "what is the effect of batch norm? of dropout?
of the learning rate? of more feature maps?", answered by training the trial again with one
setting changed at a time, every variant with the same seeds, and comparing the curves.

Everything here is a pure function of parameters and per-epoch histories, so it is tested on
synthetic numbers: which variants a knob means (``variants_for``), the seeds
(``ablation_seeds``), the curves' mean and band over seeds (``curve_band``), the table per
knob (``knob_table``) and the sentence that states each effect with its spread
(``KnobTable.statement``). Training and logging are the caller's (``tunelab ablate``).

Knobs, as the labs turn them (a knob not searched by the study starts from the model's or the
training's default; ``NAME=V1,V2`` gives any parameter's values explicitly)::

    batch_norm, dense_batch_norm  on / off
    dropout                       0, 0.2, 0.4
    learning_rate                 x10 and /10
    n_base                        halved and doubled
    augmentation                  on (the trial's own, else AUGMENTATION_ON) / off
    any searched parameter        the values of its dimension (a float range: its two ends)
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tunelab.models.data.augment import AUGMENT_KEYS
from tunelab.models.dense_widths import encode

from .conditional import FAMILY_KEY
from .space import Choice, FloatRange, IntRange, SearchSpace, candidate_values
from .summary import summarize

DEFAULT_N_SEEDS = 3
DROPOUTS = (0.0, 0.2, 0.4)
LR_FACTOR = 10.0
#: The augmentation turned on when the trial itself does not augment: the labs'
#: ImageDataGenerator settings (degrees and fractions, as in ``models/data/augment.py``).
AUGMENTATION_ON = {"rotation": 10.0, "width_shift": 0.1, "height_shift": 0.1, "zoom": 0.1,
                   "horizontal_flip": True}
AUGMENTATION = "augmentation"
FLAGS = ("batch_norm", "dense_batch_norm")
NAMED_KNOBS = (*FLAGS, "dropout", "learning_rate", "n_base", AUGMENTATION)
BASE_LABEL = "base"


class AblationError(ValueError):
    """A knob that cannot be ablated on this trial; the message says why and what can."""


# -- which variants a knob means ------------------------------------------------------------
@dataclass(frozen=True)
class KnobRequest:
    """A knob as asked: ``dropout`` or ``optimizer=adam,sgd`` (values as text)."""

    name: str
    values: tuple[str, ...] | None = None

    @property
    def title(self) -> str:
        return self.name if self.values is None else f"{self.name}={','.join(self.values)}"


def parse_knob(text: str) -> KnobRequest:
    name, eq, values = text.partition("=")
    name = name.strip()
    if not name:
        raise AblationError(f"knob {text!r}: give a name, e.g. dropout or optimizer=adam,sgd")
    if not eq:
        return KnobRequest(name)
    parts = tuple(v.strip() for v in values.split(",") if v.strip())
    if not parts:
        raise AblationError(f"knob {text!r}: no values after '='; e.g. {name}=0.1,0.3")
    return KnobRequest(name, parts)


@dataclass(frozen=True)
class Variant:
    """The trial's parameters with ``change`` applied (``change`` empty: the base itself)."""

    label: str
    change: Mapping[str, Any]
    params: Mapping[str, Any]

    @property
    def is_base(self) -> bool:
        return not self.change

    @property
    def key(self) -> str:
        """Equal parameters, equal key: a variant shared by several knobs trains once."""
        return json.dumps(dict(self.params), sort_keys=True, default=str)


def coerce(text: str, like: Any) -> Any:
    """A value given as text, typed like the base value (bool, int, float or str)."""
    low = text.strip().lower()
    if isinstance(like, bool) or (like is None and low in ("true", "false")):
        if low in ("true", "on", "yes", "1"):
            return True
        if low in ("false", "off", "no", "0"):
            return False
        raise AblationError(f"{text!r} is not true or false")
    if isinstance(like, str):
        return text.strip()
    kinds = ((int, float) if isinstance(like, numbers.Integral) else
             (float,) if isinstance(like, numbers.Real) else (int, float))
    for kind in kinds:
        try:
            return kind(text)
        except ValueError:
            continue
    return text.strip()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def param_key(params: Mapping[str, Any], name: str) -> str:
    """The key holding hyperparameter ``name`` in a trial's parameters: the family's own
    (``lenet.n_base``) in a family search, else the shared name."""
    family = params.get(FAMILY_KEY)
    if family is not None and f"{family}.{name}" in params:
        return f"{family}.{name}"
    return name


def base_value(params: Mapping[str, Any], defaults: Mapping[str, Any], name: str) -> Any:
    key = param_key(params, name)
    if key in params:
        return params[key]
    if name not in defaults:
        raise AblationError(f"knob {name!r}: not a hyperparameter of this trial's model or its "
                            f"training (it has: {', '.join(sorted(defaults))})")
    return defaults[name]


def _variant(params: Mapping[str, Any], change: Mapping[str, Any], label: str) -> Variant:
    new = dict(params)
    for name, value in change.items():
        new[param_key(params, name)] = encode(value)
    return Variant(label, dict(change), new)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (type(a) is type(b) and a == b)
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return encode(a) == encode(b)


def _dimension_values(space: SearchSpace | None, params: Mapping[str, Any], name: str):
    if space is None:
        return None
    dim = space.dimensions.get(param_key(params, name)) or space.dimensions.get(name)
    if isinstance(dim, (Choice, IntRange, FloatRange)):
        return candidate_values(dim)
    return None


def variants_for(knob: KnobRequest, params: Mapping[str, Any], defaults: Mapping[str, Any],
                 space: SearchSpace | None = None) -> list[Variant]:
    """The base variant first, then one variant per other value of the knob.

    ``params``: the trial's parameters (as Optuna stores them, fixed ones included);
    ``defaults``: the model's resolved hyperparameters and the training defaults, for knobs
    the study did not search; ``space``: the study's space, for a searched parameter asked
    without values. A value equal to the base's is the base (trained once)."""
    base = Variant(BASE_LABEL, {}, dict(params))
    if knob.name == AUGMENTATION:
        if knob.values is not None:
            raise AblationError("knob augmentation: on/off only; to try other values give an "
                                "augmentation key, e.g. rotation=0,10,20")
        current = {k: base_value(params, defaults, k) for k in AUGMENT_KEYS
                   if k in defaults or param_key(params, k) in params}
        on = {k: v for k, v in current.items() if v}
        if on:
            off = {k: (False if isinstance(v, bool) else 0.0) for k, v in on.items()}
            return [base, _variant(params, off, "augmentation off")]
        return [base, _variant(params, AUGMENTATION_ON, "augmentation on")]
    if knob.name == FAMILY_KEY:
        raise AblationError("knob model: the family is not a one-knob change; run a study "
                            "that searches it (model: [lenet, alexnet, ...])")
    value = base_value(params, defaults, knob.name)
    if knob.values is not None:
        values = [coerce(v, value) for v in knob.values]
    elif knob.name in FLAGS or isinstance(value, bool):
        values = [not value]
    elif knob.name == "dropout":
        values = list(DROPOUTS)
    elif knob.name == "learning_rate":
        values = [float(value) * LR_FACTOR, float(value) / LR_FACTOR]
    elif knob.name == "n_base":
        values = [max(1, int(value) // 2), int(value) * 2]
    else:
        values = _dimension_values(space, params, knob.name)
        if values is None:
            raise AblationError(
                f"knob {knob.name!r}: the study does not search it, so its values are not "
                f"known; give them, e.g. {knob.name}=A,B (named knobs: "
                f"{', '.join(NAMED_KNOBS)})")
    out = [base]
    for v in values:
        if _equal(v, value) or any(_equal(v, o.change[knob.name]) for o in out[1:]):
            continue
        label = f"{knob.name}={_short(v)}"
        if knob.name == "learning_rate" and knob.values is None:
            label += " (x10)" if v > value else " (/10)"
        out.append(_variant(params, {knob.name: v}, label))
    if len(out) == 1:
        raise AblationError(f"knob {knob.title}: every value equals the trial's own "
                            f"({_short(value)}); nothing to compare")
    return out


def ablation_seeds(trial_seed: int, n: int = DEFAULT_N_SEEDS) -> list[int]:
    """The seeds every variant trains with: the trial's own seed first (the base variant's
    first seed retrains the trial itself), then the next ones."""
    if n < 1:
        raise AblationError(f"--n-seeds {n}: must be >= 1")
    return [int(trial_seed) + i for i in range(n)]


# -- what the curves say --------------------------------------------------------------------
@dataclass(frozen=True)
class SeedRun:
    """One variant trained with one seed: its per-epoch history and summary."""

    seed: int
    history: Mapping[str, Sequence[float]]
    summary: Mapping[str, float] = field(default_factory=dict)
    run_id: str | None = None


def seed_run(seed: int, history: Mapping[str, Sequence[float]], metric: str, direction: str,
             run_id: str | None = None) -> SeedRun:
    """The seed's summary as a trial's (``search.summary.summarize``); empty when the history
    has no finite value of the metric (a variant that diverged)."""
    try:
        summary = summarize(history, metric, direction)
    except (KeyError, ValueError):
        summary = {}
    return SeedRun(seed, {k: [float(v) for v in vs] for k, vs in history.items()}, summary,
                   run_id)


def curve_band(histories: Sequence[Mapping[str, Sequence[float]]], key: str,
               ) -> tuple[list[float], list[float]]:
    """Mean and population standard deviation over seeds at every epoch (epoch i over the
    seeds that trained that long)."""
    series = [list(h[key]) for h in histories if h.get(key)]
    n = max((len(s) for s in series), default=0)
    mean, std = [], []
    for i in range(n):
        values = [s[i] for s in series if i < len(s)]
        m = sum(values) / len(values)
        mean.append(m)
        std.append(math.sqrt(sum((v - m) ** 2 for v in values) / len(values)))
    return mean, std


def first_epoch_reaching(values: Sequence[float], target: float) -> int | None:
    """1-based epoch at which ``values`` first reach ``target`` (None: never)."""
    for i, v in enumerate(values, start=1):
        if v >= target - 1e-12:
            return i
    return None


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None below two values."""
    if len(values) < 2:
        return None
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


@dataclass(frozen=True)
class Row:
    label: str
    is_base: bool
    seeds: tuple[int, ...]
    best: float | None
    best_sd: float | None
    final: float | None
    final_sd: float | None
    gap: float | None
    reach_epoch: float | None  # mean over the seeds that reach the target
    reach_seeds: int  # how many seeds reach it
    effect: float | None  # mean paired (same seed) difference of best metric vs the base
    effect_sd: float | None
    per_seed: Mapping[int, Mapping[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class KnobTable:
    knob: str
    metric: str
    direction: str
    target: float | None  # the base variant's final training accuracy, mean over seeds
    rows: list[Row]

    HEADER = ("variant", "seeds", "best {m}", "sd", "final {m}", "sd", "gap acc",
              "epoch >= base acc", "effect", "sd")

    def header(self) -> list[str]:
        return [h.format(m=self.metric) for h in self.HEADER]

    def cells(self) -> list[list[Any]]:
        out = []
        for r in self.rows:
            reach = (None if r.reach_epoch is None else
                     f"{r.reach_epoch:.3g}" + ("" if r.reach_seeds == len(r.seeds) else
                                              f" ({r.reach_seeds}/{len(r.seeds)} seeds)"))
            if r.reach_epoch is None and self.target is not None:
                reach = "never"
            out.append([r.label, len(r.seeds), r.best, r.best_sd, r.final, r.final_sd, r.gap,
                        reach, "" if r.is_base else r.effect, "" if r.is_base else r.effect_sd])
        return out

    @property
    def base(self) -> Row:
        return next(r for r in self.rows if r.is_base)

    def statement(self) -> str:
        """Each variant's effect with its spread across seeds, one clause per variant:
        ``batch_norm: batch_norm=True: +0.031 val_accuracy (best epoch), 0.012 across 3 seeds;
        reaches the base's final training accuracy 0.950 at epoch 8 instead of 50``."""
        parts = self.statement_lines()
        return f"{self.knob}: " + "; ".join(parts) if parts else f"{self.knob}: no variant"

    def statement_lines(self) -> list[str]:
        """The statement's clauses, one per variant other than the base."""
        base = self.base
        parts = []
        for r in self.rows:
            if r.is_base:
                continue
            text = f"{r.label}: "
            if r.effect is None:
                text += f"no {self.metric} to compare"
            else:
                text += f"{r.effect:+.3f} {self.metric} (best epoch)"
                text += (f", {r.effect_sd:.3f} across {len(r.seeds)} seeds"
                         if r.effect_sd is not None else ", one seed: no spread")
            if self.target is not None:
                text += f"; reaches the base's final training accuracy {self.target:.3f} "
                text += (f"at epoch {_epoch(r.reach_epoch)}" if r.reach_epoch is not None
                         else "in none of its epochs")
                text += (f" instead of {_epoch(base.reach_epoch)}"
                         if base.reach_epoch is not None else "")
            parts.append(text)
        return parts

    def to_dict(self) -> dict[str, Any]:
        return {"knob": self.knob, "metric": self.metric, "direction": self.direction,
                "base_final_train_accuracy": self.target, "statement": self.statement(),
                "rows": [{"variant": r.label, "base": r.is_base, "seeds": list(r.seeds),
                          f"best_{self.metric}": r.best, f"best_{self.metric}_sd": r.best_sd,
                          f"final_{self.metric}": r.final,
                          f"final_{self.metric}_sd": r.final_sd, "gap_accuracy": r.gap,
                          "epoch_reaching_base_accuracy": r.reach_epoch,
                          "seeds_reaching_base_accuracy": r.reach_seeds,
                          "effect": r.effect, "effect_sd": r.effect_sd,
                          "per_seed": {str(s): dict(v) for s, v in r.per_seed.items()}}
                         for r in self.rows]}


def _epoch(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def knob_table(knob: str, results: Sequence[tuple[Variant, Sequence[SeedRun]]], metric: str,
               direction: str) -> KnobTable:
    """The table of one knob. ``results``: (variant, its seed runs), the base first.

    best / final: the validation metric at the best epoch / the last epoch (each seed's
    summary, as its run logs it), mean and sample sd over seeds; gap: train minus validation
    accuracy at the best epoch, mean; reach: the first epoch at which a seed's training
    accuracy reaches the base variant's final training accuracy with the same seed, mean over
    the seeds that reach it (``target``, shown, is the base's final accuracy averaged over
    seeds); effect: the variant's best metric minus the base's, paired by seed, mean and
    sample sd."""
    base_runs = next((runs for v, runs in results if v.is_base), None)
    if base_runs is None:
        raise AblationError(f"knob {knob}: no base variant among the results")
    finals = {r.seed: r.history["accuracy"][-1] for r in base_runs if r.history.get("accuracy")}
    target = _mean(list(finals.values()))
    base_best = {r.seed: r.summary.get(f"best_{metric}") for r in base_runs}
    rows = []
    for variant, runs in results:
        per_seed: dict[int, dict[str, float | None]] = {}
        for r in runs:
            reach = (first_epoch_reaching(r.history.get("accuracy") or [], finals[r.seed])
                     if r.seed in finals else None)
            best = r.summary.get(f"best_{metric}")
            paired = base_best.get(r.seed)
            per_seed[r.seed] = {f"best_{metric}": best,
                                f"final_{metric}": r.summary.get(f"final_{metric}"),
                                "gap_accuracy": r.summary.get("gap_accuracy"),
                                "epoch_reaching_base_accuracy": reach,
                                "effect": (None if best is None or paired is None
                                           else best - paired)}

        def column(name: str, seeds: dict = per_seed) -> list[float]:
            return [v[name] for v in seeds.values() if v[name] is not None]

        reached = column("epoch_reaching_base_accuracy")
        effects = column("effect")
        rows.append(Row(
            label=variant.label, is_base=variant.is_base, seeds=tuple(r.seed for r in runs),
            best=_mean(column(f"best_{metric}")), best_sd=_sd(column(f"best_{metric}")),
            final=_mean(column(f"final_{metric}")), final_sd=_sd(column(f"final_{metric}")),
            gap=_mean(column("gap_accuracy")), reach_epoch=_mean(reached),
            reach_seeds=len(reached), effect=_mean(effects), effect_sd=_sd(effects),
            per_seed=per_seed))
    return KnobTable(knob, metric, direction, target, rows)


def figure_series(results: Sequence[tuple[Variant, Sequence[SeedRun]]],
                  keys: Sequence[str] = ("accuracy", "val_accuracy", "loss", "val_loss"),
                  ) -> list[dict[str, Any]]:
    """What the ablation figure draws, as plain data: per variant its label, whether it is
    the base, and per history key the mean and band (population sd) over seeds."""
    out = []
    for variant, runs in results:
        histories = [r.history for r in runs]
        curves = {}
        for key in keys:
            mean, std = curve_band(histories, key)
            if mean:
                curves[key] = {"mean": mean, "std": std}
        out.append({"label": variant.label, "base": variant.is_base, "n_seeds": len(runs),
                    "curves": curves})
    return out


def report_section(tables: Sequence[KnobTable], trial: int) -> str:
    """Markdown for a study report: the statement and the table of every knob."""
    lines = [f"## Ablations around trial {trial}", ""]
    for t in tables:
        lines += [f"### {t.knob}", "", t.statement(), "",
                  "| " + " | ".join(t.header()) + " |",
                  "|" + "---|" * len(t.header())]
        for row in t.cells():
            lines.append("| " + " | ".join("" if c is None else
                                          (f"{c:.4f}" if isinstance(c, float) else str(c))
                                          for c in row) + " |")
        lines.append("")
    return "\n".join(lines)
