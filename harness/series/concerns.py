"""Review concerns: the catalogue (``concerns.toml``) and each concern's status in a revision's patches.

A concern carries a declarative *rule* over the lines a revision's patches add (or remove). The rule names
a scope (file / enclosing function / patch subject regexes) and two lists of matchers, ``present`` and
``addressed``; each matcher is a regex searched over the added lines (or, with ``side = "removed"``,
the removed ones), ``+``/``-`` stripped, joined with newlines per patch and file, so a pattern may span
lines. The status of a concern in a revision:

- an addressed / present matcher hits       -> that status (``rule.precedence`` decides which wins)
- else, scope not touched by any patch      -> ``rule.untouched`` (default "not-applicable")
- else (scope touched, nothing matched)     -> ``rule.otherwise`` (default "not-applicable")

The evidence is the matching line as posted (``file: +line``), so a reader can check it in the patch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.core import profile
from harness.core.errors import UserError
from harness.core.tomlfile import load_toml

__all__ = [
    "STATUSES", "Concern", "ConcernStatus", "DiffLine", "Matcher", "Rule", "added_lines", "catalogue_path",
    "diff_lines", "evaluate", "evaluate_diff", "evaluate_family", "load_catalogue", "summarize",
]

STATUSES = ("present", "addressed", "not-applicable")
SOURCES = ("review", "merge", "report")  # report: against a tree, not a reply to a posting
_ID = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class PatchLike(Protocol):
    """What a rule needs from a patch (harness.series.Patch satisfies it)."""

    @property
    def number(self) -> int: ...
    @property
    def subject(self) -> str: ...
    @property
    def diff(self) -> str: ...


class RevisionLike(Protocol):
    """What a rule needs from a revision (harness.series.Revision satisfies it)."""

    @property
    def version(self) -> int: ...
    @property
    def patches(self) -> Sequence[PatchLike]: ...


class FamilyLike(Protocol):
    """What evaluate_family needs from a family (harness.series.Family satisfies it)."""

    @property
    def revisions(self) -> Sequence[RevisionLike]: ...


@dataclass(frozen=True)
class Matcher:
    """One regex over added lines, optionally narrowed to a file / function / subject.

    ``requires``: the matcher only counts when that other concern is "present" in the same revision
    (e.g. a call to wake_page_match() tests the page bit only while wake_page_match() itself does).
    """

    pattern: re.Pattern[str]
    file: re.Pattern[str] | None = None
    function: re.Pattern[str] | None = None
    subject: re.Pattern[str] | None = None
    requires: Concern | None = None
    side: str = "added"


@dataclass(frozen=True)
class Rule:
    """Where a concern lives in the patches and which added lines mean present / addressed."""

    file: re.Pattern[str] | None
    function: re.Pattern[str] | None
    subject: re.Pattern[str] | None
    present: tuple[Matcher, ...]
    addressed: tuple[Matcher, ...]
    untouched: str = "not-applicable"
    otherwise: str = "not-applicable"
    precedence: str = "addressed"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view of the rule (patterns as strings)."""
        def matchers(ms: tuple[Matcher, ...]) -> list[dict[str, Any]]:
            return [{"match": m.pattern.pattern, "side": m.side,
                     **{k: getattr(m, k).pattern for k in ("file", "function", "subject") if getattr(m, k)},
                     **({"requires": m.requires.id} if m.requires else {})} for m in ms]
        return {"scope": self.describe_scope(), "present": matchers(self.present),
                "addressed": matchers(self.addressed), "untouched": self.untouched,
                "otherwise": self.otherwise, "precedence": self.precedence}

    def describe_scope(self) -> str:
        """Human wording of the scope, for evidence when nothing matched."""
        parts = []
        if self.file:
            parts.append(f"file /{self.file.pattern}/")
        if self.function:
            parts.append(f"function /{self.function.pattern}/")
        if self.subject:
            parts.append(f"subject /{self.subject.pattern}/")
        return ", ".join(parts) or "any file"


