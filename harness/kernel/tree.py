"""Kernel tree providers: the Debian linux-source default, a user's local git tree, a git URL.

Every kwb tree is a git checkout inside the cache that kwb may freely switch between its own ``kwb/...``
branches. A user's repository is never modified beyond adding a worktree entry and ``kwb/...`` branches:
their working tree, index and branches stay as they were.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from harness.core import profile
from harness.core.errors import InfraError, OfflineError, UserError
from harness.core.paths import cache_dir
from harness.core.run import Result, run

if TYPE_CHECKING:
    import git as gitpython

# The default tree (Debian's linux-source package) is data: harness/profiles/trees.toml.
_DEFAULT = profile.default_tree()
DEBIAN_TARBALL = _DEFAULT.tarball
DEBIAN_TREE_NAME = _DEFAULT.name
BASE_BRANCH = "kwb/base"
GIT_TIMEOUT = 600.0
URL_TIMEOUT = 30.0
LOCK_TIMEOUT = 7200.0

# Fixed identity and dates make the default tree's base commit id the same on every machine.
_REPRODUCIBLE_ENV = {
    "GIT_AUTHOR_NAME": "kwb",
    "GIT_AUTHOR_EMAIL": "kwb@localhost",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00+0000",
    "GIT_COMMITTER_NAME": "kwb",
    "GIT_COMMITTER_EMAIL": "kwb@localhost",
    "GIT_COMMITTER_DATE": "2025-01-01T00:00:00+0000",
}
# Settings that would otherwise let a user's git config change what kwb commits or runs.
_GIT_SAFE = ("-c", "core.autocrlf=false", "-c", "core.fileMode=true", "-c", "commit.gpgSign=false",
             "-c", "core.hooksPath=/dev/null", "-c", "advice.detachedHead=false")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Tree:
    """A prepared kernel tree: a git checkout kwb owns (a worktree for user trees)."""

    path: Path      # where sources are checked out and builds read from
    name: str       # stable id, used in build directory names
    base: str       # full commit id of the base
    kind: str       # "debian" | "local" | "url"
    origin: str     # tarball, repository path or URL it came from


def git(repo: Path, *args: str, timeout: float = GIT_TIMEOUT, env: dict[str, str] | None = None,
        check: bool = True, log: Path | None = None, input: str | None = None) -> Result:
    """Run ``git -C repo args`` through the one runner; ``check`` raises InfraError with git's message."""
    argv = ["git", *_GIT_SAFE, "-C", str(repo), *args]
    result = run(argv, timeout=timeout, env=env, log=log, input=input)
    if check and result.timed_out:
        raise InfraError(f"git {args[0]} timed out after {timeout:.0f}s in {repo}")
    if check and result.returncode != 0:
        raise InfraError(f"git {' '.join(args[:2])} failed in {repo}: {result.tail(1).strip()}")
    return result


def rev_parse(repo: Path, ref: str) -> str | None:
    """The full commit id of ``ref`` in ``repo``, or None when it does not resolve."""
    res = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False, timeout=60)
    return res.stdout.strip() if res.ok else None


def open_repo(path: Path) -> gitpython.Repo | None:
    """GitPython's view of the repository (worktree) at ``path``, or None when it is not one."""
    # Imported here: GitPython is 11 MiB and 60 ms that every kwb command (`kwb series list` on a whole
    # archive among them) paid at start through harness.kernel.variants, for the few that read refs.
    import git as gitpython

    try:
        return gitpython.Repo(path)
    except (gitpython.InvalidGitRepositoryError, gitpython.NoSuchPathError):
        return None


def branch_commit(repo_path: Path, branch: str) -> str | None:
    """The commit a local branch points at, read by GitPython from the refs (loose or packed, shared
    with worktrees) without starting a process; None when there is no such branch or repository."""
    from git.refs.symbolic import SymbolicReference

    repo = open_repo(repo_path)
    if repo is None:
        return None
    try:
        return str(SymbolicReference.dereference_recursive(repo, f"refs/heads/{branch}"))
    except (ValueError, OSError):
        return None


def trees_dir() -> Path:
    """Where kwb keeps its trees and worktrees."""
    path = cache_dir() / "trees"
    path.mkdir(parents=True, exist_ok=True)
    return path


_HELD: dict[tuple[str, int], int] = {}  # (lock name, thread id) -> depth, for re-entrant use


