"""``git cat-file --batch`` as a byte stream: the one place kwb reads git objects as raw bytes.

harness.core.run.run captures output as text (and whole); mail is bytes and an archive is hundreds of MiB,
so objects are streamed from one long-lived ``git cat-file --batch`` started by harness.core.run.spawn
(its own process group, killed on any exit; a read that outlives its timeout kills it). It is closed when
the reader is (or at interpreter exit).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import IO

from harness.core.errors import InfraError
from harness.core.run import Child, spawn

READ_TIMEOUT = 120.0  # one object; a healthy cat-file answers in milliseconds


class BatchReader:
    """Objects of one repository by name (``<oid>`` or ``<commit>:<path>``); None when missing."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._child: Child | None = None
        self._lock = threading.Lock()

    def _start(self, timeout: float) -> Child:
        if self._child is None or not self._child.running():
            if self._child is not None:
                self._child.close(kill=True)
            self._child = spawn(["git", "-C", str(self.repo), "cat-file", "--batch"], timeout=timeout)
        return self._child

    def read(self, name: str, *, timeout: float = READ_TIMEOUT) -> bytes | None:
        """One object's bytes, or None when git says it is missing."""
        with self._lock:
            child = self._start(timeout)
            try:
                child.stdin.write(name.encode() + b"\n")
                child.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # it died: the answer's read says so
            return self._answer(child, child.stdout, name, timeout)

    def _answer(self, child: Child, out: IO[bytes], name: str, timeout: float) -> bytes | None:
        child.renew(timeout)
        head = out.readline()
        if not head:
            why = " (timed out)" if child.timed_out else ""
            detail = f": {child.stderr_tail()}" if child.stderr_tail() else ""
            raise InfraError(f"git cat-file --batch in {self.repo} stopped answering at {name}{why}{detail}")
        fields = head.split()
        if fields[-1] == b"missing" or len(fields) < 3:
            return None
        data = out.read(int(fields[2]))
        out.read(1)  # the newline after each object
        if len(data) < int(fields[2]):
            raise InfraError(f"git cat-file --batch in {self.repo} stopped in the middle of {name}")
        return data

    def stream(self, names: Sequence[str], *, suffix: str = "",
               timeout: float = READ_TIMEOUT) -> Generator[tuple[str, bytes | None], None, None]:
        """(name, bytes or None) for each object ``name + suffix`` (``suffix`` saves the caller a list of
        ``<commit>:m`` strings, 3 MiB for a whole archive), the names fed from a thread so git never
        waits on us."""
        with self._lock:
            child = self._start(timeout)
            stdin = child.stdin
            tail = suffix.encode() + b"\n"

            def feed() -> None:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    for name in names:
                        stdin.write(name.encode() + tail)
                    stdin.flush()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            done = 0
            try:
                for name in names:
                    yield name, self._answer(child, child.stdout, name + suffix, timeout)
                    done += 1
            finally:
                if done < len(names):  # abandoned half-way: its answers are still in the pipe
                    child.close(kill=True)
                feeder.join(timeout)

    def close(self) -> None:
        """Stop the git process (idempotent)."""
        child, self._child = self._child, None
        if child is not None:
            child.close()

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
