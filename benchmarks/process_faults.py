"""Process faults: a study survives its processes. One row per case, every count 0.

Each case runs the real CLI (``python -m tunelab tune``) as real subprocesses on real stores
(Optuna's journal file, MLflow's SQLite store) in a fresh folder, with a CPU hog per core
beside it (``python -c "while True: pass"``), on tiny studies (8x8 digits):

- ``sigkill-mid-trial``: SIGKILL to the process group while trial 0 trains, then the same
  command again; it must fail the dead trial, retry it once and finish the budget.
- ``sigterm-mid-trial``: SIGTERM to ``tune`` alone (what ``timeout``, systemd and Slurm send)
  while trial 0 trains: exit 143, the trial FAIL, its run and the parent run KILLED; rerun.
- ``ctrl-c@<point>``: one SIGINT to the process group at start-up, data loading, a trial's
  first epoch, between trials, a worker recycle: exit 130 within 15 s, no traceback.
- ``concurrent-starts``: two ``tune`` processes started together on one new folder: both
  track, no trial is trained twice.
- ``resume``: a finished study resumed with a larger budget draws new points.

Columns: exit code(s), trials lost (budget not finished after recovery, or a finished trial
without its finished MLflow run), trials or runs left RUNNING, duplicated runs (two MLflow
runs for one trial), replayed parameter sets (two trials with the same hyperparameters,
retries of a dead trial aside), seconds to recover (the rerun's wall time; for Ctrl-C and
SIGTERM, the seconds from the signal to the exit).

    python benchmarks/process_faults.py          # each Ctrl-C point 20 times, the rest once
    python benchmarks/process_faults.py --repeats 3 --cases ctrl-c@first-epoch
    python benchmarks/process_faults.py --quick  # each case once
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

CTRL_C_POINTS = ("start-up", "data-loading", "first-epoch", "between-trials", "recycle")
COLUMNS = ("case", "exit code", "trials lost", "runs left RUNNING", "duplicated runs",
           "replayed parameter sets", "tracebacks", "seconds to recover")


# -- a study in a folder -----------------------------------------------------------------
def study_file(root: Path, **overrides) -> Path:
    """A tiny study on 8x8 digits whose stores live under ``root/mlruns``."""
    raw = {
        "study_name": "faults",
        "model": "lenet",
        "dataset": {"source": "digits", "image_size": 8},
        "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                  "n_base": [4, 8], "batch_size": 128, "dense_units": 16},
        "n_trials": 2, "max_epochs": 2, "pruner": {"kind": "none"},
        "early_stopping": {"enabled": False},
        "storage": str(root / "mlruns" / "optuna.journal"),
        "tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "heartbeat_interval": 2,
    }
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    root.mkdir(parents=True, exist_ok=True)
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _default_sigint() -> None:
    # a terminal's foreground job gets SIGINT at its default, whatever this benchmark was
    # started with (`nohup ... &` in a script ignores it, and children inherit that)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_tune(root: Path, *flags: str, sigint_ignored: bool = False) -> subprocess.Popen:
    """``python -m tunelab tune study.yaml FLAGS`` in its own process group (a terminal's
    foreground job), output merged. ``sigint_ignored``: started the way a non-interactive
    shell starts a background job (``cmd &``), with SIGINT ignored, which Python and every
    child keep unless told otherwise."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "tunelab", "tune", "study.yaml", *flags],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=env,
                            preexec_fn=_ignore_sigint if sigint_ignored else _default_sigint)


def trials(root: Path, name: str = "faults") -> list:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    journal = root / "mlruns" / "optuna.journal"
    if not journal.exists():
        return []
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    try:
        return optuna.load_study(study_name=name, storage=storage).trials
    except KeyError:
        return []


