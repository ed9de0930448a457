"""Stop signals, handled one way: SIGTERM (what ``timeout``, systemd and Slurm send) becomes
``Terminated``, a ``KeyboardInterrupt``, so every path that handles Ctrl-C (the trial marked
failed, its MLflow run KILLED, the study's parent run KILLED, the clean message) handles it
too. The command exits 130 after Ctrl-C and 143 after SIGTERM (128 + the signal's number).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; handled exactly like Ctrl-C, exit code 143."""


def exit_code(interrupt: BaseException) -> int:
    return 128 + signal.SIGTERM if isinstance(interrupt, Terminated) else 128 + signal.SIGINT


#: copies of a stop signal within this many seconds of the first are ignored
COPY_WINDOW = 20.0
_last_stop = [float("-inf")]
#: the interrupt the first stop signal raised: (class, message), or None
_stopped: list[tuple[type[KeyboardInterrupt], str] | None] = [None]
#: open ``stops_deferred`` blocks: while > 0, a stop is recorded but not raised
_deferring = [0]


def _on_stop(signum, frame) -> None:
    # Copies of one stop (Ctrl-C reaches the whole process group, and `tune` forwards it to
    # its workers at once) must not interrupt the cleanup the first one starts: a second
    # KeyboardInterrupt raised while the trial records its end would leave it RUNNING. A
    # signal after the window raises again: the first one may have been swallowed (raised
    # inside a finalizer, where Python only prints "Exception ignored"), and `tune` repeats
    # the signal to a worker that is still running.
    import time

    now = time.monotonic()
    if now - _last_stop[0] < COPY_WINDOW:
        return
    again = _stopped[0] is not None  # a stop after the window: the first one is stuck
    _last_stop[0] = now
    _stopped[0] = ((Terminated, f"signal {signum} (SIGTERM)") if signum == signal.SIGTERM
                   else (KeyboardInterrupt, ""))
    if _deferring[0] and not again:  # inside a trial: raised at the next check (a batch's
        return  # end); a second stop, 20 s after the first, raises wherever the trial is
    kind, message = _stopped[0]
    raise kind(message)


@contextlib.contextmanager
def stops_deferred():
    """Inside the block a stop signal is recorded, not raised; ``raise_if_stopped`` raises it
    at the next check (training checks after every batch, the trial loop before every trial).

    Why: a handler's ``KeyboardInterrupt`` lands at any bytecode, also inside Python code
    that TensorFlow's C++ calls back (tracing a model's first step calls ``__import__``
    from ``nest.flatten``). There the interrupt does not propagate: C++ sees "a result with
    an exception set", and the step fails with an unrelated error ("Could not pack
    sequence..."), so the trial ended FAILED with a traceback on the terminal instead of
    KILLED, or its process died before it recorded anything (the RUNNING trial after a
    Ctrl-C at a worker recycle, issue #14). Trials run their TensorFlow work inside this
    block; the stop then waits at most until the current batch ends."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring[0] += 1
    try:
        yield
    finally:
        _deferring[0] -= 1


def raise_if_stopped() -> None:
    """Raise the stop's interrupt again if a stop signal arrived. The handler's own raise can
    land inside a finalizer (a weakref callback, a ``__del__``), where Python prints
    "Exception ignored" and goes on: the lost Ctrl-C, seen under load. Training checks this
    after every batch and before every trial, so a swallowed stop still stops it."""
    if _stopped[0] is not None:
        kind, message = _stopped[0]
        raise kind(message)


def handle_stop_signals() -> None:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM ``Terminated`` in the main thread;
    copies within ``COPY_WINDOW`` seconds are ignored. Installed whatever the inherited
    disposition: a process started with SIGINT ignored (a background job of a
    non-interactive shell) still stops on Ctrl-C. Main thread only."""
    _stopped[0], _last_stop[0] = None, float("-inf")
    if sys.unraisablehook is not _quiet_swallowed_interrupt:
        _previous_unraisablehook[0] = sys.unraisablehook
        sys.unraisablehook = _quiet_swallowed_interrupt
    signal.signal(signal.SIGINT, _on_stop)
    signal.signal(signal.SIGTERM, _on_stop)
    # a worker starts with them blocked (``stop_signals_blocked``): one that arrived during
    # its start-up is delivered now, to the handler above
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


#: the hook ``handle_stop_signals`` replaced (pytest's, a notebook's, Python's own)
_previous_unraisablehook = [sys.__unraisablehook__]


def _quiet_swallowed_interrupt(unraisable) -> None:
    """The stop's interrupt raised inside a finalizer is swallowed by Python, which prints
    "Exception ignored in ..." and a traceback on the terminal. The stop is sticky
    (``raise_if_stopped``: training, the budget wait and ``tune``'s poll of its workers
    check it), so nothing is lost by staying quiet; anything else goes to the hook that was
    there before."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _stopped[0] is not None:
        return
    _previous_unraisablehook[0](unraisable)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_signals_blocked():
    """Block SIGINT and SIGTERM in this thread for the block; one that arrives meanwhile is
    delivered when it ends. Around starting a worker process: the child inherits the blocked
    mask through exec, so a Ctrl-C during its interpreter's start-up (site's imports, before
    any handler exists, where Python dies with "Fatal Python error: init_import_site" and a
    traceback) waits until ``handle_stop_signals`` has installed the handler and unblocks it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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


#: the commands whose processes handle stop signals themselves (``handle_stop_signals``)
STOPPABLE_COMMANDS = ("tune", "worker")


def stop_handlers_early(args: list[str]) -> None:
    """``tune`` and ``worker``: the stop handlers from the package's first line on, not from
    ``main`` (after the imports and the argument parsing, a second or more on a loaded
    machine). A process started with SIGINT ignored (a background job of a script: ``tunelab
    tune ... &``, or under ``nohup``) ignored a Ctrl-C in that window and trained the whole
    study (issue #14, ctrl-c@start-up)."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command in STOPPABLE_COMMANDS:
        handle_stop_signals()


def stop_handlers_installed() -> bool:
    return signal.getsignal(signal.SIGINT) is _on_stop


def quiet_interrupts_at_startup() -> None:
    sys.excepthook = _quiet_interrupt_hook
