"""Fixtures for the jobring package's tests: real queues in /dev/shm (each
test's own, removed after it), Python subprocesses running the package, and
a watchdog that ends a hung test with every thread's traceback.

The library: $JOBRING_LIBRARY (ctest sets it to the build's
libjobring.so.0), else the package's usual search."""

from __future__ import annotations

import faulthandler
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

PYTHON_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = PYTHON_DIR.parent
sys.path.insert(0, str(PYTHON_DIR))

import jobring  # noqa: E402

# Generous bounds: these are watchdogs, not timing assertions.
WATCHDOG_S = 120
LONG_WAIT = 30.0

_counter = itertools.count()


@pytest.fixture(autouse=True)
def watchdog() -> Iterator[None]:
    """A test that hangs is ended after WATCHDOG_S with every thread's stack."""
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def queue_name() -> Iterator[str]:
    name = f"pytest.{os.getpid()}.{next(_counter)}"
    jobring.Queue.remove(name)
    yield name
    jobring.Queue.remove(name)


@pytest.fixture
def make_queue(queue_name: str) -> Iterator[Callable[..., jobring.Queue]]:
    """make_queue(**options): a new queue of this test's, closed and removed after it."""
    made: List[jobring.Queue] = []

    def make(**options: object) -> jobring.Queue:
        q = jobring.Queue.create(queue_name if not made else f"{queue_name}.{len(made)}", **options)  # type: ignore[arg-type]
        made.append(q)
        return q

    yield make
    for q in made:
        name = q.name
        q.close()
        jobring.Queue.remove(name)


class Child:
    """A Python subprocess running a script with the package importable;
    its stdout is read line by line."""

    def __init__(self, code: str, tmp_path: Path, *args: str) -> None:
        script = tmp_path / f"child{next(_counter)}.py"
        prologue = (
            "import sys, signal\n"
            f"sys.path.insert(0, {str(PYTHON_DIR)!r})\n"
            # Started from a shell without job control, SIGINT may be ignored: restore Python's own.
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        )
        script.write_text(prologue + textwrap.dedent(code))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: List[str] = []

    def expect(self, prefix: str, timeout: float = LONG_WAIT) -> str:
        """The next stdout line that starts with prefix (fails at EOF or after timeout)."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            line = line.rstrip("\n")
            self.lines.append(line)
            if line.startswith(prefix):
                return line
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        pytest.fail(f"child never printed {prefix!r}; stdout: {self.lines}; stderr: {err}")
        return ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = LONG_WAIT) -> "tuple[int, str, str]":
        """Waits for the exit: (status, rest of stdout, stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"child did not exit within {timeout} s; stdout: {self.lines + out.splitlines()}; stderr: {err}")
        self.lines += out.splitlines()
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def child(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """child(code, *args): starts `python -c code` (dedented) as a subprocess; killed after the test."""
    started: List[Child] = []

    def start(code: str, *args: str) -> Child:
        c = Child(code, tmp_path, *args)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def wait_until(predicate: Callable[[], bool], timeout: float = LONG_WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def sig_name(status: int) -> Optional[str]:
    return signal.Signals(-status).name if status < 0 else None
