"""Which trial to trust: the objective kinds and the selection rule.

Validation sets in medical imaging are small, so the trial with the best validation score is
often the one that fit the validation set by luck. The rule here picks the best objective
among trials whose generalization gap (train minus validation accuracy at the best epoch) is
within a tolerance and whose validation loss was not rising while training loss fell.

Everything is a pure function of plain trial records (``TrialRecord``), so the rule can be
tested on synthetic numbers; ``records_from_study`` turns an Optuna study into records.

``kind="pareto"`` makes the study multi-objective, (metric, max(0, gap)): the rule then only
trusts trials on the Pareto front of those two, and picks among them as above.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OBJECTIVE_KINDS = ("metric", "penalized", "pareto")


@dataclass(frozen=True)
class ObjectiveRule:
    """How a trial's summary becomes its objective value, and when a trial is trusted.

    ``kind="metric"``: the best-epoch validation metric. ``kind="penalized"``: that metric
    minus ``gap_penalty * max(0, gap - gap_tolerance)`` (plus, for a minimized metric).
    ``max_gap`` becomes an Optuna constraint (``trial.set_constraint("gap", gap - max_gap)``):
    the study keeps one objective, pruning keeps working, and samplers that know constraints
    (TPE, NSGA-II, GP) treat larger gaps as infeasible. ``kind="pareto"``: two objectives,
    the metric (its direction) and ``overfit_gap`` (minimized); Optuna cannot prune such a
    study.
    """

    metric: str = "val_accuracy"
    direction: str = "maximize"
    kind: str = "metric"
    gap_tolerance: float = 0.05
    gap_penalty: float = 1.0
    max_gap: float | None = None

    def __post_init__(self):
        if self.kind not in OBJECTIVE_KINDS:
            raise ValueError(f"objective kind {self.kind!r}: choose one of "
                             f"{', '.join(OBJECTIVE_KINDS)}")
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"direction {self.direction!r}: choose maximize or minimize")

    @classmethod
    def from_config(cls, objective: Any, direction: str) -> ObjectiveRule:
        """From a ``tunelab.config.ObjectiveConfig`` (or anything with the same fields)."""
        return cls(metric=objective.metric, direction=direction,
                   kind=getattr(objective, "kind", "metric"),
                   gap_tolerance=getattr(objective, "gap_tolerance", 0.05),
                   gap_penalty=getattr(objective, "gap_penalty", 1.0),
                   max_gap=getattr(objective, "max_gap", None))

    @property
    def multi(self) -> bool:
        return self.kind == "pareto"

    @property
    def directions(self) -> list[str]:
        """The study's directions: one, or (metric, gap) for ``pareto``."""
        return [self.direction, "minimize"] if self.multi else [self.direction]

    def value(self, summary: Mapping[str, float]) -> float:
        """The objective value of a finished trial's summary (``pareto``: the metric)."""
        metric = float(summary[f"best_{self.metric}"])
        if self.kind in ("metric", "pareto"):
            return metric
        excess = max(0.0, (gap_of(summary) or 0.0) - self.gap_tolerance)
        sign = -1.0 if self.direction == "maximize" else 1.0
        return metric + sign * self.gap_penalty * excess

    def objectives(self, summary: Mapping[str, float]) -> float | tuple[float, float]:
        """What the Optuna objective returns: ``value``, or (metric, overfit gap) for
        ``pareto``."""
        if not self.multi:
            return self.value(summary)
        return self.value(summary), overfit_gap(gap_of(summary))

    def constraint(self, summary: Mapping[str, float]) -> float | None:
        """``gap - max_gap`` (feasible when <= 0), or None without a gap limit."""
        if self.max_gap is None:
            return None
        gap = gap_of(summary)
        return 0.0 if gap is None else float(gap - self.max_gap)


def gap_of(summary: Mapping[str, Any]) -> float | None:
    """The generalization gap: train minus validation accuracy at the best epoch."""
    gap = summary.get("gap_accuracy")
    return None if gap is None or not math.isfinite(gap) else float(gap)


def overfit_gap(gap: float | None) -> float:
    """The gap as ``pareto`` minimizes it: a negative gap (validation above training
    accuracy, common early on or with dropout) is no better than none; a missing one counts
    as 0, as in ``ObjectiveRule.constraint``."""
    return max(0.0, gap or 0.0)


CHANCE_MARGIN = 0.02
CHANCE_REASON = ("chance level: validation accuracy at most the majority class's share, or "
                 f"balanced accuracy at most 1/k + {CHANCE_MARGIN:g}; never picked")


