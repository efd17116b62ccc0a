"""Revision diff by stable patch-id (real git patch-id)."""

from __future__ import annotations

from test_series_fixtures import abr_family

from harness.series.revdiff import diff_revisions, interdiff


def test_v4_to_v5_only_patch_12_changed() -> None:
    fam = abr_family()
    changes = diff_revisions(fam.revision(4), fam.revision(5))
    status = {c.new: c.status for c in changes}
    assert status[12] == "changed"
    assert status[4] == "message-changed"  # same diff, the commit message was rewritten (ki_waitq)
    assert [n for n, s in status.items() if s == "unchanged"] == [*range(1, 4), *range(5, 12)]
    changed = next(c for c in changes if c.new == 12)
    assert changed.interdiff.startswith("--- v4/12\n+++ v5/12\n")
    assert changed.old_patch_id and changed.new_patch_id and changed.old_patch_id != changed.new_patch_id


def test_v5_to_v7_new_and_renumbered() -> None:
    fam = abr_family()
    changes = diff_revisions(fam.revision(5), fam.revision(7))
    kinds = {c.status for c in changes}
    assert "new" in kinds  # the plug/-EIO prep patches joined in v7
    moved = next(c for c in changes if c.subject.startswith("mm: allow read-ahead"))
    assert (moved.old, moved.new) == (2, 5)


def test_interdiff_ignores_index_lines() -> None:
    a = "diff --git a/x b/x\nindex 1..2\n+a\n"
    b = "diff --git a/x b/x\nindex 3..4\n+a\n"
    assert interdiff(a, b, "a", "b") == ""
