"""Reading numbers out of a job's ``metrics`` dict, whatever shape a runner chose.

Runners store a metric either as a plain number or as a summary of repeats
(``{"median": m, "min": a, "max": b}``, ``{"values": [...]}``, optionally ``"spread"``). Every reader
of results (verdict, markdown, html, compare) goes through this module so the shapes are known once.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
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

# Which path a job's reads took is harness.workloads.evidence.job_path: the path rule lives there, once.


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


# --- series/baseline ratios with a 95 % confidence interval ------------------------------------------

# Two-sided 95 % Student t quantiles by degrees of freedom (1-30); beyond, the normal 1.96 is close enough.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042)
CI_METHOD_PAIRED = "t-interval on per-pair log ratios (A/B pairs measured back to back)"
CI_METHOD_WELCH = "Welch t-interval on log values (series and baseline repeats, unpaired)"


def t95(df: float) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (df rounded down)."""
    if df < 1:
        raise ValueError("a t-interval needs at least 1 degree of freedom")
    return _T95[int(df) - 1] if df < len(_T95) + 1 else 1.96


@dataclass(frozen=True)
class RatioCI:
    """series/baseline as a geometric-mean ratio with its 95 % interval, and whether it excludes 1.0."""

    ratio: float
    low: float
    high: float
    n_series: int
    n_baseline: int
    method: str

    @property
    def significant(self) -> bool:
        """True when the interval does not contain 1.0 (no change)."""
        return self.low > 1.0 or self.high < 1.0

    @property
    def word(self) -> str:
        """"higher", "lower" or "not significant"."""
        if not self.significant:
            return "not significant"
        return "higher" if self.ratio > 1.0 else "lower"

    @property
    def method_short(self) -> str:
        """"paired t" or "Welch t" (both on logs)."""
        return "paired t" if self.method == CI_METHOD_PAIRED else "Welch t"

    def text(self) -> str:
        """``1.31x [1.12, 1.52] higher`` (95 % CI)."""
        return f"{self.ratio:.2f}x [{self.low:.2f}, {self.high:.2f}] {self.word}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (results.json ``ratios``)."""
        return {"ratio": round(self.ratio, 4), "ci95": [round(self.low, 4), round(self.high, 4)],
                "significant": self.significant, "word": self.word, "n_series": self.n_series,
                "n_baseline": self.n_baseline, "method": self.method}


def ratio_ci(series: list[float], baseline: list[float], paired: bool = False) -> RatioCI | None:
    """The series/baseline ratio of two samples with a 95 % t-interval, computed on logs (ratios are
    multiplicative: the interval is symmetric in log space and never goes negative).

    ``paired``: ``series[i]`` and ``baseline[i]`` were measured back to back (A/B/A/B alternation), so the
    per-pair log ratios are the sample and host drift between pairs cancels; else Welch's unequal-variance
    interval on the two log samples. None when a sample is too small (< 2, or < 2 pairs) or not positive.
    """
    if any(v <= 0 for v in series + baseline):
        return None
    if paired:
        n = min(len(series), len(baseline))
        if n < 2:
            return None
        d = [math.log(s) - math.log(b) for s, b in zip(series[:n], baseline[:n], strict=False)]
        mean, se = statistics.fmean(d), statistics.stdev(d) / math.sqrt(n)
        half = t95(n - 1) * se
        return RatioCI(math.exp(mean), math.exp(mean - half), math.exp(mean + half), n, n, CI_METHOD_PAIRED)
    if len(series) < 2 or len(baseline) < 2:
        return None
    ls, lb = [math.log(v) for v in series], [math.log(v) for v in baseline]
    vs, vb = statistics.variance(ls) / len(ls), statistics.variance(lb) / len(lb)
    mean = statistics.fmean(ls) - statistics.fmean(lb)
    se = math.sqrt(vs + vb)
    if se == 0:
        return RatioCI(math.exp(mean), math.exp(mean), math.exp(mean), len(ls), len(lb), CI_METHOD_WELCH)
    df = (vs + vb) ** 2 / (vs ** 2 / (len(ls) - 1) + vb ** 2 / (len(lb) - 1))
    half = t95(df) * se
    return RatioCI(math.exp(mean), math.exp(mean - half), math.exp(mean + half), len(ls), len(lb),
                   CI_METHOD_WELCH)


# Per-repeat sample keys per logical metric for ratio_ci (fio's per_repeat rows).
SAMPLE_KEYS = {"iops": ("iops",), "cpu_per_io": ("guest_cpu_per_io_us", "cpu_per_io_us"), "ctx": ("ctx",)}


def samples(metrics: Mapping[str, Any], name: str) -> list[float]:
    """The per-repeat values of a logical metric (``iops``, ``cpu_per_io``, ``ctx``) of one job."""
    for key in SAMPLE_KEYS.get(name, (name,)):
        rows = metrics.get("per_repeat")
        if isinstance(rows, list):
            vals = [float(r[key]) for r in rows if isinstance(r, Mapping)
                    and isinstance(r.get(key), int | float) and not isinstance(r.get(key), bool)]
            if vals:
                return vals
        raw = metrics.get(key)
        if isinstance(raw, Mapping) and isinstance(raw.get("values"), list):
            vals = [float(v) for v in raw["values"] if isinstance(v, int | float) and not isinstance(v, bool)]
            if vals:
                return vals
    return []


def job_ratios(series: Mapping[str, Any], baseline: Mapping[str, Any],
               paired: bool = False) -> dict[str, RatioCI]:
    """series/baseline :class:`RatioCI` of IOPS, CPU per IO and context switches for two jobs' metrics
    (a metric missing on either side is left out)."""
    out: dict[str, RatioCI] = {}
    for name in SAMPLE_KEYS:
        ci = ratio_ci(samples(series, name), samples(baseline, name), paired=paired)
        if ci is not None:
            out[name] = ci
    return out


def run_ratios(jobs: Sequence[Mapping[str, Any]], kinds: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """results.json ``ratios``: fs -> workload -> metric -> :meth:`RatioCI.to_dict`, for every workload
    with a job on a ``series`` and on a ``baseline`` variant (``kinds``: variant -> kind). Jobs whose
    metrics say ``ab_paired`` (repeats measured in A/B alternation, one pair per index) get the paired
    interval, others Welch's."""
    by: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    for job in jobs:
        kind = kinds.get(str(job.get("variant")), "")
        if kind in ("series", "baseline"):
            by[(str(job.get("fs")), str(job.get("workload")), kind)] = job.get("metrics") or {}
    out: dict[str, dict[str, Any]] = {}
    for (fs, workload, kind), s in sorted(by.items()):
        b = by.get((fs, workload, "baseline"))
        if kind != "series" or b is None:
            continue
        found = job_ratios(s, b, paired=bool(s.get("ab_paired") and b.get("ab_paired")))
        if found:
            out.setdefault(fs, {})[workload] = {name: ci.to_dict() for name, ci in found.items()}
    return out
