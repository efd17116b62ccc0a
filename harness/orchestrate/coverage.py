"""Patch coverage: which of the series' lines did the workloads execute?

Three parts, each usable alone:

* **series lines** — on the default tree the lines ``baseline.patch`` removes or changes, the lines an
  early ``return`` it inserts disables, and the functions listed in the profile's coverage file for that
  tree (``trees.<tree>.coverage`` in profile.toml); on a user's tree (the postings applied) the lines
  each patch's commit contributes to the final tree (``git blame base..head``);
* **gcov data** — ``.gcda`` files copied out of the guest's ``/sys/kernel/debug/gcov`` (see
  :mod:`.coverage_run`), paired with the build directory's ``.gcno`` and read with the host's
  ``gcov --json-format --stdout`` (same gcc that built the kernel);
* **the mapping** — per series line its execution count (None: no code there, e.g. an initialiser),
  rolled up per patch and per function, with every never-executed line listed.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core import profile
from harness.core.errors import InfraError, UserError
from harness.core.run import run
from harness.core.tomlfile import load_toml
from harness.workloads.model import VariantRun

GCOV = "gcov"
GCOV_TIMEOUT = 120.0
GIT_TIMEOUT = 120.0
SourceFn = Callable[[str], str | None]  # repo-relative path -> file text (None when absent)

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_RETURN = re.compile(r"^\s*return\b[^;]*;\s*$")
_FUNC_START = re.compile(r"^[A-Za-z_][^;=]*\b([A-Za-z_]\w*)\s*\([^;]*$")


@dataclass(frozen=True)
class SeriesLine:
    """One line of the tree that belongs to the series, and why."""

    file: str     # repo-relative, e.g. "mm/filemap.c"
    line: int     # 1-based line number in the built tree
    text: str
    origin: str   # the patch it comes from (subject or patch file)
    why: str      # removed | changed | disabled | function | added
    function: str = ""  # when known from how the line was chosen (a listed function)


@dataclass
class Hunk:
    """One ``@@`` hunk of a unified diff."""

    file: str
    old_start: int
    new_start: int
    lines: list[tuple[str, str]] = field(default_factory=list)  # (" " | "-" | "+", text)


def parse_diff(text: str) -> list[Hunk]:
    """Every hunk of a (git) unified diff, with the file it applies to (the old name)."""
    hunks: list[Hunk] = []
    current_file = ""
    cur: Hunk | None = None
    for raw in text.splitlines():
        if raw.startswith("diff --git "):
            cur = None
            current_file = raw.split()[2][2:] if len(raw.split()) > 2 else ""
        elif raw.startswith("--- ") and cur is None:
            name = raw[4:].split("\t")[0]
            current_file = name[2:] if name.startswith("a/") else current_file
        elif raw.startswith("+++ ") and cur is None:
            continue
        elif (m := _HUNK.match(raw)) and current_file:
            cur = Hunk(current_file, int(m.group(1)), int(m.group(3)))
            hunks.append(cur)
        elif cur is not None and raw[:1] in (" ", "-", "+"):
            cur.lines.append((raw[0], raw[1:]))
        elif cur is not None and raw == "":
            cur.lines.append((" ", ""))
        elif raw.startswith("-- ") or raw == "--":
            cur = None  # the signature after the last hunk
    return hunks


def function_span(source: str, name: str) -> tuple[int, int] | None:
    """(first, last) line of C function ``name``'s definition (kernel style: body closes with ``}``)."""
    lines = source.splitlines()
    pat = re.compile(rf"\b{re.escape(name)}\s*\(")
    for i, text in enumerate(lines):
        if not pat.search(text) or text.startswith((" ", "\t", "#")) or text.rstrip().endswith(";"):
            continue
        j = i
        while j < len(lines) and not lines[j].startswith("{") and not lines[j].rstrip().endswith(";"):
            j += 1
        if j >= len(lines) or not lines[j].startswith("{"):
            continue
        for k in range(j + 1, len(lines)):
            if lines[k].startswith("}"):
                return i + 1, k + 1
    return None