@dataclass(frozen=True)
class Concern:
    """One concern raised in review or at merge, as catalogued in concerns.toml."""

    id: str
    title: str
    raised_by: str
    message_id: str
    raised_on: int
    source: str
    quote: str
    rule: Rule
    workloads: tuple[str, ...] = ()
    mutants: tuple[str, ...] = ()
    patch: int | None = None
    related: tuple[str, ...] = ()
    quoted_in: str | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (without the compiled rule)."""
        return {"id": self.id, "title": self.title, "raised_by": self.raised_by,
                "message_id": self.message_id, "raised_on": self.raised_on, "source": self.source,
                "patch": self.patch, "quote": self.quote, "related": list(self.related),
                "quoted_in": self.quoted_in, "workloads": list(self.workloads),
                "mutants": list(self.mutants), "notes": self.notes, "rule": self.rule.to_dict()}


@dataclass(frozen=True)
class ConcernStatus:
    """A concern's status in one revision, with the line that decided it."""

    concern_id: str
    version: int
    status: str
    evidence: str
    patch: int | None
    file: str | None = None
    # "match": evidence is the line a present/addressed pattern hit; "scope": nothing matched, the
    # evidence is the first added line of the concern's scope; "untouched": no patch adds lines there.
    basis: str = "match"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (the results.json "concerns" entries)."""
        return {"concern_id": self.concern_id, "version": self.version, "status": self.status,
                "evidence": self.evidence, "patch": self.patch, "file": self.file, "basis": self.basis}


# ----------------------------------------------------------------------------------------- diff lines

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@ ?(.*)$")
# A definition starts in column 0, has a name before "(" and does not end with ";" (a prototype).
_DEFINITION = re.compile(r"^[A-Za-z_][\w \t\*]*?\b(\w+)\s*\(")
_COMMENT = re.compile(r"^\s*(?:/\*|\*|//)")


@dataclass(frozen=True)
class DiffLine:
    """One added or removed line of a posted patch, with the function it is in (new-file view)."""

    patch: int
    subject: str
    file: str
    function: str | None
    text: str  # as posted, with the leading '+' or '-'

    @property
    def side(self) -> str:
        """"added" or "removed"."""
        return "added" if self.text.startswith("+") else "removed"

    @property
    def content(self) -> str:
        """The line without its '+' / '-'."""
        return self.text[1:]


def _definition(content: str) -> str | None:
    if content.startswith("#") or content.rstrip().endswith(";"):
        return None
    found = _DEFINITION.match(content)
    return found.group(1) if found else None


class _DiffWalker:
    """Walks a unified diff, tracking file and enclosing function over context and added lines.

    Removed lines are recorded in the function current at that point; they never move it."""

    def __init__(self, patch: int, subject: str) -> None:
        self.patch, self.subject = patch, subject
        self.file = ""
        self.function: str | None = None
        self.changed: list[DiffLine] = []
        self.recent: list[tuple[str, int | None]] = []  # (content, index into changed) this hunk

    def start_hunk(self, header_context: str) -> None:
        self.function = _definition(header_context) or None
        self.recent = []

    def line(self, kind: str, text: str) -> None:
        content = text[1:] if text else ""
        if kind == "-":
            self.changed.append(DiffLine(self.patch, self.subject, self.file, self.function, text))
            return
        name = _definition(content)
        if name:
            self.function = name
            self._adopt_leading_comment(name)
        index = None
        if kind == "+":
            index = len(self.changed)
            self.changed.append(DiffLine(self.patch, self.subject, self.file, self.function, text))
        self.recent.append((content, index))
        if content.startswith("}"):
            self.function = None

    def _adopt_leading_comment(self, name: str) -> None:
        # A comment block right above a definition documents that function (kernel-doc style).
        for content, index in reversed(self.recent):
            if not _COMMENT.match(content):
                break
            if index is not None:
                old = self.changed[index]
                self.changed[index] = DiffLine(old.patch, old.subject, old.file, name, old.text)


def added_lines(diff: str, *, patch: int = 0, subject: str = "") -> list[DiffLine]:
    """The '+' lines of a unified diff, each with its file and enclosing function."""
    return [ln for ln in diff_lines(diff, patch=patch, subject=subject) if ln.side == "added"]


def diff_lines(diff: str, *, patch: int = 0, subject: str = "") -> list[DiffLine]:
    """The '+' and '-' lines of a unified diff, in order, each with its file and enclosing function.

    Hunk line counts are honoured, so a mail signature ("-- ") after the last hunk is not a line."""
    walker = _DiffWalker(patch, subject)
    lines = diff.splitlines()
    i = 0
    while i < len(lines):
        text = lines[i]
        if text.startswith("+++ "):
            target = text[4:].split("\t")[0].strip()
            walker.file = target[2:] if target.startswith("b/") else target
        hunk = _HUNK.match(text)
        if not hunk or not walker.file:
            i += 1
            continue
        old_left = int(hunk.group(1) or 1)
        new_left = int(hunk.group(2) or 1)
        walker.start_hunk(hunk.group(3))
        i += 1
        while i < len(lines) and (old_left > 0 or new_left > 0):
            text = lines[i]
            kind = text[:1] or " "  # mailers strip the space of empty context lines
            if kind == "\\":
                i += 1
                continue
            if kind in "+ " and new_left > 0:
                walker.line(kind, text)
                new_left -= 1
            if kind == "-" and old_left > 0:
                walker.line(kind, text)
            if kind in "- ":
                old_left -= 1
            if kind not in "+- ":
                break
            i += 1
    return walker.changed


# ---------------------------------------------------------------------------------------------- loading

_CONCERN_KEYS = {"id", "title", "raised_by", "message_id", "raised_on", "source", "quote", "rule",
                 "workloads", "mutants", "patch", "related", "quoted_in", "notes"}
_REQUIRED = ("id", "title", "raised_by", "message_id", "raised_on", "source", "quote", "rule")
_RULE_KEYS = {"file", "function", "subject", "present", "addressed", "untouched", "otherwise",
              "precedence"}
_MATCHER_KEYS = {"match", "file", "function", "subject", "requires", "side"}


def catalogue_path() -> Path:
    """The concern catalogue of the active series profile."""
    return profile.active().concerns_file


def load_catalogue(path: Path | None = None) -> list[Concern]:
    """Load and validate the concern catalogue; UserError naming the file and entry when it is bad."""
    path = path or catalogue_path()
    data = load_toml(path, "concern catalogue")
    entries = data.get("concern")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: no [[concern]] entries")
    return _build_all(path, entries)


def _build_all(path: Path, entries: list[Any]) -> list[Concern]:
    raw: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: concern #{index + 1}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: not a table")
        cid = entry.get("id")
        if not isinstance(cid, str) or not _ID.match(cid):
            raise UserError(f"{where}: 'id' must be a lower-case dashed name, got {cid!r}")
        if cid in raw:
            raise UserError(f"{path}: concern {cid!r}: duplicate id")
        raw[cid] = entry
    built: dict[str, Concern] = {}
    for cid in raw:
        _build_one(path, cid, raw, built, ())
    return [built[cid] for cid in raw]


def _build_one(path: Path, cid: str, raw: Mapping[str, dict[str, Any]], built: dict[str, Concern],
               chain: tuple[str, ...]) -> Concern:
    if cid in built:
        return built[cid]
    if cid in chain:
        raise UserError(f"{path}: concern {cid!r}: 'requires' cycle {' -> '.join((*chain, cid))}")
    where = f"{path}: concern {cid!r}"
    entry = raw[cid]
    unknown = set(entry) - _CONCERN_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in _REQUIRED:
        if key not in entry:
            raise UserError(f"{where}: missing '{key}'")

    def resolve(dep: str) -> Concern:
        if dep not in raw:
            raise UserError(f"{where}: 'requires' names unknown concern {dep!r}")
        return _build_one(path, dep, raw, built, (*chain, cid))

    concern = Concern(
        id=cid,
        title=_str(entry, "title", where),
        raised_by=_str(entry, "raised_by", where),
        message_id=_message_id(entry, "message_id", where),
        raised_on=_int(entry, "raised_on", where),
        source=_choice(entry, "source", SOURCES, where),
        quote=_str(entry, "quote", where),
        rule=_rule(entry["rule"], f"{where} rule", resolve),
        workloads=_names(entry, "workloads", where),
        mutants=_names(entry, "mutants", where),
        patch=_int(entry, "patch", where) if "patch" in entry else None,
        related=tuple(_message_id({"related": m}, "related", where) for m in _list(entry, "related", where)),
        quoted_in=_message_id(entry, "quoted_in", where) if "quoted_in" in entry else None,
        notes=_str(entry, "notes", where) if "notes" in entry else "",
    )
    built[cid] = concern
    return concern


def _rule(value: Any, where: str, resolve: Callable[[str], Concern]) -> Rule:
    if not isinstance(value, dict):
        raise UserError(f"{where}: must be a table")
    unknown = set(value) - _RULE_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    present = tuple(_matcher(m, f"{where} present[{i}]", resolve)
                    for i, m in enumerate(_list(value, "present", where)))
    addressed = tuple(_matcher(m, f"{where} addressed[{i}]", resolve)
                      for i, m in enumerate(_list(value, "addressed", where)))
    if not present:
        raise UserError(f"{where}: needs at least one 'present' matcher")
    return Rule(file=_regex(value.get("file"), f"{where} file"),
                function=_regex(value.get("function"), f"{where} function"),
                subject=_regex(value.get("subject"), f"{where} subject"),
                present=present, addressed=addressed,
                untouched=_choice(value, "untouched", STATUSES, where, "not-applicable"),
                otherwise=_choice(value, "otherwise", STATUSES, where, "not-applicable"),
                precedence=_choice(value, "precedence", ("addressed", "present"), where, "addressed"))


def _matcher(value: Any, where: str, resolve: Callable[[str], Concern]) -> Matcher:
    if isinstance(value, str):
        value = {"match": value}
    if not isinstance(value, dict) or "match" not in value:
        raise UserError(f"{where}: must be a regex string or a table with 'match'")
    unknown = set(value) - _MATCHER_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    pattern = _regex(value["match"], f"{where} match")
    assert pattern is not None
    requires = value.get("requires")
    if requires is not None and not isinstance(requires, str):
        raise UserError(f"{where}: 'requires' must be a concern id")
    return Matcher(pattern=pattern, file=_regex(value.get("file"), f"{where} file"),
                   function=_regex(value.get("function"), f"{where} function"),
                   subject=_regex(value.get("subject"), f"{where} subject"),
                   requires=resolve(requires) if requires else None,
                   side=_choice(value, "side", ("added", "removed"), where, "added"))


def _regex(value: Any, where: str) -> re.Pattern[str] | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: must be a non-empty regex string")
    try:
        return re.compile(value, re.MULTILINE)
    except re.error as exc:
        raise UserError(f"{where}: bad regex {value!r}: {exc}") from None


def _str(entry: Mapping[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _int(entry: Mapping[str, Any], key: str, where: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def _choice(entry: Mapping[str, Any], key: str, allowed: Sequence[str], where: str,
            default: str | None = None) -> str:
    value = entry.get(key, default)
    if value not in allowed:
        raise UserError(f"{where}: '{key}' must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _list(entry: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise UserError(f"{where}: '{key}' must be a list")
    return value


def _names(entry: Mapping[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = _list(entry, key, where)
    for v in values:
        if not isinstance(v, str) or not _ID.match(v):
            raise UserError(f"{where}: '{key}' entries must be dashed names, got {v!r}")
    return tuple(values)


def _message_id(entry: Mapping[str, Any], key: str, where: str) -> str:
    """A message-id, stored bare (no angle brackets) like harness.series.Message.message_id."""
    value = _str(entry, key, where)
    bare = value[1:-1] if value.startswith("<") and value.endswith(">") else value
    if bare.count("@") < 1 or any(c in bare for c in "<> \t"):
        raise UserError(f"{where}: '{key}' must look like local@domain, got {value!r}")
    return bare


# ------------------------------------------------------------------------------------------- evaluation

@dataclass
class _Hit:
    line: DiffLine

    def status(self, concern_id: str, version: int, status: str) -> ConcernStatus:
        return ConcernStatus(concern_id, version, status, f"{self.line.file}: {self.line.text}",
                             self.line.patch, self.line.file)


def _revision_lines(revision: RevisionLike) -> list[DiffLine]:
    out: list[DiffLine] = []
    for patch in sorted(revision.patches, key=lambda p: p.number):
        out.extend(diff_lines(patch.diff, patch=patch.number, subject=patch.subject))
    return out


def _in_scope(line: DiffLine, file: re.Pattern[str] | None, function: re.Pattern[str] | None,
              subject: re.Pattern[str] | None) -> bool:
    if file and not file.search(line.file):
        return False
    if function and not (line.function and function.search(line.function)):
        return False
    return not (subject and not subject.search(line.subject))


def _search(matcher: Matcher, rule: Rule, lines: Sequence[DiffLine]) -> _Hit | None:
    file = matcher.file or rule.file
    function = matcher.function or rule.function
    subject = matcher.subject or rule.subject
    groups: dict[tuple[int, str], list[DiffLine]] = {}
    for line in lines:
        if line.side == matcher.side and _in_scope(line, file, function, subject):
            groups.setdefault((line.patch, line.file), []).append(line)
    for group in groups.values():
        text = "\n".join(ln.content for ln in group)
        found = matcher.pattern.search(text)
        if found:
            return _Hit(group[text.count("\n", 0, found.start())])
    return None


def _first_hit(matchers: Iterable[Matcher], rule: Rule, lines: Sequence[DiffLine],
               revision: RevisionLike, cache: dict[str, ConcernStatus]) -> _Hit | None:
    for matcher in matchers:
        if matcher.requires is not None:
            dep = _evaluate_lines(matcher.requires, revision, lines, cache)
            if dep.status != "present":
                continue
        hit = _search(matcher, rule, lines)
        if hit:
            return hit
    return None


def _evaluate_lines(concern: Concern, revision: RevisionLike, lines: Sequence[DiffLine],
                    cache: dict[str, ConcernStatus]) -> ConcernStatus:
    if concern.id in cache:
        return cache[concern.id]
    rule, version = concern.rule, revision.version
    addressed = _first_hit(rule.addressed, rule, lines, revision, cache)
    present = _first_hit(rule.present, rule, lines, revision, cache)
    ordered = [("addressed", addressed), ("present", present)]
    if rule.precedence == "present":
        ordered.reverse()
    decided = next(((name, hit) for name, hit in ordered if hit is not None), None)
    scope = [ln for ln in lines if _in_scope(ln, rule.file, rule.function, rule.subject)]
    if decided is not None:
        result = decided[1].status(concern.id, version, decided[0])
    elif not scope:
        result = ConcernStatus(concern.id, version, rule.untouched,
                               f"no patch of v{version} adds lines in {rule.describe_scope()}", None,
                               basis="untouched")
    else:
        first = scope[0]
        result = ConcernStatus(concern.id, version, rule.otherwise, f"{first.file}: {first.text}",
                               first.patch, first.file, basis="scope")
    cache[concern.id] = result
    return result


def evaluate(concern: Concern, revision: RevisionLike) -> ConcernStatus:
    """The status of ``concern`` in ``revision``'s patches, with the deciding line as evidence."""
    return _evaluate_lines(concern, revision, _revision_lines(revision), {})


