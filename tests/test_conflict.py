"""The conflict report on synthetic git trees: what the tree has instead, who changed it, which base."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import git

from harness.kernel import apply, conflict
from harness.kernel.tree import prepare_local

LINES = [f"line {i}" for i in range(1, 31)]


def _commit(repo: Path, text: list[str], subject: str, date: str) -> None:
    (repo / "src").mkdir(exist_ok=True)
    (repo / "src" / "read.c").write_text("\n".join(text) + "\n")
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", subject], check=True, env=env)


def _work_branch(repo: Path) -> Path:
    """A repo whose ``main`` holds LINES (tagged ``old``), checked out on a new branch ``work``."""
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    _commit(repo, LINES, "initial import", "2020-01-01T00:00:00+0000")
    git(repo, "tag", "old")
    git(repo, "checkout", "-q", "-b", "work")
    return repo


@pytest.fixture
def diverged(tmp_path: Path) -> tuple[Path, Path]:
    """A repo whose ``main`` changed line 15 after the patch was made on ``old``; the patch's mbox."""
    repo = _work_branch(tmp_path / "linux")
    patched = LINES.copy()
    patched[14:16] = ["line 15 tested with NOWAIT", "line 16"]
    _commit(repo, patched, "read: test NOWAIT", "2020-02-01T00:00:00+0000")
    out = tmp_path / "patches"
    git(repo, "format-patch", "-q", "-o", str(out), "old..work")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-D", "work")
    moved = LINES.copy()
    moved[14] = "line 15 (NOWAIT | NOIO)"
    _commit(repo, moved, "read: add NOIO to the test", "2020-01-10T00:00:00+0000")
    mbox = tmp_path / "series.mbox"
    mbox.write_text("".join(p.read_text() for p in sorted(out.glob("*.patch"))))
    return repo, mbox


def test_report_names_hunk_the_tree_lines_the_blamed_commit_and_the_base(cache: Path,
                                                                       diverged: tuple[Path, Path]) -> None:
    repo, mbox = diverged
    tree = prepare_local(repo, "main", lambda _m: None)
    with pytest.raises(apply.ApplyError) as exc:
        apply.apply_patch_files(tree, [mbox], "kwb/apply/c")
    report = exc.value.details["conflict"]
    assert isinstance(report, dict)
    hunk = report["hunks"][0]
    assert hunk["file"] == "src/read.c" and hunk["header"].startswith("@@ -12,")
    assert [d["line"] for d in hunk["differing"]] == [15]
    assert hunk["differing"][0]["text"] == "line 15 (NOWAIT | NOIO)"
    assert hunk["differing"][0]["summary"] == "read: add NOIO to the test"
    assert not hunk["differing"][0]["boundary"]
    assert "line 15" in hunk["expected"]
    msg = str(exc.value)
    assert "the tree has line 15 `line 15 (NOWAIT | NOIO)` where the patch expects `line 15`" in msg
    assert 'last changed by ' in msg and '"read: add NOIO to the test"' in msg
    old = git(repo, "rev-parse", "old")
    base = report["base"]
    assert base["commit"] is not None, base["message"]
    assert base["commit"] == old and base["exact"]
    assert base["mismatched"] == ["src/read.c"]
    assert f"try --base {old[:12]}" in msg
    # no half-applied state: no am in progress, the branch is gone, the worktree is clean at the base
    assert not (Path(git(tree.path, "rev-parse", "--git-path", "rebase-apply"))).is_dir()
    assert not (tree.path / git(tree.path, "rev-parse", "--git-path", "rebase-apply")).is_dir()
    assert git(tree.path, "status", "--porcelain") == ""
    assert git(tree.path, "rev-parse", "HEAD") == tree.base
    assert "kwb/apply/c" not in git(tree.path, "branch", "--list", "kwb/apply/c")
    # the suggested base really takes the series
    again = apply.apply_patch_files(prepare_local(repo, "old", lambda _m: None), [mbox], "kwb/apply/c2")
    assert again.patches == 1