def is_chance_level(summary: Mapping[str, Any]) -> bool:
    """A trial no better than a constant guess: its best-epoch validation accuracy is at most
    the validation split's majority share (``summary["majority_share"]``, written by the trial
    lifecycle), or its balanced accuracy at most ``1/k + 0.02``. On BreastMNIST's 73:27
    validation split a model that always says "benign" scores 0.73 accuracy."""
    acc, share = summary.get("best_val_accuracy"), summary.get("majority_share")
    if acc is not None and share is not None and float(acc) <= float(share) + 1e-9:
        return True
    bal, k = summary.get("best_val_balanced_accuracy"), summary.get("n_classes")
    return bool(bal is not None and k and float(bal) <= 1.0 / float(k) + CHANCE_MARGIN)


def fold_std_of(summary: Mapping[str, Any], metric: str) -> float | None:
    """Standard deviation of the metric across cross-validation folds, when there were folds."""
    for key in (f"fold_std_{metric}", f"std_{metric}", "fold_std"):
        if summary.get(key) is not None:
            return float(summary[key])
    return None


@dataclass(frozen=True)
class TrialRecord:
    """What selection needs to know about one finished trial."""

    number: int
    value: float  # the objective value the study optimized
    metric: float | None = None  # the best-epoch validation metric itself
    gap: float | None = None  # train minus validation accuracy at the best epoch
    gap_loss: float | None = None  # validation minus train loss at the best epoch
    overfitting: bool = False  # validation loss rose over the last epochs while train fell
    fold_std: float | None = None
    feasible: bool = True  # every Optuna constraint <= 0
    chance_level: bool = False  # no better than a constant guess (is_chance_level)
    best_epoch: int | None = None
    epochs_trained: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    history: Mapping[str, Sequence[float]] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def flags(self) -> list[str]:
        out = []
        if self.overfitting:
            out.append("val-loss-rising")
        if not self.feasible:
            out.append("infeasible")
        if self.chance_level:
            out.append("chance-level")
        return out


@dataclass(frozen=True)
class Verdict:
    record: TrialRecord
    rank: int  # 1 = best objective
    eligible: bool
    chosen: bool
    reason: str
    on_front: bool = False  # pareto: not dominated in (metric, gap) by another trial


@dataclass(frozen=True)
class Selection:
    verdicts: list[Verdict]
    rule: ObjectiveRule
    choice: Any = None  # selection_methods.MethodChoice when a method re-ranked the rule's pick

    @property
    def chosen(self) -> TrialRecord | None:
        return next((v.record for v in self.verdicts if v.chosen), None)

    @property
    def best_by_objective(self) -> TrialRecord | None:
        return self.verdicts[0].record if self.verdicts else None

    def explanation(self) -> str:
        if not self.verdicts:
            return "no complete trial: nothing to select"
        chosen = self.chosen
        front = "Pareto-front " if self.rule.multi else ""
        choice = self.choice
        if chosen is not None and choice is not None and choice.chosen is not None \
                and choice.chosen.number == chosen.number and choice.confirmed:
            c = choice.candidates[0].confirmation
            spread = f" +/- {c.sd:.4f}" if c.sd is not None else ""
            return (f"selected trial {chosen.number} by {choice.method}: {choice.reason}; "
                    f"confirmed {self.rule.metric} {c.mean:.4f}{spread} over {c.n} "
                    f"{c.kind} run(s) (search score {_num(chosen.value)})")
        if chosen is not None and choice is not None and choice.chosen is not None \
                and choice.chosen.number == chosen.number:
            return (f"selected trial {chosen.number} by {choice.method}: {choice.reason} "
                    f"({self.rule.metric} {_num(chosen.metric)}, gap {_num(chosen.gap)})")
        if chosen is None:
            return (f"no trial qualifies: every complete {front}trial has a gap above "
                    f"{self.rule.gap_tolerance:g}, rising validation loss, a violated "
                    "constraint or chance-level accuracy (see `tunelab best` for each "
                    "trial's reason; raise objective.gap_tolerance, train longer or with "
                    "more regularization, or pass --force to take the best objective anyway)")
        top = self.verdicts[0].record
        text = (f"selected {front}trial {chosen.number}: {self.rule.metric} "
                f"{_num(chosen.metric)}, gap {_num(chosen.gap)} <= tolerance "
                f"{self.rule.gap_tolerance:g}, no rising validation loss")
        if top.number != chosen.number:
            text += (f"; trial {top.number} has the best objective ({_num(top.value)}) but "
                     f"was not chosen: {self.verdicts[0].reason}")
        return text


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def rank(records: Iterable[TrialRecord], direction: str) -> list[TrialRecord]:
    """Best objective first; ties go to the smaller gap, then the lower trial number."""
    sign = -1.0 if direction == "maximize" else 1.0
    finite = [r for r in records if r.value is not None and math.isfinite(r.value)]
    return sorted(finite, key=lambda r: (sign * r.value,
                                         r.gap if r.gap is not None else math.inf, r.number))


