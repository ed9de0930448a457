"""Workers on PostgreSQL: trials per minute with 1, 2 and 4 workers and a cheap objective.

The objective only sleeps (``--trial-seconds`` split over ``--epochs`` reported epochs) and
records a history and summary like tunelab's, so a perfect storage would scale linearly with
the workers; what is lost is the storage's coordination cost: TPE reading every trial before
each ask (tunelab's sampler: multivariate, constant liar), the median pruner reading the
other trials' intermediate values, heartbeats and user attributes. Storage, sampler and
pruner come from tunelab's ``search/study.py``, loaded by file so worker processes start
without TensorFlow. A throwaway PostgreSQL cluster is started and removed (the binaries from
/usr/lib/postgresql/*/bin; as root, ``initdb`` runs as the ``postgres`` user).

    python benchmarks/workers.py            # 1, 2, 4 workers x 3 repeats, 60 trials of 0.5 s
    python benchmarks/workers.py --quick    # 1 and 2 workers, 6 trials of 0.05 s
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tunelab_study_module():
    """tunelab's search/study.py without importing the package (no TensorFlow)."""
    spec = importlib.util.spec_from_file_location("tunelab_search_study",
                                                  REPO / "search" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- a throwaway PostgreSQL cluster (as tests/ops/conftest.py) --------------------------------
def _pg_bin() -> Path | None:
    root = Path("/usr/lib/postgresql")
    if not root.exists():
        return None
    return next((p for p in sorted(root.glob("*/bin"), reverse=True)
                 if (p / "initdb").exists()), None)


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return [shutil.which("runuser") or "runuser", "-u", "postgres", "--", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_cluster():
    pg = _pg_bin()
    if pg is None:
        raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    root = Path(tempfile.mkdtemp(prefix="tunelab-pg-bench-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8"]), check=True,
                   capture_output=True)
    subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                                 "-w", "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
                                 " -c max_connections=100", "start"]),
                   check=True, capture_output=True)
    try:
        subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "postgres", "bench"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/bench"
    finally:
        subprocess.run(_as_postgres([str(pg / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


class BudgetFilled(Exception):
    pass


# -- one worker process ---------------------------------------------------------------------
def worker(url: str, name: str, n_trials: int, trial_seconds: float, epochs: int,
           index: int, start_at: float) -> None:
    import optuna

    study_mod = tunelab_study_module()
    sampler = study_mod.make_sampler("tpe", seed=index * 7919)
    pruner = study_mod.make_pruner("median", max_epochs=epochs)
    study = study_mod.open_study(storage=url, study_name=name, sampler=sampler, pruner=pruner,
                                 heartbeat_interval=10)

    def objective(trial: optuna.Trial) -> float:
        # tunelab's budget rule (search/objective.py): the storage numbers trials, so a trial
        # numbered past the budget gives up before it trains and is not counted
        if study_mod.over_budget(trial.study, trial.number, n_trials):
            raise BudgetFilled
        lr = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        units = trial.suggest_categorical("dense_units", [16, 32, 64])
        dropout = trial.suggest_float("dropout", 0.0, 0.5)
        trial.suggest_categorical("optimizer", ["adam", "sgd", "rmsprop"])
        history = {"val_accuracy": []}
        for epoch in range(epochs):
            time.sleep(trial_seconds / epochs)  # the "training"
            value = 1 - abs(lr - 3e-3) * 50 - dropout / 10 + units / 1000 + epoch / 100
            history["val_accuracy"].append(value)
            trial.report(value, epoch)
            if trial.should_prune():
                trial.set_user_attr("history", history)
                raise optuna.TrialPruned()
        trial.set_user_attr("history", history)
        trial.set_user_attr("summary", {"best_epoch": epochs, "epochs_trained": epochs})
        return history["val_accuracy"][-1]

    time.sleep(max(0.0, start_at - time.time()))  # every worker starts at once
    while study_mod.counted_trials(study) < n_trials:
        try:
            study.optimize(objective, n_trials=1)
        except BudgetFilled:
            break  # trials still running in other workers fill the budget


def run_level(url: str, n_workers: int, rep: int, args) -> dict:
    study_mod = tunelab_study_module()
    name = f"w{n_workers}-r{rep}"
    study_mod.open_study(storage=url, study_name=name, direction="maximize")
    start_at = time.time() + args.startup
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, name,
                               str(args.trials), str(args.trial_seconds), str(args.epochs),
                               str(i), str(start_at)]) for i in range(n_workers)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a worker exited with code {p.returncode}")
    import optuna

    study = study_mod.open_study(storage=url, study_name=name)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                    optuna.trial.TrialState.PRUNED))
    first = min(t.datetime_start for t in done).timestamp()
    last = max(t.datetime_complete for t in done).timestamp()
    slept = sum(args.trial_seconds / args.epochs * len(t.intermediate_values) for t in done)
    span = last - first
    return {"workers": n_workers, "repeat": rep, "trials": len(done),
            "pruned": sum(t.state.name == "PRUNED" for t in done), "span_s": span,
            "per_minute": 60 * len(done) / span,
            # busy time per trial not spent in the objective's sleep: storage + sampler + pruner
            "overhead_s_per_trial": (n_workers * span - slept) / len(done)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers, 6 short trials")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--trial-seconds", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--startup", type=float, default=4.0,
                        help="seconds for worker processes to import before they all start")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        url, name, n, sec, ep, index, start_at = args.worker
        worker(url, name, int(n), float(sec), int(ep), int(index), float(start_at))
        return
    if args.quick:
        args.workers, args.repeats, args.trials, args.trial_seconds, args.epochs = \
            [1, 2], 1, 6, 0.05, 2
        args.startup = 2.5
    rows = []
    with postgres_cluster() as url:
        for rep in range(args.repeats):
            order = args.workers if rep % 2 == 0 else list(reversed(args.workers))
            for n in order:
                rows.append(run_level(url, n, rep, args))
                r = rows[-1]
                print(f"repeat {rep}: {n} worker(s): {r['trials']} trials ({r['pruned']} "
                      f"pruned) in {r['span_s']:.1f} s = {r['per_minute']:.0f}/min", flush=True)
    print(f"\nPostgreSQL storage, objective {args.trial_seconds} s over {args.epochs} epochs, "
          f"{args.trials} trials per study, {args.repeats} repeat(s)")
    print(f"{'workers':>7} {'trials/min':>24} {'speedup':>8} {'efficiency':>10} "
          f"{'storage+sampler s/trial':>24}")
    base = statistics.median(r["per_minute"] for r in rows if r["workers"] == args.workers[0])
    for n in args.workers:
        mine = [r for r in rows if r["workers"] == n]
        pm = [r["per_minute"] for r in mine]
        med = statistics.median(pm)
        over = statistics.median(r["overhead_s_per_trial"] for r in mine)
        speed = med / base
        print(f"{n:>7} {med:>9.0f} [{min(pm):.0f}, {max(pm):.0f}]{'':>4} {speed:>8.2f} "
              f"{speed / n * args.workers[0]:>10.2f} {over:>24.3f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
