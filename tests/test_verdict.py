"""Verdict rules: series passes everything, baseline shows the punt path, every mutant flagged."""

from __future__ import annotations

from typing import Any

import pytest
from test_report_results import VARIANTS, synthetic_jobs

from harness.report.metrics import path_of
from harness.verdict import VariantInfo, decide, is_plain_uring, job_verdict
from harness.workloads.model import JobStatus


def _jobs(**kw: Any) -> list[dict[str, Any]]:
    return [j.to_dict() for j in synthetic_jobs(**kw)]


def _set(jobs: list[dict[str, Any]], variant: str, fs: str, workload: str, **changes: Any) -> None:
    hit = [j for j in jobs if (j["variant"], j["fs"], j["workload"]) == (variant, fs, workload)]
    assert hit, (variant, fs, workload)
    for j in hit:
        j.update(changes)


def test_full_synthetic_run_passes() -> None:
    v = decide(_jobs(), VARIANTS)
    assert v.ok and v.exit_code == 0 and v.reasons == []
    assert v.variants["series"].verdict == "pass"
    assert v.variants["baseline"].verdict == "punt-shown"
    assert v.variants["baseline"].paths["xfs"]["path"] == "io-wq"
    assert v.variants["series"].paths["btrfs"] == {"path": "async", "evidence": "callback=144000 io-wq=0",
                                                   "workload": "fio-iouring"}
    assert v.mutants["mutant-kbuf-leak"] == {
        "concern": "kbuf-leak-on-cancel", "flagged": True, "by": ["probe-kbuf-cancel@ext4"],
        "expected": ["probe-kbuf-cancel"], "equivalent": "", "ran": True, "infra_errors": []}
    assert v.variants["mutant-hipri-wait"].verdict == "equivalent"


def test_series_job_failure_fails_the_run() -> None:
    jobs = _jobs()
    _set(jobs, "series", "xfs", "probe-cqe-accounting", status="crash", reason="Oops in xfs_file_read_iter")
    v = decide(jobs, VARIANTS)
    assert not v.ok and v.exit_code == 1
    assert v.variants["series"].verdict == "fail"
    assert "probe-cqe-accounting@xfs crash: Oops in xfs_file_read_iter" in v.variants["series"].reason


def test_series_without_async_path_evidence_fails() -> None:
    jobs = _jobs()
    _set(jobs, "series", "btrfs", "fio-iouring", evidence={"counts": {"callback": 0, "iowq_enqueue": 9000}})
    v = decide(jobs, VARIANTS)
    assert v.variants["series"].verdict == "fail"
    assert "async path not shown on btrfs" in v.variants["series"].reason


def test_baseline_taking_the_async_path_is_caught() -> None:
    jobs = _jobs()
    _set(jobs, "baseline", "ext4", "fio-iouring", evidence={"counts": {"callback": 500, "iowq_enqueue": 0}})
    v = decide(jobs, VARIANTS)
    assert v.variants["baseline"].verdict == "punt-missing" and not v.ok
    assert "punt path not shown on ext4 (callback=500 io-wq=0)" in v.variants["baseline"].reason


def test_baseline_path_job_that_timed_out_says_so() -> None:
    jobs = _jobs()
    _set(jobs, "baseline", "ext4", "fio-iouring", status="timeout", evidence={},
         reason="job exceeded its timeout of 300s")
    v = decide(jobs, VARIANTS)
    assert "punt path not shown on ext4 (fio-iouring timeout: job exceeded its timeout of 300s)" in \
        v.variants["baseline"].reason


def test_baseline_crash_is_not_a_pass() -> None:
    jobs = _jobs()
    _set(jobs, "baseline", "xfs", "probe-kbuf-cancel", status="crash")
    assert decide(jobs, VARIANTS).variants["baseline"].verdict == "punt-missing"