def test_lines_from_where_history_starts_are_said_to_have_no_introducing_commit(
        cache: Path, diverged: tuple[Path, Path], tmp_path: Path) -> None:
    _repo, mbox = diverged
    flat = tmp_path / "flat"
    flat.mkdir()
    git(flat, "init", "-q", "-b", "main")
    moved = LINES.copy()
    moved[14] = "line 15 (NOWAIT | NOIO)"
    _commit(flat, moved, "Initial commit", "2023-01-01T00:00:00+0000")
    tree = prepare_local(flat, "main", lambda _m: None)
    with pytest.raises(apply.ApplyError) as exc:
        apply.apply_patch_files(tree, [mbox], "kwb/apply/f")
    msg = str(exc.value)
    assert '"Initial commit"' in msg and "where this tree's history starts" in msg
    assert "the history holds no commit that introduced these lines" in msg
    assert "no commit of this tree's history has them" in msg and "b4:" in msg
    assert "\n" not in msg


def test_a_hunk_on_a_missing_file_says_so(cache: Path, diverged: tuple[Path, Path], tmp_path: Path) -> None:
    _repo, mbox = diverged
    empty = tmp_path / "other"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    (empty / "README").write_text("x\n")
    git(empty, "add", "-A")
    git(empty, "commit", "-q", "-m", "readme")
    tree = prepare_local(empty, "main", lambda _m: None)
    with pytest.raises(apply.ApplyError) as exc:
        apply.apply_patch_files(tree, [mbox], "kwb/apply/m")
    assert "src/read.c does not exist in the tree" in str(exc.value)


def test_locate_finds_the_moved_place_and_takes_in_inserted_lines() -> None:
    tree = [f"l{i}" for i in range(100)]
    expected = ["l40", "l41", "l42", "l43"]
    index, found = conflict.locate(tree, 10, expected)   # the hunk said line 10, the code moved to 40
    assert index == 40 and found == expected
    grown = [*tree[:42], "inserted", *tree[42:]]
    index, found = conflict.locate(grown, 41, expected)
    assert index == 40 and found == ["l40", "l41", "inserted", "l42", "l43"]
    assert conflict.differing_lines(expected, found) == [2]


def test_preimage_keeps_context_and_removed_lines() -> None:
    start, lines = conflict.preimage("@@ -7,3 +7,3 @@ fn\n a\n-b\n+c\n d\n")
    assert start == 7 and lines == ["a", "b", "d"]


def test_porcelain_parse_marks_boundary_commits() -> None:
    sha = "a" * 40
    text = (f"{sha} 3 15 1\nauthor A U\nauthor-time 1577836800\nsummary first\nboundary\nfilename x\n"
            "\tcode();\n")
    [line] = conflict.parse_porcelain(text)
    assert (line.line, line.text, line.summary, line.boundary, line.date) == (15, "code();", "first", True,
                                                                              "2020-01-01")


def test_index_blobs_take_each_files_first_preimage_and_skip_new_files() -> None:
    one = "diff --git a/f b/f\nindex 1111111..2222222 100644\n"
    two = ("diff --git a/f b/f\nindex 2222222..3333333 100644\n"
           "diff --git a/n b/n\nnew file mode 100644\nindex 0000000..4444444\n")
    assert conflict.index_blobs([one, two]) == [("f", "1111111")]


def test_b4_base_lines_are_parsed() -> None:
    assert conflict.parse_b4_base(" Base: attempting to guess base-commit...\n Base: tags/old (exact match)\n"
                                  " Base: applies clean to current tree") == ("tags/old", "exact match")
    assert conflict.parse_b4_base(" Base: abcdef1 (best guess, 2/3 blobs matched)") == (
        "abcdef1", "best guess, 2/3 blobs matched")
    assert conflict.parse_b4_base(" Base: failed to guess base (No commits found before 2020-05-26)") == (
        None, "b4: No commits found before 2020-05-26")
    assert conflict.parse_b4_base("nothing") == (None, "b4 gave no base line")


# ---- the real thing: a Linux 5.8.1 git tree (its path from the environment, never named here) -------

TREE_5_8 = "KWB_TREE_5_8"            # a 5.8.1 git tree whose HEAD (or KWB_TREE_5_8_BASE) checks out
TREE_5_8_BASE = "KWB_TREE_5_8_BASE"  # the unmodified 5.8.1 commit in it (default HEAD)


def _tree_5_8() -> tuple[Path, str]:
    path = os.environ.get(TREE_5_8)
    if not path:
        pytest.skip(f"{TREE_5_8} is not set: no Linux 5.8.1 git tree to apply the 2020 series to")
    if not (Path(path) / "mm" / "filemap.c").is_file():
        pytest.skip(f"{TREE_5_8}={path}: not a checked-out kernel tree (no mm/filemap.c)")
    return Path(path), os.environ.get(TREE_5_8_BASE, "HEAD")


