"""Child processes that never outlive the process that started them.

A ``GuardedChild`` runs ``python -m generators.supervised MODULE ARGS...``: this module, in
the child, watches its standard input (a pipe whose only writer is the parent) on a thread
and exits the moment it reads end-of-file, then runs ``MODULE`` as ``__main__``. The kernel
closes the pipe however the parent ends (return, exception, Ctrl-C, SIGTERM, SIGKILL, an
out-of-memory kill), so the child goes with it; no cooperation from the parent is needed.

Used for the embedded teacher's model server and for the temporary Prefect server a build
starts. Every guarded child carries ``SYNTHRANK_GUARDED_BY=<parent pid>`` in its
environment, so what a process started can be listed (``children_of``).
"""

from __future__ import annotations

import atexit
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

GUARD_VARIABLE = "SYNTHRANK_GUARDED_BY"


class GuardedChild:
    """``python -m MODULE ARGS`` as a child that exits when this process is gone.

    ``stop()`` ends it (SIGTERM, then SIGKILL after ``grace_s``); it is also stopped when
    this interpreter exits normally. Output goes to ``log_path`` (or is discarded).
    """

    def __init__(self, module: str, args: Sequence[str], log_path: Path | None = None,
                 env: dict[str, str] | None = None):
        self.module = module
        self.log_path = log_path
        sink = open(log_path, "ab") if log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", __name__, module, *args], stdin=subprocess.PIPE,
                stdout=sink, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {}), GUARD_VARIABLE: str(os.getpid())})
        finally:
            if log_path:
                sink.close()
        _RUNNING.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        return self.process.poll()

    def stop(self, grace_s: float = 5.0) -> None:
        """End the child and wait for it; a no-op once it has exited."""
        _RUNNING.discard(self)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdin:
            self.process.stdin.close()

    def log_tail(self, lines: int = 5) -> str:
        """The last lines the child printed (for error messages)."""
        if not self.log_path or not self.log_path.exists():
            return ""
        text = self.log_path.read_bytes()[-4000:].decode("utf-8", "replace")
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


_RUNNING: set[GuardedChild] = set()


def stop_all() -> None:
    """Stop every guarded child this process started (at interpreter exit, and on demand)."""
    for child in list(_RUNNING):
        child.stop()


def describe_exit(code: int) -> str:
    """``signal 11 (SIGSEGV)`` for a negative return code, ``exit code N`` otherwise."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        hint = ", e.g. out of memory" if -code == signal.SIGKILL else ""
        return f"signal {-code} ({name}{hint})"
    return f"exit code {code}"


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Pids of the live guarded children started by process ``pid`` (Linux /proc)."""
    found = []
    marker = f"{GUARD_VARIABLE}={pid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _exit_when_parent_is_gone() -> None:
    """In the child: block on stdin; end-of-file means the parent is gone."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    os._exit(0)


def _run_guarded(argv: list[str]) -> None:
    """In the child: start the watch, then run ``argv[0]`` as ``python -m argv[0] argv[1:]``."""
    if not argv:
        raise SystemExit("usage: python -m generators.supervised MODULE [ARGS...]")
    threading.Thread(target=_exit_when_parent_is_gone, name="parent-watch", daemon=True).start()
    sys.argv = argv
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


def wait_until(ready, child: GuardedChild, timeout_s: float, what: str) -> None:
    """Poll ``ready()`` until it is true; raise RuntimeError if the child exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = child.exited()
        if code is not None:
            tail = child.log_tail()
            raise RuntimeError(f"{what} exited ({describe_exit(code)}) before it was ready"
                               + (f": {tail}" if tail else ""))
        if ready():
            return
        time.sleep(0.2)
    child.stop()
    raise RuntimeError(f"{what} was not ready within {timeout_s:g} s")


atexit.register(stop_all)

if __name__ == "__main__":
    _run_guarded(sys.argv[1:])
