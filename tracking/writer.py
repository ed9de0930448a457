"""A background writer: a trial's MLflow calls run in a child process while the next trial trains.

Drawing a trial's figures and writing its run are Python work; in a thread they would hold the
interpreter lock the training loop needs (measured: the training process then uses one core, and
tracking added its whole CPU time to the wall time). A child process (no TensorFlow
in it) does them on another core instead.

Calls are pickled to the child's stdin and run in the order submitted, so a run's metrics
always land before its end; the child acknowledges each one on its stdout. A full pipe makes
``submit`` wait rather than pile up memory. ``flush`` waits for everything submitted; ``close``
lets the child drain and exit. A process has one writer (``shared_writer``), started with its
first tracker and closed at exit. The child ignores Ctrl-C (it lives in its own session) and, if
its parent dies, still runs what it received before exiting; calls not yet sent are lost, never
a trial's results: the Optuna storage keeps them and ``tunelab sync`` logs them. A call that
cannot be pickled runs in this process, after the ones before it.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

_HEADER = struct.Struct("!Q")
# below the trainer's priority: it takes a core only when training leaves one idle
_CHILD = ("import os, signal; os.nice(10); signal.signal(signal.SIGINT, signal.SIG_IGN); "
          "from tunelab.tracking.writer import serve; serve()")


class BackgroundWriter:
    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._submitted = 0
        self._done = 0
        self._alive = False
        self._changed = threading.Condition()
        self._send = threading.Lock()
        self._ended = threading.Event()

    def start(self) -> None:
        """Start the child now (it takes a second or two to import MLflow), not at the first
        call."""
        with self._send:
            if not self._alive:
                self._start()

    def submit(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            payload = pickle.dumps((call, args, kwargs))
        except Exception:  # e.g. a lambda: keep the order, run it here
            self.flush()
            call(*args, **kwargs)
            return
        with self._send:
            if not self._alive:
                self._start()
            with self._changed:
                self._submitted += 1
            try:
                self._proc.stdin.write(_HEADER.pack(len(payload)) + payload)
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._child_gone()

    def flush(self) -> None:
        """Wait until every submitted call has run (or the child is gone)."""
        with self._changed:
            self._changed.wait_for(lambda: self._done >= self._submitted)

    def close(self, timeout: float = 120.0) -> None:
        """Let the child run what it has; return once it has acknowledged every call (all
        written), without waiting for it to exit: its interpreter's teardown (MLflow,
        SQLAlchemy) took 1 to 2 s, which sat on the critical path of every worker recycle.
        The acknowledgement reader reaps it. After ``timeout`` it goes on alone."""
        with self._send:
            proc, ended = self._proc, self._ended
            self._proc, self._reader, self._alive = None, None, False
            if proc is None:
                return
            try:
                proc.stdin.close()
            except OSError:
                pass
        with self._changed:
            if not self._changed.wait_for(
                    lambda: self._done >= self._submitted or ended.is_set(), timeout=timeout):
                print(f"tunelab: the tracking writer (pid {proc.pid}) is still logging; it goes "
                      "on in the background", file=sys.stderr)
            self._done = self._submitted  # whatever it did not acknowledge is not waited for
            self._changed.notify_all()

    def detach(self) -> None:
        """Hand the child what it has and return at once (an interrupted process): the child
        lives in its own session and finishes those calls after this process exits."""
        with self._send:
            proc, self._proc, self._alive = self._proc, None, False
            if proc is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
            with self._changed:
                self._done = self._submitted
                self._changed.notify_all()

    @property
    def pending(self) -> int:
        return max(0, self._submitted - self._done)

    def _start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      start_new_session=True)
        self._alive = True
        self._ended = threading.Event()  # the child closed its end (exited)
        self._reader = threading.Thread(target=self._read_acks, args=(self._proc, self._ended),
                                        daemon=True, name="tunelab-tracking-acks")
        self._reader.start()

    def _read_acks(self, proc: subprocess.Popen, ended: threading.Event) -> None:
        fd = proc.stdout.fileno()
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            with self._changed:
                self._done += len(data)
                self._changed.notify_all()
        with self._changed:
            ended.set()
            self._changed.notify_all()
        proc.wait()
        if self._proc is proc:  # died while in use, not closed
            self._child_gone()

    def _child_gone(self) -> None:
        with self._changed:
            lost = self._submitted - self._done
            self._done = self._submitted
            self._alive = False
            self._changed.notify_all()
        if lost:
            print(f"tunelab: the tracking writer exited; {lost} MLflow call(s) were not made. "
                  "The Optuna storage keeps every result: `tunelab sync` logs them",
                  file=sys.stderr)


def serve() -> None:
    """The child's loop: run each call read from stdin, acknowledge it on stdout."""
    acks = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # prints, ours and MLflow's, go to stderr; stdout carries acknowledgements
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        payload = stdin.read(_HEADER.unpack(header)[0])
        try:
            call, args, kwargs = pickle.loads(payload)
            call(*args, **kwargs)
        except Exception as err:  # the calls guard themselves; this is the last resort
            print(f"tunelab: a tracking call failed in the background ({type(err).__name__}:"
                  f" {err})", file=sys.stderr, flush=True)
        finally:
            if acks is not None:
                try:
                    acks.write(b".")
                except OSError:  # the trainer is gone: finish what was sent, unacknowledged
                    acks = None



_shared: BackgroundWriter | None = None


def shared_writer() -> BackgroundWriter:
    """The process's writer: every tracker in a process shares one child, closed at exit."""
    global _shared
    if _shared is None:
        _shared = BackgroundWriter()
        atexit.register(_shared.close)
    return _shared
