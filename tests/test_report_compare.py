"""`kwb report --compare`: changed checks and metrics, explained by the revision diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_report_results import DATA, stored

from harness.cli import main
from harness.report.compare import compare, render, series_revdiff


def test_compare_lists_changed_checks_and_metrics() -> None:
    cmp = compare(stored("run-a"), stored("run-b"))
    by_key = {(c.what, c.key): c for c in cmp.changes}
    assert (by_key[("mutant", "mutant-lost-cqe")].before, by_key[("mutant", "mutant-lost-cqe")].after) == \
        ("flagged", "missed")
    assert by_key[("variant", "mutant-lost-cqe")].after == "missed"
    job = by_key[("job", "mutant-lost-cqe/ext4/probe-cqe-accounting")]
    assert (job.before, job.after) == ("timeout", "pass")
    iops = by_key[("metric", "series/ext4/fio-iouring iops")]
    assert iops.after.endswith("(-25%)")
    # Unchanged things are not listed: psync IOPS, the baseline's uring IOPS, the kbuf mutant.
    assert ("metric", "series/ext4/fio-psync iops") not in by_key
    assert ("metric", "baseline/ext4/fio-iouring iops") not in by_key
    assert ("mutant", "mutant-kbuf-leak") not in by_key
    assert cmp.patches == []  # same (no) revision: no revision diff to explain with


def test_compare_of_a_run_with_itself_is_empty() -> None:
    cmp = compare(stored("run-a"), stored("run-a"))
    assert cmp.changes == [] and "No check or metric changed." in render(cmp)


def _with_revision(name: str, rev: int) -> dict[str, Any]:
    data = stored(name)
    data["run"]["revision"], data["run"]["source"] = rev, "lore.mbox"
    return data


def test_changes_are_explained_by_patches_touching_relevant_files() -> None:
    asked = []

    def revdiff(source: str, a: int, b: int) -> list[dict[str, Any]]:
        asked.append((source, a, b))
        return [{"status": "unchanged", "subject": "block: add RWF_NOWAIT", "old": 1, "new": 1,
                 "files": ["block/blk-core.c"]},
                {"status": "changed", "subject": "fs: add FMODE_BUF_RASYNC", "old": 6, "new": 6,
                 "files": ["include/linux/fs.h"]},
                {"status": "changed", "subject": "xfs: flag files as supporting buffered async reads",
                 "old": 10, "new": 10, "files": ["fs/xfs/xfs_file.c"]},
                {"status": "new", "subject": "io_uring: support true async buffered reads", "old": None,
                 "new": 12, "files": ["fs/io_uring.c"]}]

    a, b = _with_revision("run-a", 4), _with_revision("run-b", 5)
    b["concerns"] = [{**c, "status": "addressed"} if c["concern_id"] == "should-retry-comment" else c
                     for c in b["concerns"]]
    cmp = compare(a, b, revdiff)
    assert asked == [("lore.mbox", 4, 5)] and cmp.revisions == (4, 5)
    by_key = {(c.what, c.key): c for c in cmp.changes}
    ext4_iops = by_key[("metric", "series/ext4/fio-iouring iops")]
    assert ext4_iops.explained_by == ["changed  6: fs: add FMODE_BUF_RASYNC",
                                      "new 12: io_uring: support true async buffered reads"]
    xfs_iops = by_key[("metric", "series/xfs/fio-iouring iops")]
    assert "changed 10: xfs: flag files as supporting buffered async reads" in xfs_iops.explained_by
    concern = by_key[("concern", "should-retry-comment [fs/io_uring.c]")]
    assert (concern.before, concern.after) == ("present", "addressed")
    assert concern.explained_by == ["new 12: io_uring: support true async buffered reads"]
    text = render(cmp)
    assert "(v4 → v5)" in text and "Revision diff: 3 of 4 patches changed." in text


def test_real_revision_diff_v4_to_v5_names_patch_12(lore_mbox: Path) -> None:
    patches = series_revdiff(str(lore_mbox), 4, 5)
    changed = [p for p in patches if p["status"] != "unchanged"]
    assert len(patches) == 12 and changed and changed[-1]["new"] == 12
    assert any(f.endswith("io_uring.c") for f in changed[-1]["files"])


def test_kwb_report_compare_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--compare", str(DATA / "run-a"), str(DATA / "run-b")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# kwb compare run-a → run-b")
    assert "| mutant | mutant-lost-cqe | flagged | missed |" in out
    assert main(["report", "--json", "--compare", str(DATA / "run-a"), str(DATA / "run-b")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_a"] == "run-a" and data["changes"]


def test_compare_missing_run_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--compare", str(tmp_path), str(DATA / "run-b")]) == 3
    assert "no results.json" in capsys.readouterr().err