def dominated_by(records: Sequence[TrialRecord], direction: str) -> dict[int, int]:
    """Trials off the Pareto front of (metric, overfit gap): trial number -> the number of
    the best-ranked trial that dominates it (at least as good in both, better in one). The
    metric is ``record.value`` in ``direction``; ``overfit_gap(record.gap)`` is minimized."""
    sign = -1.0 if direction == "maximize" else 1.0

    def point(r: TrialRecord) -> tuple[float, float]:
        return sign * r.value, overfit_gap(r.gap)

    out: dict[int, int] = {}
    for r in records:
        a = point(r)
        for other in records:
            b = point(other)
            if b[0] <= a[0] and b[1] <= a[1] and b != a:
                out[r.number] = other.number
                break
    return out


def select(records: Iterable[TrialRecord], rule: ObjectiveRule) -> Selection:
    """Apply the rule: the best-ranked trial that is feasible, has a gap within the
    tolerance and is not flagged as overfitting (``pareto``: and lies on the Pareto front).
    Every trial gets a verdict and a reason."""
    verdicts: list[Verdict] = []
    chosen: TrialRecord | None = None
    ranked = rank(records, rule.direction)
    dominated = dominated_by(ranked, rule.direction) if rule.multi else {}
    for i, record in enumerate(ranked, start=1):
        problems = []
        if record.chance_level:
            problems.append(CHANCE_REASON)
        if record.number in dominated:
            problems.append(f"off the Pareto front (trial {dominated[record.number]} has a "
                            f"{rule.metric} at least as good and an overfitting gap at least "
                            "as small)")
        if not record.feasible:
            problems.append(f"infeasible: gap {_num(record.gap)} above max_gap "
                            f"{rule.max_gap:g}" if rule.max_gap is not None
                            else "infeasible: violates a constraint")
        if record.gap is not None and record.gap > rule.gap_tolerance:
            problems.append(f"gap {record.gap:.4f} > tolerance {rule.gap_tolerance:g}")
        if record.overfitting:
            problems.append("validation loss rose over the last epochs while training "
                            "loss fell")
        eligible = not problems
        if eligible and chosen is None:
            chosen = record
            reason = ("best objective among trials within the gap tolerance, not overfitting"
                      + (", on the Pareto front" if rule.multi else ""))
            if record.gap is None:
                reason += " (no gap recorded for this trial)"
        elif eligible:
            reason = f"eligible, but trial {chosen.number} ranks higher"  # type: ignore[union-attr]
        else:
            reason = "; ".join(problems)
        verdicts.append(Verdict(record, i, eligible, record is chosen, reason,
                                rule.multi and record.number not in dominated))
    return Selection(verdicts, rule)


# -- from an Optuna study ---------------------------------------------------------------------
def record_from_summary(number: int, value: float, summary: Mapping[str, Any], metric: str,
                        *, constraints: Mapping[str, float] | None = None,
                        params: Mapping[str, Any] | None = None,
                        history: Mapping[str, Sequence[float]] | None = None,
                        extra: Mapping[str, Any] | None = None) -> TrialRecord:
    best_metric = summary.get(f"best_{metric}")
    return TrialRecord(
        number=number, value=value,
        metric=None if best_metric is None else float(best_metric),
        gap=gap_of(summary), gap_loss=summary.get("gap_loss"),
        overfitting=bool(summary.get("overfitting", 0.0)),
        chance_level=is_chance_level(summary),
        fold_std=fold_std_of(summary, metric),
        feasible=all(v <= 0 for v in (constraints or {}).values()),
        best_epoch=_int(summary.get("best_epoch")),
        epochs_trained=_int(summary.get("epochs_trained")),
        params=dict(params or {}), history=history or {},
        extra={"summary": dict(summary), **(extra or {})})


def record_from_trial(trial: Any, metric: str) -> TrialRecord:
    """A ``TrialRecord`` from an Optuna ``FrozenTrial`` written by ``tunelab``'s objective."""
    attrs = trial.user_attrs
    return record_from_summary(
        trial.number, trial.values[0], attrs.get("summary") or {}, metric,
        constraints=getattr(trial, "constraints", {}),
        params=attrs.get("hparams", trial.params),  # fixed values too, not only suggested
        history=attrs.get("history") or {},
        extra={k: attrs.get(k) for k in ("mlflow_run_id", "seed", "checkpoint", "n_params",
                                          "confirmations")})


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def records_from_study(study: Any, metric: str) -> list[TrialRecord]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    records = [record_from_trial(t, metric) for t in trials if t.values]
    # confirmation runs (search/confirm.py) live in the study's user attributes, not trials
    attrs = study.user_attrs
    return [dataclasses.replace(r, extra={**r.extra, "confirmations": attrs[key]})
            if (key := f"confirmations:{r.number}") in attrs else r for r in records]


def select_from_study(study: Any, rule: ObjectiveRule) -> Selection:
    """The selection rule over a study's complete trials."""
    return select(records_from_study(study, rule.metric), rule)
