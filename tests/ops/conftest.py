"""A throwaway PostgreSQL cluster and MLflow server for the scale-out tests."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
               if (p / "initdb").exists()), None) if Path("/usr/lib/postgresql").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    runner = shutil.which("runuser")
    return [runner, "-u", "postgres", "--", *args] if runner else ["su", "postgres", "-c",
                                                                     " ".join(args)]


@pytest.fixture(scope="session")
def postgres_url():
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin")
    pytest.importorskip("psycopg", reason="pip install 'tunelab[postgres]'")
    root = Path(tempfile.mkdtemp(prefix="tunelab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                 str(root / "log"), "-w", "-o",
                                 f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
                                 "start"]), check=True, capture_output=True)
    try:
        subprocess.run([str(PG_BIN.parent / "bin" / "createdb") if (PG_BIN / "createdb").exists()
                        else "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "tunelab"], check=True, capture_output=True)
        yield f"postgresql://postgres@127.0.0.1:{port}/tunelab"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                     "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tunelab_server(tmp_path):
    """A real `tunelab server` process on a free port over an SQLite store in tmp_path."""
    port = _free_port()
    proc = subprocess.Popen(["tunelab", "server", "--port", str(port), "--backend-store-uri",
                             f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}",
                             "--no-dashboard"],  # the scale-out tests need the MLflow UI only
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    from tunelab.tracking.server import wait_until_up

    try:
        wait_until_up(url, timeout=120, process=proc)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
