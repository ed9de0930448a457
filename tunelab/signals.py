"""Stop signals, handled one way: SIGTERM (what ``timeout``, systemd and Slurm send) becomes
``Terminated``, a ``KeyboardInterrupt``, so every path that handles Ctrl-C (the trial marked
failed, its MLflow run KILLED, the study's parent run KILLED, the clean message) handles it
too. The command exits 130 after Ctrl-C and 143 after SIGTERM (128 + the signal's number).
"""

from __future__ import annotations

import os
import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled exactly like Ctrl-C, exit code 143."""


def exit_code(interrupt: BaseException) -> int:
    return 128 + signal.SIGTERM if isinstance(interrupt, Terminated) else 128 + signal.SIGINT


def _on_stop(signum, frame) -> None:
    # The first stop signal wins; its copies (Ctrl-C reaches the whole process group, and
    # `tune` forwards it to its workers) must not interrupt the cleanup it starts: a second
    # KeyboardInterrupt raised while the trial records its end would leave it RUNNING.
    ignore_stop_signals()
    if signum == signal.SIGTERM:
        raise Terminated(f"signal {signum} (SIGTERM)")
    raise KeyboardInterrupt


def handle_stop_signals() -> None:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM ``Terminated`` in the main thread,
    once; later copies are ignored. Main thread only, as ``signal.signal`` requires."""
    signal.signal(signal.SIGINT, _on_stop)
    signal.signal(signal.SIGTERM, _on_stop)


def ignore_stop_signals() -> None:
    """After the first stop signal: let the cleanup (the trial's state, the run's end) finish
    instead of being interrupted by the signal's copies (the process group's, the parent's)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _quiet_interrupt_hook(kind, value, tb) -> None:
    """An interrupt that escapes ``main`` (one that lands while the command's modules are
    still importing) exits with its code and no traceback."""
    if issubclass(kind, KeyboardInterrupt):
        sys.stderr.write("\ntunelab: interrupted\n")
        sys.stderr.flush()
        os._exit(exit_code(value))
    sys.__excepthook__(kind, value, tb)


def quiet_interrupts_at_startup() -> None:
    sys.excepthook = _quiet_interrupt_hook
