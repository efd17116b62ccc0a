"""Failures of a revision judged against the base: introduced, on the base too, not applicable."""

from __future__ import annotations

from typing import Any

from harness.judge import attribution as at


def _job(variant: str, workload: str, fs: str, status: str, reason: str = "",
         cases: list[tuple[str, str, str]] | None = None) -> dict[str, Any]:
    return {"variant": variant, "workload": workload, "fs": fs, "status": status, "reason": reason,
            "subresults": [{"name": n, "status": s, "reason": r} for n, s, r in cases or []]}


JOBS = [
    _job("series-v5", "liburing-subset", "ext4", "fail", "2 fail", [
        ("read-write", "fail", "expected read -22"), ("file-verify", "fail", "short read 32768, read 0"),
        ("poll", "pass", ""), ("statx", "skip", "exit 77: statx not supported")]),
    _job("baseline", "liburing-subset", "ext4", "fail", "1 fail", [
        ("read-write", "pass", ""), ("file-verify", "fail", "short read 32768, read 0"),
        ("poll", "fail", "poll timed out"), ("statx", "skip", "exit 77")]),
    _job("series-v5", "probe-completion", "btrfs", "fail", "33 CQEs never arrived"),
    _job("series-v5", "fio-iouring", "xfs", "error", "mount -t xfs /dev/vdb failed"),
    _job("baseline", "fio-iouring", "xfs", "error", "mount -t xfs /dev/vdb failed"),
    _job("series-v5", "probe-iopoll", "ext4", "fail", "32 of 32 polled buffered reads never completed"),
    _job("baseline", "probe-iopoll", "ext4", "fail", "32 of 32 polled buffered reads never completed"),
]


def _by_check(atts: list[at.Attribution]) -> dict[str, at.Attribution]:
    return {a.check: a for a in atts}


def test_each_failure_is_introduced_on_the_base_or_not_applicable() -> None:
    got = _by_check(at.attribute(JOBS, "series-v5", "v5", "baseline",
                                 {"probe-iopoll@ext4": "IORING_SETUP_IOPOLL on buffered files: EOPNOTSUPP"}))
    rw = got["liburing-subset@ext4:read-write"]
    assert rw.verdict == at.INTRODUCED
    assert rw.text.startswith("introduced by v5: fail on v5: expected read -22")
    fv = got["liburing-subset@ext4:file-verify"]
    assert fv.verdict == at.ON_BASE and "fails on the base too" in fv.text and fv.base_status == "fail"
    statx = got["liburing-subset@ext4:statx"]
    assert statx.text == "not applicable on this kernel: exit 77: statx not supported"
    poll = got["liburing-subset@ext4:poll"]
    assert poll.verdict == at.PASS and "fails on the base (fail: poll timed out)" in poll.text
    assert got["probe-completion@btrfs"].verdict == at.UNATTRIBUTED
    assert "the base did not run it" in got["probe-completion@btrfs"].text
    assert got["fio-iouring@xfs"].verdict == at.INFRA_ERROR
    iopoll = got["probe-iopoll@ext4"]
    assert iopoll.verdict == at.NOT_APPLICABLE and "EOPNOTSUPP" in iopoll.text
    assert got["liburing-subset@ext4"].verdict == at.ON_BASE  # the job fails on both


def test_a_failure_the_base_only_skipped_is_the_revisions() -> None:
    a = at.classify("c", "v3", at.Outcome("fail", "boom"), at.Outcome("skip", "needs IOCB_WAITQ"))
    assert a.verdict == at.INTRODUCED and "the base skipped it (needs IOCB_WAITQ)" in a.text


def test_known_failures_inside_a_job_still_count_as_failures_of_the_case() -> None:
    jobs = [_job("v", "liburing-subset", "ext4", "pass", "", [("fpos", "known-fail", "f_pos incorrect")]),
            _job("b", "liburing-subset", "ext4", "pass", "", [("fpos", "known-fail", "f_pos incorrect")])]
    [_job_att, case] = at.attribute(jobs, "v", "v5", "b")
    assert case.verdict == at.ON_BASE
    assert [a.check for a in at.failures(at.attribute(jobs, "v", "v5", "b"))] == ["liburing-subset@ext4:fpos"]
