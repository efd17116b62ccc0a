"""The kernel build as one progress line: objects done / expected, elapsed, ETA.

*Objects* are kbuild's target lines (``CC``, ``LD``, ``AR``, …). What to expect comes from the last build
of the same configuration in the same build directory — a cold build (no vmlinux yet) from the last cold
one, an incremental build from the last incremental one — kept in ``<cache>/build-history/<build dir
name>.json`` (outside the build dir, so a cold build after deleting it still has it) with that build's time
profile (seconds at each object count). Without a profile the expected count comes
from the newest finished build log of that configuration (kbuild's own count of what it did), or, on the
first build of a configuration, from the tree's Kbuild files (``kbuildcount``), and the ETA follows a
generic cold-build shape (``cold-build-curve.json``; a linear ETA in objects was 34% off at the halfway
point because early objects compile slower than later ones).
With a profile the ETA is the profile's remaining time scaled by how fast this build
is going compared with it (the host's speed drifts ~2x between days; the phases of a build do not).

Every sample (time, done, expected, eta) is appended to ``<build dir>/kwb-progress/<log name>.jsonl``;
``scripts/bench_eta.py`` computes from such a file how far the ETA was off at the halfway point.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.paths import cache_dir
from harness.core.progress import fmt_seconds
from harness.kernel import kbuildcount

TARGET = re.compile(r"^\s+(CC|LD|AR|AS|CHK|GEN|HOSTCC|HOSTLD|OBJCOPY|UPD|BUILD|LDS|MODPOST|VDSO\S*|"
                    r"WRAP|SYSHDR|SYSTBL|MKELF|ZOFFSET|VOFFSET|RELOCS|KSYMS|SORTTAB|NM|CPUSTR|"
                    r"POLICY|MKCAP|SYSMAP|EXPORTS|HYPERCALLS|TABLE|INSTALL|COPY|LZMA|GZIP|ZSTD\S*)\s")
SAMPLE_EVERY = 2.0     # seconds between recorded samples (and live-line redraws)
PROFILE_POINTS = 400   # a kept profile is thinned to about this many points
MIN_DONE = 20         # objects before an ETA is shown (and never before 1% of the expected count)
READY = "is ready"     # kbuild's last line: "Kernel: arch/x86/boot/bzImage is ready"


@dataclass
class Expectation:
    """What the meter expects: an object count, where it came from, and a time profile if any."""

    objects: int | None
    source: str
    profile: list[tuple[float, int]] = field(default_factory=list)  # (seconds, objects done)
    seconds: float | None = None


def progress_dir(build_dir: Path) -> Path:
    """``<build dir>/kwb-progress``: history and per-build samples."""
    return build_dir / "kwb-progress"


def history_path(build_dir: Path) -> Path:
    """Where the object counts and time profiles of a build dir's last builds are kept."""
    return cache_dir() / "build-history" / f"{build_dir.name}.json"


