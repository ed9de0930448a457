"""One worker per GPU: which GPUs exist, and which one a worker process gets."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping


def visible_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    environ = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in environ:
        return [g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",")
                if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def worker_env(base: Mapping[str, str], worker_index: int, gpus: list[str]) -> dict[str, str]:
    """The environment of worker ``worker_index``: its own GPU, round robin, memory growth on."""
    env = dict(base)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[worker_index % len(gpus)]
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    return env
