"""Timestamps from inside a study's real path, for ``benchmarks/orchestration.py``.

With ``TUNELAB_TIMELINE=/path/file.jsonl`` in the environment, ``mark(event, **fields)``
appends one JSON line ``{"t": time.time(), "pid": ..., "event": ..., **fields}`` to that file
(append mode, flushed per line, so the tune process and its workers share one file). Unset,
``mark`` returns at once and nothing is opened. The first mark of a process also records
``process_start`` at the time the kernel started it, so interpreter start-up and imports are
measured too.

Standard library only: Keras is imported inside ``keras_callbacks`` alone (callers of that
have Keras loaded already). Note that importing this module runs ``tunelab.models``' package
``__init__``, which loads Keras: callers without Keras (the shell, the writer process) import
it inside functions, once Keras is loaded anyway.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

ENV = "TUNELAB_TIMELINE"

_path = os.environ.get(ENV) or None
_file = None
_pid = None  # the process _file was opened in (a forked child opens its own)


def enabled() -> bool:
    return _path is not None


def mark(event: str, **fields: Any) -> None:
    """Append one event line (no-op unless TUNELAB_TIMELINE is set)."""
    if _path is None:
        return
    t = time.time()
    pid = os.getpid()
    if _pid != pid:
        _open(pid)
    _write({"t": t, "pid": pid, "event": event, **fields})


def _open(pid: int) -> None:
    global _file, _pid
    _file = open(_path, "a", encoding="utf-8")  # kept open for the process's life
    _pid = pid
    started = _process_started()
    if started is not None:
        _write({"t": started, "pid": pid, "event": "process_start", "argv": sys.argv[1:3]})


def _write(record: dict[str, Any]) -> None:
    _file.write(json.dumps(record, default=str) + "\n")  # one write() per line: O_APPEND
    _file.flush()


def _process_started() -> float | None:
    """Wall-clock time the kernel started this process (Linux /proc, 10 ms resolution);
    None elsewhere."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            stat = f.read()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - age


def keras_callbacks() -> list:
    """``[callback]`` marking fit_begin, epoch_begin and epoch_end (put it first in the list,
    so that epoch_end comes before the other callbacks' work); ``[]`` when off."""
    if _path is None:
        return []
    import keras

    class EpochMarks(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            mark("fit_begin")

        def on_epoch_begin(self, epoch, logs=None):
            mark("epoch_begin", epoch=epoch)

        def on_epoch_end(self, epoch, logs=None):
            mark("epoch_end", epoch=epoch)

    return [EpochMarks()]
