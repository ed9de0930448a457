"""An MLflow tracking server (UI, REST API and artifact serving) as a child process, and
``serve``: the server with optuna-dashboard beside it, each link printed once it answers.

optuna-dashboard runs as a program of its own (``optuna-dashboard STORAGE``), never
imported here: it is Optuna's (``search/``), and this module only starts it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .store import artifact_root, resolve_tracking_uri

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(*, backend_store_uri: str, host: str = "127.0.0.1", port: int = 5000,
                   artifacts_destination: str | None = None,
                   allowed_hosts: str | None = None, cors_origins: str | None = None,
                   workers: int = 1, access_log: bool = False) -> list[str]:
    """``mlflow server`` with artifact serving. Binding beyond loopback must name who may
    connect: MLflow's security middleware checks the Host header and CORS origin.
    ``access_log``: one line per HTTP request (uvicorn's access log; off by default, the UI
    makes hundreds of requests a minute)."""
    backend = resolve_tracking_uri(backend_store_uri)
    destination = artifacts_destination or artifact_root(backend)
    mlflow = shutil.which("mlflow")
    command = ([mlflow] if mlflow else [sys.executable, "-m", "mlflow"]) + [
        "server", "--backend-store-uri", backend, "--host", host, "--port", str(port),
        "--workers", str(workers), "--serve-artifacts"]
    if not access_log:
        command += ["--uvicorn-opts", "--no-access-log"]
    if destination:
        if destination.startswith("file://"):
            Path(destination[len("file://"):]).mkdir(parents=True, exist_ok=True)
        command += ["--artifacts-destination", destination]
    if host not in LOCAL_HOSTS:
        if not allowed_hosts:
            raise ValueError(f"binding to {host} exposes the server: name the host names "
                             "clients use with --allowed-hosts (e.g. 'tracking.lab.org:5000')")
        command += ["--allowed-hosts", allowed_hosts,
                    "--cors-allowed-origins", cors_origins or ",".join(
                        f"http://{h}" for h in allowed_hosts.split(","))]
    return command


@dataclass
class RunningServer:
    process: subprocess.Popen
    url: str

    def stop(self, timeout: float = 20) -> None:
        """Stop the server and the workers it started (uvicorn, job consumers): the whole
        process group, which ``start_server`` made its own."""
        _signal_group(self.process, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.process, signal.SIGKILL)  # whatever ignored the first signal
        self.process.wait()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def answers(url: str, path: str = "/health") -> bool:
    try:
        with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until_up(url: str, timeout: float = 90, process: subprocess.Popen | None = None,
                  path: str = "/health", what: str = "the MLflow server") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode}")
        if answers(url, path):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} at {url} did not answer within {timeout:.0f} s")


def start_server(*, backend_store_uri: str, host: str = "127.0.0.1", port: int | None = None,
                 quiet: bool = True, **kwargs) -> RunningServer:
    port = port or free_port(host if host in LOCAL_HOSTS else "0.0.0.0")
    command = server_command(backend_store_uri=backend_store_uri, host=host, port=port, **kwargs)
    out = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    try:
        wait_until_up(url, process=process)
    except BaseException:
        RunningServer(process, url).stop()
        raise
    return RunningServer(process, url)


# -- tunelab server: the MLflow UI and optuna-dashboard ---------------------------------------
DASHBOARD_HEALTH = "/api/meta"


def dashboard_program() -> str | None:
    """The ``optuna-dashboard`` program of this Python environment, or None."""
    beside = Path(sys.executable).parent / "optuna-dashboard"
    return str(beside) if beside.is_file() else shutil.which("optuna-dashboard")


def dashboard_command(storage: str, *, storage_class: str | None = None,
                      host: str = "127.0.0.1", port: int = 8080,
                      access_log: bool = False) -> list[str] | None:
    """``optuna-dashboard`` on the study storage (None when it is not installed). Without
    the access log it runs under gunicorn at log level error (its wsgiref server logs every
    request whatever ``--quiet`` says)."""
    program = dashboard_program()
    if program is None:
        return None
    command = [program, storage, "--host", host, "--port", str(port)]
    if storage_class:
        command += ["--storage-class", storage_class]
    if access_log:
        command += ["--server", "wsgiref"]
    else:
        import importlib.util

        server = "gunicorn" if importlib.util.find_spec("gunicorn") else "wsgiref"
        command += ["--server", server, "--quiet"]
    return command


@dataclass
class _Service:
    what: str
    process: subprocess.Popen
    url: str
    health: str
    up: bool = False


def study_links(url: str, limit: int = 10) -> list[str]:
    """One line per tunelab study on the server: its runs table, in model-training mode."""
    from mlflow import MlflowClient

    from . import ui
    from .runs import ROLE_TAG, STUDY_TAG

    try:
        experiments = MlflowClient(tracking_uri=url).search_experiments(max_results=1000)
    except Exception as err:  # the links are a convenience
        return [f"(could not list the studies: {type(err).__name__}: {err})"]
    studies = [e for e in experiments if STUDY_TAG in e.tags
               and e.tags.get(ROLE_TAG, "study") == "study"]
    lines = [f"study {e.name}: {ui.runs_url(url, e.experiment_id)}" for e in studies[:limit]]
    if len(studies) > limit:
        lines.append(f"... {len(studies) - limit} more: {ui.runs_url(url, None)}")
    return lines or [f"no study yet; the experiments: {ui.runs_url(url, None)}"]


def serve(*, mlflow_command: list[str], mlflow_url: str, dashboard: list[str] | None,
          dashboard_url: str | None, storage: str | None = None, timeout: float = 900,
          out=None, errors_only: Callable[[TextIO, str], None] | None = None) -> int:
    """Start the MLflow server and optuna-dashboard, print each one's links once it answers
    (the MLflow server takes a minute or more to start on a busy machine), then wait until
    the MLflow server exits or Ctrl-C; both stop with their whole process groups.

    ``errors_only``: each server's output (stdout and stderr) goes to it, in a thread of its
    own, with the server's name, instead of to this terminal (tunelab's quiet mode passes on
    only what says something went wrong)."""
    out = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    def start(command: list[str], what: str) -> subprocess.Popen:
        if errors_only is None:
            return subprocess.Popen(command, start_new_session=True)
        process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        threading.Thread(target=errors_only, args=(process.stdout, what), daemon=True).start()
        return process

    started = time.time()
    services = [_Service("MLflow UI", start(mlflow_command, "server"), mlflow_url, "/health")]
    if dashboard is not None and dashboard_url is not None:
        services.append(_Service("optuna-dashboard", start(dashboard, "optuna-dashboard"),
                                 dashboard_url, DASHBOARD_HEALTH))
    say("tunelab: starting " + " and ".join(s.what for s in services)
        + "; the links follow once each one answers")
    try:
        while not all(s.up for s in services):
            for s in services:
                if s.up:
                    continue
                if s.process.poll() is not None:
                    if s is services[0]:
                        say(f"tunelab: the MLflow server exited with code "
                            f"{s.process.returncode}; see its output above"
                            + ("" if errors_only is None else " (all of it with -v)"))
                        return s.process.returncode or 1
                    say(f"tunelab: optuna-dashboard exited with code {s.process.returncode}"
                        "; the MLflow UI goes on without it")
                    services.remove(s)
                    break
                if answers(s.url, s.health):
                    s.up = True
                    waited = time.time() - started
                    if s is services[0]:
                        say(f"tunelab: MLflow UI at {s.url} (answered after {waited:.0f} s)")
                        for line in study_links(s.url):
                            say(f"         {line}")
                        say(f"         log to it with: tunelab tune --tracking-uri {s.url}")
                    else:
                        say(f"tunelab: optuna-dashboard at {s.url}/dashboard (answered after "
                            f"{waited:.0f} s; storage {storage})")
            if time.time() - started > timeout:
                late = ", ".join(s.what for s in services if not s.up)
                say(f"tunelab: {late} did not answer within {timeout:.0f} s")
                return 1
            time.sleep(0.5)
        while services[0].process.poll() is None:
            if len(services) > 1 and services[1].process.poll() is not None:
                say(f"tunelab: optuna-dashboard exited with code "
                    f"{services[1].process.returncode}; the MLflow UI goes on without it")
                services.pop()
            time.sleep(0.5)
        return services[0].process.returncode
    except KeyboardInterrupt:
        return 0
    finally:
        for s in services:
            RunningServer(s.process, s.url).stop()
