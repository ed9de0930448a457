"""Selection methods that estimate generalization instead of trusting the luckiest score.

With 78 validation images, the best of 60-140 noisy validation scores is mostly luck (the
winner's curse): the trial on top is the one whose noise was largest. The methods here are
pure functions of trial records (``selection.TrialRecord``) and of *confirmations* (fresh
measurements of the top candidates, made after the search by ``search/confirm.py``):

``best_validation``
    the highest objective value (what a bare Optuna study returns). Its estimate is that
    value, which is biased upwards by the maximum over trials.
``gap_penalized``
    objective minus ``gap_penalty * max(0, gap - gap_tolerance)``: trials that fit their
    training set far better than the validation set rank lower.
``confirm_mean`` / ``confirm_lcb``
    the ``top`` candidates by objective are retrained with fresh seeds (``kind="seeds"``, the
    same train / validation split) or by k-fold cross-validation on train + validation
    (``kind="cv"``) and ranked by the mean of those *fresh* scores, or by the lower confidence
    bound ``mean - z * sd / sqrt(n)``. The search score is left out of both: it is the one
    biased by the maximum. The estimate is the fresh mean.

Chance-level and infeasible trials are never candidates. A method whose candidates have no
confirmation yet falls back to ``best_validation`` and says so ("not confirmed").
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .selection import ObjectiveRule, Selection, TrialRecord, records_from_study, select

SELECTION_METHODS = ("best_validation", "gap_penalized", "confirm_mean", "confirm_lcb")
STUDY_METHODS = ("rule", *SELECTION_METHODS)  # rule: selection.select alone
CONFIRM_KINDS = ("seeds", "cv")


@dataclass(frozen=True)
class Confirmation:
    """Fresh scores of one candidate: one per seed rerun (``seeds``) or per fold (``cv``)."""

    trial: int
    scores: tuple[float, ...]
    kind: str = "seeds"

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.scores) if self.n >= 2 else None

    def lcb(self, z: float = 1.0, fallback_sd: float = 0.0) -> float | None:
        """``mean - z * sd / sqrt(n)``; ``fallback_sd`` where one score gives no spread."""
        if not self.scores:
            return None
        sd = self.sd if self.sd is not None else fallback_sd
        return self.mean - z * sd / math.sqrt(self.n)  # type: ignore[operator]


@dataclass(frozen=True)
class Candidate:
    record: TrialRecord
    score: float  # what the method ranks by (higher is better, sign applied)
    confirmation: Confirmation | None = None


@dataclass(frozen=True)
class MethodChoice:
    method: str
    chosen: TrialRecord | None
    estimate: float | None  # what tunelab says the pick will score on unseen images
    candidates: list[Candidate] = field(default_factory=list)  # best first
    reason: str = ""
    confirmed: bool = False

    @property
    def members(self) -> list[int]:
        """The ranked candidates' trial numbers (an ensemble takes the first few)."""
        return [c.record.number for c in self.candidates]


