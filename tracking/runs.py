"""MLflow runs of a study: one parent run per study, one nested run per trial.

Runs are found again by tags (``tunelab.study``, ``tunelab.trial``), so a resumed study reuses
its parent run and never duplicates a finished trial's run. A tracking failure is reported
once per run and never stops the study: the Optuna storage keeps every trial's results.
"""

from __future__ import annotations

import atexit
import functools
import json
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from . import plots, ui
from .store import artifact_root, first_use_lock, package_versions, resolve_tracking_uri
from .writer import BackgroundWriter, shared_writer

MAX_METRICS_PER_CALL = 1000  # MLflow's log_batch limit
LIVE_INTERVAL = 2.0  # seconds: a trial run's live curves are written at most this often


def history_metrics(history: Mapping[str, Sequence[float]], now: int) -> list[Metric]:
    """A run's curves as MLflow metrics, one per epoch, steps from 1 as a trial run's."""
    return [Metric(k, float(v), now, step) for k, values in history.items()
            for step, v in enumerate(values, start=1)]

STUDY_TAG = "tunelab.study"
TRIAL_TAG = "tunelab.trial"
ROLE_TAG = "tunelab.role"
PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LENGTH = 6000


def _guarded(method):
    """Run an MLflow call; on failure report it once for this run and carry on."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if self.broken:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as err:  # any MLflow or network failure must not stop the study
            self.broken = True
            print(f"tunelab: tracking error for {self.label}, its MLflow run is incomplete "
                  f"({type(err).__name__}: {err}); the Optuna storage keeps the results, "
                  "`tunelab sync` can log them later", file=sys.stderr)
            return None

    return wrapper


class _Run:
    def __init__(self, client: MlflowClient, run_id: str | None, label: str,
                 writer: BackgroundWriter | None = None):
        self.client, self.run_id, self.label = client, run_id, label
        self.broken = run_id is None
        self.writer = writer  # None: every call runs now, in this thread

    def __reduce__(self):
        # the writer process rebuilds the run with a client of its own (see _rebuilt)
        return (_rebuilt, (type(self), self.client.tracking_uri, self.run_id, self.label,
                           getattr(self, "number", None)))

    def later(self, call, *args, **kwargs) -> None:
        """Run ``call`` in the background writer (in submission order), or now without one."""
        if self.writer is None or self.broken:
            call(*args, **kwargs)
        else:
            self.writer.submit(call, *args, **kwargs)

    @_guarded
    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [Param(k, _param_value(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100], synchronous=True)

    @_guarded
    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float))]
        self.client.log_batch(self.run_id, metrics=items, synchronous=True)

    @_guarded
    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=items, synchronous=True)

    @_guarded
    def log_batch(self, *, metrics: Mapping[str, float] | None = None,
                  tags: Mapping[str, Any] | None = None, epochs: Sequence[Metric] = ()
                  ) -> None:
        """Final metrics and tags in one round trip to the store (with ``epochs``, metrics
        not yet written, as many round trips more as MLflow's batch limit needs)."""
        now = int(time.time() * 1000)
        items = [*epochs, *(Metric(k, float(v), now, 0) for k, v in (metrics or {}).items()
                            if isinstance(v, (int, float)))]
        for i in range(0, max(1, len(items)), MAX_METRICS_PER_CALL):
            self.client.log_batch(
                self.run_id, synchronous=True, metrics=items[i:i + MAX_METRICS_PER_CALL],
                tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()] if i == 0 else [])

    @_guarded
    def log_history(self, history: Mapping[str, Sequence[float]]) -> None:
        """Every epoch's metrics (epochs from 1, as trials log them) in as few round trips
        as MLflow's batch limit allows: one call per value took about 5 s for a 15-epoch
        history on a SQLite store."""
        self._log_metric_items(history_metrics(history, int(time.time() * 1000)))

    def _log_metric_items(self, items: Sequence[Metric]) -> None:
        for i in range(0, len(items), MAX_METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=items[i:i + MAX_METRICS_PER_CALL],
                                  synchronous=True)

    @_guarded
    def log_figure(self, fig, name: str, dpi: int = 110) -> None:
        try:
            self.client.log_figure(self.run_id, fig, name, save_kwargs={"dpi": dpi})
        finally:
            plots.close(fig)

    @_guarded
    def log_pngs(self, figures: Mapping[str, Any], artifact_path: str, dpi: int = 110) -> None:
        """Figures (matplotlib, or PNG bytes drawn elsewhere) as ``artifact_path/NAME.png``,
        in one artifact upload."""
        with tempfile.TemporaryDirectory(prefix="tunelab-figures-") as tmp:
            for name, fig in figures.items():
                path = Path(tmp) / f"{name}.png"
                if isinstance(fig, (bytes, bytearray)):
                    path.write_bytes(fig)
                else:
                    try:
                        fig.savefig(path, dpi=dpi)
                    finally:
                        plots.close(fig)
            self.client.log_artifacts(self.run_id, tmp, artifact_path)

    def log_image_grid(self, images, row_labels, name: str, title: str = "") -> None:
        """A grid of images: one row per sample, columns as given (see plots.image_grid)."""
        self.later(self._log_image_grid, images, row_labels, name, title)

    @_guarded
    def _log_image_grid(self, images, row_labels, name: str, title: str) -> None:
        self.log_figure(plots.image_grid(images, row_labels, title), name)

    @_guarded
    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    @_guarded
    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        self.client.log_dict(self.run_id, dict(data), name)

    @_guarded
    def log_dir(self, path: str | Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(path), artifact_path)

    @_guarded
    def log_arrays(self, arrays: Mapping[str, Any], name: str) -> None:
        """numpy arrays as one ``.npz`` artifact called ``name``."""
        with tempfile.TemporaryDirectory(prefix="tunelab-arrays-") as tmp:
            path = Path(tmp) / name
            with open(path, "wb") as f:
                np.savez(f, **arrays)
            self.client.log_artifact(self.run_id, str(path))

    @_guarded
    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


