"""series/baseline ratios with 95 % t-intervals (harness.judge.metrics.ratio_ci)."""

from __future__ import annotations

import math
import statistics

import pytest

from harness.judge import metrics
from harness.judge.metrics import job_ratios, ratio_ci, samples, t95


def test_t_quantiles() -> None:
    assert t95(1) == 12.706 and t95(2) == 4.303 and t95(30) == 2.042 and t95(200) == 1.96
    assert t95(2.9) == 4.303  # fractional Welch df round down (a wider, safe interval)
    with pytest.raises(ValueError):
        t95(0.5)


def test_paired_interval_is_the_t_interval_of_the_log_ratios() -> None:
    s, b = [130.0, 118.0, 141.0, 125.0], [100.0, 95.0, 104.0, 99.0]
    ci = ratio_ci(s, b, paired=True)
    assert ci is not None and ci.method == metrics.CI_METHOD_PAIRED
    d = [math.log(x / y) for x, y in zip(s, b, strict=True)]
    half = 3.182 * statistics.stdev(d) / 2
    assert ci.ratio == pytest.approx(math.exp(statistics.fmean(d)))
    assert (ci.low, ci.high) == pytest.approx((math.exp(statistics.fmean(d) - half),
                                               math.exp(statistics.fmean(d) + half)))
    assert ci.significant and ci.word == "higher" and ci.text().startswith(f"{ci.ratio:.2f}x [")


def test_an_interval_spanning_one_is_not_significant() -> None:
    ci = ratio_ci([100.0, 140.0, 90.0], [110.0, 95.0, 120.0])
    assert ci is not None and ci.method == metrics.CI_METHOD_WELCH
    assert ci.low < 1.0 < ci.high and not ci.significant and ci.word == "not significant"
    lower = ratio_ci([50.0, 52.0, 51.0], [100.0, 101.0, 99.0])
    assert lower is not None and lower.high < 1.0 and lower.word == "lower"


def test_welch_matches_a_hand_computation() -> None:
    s, b = [10.0, 12.0, 11.0, 13.0], [8.0, 9.0, 8.5]
    ci = ratio_ci(s, b)
    assert ci is not None
    ls, lb = [math.log(v) for v in s], [math.log(v) for v in b]
    vs, vb = statistics.variance(ls) / 4, statistics.variance(lb) / 3
    df = (vs + vb) ** 2 / (vs ** 2 / 3 + vb ** 2 / 2)
    half = t95(df) * math.sqrt(vs + vb)
    mean = statistics.fmean(ls) - statistics.fmean(lb)
    assert (ci.low, ci.ratio, ci.high) == pytest.approx((math.exp(mean - half), math.exp(mean),
                                                         math.exp(mean + half)))
    assert ci.to_dict()["ci95"] == [round(ci.low, 4), round(ci.high, 4)]


def test_too_few_or_non_positive_samples_give_no_interval() -> None:
    assert ratio_ci([1.0], [1.0, 2.0]) is None
    assert ratio_ci([1.0, 2.0], [1.0], paired=True) is None
    assert ratio_ci([0.0, 2.0], [1.0, 2.0]) is None


def test_job_ratios_read_fio_per_repeat_rows() -> None:
    def job(iops: list[float], ctx: list[int]) -> dict[str, object]:
        return {"per_repeat": [{"iops": i, "ctx": c, "guest_cpu_per_io_us": 50.0 + k}
                               for k, (i, c) in enumerate(zip(iops, ctx, strict=True))],
                "iops": {"median": statistics.median(iops), "values": iops}}
    s, b = job([130.0, 128.0, 131.0], [400, 410, 390]), job([100.0, 102.0, 99.0], [9000, 9100, 8900])
    assert samples(s, "iops") == [130.0, 128.0, 131.0] and samples(s, "cpu_per_io") == [50.0, 51.0, 52.0]
    r = job_ratios(s, b, paired=True)
    assert set(r) == {"iops", "cpu_per_io", "ctx"}
    assert r["iops"].word == "higher" and r["ctx"].word == "lower" and not r["cpu_per_io"].significant
    assert samples({"iops": {"values": [1.0, 2.0]}}, "iops") == [1.0, 2.0] and samples({}, "ctx") == []