def eligible(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """Complete, finite, feasible and above chance level."""
    return [r for r in records if r.value is not None and math.isfinite(r.value)
            and r.feasible and not r.chance_level]


def _sign(rule: ObjectiveRule) -> float:
    return 1.0 if rule.direction == "maximize" else -1.0


def top_candidates(records: Iterable[TrialRecord], rule: ObjectiveRule, k: int,
                   ) -> list[TrialRecord]:
    """The ``k`` eligible trials with the best objective (ties: lower trial number)."""
    sign = _sign(rule)
    return sorted(eligible(records), key=lambda r: (-sign * r.value, r.number))[:k]


def penalized_value(record: TrialRecord, rule: ObjectiveRule) -> float:
    excess = max(0.0, (record.gap or 0.0) - rule.gap_tolerance)
    return _sign(rule) * record.value - rule.gap_penalty * excess


def choose(records: Iterable[TrialRecord], method: str, rule: ObjectiveRule, *,
           confirmations: Mapping[int, Confirmation] | None = None, top: int = 3,
           z: float = 1.0) -> MethodChoice:
    """Apply ``method`` (one of ``SELECTION_METHODS``) to the records."""
    if method not in SELECTION_METHODS:
        raise ValueError(f"selection method {method!r}: choose one of "
                         f"{', '.join(SELECTION_METHODS)}")
    records = list(records)
    pool = eligible(records)
    sign = _sign(rule)
    if not pool:
        return MethodChoice(method, None, None, [], "no eligible trial (complete, feasible, "
                            "above chance level)")
    if method == "gap_penalized":
        ranked = sorted(pool, key=lambda r: (-penalized_value(r, rule), r.number))
        cands = [Candidate(r, penalized_value(r, rule)) for r in ranked]
        best = cands[0]
        return MethodChoice(method, best.record, best.record.value, cands,
                            f"best {rule.metric} minus {rule.gap_penalty:g} x gap above "
                            f"{rule.gap_tolerance:g}")
    ranked = sorted(pool, key=lambda r: (-sign * r.value, r.number))
    if method == "best_validation":
        cands = [Candidate(r, sign * r.value) for r in ranked]
        return MethodChoice(method, ranked[0], ranked[0].value, cands,
                            f"best {rule.metric} of {len(pool)} eligible trials")
    confirmations = confirmations or {}
    heads = ranked[:top]
    confirmed = [(r, confirmations[r.number]) for r in heads
                 if r.number in confirmations and confirmations[r.number].scores]
    if not confirmed:
        cands = [Candidate(r, sign * r.value) for r in ranked]
        return MethodChoice(method, ranked[0], ranked[0].value, cands,
                            f"not confirmed: no confirmation runs of the top {top}; best "
                            f"{rule.metric} instead")
    sds = [c.sd for _, c in confirmed if c.sd is not None]
    pooled = math.sqrt(statistics.fmean(s * s for s in sds)) if sds else 0.0

    def score(c: Confirmation) -> float:
        if method == "confirm_mean":
            return sign * c.mean  # type: ignore[operator]
        # lower bound of a maximized score, upper bound of a minimized one
        sd = c.sd if c.sd is not None else pooled
        return sign * c.mean - z * sd / math.sqrt(c.n)  # type: ignore[operator]

    cands = sorted((Candidate(r, score(c), c) for r, c in confirmed),
                   key=lambda c: (-c.score, c.record.number))
    best = cands[0]
    kind = best.confirmation.kind  # type: ignore[union-attr]
    what = "fresh seeds" if kind == "seeds" else "cross-validation folds"
    by = "mean" if method == "confirm_mean" else f"lower bound (mean - {z:g} sd/sqrt(n))"
    return MethodChoice(method, best.record, best.confirmation.mean, cands,  # type: ignore
                        f"best {by} of {rule.metric} over {best.confirmation.n} "  # type: ignore
                        f"{what} among the top {len(heads)} ({len(confirmed)} confirmed)",
                        confirmed=True)


def confirmations_from_records(records: Iterable[TrialRecord]) -> dict[int, Confirmation]:
    """Confirmations kept in the records (``extra["confirmations"]``: a list of
    ``{"kind", "index", "score", ...}`` written by ``search/confirm.py``). A trial confirmed
    with both kinds (``confirm_kind`` changed between two confirmations) is ranked by the
    runs of the kind stored last."""
    out = {}
    for r in records:
        runs = r.extra.get("confirmations") or []
        if runs:
            latest = runs[-1].get("kind", "seeds")
            runs = [c for c in runs if c.get("kind", "seeds") == latest]
        scores = tuple(float(c["score"]) for c in runs
                       if c.get("score") is not None and math.isfinite(c["score"]))
        if scores:
            out[r.number] = Confirmation(r.number, scores, runs[0].get("kind", "seeds"))
    return out


def ensemble_mean(probabilities: Sequence[Sequence[Sequence[float]]]):
    """Averaged class probabilities of an ensemble's members, ``(members, N, k)`` ->
    ``(N, k)``."""
    import numpy as np

    stacked = np.asarray(probabilities, dtype="float64")
    return stacked.mean(axis=0)


# -- on a study: the rule's verdicts, re-ranked by a method ------------------------------
def trusted_pool(selection: Selection) -> list[TrialRecord]:
    """The records the rule trusts (gap within tolerance, no rising validation loss, above
    chance), or every eligible record when it trusts none."""
    trusted = [v.record for v in selection.verdicts if v.eligible]
    return trusted or eligible(v.record for v in selection.verdicts)


def select_by_method(records: Iterable[TrialRecord], rule: ObjectiveRule, method: str = "rule",
                     *, top: int = 3, z: float = 1.0) -> Selection:
    """``selection.select`` (verdicts and reasons for every trial), then ``method`` over the
    trials it trusts (every eligible trial when it trusts none). A confirmation method
    without confirmations keeps the rule's pick and says "not confirmed"; when the rule
    trusts no trial (on a small lab set every gap may exceed the tolerance), it takes the
    best eligible objective instead of no pick, and says so."""
    base = select(records, rule)
    if method == "rule" or rule.multi:
        return base
    pool = trusted_pool(base)
    choice = choose(pool, method, rule, confirmations=confirmations_from_records(pool),
                    top=top, z=z)
    if choice.chosen is None or (method.startswith("confirm") and not choice.confirmed
                                 and base.chosen is not None):
        return dataclasses.replace(base, choice=choice)
    # (not confirmed while the rule trusts no trial: the method's fallback, the best eligible
    # objective, rather than no pick at all; its reason says "not confirmed")
    number = choice.chosen.number
    verdicts = []
    for v in base.verdicts:
        if v.record.number == number:
            v = dataclasses.replace(v, chosen=True, eligible=True, reason=choice.reason)
        elif v.chosen:
            v = dataclasses.replace(v, chosen=False,
                                    reason=f"best by the rule, but {method} prefers trial "
                                           f"{number}")
        verdicts.append(v)
    return Selection(verdicts, rule, choice)


def select_study(study: Any, rule: ObjectiveRule, method: str = "rule", *, top: int = 3,
                 z: float = 1.0) -> Selection:
    return select_by_method(records_from_study(study, rule.metric), rule, method, top=top, z=z)


def confirmation_text(record: TrialRecord) -> str:
    """What ``tunelab best`` shows per candidate: mean +/- sd (n, kind) or "not confirmed"."""
    conf = confirmations_from_records([record]).get(record.number)
    if conf is None:
        return "not confirmed"
    sd = f" +/- {conf.sd:.4f}" if conf.sd is not None else ""
    return f"{conf.mean:.4f}{sd} ({conf.n} {conf.kind})"
