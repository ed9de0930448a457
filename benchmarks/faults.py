"""Faults a study must survive, one row per case: a reused study name, a tracking outage,
bad input, a data file that carries code.

Each case is a function that makes a fresh folder with real stores (an Optuna journal file
and an SQLite MLflow store, or a real `tunelab server`), provokes one fault through the real
CLI (`python -m tunelab ...` subprocesses) and returns one row:

- ``case``: what was done;
- ``exit``: the exit code of the command that met the fault (2: refused at the door);
- ``trials mixed``: trials a refused command added to an existing study, plus MLflow trial
  runs whose data fingerprint or model is not the study's (what a reused name used to do);
- ``runs RUNNING``: MLflow runs and Optuna trials left RUNNING in the case's stores;
- ``written on refusal``: whether a refused command changed any file of the stores (``-``
  for a case that is not a refusal);
- ``seconds``: wall time of the case, its setup included;
- ``note``: what else the case checked.

    python benchmarks/faults.py                  # every case (~6 minutes on 2 idle cores)
    python benchmarks/faults.py --quick          # the cases that need no trained study
    python benchmarks/faults.py --case empty-study-file --case cifar10-pickle-payload
    python benchmarks/faults.py --list
    python benchmarks/faults.py --process [--quick]     # the process faults (process_faults.py)
    python benchmarks/faults.py --shared-data /path/to/shared/data   # BreastMNIST as other data

The last line of the output is the rows as JSON. A new case is a function ``case_x(ctx)``
returning ``row(...)``, added to ``CASES`` with whether ``--quick`` runs it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"  # ../shared/data, as the tests read it
# no retries: a dead server fails each call at once (a live one on a loaded machine may take
# seconds to answer, hence the long timeout)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
       "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
COLUMNS = ("case", "exit", "trials mixed", "runs RUNNING", "written on refusal", "seconds",
           "note")


# -- the stores and the CLI ---------------------------------------------------------------
@dataclass
class Context:
    root: Path
    quick: bool
    shared_data: Path = SHARED_DATA
    _base: tuple[Path, dict] | None = None

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def base_study(self) -> tuple[Path, dict]:
        """One tiny study (1 trial, 1 epoch, 8x8 digits) made through the CLI, shared by the
        reused-name cases (each is a refusal: none may change it)."""
        if self._base is None:
            folder = self.folder("base")
            raw = tiny_study(folder)
            (folder / "study.yaml").write_text(yaml.safe_dump(raw))
            result = cli("tune", "study.yaml", cwd=folder)
            if result.returncode != 0:
                raise RuntimeError("the base study failed:\n" + result.stderr[-3000:])
            self._base = (folder, raw)
        return self._base


def tiny_study(folder: Path, **overrides) -> dict:
    raw = {"study_name": "tiny", "model": "lenet",
           "dataset": {"source": "digits", "image_size": 8,
                       "cache_dir": str(folder / "cache")},
           "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                     "n_base": [4, 8], "batch_size": 128, "dense_units": 16},
           "n_trials": 1, "max_epochs": 1, "pruner": {"kind": "none"},
           "storage": str(folder / "mlruns" / "optuna.journal"),
           "tracking_uri": f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"}
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return raw


def cli(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, str]:
    """The stores' files (``mlruns/``) and their hashes."""
    store = folder / "mlruns"
    if not store.exists():
        return {}
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


def optuna_trials(journal: Path) -> dict[str, list]:
    """Study name -> its trials, for every study in a journal file."""
    if not journal.is_file():
        return {}
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal)))
    return {s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).trials
            for s in optuna.get_all_study_summaries(storage)}


def mlflow_runs(uri: str | None) -> list:
    if uri is None or (uri.startswith("sqlite:///")
                       and not Path(uri.removeprefix("sqlite:///")).is_file()):
        return []
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, max_results=5000)) if ids else []


def running(folder: Path, uri: str | None = None) -> int:
    """MLflow runs and Optuna trials left RUNNING in the case's stores."""
    uri = uri or f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    trials = [t for ts in optuna_trials(folder / "mlruns" / "optuna.journal").values()
              for t in ts]
    return (sum(t.state.name == "RUNNING" for t in trials)
            + sum(r.info.status == "RUNNING" for r in mlflow_runs(uri)))


