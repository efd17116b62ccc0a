"""Apply engine on synthetic git repositories: clean, conflict, already applied, idempotent, per-patch."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import git

from harness.core.errors import InfraError, UserError
from harness.kernel import apply
from harness.kernel.tree import Tree, prepare_local

FAKELINUX = Path(__file__).resolve().parent / "fakelinux"


def _commit_change(repo: Path, path: str, old: str, new: str, subject: str) -> None:
    target = repo / path
    target.write_text(target.read_text().replace(old, new))
    git(repo, "commit", "-q", "-am", f"{subject}\n\nBody of {subject}.\n\nSigned-off-by: A <a@b.c>")


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    """A git repo holding the fake kernel, one base commit tagged ``base``."""
    repo = tmp_path / "linux"
    shutil.copytree(FAKELINUX, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    git(repo, "tag", "base")
    return repo


@pytest.fixture
def series(upstream: Path, tmp_path: Path) -> list[Path]:
    """Three patches on top of ``base`` exported with format-patch, then the repo reset to ``base``."""
    git(upstream, "checkout", "-q", "-b", "work")
    _commit_change(upstream, "src/io_uring.c", "int ret = x;\n\n\treturn ret;\n}\n\nstatic int io_write",
                   "int ret = x + 1;\n\n\treturn ret;\n}\n\nstatic int io_write", "io_uring: read plus one")
    _commit_change(upstream, "src/main.c", "return 0;", "return 1;", "main: return one")
    _commit_change(upstream, "src/io_uring.c", "static int io_write(int x)\n{\n\tint ret = x;",
                   "static int io_write(int x)\n{\n\tint ret = x * 2;", "io_uring: write doubles")
    out = tmp_path / "patches"
    git(upstream, "format-patch", "-q", "-o", str(out), "base..work")
    git(upstream, "checkout", "-q", "main")
    return sorted(out.glob("*.patch"))


def _mbox(patches: list[Path], dest: Path) -> Path:
    dest.write_text("".join(p.read_text() for p in patches))
    return dest


def _tree(upstream: Path, base: str = "base") -> Tree:
    return prepare_local(upstream, base, lambda _m: None)


def test_clean_apply_makes_branch_and_leaves_user_repo_alone(cache: Path, upstream: Path,
                                                              series: list[Path], tmp_path: Path) -> None:
    user_head = git(upstream, "rev-parse", "HEAD")
    tree = _tree(upstream)
    result = apply.apply_patch_files(tree, [_mbox(series, tmp_path / "s.mbox")], "kwb/apply/t")
    assert result.patches == 3 and not result.reused
    log = git(tree.path, "log", "--format=%s", f"{tree.base}..kwb/apply/t").splitlines()
    assert log == ["io_uring: write doubles", "main: return one", "io_uring: read plus one"]
    assert "x * 2" in (tree.path / "src/io_uring.c").read_text()
    # the user's checkout and branch did not move
    assert git(upstream, "rev-parse", "HEAD") == user_head
    assert git(upstream, "status", "--porcelain") == ""
    assert "x * 2" not in (upstream / "src/io_uring.c").read_text()


def test_rerun_is_idempotent_and_reuses_branch(cache: Path, upstream: Path, series: list[Path]) -> None:
    tree = _tree(upstream)
    first = apply.apply_patch_files(tree, series, "kwb/apply/t")
    again = apply.apply_patch_files(tree, series, "kwb/apply/t")
    assert again.reused and again.head == first.head
    # a fresh apply of the same base + patches gives the same commit ids (fixed committer, dates)
    other = apply.apply_patch_files(tree, series, "kwb/apply/other")
    assert other.head == first.head


def test_conflict_names_patch_files_and_hunk_and_leaves_no_state(cache: Path, upstream: Path,
                                                                  series: list[Path]) -> None:
    # the base diverges exactly where patch 3 changes io_write
    _commit_change(upstream, "src/io_uring.c", "static int io_write(int x)\n{\n\tint ret = x;",
                   "static int io_write(int x)\n{\n\tint ret = -x;", "diverge")
    tree = _tree(upstream, "main")
    with pytest.raises(apply.ApplyError) as err:
        apply.apply_patch_files(tree, series, "kwb/apply/t")
    msg = str(err.value)
    assert 'patch 3/3 "io_uring: write doubles" does not apply' in msg
    assert "src/io_uring.c" in msg and "@@ -8" in msg
    hunks = err.value.details["failed_hunks"]
    assert isinstance(hunks, list)
    assert hunks == [h for h in hunks if str(h).startswith("src/io_uring.c: @@ -8")]
    assert err.value.exit_code == 3
    assert git(tree.path, "status", "--porcelain") == ""
    assert not apply._am_in_progress(tree)
    assert git(tree.path, "branch", "--list", "kwb/apply/t") == ""


def test_series_already_in_base_is_said(cache: Path, upstream: Path, series: list[Path]) -> None:
    git(upstream, "merge", "-q", "--ff-only", "work")
    tree = _tree(upstream, "main")
    result = apply.apply_patch_files(tree, series, "kwb/apply/t")
    assert result.already_applied
    assert "already applied in the base" in result.message


def test_series_already_applied_in_user_head_is_detected(cache: Path, upstream: Path,
                                                          series: list[Path]) -> None:
    git(upstream, "checkout", "-q", "work")
    tree = _tree(upstream)
    head = git(upstream, "rev-parse", "work")
    result = apply.apply_patch_files(tree, series, "kwb/apply/t", check_applied_in=head)
    assert result.already_applied and result.head == head
    assert "already applied" in result.message


def test_per_patch_build_names_first_breaking_patch(cache: Path, upstream: Path, tmp_path: Path) -> None:
    git(upstream, "checkout", "-q", "-b", "broken")
    _commit_change(upstream, "src/main.c", "return 0;", "return 2;", "fine one")
    _commit_change(upstream, "src/main.c", "return 2;", "return 2 BUILD_BREAKER;", "breaks it")
    _commit_change(upstream, "src/io_uring.c", "fake io_uring", "fake io_uring v2", "after")
    out = tmp_path / "broken"
    git(upstream, "format-patch", "-q", "-o", str(out), "base..broken")
    git(upstream, "checkout", "-q", "main")
    tree = _tree(upstream)
    built: list[int] = []

    def fake_build(number: int) -> None:
        res = subprocess.run(["make", "-s", "-C", str(tree.path), f"O={tmp_path / 'b'}", "tinyconfig",
                              "bzImage"], capture_output=True, text=True)
        if res.returncode != 0:
            raise InfraError(f"kernel build failed: {res.stderr.strip().splitlines()[0]}")
        built.append(number)

    with pytest.raises(apply.ApplyError, match=r'patch 2/\d "breaks it" breaks the build: .*error: expected'):
        apply.apply_patch_files(tree, sorted(out.glob("*.patch")), "kwb/apply/b", build=fake_build)
    assert built == [1]
    assert git(tree.path, "status", "--porcelain") == ""


def test_plain_diff_patches_are_committed(cache: Path, upstream: Path, tmp_path: Path) -> None:
    diff = tmp_path / "mutant.diff"
    diff.write_text("--- a/src/main.c\n+++ b/src/main.c\n@@ -1,4 +1,4 @@\n int main(void)\n {\n"
                    "-\treturn 0;\n+\treturn 3;\n }\n")
    diff.write_text(diff.read_text().replace("--- a/", "diff --git a/src/main.c b/src/main.c\n--- a/", 1))
    tree = _tree(upstream)
    result = apply.apply_patch_files(tree, [diff], "kwb/variant/m")
    assert "return 3" in (tree.path / "src/main.c").read_text()
    assert git(tree.path, "log", "-1", "--format=%s", result.head) == "kwb: mutant.diff"


def test_missing_patch_file_is_a_user_error(cache: Path, upstream: Path, tmp_path: Path) -> None:
    tree = _tree(upstream)
    with pytest.raises(UserError, match="patch file not found"):
        apply.apply_patch_files(tree, [tmp_path / "nope.patch"], "kwb/apply/x")



def test_apply_cli_json_rerun_and_conflict_exit_codes(cache: Path, upstream: Path, series: list[Path],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli import main

    argv = ["-q", "apply", "--tree", str(upstream), "--base", "base", "--patch", *map(str, series), "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["patches"] == 3 and first["branch"].startswith("kwb/apply/")
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True
    _commit_change(upstream, "src/main.c", "return 0;", "return -1;", "diverge")
    assert main(["-q", "apply", "--tree", str(upstream), "--base", "main", "--patch", str(series[1])]) == 3
    err = capsys.readouterr().err
    assert err.startswith('kwb: error: patch 1/1 "main: return one" does not apply: files src/main.c')
    assert len(err.strip().splitlines()) == 1
    assert main(["apply", "--tree", str(upstream), "--base", "base"]) == 3
    assert "needs --source SRC --revision N" in capsys.readouterr().err


def test_apply_cli_per_patch_build_on_fake_tree(cache: Path, upstream: Path, series: list[Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli import main

    argv = ["-q", "apply", "--tree", str(upstream), "--base", "base", "--patch", *map(str, series),
            "--per-patch-build", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["built"] == [1, 2, 3]


def test_apply_cli_real_revision_onto_wrong_tree_names_patch_one(cache: Path, upstream: Path, lore_mbox: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The real v5 from the io-uring archive, exported via the series layer, onto the fake tree."""
    from harness.cli import main

    rc = main(["-q", "apply", "--source", str(lore_mbox), "--revision", "5", "--tree", str(upstream),
               "--base", "base"])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert err.startswith('kwb: error: patch 1/12 "block: read-ahead submission should imply no-wait as '
                          'well" does not apply: files include/linux/blk_types.h; failed hunks: '
                          "include/linux/blk_types.h: @@ -374,7 +374,8 @@")


