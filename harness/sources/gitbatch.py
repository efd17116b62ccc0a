"""``git cat-file --batch`` as a byte stream: the one place kwb reads git objects as raw bytes.

harness.core.run captures output as text (and whole); mail is bytes and an archive is hundreds of MiB, so
objects are streamed from one long-lived ``git cat-file --batch`` instead. The process stays in kwb's
process group (Ctrl-C reaches it too), a watchdog kills it when a read outlives its timeout, and it is
closed when the reader is (or at interpreter exit).
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from harness.core.errors import InfraError

READ_TIMEOUT = 120.0  # one object; a healthy cat-file answers in milliseconds


class BatchReader:
    """Objects of one repository by name (``<oid>`` or ``<commit>:<path>``); None when missing."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._deadline = 0.0
        self._killed = False
        self._watchdog: threading.Thread | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            try:
                self._proc = subprocess.Popen(["git", "-C", str(self.repo), "cat-file", "--batch"],
                                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=subprocess.DEVNULL)
            except FileNotFoundError as exc:
                raise InfraError("git is not installed (run `make setup`)") from exc
            atexit.register(self.close)
        return self._proc

    def read(self, name: str, *, timeout: float = READ_TIMEOUT) -> bytes | None:
        """One object's bytes, or None when git says it is missing."""
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(name.encode() + b"\n")
            proc.stdin.flush()
            return self._answer(proc, proc.stdout, name, timeout)

    def _answer(self, proc: subprocess.Popen[bytes], out: IO[bytes], name: str,
                timeout: float) -> bytes | None:
        self._deadline = time.monotonic() + timeout
        self._watch(proc)
        head = out.readline()
        if not head:
            raise InfraError(f"git cat-file --batch in {self.repo} stopped answering at {name}"
                             f"{' (timed out)' if self._killed else ''}")
        fields = head.split()
        if fields[-1] == b"missing" or len(fields) < 3:
            return None
        data = out.read(int(fields[2]))
        out.read(1)  # the newline after each object
        if len(data) < int(fields[2]):
            raise InfraError(f"git cat-file --batch in {self.repo} stopped in the middle of {name}")
        return data

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        # One watchdog thread per process (a timer per object was most of an archive read's time): it
        # kills git when the current read's deadline passes, so a stuck git cannot hang kwb.
        if self._watchdog is not None and self._watchdog.is_alive():
            return

        def watch() -> None:
            while proc.poll() is None:
                if time.monotonic() > self._deadline:
                    self._killed = True
                    proc.kill()
                    return
                time.sleep(0.5)

        self._watchdog = threading.Thread(target=watch, daemon=True)
        self._watchdog.start()

    def stream(self, names: Iterable[str], *, timeout: float = READ_TIMEOUT) -> Iterator[
            tuple[str, bytes | None]]:
        """(name, bytes or None) for each name, the names fed from a thread so git never waits on us."""
        names = list(names)
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            stdin = proc.stdin

            def feed() -> None:
                with contextlib.suppress(BrokenPipeError, ValueError):
                    for name in names:
                        stdin.write(name.encode() + b"\n")
                    stdin.flush()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            done = 0
            try:
                for name in names:
                    yield name, self._answer(proc, proc.stdout, name, timeout)
                    done += 1
            finally:
                if done < len(names):  # abandoned half-way: its answers are still in the pipe
                    proc.kill()
                feeder.join(timeout)

    def close(self) -> None:
        """Stop the git process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if proc.stdin is not None:
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        with contextlib.suppress(ValueError):
            atexit.unregister(self.close)

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
