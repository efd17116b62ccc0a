"""The mutant generator: operators (data, ``operators.toml``) applied to chosen lines of C sources.

A mutant changes one line of one file and keeps the file's line count, so ``__LINE__`` in WARN_ON /
BUG_ON tables is unchanged and "the same object code" can be decided by comparing object files.
Generation is pure (text in, mutants out); which lines are the series' is the caller's business.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.tomlfile import load_toml

GUARDS = ("balanced", "statement_start", "not_macro")
# A previous code line ending like this ends a statement or opens/closes a block (or is an if/for/while
# header whose body is the next line), so the next line is a statement of its own.
_ENDS_STATEMENT = re.compile(r"([;{}:]|\)|\belse|\*/)\s*$")
_COMMENT = re.compile(r"//|/\*")


@dataclass(frozen=True)
class Rule:
    """One regular expression and its replacement template."""

    match: re.Pattern[str]
    replace: str


@dataclass(frozen=True)
class Operator:
    """A mutation operator as loaded from operators.toml."""

    name: str
    description: str
    rules: tuple[Rule, ...]
    guards: tuple[str, ...] = ()
    exclude: re.Pattern[str] | None = None


@dataclass(frozen=True)
class Mutant:
    """One generated mutant: ``file``'s line ``line`` changed from ``original`` to ``mutated``."""

    id: str
    file: str
    line: int
    operator: str
    original: str
    mutated: str
    function: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    def apply(self, source: str) -> str:
        """``source`` (the unmutated file) with this mutant's line replaced; UserError if it moved."""
        lines = source.split("\n")
        if self.line > len(lines) or lines[self.line - 1] != self.original:
            raise UserError(f"mutant {self.id}: {self.file}:{self.line} is no longer "
                            f"{self.original.strip()!r}")
        lines[self.line - 1] = self.mutated
        return "\n".join(lines)

    def diff(self) -> str:
        """A minimal unified diff of the change (for reports and survivors' lists)."""
        return (f"--- a/{self.file}\n+++ b/{self.file}\n@@ -{self.line} +{self.line} @@\n"
                f"-{self.original}\n+{self.mutated}\n")


@dataclass
class CampaignDefaults:
    """The ``[campaign]`` table: what `kwb mutate` does without flags."""

    files: list[str] = field(default_factory=list)
    max: int = 40
    seed: int = 1
    checks: list[str] = field(default_factory=list)
    filesystems: list[str] = field(default_factory=lambda: ["ext4"])
    boot_timeout: float = 180.0


def operators_file() -> Path:
    """``harness/orchestrate/mutate/operators.toml`` (beside this module)."""
    return Path(__file__).with_name("operators.toml")


@dataclass(frozen=True)
class Argued:
    """A generated mutant argued equivalent in docs/mutants.md: nothing the tested kernel can run tells it
    from the series. ``original`` is the line as the argument read it: a tree whose line differs voids it."""

    id: str
    original: str
    reason: str