def enclosing_function(source: str, line: int) -> str:
    """Name of the function whose body contains ``line`` (1-based), or ""."""
    lines = source.splitlines()
    for i in range(min(line, len(lines)) - 1, -1, -1):
        text = lines[i]
        if text.startswith("}") and i + 1 != line:
            return ""
        if text.startswith("{") and i > 0:
            for back in range(i - 1, max(-1, i - 6), -1):
                m = _FUNC_START.match(lines[back])
                if m:
                    return m.group(1)
            return ""
    return ""


def baseline_lines(patch_text: str, origins: dict[str, str], source: SourceFn,
                   label: str = "baseline.patch") -> list[SeriesLine]:
    """The base-tree lines a baseline patch removes or changes, plus those its early returns disable."""
    out: list[SeriesLine] = []
    for hunk in parse_diff(patch_text):
        origin = origins.get(hunk.file, label)
        old = hunk.old_start
        removed: list[tuple[int, str]] = []
        added: list[str] = []
        for tag, text in hunk.lines:
            if tag == "-":
                removed.append((old, text))
                old += 1
            elif tag == "+":
                added.append(text)
            else:
                out += _flush(hunk.file, removed, added, origin)
                if added and not removed and any(_RETURN.match(a) for a in added):
                    out += _disabled(hunk.file, old, source, origin)
                removed, added = [], []
                old += 1
        out += _flush(hunk.file, removed, added, origin)
    return _unique(out)


def _flush(file: str, removed: list[tuple[int, str]], added: list[str], origin: str) -> list[SeriesLine]:
    why = "changed" if added else "removed"
    return [SeriesLine(file, n, text, origin, why) for n, text in removed]


def _disabled(file: str, first: int, source: SourceFn, origin: str) -> list[SeriesLine]:
    """Lines from ``first`` to the end of the enclosing function: unreachable after an inserted return."""
    text = source(file)
    if text is None:
        return []
    lines = text.splitlines()
    out = []
    for n in range(first, len(lines) + 1):
        if lines[n - 1].startswith("}"):
            break
        out.append(SeriesLine(file, n, lines[n - 1], origin, "disabled"))
    return out


def function_lines(source: str, file: str, name: str, origin: str) -> list[SeriesLine]:
    """Every line of function ``name`` (signature to closing brace); UserError when it is not there."""
    span = function_span(source, name)
    if span is None:
        raise UserError(f"coverage: function {name} not found in {file}")
    lines = source.splitlines()
    return [SeriesLine(file, n, lines[n - 1], origin, "function", name) for n in range(span[0], span[1] + 1)]


def _unique(lines: Iterable[SeriesLine]) -> list[SeriesLine]:
    seen: dict[tuple[str, int], SeriesLine] = {}
    for ln in lines:
        seen.setdefault((ln.file, ln.line), ln)
    return sorted(seen.values(), key=lambda s: (s.file, s.line))


def default_config() -> Path:
    """The active profile's coverage file for the default tree; UserError when it declares none."""
    prof = profile.active()
    era = prof.tree()
    if era.coverage_file is None:
        raise UserError(f"profile {prof.name}: no coverage file for tree {era.name} "
                        f"({prof.root / 'profile.toml'}: trees.{era.name}.coverage)")
    return era.coverage_file


def default_series_lines(source: SourceFn, config: Path | None = None) -> list[SeriesLine]:
    """The series' lines on the default tree (see the module docstring)."""
    path = config or default_config()
    data = load_toml(path, "coverage config")
    origins = {str(k): str(v) for k, v in data.get("origins", {}).items()}
    patch = path.parent / str(data.get("baseline", "baseline.patch"))
    if not patch.is_file():
        raise UserError(f"{path}: baseline patch {patch.name} not found")
    lines = baseline_lines(patch.read_text(encoding="utf-8"), origins, source, patch.name)
    for fn in data.get("function", []):
        text = source(str(fn["file"]))
        if text is None:
            raise UserError(f"{path}: {fn['file']} not in the tree")
        lines += function_lines(text, str(fn["file"]), str(fn["name"]), str(fn.get("origin", fn["name"])))
    return _unique(lines)