_rebuilt_runs: dict[tuple[type, str | None], _Run] = {}
# trial runs holding epochs not yet written: a run whose trainer died (or was interrupted
# and ended in its own process) gets them when this process exits
_unwritten: set[TrialRun] = set()


@atexit.register
def write_unwritten() -> None:
    for run in list(_unwritten):
        run.write_pending()


_clients: dict[str, MlflowClient] = {}


def _rebuilt(cls: type, tracking_uri: str, run_id: str | None, label: str,
             number: int | None) -> _Run:
    """A run on the writer's side: one object per run, so a failure is reported once."""
    key = (cls, run_id)
    if key not in _rebuilt_runs:
        client = _clients.setdefault(tracking_uri, MlflowClient(tracking_uri=tracking_uri))
        _rebuilt_runs[key] = (TrialRun(client, run_id, number) if cls is TrialRun
                              else cls(client, run_id, label))
    return _rebuilt_runs[key]


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:MAX_PARAM_LENGTH]


class TrialRun(_Run):
    """The nested run of one trial; the objective reports to it as it trains."""

    def __init__(self, client: MlflowClient, run_id: str | None, number: int,
                 writer: BackgroundWriter | None = None, *,
                 key_params: Mapping[str, Any] | None = None, metric: str | None = None,
                 study_run_id: str | None = None):
        super().__init__(client, run_id, f"trial {number}", writer)
        self.number = number
        self._pending: list[Metric] = []  # epochs not yet written (see _epoch)
        self._last_write = float("-inf")
        # what the note and the learning curves' title show (kept here, passed to _finish)
        self.key_params = dict(key_params or {})
        self.metric = metric
        self.study_run_id = study_run_id

    def epoch_ended(self, epoch: int, logs: Mapping[str, float]) -> None:
        """``epoch`` as Keras counts it, from 0; MLflow's step counts epochs from 1, as the
        learning curves, ``best_epoch`` and the study plots do."""
        self.later(self._epoch, dict(logs), epoch + 1, int(time.time() * 1000))

    def _epoch(self, logs: Mapping[str, float], step: int, timestamp: int) -> None:
        """Where the run is written (the writer process): an epoch's metrics go to the store
        at once when the run's last write is ``LIVE_INTERVAL`` old, else with the next one
        (or the run's final batch). Short epochs (0.3 s on BreastMNIST) then cost one
        round trip a couple of seconds, not one each (measured: 10 ms a batch on SQLite,
        the largest per-trial cost after the figures)."""
        self._pending.extend(Metric(k, float(v), timestamp, step) for k, v in logs.items()
                             if isinstance(v, (int, float)))
        _unwritten.add(self)
        now = time.monotonic()
        if now - self._last_write >= LIVE_INTERVAL:
            self._last_write = now
            self.write_pending()

    @_guarded
    def write_pending(self) -> None:
        items, self._pending = self._pending, []
        _unwritten.discard(self)
        self._log_metric_items(items)

    def finish(self, *, state: str, summary: Mapping[str, float] | None = None,
               history: Mapping[str, Sequence[float]] | None = None, **details: Any) -> None:
        """Final metrics, plots and the terminal state (complete, pruned, failed); with a
        writer they are drawn and logged in the background (copies: the caller moves on)."""
        if state == "KILLED":  # interrupted: end the run now, in this process, no figures
            self._finish(state=state, summary=dict(summary) if summary else None,
                         reason=details.get("reason", ""), key_params=self.key_params,
                         metric=self.metric, study_run_id=self.study_run_id)
            return
        self.later(self._finish, state=state, summary=dict(summary) if summary else None,
                   history={k: list(v) for k, v in history.items()} if history else None,
                   key_params=self.key_params, metric=self.metric,
                   study_run_id=self.study_run_id, **details)

    def _finish(self, *, state: str, summary: Mapping[str, float] | None = None,
                history: Mapping[str, Sequence[float]] | None = None,
                y_true: Sequence[int] | None = None, y_pred: Sequence[int] | None = None,
                class_names: Sequence[str] = (), model_summary: str | None = None,
                reason: str = "", artifacts_dir: str | Path | None = None,
                traceback: str | None = None,
                key_params: Mapping[str, Any] | None = None, metric: str | None = None,
                study_run_id: str | None = None,
                arrays: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """``arrays``: artifact name -> numpy arrays, logged as ``.npz`` files (a
        cross-validated trial's out-of-fold predictions)."""
        key_params = dict(key_params or {})
        tags = {"tunelab.state": state,
                # pruned, failed and killed trials say so in the runs table's name column
                ui.RUN_NAME_TAG: trial_run_name(self.number, state),
                ui.NOTE_TAG: ui.trial_note(number=self.number, state=state, params=key_params,
                                           summary=summary, metric=metric, reason=reason,
                                           study_run_id=study_run_id)}
        if reason:
            tags["tunelab.reason"] = reason
        epochs, self._pending = self._pending, []
        _unwritten.discard(self)
        self.log_batch(metrics=summary, tags=tags, epochs=epochs)
        # per-trial figures at 80 dpi: PNG encoding is most of what tracking costs a trial
        if history:
            best = int(summary["best_epoch"]) if summary and "best_epoch" in summary else None
            ended = reason if state == "PRUNED" and reason else state.lower()
            title = f"trial {self.number} ({ended})"
            self.log_figure(plots.learning_curves(history, title, best,
                                                  params=ui.params_text(key_params)),
                            "learning_curves.png", dpi=plots.TRIAL_DPI)
        if y_true is not None and y_pred is not None:
            self.log_figure(plots.confusion_matrix(y_true, y_pred, class_names,
                                                   f"trial {self.number}, validation"),
                            "confusion_matrix.png", dpi=80)
        if model_summary:
            self.log_text(model_summary, "model_summary.txt")
        if traceback:  # a failed trial: the terminal showed one line, the run keeps the rest
            self.log_text(traceback, "traceback.txt")
        if artifacts_dir and Path(artifacts_dir).exists():
            self.log_dir(artifacts_dir, "tensorboard")
        for name, content in (arrays or {}).items():
            self.log_arrays(content, name)
        self.end({"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "KILLED": "KILLED"}.get(
            state, "FAILED"))


def study_run_id(client: MlflowClient, study_name: str) -> str | None:
    """The id of the parent run of study ``study_name`` in its experiment, or None."""
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], filter_string=(
        f"tags.`{ROLE_TAG}` = 'study' and tags.`{STUDY_TAG}` = '{study_name}'"),
        max_results=1)
    return runs[0].info.run_id if runs else None


