"""One benchmark run in a fresh interpreter: the script again, with the parent's flags and
``--child ARG...``; the child writes its result as JSON to ``result``, which the parent reads
and removes. So no run pays for an earlier run's graphs, leaks and caches (in one process the
time outside ``fit`` grew from 0.6 s to 6 s a trial over 81 runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_in_fresh_process(script: str, argv: list[str] | None, child: list[str],
                         result: Path) -> Any:
    result.unlink(missing_ok=True)
    flags = list(sys.argv[1:] if argv is None else argv)
    subprocess.run([sys.executable, script, *flags, "--child", *child], check=True)
    value = json.loads(result.read_text())
    result.unlink()
    return value