def git_source(tree: Path, commit: str) -> SourceFn:
    """A :data:`SourceFn` reading files of ``commit`` (not the work tree, which others may switch)."""
    cache: dict[str, str | None] = {}

    def read(path: str) -> str | None:
        if path not in cache:
            res = run(["git", "-C", str(tree), "show", f"{commit}:{path}"], timeout=GIT_TIMEOUT)
            cache[path] = res.stdout if res.ok else None
        return cache[path]
    return read


def blame_series_lines(tree: Path, base: str, head: str,
                       files: Iterable[str] | None = None) -> list[SeriesLine]:
    """On a user's tree: every line of ``head`` whose last change is one of the commits ``base..head``.

    ``origin`` is that commit's subject, so the per-patch rows are the postings' patches.
    """
    if files is None:
        res = run(["git", "-C", str(tree), "diff", "--name-only", base, head], timeout=GIT_TIMEOUT)
        if not res.ok:
            raise UserError(f"git diff {base}..{head} failed in {tree}: {res.tail(1).strip()}")
        files = [f for f in res.stdout.split() if f.endswith(".c")]
    out: list[SeriesLine] = []
    for path in files:
        res = run(["git", "-C", str(tree), "blame", "--porcelain", f"{base}..{head}", "--", path],
                  timeout=GIT_TIMEOUT)
        if not res.ok:
            raise UserError(f"git blame {path} failed in {tree}: {res.tail(1).strip()}")
        out += _parse_blame(res.stdout, path)
    return _unique(out)


def _parse_blame(text: str, path: str) -> list[SeriesLine]:
    subjects: dict[str, str] = {}
    boundary: set[str] = set()
    out: list[SeriesLine] = []
    sha, final = "", 0
    for raw in text.splitlines():
        if raw.startswith("\t"):
            if sha not in boundary:
                out.append(SeriesLine(path, final, raw[1:], subjects.get(sha, sha[:12]), "added"))
            continue
        parts = raw.split()
        if len(parts) >= 3 and re.fullmatch(r"[0-9a-f]{40}", parts[0]):
            sha, final = parts[0], int(parts[2])
        elif raw.startswith("summary "):
            subjects[sha] = raw[len("summary "):]
        elif raw == "boundary":
            boundary.add(sha)
    return out


# ---- gcov ----------------------------------------------------------------------------------------

@dataclass
class GcovFile:
    """Line counts of one source file (executable lines only), summed over every data set read."""

    path: str                                             # as recorded by the compiler
    counts: dict[int, int] = field(default_factory=dict)
    functions: dict[int, str] = field(default_factory=dict)

    def merge(self, other: GcovFile) -> None:
        """Add ``other``'s counts (another boot's data for the same object)."""
        for line, count in other.counts.items():
            self.counts[line] = self.counts.get(line, 0) + count
        for line, fn in other.functions.items():
            self.functions.setdefault(line, fn)


def parse_gcov_json(data: dict[str, Any]) -> list[GcovFile]:
    """``gcov --json-format`` output → one :class:`GcovFile` per source file it describes."""
    out = []
    for f in data.get("files", []):
        gf = GcovFile(str(f.get("file", "")))
        for ln in f.get("lines", []):
            n = int(ln["line_number"])
            gf.counts[n] = gf.counts.get(n, 0) + int(ln.get("count", 0))
            if ln.get("function_name"):
                gf.functions.setdefault(n, str(ln["function_name"]))
        out.append(gf)
    return out


