"""Live progress for long steps (build, boot, each job): what is running and for how long.

Interactive: every step start/end plus the stage's own progress lines, each prefixed with the run's
elapsed time, and a heartbeat line when a step has been quiet for a while. A *live* line (the kernel
build's objects done/expected, elapsed, ETA) is redrawn in place on a terminal. Quiet (``kwb -q``, for
CI logs) and non-terminal output stay line-oriented: only step start/end lines, failures, the heartbeat
and one live line every :data:`LIVE_EVERY` seconds, so a long step is never silent for longer than that.
Job lines ``[n/m] …`` get an ETA for the rest of their step.
"""

from __future__ import annotations

import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol, TextIO, runtime_checkable

LIVE_EVERY = 30.0  # seconds between live lines when they cannot be redrawn in place
_COUNTED = re.compile(r"^\[(\d+)/(\d+)\] ")


@runtime_checkable
class LiveSink(Protocol):
    """A progress callback that can also keep one updating line (:class:`Progress`, and wrappers that
    pass it on); a plain callback gets ordinary lines instead."""

    def __call__(self, line: str) -> None:
        """A progress line."""
        ...

    def live(self, text: str) -> None:
        """Replace the updating line."""
        ...

    def end_live(self, text: str = "") -> None:
        """End the updating line."""
        ...


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
        self._first_item: dict[str, float] = {}  # step -> when its [1/m] line came
        self._last_output = clock()
        self._lock = threading.Lock()
        self._live = ""          # the live line now drawn (terminal only)
        self._live_logged = -LIVE_EVERY  # when a live line was last written as a plain line
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not quiet

    def _emit(self, text: str) -> None:
        with self._lock:
            self._last_output = self.clock()
            clear = "\r\x1b[K" if self._live else ""
            stamp = f"[{fmt_seconds(self.clock() - self.start):>7}]"
            print(f"{clear}{stamp} {text}", file=self.stream, flush=True)
            if self._live:  # a line printed under a live line: draw the live line again below it
                print(self._live, end="", file=self.stream, flush=True)

    def live(self, text: str) -> None:
        """One line that updates in place (a terminal), else a plain line at most every LIVE_EVERY s."""
        now = self.clock()
        if self.tty:
            with self._lock:
                self._last_output = now
                self._live = f"[{fmt_seconds(now - self.start):>7}] {self.running}: {text}"
                print("\r\x1b[K" + self._live, end="", file=self.stream, flush=True)
        elif now - self._live_logged >= LIVE_EVERY:
            self._live_logged = now
            self._emit(f"{self.running}: {text}" if self._steps else text)

    def end_live(self, text: str = "") -> None:
        """Finish the live line (leaves ``text``, if any, as an ordinary line)."""
        with self._lock:
            if self._live:
                print("\r\x1b[K", end="", file=self.stream, flush=True)
                self._live = ""
        self._live_logged = -LIVE_EVERY
        if text:
            self._emit(f"{self.running}: {text}" if self._steps else text)

    @property
    def running(self) -> str:
        """The innermost step now running ("" when idle)."""
        return " › ".join(name for name, _ in self._steps)

    def __call__(self, line: str) -> None:
        """A stage's progress line: shown with the step it belongs to (suppressed when quiet)."""
        line = line.rstrip()
        if line and not self.quiet:
            line = self._with_eta(line)
            self._emit(f"{self.running}: {line}" if self._steps else line)

    def _with_eta(self, line: str) -> str:
        """``[n/m] …`` job lines: the rest of the step's ETA from its mean time per item so far."""
        m = _COUNTED.match(line)
        if not m or not self._steps:
            return line
        n, total = int(m.group(1)), int(m.group(2))
        now, step = self.clock(), self.running
        if n == 1:
            # Paced from the first item's end, not the step's start: a step opens with a kernel build and a
            # boot (15 min on a cold cache) that would otherwise count as the first job's time (ETA 9h).
            self._first_item[step] = now
            return line
        first = self._first_item.get(step)
        if first is None or not 1 < n < total:
            return line
        per_item = (now - first) / (n - 1)
        return f"{line} (ETA {fmt_seconds(per_item * (total - n))})"

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
            self.end_live()
            self._steps.pop()

    def _start_heartbeat(self) -> Callable[[], None]:
        if self.heartbeat <= 0:  # quiet too: a CI log must not go silent for a whole step
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