def test_conflict_hunks_are_judged_after_earlier_patches(cache: Path, upstream: Path,
                                                         series: list[Path]) -> None:
    # patch 1 and 3 touch io_uring.c; only patch 3's hunk conflicts with the diverged base
    _commit_change(upstream, "src/io_uring.c", "static int io_write(int x)\n{\n\tint ret = x;",
                   "static int io_write(int x)\n{\n\tint ret = ~x;", "diverge")
    tree = _tree(upstream, "main")
    with pytest.raises(apply.ApplyError) as err:
        apply.apply_patch_files(tree, series, "kwb/apply/t")
    hunks = err.value.details["failed_hunks"]
    assert isinstance(hunks, list) and len(hunks) == 1 and str(hunks[0]).startswith("src/io_uring.c: @@ -8")
    assert git(tree.path, "rev-parse", "HEAD") == tree.base


def test_signature_is_not_read_as_a_hunk_line() -> None:
    diff = ("diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n-- \n2.39.5\n\n")
    hunks = apply._hunks(apply._strip_signature(diff))
    assert len(hunks) == 1 and hunks[0][2].endswith("+c\n")
    real_deletion = "@@ -1,2 +1,1 @@\n a\n-- \n@@ -9,1 +8,1 @@\n-x\n+y\n"
    assert apply._strip_signature(real_deletion) == real_deletion


