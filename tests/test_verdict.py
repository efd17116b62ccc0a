"""Verdict rules: series passes everything, baseline shows the punt path, every mutant flagged; the jobs
that prove a path are the ones whose workload declares the profile's proving check (must_show)."""

from __future__ import annotations

from typing import Any

import pytest
from test_report_results import VARIANTS, synthetic_jobs

from harness.judge.verdict import NOT_SHOWN, VariantInfo, decide, job_verdict, path_by_fs
from harness.workloads import evidence
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
    _set(jobs, "series", "btrfs", "fio-iouring", status="fail", reason="async-path not shown: 0 hits",
         evidence={"counts": {"callback": 0, "iowq_enqueue": 9000},
                   "checks": [{"name": "async-path", "ok": False, "reason": "0 hits"}]})
    v = decide(jobs, VARIANTS)
    assert v.variants["series"].verdict == "fail" and not v.ok
    assert "fio-iouring@btrfs fail: async-path not shown: 0 hits" in v.variants["series"].reason
    assert v.variants["series"].paths["btrfs"]["path"] == "io-wq"


def test_baseline_taking_the_async_path_is_caught() -> None:
    jobs = _jobs()
    _set(jobs, "baseline", "ext4", "fio-iouring", status="fail",
         evidence={"counts": {"callback": 500, "iowq_enqueue": 0},
                   "checks": [{"name": "no-callback", "ok": False, "reason": "500 hits"},
                              {"name": "iowq-path", "ok": False, "reason": "0"}]})
    v = decide(jobs, VARIANTS)
    assert v.variants["baseline"].verdict == "punt-missing" and not v.ok
    assert "iowq-path not shown on ext4 (callback=500 io-wq=0)" in v.variants["baseline"].reason


def test_baseline_path_job_that_timed_out_says_so() -> None:
    jobs = _jobs()
    _set(jobs, "baseline", "ext4", "fio-iouring", status="timeout", evidence={},
         reason="job exceeded its timeout of 300s")
    v = decide(jobs, VARIANTS)
    assert "iowq-path not shown on ext4 (fio-iouring timeout: job exceeded its timeout of 300s)" in \
        v.variants["baseline"].reason


def _liburing_job(variant: str, fs: str, status: str = "pass") -> dict[str, Any]:
    return {"workload": "liburing-subset", "fs": fs, "variant": variant, "status": status, "reason": "",
            "evidence": {"kernel": "6.12.117", "checks": [{"name": "tests-pass", "ok": status == "pass",
                                                           "reason": "26 pass"}]}}


def test_liburing_only_series_run_is_not_shown_not_fail() -> None:
    """A series run whose only job is a passing liburing-subset proves nothing about the path: it says so,
    and does not call the series failed (the old verdict said "fail: async path not shown")."""
    v = decide([_liburing_job("series", fs) for fs in ("ext4", "xfs")], [VariantInfo("series", "series")])
    series = v.variants["series"]
    assert series.verdict == "not-shown" and series.ok
    assert series.reason == f"async-path {NOT_SHOWN} (all 2 jobs passed)"
    assert v.reasons == ["no baseline variant in this run"]
    # ... while a failing liburing job still fails the series
    failed = decide([_liburing_job("series", "ext4", "fail")], [VariantInfo("series", "series")])
    assert failed.variants["series"].verdict == "fail"


def test_proof_comes_from_declarations_not_job_names() -> None:
    """A job proves the path because its workload declares the proving check, whatever its name; a job
    named like the plain io_uring one that declares something else proves nothing."""
    declared = {"my-reads": {"": ["async-path"]}, "fio-iouring": {"": ["tests-pass"]}}
    prover = {"workload": "my-reads", "fs": "xfs", "variant": "series", "status": "pass",
              "evidence": {"counts": {"callback": 9, "iowq_enqueue": 0}}}
    named_alike = {"workload": "fio-iouring", "fs": "ext4", "variant": "series", "status": "pass",
                   "evidence": {"counts": {"callback": 0, "iowq_enqueue": 9000}}}
    v = decide([prover, named_alike], [VariantInfo("series", "series")], declared)
    assert v.variants["series"].verdict == "pass"
    assert v.variants["series"].paths == {"xfs": {"path": "async", "evidence": "callback=9 io-wq=0",
                                                   "workload": "my-reads"}}
    assert f"async-path {NOT_SHOWN} on ext4" in v.variants["series"].reason


