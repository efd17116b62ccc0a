"""Reading numbers out of a job's ``metrics`` dict, whatever shape a runner chose.

Runners store a metric either as a plain number or as a summary of repeats
(``{"median": m, "min": a, "max": b}``, ``{"values": [...]}``, optionally ``"spread"``). Every reader
of results (verdict, markdown, html, compare) goes through this module so the shapes are known once.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Candidate keys per logical metric, first match wins (fio runner names first, then fallbacks).
METRIC_KEYS: dict[str, tuple[str, ...]] = {
    "iops": ("iops", "read_iops"),
    # fio's own wall time per repeat first (the cover letter's "time"), then whole-job wall time.
    "time": ("fio_wall_s", "runtime_s", "time_s", "elapsed_s", "wall_s", "runtime"),
    # Guest-wide busy % first: it covers io-wq workers and task_work, like the cover letter's CPU figure.
    "cpu": ("guest_busy_pct", "cpu_pct", "cpu", "cpu_total_pct"),
    "usr": ("usr_cpu", "cpu_usr", "usr_pct"),
    "sys": ("sys_cpu", "cpu_sys", "sys_pct"),
    "ctx": ("ctx", "ctx_switches", "context_switches"),
}

# Which path a job's reads took is harness.evidence.job_path: the path rule lives there, once.


@dataclass(frozen=True)
class Value:
    """A metric as median and relative spread ((max-min)/median, 0 for a single sample)."""

    median: float
    spread: float = 0.0
    samples: int = 1

    def text(self, fmt: str = "{:,.0f}") -> str:
        """``12,345 ±3%`` (spread omitted for a single sample)."""
        base = fmt.format(self.median)
        return f"{base} ±{self.spread * 100:.0f}%" if self.samples > 1 else base


def _summary(raw: Any) -> Value | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return Value(float(raw))
    if isinstance(raw, list) and raw and all(isinstance(v, int | float) for v in raw):
        return _from_values([float(v) for v in raw])
    if not isinstance(raw, Mapping):
        return None
    values = raw.get("values")
    if isinstance(values, list) and values and all(isinstance(v, int | float) for v in values):
        return _from_values([float(v) for v in values])
    median = raw.get("median", raw.get("mean", raw.get("value")))
    if not isinstance(median, int | float):
        return None
    spread = raw.get("spread")
    lo, hi = raw.get("min"), raw.get("max")
    if not isinstance(spread, int | float):
        spread = (float(hi) - float(lo)) / median if isinstance(lo, int | float) and isinstance(
            hi, int | float) and median else 0.0
    samples = raw.get("samples", raw.get("repeats", 2 if spread else 1))
    return Value(float(median), float(spread), int(samples) if isinstance(samples, int) else 1)


def _from_values(values: list[float]) -> Value:
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med if med else 0.0
    return Value(med, spread, len(values))


def metric(metrics: Mapping[str, Any], name: str) -> Value | None:
    """The logical metric ``name`` (a key of METRIC_KEYS) from a job's metrics, or None."""
    for key in METRIC_KEYS.get(name, (name,)):
        if key in metrics:
            found = _summary(metrics[key])
            if found is not None:
                return found
    if name == "cpu":
        usr, sys_ = metric(metrics, "usr"), metric(metrics, "sys")
        if usr is not None and sys_ is not None:
            return Value(usr.median + sys_.median, max(usr.spread, sys_.spread), min(usr.samples,
                                                                                    sys_.samples))
    return None


def cpu_per_io_us(metrics: Mapping[str, Any]) -> float | None:
    """CPU microseconds spent per completed IO (guest-wide when the runner measured it)."""
    for key in ("guest_cpu_per_io_us", "cpu_per_io_us"):
        given = _summary(metrics.get(key))
        if given is not None:
            return given.median
    cpu, iops = metric(metrics, "cpu"), metric(metrics, "iops")
    if cpu is None or iops is None or iops.median <= 0:
        return None
    return cpu.median / 100.0 / iops.median * 1e6


def job_value(job: Mapping[str, Any], name: str) -> Value | None:
    """A job's metric by name; ``cpu_per_io`` is derived (µs of CPU per read) rather than stored."""
    m = job.get("metrics") or {}
    if name == "cpu_per_io":
        v = cpu_per_io_us(m)
        return Value(v) if v is not None else None
    return metric(m, name)
