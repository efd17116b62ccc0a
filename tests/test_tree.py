"""Tree providers: Debian tarball (reproducible base), local git tree (never touched), git URL offline."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
from conftest import git

from harness.core import profile
from harness.core.errors import InfraError, OfflineError, UserError
from harness.core.paths import project_root
from harness.kernel import tree as treemod

FAKELINUX = Path(__file__).resolve().parent / "fakelinux"
# Base commit of Debian linux-source-6.12 6.12.117-1~deb12u1 as kwb commits it (fixed identity/dates).
DEFAULT = profile.default_tree()
DEBIAN_PIN = DEFAULT.version
DEBIAN_BASE = DEFAULT.base


def _debian_like_tarball(tmp_path: Path) -> Path:
    """A tarball shaped like Debian's linux-source: one top dir, a .gitignore ending in ``/*``."""
    src = tmp_path / "src" / "linux-source-6.12"
    shutil.copytree(FAKELINUX, src)
    (src / ".gitignore").write_text("*.o\n\n#\n# Debian packaging: ignore everything at the top level\n#\n"
                                    "/*\n!/debian/\n")
    tarball = tmp_path / "linux-source-6.12.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(src, arcname="linux-source-6.12")
    return tarball


def test_debian_tree_base_commit_is_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = _debian_like_tarball(tmp_path)
    bases = []
    for name in ("one", "two"):
        monkeypatch.setenv("KWB_CACHE", str(tmp_path / name))
        tree = treemod.prepare_debian(lambda _m: None, tarball)
        bases.append(tree.base)
        assert (tree.path / "src" / "main.c").is_file()
        assert git(tree.path, "ls-files", "src/main.c") == "src/main.c"  # the /* block no longer hides it
        assert "/*" not in (tree.path / ".gitignore").read_text().splitlines()
        time.sleep(1.1)  # a different wall-clock second must not change the commit id
    assert bases[0] == bases[1]
    said: list[str] = []
    again = treemod.prepare_debian(said.append, tarball)  # reused, not re-unpacked
    assert again.base == bases[1] and said == []


def test_debian_tree_is_prepared_again_when_the_tarball_changes(cache: Path, tmp_path: Path) -> None:
    tarball = _debian_like_tarball(tmp_path)
    first = treemod.prepare_debian(lambda _m: None, tarball)
    (tmp_path / "src" / "linux-source-6.12" / "NEWFILE").write_text("upgrade\n")
    with tarfile.open(tarball, "w:xz") as tar:
        tar.add(tmp_path / "src" / "linux-source-6.12", arcname="linux-source-6.12")
    said: list[str] = []
    second = treemod.prepare_debian(said.append, tarball)
    assert second.base != first.base and (second.path / "NEWFILE").is_file()
    assert any("changed since" in m for m in said)


def test_debian_tarball_missing_is_a_clear_error(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=r"default tree source missing: .*make setup"):
        treemod.prepare_debian(lambda _m: None, tmp_path / "absent.tar.xz")


def test_drop_debian_ignore_all_keeps_other_rules(tmp_path: Path) -> None:
    gi = tmp_path / ".gitignore"
    gi.write_text("*.o\n/vmlinux\n\n#\n# Debian packaging\n#\n/*\n!/debian/\n")
    treemod._drop_debian_ignore_all(gi)
    assert gi.read_text() == "*.o\n/vmlinux\n"


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user"
    shutil.copytree(FAKELINUX, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "src" / "main.c").write_text("/* the user's uncommitted work */\n")
    return repo


def test_local_tree_uses_a_worktree_and_never_touches_the_user(cache: Path, user_repo: Path) -> None:
    before_status = git(user_repo, "status", "--porcelain")
    before_branches = git(user_repo, "branch", "--format=%(refname:short)")
    tree = treemod.prepare_local(user_repo, "main", lambda _m: None)
    assert tree.path.is_relative_to(cache)
    assert tree.kind == "local" and tree.base == git(user_repo, "rev-parse", "main")
    assert "return 0" in (tree.path / "src" / "main.c").read_text()
    treemod.checkout(tree, tree.base)
    assert git(user_repo, "status", "--porcelain") == before_status
    assert (user_repo / "src" / "main.c").read_text() == "/* the user's uncommitted work */\n"
    new = set(git(user_repo, "branch", "--format=%(refname:short)").splitlines()) - set(
        before_branches.splitlines())
    assert all(b.startswith("kwb/") for b in new)
    assert treemod.prepare_local(user_repo, "main", lambda _m: None).path == tree.path  # reused


