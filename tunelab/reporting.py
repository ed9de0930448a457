"""``tunelab report``: studies and their champions' evaluations in one offline HTML file.

Gathers plain data from the rooms (the trial table from ``search.trial_table``, the
selection from ``search.selection``, the knob tables ``tunelab ablate`` kept on the study,
the champion's evaluation from MLflow through ``tracking.html_report``) and has
``tracking.html_report.render`` write the page; the file is also logged to each study's
parent run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tunelab.config import ConfigError
from tunelab.registering import open_finished_study
from tunelab.wiring import study_selection

TOP_CURVES = 5  # trials whose learning curves are overlaid


def study_data(study_name: str | None, storage: str | None, tracking_uri: str | None
               ) -> dict[str, Any]:
    from tunelab.search.trial_table import histories, trial_rows, varying_params
    from tunelab.tracking import html_report

    opened = open_finished_study(study_name, storage)
    config, study = opened.config, opened.study
    # the pick `tunelab best` and `register` make: the rule re-ranked by selection.method
    selection = study_selection(study, config)
    chosen = selection.chosen or selection.best_by_objective
    reference = chosen.number if chosen is not None else None
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(trials, reference)
    top = [v.record.number for v in selection.verdicts[:TOP_CURVES]]
    curves = html_report.curves_figure(
        {f"#{n}": h for n, h in histories(trials, top).items()},
        title=f"{config.study_name}: top {len(top)} trial(s) by the selection "
              f"({config.selection.method})")
    cfg = config.to_dict()
    searched = {"model": cfg.get("model"), "space": cfg.get("space"),
                "budget": f"{config.n_trials} trials, at most {config.max_epochs} epochs",
                "engine / sampler / pruner": f"{config.engine} / {config.sampler.kind} / "
                                             f"{config.pruner.kind}",
                "objective": cfg.get("objective"),
                "data": f"{config.dataset.source} (test_fraction "
                        f"{config.dataset.test_fraction:g}, validation_fraction "
                        f"{config.dataset.validation_fraction:g}, cv_folds "
                        f"{config.dataset.folds})"}
    reasons = [f"trial {v.record.number} (rank {v.rank}): {v.reason}"
               for v in selection.verdicts[:10]]
    uri = tracking_uri or opened.tracking_uri
    return {"name": config.study_name, "searched": searched, "rows": rows,
            "chosen": selection.chosen.number if selection.chosen else None,
            "reference": reference,
            "curves": html_report.png_bytes(curves) if curves is not None else None,
            "grid": config.sampler.kind == "grid", "varying": varying_params(rows),
            "selection": selection.explanation(), "reasons": reasons,
            "ablations": ablations(study, config.study_name, uri if config.tracking else None),
            "champion": html_report.study_champion(uri, config.study_name),
            "tracking_uri": uri}


def ablations(study, study_name: str, tracking_uri: str | None) -> list[dict[str, Any]]:
    """The knob tables ``tunelab ablate`` kept on the study (user attributes
    ``ablation:trial-<N>:<knob>``), by trial, each with its figure: from the study's parent
    run, else the file ``ablate`` wrote (a study without tracking)."""
    from tunelab.ablating import ATTR_PREFIX
    from tunelab.tracking.ablation_runs import knob_figure_png

    kept = [dict(v) for k, v in study.user_attrs.items()
            if k.startswith(ATTR_PREFIX) and isinstance(v, dict) and v.get("rows")]
    kept.sort(key=lambda a: a["trial"])  # stable: a trial's knobs stay in the order asked
    for a in kept:
        png = (knob_figure_png(tracking_uri, study_name, a["trial"], a["knob"])
               if tracking_uri else None)
        figure = Path(a["figure"]) if a.get("figure") else None
        if png is None and figure is not None and figure.is_file():
            png = figure.read_bytes()
        a["png"] = png
    return kept


def report(study_names: list[str] | None = None, storage: str | None = None,
           output: str = "report.html", tracking_uri: str | None = None, out=None) -> Path:
    """Write the report of ``study_names`` (default: the only study) to ``output``."""
    from tunelab.tracking import html_report

    out = out or sys.stdout
    names: list[str | None] = list(study_names or []) or [None]
    studies = [study_data(name, storage, tracking_uri) for name in names]
    title = "tunelab report: " + ", ".join(s["name"] for s in studies)
    path = Path(output)
    try:
        path.write_text(html_report.render(studies, title=title), encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"-o: cannot write {path} ({err})") from None
    logged = [s["name"] for s in studies
              if html_report.log_to_study_run(s["tracking_uri"], s["name"], str(path))]
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB, {len(studies)} study(ies))"
          + (f"; logged to the parent run of {', '.join(logged)}" if logged else ""), file=out)
    return path
