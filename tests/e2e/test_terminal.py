"""What the terminal shows: only tunelab's own lines, a live display on a terminal, plain
lines through a pipe, nothing wider than 80 columns (issue #20).

One tiny study (digits 8x8, 2 trials of 2 epochs, real worker processes) serves every
check: ``tune`` through a pseudo-terminal, then its resume through a pipe, then ``best``,
``register``, ``predict``, ``data inspect`` and ``server``. Every line of their default
output must match one of tunelab's own line formats (an allow-list).
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import tiny_study
from terminal_io import PtyRun, drawn_lines, run_pipe, screen_lines

pytestmark = pytest.mark.slow

BAR = "[━╸ ]+"
# the summary's link to the study's runs table (a URL: never cut to the terminal's width)
LINK_LINE = (r"  then open http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?"
             r"workflowType=machine_learning&viewStateShareKey=tunelab")
TUNE_LINES = [
    r"tunelab: study '\S+': .+ trials done.*", r"tunelab: resuming study '\S+' .+",
    r"  data .+ classes", r"  image size .+ channel\(s\)", r"  storage .+",
    r"  tracking .+",
    # plain progress: one line per epoch and per finished trial
    r"trial +\d+ \[\d+/\d+\] epoch +\d+/\d+ acc [\d.-]+/[\d.-]+ loss [\d.-]+/[\d.-]+ \| .+ left",
    r"trial +\d+ (complete|pruned|failed) .*",
    # the live display (its last frame, when the terminal keeps it)
    rf"study \S+ {BAR} .+", r"best \S+ [\d.]+ \(trial \d+\)|best: none complete yet",
    rf"trial +\d+ {BAR} \d+/\d+ .* left",
    # the summary
    r"study '\S+': \d+ complete, \d+ pruned, \d+ failed", r"best trial: #\d+ +\S+ = [\d.]+.*",
    r"  \S+: \S+", r"top \d+ trials", r"trial +\S+ +gap +best ep +epochs +params",
    r"[- ]+", r"\d+ +[\d.]+ +-?[\d.]+ +\d+ +\d+ +.*",
    r"selected (Pareto-front )?trial \d+.*", r"no trial qualifies: .+",
    r"    \S.*",  # the selection's sentence, wrapped to the terminal
    r"browse the runs: tunelab server.*", LINK_LINE,
]
BEST_LINES = [r"\d+ complete trial\(s\), ranked by .+", r"rank +trial +objective .+verdict",
              r"[- ]+", r"\d+ +\d+ +[\d.]+ .+", r"selected trial \d+( by \S+)?: .+"]
REGISTER_LINES = [r"registered \S+ version \d+ from trial \d+ \(.+\)", r"compared: .+",
                  r"alias 'champion' -> version \d+", r"held-out test_accuracy: [\d.]+",
                  r"calibration: .+ fitted on \S+ \(\d+ images\); decision: .+"]
PREDICT_LINES = [r"file +label( +prob_\S+)+", r"[- ]+", r"\S+\.png +\S+( +[\d.]+)+"]
INSPECT_LINES = [r"dataset \S+ \(\S+\): \S+", r"\d+ classes \(index order\): .+",
                 r"class +train +val", r"[- ]+", r"(\S+|total) +\d+ +\d+",
                 r"model input: \(.+\)", r"image sizes \(WxH\): .+", r"channels: .+",
                 r"bit depths: .+", r"formats: .+", r"sample grid: \S+\.png"]
SERVER_LINES = [r"tunelab: starting MLflow UI and optuna-dashboard; the links follow once each "
                r"one answers",
                r"tunelab: MLflow UI at http://127\.0\.0\.1:\d+ \(answered after \d+ s\)",
                r" +study \S+: http://127\.0\.0\.1:\d+/#/experiments/\d+/runs\?\S+",
                r" +log to it with: tunelab tune --tracking-uri http://127\.0\.0\.1:\d+",
                r"tunelab: optuna-dashboard at http://127\.0\.0\.1:\d+/dashboard \(answered "
                r"after \d+ s; storage \S+\)"]


def foreign(lines, formats) -> list[str]:
    """Lines that are none of ``formats`` (blank lines are allowed)."""
    return [line for line in lines if line.strip()
            and not any(re.fullmatch(f, line.rstrip()) for f in formats)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("terminal")
    raw = tiny_study(tmp, study_name="quiet", n_trials=2)
    (tmp / "study.yaml").write_text(yaml.safe_dump(raw))
    env = {"TF_CPP_MIN_LOG_LEVEL": "0"}  # what some images export: quiet mode overrides it
    run = PtyRun(["tune", "study.yaml"], tmp, columns=80, env=env)
    rc = run.finish(timeout=900)
    return tmp, raw, rc, run.text


def test_tune_on_a_terminal_is_one_live_display_of_tunelab_lines(study):
    tmp, _, rc, text = study
    assert rc == 0, text[-3000:]
    shown = screen_lines(text)
    assert not foreign(shown, TUNE_LINES), foreign(shown, TUNE_LINES)
    drawn = drawn_lines(text)
    # the live display drew the study's bar, an epoch bar with accuracy and time left
    assert any(re.match(rf"study quiet {BAR} \d/2 trials \|", line) for line in drawn), drawn
    assert any(re.match(rf"trial +\d+ {BAR} \d/2 acc [\d.]+/[\d.]+ .* left", line)
               for line in drawn), drawn
    assert not any(re.match(r"trial +\d+ \[\d/2\] epoch", line) for line in shown), \
        "plain epoch lines on a terminal"
    finished = [line for line in shown if re.match(r"trial +\d+ complete", line)]
    assert len(finished) == 2 and "new best" in finished[0], finished
    assert "lr=" in finished[1] and " | " in finished[1]
    assert "browse the runs: tunelab server" in text
    # nothing wider than the terminal (paths are as long as the test's tmp folder)
    wide = [line for line in drawn if len(line) > 80 and str(tmp) not in line
            and not re.fullmatch(LINK_LINE, line)]
    assert not wide, wide
    assert "\x1b[?25l" in text  # rich hid the cursor: the live display ran


def test_tune_through_a_pipe_prints_plain_lines(study):
    tmp, _, _, _ = study
    result = run_pipe(["tune", "study.yaml", "--n-trials", "3"], tmp)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert not foreign(lines, TUNE_LINES), foreign(lines, TUNE_LINES)
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    assert any(re.fullmatch(r"trial   2 \[3/3\] epoch   2/2 acc .+ \| 0s left", line)
               for line in lines), lines
    assert any(re.match(r"trial   2 complete val_accuracy [\d.]+ ", line) for line in lines)


def test_best_register_predict_and_inspect_print_only_their_own_lines(study):
    tmp, raw, _, _ = study
    outputs = {}
    for name, args in {"best": ["best"], "register": ["register", "--name", "quiet"],
                       "inspect": ["data", "inspect", "digits", "--image-size", "8",
                                   "--out", "grid.png"]}.items():
        outputs[name] = run_pipe(args, tmp)
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images[:2]
    for i, image in enumerate(images):
        Image.fromarray((image * 16).clip(0, 255).astype("uint8")).save(tmp / f"img{i}.png")
    outputs["predict"] = run_pipe(["predict", "models:/quiet@champion", "img0.png",
                                   "img1.png"], tmp)
    formats = {"best": BEST_LINES, "register": REGISTER_LINES, "predict": PREDICT_LINES,
               "inspect": INSPECT_LINES}
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stdout[-2000:], result.stderr[-2000:])
        lines = (result.stdout + result.stderr).splitlines()
        assert not foreign(lines, formats[name]), (name, foreign(lines, formats[name]))
    # -v: the frameworks' own warnings and logs come back
    verbose = run_pipe(["-v", "predict", "models:/quiet@champion", "img0.png"], tmp)
    assert verbose.returncode == 0
    assert foreign((verbose.stdout + verbose.stderr).splitlines(), PREDICT_LINES), \
        verbose.stderr


def test_server_prints_only_its_addresses(study):
    """The MLflow UI and optuna-dashboard: tunelab's lines with their links, not the
    servers' own start-up and request lines."""
    import threading

    from tunelab.tracking.server import free_port

    tmp, _, _, _ = study
    port, dashboard_port = free_port(), free_port()
    env = {**os.environ}
    env.pop("TUNELAB_VERBOSE", None)
    proc = subprocess.Popen([sys.executable, "-m", "tunelab", "server", "--port", str(port),
                             "--dashboard-port", str(dashboard_port)],
                            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            text = "".join(lines)
            if "log to it with" in text and "optuna-dashboard at" in text:
                break
            time.sleep(0.5)
        time.sleep(2)  # anything the servers print once they serve
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    out = "".join(lines)
    assert f"MLflow UI at http://127.0.0.1:{port} " in out, out
    assert re.search(rf"study quiet: http://127\.0\.0\.1:{port}/#/experiments/\d+/runs\?", out), out
    assert f"optuna-dashboard at http://127.0.0.1:{dashboard_port}/dashboard" in out, out
    assert not foreign(out.splitlines(), SERVER_LINES), out
