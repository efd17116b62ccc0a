"""Live progress for long steps (build, boot, each job): what is running and for how long.

Interactive: every step start/end plus the stage's own progress lines, each prefixed with the run's
elapsed time, and a heartbeat line when a step has been quiet for a while. Quiet (``kwb -q``, for CI
logs): only step start/end lines and failures, no heartbeat.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO


def fmt_seconds(seconds: float) -> str:
    """``9.3s``, ``4m05s``, ``1h02m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Progress:
    """Progress printer; call it with a line (it is a ``progress`` callback for the stages)."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, heartbeat: float = 30.0) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.start = clock()
        self.heartbeat = heartbeat
        self._steps: list[tuple[str, float]] = []
        self._last_output = clock()
        self._lock = threading.Lock()

    def _emit(self, text: str) -> None:
        with self._lock:
            self._last_output = self.clock()
            print(f"[{fmt_seconds(self.clock() - self.start):>7}] {text}", file=self.stream, flush=True)

    @property
    def running(self) -> str:
        """The innermost step now running ("" when idle)."""
        return " › ".join(name for name, _ in self._steps)

    def __call__(self, line: str) -> None:
        """A stage's progress line: shown with the step it belongs to (suppressed when quiet)."""
        line = line.rstrip()
        if line and not self.quiet:
            self._emit(f"{self.running}: {line}" if self._steps else line)

    def note(self, line: str) -> None:
        """A line shown even in quiet mode (results location, failures)."""
        self._emit(line)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Progress]:
        """Announce ``name``, time it, report how it ended; exceptions propagate unchanged."""
        self._steps.append((name, self.clock()))
        self._emit(f"▶ {self.running}")
        stop = self._start_heartbeat()
        try:
            yield self
        except BaseException as exc:
            self._emit(f"✗ {self.running} after {fmt_seconds(self.clock() - self._steps[-1][1])}: "
                       f"{str(exc) or type(exc).__name__}")
            raise
        else:
            self._emit(f"✓ {self.running} ({fmt_seconds(self.clock() - self._steps[-1][1])})")
        finally:
            stop()
            self._steps.pop()

    def _start_heartbeat(self) -> Callable[[], None]:
        if self.quiet or self.heartbeat <= 0:
            return lambda: None
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.heartbeat / 3):
                if self._steps and self.clock() - self._last_output >= self.heartbeat:
                    since = fmt_seconds(self.clock() - self._steps[-1][1])
                    self._emit(f"… still running: {self.running} ({since})")

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()

        def stop() -> None:
            done.set()
            thread.join(timeout=1)

        return stop