@contextmanager
def locked(name: str, timeout: float = LOCK_TIMEOUT, progress: Progress | None = None) -> Iterator[None]:
    """An exclusive inter-process lock under the cache (several kwb processes may share it).

    Re-entrant within a thread (ensure_kernel holds it while apply takes it again). Waits at most
    ``timeout`` seconds (a build holding it is itself bounded), then InfraError.
    """
    key = (name, threading.get_ident())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "w") as fh:
        _acquire(fh, name, lock_dir, timeout, progress)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fh, fcntl.LOCK_UN)


def _acquire(fh: IO[str], name: str, lock_dir: Path, timeout: float, progress: Progress | None) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise InfraError(f"another kwb process held the {name!r} lock for more than "
                                 f"{timeout:.0f}s ({lock_dir / name}.lock)") from None
            if progress is not None and not told:
                progress(f"waiting for another kwb process (lock {name!r})")
                told = True
            time.sleep(1.0)


def prepare_tree(tree: str | Path | None = None, base: str | None = None,
                 progress: Progress | None = None) -> Tree:
    """Prepare the default tree (``tree=None``), a local git tree or a git URL, and return it."""
    say = progress or (lambda _msg: None)
    if tree is None:
        if base is not None:
            raise UserError("--base needs --tree (the default tree has a single base commit)")
        return prepare_debian(say)
    text = str(tree)
    if re.match(r"^(https?|git|ssh)://", text) or re.match(r"^[\w.-]+@[\w.-]+:", text):
        return prepare_url(text, base, say)
    return prepare_local(Path(text), base, say)


def _drop_debian_ignore_all(gitignore: Path) -> None:
    """Remove Debian's trailing ``/*`` block, which would make ``git add`` ignore the whole tree."""
    lines = gitignore.read_text(encoding="utf-8").splitlines()
    if "/*" not in lines:
        return
    start = lines.index("/*")
    end = start + 1
    while end < len(lines) and lines[end].startswith("!"):
        end += 1
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    kept = lines[:start] + lines[end:]
    while kept and not kept[-1].strip():
        kept.pop()
    gitignore.write_text("\n".join(kept) + "\n", encoding="utf-8")


