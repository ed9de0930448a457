"""An MLflow tracking server (UI, REST API and artifact serving) as a child process."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .store import artifact_root, resolve_tracking_uri

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def server_command(*, backend_store_uri: str, host: str = "127.0.0.1", port: int = 5000,
                   artifacts_destination: str | None = None,
                   allowed_hosts: str | None = None, cors_origins: str | None = None,
                   workers: int = 1) -> list[str]:
    """``mlflow server`` with artifact serving. Binding beyond loopback must name who may
    connect: MLflow's security middleware checks the Host header and CORS origin."""
    backend = resolve_tracking_uri(backend_store_uri)
    destination = artifacts_destination or artifact_root(backend)
    mlflow = shutil.which("mlflow")
    command = ([mlflow] if mlflow else [sys.executable, "-m", "mlflow"]) + [
        "server", "--backend-store-uri", backend, "--host", host, "--port", str(port),
        "--workers", str(workers), "--serve-artifacts"]
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


def wait_until_up(url: str, timeout: float = 90, process: subprocess.Popen | None = None,
                  ) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the MLflow server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the MLflow server at {url} did not answer within {timeout:.0f} s")


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
