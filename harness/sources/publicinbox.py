"""public-inbox v2 mirrors: epoch repositories ``git/N.git``, one message per commit in a file ``m``.

Commit order comes from ``git log`` (through harness.run); blob bytes are read with gitdb's pure-Python
object reader, because raw mail is bytes and the runner decodes output as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from gitdb import GitDB
from gitdb.exc import BadObject

from harness.errors import InfraError, UserError
from harness.run import run
from harness.sources.base import SourceResult, parse_all

_EPOCH = re.compile(r"^(\d+)\.git$")
_RAW_LINE = re.compile(r"^:\d+ \d+ [0-9a-f]+ ([0-9a-f]+) ([AMD])\tm$")


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


def _blob_ids(repo: Path) -> list[tuple[str, str]]:
    result = run(["git", "-C", str(repo), "log", "--reverse", "--format=%H", "--raw", "--no-abbrev",
                  "--no-renames", "--first-parent", "--branches", "--", "m"], timeout=300)
    if result.timed_out:
        raise InfraError(f"git log timed out on {repo}")
    if not result.ok:
        if "does not have any commits" in result.stderr or "unknown revision" in result.stderr:
            return []
        raise UserError(f"{repo}: not a readable public-inbox epoch: {result.tail(1)}")
    out: list[tuple[str, str]] = []
    commit = ""
    for line in result.stdout.splitlines():
        if re.fullmatch(r"[0-9a-f]{40}", line):
            commit = line
        elif (m := _RAW_LINE.match(line)) and m.group(2) != "D":
            out.append((commit, m.group(1)))
    return out


def _raw_messages(repos: list[Path]) -> Iterator[tuple[str, bytes]]:
    for repo in repos:
        db = GitDB(str(repo / "objects"))
        for commit, blob in _blob_ids(repo):
            try:
                data = db.stream(bytes.fromhex(blob)).read()
            except (BadObject, ValueError, OSError) as exc:
                raise UserError(f"{repo.name}@{commit[:12]}: cannot read message blob ({exc})") from exc
            yield f"{repo.name}@{commit[:12]}", data


class PublicInboxSource:
    """A public-inbox v2 directory (``git/0.git`` …) or a single epoch repository."""

    name = "public-inbox"

    def accepts(self, spec: str) -> tuple[bool, str]:
        """A directory with epoch repositories under git/, or a bare epoch repository."""
        path = Path(spec)
        if not path.is_dir():
            return False, "not a directory"
        if not epochs(path):
            return False, "no git/N.git epoch repositories"
        return True, ""

    def load(self, spec: str) -> SourceResult:
        """Every message of every epoch, oldest epoch first, commit order within one."""
        repos = epochs(Path(spec))
        return parse_all(self.name, spec, _raw_messages(repos))
