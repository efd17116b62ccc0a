"""The one subprocess runner: every external command in kwb goes through :func:`run` (or, for a
long-lived child kwb talks to through pipes, :func:`spawn`).

argv lists only (never shell strings), always a timeout, output teed to a log file when given, and a
:class:`Result` returned instead of an exception so callers decide what a non-zero exit means. Every
command runs in its own process group, killed whole when kwb is done with it: on a timeout, an
exception, Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt), and at interpreter exit.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.core.errors import CommandTimeout, InfraError


@dataclass
class Result:
    """What a finished (or killed) command left behind."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    cwd: str | None = None
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the command exited 0 within its timeout."""
        return self.returncode == 0 and not self.timed_out

    def command_line(self) -> str:
        """A shell-quoted reproducer line (cwd and environment included)."""
        parts = [f"{k}={shlex.quote(v)}" for k, v in sorted(self.env_overrides.items())]
        parts += [shlex.quote(a) for a in self.argv]
        line = " ".join(parts)
        return f"cd {shlex.quote(self.cwd)} && {line}" if self.cwd else line

    def tail(self, lines: int = 20) -> str:
        """The last lines of stderr (or stdout when stderr is empty), for one-line error context."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


def _pump(stream: IO[str], sink: list[str], log: IO[str] | None, lock: threading.Lock,
          on_line: Callable[[str], None] | None) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        if log is not None:
            with lock:
                log.write(line)
                log.flush()
        if on_line is not None:
            on_line(line)
    stream.close()


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    # The command runs in its own process group so that children (make -j, qemu) die with it. The group
    # outlives its leader (a backgrounded child keeps it), so the group gets SIGKILL even when the leader
    # went on SIGTERM.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _open_log(log: str | os.PathLike[str] | None, args: list[str], cwd: str | None,
              overrides: dict[str, str]) -> IO[str] | None:
    """The command's log, opened for appending with its reproducer line first (None without a log)."""
    if log is None:
        return None
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    logf = open(log, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - the caller closes it
    logf.write(f"$ {Result(args, 0, '', '', 0, cwd=cwd, env_overrides=overrides).command_line()}\n")
    return logf


def _popen(args: list[str], cwd: str | None, overrides: dict[str, str],
           **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``args`` in a process group of its own; a missing command or working directory is one line."""
    try:
        return subprocess.Popen(args, cwd=cwd, env={**os.environ, **overrides}, start_new_session=True,
                                **kwargs)
    except (FileNotFoundError, NotADirectoryError) as exc:
        # Popen raises FileNotFoundError for a missing cwd too: only with the cwd there is the command missing
        missing = isinstance(exc, FileNotFoundError) and (cwd is None or os.path.isdir(cwd))
        raise InfraError(f"command not found: {args[0]} (is it installed? try `make setup`)" if missing
                         else f"working directory not usable: {cwd}") from exc


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    log: str | os.PathLike[str] | None = None,
    input: str | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = False,
) -> Result:
    """Run ``argv`` and return its :class:`Result`.

    ``env`` entries are added to the current environment (and recorded for the reproducer line).
    ``log`` receives the command line then stdout and stderr as they arrive. ``on_line`` sees every
    output line (for progress). With ``check=True`` a non-zero exit raises :class:`InfraError` and a
    timeout raises :class:`CommandTimeout`; otherwise the caller inspects the result.
    """
    args = [os.fspath(a) for a in argv]
    if not args:
        raise InfraError("run(): empty argv")
    overrides = dict(env or {})
    cwd_s = os.fspath(cwd) if cwd is not None else None
    out: list[str] = []
    err: list[str] = []
    lock = threading.Lock()
    logf = _open_log(log, args, cwd_s, overrides)  # closed in finally
    start = time.monotonic()
    timed_out = False
    try:
        proc = _popen(args, cwd_s, overrides, text=True, encoding="utf-8", errors="replace",
                      stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            threads = [
                threading.Thread(target=_pump, args=(proc.stdout, out, logf, lock, on_line), daemon=True),
                threading.Thread(target=_pump, args=(proc.stderr, err, logf, lock, on_line), daemon=True),
            ]
            for t in threads:
                t.start()
            if input is not None and proc.stdin is not None:
                try:
                    proc.stdin.write(input)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
            for t in threads:
                t.join(timeout=10)
        except BaseException:
            # Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt) or any other exception, wherever
            # it lands after the start: the children run in their own session, so nothing else would stop
            # a `make -j` from writing into a shared build directory after the build lock is released.
            _kill_group(proc)
            raise
        rc = proc.returncode if proc.returncode is not None else -1
    finally:
        if logf is not None:
            if timed_out:
                logf.write(f"kwb: command timed out after {timeout:.0f}s and was killed\n")
            logf.close()
    result = Result(args, rc, "".join(out), "".join(err), time.monotonic() - start, timed_out,
                    cwd_s, overrides)
    if check and timed_out:
        raise CommandTimeout(f"{args[0]} timed out after {timeout:.0f}s: {result.command_line()}")
    if check and rc != 0:
        last = result.tail(1).strip()
        raise InfraError(f"{Path(args[0]).name} failed (exit {rc}): {last}")
    return result


_LIVE: set[Child] = set()  # spawned and not yet closed: closed (their groups killed) at interpreter exit


@atexit.register
def _close_all() -> None:
    for child in list(_LIVE):
        child.close(kill=True)


class Child:
    """A long-lived child started by :func:`spawn`: ``stdin``/``stdout`` are its binary pipes, its
    stderr goes to the log (the last lines are kept for error messages).

    The watchdog kills the child's process group once the deadline passes (:meth:`renew` moves it on
    before each exchange); :meth:`close` ends it (a ``with`` block closes it on any exit, killing it when
    the block raised), and whatever is still open at interpreter exit is killed then.
    """

    def __init__(self, args: list[str], proc: subprocess.Popen[bytes], timeout: float,
                 log: IO[str] | None) -> None:
        self.argv = args
        self.timed_out = False
        self._proc = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout
        self._log = log
        self._lock = threading.Lock()
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        self._deadline = time.monotonic() + timeout
        self._closed = False
        self._stderr = threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True)
        self._stderr.start()
        threading.Thread(target=self._watch, daemon=True).start()

    @property
    def pid(self) -> int:
        """The child's pid (and process group id)."""
        return self._proc.pid

    def renew(self, timeout: float) -> None:
        """The child must answer within ``timeout`` seconds from now, or be killed."""
        self._deadline = time.monotonic() + timeout

    def running(self) -> bool:
        """True until the child exits (or is killed)."""
        return self._proc.poll() is None

    def stderr_tail(self) -> str:
        """The last lines the child wrote to stderr, for a one-line error."""
        with self._lock:
            return " ".join(line.strip() for line in self._tail if line.strip())

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            with self._lock:
                self._tail.append(line)
                if self._log is not None and not self._log.closed:
                    self._log.write(line)
                    self._log.flush()
        stream.close()

    def _watch(self) -> None:
        # One thread per child, not a timer per exchange (that was most of an archive read's time).
        while self._proc.poll() is None:
            if time.monotonic() > self._deadline:
                self.timed_out = True
                _kill_group(self._proc)
                return
            time.sleep(0.2)

    def close(self, *, kill: bool = False, grace: float = 5.0) -> int:
        """End the child (idempotent): close its stdin and give it ``grace`` seconds to exit, then kill
        its whole group (at once with ``kill``). Returns its exit status (negative: killed by signal)."""
        with contextlib.suppress(OSError, ValueError):
            self.stdin.close()
        if not kill:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=grace)
        # The group outlives its leader (a backgrounded child keeps it): killed whatever the leader did.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        rc = self._proc.wait()
        self._stderr.join(timeout=5)
        with contextlib.suppress(OSError, ValueError):
            self.stdout.close()
        if not self._closed:
            self._closed = True
            _LIVE.discard(self)
            if self._log is not None:
                with self._lock:
                    if self.timed_out:
                        self._log.write("kwb: command stopped answering and was killed\n")
                    self._log.close()
        return rc

    def __enter__(self) -> Child:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(kill=kind is not None)


def spawn(argv: Sequence[str | os.PathLike[str]], *, timeout: float,
          cwd: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None,
          log: str | os.PathLike[str] | None = None) -> Child:
    """Start ``argv`` as a long-lived :class:`Child` with binary pipes (``git cat-file --batch``).

    The same rules as :func:`run`: an argv list, ``env`` added to the environment, the command line (then
    its stderr) written to ``log`` when given, its own process group killed whole on any exit, and a
    deadline: ``timeout`` seconds to the first answer, renewed by the caller per exchange.
    """
    args = [os.fspath(a) for a in argv]
    if not args:
        raise InfraError("spawn(): empty argv")
    overrides = dict(env or {})
    cwd_s = os.fspath(cwd) if cwd is not None else None
    logf = _open_log(log, args, cwd_s, overrides)  # closed by Child.close()
    try:
        proc = _popen(args, cwd_s, overrides, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
    except InfraError:
        if logf is not None:
            logf.close()
        raise
    child = Child(args, proc, timeout, logf)
    _LIVE.add(child)
    return child
