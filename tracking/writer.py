"""A background writer: a trial's MLflow calls run in a child process while the next trial trains.

Drawing a trial's figures and writing its run are Python work; in a thread they would hold the
interpreter lock the training loop needs (measured: the training process then uses one core, and
tracking added its whole CPU time to the wall time). A child process (no TensorFlow
in it) does them on another core instead.

Calls are pickled to the child's stdin and run in the order submitted, so a run's metrics
always land before its end; the child acknowledges each one on its stdout, with the call's
result (``call`` returns it as a future: a trial's run id, which the trainer never waits
for at the trial's start). A full pipe makes
``submit`` wait rather than pile up memory. ``flush`` waits for everything submitted; ``close``
lets the child drain and exit. A process has one writer (``shared_writer``), started with its
first tracker and closed at exit. The child ignores Ctrl-C (it lives in its own session) and, if
its parent dies, still runs what it received before exiting; calls not yet sent are lost, never
a trial's results: the Optuna storage keeps them and ``tunelab sync`` logs them. A call that
cannot be pickled runs in this process, after the ones before it.
"""

from __future__ import annotations

import atexit
import collections
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_HEADER = struct.Struct("!Q")
# below the trainer's priority: it takes a core only when training leaves one idle
# MLflow is imported at once: the first calls (a trial run's creation) need it
_CHILD = ("import os, signal; os.nice(10); signal.signal(signal.SIGINT, signal.SIG_IGN); "
          "import tunelab.tracking.runs; from tunelab.tracking.writer import serve; serve()")


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
        self._futures: collections.deque[Future | None] = collections.deque()  # unacknowledged
        self._generation = 0  # one per child; a child let go has its late answers ignored

    def start(self) -> None:
        """Start the child now (it takes a second or two to import MLflow), not at the first
        call."""
        with self._send:
            if not self._alive:
                self._start()

    def submit(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._send_call(None, call, args, kwargs)

    def call(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        """``submit``, and the call's return value as a future (``CallFailed`` if it raised
        in the child; ``WriterGone`` if the child exited first)."""
        future: Future = Future()
        self._send_call(future, call, args, kwargs)
        return future

    def _send_call(self, future: Future | None, call, args, kwargs) -> None:
        try:
            payload = pickle.dumps((call, args, kwargs))
        except Exception:  # e.g. a lambda: keep the order, run it here
            self.flush()
            try:
                result = call(*args, **kwargs)
            except Exception as err:
                if future is None:
                    raise
                future.set_exception(err)
            else:
                if future is not None:
                    future.set_result(result)
            return
        with self._send:
            if not self._alive:
                self._start()
            with self._changed:
                self._submitted += 1
                self._futures.append(future)
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
            self._abandon()
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
                self._abandon()
                self._changed.notify_all()

    def _abandon(self) -> None:
        """Calls that will never be acknowledged here: their futures fail (lock held)."""
        self._generation += 1
        while self._futures:
            future = self._futures.popleft()
            if future is not None and not future.done():
                future.set_exception(WriterGone("the tracking writer did not answer"))

    @property
    def running(self) -> bool:
        """Whether the child is started (a call now does not wait for its imports)."""
        return self._alive

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
        self._reader = threading.Thread(
            target=self._read_acks, args=(self._proc, self._ended, self._generation),
            daemon=True, name="tunelab-tracking-acks")
        self._reader.start()

    def _read_acks(self, proc: subprocess.Popen, ended: threading.Event,
                   generation: int) -> None:
        stream = proc.stdout
        while True:
            header = stream.read(_HEADER.size)
            if len(header) < _HEADER.size:
                break
            payload = stream.read(_HEADER.unpack(header)[0])
            with self._changed:
                if generation != self._generation:  # let go: its calls were given up
                    continue
                self._done += 1
                future = self._futures.popleft() if self._futures else None
                self._changed.notify_all()
            if future is not None:
                try:
                    ok, value = pickle.loads(payload)
                except Exception as err:  # noqa: BLE001  a result this side cannot unpickle
                    ok, value = False, err
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value if isinstance(value, BaseException)
                                         else CallFailed(str(value)))
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
            self._abandon()
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
        result: tuple[bool, Any] = (True, None)
        try:
            call, args, kwargs = pickle.loads(payload)
            result = (True, call(*args, **kwargs))
        except Exception as err:  # the calls guard themselves; this is the last resort
            print(f"tunelab: a tracking call failed in the background ({type(err).__name__}:"
                  f" {err})", file=sys.stderr, flush=True)
            result = (False, f"{type(err).__name__}: {err}")
        finally:
            if acks is not None:
                try:
                    try:
                        answer = pickle.dumps(result)
                    except Exception:  # noqa: BLE001  an unpicklable result: none
                        answer = pickle.dumps((True, None))
                    acks.write(_HEADER.pack(len(answer)) + answer)
                except OSError:  # the trainer is gone: finish what was sent, unacknowledged
                    acks = None



class WriterGone(RuntimeError):
    """The writer process exited (or was let go) before it answered a call."""


class CallFailed(RuntimeError):
    """A call raised in the writer process (its message: the error's type and text)."""


_shared: BackgroundWriter | None = None


def shared_writer() -> BackgroundWriter:
    """The process's writer: every tracker in a process shares one child, closed at exit."""
    global _shared
    if _shared is None:
        _shared = BackgroundWriter()
        atexit.register(_shared.close)
    return _shared