def gcov_json(gcda: Path, gcno: Path, work: Path) -> dict[str, Any]:
    """Run the host's gcov on one object's data (gcda + gcno copied side by side in ``work``)."""
    if shutil.which(GCOV) is None:
        raise InfraError("gcov not found on the host (it comes with gcc: apt-get install gcc)")
    work.mkdir(parents=True, exist_ok=True)
    stem = gcda.stem
    shutil.copyfile(gcda, work / f"{stem}.gcda")
    shutil.copyfile(gcno, work / f"{stem}.gcno")
    res = run([GCOV, "--json-format", "--stdout", f"{stem}.gcda"], cwd=work, timeout=GCOV_TIMEOUT)
    if not res.ok:
        raise InfraError(f"gcov failed on {gcda}: {res.tail(1).strip() or f'exit {res.returncode}'}")
    text = res.stdout.strip()
    if not text.startswith("{"):
        # Some gcov builds ignore --stdout with --json-format and write <name>.gcov.json.gz instead.
        found = sorted(work.glob("*.gcov.json.gz"))
        if not found:
            raise InfraError(f"gcov gave no JSON for {gcda}")
        text = gzip.decompress(found[0].read_bytes()).decode()
    try:
        data: dict[str, Any] = json.loads(text.splitlines()[0] if text.count("\n{") else text)
    except json.JSONDecodeError as exc:
        raise InfraError(f"gcov output for {gcda} is not JSON: {exc}") from exc
    return data


def read_gcov_tree(data_root: Path, objtree: Path, work: Path) -> tuple[dict[str, GcovFile], list[str]]:
    """Every ``.gcda`` under ``data_root`` (a copy of debugfs' gcov dir), paired with ``objtree``'s .gcno.

    The kernel names each data file by its object's absolute path, so ``<objtree>/<rel>.gcda`` under
    ``data_root`` pairs with ``<objtree>/<rel>.gcno``. Returns merged files by compiler path, plus notes.
    """
    merged: dict[str, GcovFile] = {}
    notes: list[str] = []
    for i, gcda in enumerate(sorted(data_root.rglob("*.gcda"))):
        rel = _rel_to_objtree(gcda, data_root, objtree)
        gcno = objtree / rel.with_suffix(".gcno")
        if not gcno.is_file():
            notes.append(f"no {gcno.name} for {rel} in {objtree}: data skipped")
            continue
        for gf in parse_gcov_json(gcov_json(gcda, gcno, work / f"{i}")):
            if gf.path in merged:
                merged[gf.path].merge(gf)
            else:
                merged[gf.path] = gf
    return merged, notes


def _rel_to_objtree(gcda: Path, data_root: Path, objtree: Path) -> Path:
    rel = gcda.relative_to(data_root)
    marker = Path(*objtree.resolve().parts[1:])  # absolute objtree path without the leading "/"
    text, key = str(rel), str(marker) + "/"
    return Path(text.split(key, 1)[1]) if key in text else rel


def find_gcov_file(files: dict[str, GcovFile], repo_path: str) -> GcovFile | None:
    """The gcov data for ``repo_path`` (compiler paths may be absolute or ``../``-relative)."""
    for path, gf in files.items():
        norm = path.replace("\\", "/")
        if norm == repo_path or norm.endswith("/" + repo_path):
            return gf
    return None


# ---- the mapping ---------------------------------------------------------------------------------

@dataclass
class LineCoverage:
    """A series line and what gcov says about it."""

    file: str
    line: int
    text: str
    origin: str
    why: str
    function: str
    count: int | None  # None: no executable code on this line (or the file was not instrumented)

    @property
    def executable(self) -> bool:
        """True when gcov tracks this line."""
        return self.count is not None


@dataclass
class Rollup:
    """Executed / total executable series lines of one patch or function."""

    name: str
    executed: int = 0
    total: int = 0

    @property
    def percent(self) -> float:
        """Share executed, in percent (0 when nothing is executable)."""
        return round(100.0 * self.executed / self.total, 1) if self.total else 0.0


