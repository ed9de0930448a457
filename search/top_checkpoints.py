"""Keep the best weights of the top trials, and only those: a bound on disk use.

After every complete trial the store saves the trial's model (best-epoch weights with early
stopping's ``restore_best_weights``, plus optimizer state) and deletes the checkpoints of
trials that fell out of the top ``keep_top``. "Top" follows the selection rule: trials the
rule would trust come first, so the trial ``tunelab register`` picks keeps its weights even
when better-scoring trials overfit. Registration then loads a checkpoint instead of
retraining, and ``tunelab continue`` resumes from one.

A cross-validated trial has no single model to keep; the store keeps its out-of-fold
predictions instead (``trial-NNNN.oof.npz``, ``crossval.OutOfFold``), ranked and pruned by
the same rule, so that ``tunelab register`` calibrates the retrained model out of sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from tunelab.models.model_files import remove_checkpoint, save_checkpoint

from .selection import ObjectiveRule, TrialRecord, records_from_study, select

_NAME = re.compile(r"^trial-(\d+)\.keras$")
_OOF_NAME = re.compile(r"^trial-(\d+)\.oof\.npz$")


class CheckpointStore:
    def __init__(self, directory: str | Path, keep_top: int = 3,
                 rule: ObjectiveRule | None = None):
        self.directory = Path(directory)
        self.keep_top = keep_top
        self.rule = rule or ObjectiveRule()

    def path(self, number: int) -> Path:
        return self.directory / f"trial-{number:04d}.keras"

    def out_of_fold_path(self, number: int) -> Path:
        return self.directory / f"trial-{number:04d}.oof.npz"

    def saved(self) -> dict[int, Path]:
        return self._files(_NAME)

    def saved_out_of_fold(self) -> dict[int, Path]:
        return self._files(_OOF_NAME)

    def _files(self, pattern: re.Pattern) -> dict[int, Path]:
        if not self.directory.is_dir():
            return {}
        return {int(m.group(1)): p for p in self.directory.iterdir()
                if (m := pattern.match(p.name))}

    def save(self, study: optuna.Study, record: TrialRecord, model: Any,
             meta: Mapping[str, Any]) -> Path | None:
        """Save the trial if it ranks in the top ``keep_top``; prune the rest.
        Returns the checkpoint path, or None when the trial does not rank."""
        if self.keep_top <= 0:
            return None
        keep = self._keep_with(study, record)
        path = None
        if record.number in keep:
            path = save_checkpoint(model, self.path(record.number),
                                   {**meta, "trial": record.number, "objective": record.value})
        self.prune(keep)
        return path

    def save_out_of_fold(self, study: optuna.Study, record: TrialRecord,
                         out_of_fold: Any) -> Path | None:
        """A cross-validated trial's ``crossval.OutOfFold``, kept as a checkpoint would be:
        if the trial ranks in the top ``keep_top``. Returns the path, or None."""
        if self.keep_top <= 0:
            return None
        keep = self._keep_with(study, record)
        path = None
        if record.number in keep:
            path = out_of_fold.save(self.out_of_fold_path(record.number))
        self.prune(keep)
        return path

    def _keep_with(self, study: optuna.Study, record: TrialRecord) -> set[int]:
        """The trials to keep once ``record`` (maybe not stored as finished yet) counts, and
        every trial still running: another worker saves its trial's file before Optuna
        stores the trial as finished, so a prune ranking only finished trials would delete
        it (the next save after that trial's end ranks it)."""
        others = [r for r in records_from_study(study, self.rule.metric)
                  if r.number != record.number]
        running = {t.number for t in study.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
        return self.top_numbers([*others, record]) | (running - {record.number})

    def top_numbers(self, records: list[TrialRecord]) -> set[int]:
        """Trusted trials first (in rank order), then the others."""
        verdicts = select(records, self.rule).verdicts
        ordered = [v for v in verdicts if v.eligible] + [v for v in verdicts if not v.eligible]
        return {v.record.number for v in ordered[: self.keep_top]}

    def prune(self, keep: set[int]) -> None:
        for number, path in self.saved().items():
            if number not in keep:
                remove_checkpoint(path)
        for number, path in self.saved_out_of_fold().items():
            if number not in keep:
                path.unlink(missing_ok=True)