def foreign_runs(folder: Path, study_name: str, uri: str | None = None) -> int:
    """Trial runs of the study whose data fingerprint or model is not its identity's."""
    import optuna

    uri = uri or f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(folder / "mlruns" / "optuna.journal")))
    identity = optuna.load_study(study_name=study_name,
                                 storage=storage).user_attrs["tunelab.identity"]
    return sum(1 for r in mlflow_runs(uri)
               if r.data.tags.get("tunelab.role") == "trial"
               and r.data.tags.get("tunelab.study") == study_name
               and (r.data.params.get("data_fingerprint") != identity["data"]["fingerprint"]
                    or r.data.params.get("model") not in identity["model"]))


def row(case: str, exit_code: int, mixed: int, left_running: int, written: bool | None,
        started: float, note: str = "") -> dict:
    return {"case": case, "exit": exit_code, "trials mixed": mixed,
            "runs RUNNING": left_running, "written on refusal": written,
            "seconds": round(time.time() - started, 1), "note": note}


def refused(case: str, folder: Path, started: float, *args: str, study_name: str | None = None,
            note: str = "") -> dict:
    """Run one command that must be refused; measure what it left."""
    before = snapshot(folder)
    trials_before = {n: len(t) for n, t in optuna_trials(folder / "mlruns" /
                                                         "optuna.journal").items()}
    result = cli(*args, cwd=folder)
    trials_after = {n: len(t) for n, t in optuna_trials(folder / "mlruns" /
                                                        "optuna.journal").items()}
    added = sum(trials_after.get(n, 0) - trials_before.get(n, 0) for n in trials_after)
    mixed = added + (foreign_runs(folder, study_name) if study_name else 0)
    first_error = next((line for line in result.stderr.splitlines()
                        if line.startswith("tunelab: error:")), "")
    first_error = first_error.removeprefix("tunelab: error: ").replace(f"{folder}/", "")
    named = re.findall(r"^  ([\w.]+): stored ", result.stderr, re.M)  # a refused resume
    if named:
        first_error = "refused, naming " + ", ".join(named)
    traceback = "Traceback" in result.stderr
    note = "; ".join(x for x in (note, _clip(first_error), "TRACEBACK" if traceback else "")
                     if x)
    return row(case, result.returncode, mixed, running(folder), snapshot(folder) != before,
               started, note)


def crash(server: subprocess.Popen) -> None:
    """SIGKILL a `tunelab server` and the MLflow server it runs in a session of its own (a
    signal to the wrapper's group alone would leave MLflow serving)."""
    import psutil

    try:
        wrapper = psutil.Process(server.pid)
        victims = [*wrapper.children(recursive=True), wrapper]
    except psutil.NoSuchProcess:
        victims = []
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    server.wait()


