"""Revisions side by side on fake stage results: changed patches next to the checks that changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.judge import revcompare


@dataclass
class _Rev:
    version: int


@dataclass
class _Change:
    status: str
    subject: str
    old: int | None
    new: int | None
    interdiff: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "subject": self.subject, "old": self.old, "new": self.new,
                "interdiff": self.interdiff}


def _fake_diff(a: _Rev, b: _Rev) -> list[_Change]:
    if (a.version, b.version) == (3, 4):
        return [_Change("unchanged", "block: read-ahead", 1, 1),
                _Change("changed", "mm: add support for async page locking", 4, 4, "-a\n+b\n+c\n")]
    return [_Change("changed", "io_uring: support true async buffered reads", 12, 12, "-x\n+y\n")]


def _fio(variant: str, fs: str, callbacks: int, enqueues: int, status: str = "pass") -> dict[str, Any]:
    return {"variant": variant, "workload": "fio-iouring", "fs": fs, "status": status, "reason": "",
            "evidence": {"counts": {"callback": callbacks, "iowq_enqueue": enqueues},
                         "path": {"async": callbacks > 0 and enqueues == 0, "punted": enqueues > 0}}}


def _probe(variant: str, status: str, reason: str = "") -> dict[str, Any]:
    return {"variant": variant, "workload": "probe-iopoll-buffered", "fs": "ext4", "status": status,
            "reason": reason}


JOBS = [
    _fio("series-v3", "ext4", 40000, 0), _fio("series-v4", "ext4", 41000, 0),
    _fio("series-v5", "ext4", 42881, 0), _fio("baseline", "ext4", 0, 30000),
    _probe("series-v3", "fail", "polled buffered read took the async path"),
    _probe("series-v4", "pass"), _probe("series-v5", "pass"), _probe("baseline", "pass"),
]
CONCERNS = [{"concern_id": "hipri-guard", "title": "IOCB_HIPRI guard", "version": 3, "status": "present",
             "evidence": "no IOCB_HIPRI test", "workloads": ["probe-iopoll-buffered"]},
            {"concern_id": "hipri-guard", "title": "IOCB_HIPRI guard", "version": 4, "status": "addressed",
             "evidence": "if (kiocb->ki_flags & IOCB_HIPRI)", "workloads": ["probe-iopoll-buffered"]}]
VARIANTS = {3: "series-v3", 4: "series-v4", 5: "series-v5"}


def test_pairs_name_the_changed_patches_next_to_the_changed_checks() -> None:
    comp = revcompare.compare([_Rev(3), _Rev(4), _Rev(5)], JOBS, VARIANTS, concerns=CONCERNS, diff=_fake_diff)
    v3v4, v4v5 = comp.pairs
    assert (v3v4.old, v3v4.new) == ("v3", "v4")
    assert [p["subject"] for p in v3v4.patches] == ["mm: add support for async page locking"]
    assert v3v4.patches[0]["interdiff_lines"] == 3 and "interdiff" not in v3v4.patches[0]
    assert v3v4.checks == [{"check": "probe-iopoll-buffered@ext4", "before": "fail", "after": "pass",
                            "before_reason": "polled buffered read took the async path",
                            "after_reason": ""}]
    assert [p["new"] for p in v4v5.patches] == [12] and v4v5.checks == []


def test_each_revision_gets_paths_attributed_failures_and_concerns_beside_the_run() -> None:
    comp = revcompare.compare([_Rev(3), _Rev(4), _Rev(5)], JOBS, VARIANTS, concerns=CONCERNS, diff=_fake_diff)
    v3 = comp.revisions[0]
    assert v3.paths["ext4"]["path"] == "async"
    [failure] = v3.failures
    assert failure["verdict"] == "introduced" and failure["text"].startswith("introduced by v3")
    assert v3.concerns == [{"concern": "hipri-guard", "title": "IOCB_HIPRI guard", "status": "present",
                            "evidence": "no IOCB_HIPRI test", "run": {"probe-iopoll-buffered@ext4": "fail"}}]
    assert comp.revisions[1].concerns[0]["run"] == {"probe-iopoll-buffered@ext4": "pass"}
    text = revcompare.markdown(comp)
    assert "## v3 → v4" in text and "- `probe-iopoll-buffered@ext4`: fail → pass" in text
    assert "- patch 4→4 changed: mm: add support for async page locking (3 lines differ)" in text
    assert "## v4 → v5" in text and "- outcomes: no check changed" in text


def test_a_revision_that_did_not_run_shows_as_not_run() -> None:
    comp = revcompare.compare([_Rev(4), _Rev(5)], [j for j in JOBS if j["variant"] != "series-v5"],
                              VARIANTS, diff=_fake_diff)
    assert not comp.revisions[1].ran
    assert {"check": "fio-iouring@ext4", "before": "pass", "after": "not run", "before_reason": "",
            "after_reason": ""} in comp.pairs[0].checks


def test_the_real_series_diff_says_v5_changed_patch_12_and_04s_message(lore_mbox: Path) -> None:
    from harness.series import find_family, load_families

    family = find_family(load_families(str(lore_mbox)), None)
    revs = [family.revision(v) for v in (3, 4, 5)]
    comp = revcompare.compare(revs, JOBS, VARIANTS, concerns=CONCERNS)
    v3v4, v4v5 = comp.pairs
    # v5 changed patch 12's code and only 04/12's commit message (the series diff tells them apart)
    assert [(p["new"], p["status"]) for p in v4v5.patches] == [(4, "message-changed"), (12, "changed")]
    assert [(p["new"], p["status"]) for p in v3v4.patches] == [(n, "changed") for n in (4, 5, 11, 12)]
    assert v3v4.checks[0]["check"] == "probe-iopoll-buffered@ext4"
