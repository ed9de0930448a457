"""Run the real CLI through a pseudo-terminal (80 columns) or a pipe, and read what it shows."""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")


def _take_terminal() -> None:
    """In the child, after ``setsid``: stdin (the pty's slave) becomes its controlling
    terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyRun:
    """``tunelab ARGS`` with stdout and stderr on the slave side of a pty of ``columns``."""

    def __init__(self, args: list[str], cwd: Path, columns: int = 80, env: dict | None = None,
                 controlling: bool = False):
        """``controlling``: the pty becomes the command's controlling terminal, so that a
        ``^C`` typed on it (``type_ctrl_c``) is turned into SIGINT for its foreground
        process group by the terminal itself, as at a shell prompt."""
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        self.master, self.raw = master, b""
        environ = {**os.environ, "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm",
                   **(env or {})}
        environ.pop("TUNELAB_VERBOSE", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "tunelab", *args], cwd=cwd,
                                     stdin=slave, stdout=slave, stderr=slave, env=environ,
                                     start_new_session=True,
                                     preexec_fn=_take_terminal if controlling else None)
        os.close(slave)

    def read(self, timeout: float = 0.5) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            self.raw += chunk

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.read()
            if condition():
                return True
            if self.proc.poll() is not None:
                self.read(0.2)
                return condition()
        return False

    def type_ctrl_c(self) -> None:
        """Type ^C on the terminal (needs ``controlling``)."""
        os.write(self.master, b"\x03")

    def interrupt(self) -> None:
        os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does

    def finish(self, timeout: float = 600) -> int:
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self.read()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for _ in range(20):  # whatever is still buffered
            before = len(self.raw)
            self.read(0.1)
            if len(self.raw) == before:
                break
        os.close(self.master)
        return self.proc.returncode

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")


CONTROL = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]|\r|\n")


def screen_lines(raw: str) -> list[str]:
    """The lines a terminal shows at the end: a small emulation of what rich's live display
    sends (carriage return, newline, cursor up, erase line); other codes are dropped."""
    lines, row, col = [""], 0, 0
    pos = 0
    for match in CONTROL.finditer(raw):
        text = raw[pos:match.start()]
        pos = match.end()
        if text:
            line = lines[row]
            lines[row] = line[:col].ljust(col) + text + line[col + len(text):]
            col += len(text)
        token = match.group(0)
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif match.group(2) == "A":
            row = max(0, row - int(match.group(1) or 1))
        elif match.group(2) == "K":
            lines[row] = "" if match.group(1) == "2" else lines[row][:col]
    text = raw[pos:]
    if text:
        lines[row] = lines[row][:col] + text
    return [line.rstrip() for line in lines]


def drawn_lines(raw: str) -> list[str]:
    """Every line ever drawn, redraws included (to check widths)."""
    out = []
    for line in ANSI.sub("\n", raw).replace("\r\n", "\n").split("\n"):
        out += [part for part in line.split("\r") if part]
    return out


def run_pipe(args: list[str], cwd: Path, timeout: float = 600,
             env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, **(env or {})}
    environ.pop("TUNELAB_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)