def _clip(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[:limit - 3].rstrip() + "..."


# -- files that carry a fault -------------------------------------------------------------
def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height grey pixels (one row of data follows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
                     + chunk(b"IEND", b""))
    return path


def image_folder_with_bomb(folder: Path) -> Path:
    from PIL import Image

    root = folder / "scans"
    rng = np.random.default_rng(0)
    for name, value in (("normal", 60), ("lesion", 190)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            pixels = np.clip(value + rng.normal(0, 10, (12, 12)), 0, 255).astype("uint8")
            Image.fromarray(pixels, "L").save(root / name / f"img_{i}.png")
    png_header(root / "lesion" / "huge.png", 20000, 14000)  # 3.1x Pillow's limit
    return root


class _Payload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def small_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 12)
    x = (rng.uniform(0, 80, (24, 8, 8)) + 150 * y[:, None, None]).astype("uint8")
    np.savez(path, train_images=x, train_labels=y, val_images=x[::3], val_labels=y[::3])
    return path


# -- the cases ----------------------------------------------------------------------------
def case_reused_name_other_data(ctx: Context) -> dict:
    started = time.time()
    folder, _ = ctx.base_study()
    other = ctx.shared_data / "breastmnist.npz"  # the case; else a tiny .npz
    other = other if other.is_file() else small_npz(folder / "other.npz")
    return refused("reused name, other data (--dataset)", folder, started, "tune",
                   "study.yaml", "--dataset", str(other), "--n-trials", "1", study_name="tiny",
                   note=f"--dataset {other.name}")


def case_reused_name_other_model(ctx: Context) -> dict:
    started = time.time()
    folder, _ = ctx.base_study()
    return refused("reused name, other model (--model)", folder, started, "tune", "study.yaml",
                   "--model", "alexnet", study_name="tiny")


def case_reused_name_other_space(ctx: Context) -> dict:
    started = time.time()
    folder, raw = ctx.base_study()
    other = tiny_study(folder, **{"space.n_base": [4, 16]})
    (folder / "other_space.yaml").write_text(yaml.safe_dump(other))
    return refused("reused name, other space (study file)", folder, started, "tune",
                   "other_space.yaml", study_name="tiny")


def case_tracking_killed_then_sync(ctx: Context) -> dict:
    """A tracking server killed while trial 1 trains, back after the study, then sync."""
    started = time.time()
    folder = ctx.folder("outage")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    backend = f"sqlite:///{folder / 'server' / 'mlflow.db'}"

    def server() -> subprocess.Popen:
        from tunelab.tracking.server import wait_until_up

        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "server", "--port", str(port),
                                 "--no-dashboard", "--backend-store-uri", backend], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        wait_until_up(url, timeout=180, process=proc)
        return proc

    raw = tiny_study(folder, n_trials=3, max_epochs=6, tracking_uri=url,
                     **{"early_stopping.enabled": False})
    (folder / "study.yaml").write_text(yaml.safe_dump(raw))
    journal = folder / "mlruns" / "optuna.journal"
    first = server()
    try:
        tune = subprocess.Popen([sys.executable, "-m", "tunelab", "tune", "study.yaml"],
                                cwd=folder, env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 600
        live = 0
        while time.time() < deadline:
            trials = optuna_trials(journal).get("tiny", [])
            if any(t.number == 1 and t.state.name == "RUNNING"
                   and len(t.intermediate_values) >= 2 for t in trials):
                live = len(mlflow_runs(url))  # parent, trial 0 and trial 1, logged live
                break
            time.sleep(0.3)
    finally:
        crash(first)  # the fault; also when something above failed
    out, _ = tune.communicate(timeout=900)
    errors = out.count("tracking error")
    second = server()
    try:
        left = running(folder, url)
        result = cli("sync", "--study-name", "tiny", "--storage", str(journal), cwd=folder)
        runs = mlflow_runs(url)
        parent = [r for r in runs if r.data.tags.get("tunelab.role") == "study"]
        trial_runs = [r for r in runs if r.data.tags.get("tunelab.role") == "trial"]
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=url)
        parent_files = {f.path for f in client.list_artifacts(parent[0].info.run_id)} \
            if parent else set()
        with_matrix = sum("confusion_matrix.png" in {f.path for f in
                                                     client.list_artifacts(r.info.run_id)}
                          for r in trial_runs)
        note = (f"{live} runs live before the kill; tune exit {tune.returncode}, {errors} "
                f"tracking errors; before sync {left} RUNNING; after: parent "
                f"{parent[0].info.status if parent else 'missing'}"
                f"{' with best_trial.json' if 'best_trial.json' in parent_files else ''}, "
                f"{len(trial_runs)} trial runs, {with_matrix} with confusion_matrix.png")
        return row("tracking server killed mid-study, then sync", result.returncode,
                   foreign_runs(folder, "tiny", url), running(folder, url), None, started, note)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=60)


