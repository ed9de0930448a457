"""Real stores, real files, the real CLI: what the fault tests share."""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest


def run_cli(*args: str, cwd: Path, env: dict | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m tunelab ARGS`` in ``cwd``: exit code, stdout and stderr as a user sees."""
    return subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=cwd,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes: equal snapshots, nothing written."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` grey pixels with one row of data: what
    a decompression bomb looks like to a reader that trusts the header, in 100 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.parent.mkdir(parents=True, exist_ok=True)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * (width + 1)))
                     + chunk(b"IEND", b""))
    return path


class _Payload:
    """Unpickling this calls os.system: what a crafted CIFAR-10 file carries."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def cifar_folder(root: Path, marker: Path | None = None, protocol: int = 2) -> Path:
    """A CIFAR-10 python folder (two classes, 12 + 6 images); with ``marker``, its
    ``batches.meta`` carries a payload that would create that file."""
    root.mkdir(parents=True, exist_ok=True)
    meta = {b"label_names": [b"cat", b"dog"]}
    if marker is not None:
        meta[b"num_cases_per_batch"] = _Payload(f"touch {marker}")
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 12), ("test_batch", 6)):
        batch = {b"batch_label": b"batch", b"labels": [i % 2 for i in range(n)],
                 b"data": rng.integers(0, 256, (n, 3072), dtype="uint8"),
                 b"filenames": [f"img{i}.png".encode() for i in range(n)]}
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return root


def small_npz(path: Path, n: int = 24, size: int = 8, seed: int = 0) -> Path:
    """A MedMNIST-style .npz of two classes (other data than digits)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = (rng.uniform(0, 80, (n, size, size)) + 150 * y[:, None, None]).astype("uint8")
    np.savez(path, train_images=x, train_labels=y, val_images=x[::3], val_labels=y[::3])
    return path


def image_folder(root: Path, classes: dict[str, float], n: int, size: int = 12) -> Path:
    """``root/<class>/img_<i>.png``: 8-bit grey images around each class's brightness."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, value in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            grey = np.clip(value + rng.uniform(-0.1, 0.1, (size, size)), 0, 1)
            Image.fromarray((grey * 255).astype("uint8"), "L").save(root / name / f"img_{i}.png")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tools():
    """The helpers above, for the tests of this folder."""
    from types import SimpleNamespace

    return SimpleNamespace(run_cli=run_cli, snapshot=snapshot, png_header=png_header,
                           cifar_folder=cifar_folder, small_npz=small_npz, free_port=free_port,
                           image_folder=image_folder)
