"""``tunelab report``: one self-contained HTML file, the way the labs write theirs.

Per study, side by side: what was searched; a table of every trial (parameters, train and
validation accuracy and loss at the best and the final epoch, gap, state, epochs, and the
epoch at which it first reached the selected trial's final training accuracy); the top
trials' train and validation curves overlaid on shared axes; for grid studies the variants'
comparison table; the selection and its reasons; the ablations ``tunelab ablate`` ran on
the study (each knob's stated effect, table and figure); and, when a model of the study is
registered and evaluated, the champion's evaluation with intervals, calibration and
Grad-CAM.

Everything is inline (CSS, images as base64 PNG data URIs, no script, no font or network
fetch), so the file opens offline in any browser. The data come from the shell as plain
dicts (see :func:`render`); :func:`study_champion` reads the champion's evaluation from
MLflow and :func:`log_to_study_run` puts the file on the study's parent run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

EVAL_FIGURES = ("evaluation/roc_curve.png", "evaluation/precision_recall_curve.png",
                "evaluation/reliability_diagram.png", "evaluation/confusion_matrix.png")

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;
color:#222}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ccc}h3{font-size:1.05em}
.studies{display:flex;gap:2em;align-items:flex-start;overflow-x:auto}
.study{flex:1 1 0;min-width:38em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .45em;text-align:right;vertical-align:top}
th{background:#f2f2f2}td.l,th.l{text-align:left}
tr.chosen td{background:#e8f4e8;font-weight:600}
img{max-width:100%;height:auto;display:block;margin:.4em 0}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.4em .7em}
.muted{color:#666}code{font-size:.9em}
"""


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curves_figure(histories: Mapping[str, Mapping[str, Sequence[float]]], title: str = ""
                  ) -> Figure | None:
    """Train (solid) and validation (dashed) accuracy and loss of several trials, overlaid
    on shared axes, one colour per trial; None when none has a history."""
    histories = {k: h for k, h in histories.items() if h.get("loss")}
    if not histories:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for i, (label, h) in enumerate(histories.items()):
        for ax, metric in zip(axes[0], ("accuracy", "loss"), strict=True):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = h.get(key)
                if values:
                    epochs = range(1, len(values) + 1)
                    ax.plot(epochs, values, style, color=colours(i % 10), marker=".",
                            label=f"{label} {'val' if key.startswith('val') else 'train'}")
    for ax, metric in zip(axes[0], ("accuracy", "loss"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _img(data: bytes | None, alt: str) -> str:
    if not data:
        return ""
    b64 = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _params(params: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    keys = keys if keys is not None else sorted(params)
    return ", ".join(f"{html.escape(str(k))}={html.escape(_short(params.get(k)))}"
                     for k in keys if k in params)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def trials_table(rows: Sequence[Mapping[str, Any]], chosen: int | None,
                 reference: int | None) -> str:
    head = ("trial", "state", "parameters", "epochs", "best epoch",
            "train acc (best)", "val acc (best)", "train loss (best)", "val loss (best)",
            "train acc (final)", "val acc (final)", "train loss (final)", "val loss (final)",
            "gap (best)", f"epoch reaching trial {reference}'s final train acc", "objective")
    out = ['<table class="trials"><thead><tr>'
           + "".join(f'<th class="{"l" if h == "parameters" else ""}">{html.escape(h)}</th>'
                     for h in head) + "</tr></thead><tbody>"]
    for r in rows:
        cls = "trial-row chosen" if r["trial"] == chosen else "trial-row"
        cells = [r["trial"], r["state"], None, r["epochs"], r["best_epoch"],
                 r["train_acc_best"], r["val_acc_best"], r["train_loss_best"],
                 r["val_loss_best"], r["train_acc_final"], r["val_acc_final"],
                 r["train_loss_final"], r["val_loss_final"], r["gap"],
                 r["reached_reference_at"] if r["reached_reference_at"] else
                 ("never" if r["epochs"] else None), r["objective"]]
        tds = "".join(f'<td class="l">{_params(r["params"])}</td>' if i == 2
                      else f"<td>{_num(c)}</td>" for i, c in enumerate(cells))
        out.append(f'<tr class="{cls}" data-trial="{r["trial"]}">{tds}</tr>')
    out.append("</tbody></table>")
    return "".join(out)


def variants_table(rows: Sequence[Mapping[str, Any]], varying: Sequence[str]) -> str:
    head = [*varying, "trial", "val acc (best)", "gap (best)", "val loss (best)", "epochs"]
    out = ['<table class="variants"><thead><tr>'
           + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r in sorted(rows, key=lambda r: [str(r["params"].get(p)) for p in varying]):
        cells = [_short(r["params"].get(p)) for p in varying] + [
            r["trial"], r["val_acc_best"], r["gap"], r["val_loss_best"], r["epochs"]]
        out.append("<tr>" + "".join(f"<td>{_num(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def champion_section(champion: Mapping[str, Any]) -> str:
    tags = champion["tags"]
    report = champion.get("report") or {}
    split = (report.get("split") or {}).get("name", "test")
    prefix = f"eval.{split}."
    out = [f"<h3>Champion: {html.escape(champion['name'])} version "
           f"{html.escape(str(champion['version']))}"
           + (" (alias champion)" if champion.get("is_champion") else "") + "</h3>",
           f'<p class="muted" data-run="{html.escape(champion["run_id"])}">evaluation run '
           f'<code>{html.escape(champion["run_id"])}</code>; '
           f'{html.escape(tags.get(prefix + "interval_method", ""))}</p>']
    if tags.get(prefix + "warning"):
        out.append(f'<p class="warn">{html.escape(tags[prefix + "warning"])}</p>')
    out.append('<table class="champion"><thead><tr><th class="l">metric</th>'
               f"<th>{html.escape(split)} (interval)</th></tr></thead><tbody>")
    for key in sorted(k for k in tags if k.startswith(prefix)):
        if key.endswith(("interval_method", "warning")):
            continue
        name = key[len(prefix):]
        out.append(f'<tr><td class="l">{html.escape(name)}</td><td class="l" '
                   f'data-tag="{html.escape(key)}">{html.escape(tags[key])}</td></tr>')
    out.append("</tbody></table>")
    for point, entry in (report.get("operating_points") or {}).items():
        out.append(f"<h4>Operating point {html.escape(point)}: "
                   f"{html.escape(entry.get('decision_rule', ''))}</h4>")
        out.append('<table class="point"><thead><tr><th class="l">metric</th><th>estimate</th>'
                   "<th>low</th><th>high</th></tr></thead><tbody>")
        for metric, iv in entry["metrics"].items():
            out.append(f'<tr><td class="l">{html.escape(metric)}</td>'
                       f"<td>{_num(iv.get('estimate'), 3)}</td><td>{_num(iv.get('low'), 3)}"
                       f"</td><td>{_num(iv.get('high'), 3)}</td></tr>")
        out.append("</tbody></table>")
    cal = report.get("calibration")
    if cal:
        out.append(f"<p>Calibration: {html.escape(cal['calibrator']['kind'])} scaling fitted "
                   f"on {html.escape(str(cal.get('fitted_on')))} ({cal.get('n_fit')} images)"
                   f"; ECE on {html.escape(split)} "
                   f"{_num(cal.get(f'ece_before_on_{split}'), 3)} before, "
                   f"{_num(cal.get(f'ece_after_on_{split}'), 3)} after"
                   + (" (in sample: the calibration was fitted on these images)"
                      if cal.get("ece_after_in_sample") else "") + ".</p>")
    for name, data in (champion.get("figures") or {}).items():
        out.append(_img(data, name))
    if champion.get("gradcam"):
        out += ["<h4>Grad-CAM</h4>", _img(champion["gradcam"], "Grad-CAM")]
    return "".join(out)


def ablation_section(ablations: Sequence[Mapping[str, Any]]) -> str:
    """``tunelab ablate``'s knobs, as the study keeps them (``search.ablation.KnobTable``'s
    ``to_dict`` with ``trial``, ``seeds`` and ``epochs``; ``png``: the knob's figure), grouped
    by the trial they vary: per knob the stated effect, the table and the figure."""
    out: list[str] = []
    for trial in dict.fromkeys(a["trial"] for a in ablations):
        knobs = [a for a in ablations if a["trial"] == trial]
        out.append(f'<h3 class="ablations" data-trial="{html.escape(str(trial))}">Ablations '
                   f"around trial {html.escape(str(trial))}</h3>")
        for a in knobs:
            metric = a["metric"]
            out.append(f'<h4>{html.escape(a["knob"])}</h4><p class="muted">seeds '
                       f'{html.escape(", ".join(map(str, a.get("seeds") or [])))}; '
                       f'{html.escape(str(a.get("epochs")))} epochs'
                       + ("" if a.get("early_stopping") else ", no early stopping")
                       + "; base final training accuracy "
                       + _num(a.get("base_final_train_accuracy"), 3) + "</p>")
            out.append(f'<p class="ablation-statement">{html.escape(a["statement"])}</p>')
            head = ("variant", "seeds", f"best {metric}", "sd", f"final {metric}", "sd",
                    "gap acc", "epoch &ge; base acc", "effect", "sd")
            out.append('<table class="ablation" data-knob="' + html.escape(a["knob"]) + '">'
                       "<thead><tr>" + "".join(f"<th>{h}</th>" for h in head)
                       + "</tr></thead><tbody>")
            for r in a["rows"]:
                reach = r.get("epoch_reaching_base_accuracy")
                n_seeds, n_reach = len(r["seeds"]), r.get("seeds_reaching_base_accuracy")
                reach_text = ("never" if reach is None else f"{float(reach):.3g}"
                              + ("" if n_reach == n_seeds else f" ({n_reach}/{n_seeds} seeds)"))
                cells = [r[f"best_{metric}"], r[f"best_{metric}_sd"], r[f"final_{metric}"],
                         r[f"final_{metric}_sd"], r["gap_accuracy"]]
                effect = [] if r["base"] else [r["effect"], r["effect_sd"]]
                out.append(
                    f'<tr class="ablation-row" data-variant="{html.escape(r["variant"])}">'
                    f'<td class="l">{html.escape(r["variant"])}</td><td>{n_seeds}</td>'
                    + "".join(f"<td>{_num(c)}</td>" for c in cells)
                    + f"<td>{reach_text}</td>"
                    + ("<td></td><td></td>" if r["base"] else
                       "".join(f"<td>{_num(c)}</td>" for c in effect)) + "</tr>")
            out.append("</tbody></table>")
            out.append(_img(a.get("png"), f"ablation of {a['knob']} around trial {trial}"))
    return "".join(out)


def study_section(study: Mapping[str, Any]) -> str:
    rows = study["rows"]
    out = [f'<section class="study" data-study="{html.escape(study["name"])}">',
           f"<h2>Study {html.escape(study['name'])}</h2>", "<h3>What was searched</h3><ul>"]
    for key, value in study["searched"].items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out.append(f"<li><b>{html.escape(key)}</b>: <code>{html.escape(text)}</code></li>")
    out.append("</ul>")
    out.append(f"<h3>Trials ({len(rows)})</h3>")
    out.append(trials_table(rows, study.get("chosen"), study.get("reference")))
    if study.get("curves"):
        out += ["<h3>Top trials: train (solid) and validation (dashed)</h3>",
                _img(study["curves"], f"learning curves of {study['name']}")]
    if study.get("grid") and study.get("varying"):
        out += ["<h3>Variants</h3>", variants_table(rows, study["varying"])]
    out.append("<h3>Selection</h3>")
    out.append(f"<p>{html.escape(study.get('selection') or 'no complete trial')}</p>")
    if study.get("reasons"):
        out.append("<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in study["reasons"])
                   + "</ul>")
    if study.get("ablations"):
        out.append(ablation_section(study["ablations"]))
    if study.get("champion"):
        out.append(champion_section(study["champion"]))
    else:
        out.append('<p class="muted">No registered, evaluated model of this study.</p>')
    out.append("</section>")
    return "".join(out)


def render(studies: Sequence[Mapping[str, Any]], title: str = "tunelab report") -> str:
    """The HTML page. Each study: ``name``, ``searched`` (label -> value), ``rows``
    (``search.trial_table.trial_rows``), ``chosen``, ``reference``, ``curves`` (PNG bytes),
    ``grid``, ``varying``, ``selection`` (text), ``reasons`` (list), ``ablations`` (list, see
    :func:`ablation_section`; may be absent), ``champion`` (from :func:`study_champion`, or
    None)."""
    body = "".join(study_section(s) for s in studies)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><div class=\"studies\">{body}</div></body></html>\n")


def study_champion(tracking_uri: str, study_name: str) -> dict[str, Any] | None:
    """The newest evaluation of the study's champion (or of its newest evaluated version):
    the evaluation run's tags, report and figures and the registration run's Grad-CAM."""
    import tempfile
    from pathlib import Path

    from mlflow import MlflowClient

    from .model_registry import CHAMPION
    from .runs import ROLE_TAG
    from .store import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, filter_string=(
        f"tags.`{ROLE_TAG}` = 'evaluation' and tags.`tunelab.evaluated_study` = "
        f"'{study_name}'"), order_by=["attributes.start_time DESC"], max_results=100)
    if not runs:
        return None

    def is_champion(run) -> bool:
        name, version = (run.data.tags.get("tunelab.model_name"),
                         run.data.tags.get("tunelab.model_version"))
        try:
            return str(client.get_model_version_by_alias(name, CHAMPION).version) == version
        except Exception:  # no such model or alias
            return False

    # the champion's test evaluation first, then any test evaluation, then the newest
    run = max(runs, key=lambda r: (is_champion(r), r.data.tags.get("tunelab.split") == "test",
                                   r.info.start_time))
    tags = dict(run.data.tags)
    with tempfile.TemporaryDirectory(prefix="tunelab-report-") as tmp:
        def fetch(run_id: str, path: str) -> bytes | None:
            try:
                return Path(client.download_artifacts(run_id, path, tmp)).read_bytes()
            except Exception:  # not logged (an MLP has no Grad-CAM)
                return None

        raw = fetch(run.info.run_id, "evaluation/report.json")
        figures = {name: fetch(run.info.run_id, name) for name in EVAL_FIGURES}
        registration = tags.get("tunelab.registration_run")
        gradcam = fetch(registration, "gradcam.png") if registration else None
    return {"name": tags.get("tunelab.model_name", "?"),
            "version": tags.get("tunelab.model_version", "?"), "run_id": run.info.run_id,
            "is_champion": is_champion(run), "tags": tags,
            "report": json.loads(raw) if raw else None,
            "figures": {k: v for k, v in figures.items() if v}, "gradcam": gradcam}


def log_to_study_run(tracking_uri: str, study_name: str, path: str) -> str | None:
    """Attach the report to the study's parent run (``report/<file>``); its id, or None."""
    from mlflow import MlflowClient

    from .runs import study_run_id
    from .store import resolve_tracking_uri

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    run_id = study_run_id(client, study_name)
    if run_id is not None:
        client.log_artifact(run_id, path, "report")
    return run_id


__all__ = ["ablation_section", "curves_figure", "log_to_study_run", "png_bytes", "render",
           "study_champion"]