def runs(root: Path, name: str = "faults") -> list:
    from mlflow import MlflowClient

    db = root / "mlruns" / "mlflow.db"
    if not db.exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name(name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def wait_until(predicate, timeout: float, every: float = 0.2, proc=None) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(predicate())
        time.sleep(every)
    return False


def training(root: Path, number: int) -> bool:
    """Trial ``number`` is RUNNING and has reported an epoch."""
    return any(t.number == number and t.state.name == "RUNNING" and t.intermediate_values
               for t in trials(root))


@contextlib.contextmanager
def cpu_hog(n: int | None = None):
    """One busy Python process per core (the load a shared machine has)."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(n or os.cpu_count() or 2)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def finish(proc: subprocess.Popen, timeout: float,
           on_exit=None) -> tuple[int | None, str]:
    """The exit code (None: killed after ``timeout``) and the output. The process's own exit
    counts, not the end of its output: the tracking writer (its own session) may still hold
    the pipe while it finishes the calls it was handed. ``on_exit()`` runs at the exit,
    before the output has ended."""
    import threading

    chunks: list[str] = []
    reader = threading.Thread(target=lambda: chunks.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        code = None
    if on_exit is not None:
        on_exit()
    reader.join(timeout=60)
    return code, "".join(chunks)


# -- what a folder looks like after a case -------------------------------------------------
def audit(root: Path, n_trials: int | None = None) -> dict:
    """The counts of a row, read from the stores."""
    ts = trials(root)
    rs = runs(root)
    trial_runs = [r for r in rs if r.data.tags.get("tunelab.role") == "trial"]
    per_trial = Counter(r.data.tags.get("tunelab.trial") for r in trial_runs)
    finished_runs = {r.data.tags.get("tunelab.trial") for r in trial_runs
                     if r.info.status == "FINISHED"}
    counted = [t for t in ts if t.state.name in ("COMPLETE", "PRUNED")]
    lost = sum(1 for t in counted if str(t.number) not in finished_runs)
    if n_trials is not None:
        lost += max(0, n_trials - len(counted))
    running = (sum(1 for t in ts if t.state.name == "RUNNING")
               + sum(1 for r in rs if r.info.status == "RUNNING"))
    trained = [t for t in ts if t.params and "skipped" not in t.user_attrs]
    seen: dict[tuple, list] = {}
    for t in trained:
        seen.setdefault(tuple(sorted(t.params.items())), []).append(t)
    replayed = 0
    for same in seen.values():
        retries = {t.user_attrs.get("retry_of") for t in same} - {None}
        originals = [t for t in same if t.user_attrs.get("retry_of") is None
                     and t.number not in retries]
        replayed += max(0, len(originals) - 1) + sum(
            1 for t in same if t.user_attrs.get("retry_of") is not None
            and t.user_attrs["retry_of"] not in {o.number for o in same})
    return {"trials lost": lost, "runs left RUNNING": running,
            "duplicated runs": sum(c - 1 for c in per_trial.values() if c > 1),
            "replayed parameter sets": replayed, "trials": ts, "runs": rs}


# -- the cases -----------------------------------------------------------------------------
def kill_mid_trial(root: Path, signum: int, *, whole_group: bool) -> dict:
    """Signal ``tune`` while trial 0 trains, then rerun the same command (1 epoch)."""
    study_file(root, max_epochs=60)
    proc = start_tune(root)
    if not wait_until(lambda: training(root, 0), 300, proc=proc):
        code, out = finish(proc, 5)
        raise RuntimeError(f"trial 0 never trained (exit {code}):\n{out[-3000:]}")
    signalled = time.time()
    if whole_group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    first, out1 = finish(proc, 120)
    stopped_in = time.time() - signalled
    killed_state = {t.number: t.state.name for t in trials(root)}
    started = time.time()
    rerun = start_tune(root, "--max-epochs", "1")
    second, out2 = finish(rerun, 400)
    row = audit(root, n_trials=2)
    row.update({"exit code": f"{first}/{second}", "seconds to recover":
                round(time.time() - started, 1), "stopped in": round(stopped_in, 1),
                "first": first, "second": second, "out": out1 + "\n----- rerun\n" + out2,
                "after signal": killed_state})
    return row


def sigkill_mid_trial(root: Path) -> dict:
    return kill_mid_trial(root, signal.SIGKILL, whole_group=True)


def sigterm_mid_trial(root: Path) -> dict:
    return kill_mid_trial(root, signal.SIGTERM, whole_group=False)


def _children_cmdlines(pid: int) -> list[list[str]]:
    import psutil

    try:
        return [c.cmdline() for c in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def _worker_pids(pid: int) -> set[int]:
    import psutil

    try:
        return {c.pid for c in psutil.Process(pid).children() if "worker" in c.cmdline()}
    except psutil.Error:
        return set()


def ctrl_c(root: Path, point: str, *, sigint_ignored: bool = False) -> dict:
    """One SIGINT to the process group at ``point``; exit 130 within 15 s, no traceback."""
    study_file(root, n_trials=3, max_epochs=3 if point != "first-epoch" else 30,
               trials_per_process=1 if point == "recycle" else 8)
    proc = start_tune(root, sigint_ignored=sigint_ignored)
    first_workers: set[int] = set()
    if point == "start-up":
        time.sleep(0.5)
        ready = proc.poll() is None
    elif point == "data-loading":
        # tune starts its first (standby) worker just before it loads the data, and the
        # worker imports TensorFlow meanwhile: the stop lands in both
        ready = wait_until(lambda: bool(_worker_pids(proc.pid)), 120, 0.02, proc)
    elif point == "first-epoch":
        ready = wait_until(lambda: any(t.state.name == "RUNNING" for t in trials(root)), 300,
                           0.1, proc)
    elif point == "between-trials":
        ready = wait_until(lambda: any(t.state.name == "COMPLETE" for t in trials(root)),
                           300, 0.05, proc)
    elif point == "recycle":
        def recycled() -> bool:
            now = _worker_pids(proc.pid)
            if not first_workers:
                first_workers.update(now)
                return False
            return now != first_workers  # the first worker exited; its successor starts
        ready = wait_until(recycled, 300, 0.05, proc)
    else:
        raise ValueError(point)
    if not ready:
        code, out = finish(proc, 5)
        raise RuntimeError(f"{point} never reached (exit {code}):\n{out[-3000:]}")
    signalled = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    at_exit: dict = {}

    def exited() -> None:  # the prompt is back
        at_exit["seconds"] = time.time() - signalled

    code, out = finish(proc, 120, on_exit=exited)
    if code == -signal.SIGINT:
        # killed by the signal itself: it came before the interpreter had installed its
        # handler (start-up under load), where nothing has been written; a shell's $? is
        # 130 for this too
        code = 130
    seconds = at_exit["seconds"]
    # read once the tracking writer (its own session, which outlives the command to finish
    # the calls it was handed, e.g. the run end of a trial that completed just before) is done
    row = audit(root)
    row["writer done after"] = round(time.time() - signalled - seconds, 1)
    (root / "output.txt").write_text(out)  # kept with the stores, to look at a miss later
    missed = int(code != 130 or seconds > 15 or "Traceback" in out)
    row.update({"exit code": code, "seconds to recover": round(seconds, 1), "missed": missed,
                "traceback": int("Traceback" in out), "out": out})
    return row


def concurrent_starts(root: Path) -> dict:
    """Two ``tune`` processes started together on one new folder."""
    study_file(root, n_trials=4, max_epochs=1)
    started = time.time()
    procs = [start_tune(root) for _ in range(2)]
    results = [finish(p, 400) for p in procs]
    row = audit(root, n_trials=4)
    untracked = sum("tracking" in out and "unavailable" in out for _, out in results)
    no_run = sum(1 for t in row["trials"] if t.state.name == "COMPLETE"
                 and not t.user_attrs.get("mlflow_run_id"))
    row["trials lost"] += no_run + untracked  # a process that ran without tracking is a miss
    row.update({"exit code": "/".join(str(c) for c, _ in results),
                "seconds to recover": round(time.time() - started, 1),
                "untracked": untracked, "codes": [c for c, _ in results],
                "out": "\n-----\n".join(out for _, out in results)})
    return row


def resume(root: Path) -> dict:
    """A finished study, then the same command with a larger budget."""
    study_file(root, n_trials=2, max_epochs=1)
    first, out1 = finish(start_tune(root), 400)
    started = time.time()
    second, out2 = finish(start_tune(root, "--n-trials", "4"), 400)
    row = audit(root, n_trials=4)
    row.update({"exit code": f"{first}/{second}", "first": first, "second": second,
                "seconds to recover": round(time.time() - started, 1),
                "out": out1 + "\n----- resumed\n" + out2})
    return row


CASES = {"sigkill-mid-trial": sigkill_mid_trial, "sigterm-mid-trial": sigterm_mid_trial,
         **{f"ctrl-c@{p}": (lambda root, p=p: ctrl_c(root, p)) for p in CTRL_C_POINTS},
         "ctrl-c@first-epoch, SIGINT inherited ignored":
             lambda root: ctrl_c(root, "first-epoch", sigint_ignored=True),
         "ctrl-c@start-up, SIGINT inherited ignored":
             lambda root: ctrl_c(root, "start-up", sigint_ignored=True),
         "concurrent-starts": concurrent_starts, "resume": resume}


def run_case(name: str, root: Path | None = None) -> dict:
    root = root or Path(tempfile.mkdtemp(prefix=f"tunelab-faults-{name.replace('@', '-')}-"))
    return CASES[name](root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="repetitions of every case (default: 20 for each Ctrl-C point, "
                             "as issue #14 asks, and 1 for the others)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--quick", action="store_true", help="each case once")
    parser.add_argument("--no-hog", action="store_true", help="without the CPU hog")
    parser.add_argument("--json", help="write every row here")
    args = parser.parse_args()
    rows = []
    with contextlib.nullcontext() if args.no_hog else cpu_hog():
        for name in args.cases:
            results = []
            repeats = 1 if args.quick else args.repeats or (
                20 if name.startswith("ctrl-c@") else 1)
            for i in range(repeats):
                root = Path(tempfile.mkdtemp(
                    prefix=f"tunelab-faults-{name.replace('@', '-').replace(' ', '')}-"))
                try:
                    result = run_case(name, root)
                    results.append(result)
                    (root / "output.txt").write_text(result.get("out", ""))
                    bad = [k for k in ("trials lost", "runs left RUNNING", "duplicated runs",
                                       "replayed parameter sets") if result.get(k)]
                    if "Traceback" in result.get("out", ""):
                        bad.append("traceback")
                    if result.get("missed") and not bad:
                        bad.append("exit code or time")
                    print(f"  {name} {i + 1}/{repeats}: exit {result['exit code']}, "
                          f"{result['seconds to recover']} s"
                          + (f", MISS ({', '.join(bad)}) kept in {root}" if bad else ""),
                          flush=True)
                except Exception as err:  # a case that cannot even start is a miss
                    results.append({"exit code": f"error: {err}"[:60], "trials lost": 1,
                                    "runs left RUNNING": 0, "duplicated runs": 0,
                                    "replayed parameter sets": 0, "tracebacks": 0,
                                    "seconds to recover": 0})
            codes = Counter(str(r["exit code"]) for r in results)
            row = {"case": f"{name} (x{repeats})",
                   "exit code": ", ".join(f"{c}" + (f" x{n}" if n > 1 else "")
                                          for c, n in codes.items()),
                   **{k: sum(int(r[k]) for r in results) for k in COLUMNS[2:6]},
                   "tracebacks": sum("Traceback" in r.get("out", "") for r in results),
                   "seconds to recover": max(float(r["seconds to recover"])
                                             for r in results)}
            rows.append(row)
            print(" | ".join(str(row[k]) for k in COLUMNS), flush=True)
    print("\n| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in COLUMNS) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if any(r[k] for k in COLUMNS[2:7])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