@dataclass(frozen=True)
class _OnePatch:
    number: int
    subject: str
    diff: str


@dataclass(frozen=True)
class _OnePatchRevision:
    version: int
    patches: tuple[_OnePatch, ...]


def evaluate_diff(concern: Concern, diff: str, *, version: int, patch: int = 0,
                  subject: str = "") -> ConcernStatus:
    """The status of ``concern`` in a lone diff, e.g. a fix-up proposed in a review reply."""
    return evaluate(concern, _OnePatchRevision(version, (_OnePatch(patch, subject, diff),)))


def evaluate_family(catalogue: Sequence[Concern], family: FamilyLike) -> list[ConcernStatus]:
    """Statuses of every catalogue concern for every revision of ``family`` (revision-major order)."""
    out: list[ConcernStatus] = []
    for revision in family.revisions:
        lines = _revision_lines(revision)
        cache: dict[str, ConcernStatus] = {}
        out.extend(_evaluate_lines(c, revision, lines, cache) for c in catalogue)
    return out


def summarize(catalogue: Sequence[Concern], statuses: Sequence[ConcernStatus]) -> list[dict[str, Any]]:
    """One record per concern with its statuses keyed by version (for `kwb series concerns --json`)."""
    by_concern: dict[str, dict[str, Any]] = {}
    for status in statuses:
        entry = by_concern.setdefault(status.concern_id, {})
        entry[str(status.version)] = {k: v for k, v in status.to_dict().items()
                                      if k not in ("concern_id", "version")}
    return [{**c.to_dict(), "statuses": by_concern.get(c.id, {})} for c in catalogue]