def _history(build_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(history_path(build_dir).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def count_log(log: Path) -> int | None:
    """kbuild's count of objects in a finished build log (None if the build did not finish)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    if not any(READY in ln for ln in lines[-20:]):
        return None
    return sum(1 for ln in lines if TARGET.match(ln))


def expect(build_dir: Path, cold: bool, logs: Path | None = None, cfg12: str = "",
           tree: Path | None = None) -> Expectation:
    """What the next build of ``build_dir`` should do (see the module docstring)."""
    kind = "cold" if cold else "incremental"
    rec = _history(build_dir).get(kind)
    if isinstance(rec, dict) and rec.get("objects"):
        profile = [(float(t), int(d)) for t, d in rec.get("profile") or []]
        return Expectation(int(rec["objects"]), f"last {kind} build", profile, float(rec.get("seconds") or 0))
    if not cold:
        return Expectation(None, "no earlier incremental build of this configuration")
    if logs is not None and logs.is_dir():
        # Newest finished log of this configuration (e.g. a build made before meters were kept).
        for log in sorted(logs.glob(f"build-*-{cfg12}-*.log"), key=lambda p: p.stat().st_mtime, reverse=True):
            n = count_log(log)
            if n:
                return Expectation(n, f"kbuild's count in {log.name}", generic_profile(n))
    config = build_dir / ".config"
    if tree is not None and config.is_file():
        try:
            n = kbuildcount.estimate(tree, config)
        except (OSError, UserError):
            n = 0  # only a progress estimate: the build itself reports a bad tree or .config
        if n > kbuildcount.FIXED:
            return Expectation(n, "estimated from the tree's Kbuild files, first build of this "
                               "configuration", generic_profile(n))
    return Expectation(None, "no earlier build of this configuration")


CURVE = Path(__file__).with_name("cold-build-curve.json")


def generic_profile(objects: int) -> list[tuple[float, int]]:
    """A time profile for a cold build of ``objects`` with none of its own yet: the shape in
    ``cold-build-curve.json`` on a nominal 1,000 s (the ETA scales it by this build's own pace)."""
    try:
        points = json.loads(CURVE.read_text(encoding="utf-8"))["points"]
    except (OSError, ValueError, KeyError):
        return []  # the ETA falls back to linear in objects
    return [(round(1000.0 * float(t), 2), round(objects * float(f))) for f, t in points]


class BuildMeter:
    """Counts kbuild target lines and shows/records progress; feed it every output line."""

    def __init__(self, expectation: Expectation, samples: Path | None,
                 show: Callable[[str], None] | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.exp = expectation
        self.samples = samples
        self.show = show
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.last_sample = -SAMPLE_EVERY
        self.profile: list[tuple[float, int]] = [(0.0, 0)]
        self.current = ""
        if samples is not None:
            samples.parent.mkdir(parents=True, exist_ok=True)
            samples.write_text("", encoding="utf-8")

    def __call__(self, line: str) -> None:
        """One line of make's output."""
        if not TARGET.match(line):
            return
        self.done += 1
        self.current = " ".join(line.split())
        now = self.clock() - self.start
        if now - self.last_sample >= SAMPLE_EVERY:
            self.last_sample = now
            self.profile.append((round(now, 2), self.done))
            eta = self.eta(now)
            self._record(now, eta)
            if self.show is not None:
                self.show(self.text(now, eta))

    def expected(self) -> int | None:
        """The expected object count, never below what is already done."""
        return max(self.exp.objects, self.done) if self.exp.objects else None

    def eta(self, elapsed: float) -> float | None:
        """Seconds left, or None when nothing is known yet."""
        total = self.expected()
        if total is None or self.done < max(MIN_DONE, total // 100):
            return None  # the first objects (Makefile, headers) say nothing about the pace: "ETA 1h12m"
        prof = self.exp.profile
        if len(prof) >= 2 and prof[-1][1] > 0:
            # Where the earlier build was at this object count, and how much longer it took from there.
            t_then = _time_at(prof, self.done * prof[-1][1] / total)
            if t_then > 1.0:
                rate = elapsed / t_then
                return max(0.0, (prof[-1][0] - t_then) * rate)
        return max(0.0, elapsed / self.done * (total - self.done))

    def text(self, elapsed: float, eta: float | None) -> str:
        """``build: 4,210/9,838 objects (43%), 8m12s, ETA 10m40s — CC fs/xfs/xfs_icache.o``."""
        total = self.expected()
        if total:
            head = f"build: {self.done:,}/{total:,} objects ({100 * self.done // total}%)"
        else:
            head = f"build: {self.done:,} objects (no earlier build to compare)"
        tail = f", ETA {fmt_seconds(eta)}" if eta is not None else ""
        return f"{head}, {fmt_seconds(elapsed)}{tail} — {self.current}"

    def _record(self, elapsed: float, eta: float | None) -> None:
        if self.samples is None:
            return
        sample = {"t": round(elapsed, 2), "done": self.done, "expected": self.expected(),
                  "eta": None if eta is None else round(eta, 1), "source": self.exp.source}
        with self.samples.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(sample) + "\n")

    def finish(self, build_dir: Path, cold: bool, ok: bool) -> str:
        """Record the last sample and, for a finished build, keep its count and profile for next time."""
        elapsed = self.clock() - self.start
        self.profile.append((round(elapsed, 2), self.done))
        self._record(elapsed, 0.0)
        if ok and self.done:
            keep(build_dir, cold, self.done, elapsed, self.profile)
        return f"build: {self.done:,} objects in {fmt_seconds(elapsed)}"


def keep(build_dir: Path, cold: bool, objects: int, seconds: float, profile: list[tuple[float, int]]) -> Path:
    """Record a finished build's object count and (thinned) time profile for the next one."""
    hist = _history(build_dir)
    step = max(1, len(profile) // PROFILE_POINTS)
    hist["cold" if cold else "incremental"] = {
        "objects": objects, "seconds": round(seconds, 1),
        "profile": [list(p) for p in profile[::step]] + [list(profile[-1])]}
    path = history_path(build_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(hist), encoding="utf-8")
    os.replace(tmp, path)
    return path


def profile_from_mtimes(build_dir: Path, start: float, end: float) -> list[tuple[float, int]]:
    """A finished cold build's time profile read back from its objects' modification times (seconds
    after ``start`` at which the n-th object was written), for builds made before meters were kept.
    Objects rebuilt after ``end`` (later incremental builds) are left out."""
    times = sorted(p.stat().st_mtime - start for p in build_dir.rglob("*.o")
                   if start <= p.stat().st_mtime <= end)
    points = [(round(t, 2), n) for n, t in enumerate(times, 1)]
    return [(0.0, 0), *points, (round(end - start, 2), len(times))]


def _time_at(profile: list[tuple[float, int]], done: float) -> float:
    """Seconds at which ``profile`` had done ``done`` objects (linear between points)."""
    counts = [d for _, d in profile]
    i = bisect.bisect_left(counts, done)
    if i <= 0:
        return profile[0][0]
    if i >= len(profile):
        return profile[-1][0]
    (t0, d0), (t1, d1) = profile[i - 1], profile[i]
    return t0 if d1 == d0 else t0 + (t1 - t0) * (done - d0) / (d1 - d0)
