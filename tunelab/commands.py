"""What ``tunelab best``, ``register``, ``predict`` and ``continue`` do, as library functions.

The CLI parses and calls these; notebooks and tests call them too. They reopen a finished
study from its storage: the resolved config lives in ``study.user_attrs["config"]``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config import DEFAULT_STORE, ConfigError, StudyConfig, config_from_dict
from tunelab.report import table

TOP_SHOWN = 10


# -- wiring shared with the runner --------------------------------------------------------
def objective_rule(config: StudyConfig):
    from tunelab.search.selection import ObjectiveRule

    return ObjectiveRule.from_config(config.objective, config.direction)


def checkpoint_dir(config: StudyConfig) -> Path:
    """``checkpoints.dir``, else ``checkpoints/<study>`` beside the journal (or under
    ./mlruns for a database storage). Absolute, so every worker finds the same folder."""
    if config.checkpoints.dir:
        return Path(config.checkpoints.dir).expanduser().resolve()
    base = (DEFAULT_STORE if "://" in config.storage_url
            else Path(config.storage_url.removeprefix("journal:")).expanduser().parent)
    return (base / "checkpoints" / config.study_name).resolve()


def checkpoint_store(config: StudyConfig):
    from tunelab.search.checkpoints import CheckpointStore

    return CheckpointStore(checkpoint_dir(config), config.checkpoints.keep_top,
                           objective_rule(config))


# -- reopening a study --------------------------------------------------------------------
@dataclass
class OpenedStudy:
    study: Any  # optuna.Study
    config: StudyConfig
    storage: str

    @property
    def tracking_uri(self) -> str:
        return self.study.user_attrs.get("tracking_uri") or self.config.resolved_tracking_uri


def open_finished_study(study_name: str | None = None, storage: str | None = None,
                        ) -> OpenedStudy:
    """A study made by ``tunelab tune``; without a name, the only study in the storage."""
    import dataclasses
    import os

    import optuna

    from tunelab.search import open_storage, open_study

    storage = storage or str(DEFAULT_STORE / "optuna.journal")
    if "://" not in storage and not os.path.exists(storage.removeprefix("journal:")):
        raise ConfigError(f"--storage: {storage}: no such journal file; run `tunelab tune` "
                          "first, or pass --storage with the study's journal or database URL")
    if study_name is None:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        if len(names) != 1:
            raise ConfigError(f"--study-name: {storage} holds {len(names)} studies "
                              f"({', '.join(names) or 'none'}); name one with --study-name")
        study_name = names[0]
    try:
        study = open_study(storage=storage, study_name=study_name)
    except ValueError as err:
        raise ConfigError(f"--study-name: {err}") from None
    raw = study.user_attrs.get("config")
    if raw is None:
        raise ConfigError(f"study {study_name!r} in {storage} has no tunelab config; it was "
                          "not made by `tunelab tune`")
    config = dataclasses.replace(config_from_dict(raw), storage=storage)
    return OpenedStudy(study, config, storage)


# -- tunelab best -------------------------------------------------------------------------
def best(study_name: str | None = None, storage: str | None = None):
    """The selection rule over a stored study: returns a ``search.selection.Selection``."""
    from tunelab.search.selection import select_from_study

    opened = open_finished_study(study_name, storage)
    return select_from_study(opened.study, objective_rule(opened.config))


def selection_table(selection, top: int = TOP_SHOWN) -> str:
    rule = selection.rule
    rows = []
    for v in selection.verdicts[:top]:
        r = v.record
        rows.append([v.rank, r.number, r.value, r.metric, r.gap, r.gap_loss, r.fold_std,
                     f"{r.best_epoch}/{r.epochs_trained}" if r.best_epoch else None,
                     ",".join(r.flags) or None, ("CHOSEN: " if v.chosen else "") + v.reason])
    objective = "objective" if rule.kind == "metric" else f"objective ({rule.kind})"
    return table(["rank", "trial", objective, rule.metric, "gap acc", "gap loss", "fold std",
                  "best ep", "flags", "verdict"], rows)


def print_selection(selection, out=None) -> None:
    out = out or sys.stdout
    rule = selection.rule
    n = len(selection.verdicts)
    print(f"{n} complete trial(s), ranked by {rule.metric} ({rule.direction}, kind "
          f"{rule.kind}); gap tolerance {rule.gap_tolerance:g}"
          + (f", max_gap {rule.max_gap:g}" if rule.max_gap is not None else ""), file=out)
    if n:
        print(selection_table(selection), file=out)
        if n > TOP_SHOWN:
            print(f"... {n - TOP_SHOWN} more", file=out)
    print(f"\n{selection.explanation()}", file=out)