def load_equivalents(path: Path | None = None) -> dict[str, Argued]:
    """The ``[[equivalent]]`` tables of ``path`` (id, original, reason), keyed by mutant id."""
    path = path or operators_file()
    out: dict[str, Argued] = {}
    for i, entry in enumerate(load_toml(path, "mutation operators").get("equivalent", [])):
        where = f"{path}: equivalent[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where} must be a table")
        for key in ("id", "original", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UserError(f"{where}: field {key!r} must be a non-empty string")
        unknown = set(entry) - {"id", "original", "reason"}
        if unknown:
            raise UserError(f"{where}: unknown field {sorted(unknown)[0]!r} (known: id, original, reason)")
        out[entry["id"]] = Argued(entry["id"], entry["original"], " ".join(entry["reason"].split()))
    return out


def load_operators(path: Path | None = None) -> list[Operator]:
    """Every operator of ``path``, validated (a bad regex or guard is a UserError naming it)."""
    path = path or operators_file()
    data = load_toml(path, "mutation operators")
    out: list[Operator] = []
    for i, entry in enumerate(data.get("operator", [])):
        name = str(entry.get("name", "")) or f"#{i + 1}"
        guards = tuple(str(g) for g in entry.get("guards", []))
        bad = [g for g in guards if g not in GUARDS]
        if bad:
            raise UserError(f"{path}: operator {name}: unknown guard {', '.join(bad)} "
                            f"(known: {', '.join(GUARDS)})")
        rules = entry.get("rules", [])
        if not rules:
            raise UserError(f"{path}: operator {name} has no rules")
        try:
            compiled = tuple(Rule(re.compile(str(r["match"])), str(r.get("replace", ""))) for r in rules)
            exclude = re.compile(str(entry["exclude"])) if entry.get("exclude") else None
        except (re.error, KeyError, TypeError) as exc:
            raise UserError(f"{path}: operator {name}: bad rule ({exc})") from None
        out.append(Operator(name, str(entry.get("description", "")), compiled, guards, exclude))
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: duplicate operator names")
    return out


def load_defaults(path: Path | None = None) -> CampaignDefaults:
    """The ``[campaign]`` table of ``path``."""
    path = path or operators_file()
    table = load_toml(path, "mutation operators").get("campaign", {})
    d = CampaignDefaults()
    return CampaignDefaults(files=[str(f) for f in table.get("files", d.files)],
                            max=int(table.get("max", d.max)), seed=int(table.get("seed", d.seed)),
                            checks=[str(c) for c in table.get("checks", d.checks)],
                            filesystems=[str(f) for f in table.get("filesystems", d.filesystems)],
                            boot_timeout=float(table.get("boot_timeout", d.boot_timeout)))


def _code_part(text: str) -> str:
    m = _COMMENT.search(text)
    return text[:m.start()] if m else text


def _is_comment(text: str) -> bool:
    s = text.strip()
    return not s or s.startswith(("*", "/*", "//", "#"))


def _balanced(code: str) -> bool:
    depth = 0
    for ch in code:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def _previous_code(lines: Sequence[str], index: int) -> str:
    for j in range(index - 1, -1, -1):
        if not _is_comment(lines[j]) or lines[j].strip().endswith("*/"):
            return lines[j]
    return "{"


def _guards_hold(op: Operator, lines: Sequence[str], index: int, code: str) -> bool:
    for guard in op.guards:
        if guard == "balanced" and not _balanced(code):
            return False
        if guard == "statement_start" and not _ENDS_STATEMENT.search(_previous_code(lines, index).rstrip()):
            return False
        if guard == "not_macro" and (lines[index].rstrip().endswith("\\")
                                     or (index > 0 and lines[index - 1].rstrip().endswith("\\"))):
            return False
    return True


def _slug(file: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", file).strip("-")


def mutants_of(file: str, source: str, line_numbers: Iterable[int], operators: Sequence[Operator],
               functions: Mapping[int, str] | None = None) -> list[Mutant]:
    """Every mutant the operators make on ``line_numbers`` (1-based) of ``source``, in line order.

    Two rules giving the same line are one mutant (the first operator's); a line whose change would
    not alter the code part (e.g. a rule matching empty text) makes none.
    """
    lines = source.split("\n")
    out: list[Mutant] = []
    for n in sorted(set(line_numbers)):
        if not 1 <= n <= len(lines) or _is_comment(lines[n - 1]):
            continue
        text = lines[n - 1]
        code = _code_part(text)
        seen: set[str] = {text}
        for op in operators:
            excluded = op.exclude is not None and op.exclude.search(code) is not None
            if excluded or not _guards_hold(op, lines, n - 1, code):
                continue
            count = 0
            for rule in op.rules:
                for m in rule.match.finditer(code):
                    if m.end() == m.start():
                        continue
                    mutated = code[:m.start()] + m.expand(rule.replace) + code[m.end():] + text[len(code):]
                    if mutated in seen:
                        continue
                    seen.add(mutated)
                    count += 1
                    out.append(Mutant(f"{_slug(file)}-{n}-{op.name}-{count}", file, n, op.name, text,
                                      mutated, (functions or {}).get(n, "")))
    return out


def sample(mutants: Sequence[Mutant], limit: int | None, seed: int) -> list[Mutant]:
    """At most ``limit`` mutants chosen with ``seed`` (deterministic), returned in (file, line) order."""
    chosen = list(mutants)
    if limit is not None and 0 <= limit < len(chosen):
        chosen = random.Random(seed).sample(chosen, limit)
    order = {m.id: i for i, m in enumerate(mutants)}
    return sorted(chosen, key=lambda m: order[m.id])


def generate(sources: Callable[[str], str | None], lines: Mapping[str, Iterable[int]],
             operators: Sequence[Operator],
             functions: Mapping[str, Mapping[int, str]] | None = None) -> list[Mutant]:
    """Mutants of every file in ``lines`` (file -> its candidate line numbers), files in sorted order."""
    out: list[Mutant] = []
    for file in sorted(lines):
        text = sources(file)
        if text is None:
            raise UserError(f"mutate: {file} is not in the tree")
        out += mutants_of(file, text, lines[file], operators, (functions or {}).get(file))
    return out
