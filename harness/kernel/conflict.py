"""Why a patch does not apply: per failed hunk, the lines the tree has instead, the commit that last
changed them (``git blame`` on the tree) and a base guess from the patches' ``index`` blob ids.

The report is built while the tree still holds the failing patch's predecessors (``HEAD``) and before
``git am --abort``; it only reads the tree (``git blame``, ``git cat-file``, ``b4 am --guess-base`` with
its output in a temporary directory), so the caller's abort still leaves no half-applied state.
"""

from __future__ import annotations

import datetime
import difflib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.core.run import run
from harness.kernel.tree import git, rev_parse
from harness.sources import lore

BLAME_TIMEOUT = 180.0   # one file's blame over a long history (mm/filemap.c, full Linux history: ~1 min)
GUESS_TIMEOUT = 300.0
# b4 looks for the patches' blobs among commits dated up to this many days before the posting. A series
# posted against a maintainer branch or after a long review can sit on a base weeks older than its date.
GUESS_DAYS = 120
SEARCH_WINDOW = 400     # lines around the hunk's own start that are searched for its best match
_HUNK_HEAD = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+\d+(?:,\d+)? @@")
_INDEX = re.compile(r"^index ([0-9a-f]{7,40})\.\.([0-9a-f]{7,40})", re.M)


@dataclass
class BlameLine:
    """One line of the tree and the commit that last changed it."""

    line: int
    text: str
    commit: str
    summary: str
    author: str
    date: str
    boundary: bool  # the commit is where the tree's history starts (root or shallow boundary)


@dataclass
class HunkConflict:
    """A hunk that does not apply: what it expects, what the tree has there, who changed that."""

    file: str
    header: str
    expected: list[str]           # the hunk's preimage (context and removed lines)
    found: list[str]              # the tree's lines at the best-matching place
    found_start: int              # 1-based line of found[0]; 0 when the file is absent
    differing: list[BlameLine] = field(default_factory=list)
    note: str = ""                # file absent, no similar place, blame failed...

    def blame_summary(self) -> str:
        """One sentence naming the commits that last changed the differing lines."""
        if not self.differing:
            return self.note or "no differing line could be located"
        commits: dict[str, BlameLine] = {}
        for line in self.differing:
            commits.setdefault(line.commit, line)
        parts = []
        for commit, line in commits.items():
            where = f"{commit[:12]} \"{line.summary}\" ({line.author}, {line.date})"
            if line.boundary:
                parts.append(f"last changed in {where}, where this tree's history starts: the history "
                             "holds no commit that introduced these lines")
            else:
                parts.append(f"last changed by {where}")
        return "; ".join(parts)


@dataclass
class BaseGuess:
    """What the patches' ``index`` lines say about the base they were made on."""

    commit: str | None            # a commit of the tree's history that has the patches' blobs
    exact: bool
    blobs_at_head: int            # how many of the patches' preimage blobs the tree has now
    blobs_total: int
    mismatched: list[str]         # files whose blob at HEAD differs from the patch's preimage
    message: str