def test_only_the_conflicting_hunk_of_a_two_hunk_patch_is_named(cache: Path, upstream: Path,
                                                                tmp_path: Path) -> None:
    git(upstream, "checkout", "-q", "-b", "two")
    src = upstream / "src" / "io_uring.c"
    text = src.read_text()
    src.write_text(text.replace("/* fake io_uring */", "/* fake io_uring: read */")
                   .replace("static int io_write(int x)\n{\n\tint ret = x;",
                            "static int io_write(int x)\n{\n\tint ret = x - 1;"))
    # pad the file so the two changes land in separate hunks
    src.write_text(src.read_text().replace("static int io_read", "\n" * 8 + "static int io_read"))
    git(upstream, "commit", "-q", "-am", "two hunks")
    out = tmp_path / "two"
    git(upstream, "format-patch", "-q", "-o", str(out), "main..two")
    git(upstream, "checkout", "-q", "main")
    assert next(out.glob("*.patch")).read_text().count("\n@@ -") == 2
    src.write_text(text.replace("/* fake io_uring */", "/* diverged */"))
    git(upstream, "commit", "-q", "-am", "diverge first line")
    tree = _tree(upstream, "main")
    with pytest.raises(apply.ApplyError) as err:
        apply.apply_patch_files(tree, sorted(out.glob("*.patch")), "kwb/apply/two")
    hunks = err.value.details["failed_hunks"]
    assert isinstance(hunks, list) and len(hunks) == 1 and str(hunks[0]).startswith("src/io_uring.c: @@ -1,")