def trial_run_name(number: int, state: str) -> str:
    """``trial-0007``; ``trial-0007 (pruned)`` (or failed, killed) when it did not complete."""
    name = f"trial-{number:04d}"
    return name if state in ("COMPLETE", "RUNNING") else f"{name} ({state.lower()})"


def _direction(config: Mapping[str, Any]) -> str:
    objective = config.get("objective") or {}
    metric = objective.get("metric") or "val_accuracy"
    return objective.get("direction") or ("minimize" if metric.endswith("loss")
                                          else "maximize")


class StudyTracker:
    """The study's experiment and parent run, and the factory of trial runs."""

    def __init__(self, tracking_uri: str, study_name: str, parent_run_id: str | None = None,
                 *, background: bool = True):
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        with first_use_lock(self.tracking_uri):  # MLflow creates the schema on first use
            self.client = MlflowClient(tracking_uri=self.tracking_uri)
            self.client.search_experiments(max_results=1)
        # trial runs log through it so training never waits on plots or the store; it starts
        # at the first call handed to it, so trackers that log no trials start none
        self.writer = shared_writer() if background else None
        self.study_name = study_name
        with first_use_lock(self.tracking_uri):  # schema creation, then the experiment's
            self.experiment_id = self._experiment()
        self.parent = _Run(self.client, parent_run_id or self._parent_run_id(), "the study run")

    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.study_name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            mark_model_training(self.client, experiment)
            return experiment.experiment_id
        return create_experiment(self.client, self.tracking_uri, self.study_name,
                                 {STUDY_TAG: self.study_name, ROLE_TAG: "study"})

    def _find(self, filter_string: str):
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                       max_results=1, order_by=["attributes.start_time DESC"])
        return runs[0] if runs else None

    def _parent_run_id(self) -> str | None:
        found = self._find(f"tags.`{ROLE_TAG}` = 'study'")
        return found.info.run_id if found else None

    def start_study(self, *, config: Mapping[str, Any], space: Mapping[str, Any],
                    data_info: Mapping[str, Any], tags: Mapping[str, str] | None = None,
                    ) -> str:
        """Create the parent run, or reopen it when the study is resumed; ``tags`` (e.g. the
        changes a resume accepted) are set on it."""
        logged: dict[str, str] = {}
        if self.parent.run_id is None:
            run = self.client.create_run(self.experiment_id, run_name=self.study_name,
                                         tags={ROLE_TAG: "study", STUDY_TAG: self.study_name})
            self.parent = _Run(self.client, run.info.run_id, "the study run")
        else:
            self.client.update_run(self.parent.run_id, status="RUNNING")
            logged = self.client.get_run(self.parent.run_id).data.params
        params = {"model": config.get("model"), "seed": config.get("seed"),
                  "n_trials": config.get("n_trials"), "max_epochs": config.get("max_epochs"),
                  "sampler": config.get("sampler", {}).get("kind"),
                  "pruner": config.get("pruner", {}).get("kind"),
                  "objective": config.get("objective", {}).get("metric"),
                  "dataset": config.get("dataset", {}).get("source"),
                  "data_fingerprint": data_info.get("fingerprint")}
        # MLflow params are immutable: a resumed study may change its budget or epochs, so
        # those changes become tags and the latest config.yaml, never a failed call.
        changed = {k: v for k, v in params.items() if k in logged and logged[k] != str(v)}
        self.parent.log_params({k: v for k, v in params.items() if k not in logged})
        if changed:
            self.parent.set_tags({f"tunelab.resumed.{k}": v for k, v in changed.items()})
        if tags:
            self.parent.set_tags(dict(tags))
        self.parent.log_dict(config, "config.yaml")
        self.parent.log_dict(space, "search_space.json")
        self.set_runs_view(ui.searched_names(config.get("space")), config)
        self.parent.log_dict({"packages": package_versions(), **data_info}, "environment.json")
        return self.parent.run_id or ""

    def trial_run(self, number: int, params: Mapping[str, Any], *, seed: int,
                  config: Mapping[str, Any], data_info: Mapping[str, Any],
                  extra_tags: Mapping[str, Any] = ()) -> TrialRun:
        try:
            found = self._find(f"tags.`{TRIAL_TAG}` = '{number}'")
            if found is not None:
                run_id = found.info.run_id
                self.client.update_run(run_id, status="RUNNING")
            else:
                tags = {STUDY_TAG: self.study_name, TRIAL_TAG: str(number), ROLE_TAG: "trial"}
                if self.parent.run_id:
                    tags[PARENT_TAG] = self.parent.run_id
                run_id = self.client.create_run(self.experiment_id,
                                                run_name=f"trial-{number:04d}",
                                                tags={k: str(v) for k, v in
                                                      {**tags, **dict(extra_tags)}.items()},
                                                ).info.run_id
        except Exception as err:
            print(f"tunelab: tracking error for trial {number}, not logged to MLflow "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return TrialRun(self.client, None, number)
        searched = set(ui.searched_names(config.get("space")))
        key_params = {k: v for k, v in params.items() if k in searched} or dict(params)
        run = TrialRun(self.client, run_id, number, self.writer, key_params=key_params,
                       metric=(config.get("objective") or {}).get("metric"),
                       study_run_id=self.parent.run_id)
        run.later(run.log_params, {**params, "seed": seed,
                                   "data_fingerprint": data_info.get("fingerprint")})
        run.later(run.log_dict, dict(config), "config.yaml")
        run.later(run.log_dict, {"packages": package_versions(), **data_info},
                  "environment.json")
        return run

    def log_confirmation(self, trial_run_id: str | None, number: int,
                         entry: Mapping[str, Any], history: Mapping[str, Any]) -> str | None:
        """One confirmation run (``search/confirm.py``) nested under its candidate's trial
        run, tagged ``tunelab.role = confirmation``; never fails the study."""
        try:
            tags = {STUDY_TAG: self.study_name, ROLE_TAG: "confirmation",
                    "tunelab.confirmation_of": str(number),
                    "tunelab.confirmation_kind": str(entry.get("kind")),
                    "tunelab.confirmation_index": str(entry.get("index"))}
            if trial_run_id or self.parent.run_id:
                tags[PARENT_TAG] = trial_run_id or self.parent.run_id
            run_id = self.client.create_run(
                self.experiment_id, tags=tags,
                run_name=f"trial-{number:04d}-confirm-{entry.get('kind')}-{entry.get('index')}",
            ).info.run_id
            run = _Run(self.client, run_id, f"confirmation of trial {number}")
            run.log_params({"seed": entry.get("seed"), "trial": number})
            run.log_metrics({k: float(v) for k, v in entry.items()
                             if isinstance(v, (int, float)) and k not in ("index", "seed")})
            run.log_history(history)
            run.end("FINISHED")
            return run_id
        except Exception as err:
            print(f"tunelab: tracking error for a confirmation of trial {number}, not logged "
                  f"({type(err).__name__}: {err})", file=sys.stderr)
            return None

    def reopen_trial_run(self, run_id: str, number: int) -> TrialRun:
        """A finished trial's run, to log more epochs to it (``tunelab continue``)."""
        return TrialRun(self.client, run_id, number)

    def flush(self) -> None:
        """Wait for every trial run's background calls (figures, metrics, run ends)."""
        if self.writer is not None:
            self.writer.flush()

    def detach(self) -> None:
        """Interrupted: leave the background calls to the writer and do not wait for them."""
        if self.writer is not None:
            self.writer.detach()

    def set_runs_view(self, params: Sequence[str], config: Mapping[str, Any]) -> None:
        """The experiment's saved view "tunelab: trials" (see ui.py): state, objective, gap,
        best epoch and the searched parameters as columns, the best trial first."""
        metric = (config.get("objective") or {}).get("metric") or "val_accuracy"
        try:
            self.client.set_experiment_tag(self.experiment_id, ui.VIEW_TAG,
                                           ui.runs_view(params, metric, _direction(config)))
        except Exception as err:  # a view is a convenience: never fail the study for it
            print(f"tunelab: could not save the runs view of {self.study_name!r} ({err})",
                  file=sys.stderr)

    def runs_url(self, base_url: str) -> str:
        return ui.runs_url(base_url, self.experiment_id)

    def finish_study(self, *, status: str, figures: Mapping[str, Any],
                     summary: Mapping[str, Any], notes: Sequence[str] = (),
                     html: Mapping[str, str] | None = None,
                     top: Sequence[Mapping[str, Any]] = (),
                     config: Mapping[str, Any] | None = None) -> None:
        """The study plots (PNG: figures or their bytes, and HTML pages under ``study/``),
        the summary, and the parent run's note: the counts and the ``top`` trials (dicts of
        number, value, gap, best_epoch, epochs, state, params)."""
        self.flush()
        if figures:  # matplotlib figures, or PNG bytes the writer drew
            self.parent.log_pngs(figures, "study")
        for name, page in (html or {}).items():
            self.parent.log_text(page, f"study/{name}.html")
        metrics = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
        self.parent.log_metrics(metrics)
        config = config or {}
        note = ui.study_note(
            study_name=self.study_name,
            metric=(config.get("objective") or {}).get("metric") or "objective",
            direction=_direction(config), counts=summary, top=top,
            figures=[*figures, *(html or {})], notes=notes)
        self.parent.set_tags({**{f"tunelab.{k}": v for k, v in summary.items()
                                 if not isinstance(v, (dict, list))}, ui.NOTE_TAG: note})
        if top:  # the parameters the study actually varied, as the view's columns
            varied = sorted({k for row in top for k in (row.get("params") or {})})
            self.set_runs_view(varied, config)
        self.parent.log_dict(dict(summary), "best_trial.json")
        if notes:
            self.parent.log_text("\n".join(notes), "study/notes.txt")
        self.parent.end(status)

    def end_stray_runs(self, ended: Mapping[int, str]) -> int:
        """End trial runs left RUNNING whose trial has ended (``ended``: trial number ->
        KILLED or FAILED), e.g. a run opened just as Ctrl-C landed. Returns how many."""
        count = 0
        try:
            stray = self.client.search_runs(
                [self.experiment_id], max_results=5000,
                filter_string=f"tags.`{ROLE_TAG}` = 'trial' and attributes.status = 'RUNNING'")
            for run in stray:
                number = int(run.data.tags.get(TRIAL_TAG, -1))
                status = ended.get(number)
                if status is not None:
                    # named as _finish names them: the runs table tells it did not complete
                    self.client.set_tag(run.info.run_id, ui.RUN_NAME_TAG,
                                        trial_run_name(number, status))
                    self.client.set_terminated(run.info.run_id, status=status)
                    count += 1
        except Exception as err:
            print(f"tunelab: could not end the study's stray runs ({err})", file=sys.stderr)
        return count

    def parent_state(self) -> tuple[str | None, bool]:
        """The parent run's status (None without one) and whether it holds the study summary
        (``best_trial.json``) that ``finish_study`` logs and an outage may have prevented."""
        if self.parent.run_id is None:
            return None, False
        run = self.client.get_run(self.parent.run_id)
        names = {f.path for f in self.client.list_artifacts(self.parent.run_id)}
        return run.info.status, "best_trial.json" in names

    def mark_failed(self, run_id: str, reason: str) -> None:
        """End another process's run (a worker that died) as FAILED, with the reason."""
        try:
            self.client.set_tag(run_id, "tunelab.state", "FAILED")
            self.client.set_tag(run_id, "tunelab.reason", reason)
            number = self.client.get_run(run_id).data.tags.get(TRIAL_TAG)
            if number is not None:  # named as _finish names a failed trial's run
                self.client.set_tag(run_id, ui.RUN_NAME_TAG,
                                    trial_run_name(int(number), "FAILED"))
            self.client.set_terminated(run_id, status="FAILED")
        except Exception as err:
            print(f"tunelab: could not mark run {run_id} failed ({err})", file=sys.stderr)

    def trial_runs(self) -> list[Any]:
        self.flush()  # read what this tracker wrote, background calls included
        return list(self.client.search_runs([self.experiment_id],
                                            filter_string=f"tags.`{ROLE_TAG}` = 'trial'",
                                            max_results=5000))


def create_experiment(client: MlflowClient, tracking_uri: str, name: str,
                      tags: Mapping[str, str]) -> str:
    """An experiment of tunelab's: marked as model training, artifacts beside the store."""
    root = artifact_root(tracking_uri)
    location = f"{root}/{name}" if root else None
    return client.create_experiment(name, artifact_location=location,
                                    tags={**tags, ui.EXPERIMENT_KIND_TAG: ui.MODEL_TRAINING})


def mark_model_training(client: MlflowClient, experiment: Any) -> None:
    """Mark an experiment made before tunelab set its kind (never overrides a user's)."""
    if ui.EXPERIMENT_KIND_TAG not in (experiment.tags or {}):
        client.set_experiment_tag(experiment.experiment_id, ui.EXPERIMENT_KIND_TAG,
                                  ui.MODEL_TRAINING)
