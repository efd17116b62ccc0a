"""Wedge detection end to end. Unit tier: the runner resumes a liburing job the guest's reboot cut short
(fake guests). Real tier: the test-only kernel ``selftest-wedge-reader`` spins liburing's read-write test
in filemap_read() without rescheduling; kwb must name the wedge (and the test) within 60 s with a kernel
stack, reboot, and run the tests after it on the fresh guest."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_workloads_fakeguest import fake_kernel

from harness.core.run import Result
from harness.kernel.build import ensure_kernel
from harness.workloads import liburing, runner
from harness.workloads.model import JobStatus, WorkloadSpec

TESTS = ["nop", "read-write", "fsync", "probe"]


def _spec(per_test: int = 60) -> WorkloadSpec:
    return WorkloadSpec(name="liburing-wedge", kind="liburing", description="wedge detection",
                        filesystems=["ext4"], timeout=900, must_show=["tests-pass"],
                        params={"tests": list(TESTS), "per_test_timeout": per_test, "parallel": 1})


class _WedgingGuest:
    """A guest that wedges in read-write (the first boot only) and reports it like Guest.wedge does."""

    def __init__(self, boot: int) -> None:
        self.boot = boot
        self.wedge: Any = None
        self.ran: list[str] = []

    def run(self, command: str, timeout: float) -> Result:
        argv = ["sh", "-c", command]
        if self.wedge is not None:
            return Result(argv, -1, "", "kwb: guest stopped answering\n", 0.0, timed_out=True)
        name = next((t for t in TESTS if f"/{t}.t" in command), None)
        if name:
            self.ran.append(name)
        if name == "read-write" and self.boot == 1:
            self.wedge = {"alive": True, "how": "the command could not be killed", "detected_after_s": 41.0,
                          "unkillable": ["412 R - read-write.t"], "excerpt": "RIP: filemap_read+0x3a"}
            return Result(argv, -1, "", "kwb: abandoned\n", 40.0)
        return Result(argv, 0, "6.12.117\n" if "uname" in command else "", "", 0.1)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return self.wedge is None


def test_runner_resumes_the_tests_a_wedge_kept_from_running(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liburing, "build_tests", lambda: tmp_path / "t")
    monkeypatch.setattr(liburing, "list_tests", lambda _d: list(TESTS))
    monkeypatch.setattr(runner, "variant_kind", lambda _v: "selftest")
    guests: list[_WedgingGuest] = []

    @contextmanager
    def factory(_k: Path, _d: list[Path], _r: Path) -> Any:
        guests.append(_WedgingGuest(len(guests) + 1))
        yield guests[-1]

    results = runner.run_variant("selftest-wedge-reader", ["ext4"], ["liburing-wedge"], tmp_path / "out",
                                 kernel=fake_kernel("selftest-wedge-reader", tmp_path, release=""),
                                 guest_factory=factory, catalogue={"liburing-wedge": _spec()},
                                 scan=lambda _g: [], templates=lambda *_a: tmp_path / "t.qcow2").jobs
    (job,) = [r for r in results if r.workload == "liburing-wedge"]
    assert [g.ran for g in guests] == [["nop", "read-write"], ["fsync", "probe"]]
    by = {s["name"]: s["status"] for s in job.subresults}
    assert by == {"nop": "pass", "read-write": "timeout", "fsync": "pass", "probe": "pass"}
    assert job.evidence["wedge"]["test"] == ["read-write"] and job.evidence["stopped_by"] == ["read-write"]
    assert job.evidence["resumed_after_reboot"] == ["fsync", "probe"] and "resume" not in job.evidence
    assert job.status is JobStatus.TIMEOUT and "wedged in the kernel during read-write" in job.reason
    overhead = job.metrics["overhead"]  # wall minus the tests' own seconds (capped at wall), both guests
    assert 0 <= overhead["workload_s"] <= overhead["wall_s"]
    assert job.metrics["workload_s"] == pytest.approx(40.3)


def test_overhead_is_wall_minus_the_workloads_own_runtime() -> None:
    from harness.workloads.model import JobResult

    r = JobResult("fio-iouring", "ext4", "series", JobStatus.PASS, metrics={"workload_s": 9.0})
    runner._overhead(r, 12.0)
    want = {"wall_s": 12.0, "workload_s": 9.0, "overhead_s": 3.0, "overhead_pct": 25.0}
    assert r.metrics["overhead"] == want
    none = JobResult("probe-x", "ext4", "series", JobStatus.PASS)
    runner._overhead(none, 5.0)
    assert "overhead" not in none.metrics


# --- real tier -----------------------------------------------------------------------------------------

@pytest.mark.boot
@pytest.mark.real
def test_real_wedged_reader_is_named_with_a_stack_and_the_later_tests_run_after_a_reboot(
        tmp_path: Path) -> None:
    start = time.monotonic()
    kernel = ensure_kernel("selftest-wedge-reader", progress=print)
    results = runner.run_variant("selftest-wedge-reader", ["ext4"], ["liburing-wedge"], tmp_path,
                                 progress=print, kernel=kernel, catalogue={"liburing-wedge": _spec()}).jobs
    (job,) = [r for r in results if r.workload == "liburing-wedge"]
    wedge = job.evidence["wedge"]
    print(f"wedge after {wedge['detected_after_s']}s: {wedge['how']}; job {time.monotonic() - start:.0f}s")
    assert wedge["test"] == ["read-write"], wedge
    assert float(wedge["detected_after_s"]) < 60
    # A kernel stack of the wedged reader: the lockup report, the NMI backtrace or /proc/PID/stack.
    assert "filemap_read" in str(wedge["excerpt"]) + str(wedge.get("stacks", "")), wedge["excerpt"][-3000:]
    by = {s["name"]: s["status"] for s in job.subresults}
    assert by["read-write"] == "timeout" and by["nop"] == by["fsync"] == by["probe"] == "pass", by
    assert job.evidence["resumed_after_reboot"] == ["fsync", "probe"]
    assert "during read-write" in job.reason
    assert (tmp_path / "selftest-wedge-reader" / "guest-2").is_dir()
