"""public-inbox v2 mirrors: epoch repositories ``git/N.git``, one message per commit in a file ``m``.

Commits come from ``git rev-list`` (through harness.core.run); each message is read as ``<commit>:m`` from
one streaming ``git cat-file --batch`` (harness.sources.gitbatch). A commit whose blob is missing from
the mirror is a warning naming it; a commit without ``m`` (a public-inbox deletion) is passed over.
The source's identity is each epoch's head, so the archive index can read only new commits.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path

from harness.core.errors import InfraError, UserError
from harness.core.run import run
from harness.sources.base import RawEntry, SourceResult, parse_all
from harness.sources.gitbatch import BatchReader

_EPOCH = re.compile(r"^(\d+)\.git$")
_READERS: dict[Path, BatchReader] = {}


def _is_git_dir(path: Path) -> bool:
    return (path / "objects").is_dir() and (path / "HEAD").is_file()


def epochs(path: Path) -> list[Path]:
    """The epoch repositories of a v2 inbox (or ``path`` itself when it is one bare repo), in order."""
    if _is_git_dir(path):
        return [path]
    gitdir = path / "git"
    if not gitdir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in gitdir.iterdir() if (m := _EPOCH.match(p.name)) and _is_git_dir(p)]
    return [p for _, p in sorted(found)]


def _git(repo: Path, *args: str, timeout: float = 300) -> str:
    result = run(["git", "-C", str(repo), *args], timeout=timeout)
    if result.timed_out:
        raise InfraError(f"git {args[0]} timed out on {repo}")
    if not result.ok:
        if "does not have any commits" in result.stderr or "unknown revision" in result.stderr:
            return ""
        raise UserError(f"{repo}: not a readable public-inbox epoch: {result.tail(1)}")
    return result.stdout


def heads(repo: Path) -> list[str]:
    """The commit ids of the epoch's branches (what says it is unchanged)."""
    return sorted(_git(repo, "for-each-ref", "--format=%(objectname)", "refs/heads").split())


def commits(repo: Path, since: list[str] | None = None) -> list[str]:
    """Message commits oldest first (first parents of the branches; only after ``since`` when given)."""
    excluded = [f"^{c}" for c in since or []]
    return _git(repo, "rev-list", "--reverse", "--first-parent", "--branches", *excluded).split()


def _is_ancestor(repo: Path, old: str, new: list[str]) -> bool:
    return any(run(["git", "-C", str(repo), "merge-base", "--is-ancestor", old, n], timeout=60).ok
               for n in new)


@functools.lru_cache(maxsize=8)
def _epoch_map(spec: str) -> dict[str, Path]:
    return {repo.name: repo for repo in epochs(Path(spec))}


def reader(repo: Path) -> BatchReader:
    """The shared cat-file reader of one epoch."""
    if repo not in _READERS:
        _READERS[repo] = BatchReader(repo)
    return _READERS[repo]


def _entries(repo: Path, todo: list[str]) -> Iterator[RawEntry]:
    # The commit strings of ``todo`` are the locators the index keeps: no copy of each per message.
    for commit, data in reader(repo).stream(todo, suffix=":m"):
        origin = f"{repo.name}@{commit[:12]}"
        if data is not None:
            yield RawEntry(origin, data, [repo.name, commit])
            continue
        blob = run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"{commit}:m"], timeout=60)
        if blob.ok:  # the tree names a blob the mirror does not have
            yield RawEntry(origin, None, [repo.name, commit],
                           f"{origin}: cannot read message blob {blob.stdout.strip()[:12]} (missing from the "
                           "mirror); message skipped")
        # else: no m in this commit, a public-inbox deletion: nothing to read.


class PublicInboxSource:
    """A public-inbox v2 directory (``git/0.git`` …) or a single epoch repository."""

    name = "public-inbox"
    indexed = True

    def accepts(self, spec: str) -> tuple[bool, str]:
        """A directory with epoch repositories under git/, or a bare epoch repository."""
        path = Path(spec)
        if not path.is_dir():
            return False, "not a directory"
        if not epochs(path):
            return False, "no git/N.git epoch repositories"
        return True, ""

    def identity(self, spec: str) -> dict[str, object]:
        """Each epoch's branch heads."""
        return {repo.name: heads(repo) for repo in epochs(Path(spec))}

    def can_extend(self, spec: str, old: dict[str, object]) -> bool:
        """True when every epoch indexed before still holds its old heads (new commits only on top)."""
        for repo in epochs(Path(spec)):
            before = old.get(repo.name)
            if not isinstance(before, list):
                continue
            now = heads(repo)
            if any(not _is_ancestor(repo, str(h), now) for h in before if h not in now):
                return False
        return True

    def entries(self, spec: str, since: dict[str, object] | None) -> Iterator[RawEntry]:
        """Every message of every epoch, oldest epoch first; only commits after ``since`` when given."""
        for repo in epochs(Path(spec)):
            old = (since or {}).get(repo.name)
            todo = commits(repo, [str(h) for h in old] if isinstance(old, list) else None)
            yield from _entries(repo, todo)

    def read(self, spec: str, locator: list[object]) -> bytes:
        """Read one message back by its (epoch, commit) locator."""
        epoch, commit = str(locator[0]), str(locator[1])
        repo = _epoch_map(spec).get(epoch)
        data = reader(repo).read(f"{commit}:m") if repo is not None else None
        if data is None:
            raise UserError(f"{spec}: message {epoch}@{commit[:12]} is no longer in the mirror (rebuild: "
                            "remove the archive index)")
        return data

    def load(self, spec: str) -> SourceResult:
        """Every message of every epoch, oldest epoch first, commit order within one."""
        return parse_all(self.name, spec, self.entries(spec, None))
