"""`kwb report --compare RUN_A RUN_B`: which checks and metrics changed, and which patches may explain it.

Checks: each job's status (variant × fs × workload), each variant's verdict, each mutant's kill,
each concern's status. Metrics: IOPS, CPU per IO and context switches whose medians moved by more
than the two runs' spreads (and at least 5 %). When the runs are of different revisions of the series,
the revision diff (harness.series.revdiff) names the patches that changed; each change is matched to
the changed patches touching the files that could cause it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.judge.metrics import job_value
from harness.series import find_family, load_families
from harness.series.revdiff import diff_revisions

MIN_RELATIVE_CHANGE = 0.05
# Files whose change can move any workload; filesystem-specific ones are added per job.
_CORE = ("mm/", "fs/io_uring.c", "io_uring/", "include/", "block/", "fs/read_write.c")
_FS_PATHS = {"ext4": ("fs/ext4/",), "xfs": ("fs/xfs/", "fs/iomap/"), "btrfs": ("fs/btrfs/",),
             "bdev": ("fs/block_dev.c", "block/fops.c")}


@dataclass
class Change:
    """One difference between the runs, with the changed patches that could explain it."""

    what: str          # job | variant | mutant | concern | metric
    key: str
    before: str
    after: str
    explained_by: list[str] = field(default_factory=list)


@dataclass
class Comparison:
    """All differences; ``patches`` is the revision diff (empty when the runs share a revision)."""

    run_a: str
    run_b: str
    revisions: tuple[int | None, int | None]
    changes: list[Change]
    patches: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"run_a": self.run_a, "run_b": self.run_b, "revisions": list(self.revisions),
                "changes": [asdict(c) for c in self.changes], "patches": self.patches}


def _jobs(data: Mapping[str, Any]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    return {(str(j["variant"]), str(j["fs"]), str(j["workload"])): j for j in data.get("jobs", [])}


def _status_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    out = []
    ja, jb = _jobs(a), _jobs(b)
    for key in sorted(set(ja) | set(jb)):
        sa = str(ja[key]["status"]) if key in ja else "absent"
        sb = str(jb[key]["status"]) if key in jb else "absent"
        if sa != sb:
            out.append(Change("job", "/".join(key), sa, sb))
    for name in sorted(set(a.get("variants", {})) | set(b.get("variants", {}))):
        va = a.get("variants", {}).get(name, {}).get("verdict", "absent")
        vb = b.get("variants", {}).get(name, {}).get("verdict", "absent")
        if va != vb:
            out.append(Change("variant", name, str(va), str(vb)))
    for name in sorted(set(a.get("mutants", {})) | set(b.get("mutants", {}))):
        ma, mb = a.get("mutants", {}).get(name), b.get("mutants", {}).get(name)
        fa = "absent" if ma is None else ("flagged" if ma["flagged"] else "missed")
        fb = "absent" if mb is None else ("flagged" if mb["flagged"] else "missed")
        if fa != fb:
            out.append(Change("mutant", name, fa, fb))
    return out


def _concern_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    rev_a, rev_b = a["run"].get("revision"), b["run"].get("revision")

    def statuses(data: Mapping[str, Any], rev: int | None) -> dict[str, Mapping[str, Any]]:
        # Runs of one revision each: compare the concern at that revision; else per (concern, version).
        return {(str(c["concern_id"]) if rev is not None else f"{c['concern_id']}@v{c['version']}"): c
                for c in data.get("concerns", []) if rev is None or int(c["version"]) == rev}

    ca, cb = statuses(a, rev_a), statuses(b, rev_b)
    out = []
    for key in sorted(set(ca) | set(cb)):
        sa = str(ca[key]["status"]) if key in ca else "absent"
        sb = str(cb[key]["status"]) if key in cb else "absent"
        if sa != sb:
            file = (cb.get(key) or ca.get(key) or {}).get("file")
            out.append(Change("concern", key + (f" [{file}]" if file else ""), sa, sb))
    return out


def _metric_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    out = []
    ja, jb = _jobs(a), _jobs(b)
    for key in sorted(set(ja) & set(jb)):
        for name in ("iops", "cpu_per_io", "ctx"):
            va, vb = job_value(ja[key], name), job_value(jb[key], name)
            if va is None or vb is None or va.median == 0:
                continue
            rel = (vb.median - va.median) / va.median
            if abs(rel) > max(MIN_RELATIVE_CHANGE, va.spread + vb.spread):
                out.append(Change("metric", f"{'/'.join(key)} {name}", f"{va.median:,.1f}",
                                  f"{vb.median:,.1f} ({rel * 100:+.0f}%)"))
    return out


def _files_of(change: Mapping[str, Any]) -> set[str]:
    found = set(change.get("files") or [])
    for line in str(change.get("interdiff", "")).splitlines():
        m = re.search(r"diff --git a/(\S+) b/", line)
        if m:
            found.add(m.group(1))
    return found


def _relevant(change: Change) -> tuple[str, ...]:
    if change.what == "concern":
        m = re.search(r"\[(.+)\]$", change.key)
        return (m.group(1),) if m else _CORE
    fs = change.key.split("/")[1] if change.key.count("/") >= 2 else ""
    return _CORE + _FS_PATHS.get(fs, ())


def explain(changes: list[Change], patches: list[dict[str, Any]]) -> None:
    """Fill ``explained_by``: changed/new/dropped patches touching a file relevant to each change."""
    moved = [p for p in patches if p["status"] != "unchanged"]
    for change in changes:
        prefixes = _relevant(change)
        for p in moved:
            files = _files_of(p)
            if not files or any(f.startswith(prefixes) or f in prefixes for f in files):
                num = p.get("new") if p.get("new") is not None else p.get("old")
                change.explained_by.append(f"{p['status']} {num:>2}: {p['subject']}")


RevDiff = Callable[[str, int, int], list[dict[str, Any]]]


def compare(a: Mapping[str, Any], b: Mapping[str, Any], revdiff: RevDiff | None = None,
            source: str | None = None) -> Comparison:
    """Differences from run ``a`` to run ``b``; ``revdiff(source, rev_a, rev_b)`` gives patch changes."""
    changes = _status_changes(a, b) + _concern_changes(a, b) + _metric_changes(a, b)
    rev_a, rev_b = a["run"].get("revision"), b["run"].get("revision")
    patches: list[dict[str, Any]] = []
    src = source or b["run"].get("source") or a["run"].get("source")
    if revdiff is not None and rev_a is not None and rev_b is not None and rev_a != rev_b and src:
        patches = revdiff(str(src), int(rev_a), int(rev_b))
        explain(changes, patches)
    return Comparison(str(a["run"]["id"]), str(b["run"]["id"]), (rev_a, rev_b), changes, patches)


def render(cmp: Comparison) -> str:
    """Human-readable comparison (markdown)."""
    ra, rb = cmp.revisions
    revs = f" (v{ra} → v{rb})" if ra is not None and rb is not None else ""
    lines = [f"# kwb compare {cmp.run_a} → {cmp.run_b}{revs}", ""]
    if cmp.patches:
        moved = [p for p in cmp.patches if p["status"] != "unchanged"]
        lines += [f"Revision diff: {len(moved)} of {len(cmp.patches)} patches changed.", ""]
        lines += [f"- {p['status']}: {p['subject']}" for p in moved] + [""]
    if not cmp.changes:
        return "\n".join([*lines, "No check or metric changed."]) + "\n"
    lines += ["| what | item | before | after | changed patches that could explain it |",
              "|---|---|---|---|---|"]
    for c in cmp.changes:
        why = "; ".join(c.explained_by) if c.explained_by else ("–" if not cmp.patches else "none touch it")
        lines.append(f"| {c.what} | {c.key} | {c.before} | {c.after} | {why} |")
    return "\n".join(lines) + "\n"


def series_revdiff(source: str, rev_a: int, rev_b: int) -> list[dict[str, Any]]:
    """The real revision diff from the series layer, with each patch's files (from the posted diffs)."""
    family = find_family(load_families(source), None)
    a, b = family.revision(rev_a), family.revision(rev_b)
    files = {("old", p.number): _diff_files(p.diff) for p in a.patches}
    files.update({("new", p.number): _diff_files(p.diff) for p in b.patches})
    out = []
    for change in diff_revisions(a, b):
        d = change.to_dict()
        new = files.get(("new", change.new), set()) if change.new is not None else set()
        old = files.get(("old", change.old), set()) if change.old is not None else set()
        d["files"] = sorted(new | old)
        out.append(d)
    return out


def _diff_files(diff: str) -> set[str]:
    return set(re.findall(r"^diff --git a/(\S+) b/", diff, re.MULTILINE))