def test_two_path_rules_counter_case_gives_one_answer() -> None:
    """200 callbacks, 900 io-wq enqueues, 100,000 reads: ≤ 1 % of the reads is noise, so "async", from
    the runner's rule and from the verdict's reading of a recorded job alike (they used to differ)."""
    counts: dict[str, int | None] = {"callback": 200, "iowq_enqueue": 900}
    assert evidence.path_taken(counts, 100_000) == "async"
    job = {"workload": "fio-iouring", "fs": "ext4", "variant": "series", "status": "pass",
           "evidence": {"counts": counts},
           "metrics": {"per_repeat": [{"total_ios": 50_000}, {"total_ios": 50_000}]}}
    assert evidence.job_path(job)[0] == "async"
    assert path_by_fs([job], "series", {"fio-iouring": {"": ["async-path"]}})["ext4"]["path"] == "async"
    check = evidence.check_async_path(counts, 100_000)
    assert check.ok and "io_async_buf_func 200 hits, io_wq_enqueue 900" in check.reason


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


@pytest.mark.parametrize(("evidence", "path"), [
    ({"counts": {"callback": 144218, "iowq_enqueue": 0}}, "async"),
    ({"counts": {"callback": 144218, "iowq_enqueue": 12}}, "async"),      # under the noise floor
    ({"counts": {"callback": 1000, "iowq_enqueue": 500}}, "mixed"),
    ({"counts": {"callback": 0, "iowq_enqueue": 72091}}, "io-wq"),
    ({"counts": {"callback": None, "iowq_enqueue": None}}, "unknown"),    # not probeable on this kernel
    ({"path": "io-wq"}, "io-wq"),
    # The real baseline: callback gone from the kernel, the runner undecided, io-wq doing the reads.
    ({"path": "unknown", "counts": {"callback": None, "iowq_enqueue": 22748, "queue_async": 22748}}, "io-wq"),
    ({}, "unknown"),
])
def test_job_path(evidence: dict[str, Any], path: str) -> None:
    assert globals()["evidence"].job_path({"evidence": evidence})[0] == path


def test_job_status_values_match_the_model() -> None:
    from harness.judge.verdict import INFRA_STATUSES, KILL_STATUSES, OK_STATUSES

    assert {s.value for s in JobStatus} == KILL_STATUSES | OK_STATUSES | INFRA_STATUSES


def test_a_profile_without_a_baseline_proof_needs_no_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second profile declares only the series' proof: its series-only run is complete."""
    from harness.core import profile

    monkeypatch.setenv(profile.ENV, "cq-eventfd-disable")
    job = {"workload": "liburing-eventfd", "fs": "ext4", "variant": "series", "status": "pass",
           "evidence": {"checks": [{"name": "tests-pass", "ok": True, "reason": "4 pass"}]}}
    v = decide([job], [VariantInfo("series", "series")])
    assert v.ok and v.reasons == [] and v.variants["series"].verdict == "pass"


def test_not_shown_verdict_is_valid_results_json() -> None:
    """A "not-shown" series verdict is a value results.json's schema accepts."""
    from test_report_results import synthetic_record

    from harness.report import schema

    rec = synthetic_record()
    rec.jobs = [_liburing_job("series", "ext4")]
    rec.variant_infos = [VariantInfo("series", "series")]
    data = rec.to_dict()
    assert data["variants"]["series"]["verdict"] == "not-shown"
    assert schema.errors(data) == []


def test_a_skipped_proving_job_proves_nothing_either_way() -> None:
    jobs = _jobs()
    _set(jobs, "baseline", "bdev", "fio-iouring", status="skip", evidence={})
    _set(jobs, "baseline", "bdev", "fio-iouring-forced-async", status="skip", evidence={})
    v = decide(jobs, VARIANTS)
    assert v.variants["baseline"].verdict == "punt-shown"
    assert v.variants["baseline"].reason == "iowq-path shown on btrfs, ext4, xfs"