@dataclass
class CoverageReport:
    """The outcome of a coverage run (or of mapping existing data)."""

    lines: list[LineCoverage] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)  # series files with no gcov data at all
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    run: VariantRun | None = None  # the workloads' run (jobs, accelerator, boots), when there was one

    def executable(self) -> list[LineCoverage]:
        """The series lines gcov tracks."""
        return [ln for ln in self.lines if ln.executable]

    def never_executed(self) -> list[LineCoverage]:
        """Executable series lines with a zero count."""
        return [ln for ln in self.lines if ln.count == 0]

    def total(self) -> Rollup:
        """All series lines together."""
        ex = self.executable()
        return Rollup("all", sum(1 for ln in ex if ln.count), len(ex))

    def by(self, key: Callable[[LineCoverage], str]) -> list[Rollup]:
        """Roll executable lines up by ``key`` (origin, function, file), in first-seen order.

        A group whose lines carry no code (a flag in an initialiser) is kept, with 0 of 0 lines.
        """
        rolls: dict[str, Rollup] = {}
        for ln in self.lines:
            r = rolls.setdefault(key(ln), Rollup(key(ln)))
            if ln.executable:
                r.total += 1
                r.executed += 1 if ln.count else 0
        return list(rolls.values())

    def per_patch(self) -> list[Rollup]:
        """Executed / total per originating patch."""
        return self.by(lambda ln: ln.origin)

    def per_function(self) -> list[Rollup]:
        """Executed / total per function (``file:function``)."""
        return self.by(lambda ln: f"{ln.file}:{ln.function or '(initialiser)'}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (coverage.json)."""
        tot = self.total()
        return {"executed": tot.executed, "total": tot.total, "percent": tot.percent,
                "per_patch": [asdict(r) | {"percent": r.percent} for r in self.per_patch()],
                "per_function": [asdict(r) | {"percent": r.percent} for r in self.per_function()],
                "lines": [asdict(ln) for ln in self.lines], "missing_files": self.missing_files,
                "notes": self.notes, "timings": self.timings}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoverageReport:
        """Inverse of :meth:`to_dict` (jobs are not kept)."""
        return cls(lines=[LineCoverage(**ln) for ln in data.get("lines", [])],
                   missing_files=list(data.get("missing_files", [])), notes=list(data.get("notes", [])),
                   timings=dict(data.get("timings", {})))


def map_coverage(series: list[SeriesLine], files: dict[str, GcovFile], source: SourceFn) -> CoverageReport:
    """Attach gcov counts (and the enclosing function) to every series line."""
    report = CoverageReport()
    for path in sorted({s.file for s in series}):
        gf = find_gcov_file(files, path)
        if gf is None:
            report.missing_files.append(path)
        text = source(path) or ""
        for s in (x for x in series if x.file == path):
            count = gf.counts.get(s.line) if gf is not None else None
            fn = ((gf.functions.get(s.line) if gf is not None else None) or s.function
                  or enclosing_function(text, s.line))
            report.lines.append(LineCoverage(s.file, s.line, s.text, s.origin, s.why, fn, count))
    return report


def coverage_markdown(cov: CoverageReport) -> str:
    """The coverage section of report.md: per patch, per function, never-executed lines."""
    tot = cov.total()
    out = ["## Patch coverage", "",
           f"{tot.executed} of {tot.total} executable series lines executed ({tot.percent}%); "
           f"{len(cov.lines) - tot.total} series lines carry no code (initialisers, declarations)."]
    if cov.timings:
        out += ["", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in cov.timings.items())]
    for title, rows in (("Per patch", cov.per_patch()), ("Per function", cov.per_function())):
        out += ["", f"### {title}", "", "| | executed | lines | % |", "|---|---:|---:|---:|"]
        out += [f"| {_md(r.name)} | {r.executed} | {r.total} | {r.percent if r.total else 'no code'} |"
                for r in rows]
    never = cov.never_executed()
    out += ["", f"### Never executed ({len(never)})", ""]
    out += [f"- `{ln.file}:{ln.line}` ({ln.function or '?'}, {_md(ln.origin)}): `{ln.text.strip()}`"
            for ln in never] or ["(none)"]
    if cov.missing_files:
        out += ["", "No gcov data for: " + ", ".join(f"`{f}`" for f in cov.missing_files)]
    out += [f"- note: {n}" for n in cov.notes]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