@pytest.mark.host
@pytest.mark.real
def test_v5_on_unmodified_5_8_names_patch_2_filemap_and_the_noio_test(cache: Path, lore_mbox: Path,
                                                                      tmp_path: Path) -> None:
    from harness.series import find_family, load_families
    from harness.series.export import export_revision

    repo, base = _tree_5_8()
    family = find_family(load_families(str(lore_mbox)), None)
    mbox = export_revision(family.revision(5), tmp_path / "v5.mbx")
    tree = prepare_local(repo, base, lambda _m: None)
    with pytest.raises(apply.ApplyError) as exc:
        apply.apply_patch_files(tree, [mbox], "kwb/apply/v5")
    details = exc.value.details
    assert (details["patch"], details["total"]) == (2, 12)
    report = details["conflict"]
    assert isinstance(report, dict)
    [hunk] = report["hunks"]
    assert hunk["file"] == "mm/filemap.c"
    [line] = hunk["differing"]
    assert "IOCB_NOWAIT | IOCB_NOIO" in line["text"]
    assert any("iocb->ki_flags & IOCB_NOWAIT" in e for e in hunk["expected"])
    msg = str(exc.value)
    assert 'patch 2/12 "mm: allow read-ahead with IOCB_NOWAIT set" does not apply' in msg
    # The fetched tree's history has no commit that introduced IOCB_NOIO (5.8-rc1): the report says so;
    # a tree with the real history names that commit instead.
    if line["boundary"]:
        assert "the history holds no commit that introduced these lines" in msg
    else:
        assert "IOCB_NOIO" in git(repo, "show", "--format=%B", "-s", line["commit"]) or line["summary"]
    assert "mm/filemap.c" in report["base"]["mismatched"]
    assert git(tree.path, "status", "--porcelain") == ""
    assert git(tree.path, "rev-parse", "HEAD") == tree.base


def test_b4_never_looks_at_kwbs_own_branches(diverged: tuple[Path, Path]) -> None:
    repo, _mbox = diverged
    git(repo, "branch", "kwb/series/v5", "old")
    refs = conflict._guess_refs(repo, "abc123")
    assert "refs/heads/main" in refs and refs[-1] == "abc123"
    assert not [r for r in refs if "kwb/" in r]


def test_a_line_the_tree_deleted_is_named_with_the_commit_that_removed_it(cache: Path,
                                                                        tmp_path: Path) -> None:
    repo = _work_branch(tmp_path / "del")
    patched = LINES.copy()
    patched[15] = "line 16 changed"
    _commit(repo, patched, "read: change 16", "2020-02-01T00:00:00+0000")
    out = tmp_path / "p"
    git(repo, "format-patch", "-q", "-o", str(out), "old..work")
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-D", "work")
    _commit(repo, LINES[:14] + LINES[15:], "read: drop line 15", "2020-01-10T00:00:00+0000")
    tree = prepare_local(repo, "main", lambda _m: None)
    with pytest.raises(apply.ApplyError) as exc:
        apply.apply_patch_files(tree, sorted(out.glob("*.patch")), "kwb/apply/d")
    assert "the tree lacks `line 15`" in str(exc.value)
    assert 'removed by ' in str(exc.value) and '"read: drop line 15"' in str(exc.value)


def test_the_multi_line_text_shows_tree_lines_expectations_blame_and_base() -> None:
    line = conflict.BlameLine(15, "line 15 (NOIO)", "b" * 40, "read: add NOIO", "A U", "2020-01-10", False)
    hunk = conflict.HunkConflict("src/read.c", "@@ -12,7 +12,7 @@", ["line 14", "line 15", "line 16"],
                                 ["line 14", "line 15 (NOIO)", "line 16"], 14, [line])
    base = conflict.BaseGuess(None, False, 0, 1, ["src/read.c"], "no base")
    text = conflict.ConflictReport(1, 1, "read: test", [hunk], base).text().splitlines()
    assert text == ['patch 1/1 "read: test":', "  src/read.c: @@ -12,7 +12,7 @@",
                    "    tree src/read.c:15: line 15 (NOIO)", "    patch expects: line 15",
                    f'    last changed by {"b" * 12} "read: add NOIO" (A U, 2020-01-10)', "  base: no base"]