@dataclass
class ConflictReport:
    """The whole explanation for one patch that does not apply."""

    patch: int
    total: int
    subject: str
    hunks: list[HunkConflict]
    base: BaseGuess | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (kept in ApplyError.details)."""
        return asdict(self)

    def summary(self) -> str:
        """The report in one line (kwb's errors are one line): per hunk what the tree has, who put it."""
        parts = []
        for hunk in self.hunks[:3]:
            where = f"{hunk.file} {hunk.header.split(' @@')[0]} @@"
            lines = [d for d in hunk.differing][:2]
            missing = [e.strip() for e in hunk.expected if e not in hunk.found][:2]
            if lines:
                has = "; ".join(f"line {d.line} `{d.text.strip()}`" for d in lines)
                wants = f" where the patch expects `{'; '.join(missing)}`" if missing else ""
                parts.append(f"{where}: the tree has {has}{wants}, {hunk.blame_summary()}")
            else:
                parts.append(f"{where}: {hunk.note or 'no differing line found'}")
        if len(self.hunks) > 3:
            parts.append(f"+{len(self.hunks) - 3} more hunk(s)")
        if self.base is not None:
            parts.append(f"base: {self.base.message}")
        return " | ".join(parts)

    def text(self) -> str:
        """Human-readable lines: per hunk the expected and found lines, the blame, then the base."""
        out = [f"patch {self.patch}/{self.total} \"{self.subject}\":"]
        for hunk in self.hunks:
            out.append(f"  {hunk.file}: {hunk.header}")
            if hunk.found_start:
                wanted = {line.line for line in hunk.differing}
                for i, text in enumerate(hunk.found):
                    number = hunk.found_start + i
                    if number in wanted:
                        out.append(f"    tree {hunk.file}:{number}: {text}")
                missing = [e for e in hunk.expected if e not in hunk.found]
                for text in missing:
                    out.append(f"    patch expects: {text}")
            out.append(f"    {hunk.blame_summary()}")
        if self.base is not None:
            out.append(f"  base: {self.base.message}")
        return "\n".join(out)


def preimage(hunk: str) -> tuple[int, list[str]]:
    """(old start line, the lines the hunk expects: context and removed ones) of one ``@@`` hunk."""
    lines = hunk.splitlines()
    m = _HUNK_HEAD.match(lines[0]) if lines else None
    start = int(m.group(1)) if m else 1
    expected = [ln[1:] for ln in lines[1:] if ln[:1] in (" ", "-") or ln == ""]
    return start, expected


def locate(file_lines: list[str], start: int, expected: list[str]) -> tuple[int, list[str]]:
    """(0-based index, window) of the place in ``file_lines`` that matches ``expected`` best.

    Candidate windows start at a line the hunk expects, within SEARCH_WINDOW lines of the hunk's own
    start, and are aligned with difflib (so lines the tree inserted or deleted do not shift the
    comparison); most matched lines wins, then the tighter window, then the nearest. The window is
    widened by the expected lines before the first and after the last match (changed there, not gone).
    """
    if not expected or not file_lines:
        return 0, []
    norm = [ln.strip() for ln in file_lines]
    want = [ln.strip() for ln in expected]
    wanted = {w for w in want if w}
    n, slack = len(want), len(want) // 2 + 2
    origin = max(start - 1, 0)
    lo, hi = max(origin - SEARCH_WINDOW, 0), min(origin + SEARCH_WINDOW, len(file_lines) - 1)
    best: tuple[int, int, int] | None = None   # (-score, span, distance)
    best_at, best_blocks = origin, []
    for s in range(lo, hi + 1):
        if norm[s] not in wanted:
            continue
        matcher = difflib.SequenceMatcher(None, want, norm[s:s + n + slack], autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        score = sum(b.size for b in blocks if any(want[b.a + k] for k in range(b.size)))
        span = blocks[-1].b + blocks[-1].size if blocks else n
        key = (-score, span, abs(s - origin))
        if best is None or key < best:
            best, best_at, best_blocks = key, s, blocks
    if not best_blocks:
        return origin, file_lines[origin:origin + n]
    first, last = best_blocks[0], best_blocks[-1]
    begin = max(best_at + first.b - first.a, 0)
    finish = min(best_at + last.b + last.size + (n - last.a - last.size), len(file_lines))
    return begin, file_lines[begin:finish]


def differing_lines(expected: list[str], found: list[str]) -> list[int]:
    """0-based indexes into ``found`` of the tree's lines that are not among the expected ones."""
    want = {ln.strip() for ln in expected}
    return [i for i, ln in enumerate(found) if ln.strip() not in want]


def blame(repo: Path, path: str, lines: list[int], rev: str = "HEAD") -> list[BlameLine]:
    """``git blame`` of the given 1-based lines of ``path`` at ``rev`` (empty when blame fails)."""
    if not lines:
        return []
    ranges = [arg for n in lines for arg in ("-L", f"{n},{n}")]
    res = git(repo, "blame", "--porcelain", *ranges, rev, "--", path, check=False, timeout=BLAME_TIMEOUT)
    if not res.ok:
        return []
    return parse_porcelain(res.stdout, repo)


def parse_porcelain(text: str, repo: Path | None = None) -> list[BlameLine]:
    """Lines of ``git blame --porcelain`` output (commit metadata is given once per commit)."""
    meta: dict[str, dict[str, str]] = {}
    out: list[BlameLine] = []
    current: str | None = None
    final = 0
    for raw in text.splitlines():
        head = re.match(r"^([0-9a-f]{40}) \d+ (\d+)", raw)
        if head:
            current, final = head.group(1), int(head.group(2))
            meta.setdefault(current, {})
            continue
        if current is None:
            continue
        if raw.startswith("\t"):
            info = meta[current]
            root = "boundary" in info or (repo is not None and _is_root(repo, current, info))
            out.append(BlameLine(final, raw[1:], current, info.get("summary", ""), info.get("author", ""),
                                 _date(info.get("author-time", "")), root))
            continue
        key, _, value = raw.partition(" ")
        meta[current][key] = value
    return out


def _is_root(repo: Path, commit: str, info: dict[str, str]) -> bool:
    """True when ``commit`` has no parent (``git blame --root``-style output does not say boundary)."""
    if "root" not in info:
        res = git(repo, "rev-list", "--parents", "-n1", commit, check=False, timeout=30)
        info["root"] = "1" if res.ok and len(res.stdout.split()) == 1 else "0"
    return info["root"] == "1"


def _date(epoch: str) -> str:

    try:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%d")
    except ValueError:
        return "?"


def explain_hunk(repo: Path, name: str, header: str, single: str) -> HunkConflict:
    """The conflict of one hunk against the checked-out tree at ``repo``."""
    start, expected = preimage(single[single.find("\n@@") + 1:] if "\n@@" in single else single)
    target = repo / name
    if not target.is_file():
        return HunkConflict(name, header, expected, [], 0, note=f"{name} does not exist in the tree")
    file_lines = target.read_text(encoding="utf-8", errors="replace").splitlines()
    index, found = locate(file_lines, start, expected)
    diff = differing_lines(expected, found)
    conflict = HunkConflict(name, header, expected, found, index + 1)
    if not found:
        conflict.note = f"{name} is empty"
        return conflict
    numbers = [index + 1 + i for i in diff]
    conflict.differing = blame(repo, name, numbers)
    missing = [e for e in expected if e.strip() and e.strip() not in {f.strip() for f in found}]
    if diff and not conflict.differing:
        conflict.note = f"git blame of {name} failed"
    elif not diff and missing:
        conflict.note = f"the tree lacks `{missing[0].strip()}`" + (
            f" (+{len(missing) - 1} more expected line(s))" if len(missing) > 1 else "") + "; " + \
            removed_by(repo, name, missing[0].strip())
    elif not diff:
        conflict.note = "the expected lines are all there but not in the hunk's order or spacing"
    return conflict


def removed_by(repo: Path, path: str, text: str) -> str:
    """Which commit of the history last changed how often ``text`` occurs in ``path`` (it removed it)."""
    res = git(repo, "log", "-n1", f"-S{text}", "--format=%H%x00%s%x00%an%x00%as", "HEAD", "--", path,
              check=False, timeout=BLAME_TIMEOUT)
    fields = res.stdout.strip().split("\0")
    if not res.ok or len(fields) != 4:
        return "the history holds no commit that removed it"
    commit, subject, author, date = fields
    return f"removed by {commit[:12]} \"{subject}\" ({author}, {date})"


def index_blobs(diffs: list[str]) -> list[tuple[str, str]]:
    """(file, preimage blob prefix) of each file's first appearance in the series (later patches'
    preimages are earlier patches' postimages); new files (all-zero blob) are left out."""
    seen: dict[str, str] = {}
    for diff in diffs:
        for block in re.split(r"(?=^diff --git )", diff, flags=re.M):
            name = re.match(r"diff --git a/(\S+) b/", block)
            index = _INDEX.search(block)
            if name and index and name.group(1) not in seen:
                seen[name.group(1)] = index.group(1)
    return [(f, blob) for f, blob in seen.items() if set(blob) != {"0"}]


def blobs_at(repo: Path, rev: str, blobs: list[tuple[str, str]]) -> list[str]:
    """Files whose blob at ``rev`` is not the one the patches name."""
    mismatched = []
    for name, blob in blobs:
        res = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}:{name}", check=False, timeout=30)
        if not (res.ok and res.stdout.strip().startswith(blob)):
            mismatched.append(name)
    return mismatched


def guess_base(repo: Path, mails: list[Path], diffs: list[str], rev: str = "HEAD") -> BaseGuess:
    """Which base the series was made on: the blob check at ``rev``, then ``b4 am --guess-base``."""
    blobs = index_blobs(diffs)
    mismatched = blobs_at(repo, rev, blobs)
    have = len(blobs) - len(mismatched)
    head = (f"the tree has {have} of the {len(blobs)} file versions the patches' index lines name"
            + (f" (not: {', '.join(mismatched[:6])})" if mismatched else ""))
    if not blobs:
        return BaseGuess(None, False, 0, 0, [], "the patches carry no index lines: no base to guess")
    if not mails:
        return BaseGuess(None, False, have, len(blobs), mismatched, f"{head}; plain diffs: b4 not asked")
    named, why = _b4_guess(repo, mails, _guess_refs(repo, rev))
    commit = rev_parse(repo, named) if named else None
    if named and commit is None:
        why = f"b4 named {named!r}, which does not resolve here"
    base = rev_parse(repo, rev)
    if commit is not None and commit == base:
        msg = (f"{head}; b4 --guess-base's best guess is this base itself ({why}): the history has no "
               "better base for the series")
        return BaseGuess(None, False, have, len(blobs), mismatched, msg)
    if commit is None:
        msg = (f"{head}; no commit of this tree's history has them ({why}): the series was made on "
               "another base (an older or different tree); give --base a commit that has those blobs")
        return BaseGuess(None, False, have, len(blobs), mismatched, msg)
    exact = "exact" in why
    advice = f"try --base {commit[:12]}" if exact else f"--base {commit[:12]} is closer, not a clean base"
    msg = f"{head}; b4 --guess-base: {named} = {commit[:12]} ({why}): {advice}"
    return BaseGuess(commit, exact, have, len(blobs), mismatched, msg)


def _guess_refs(repo: Path, rev: str) -> list[str]:
    """Where b4 may look: the user's branches and remote branches and the base, never kwb's own
    branches (a revision applied there would be "the best base" for itself)."""
    res = git(repo, "for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes", check=False,
              timeout=60)
    refs = [r for r in res.stdout.split() if not r.startswith("refs/heads/kwb/")] if res.ok else []
    return [*refs, rev]


def _b4_guess(repo: Path, mails: list[Path], refs: list[str]) -> tuple[str | None, str]:
    """(commit, b4's words) from ``b4 am --guess-base`` run in ``repo`` on the patches' mails."""
    with tempfile.TemporaryDirectory(prefix="kwb-guess-") as tmp:
        mbox = Path(tmp) / "series.mbox"
        mbox.write_text("".join(_mbox_entry(mail, n) for n, mail in enumerate(mails, 1)),
                        encoding="utf-8")
        argv = [*lore.b4_command(), "--offline-mode", "am", "-m", str(mbox), "--guess-base",
                "--guess-lookback", str(GUESS_DAYS), "-o", str(Path(tmp) / "out"), "--guess-branch", *refs]
        res = run(argv, cwd=repo, timeout=GUESS_TIMEOUT, env=lore.b4_env())
    if res.timed_out:
        return None, f"b4 am --guess-base timed out after {GUESS_TIMEOUT:.0f}s"
    return parse_b4_base(res.stdout + res.stderr)


def _mbox_entry(mail: Path, number: int) -> str:
    """One mail as an mbox entry b4 accepts: a From_ line and a Message-Id (format-patch files of a
    local branch have none, and b4 refuses a message without one)."""
    text = mail.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("From "):
        text = "From kwb@localhost Mon Sep 17 00:00:00 2001\n" + text
    head, sep, body = text.partition("\n\n")
    if not re.search(r"^Message-Id:", head, re.M | re.I):
        head += f"\nMessage-Id: <kwb-guess-{number}@localhost>"
    return head + sep + body + ("" if body.endswith("\n") else "\n")


def parse_b4_base(text: str) -> tuple[str | None, str]:
    """(commit, what b4 said) from ``b4 am --guess-base`` output."""
    for line in text.splitlines():
        # b4 names the commit the way `git describe --all` would (heads/main~1, tags/v5.7) or by id.
        m = re.match(r"^\s*Base: (?!attempting|failed|applies|using)(\S+) \((.*)\)\s*$", line)
        if m:
            return m.group(1), m.group(2)
        m = re.match(r"^\s*Base: failed to guess base\s*(?:\((.*)\))?", line)
        if m:
            return None, f"b4: {m.group(1) or 'no commit matched'}"
    return None, "b4 gave no base line"