def case_unknown_metric(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("metric")
    (folder / "study.yaml").write_text(yaml.safe_dump(
        tiny_study(folder, **{"objective.metric": "val_acc"})))
    return refused("objective.metric: val_acc", folder, started, "tune", "study.yaml")


def case_unknown_monitor(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("monitor")
    (folder / "study.yaml").write_text(yaml.safe_dump(
        tiny_study(folder, **{"early_stopping.monitor": "val_recall_pneumonia"})))
    return refused("early_stopping.monitor: a class digits lacks", folder, started, "tune",
                   "study.yaml")


def case_empty_study_file(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("empty")
    (folder / "study.yaml").write_text("# nothing here yet\n")
    return refused("empty study file", folder, started, "tune", "study.yaml")


def case_duplicate_key(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("duplicate")
    (folder / "study.yaml").write_text("n_trials: 3\nmax_epochs: 1\nn_trials: 300\n")
    return refused("duplicate YAML key", folder, started, "tune", "study.yaml")


def case_bomb_tune(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("bomb-tune")
    source = image_folder_with_bomb(folder)
    (folder / "study.yaml").write_text(yaml.safe_dump(
        tiny_study(folder, **{"dataset.source": str(source)})))
    return refused("image 3.1x over the pixel limit: tune", folder, started, "tune",
                   "study.yaml")


def case_bomb_inspect(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("bomb-inspect")
    source = image_folder_with_bomb(folder)
    return refused("image 3.1x over the pixel limit: data inspect", folder, started, "data",
                   "inspect", str(source), "--out", str(folder / "grid.png"))


def case_bomb_predict(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("bomb-predict")
    source = image_folder_with_bomb(folder)
    return refused("image 3.1x over the pixel limit: predict", folder, started, "predict",
                   "models:/any@champion", str(source / "lesion" / "huge.png"))


def case_bomb_skipped(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("bomb-skip")
    source = image_folder_with_bomb(folder)
    result = cli("data", "inspect", str(source), "--skip-bad-images", "--out",
                 str(folder / "grid.png"), cwd=folder)
    skipped = "1 unreadable image(s) skipped" in result.stdout
    return row("image over the limit, --skip-bad-images: data inspect", result.returncode, 0,
               running(folder), None, started,
               "skipped by name" if skipped and "huge.png" in result.stderr else "NOT SKIPPED")


def case_cifar_payload(ctx: Context) -> dict:
    started = time.time()
    folder = ctx.folder("cifar")
    root = folder / "cifar-10-batches-py"
    root.mkdir()
    marker = folder / "payload-ran"
    meta = {b"label_names": [b"cat", b"dog"], b"x": _Payload(f"touch {marker}")}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    rng = np.random.default_rng(0)
    (root / "data_batch_1").write_bytes(pickle.dumps(
        {b"data": rng.integers(0, 256, (12, 3072), dtype="uint8"),
         b"labels": [i % 2 for i in range(12)]}, protocol=2))
    out = refused("CIFAR-10 batches.meta with a shell payload: data inspect", folder, started,
                  "data", "inspect", str(root), "--out", str(folder / "grid.png"))
    out["note"] = ("PAYLOAD RAN; " if marker.exists() else "payload did not run; ") + out["note"]
    return out


#: name -> (case, run by --quick)
CASES: dict[str, tuple[Callable[[Context], dict], bool]] = {
    "reused-name-other-data": (case_reused_name_other_data, False),
    "reused-name-other-model": (case_reused_name_other_model, False),
    "reused-name-other-space": (case_reused_name_other_space, False),
    "tracking-killed-then-sync": (case_tracking_killed_then_sync, False),
    "unknown-objective-metric": (case_unknown_metric, True),
    "unknown-early-stopping-monitor": (case_unknown_monitor, False),
    "empty-study-file": (case_empty_study_file, True),
    "duplicate-yaml-key": (case_duplicate_key, True),
    "image-over-pixel-limit-tune": (case_bomb_tune, False),
    "image-over-pixel-limit-inspect": (case_bomb_inspect, True),
    "image-over-pixel-limit-predict": (case_bomb_predict, True),
    "image-over-pixel-limit-skipped": (case_bomb_skipped, False),
    "cifar10-pickle-payload": (case_cifar_payload, True),
}


def show(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="only the cases that need no trained study (smoke test)")
    parser.add_argument("--case", action="append", choices=sorted(CASES),
                        help="run this case (repeatable; default: all, or the quick ones)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--keep", help="keep the cases' folders here (default: a temp dir)")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA,
                        help="folder with breastmnist.npz for the reused-name case (default "
                        "../shared/data; without it a tiny synthetic .npz)")
    parser.add_argument("--process", nargs=argparse.REMAINDER,
                        help="the process faults instead (issue #14: SIGKILL and SIGTERM "
                             "mid-trial, Ctrl-C at each point under load, concurrent starts, "
                             "resume; one row per case, each 20 times): the arguments after "
                             "it go to benchmarks/process_faults.py (--quick, --repeats N, "
                             "--cases ...)")
    args = parser.parse_args()
    if args.process is not None:
        import subprocess

        return subprocess.call([sys.executable, str(Path(__file__).with_name(
            "process_faults.py")), *args.process])
    if args.list:
        for name, (_, quick) in CASES.items():
            print(f"{name}{'  (quick)' if quick else ''}")
        return 0
    names = args.case or [n for n, (_, quick) in CASES.items() if quick or not args.quick]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="tunelab-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    ctx = Context(root, args.quick, args.shared_data)
    rows = []
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
    try:
        for name in names:
            result = CASES[name][0](ctx)
            rows.append(result)
            print("| " + " | ".join(show(result[c]) for c in COLUMNS) + " |", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
