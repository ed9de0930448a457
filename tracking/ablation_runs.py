"""Ablation runs: one MLflow run per variant and seed, nested under the study's parent run.

``tunelab ablate`` retrains a trial with one knob changed at a time; each training is a run
tagged ``tunelab.role=ablation`` in the study's experiment, with the variant's parameters,
its seed, its per-epoch curves (same keys and steps as a trial run) and its summary. The
figure, table and stated effects of each knob go onto the study's parent run under
``ablation/trial-<N>/``. Tags say which ablation (one id per ``tunelab ablate`` call), which
trial it varies, which variant and seed a run is, so the runs can be found and compared.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from mlflow.entities import Metric, Param

from . import plots
from .runs import (
    MAX_METRICS_PER_CALL,
    MAX_PARAM_LENGTH,
    PARENT_TAG,
    ROLE_TAG,
    STUDY_TAG,
    StudyTracker,
    history_metrics,
    study_run_id,
)

ROLE = "ablation"
ID_TAG = "tunelab.ablation.id"
TRIAL_TAG = "tunelab.ablation.trial"
VARIANT_TAG = "tunelab.ablation.variant"
KNOBS_TAG = "tunelab.ablation.knobs"
SEED_TAG = "tunelab.ablation.seed"
BASE_TAG = "tunelab.ablation.base"


class AblationTracker:
    """The study's experiment, as ``tunelab ablate`` writes to it. A tracking failure is
    reported once and never stops the ablation (its table is printed and saved anyway)."""

    def __init__(self, tracking_uri: str, study_name: str, *, ablation_id: str, trial: int):
        self.study = StudyTracker(tracking_uri, study_name, background=False)
        self.client = self.study.client
        self.ablation_id, self.trial = ablation_id, trial
        self.broken = False

    @property
    def parent_run_id(self) -> str | None:
        return self.study.parent.run_id

    def _call(self, label: str, call, *args, **kwargs) -> Any:
        if self.broken:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as err:  # any MLflow or network failure
            self.broken = True
            print(f"tunelab: tracking error for {label} ({type(err).__name__}: {err}); the "
                  "ablation goes on, its tables are printed and saved", file=sys.stderr)
            return None

    def log_seed_run(self, *, label: str, knobs: Sequence[str], seed: int, is_base: bool,
                     params: Mapping[str, Any], history: Mapping[str, Sequence[float]],
                     summary: Mapping[str, float]) -> str | None:
        """One finished training: a FINISHED run with everything; returns its id."""
        tags = {STUDY_TAG: self.study.study_name, ROLE_TAG: ROLE, ID_TAG: self.ablation_id,
                TRIAL_TAG: self.trial, VARIANT_TAG: label, KNOBS_TAG: ";".join(knobs),
                SEED_TAG: seed, BASE_TAG: str(is_base).lower()}
        if self.parent_run_id:
            tags[PARENT_TAG] = self.parent_run_id
        name = f"ablation-t{self.trial}-{label}-s{seed}".replace(" ", "_")[:250]
        run = self._call(name, self.client.create_run, self.study.experiment_id,
                         run_name=name, tags={k: str(v) for k, v in tags.items()})
        if run is None:
            return None
        run_id = run.info.run_id
        values = {**params, "seed": seed, "ablation.variant": label}
        items = [Param(k, _param(v)) for k, v in values.items()]
        for i in range(0, len(items), 100):  # MLflow takes 100 params per call
            self._call(name, self.client.log_batch, run_id, synchronous=True,
                       params=items[i:i + 100])
        now = int(time.time() * 1000)
        metrics = history_metrics(history, now)
        metrics += [Metric(k, float(v), now, 0) for k, v in summary.items()
                    if isinstance(v, (int, float))]
        for i in range(0, len(metrics), MAX_METRICS_PER_CALL):
            self._call(name, self.client.log_batch, run_id, synchronous=True,
                       metrics=metrics[i:i + MAX_METRICS_PER_CALL])
        self._call(name, self.client.set_terminated, run_id, status="FINISHED")
        return run_id

    def log_knob_metrics(self, run_id: str | None, knob: str,
                         metrics: Mapping[str, float | None]) -> None:
        """Numbers known only once every variant trained (the epoch reaching the base's
        accuracy, the effect against the base), as ``ablation/<knob>/<name>``
        (``metric_key``)."""
        self.log_metrics(run_id, {metric_key(knob, k): v for k, v in metrics.items()})

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float | None]) -> None:
        """Metrics at step 0 on a run; None values are left out."""
        if run_id:
            now = int(time.time() * 1000)
            self._call(run_id, self.client.log_batch, run_id, synchronous=True,
                       metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()
                                if v is not None])

    def log_knob(self, knob: str, *, figure: Any, text: str, data: Mapping[str, Any]) -> str:
        """The knob's figure, table and statement on the study's parent run; returns the
        artifact path (empty when the study has no parent run: tracking was off then)."""
        where = f"ablation/trial-{self.trial}/{_safe(knob)}"
        parent = self.parent_run_id
        try:
            if parent is None or self.broken:
                return ""
            self._call(where, self.client.log_figure, parent, figure, f"{where}.png",
                       save_kwargs={"dpi": 110})
        finally:
            plots.close(figure)
        self._call(where, self.client.log_text, parent, text, f"{where}.txt")
        self._call(where, self.client.log_dict, parent,
                   {**dict(data), "ablation_id": self.ablation_id}, f"{where}.json")
        return where if not self.broken else ""

    def log_report(self, markdown: str) -> None:
        """Every knob's statement and table, as Markdown, on the study's parent run."""
        if self.parent_run_id:
            self._call("the ablation report", self.client.log_text, self.parent_run_id,
                       markdown, f"ablation/trial-{self.trial}/report.md")

    def runs(self, ablation_id: str | None = None) -> list[Any]:
        """This experiment's ablation runs (of one ablation id when given)."""
        query = f"tags.`{ROLE_TAG}` = '{ROLE}'"
        if ablation_id:
            query += f" and tags.`{ID_TAG}` = '{ablation_id}'"
        return list(self.client.search_runs([self.study.experiment_id], filter_string=query,
                                            max_results=5000))


def knob_figure_png(tracking_uri: str, study_name: str, trial: int, knob: str
                    ) -> bytes | None:
    """The PNG ``log_knob`` put on the study's parent run for ``knob`` around ``trial``; None
    when the study has no parent run or the figure was never logged (tracking off)."""
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    from .store import resolve_tracking_uri

    try:
        client = MlflowClient(resolve_tracking_uri(tracking_uri))
        run_id = study_run_id(client, study_name)
        if run_id is None:
            return None
        with tempfile.TemporaryDirectory(prefix="tunelab-ablation-") as tmp:
            path = client.download_artifacts(run_id,
                                             f"ablation/trial-{trial}/{_safe(knob)}.png", tmp)
            return Path(path).read_bytes()
    except Exception:  # no such artifact, or the store cannot be read: the report goes on
        return None


def metric_key(knob: str, name: str) -> str:
    """``ablation/<knob>/<name>`` with the knob's characters MLflow refuses in metric names
    (``=`` and ``,`` of ``dropout=0.2,0.4``) as ``_``: ``ablation/dropout_0.2_0.4/effect``."""
    return f"ablation/{re.sub(r'[^A-Za-z0-9_. :-]', '_', knob)}/{name}"


def _param(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:MAX_PARAM_LENGTH]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=," else "_" for c in name)
