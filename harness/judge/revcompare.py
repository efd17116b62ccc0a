"""Revisions side by side: per revision its path evidence, failures judged against the base and concern
status; per consecutive pair the patches that changed (the series diff) next to the checks whose outcome
changed — the verdict diff.

Pure over results.json job dicts and :class:`~harness.series.model.Revision` objects; the series diff
is :func:`harness.series.revdiff.diff_revisions` unless a test passes its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.judge import attribution
from harness.judge.verdict import path_by_fs
from harness.series.revdiff import diff_revisions

DiffFn = Callable[[Any, Any], list[Any]]  # (Revision a, Revision b) -> [PatchChange] (with to_dict())


@dataclass
class RevisionSummary:
    """One revision as the run saw it."""

    revision: str
    variant: str
    ran: bool
    paths: dict[str, dict[str, str]]
    failures: list[dict[str, Any]]
    counts: dict[str, int]
    concerns: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PairDiff:
    """What changed from one revision to the next: patches, and the checks whose outcome changed."""

    old: str
    new: str
    patches: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    paths: list[dict[str, Any]]


@dataclass
class Comparison:
    """The whole side-by-side comparison (revisions.json)."""

    base: str
    revisions: list[RevisionSummary]
    pairs: list[PairDiff]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def _summary(jobs: list[Mapping[str, Any]], version: int, variant: str, base: str,
             concerns: Iterable[Mapping[str, Any]], missing: Mapping[str, str] | None) -> RevisionSummary:
    label = f"v{version}"
    mine = [j for j in jobs if str(j.get("variant")) == variant]
    atts = attribution.attribute(jobs, variant, label, base, missing)
    counts: dict[str, int] = {}
    for att in atts:
        counts[att.verdict] = counts.get(att.verdict, 0) + 1
    checks = attribution.checks_of(jobs, variant)
    status = []
    for c in concerns:
        if int(c.get("version", -1)) != version:
            continue
        wanted = [str(w) for w in c.get("workloads", [])]
        # What the run showed for the concern: every job of the workloads its catalogue entry names.
        seen = {name: o.status for name, o in checks.items()
                if ":" not in name and name.split("@")[0] in wanted}
        status.append({"concern": str(c.get("concern_id", "")), "title": str(c.get("title", "")),
                       "status": str(c.get("status", "")), "evidence": str(c.get("evidence", "")),
                       "run": seen})
    return RevisionSummary(label, variant, bool(mine), path_by_fs(mine),
                           [a.to_dict() for a in attribution.failures(atts)], counts, status)


def _check_changes(jobs: list[Mapping[str, Any]], old: str, new: str) -> list[dict[str, Any]]:
    before, after = attribution.checks_of(jobs, old), attribution.checks_of(jobs, new)
    out = []
    for check in sorted(set(before) | set(after)):
        a, b = before.get(check), after.get(check)
        if a is not None and b is not None and a.status == b.status:
            continue
        out.append({"check": check, "before": a.status if a else "not run",
                    "after": b.status if b else "not run", "before_reason": a.reason if a else "",
                    "after_reason": b.reason if b else ""})
    return out


def _path_changes(old: RevisionSummary, new: RevisionSummary) -> list[dict[str, Any]]:
    out = []
    for fs in sorted(set(old.paths) | set(new.paths)):
        a, b = old.paths.get(fs, {}), new.paths.get(fs, {})
        if a.get("path") != b.get("path"):
            out.append({"fs": fs, "before": a.get("path", "not run"), "after": b.get("path", "not run"),
                        "before_evidence": a.get("evidence", ""), "after_evidence": b.get("evidence", "")})
    return out


def compare(revisions: Sequence[Any], jobs: Iterable[Mapping[str, Any]], variants: Mapping[int, str],
            base: str = "baseline", concerns: Iterable[Mapping[str, Any]] = (),
            diff: DiffFn | None = None, missing_features: Mapping[str, str] | None = None) -> Comparison:
    """Compare ``revisions`` (Revision objects, in order) as run under ``variants`` ({version: name}).

    ``missing_features``: ``{check: reason}`` for checks a feature probe found this kernel cannot run.
    """
    if diff is None:
        diff = diff_revisions
    jobs = list(jobs)
    concerns = list(concerns)
    summaries = [_summary(jobs, r.version, variants[r.version], base, concerns, missing_features)
                 for r in revisions]
    pairs = []
    for i in range(1, len(revisions)):
        ra, rb, sa, sb = revisions[i - 1], revisions[i], summaries[i - 1], summaries[i]
        changes: list[dict[str, Any]] = [c.to_dict() for c in diff(ra, rb)]
        patches = [{k: v for k, v in c.items() if k != "interdiff"} | {"interdiff_lines": _lines(c)}
                   for c in changes if c.get("status") != "unchanged"]
        pairs.append(PairDiff(sa.revision, sb.revision, patches, _check_changes(jobs, sa.variant, sb.variant),
                              _path_changes(sa, sb)))
    return Comparison(base, summaries, pairs)


def _lines(change: Mapping[str, Any]) -> int:
    return sum(1 for ln in str(change.get("interdiff", "")).splitlines()
               if ln[:1] in "+-" and not ln.startswith(("+++", "---")))


def markdown(comp: Comparison) -> str:
    """revisions.md: per revision, then per pair the changed patches beside the changed checks."""
    out = [f"# Revisions side by side (base: `{comp.base}`)", ""]
    for rev in comp.revisions:
        out.append(f"## {rev.revision} (`{rev.variant}`)" + ("" if rev.ran else ": not run"))
        for fs, p in rev.paths.items():
            out.append(f"- path on {fs}: **{p['path']}** ({p['evidence']})")
        counts = ", ".join(f"{n} {k}" for k, n in sorted(rev.counts.items()))
        out.append(f"- checks: {counts or 'none'}")
        for f in rev.failures:
            out.append(f"  - `{f['check']}`: {f['text']}")
        for c in rev.concerns:
            run = ", ".join(f"{k} {v}" for k, v in c["run"].items()) or "no check of it ran"
            out.append(f"- concern {c['concern']} ({c['title']}): static {c['status']}; run: {run}")
        out.append("")
    for pair in comp.pairs:
        out.append(f"## {pair.old} → {pair.new}")
        if not pair.patches:
            out.append("- patches: none changed")
        for p in pair.patches:
            where = f"{p.get('old') or '-'}→{p.get('new') or '-'}"
            out.append(f"- patch {where} {p['status']}: {p['subject']} ({p['interdiff_lines']} lines differ)")
        if not pair.checks and not pair.paths:
            out.append("- outcomes: no check changed")
        for c in pair.checks:
            out.append(f"- `{c['check']}`: {c['before']} → {c['after']}"
                       + (f" ({c['after_reason'] or c['before_reason']})" if c['after_reason'] or
                          c['before_reason'] else ""))
        for p in pair.paths:
            out.append(f"- path on {p['fs']}: {p['before']} → {p['after']}")
        out.append("")
    return "\n".join(out)