def test_local_tree_bad_inputs(cache: Path, user_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs --base"):
        treemod.prepare_tree(user_repo, None)
    with pytest.raises(UserError, match="--base nope: no such commit"):
        treemod.prepare_tree(user_repo, "nope")
    with pytest.raises(UserError, match="no such directory"):
        treemod.prepare_tree(tmp_path / "missing", "main")
    with pytest.raises(UserError, match="not a git repository"):
        treemod.prepare_tree(tmp_path, "main")
    with pytest.raises(UserError, match="--base needs --tree"):
        treemod.prepare_tree(None, "main")


def test_git_url_offline_fails_fast(cache: Path) -> None:
    start = time.monotonic()
    with pytest.raises(OfflineError, match=r"cannot reach https://git\.invalid/linux\.git"):
        treemod.prepare_tree("https://git.invalid/linux.git", "v6.12")
    assert time.monotonic() - start < treemod.URL_TIMEOUT + 10


def test_kernel_release_of_reads_makefile(tmp_path: Path) -> None:
    assert treemod.kernel_release_of(FAKELINUX) == "6.12.0-fake"
    with pytest.raises(UserError, match="not a kernel tree"):
        treemod.kernel_release_of(tmp_path)


@pytest.mark.host
@pytest.mark.real
def test_real_default_tree_base_is_the_pinned_commit() -> None:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Version}", DEFAULT.package], capture_output=True,
                         text=True)
    assert res.stdout == DEBIAN_PIN, f"{DEFAULT.package} {res.stdout!r} is not the pinned {DEBIAN_PIN}"
    tree = treemod.prepare_tree()
    assert tree.base == DEBIAN_BASE
    assert treemod.kernel_release_of(tree.path) == DEFAULT.release
    assert git(tree.path, "log", "-1", "--format=%an <%ae> %ad", "--date=iso-strict", tree.base) == (
        "kwb <kwb@localhost> 2025-01-01T00:00:00+00:00")


def test_lock_wait_is_bounded(cache: Path) -> None:
    import threading

    holding, release = threading.Event(), threading.Event()

    def holder() -> None:  # another thread stands in for another kwb process
        with treemod.locked("demo"):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    said: list[str] = []
    try:
        with (pytest.raises(InfraError, match=r"held the 'demo' lock for more than 1s"),
              treemod.locked("demo", timeout=1.0, progress=said.append)):
            pass
    finally:
        release.set()
        thread.join(10)
    assert said == ["waiting for another kwb process (lock 'demo')"]
    with treemod.locked("demo", timeout=1.0):  # released again
        pass


def test_tree_prepare_cli_json(cache: Path, user_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli import main

    assert main(["-q", "tree", "prepare", "--tree", str(user_repo), "--base", "main", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["kind"] == "local" and data["base"] == git(user_repo, "rev-parse", "main")
    assert main(["tree", "prepare", "--tree", str(user_repo)]) == 3
    assert "needs --base REF" in capsys.readouterr().err


def test_one_worktree_per_repository_whatever_the_base(cache: Path, user_repo: Path) -> None:
    first = treemod.prepare_local(user_repo, "main", lambda _m: None)
    git(user_repo, "commit", "-q", "-am", "second")
    second = treemod.prepare_local(user_repo, "main", lambda _m: None)
    assert second.path == first.path and second.name == first.name and second.base != first.base
    assert treemod.checkout(second, second.base) == second.base


def _taken_by_another_thread(name: str) -> bool:
    """Whether a second thread gets lock ``name`` at once (timeout 0: one try, no waiting)."""
    got: list[bool] = []

    def take() -> None:
        try:
            with treemod.locked(name, timeout=0):
                got.append(True)
        except InfraError:
            got.append(False)

    other = threading.Thread(target=take)
    other.start()
    other.join(30)
    return got == [True]


def test_lock_is_reentrant_within_a_thread(cache: Path) -> None:
    start = time.monotonic()
    with treemod.locked("demo", timeout=5.0):
        with treemod.locked("demo", timeout=5.0):  # the holder again: in at once, no wait for itself
            assert time.monotonic() - start < 5.0
            assert not _taken_by_another_thread("demo")  # and still exclusive to everyone else
        assert not _taken_by_another_thread("demo")  # leaving the inner hold keeps the outer one
    assert _taken_by_another_thread("demo")


def test_default_tree_pin_agrees_with_the_package_list() -> None:
    """The pinned version in profiles/trees.toml is the one `make setup` installs."""
    packages = (project_root() / "ci" / "debian-packages.txt").read_text()
    assert f"{DEFAULT.package}={DEFAULT.version}" in packages.split()
