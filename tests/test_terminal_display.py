"""The display itself, without a study: widths, the redraw cap and what redraws cost."""

import io
import re
import time

from rich.console import Console

from tunelab.terminal import MAX_REFRESH_PER_SECOND, LiveDisplay, PlainDisplay, StudyState


def state(**kw) -> StudyState:
    return StudyState(study_name="a-rather-long-study-name", metric="val_accuracy",
                      direction="maximize", max_epochs=15, n_trials=20, timeout=None,
                      started_at=time.time() - 65, workers=2, **kw)


def events(t0: float, trial: int, epochs: int, value: float):
    params = {"learning_rate": 0.0005611516415334506, "batch_size": 64, "n_base": 16,
              "dropout": 0.123456, "optimizer": "rmsprop", "lenet.n_blocks": 2,
              "loss": "categorical_crossentropy"}
    yield {"event": "trial_started", "trial": trial, "time": t0, "position": trial + 1,
           "params": params, "best": None}
    for e in range(epochs):
        yield {"event": "epoch", "trial": trial, "epoch": e, "time": t0 + e + 1,
               "logs": {"loss": 0.5, "accuracy": 0.8 + e / 100, "val_loss": 0.6,
                        "val_accuracy": 0.7 + e / 100}}
    yield {"event": "trial_ended", "trial": trial, "time": t0 + epochs + 1,
           "state": "COMPLETE", "value": value, "reason": "", "params": params,
           "detail": f"best epoch {epochs}/{epochs}"}


def test_live_lines_fit_80_columns_and_show_bars_eta_accuracy_and_best():
    display = LiveDisplay(state(), Console(file=io.StringIO(), width=80, force_terminal=True))
    now = time.time()
    for event in events(now - 30, 0, 15, 0.91):
        display.handle(event)
    for event in list(events(now - 10, 1, 15, 0.95))[:6]:  # trial 1 at epoch 5 of 15
        display.handle(event)
    lines = display.lines(80)
    assert all(len(line) <= 80 for line in lines), lines
    assert re.match(r"study a-rather-long-study-name [━╸ ]+ 1/20 trials \| 1m0\ds \| .+ left",
                    lines[0]), lines[0]
    assert lines[1] == "best val_accuracy 0.9100 (trial 0)"
    assert re.match(r"trial   1 [━╸ ]+ 5/15 acc 0.840/0.740 loss 0.500/0.600 \d+s left",
                    lines[2]), lines[2]
    assert "10s left" in lines[2]  # 5 epochs in 5 s, 10 to go


def test_finished_line_names_state_value_and_parameters_against_the_best():
    s, out = state(), io.StringIO()
    display = PlainDisplay(s, out)
    now = time.time()
    for event in events(now - 40, 0, 2, 0.91):
        display.handle(event)
    ended = list(events(now - 20, 1, 2, 0.85))
    ended[-1]["params"] = {**ended[-1]["params"], "learning_rate": 0.002}
    for event in ended:
        display.handle(event)
    lines = out.getvalue().splitlines()
    assert lines[2].startswith("trial   0 complete val_accuracy 0.9100 new best, best epoch")
    assert "lr=0.000561 " in lines[2] and "0.0005611516" not in lines[2]
    assert lines[-1].startswith("trial   1 complete val_accuracy 0.8500 (best 0.9100 #0)")
    assert "lr=0.002 (best 0.000561)" in lines[-1] and "batch=64 " in lines[-1]
    assert re.fullmatch(r"trial   1 \[2/20\] epoch   2/15 acc 0.810/0.710 loss 0.500/0.600 "
                        r"\| \d+s left", lines[-2]), lines[-2]


def test_redraws_at_most_4_per_second_and_cost_under_1_percent():
    """Measured: events arrive far faster than redraws; the display redraws at most
    MAX_REFRESH_PER_SECOND times a second and its redraws take < 1% of the time."""
    console = Console(file=io.StringIO(), width=80, force_terminal=True)
    display = LiveDisplay(state(), console)
    display.start()
    began = time.time()
    n = 0
    while time.time() - began < 3.0:
        for event in events(time.time(), n % 3, 15, 0.9):
            display.handle(event)
        n += 1
        time.sleep(0.01)
    display.stop()
    elapsed = time.time() - began
    assert display.refreshes <= MAX_REFRESH_PER_SECOND * elapsed + 2, display.refreshes
    assert display.refreshes >= 4
    share = display.refresh_seconds / elapsed
    print(f"display: {display.refreshes} redraws in {elapsed:.1f} s, "
          f"{1000 * display.refresh_seconds / display.refreshes:.2f} ms each, "
          f"{100 * share:.3f}% of the time")
    assert share < 0.01, share