def test_mutant_not_killed_by_a_check_failing_on_series_too() -> None:
    jobs = _jobs()
    # The series itself fails the check that "kills" the mutant: that is no kill.
    _set(jobs, "series", "ext4", "probe-kbuf-cancel", status="fail", reason="flaky")
    v = decide(jobs, VARIANTS)
    assert v.mutants["mutant-kbuf-leak"]["flagged"] is False
    assert v.variants["mutant-kbuf-leak"].verdict == "missed"


def test_infrastructure_errors_do_not_flag_a_mutant() -> None:
    jobs = _jobs(lost_cqe_flagged=False)
    _set(jobs, "mutant-lost-cqe", "xfs", "probe-cqe-accounting", status="error", reason="mkfs failed")
    v = decide(jobs, VARIANTS)
    assert v.mutants["mutant-lost-cqe"]["flagged"] is False
    assert v.mutants["mutant-lost-cqe"]["infra_errors"] == ["probe-cqe-accounting@xfs"]
    assert "mutant-lost-cqe: missed: no check flagged it" in v.reasons


def test_variant_without_jobs_is_not_run_and_missing_kinds_are_named() -> None:
    jobs = [j for j in _jobs() if j["variant"] != "mutant-kbuf-leak"]
    v = decide(jobs, VARIANTS)
    assert v.variants["mutant-kbuf-leak"].verdict == "not-run"
    v2 = decide([j for j in _jobs() if j["variant"] == "series"], [VariantInfo("series", "series")])
    assert v2.reasons == ["no baseline variant in this run"]


def test_undeclared_variants_get_a_kind_from_their_name() -> None:
    jobs = _jobs()
    v = decide(jobs, [])
    assert v.variants["mutant-lost-cqe"].kind == "mutant" and v.variants["series"].kind == "series"


@pytest.mark.parametrize(("kind", "status", "expected"), [
    ("series", "fail", "failure"), ("series", "pass", "pass"), ("series", "error", "error"),
    ("baseline", "fail", "pass"), ("baseline", "crash", "failure"),
    ("mutant", "timeout", "pass"), ("mutant", "error", "error"), ("coverage", "timeout", "failure"),
])
def test_job_verdict_depends_on_variant_kind(kind: str, status: str, expected: str) -> None:
    assert job_verdict({"status": status, "reason": "r"}, kind)[0] == expected


def test_plain_uring_job_names() -> None:
    assert is_plain_uring("fio-iouring") and is_plain_uring("fio-uring-buffered")
    assert not is_plain_uring("fio-iouring-forced-async") and not is_plain_uring("fio-psync")


@pytest.mark.parametrize(("evidence", "path"), [
    ({"counts": {"callback": 144218, "iowq_enqueue": 0}}, "async"),
    ({"counts": {"callback": 144218, "iowq_enqueue": 12}}, "async"),      # under the noise floor
    ({"counts": {"callback": 1000, "iowq_enqueue": 500}}, "mixed"),
    ({"counts": {"callback": 0, "iowq_enqueue": 72091}}, "io-wq"),
    ({"counts": {"callback": None, "iowq_enqueue": None}}, "unknown"),    # not probeable on this kernel
    ({"kprobes": {"io_async_buf_func": 3, "io_wq_enqueue": 0}}, "async"),
    ({"path": "punt"}, "io-wq"),
    # The real baseline: callback gone from the kernel, the runner undecided, io-wq doing the reads.
    ({"path": "unknown", "counts": {"callback": None, "iowq_enqueue": 22748, "queue_async": 22748}}, "io-wq"),
    ({}, "unknown"),
])
def test_path_of(evidence: dict[str, Any], path: str) -> None:
    assert path_of(evidence)[0] == path


def test_job_status_values_match_the_model() -> None:
    from harness.verdict import INFRA_STATUSES, KILL_STATUSES, OK_STATUSES

    assert {s.value for s in JobStatus} == KILL_STATUSES | OK_STATUSES | INFRA_STATUSES