def kernel_release_of(path: Path) -> str:
    """``VERSION.PATCHLEVEL.SUBLEVEL`` from a tree's top Makefile (EXTRAVERSION appended)."""
    fields: dict[str, str] = {}
    try:
        head = (path / "Makefile").read_text(encoding="utf-8", errors="replace").splitlines()[:12]
    except OSError as exc:
        raise UserError(f"not a kernel tree (no Makefile): {path}") from exc
    for line in head:
        m = re.match(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=\s*(\S*)", line)
        if m:
            fields[m.group(1)] = m.group(2)
    if "VERSION" not in fields:
        raise UserError(f"not a kernel tree (no VERSION in Makefile): {path}")
    release = f"{fields['VERSION']}.{fields.get('PATCHLEVEL', '0')}.{fields.get('SUBLEVEL', '0')}"
    return release + fields.get("EXTRAVERSION", "")


def prepare_debian(say: Progress, tarball: Path = DEBIAN_TARBALL) -> Tree:
    """Unpack Debian's linux-source into the cache and commit it once, reproducibly (reused after)."""
    dest = trees_dir() / DEBIAN_TREE_NAME
    with locked(f"tree-{DEBIAN_TREE_NAME}"):
        commit = branch_commit(dest, BASE_BRANCH)
        if commit is not None and tarball.is_file():
            recorded = _recorded_source(dest)
            if not recorded:  # prepared before kwb recorded the tarball's identity
                git(dest, "config", "kwb.source", _source_id(tarball), timeout=30)
            elif recorded != _source_id(tarball):
                say(f"{tarball} changed since {dest} was prepared: preparing it again")
                commit = None
        if commit is None:
            if not tarball.is_file():
                raise InfraError(f"default tree source missing: {tarball} (install {_DEFAULT.package}: "
                                 "make setup)")
            if dest.exists():
                shutil.rmtree(dest)  # a half-prepared tree from an interrupted run
            commit = _unpack_and_commit(tarball, dest, say)
            git(dest, "config", "kwb.source", _source_id(tarball), timeout=30)
    return Tree(path=dest, name=DEBIAN_TREE_NAME, base=commit, kind="debian", origin=str(tarball))


def _source_id(tarball: Path) -> str:
    """Cheap identity of the tarball (a package upgrade changes size or mtime)."""
    if not tarball.is_file():
        return ""
    st = tarball.stat()
    return f"{tarball.name}:{st.st_size}:{int(st.st_mtime)}"


def _recorded_source(dest: Path) -> str:
    res = git(dest, "config", "--get", "kwb.source", check=False, timeout=30)
    return res.stdout.strip() if res.ok else ""


def _unpack_and_commit(tarball: Path, dest: Path, say: Progress) -> str:
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=trees_dir()))
    try:
        say(f"unpacking {tarball.name}")
        res = run(["tar", "-xJf", str(tarball), "-C", str(tmp)], timeout=900)
        if not res.ok:
            raise InfraError(f"cannot unpack {tarball}: {res.tail(1).strip()}")
        tops = [p for p in tmp.iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise InfraError(f"unexpected layout in {tarball}: {len(tops)} top-level directories")
        src = tops[0]
        _drop_debian_ignore_all(src / ".gitignore")
        say("creating the base commit (git add of ~90k files)")
        git(src, "init", "-q", "-b", BASE_BRANCH)
        git(src, "add", "-A", "-f", ".")
        release = kernel_release_of(src)
        # The message is part of the base commit id, hence of every cached build's key: from data, verbatim.
        git(src, "commit", "-q", "--no-verify", "-m", _DEFAULT.commit_message.format(release=release),
            env=_REPRODUCIBLE_ENV)
        src.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    commit = rev_parse(dest, BASE_BRANCH)
    if commit is None:
        raise InfraError(f"base commit missing after preparing {dest}")
    return commit


def _tree_id(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()[:10]


def prepare_local(repo: Path, base: str | None, say: Progress) -> Tree:
    """A worktree of the user's repository under the cache (one per repository, whatever the base).

    One worktree and so one build directory per repository: revisions, the base and variants are
    branches checked out in it, and each switch rebuilds only what changed.
    """
    repo = repo.expanduser().resolve()
    if not repo.is_dir():
        raise UserError(f"--tree: no such directory: {repo}")
    if open_repo(repo) is None:
        raise UserError(f"--tree: not a git repository (top level of a clone or worktree): {repo}")
    if base is None:
        raise UserError(f"--tree {repo} needs --base REF (the commit the series applies to)")
    commit = rev_parse(repo, base)
    if commit is None:
        raise UserError(f"--base {base}: no such commit in {repo}")
    name = f"local-{repo.name}-{_tree_id(str(repo))}"
    dest = trees_dir() / name
    with locked(f"tree-{name}"):
        if rev_parse(dest, "HEAD") is None:
            if dest.exists():
                shutil.rmtree(dest)
            git(repo, "worktree", "prune")
            say(f"adding a worktree of {repo} at {commit[:12]}")
            git(repo, "worktree", "add", "--force", "--detach", str(dest), commit)
    return Tree(path=dest, name=name, base=commit, kind="local", origin=str(repo))


def prepare_url(url: str, base: str | None, say: Progress) -> Tree:
    """Clone a git URL into the cache (network needed; offline fails fast with OfflineError)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    mirror = trees_dir() / f"clone-{digest}"
    with locked(f"clone-{digest}"):
        if not (mirror / ".git").exists():
            say(f"cloning {url}")
            tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=trees_dir()))
            try:
                res = run(["git", "clone", "--no-checkout", url, str(tmp / "repo")], timeout=URL_TIMEOUT,
                          env={"GIT_TERMINAL_PROMPT": "0", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes "
                               "-o ConnectTimeout=10"})
                if not res.ok:
                    _raise_clone_error(url, res)
                (tmp / "repo").rename(mirror)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return prepare_local(mirror, base or "HEAD", say)


def _raise_clone_error(url: str, res: Result) -> None:
    text = res.stderr.lower()
    network = ("could not resolve", "unable to access", "connection timed out", "network is unreachable",
               "connection refused", "failed to connect", "temporary failure")
    if res.timed_out or any(word in text for word in network):
        raise OfflineError(f"cannot reach {url} (offline?): "
                           f"{'timed out' if res.timed_out else res.tail(1).strip()}")
    raise UserError(f"git clone {url} failed: {res.tail(1).strip()}")


def current_commit(tree: Tree) -> str:
    """The commit checked out in ``tree``."""
    commit = rev_parse(tree.path, "HEAD")
    if commit is None:
        raise InfraError(f"tree has no HEAD: {tree.path}")
    return commit


def checkout(tree: Tree, ref: str) -> str:
    """Check out ``ref`` in kwb's own tree (keeping mtimes of unchanged files for incremental builds)."""
    git(tree.path, "checkout", "-q", "--force", ref)
    return current_commit(tree)
