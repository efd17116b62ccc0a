"""Live progress: steps with elapsed time, what is running, heartbeat, quiet mode for CI."""

from __future__ import annotations

import io
import threading

import pytest

from harness.core.errors import InfraError
from harness.core.progress import Progress, fmt_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_steps_show_elapsed_and_what_is_running() -> None:
    out, clock = io.StringIO(), Clock()
    p = Progress(stream=out, clock=clock, heartbeat=0)
    with p.step("variant series"):
        clock.advance(65)
        with p.step("build"):
            p("CC mm/filemap.o")
            clock.advance(26)
    lines = out.getvalue().splitlines()
    assert lines == ["[   0.0s] ▶ variant series",
                     "[  1m05s] ▶ variant series › build",
                     "[  1m05s] variant series › build: CC mm/filemap.o",
                     "[  1m31s] ✓ variant series › build (26.0s)",
                     "[  1m31s] ✓ variant series (1m31s)"]


def test_failed_step_says_why_and_reraises() -> None:
    out = io.StringIO()
    p = Progress(stream=out, heartbeat=0)
    with pytest.raises(InfraError), p.step("boot"):
        raise InfraError("guest never answered on ssh")
    assert "✗ boot after" in out.getvalue() and "guest never answered on ssh" in out.getvalue()
    assert p.running == ""


def test_quiet_mode_keeps_only_step_lines_and_notes() -> None:
    out = io.StringIO()
    p = Progress(quiet=True, stream=out)
    with p.step("build"):
        p("CC mm/filemap.o")
    p.note("results: out/x")
    text = out.getvalue()
    assert "CC mm/filemap.o" not in text and "▶ build" in text and "✓ build" in text
    assert "results: out/x" in text


def test_heartbeat_names_the_running_step() -> None:
    out = io.StringIO()
    p = Progress(stream=out, heartbeat=0.15)
    seen = threading.Event()
    with p.step("workloads"):
        for _ in range(50):
            if "still running: workloads" in out.getvalue():
                seen.set()
                break
            threading.Event().wait(0.05)
    assert seen.is_set()


@pytest.mark.parametrize(("s", "text"), [(9.34, "9.3s"), (245, "4m05s"), (3725, "1h02m")])
def test_fmt_seconds(s: float, text: str) -> None:
    assert fmt_seconds(s) == text


def test_quiet_mode_still_beats_so_a_ci_log_is_never_silent_for_long() -> None:
    import time

    out = io.StringIO()
    p = Progress(quiet=True, stream=out, heartbeat=0.15)
    with p.step("variant series"):
        p("[1/6] series ext4 fio-iouring: pass")  # suppressed: -q keeps only step lines
        time.sleep(0.5)
    text = out.getvalue()
    assert "… still running: variant series" in text and "fio-iouring" not in text
    assert "\r" not in text
