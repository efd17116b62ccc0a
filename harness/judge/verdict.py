"""Rules turning job results into verdicts: per job, per variant, per run, and the mutant kill table.

Nothing here knows a series: each workload declares what it must show (``must_show`` in the catalogue,
per variant kind), and the series profile says which check proves what a variant kind is for
(``[verdict]``: the series variant's path, the baseline's punt). A variant passes when its jobs' declared
checks hold and, on the filesystems where a job declaring the proving check ran, that job passed. A run
without any such job is "not shown: no job that proves it was run", not a failure. Every mutant (bar
documented equivalents) must be flagged by at least one check that does not also fail on the series
variant. Works on JobResult dicts (results.json ``jobs``) so merged and re-loaded runs get the same
verdict as live ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.core import profile
from harness.core.errors import ExitCode, UserError
from harness.workloads import evidence
from harness.workloads.catalogue import load_catalogue

# Job statuses that count as "a check caught something" on a mutant; `error` is infrastructure.
KILL_STATUSES = frozenset({"fail", "crash", "timeout"})
OK_STATUSES = frozenset({"pass", "skip"})
INFRA_STATUSES = frozenset({"error"})


@dataclass
class VariantInfo:
    """What the verdict needs to know about a variant (from the profile's variants.toml)."""

    name: str
    kind: str  # series | baseline | mutant | coverage
    concern: str = ""
    flagged_by: list[str] = field(default_factory=list)
    equivalent: str = ""


@dataclass
class VariantVerdict:
    """One variant's outcome; ``ok`` is what the run's exit code is built from."""

    kind: str
    # pass | fail | not-shown | punt-shown | punt-missing | flagged | missed | equivalent | not-run
    verdict: str
    ok: bool
    reason: str
    jobs: dict[str, int]
    paths: dict[str, dict[str, str]]


@dataclass
class RunVerdict:
    """The whole run: variants, mutant kill table and the exit code."""

    variants: dict[str, VariantVerdict]
    mutants: dict[str, dict[str, Any]]
    ok: bool
    reasons: list[str]

    @property
    def exit_code(self) -> int:
        """0 when everything held, 1 (test failure) otherwise."""
        return int(ExitCode.PASS if self.ok else ExitCode.TEST_FAILURE)

    def to_dict(self) -> dict[str, Any]:
        """results.json ``variants``/``mutants``/``verdict`` blocks."""
        return {"variants": {n: asdict(v) for n, v in self.variants.items()},
                "mutants": self.mutants,
                "verdict": {"ok": self.ok, "exit_code": self.exit_code, "reasons": self.reasons}}


def check_name(job: Mapping[str, Any]) -> str:
    """A job's check identity across variants: ``workload@fs``."""
    return f"{job['workload']}@{job['fs']}"


Declared = Mapping[str, Mapping[str, list[str]]]  # workload -> {variant kind: must_show checks}


def catalogue_declarations() -> dict[str, dict[str, list[str]]]:
    """Each catalogued workload's ``must_show`` per variant kind (``""``: the kinds it names no
    replacement for); empty when the catalogue cannot be read (the jobs' recorded checks still count)."""
    try:
        specs = load_catalogue()
    except UserError:
        return {}
    return {name: {"": list(s.must_show), **{k: list(v) for k, v in s.must_show_by_kind.items()}}
            for name, s in specs.items()}


def declared_checks(job: Mapping[str, Any], kind: str, declared: Declared) -> list[str]:
    """The checks ``job`` had to show on a variant of ``kind``: what its runner evaluated, else what its
    workload declares in the catalogue (a job that died before evaluating still declared them)."""
    recorded = (job.get("evidence") or {}).get("checks")
    if isinstance(recorded, list) and recorded:
        return [str(c.get("name")) for c in recorded if isinstance(c, Mapping)]
    by_kind = declared.get(str(job["workload"]).split("@", 1)[0], {})
    return list(by_kind.get(kind, by_kind.get("", [])))


def _check_held(job: Mapping[str, Any], check: str) -> bool:
    recorded = (job.get("evidence") or {}).get("checks")
    if isinstance(recorded, list):
        for c in recorded:
            if isinstance(c, Mapping) and c.get("name") == check:
                return bool(c.get("ok")) and job["status"] in OK_STATUSES
    return bool(job["status"] == "pass")


def _path_check(kind: str) -> str:
    # The check that shows the path on this kind; kinds the profile names no proof for (mutants,
    # coverage) are read like the series variant: they run its code, or a variation of it.
    proves = profile.active().proves
    return proves.get(kind) or proves.get("series", "")


def path_by_fs(jobs: Iterable[Mapping[str, Any]], kind: str = "series",
               declared: Declared | None = None) -> dict[str, dict[str, str]]:
    """Per filesystem: the path taken by the job that declares a path check, its counters and its name."""
    declared = catalogue_declarations() if declared is None else declared
    wanted = _path_check(kind)
    out: dict[str, dict[str, str]] = {}
    for job in jobs:
        if wanted not in declared_checks(job, kind, declared):
            continue
        path, text = evidence.job_path(job)
        if job["status"] not in OK_STATUSES and path == "unknown":
            # No counters because the job itself failed: say how, that is the useful part.
            text = f"{job['workload']} {job['status']}: {job.get('reason') or 'no reason given'}"
        prev = out.get(str(job["fs"]))
        if prev is None or prev["path"] == "unknown":
            out[str(job["fs"])] = {"path": path, "evidence": text, "workload": str(job["workload"])}
    return out


def _proof(kind: str, jobs: list[Mapping[str, Any]],
           declared: Declared) -> tuple[str, list[str], dict[str, str]]:
    """The kind's proving check, the filesystems where it held, and per filesystem where a job declaring
    it ran and it did not hold, what that job showed (one such job is enough: a job that shows it anyway,
    like a forced punt, does not cover for the one that should have)."""
    check = profile.active().proves.get(kind, "")
    held: set[str] = set()
    failed: dict[str, str] = {}
    for job in jobs:
        if not check or job["status"] == "skip" or check not in declared_checks(job, kind, declared):
            continue  # a skipped job showed nothing either way
        fs = str(job["fs"])
        if _check_held(job, check):
            held.add(fs)
            continue
        path, text = evidence.job_path(job)
        if job["status"] not in OK_STATUSES and path == "unknown":
            text = f"{job['workload']} {job['status']}: {job.get('reason') or 'no reason given'}"
        failed.setdefault(fs, text)
    return check, sorted(held - set(failed)), failed


NOT_SHOWN = "not shown: no job that proves it was run"


def _counts(jobs: list[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"total": len(jobs)}
    for job in jobs:
        counts[str(job["status"])] = counts.get(str(job["status"]), 0) + 1
    return counts


def _series_verdict(info: VariantInfo, jobs: list[Mapping[str, Any]], declared: Declared) -> VariantVerdict:
    paths = path_by_fs(jobs, info.kind, declared)
    if not jobs:
        return VariantVerdict(info.kind, "not-run", False, "no jobs ran", _counts(jobs), paths)
    bad = [f"{check_name(j)} {j['status']}: {j.get('reason', '')}".strip() for j in jobs
           if j["status"] not in OK_STATUSES]
    check, held, failed = _proof(info.kind, jobs, declared)
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        return VariantVerdict(info.kind, "fail", False, "; ".join(bad[:3]) + more, _counts(jobs), paths)
    if check and not held and not failed:
        return VariantVerdict(info.kind, "not-shown", True, f"{check} {NOT_SHOWN} (all {len(jobs)} jobs "
                              "passed)", _counts(jobs), paths)
    unproven = sorted({str(j["fs"]) for j in jobs} - set(held))
    note = f"; {check} {NOT_SHOWN} on {', '.join(unproven)}" if check and unproven else ""
    return VariantVerdict(info.kind, "pass", True, f"all {len(jobs)} jobs passed{note}", _counts(jobs),
                          paths)


def _baseline_verdict(info: VariantInfo, jobs: list[Mapping[str, Any]], declared: Declared) -> VariantVerdict:
    paths = path_by_fs(jobs, info.kind, declared)
    if not jobs:
        return VariantVerdict(info.kind, "not-run", False, "no jobs ran", _counts(jobs), paths)
    broken = [f"{check_name(j)} {j['status']}" for j in jobs if j["status"] in ("error", "crash")]
    check, held, failed = _proof(info.kind, jobs, declared)
    if not check or (not held and not failed and not broken):
        what = f"{check} " if check else "the baseline's proof (profile [verdict] baseline) "
        return VariantVerdict(info.kind, "not-shown", True, what + NOT_SHOWN, _counts(jobs), paths)
    if failed or broken:
        why = [f"{check} not shown on {fs} ({text})" for fs, text in sorted(failed.items())] + broken[:3]
        return VariantVerdict(info.kind, "punt-missing", False, "; ".join(why), _counts(jobs), paths)
    return VariantVerdict(info.kind, "punt-shown", True, f"{check} shown on {', '.join(held)}",
                          _counts(jobs), paths)


def _mutant_entry(info: VariantInfo, jobs: list[Mapping[str, Any]],
                  series_failing: set[str]) -> dict[str, Any]:
    # A check that fails on the unmodified kernel too says nothing about the mutant.
    by = sorted({check_name(j) for j in jobs if j["status"] in KILL_STATUSES
                 and check_name(j) not in series_failing})
    infra = sorted({check_name(j) for j in jobs if j["status"] in INFRA_STATUSES})
    return {"concern": info.concern, "flagged": bool(by), "by": by, "expected": list(info.flagged_by),
            "equivalent": info.equivalent, "ran": bool(jobs), "infra_errors": infra}


def _mutant_verdict(info: VariantInfo, entry: dict[str, Any], jobs: list[Mapping[str, Any]],
                    declared: Declared) -> VariantVerdict:
    counts = _counts(jobs)
    if info.equivalent:
        return VariantVerdict(info.kind, "equivalent", True, f"equivalent: {info.equivalent}", counts, {})
    if not jobs:
        return VariantVerdict(info.kind, "not-run", False, "no jobs ran", counts, {})
    if entry["flagged"]:
        return VariantVerdict(info.kind, "flagged", True, "flagged by " + ", ".join(entry["by"]), counts,
                              path_by_fs(jobs, info.kind, declared))
    return VariantVerdict(info.kind, "missed", False, "no check flagged it", counts,
                          path_by_fs(jobs, info.kind, declared))


def _other_verdict(info: VariantInfo, jobs: list[Mapping[str, Any]], declared: Declared) -> VariantVerdict:
    # Coverage (instrumented) variants are informational: only crashes or infra errors count.
    bad = [f"{check_name(j)} {j['status']}" for j in jobs if j["status"] in ("crash", "error")]
    ok = bool(jobs) and not bad
    return VariantVerdict(info.kind, "pass" if ok else ("not-run" if not jobs else "fail"), ok,
                          "; ".join(bad) or (f"{len(jobs)} jobs" if jobs else "no jobs ran"),
                          _counts(jobs), path_by_fs(jobs, info.kind, declared))


def decide(jobs: Iterable[Mapping[str, Any]], variants: Iterable[VariantInfo],
           declared: Declared | None = None) -> RunVerdict:
    """The run verdict for ``jobs`` (JobResult dicts) over the declared ``variants``; ``declared`` maps
    workloads to their must_show checks per kind (default: the workload catalogue's)."""
    declared = catalogue_declarations() if declared is None else declared
    by_variant: dict[str, list[Mapping[str, Any]]] = {}
    for job in jobs:
        by_variant.setdefault(str(job["variant"]), []).append(job)
    infos = {v.name: v for v in variants}
    for name in by_variant:  # jobs of undeclared variants still get a verdict
        infos.setdefault(name, VariantInfo(name, _guess_kind(name)))
    series_jobs = [j for n, i in infos.items() if i.kind == "series" for j in by_variant.get(n, [])]
    series_failing = {check_name(j) for j in series_jobs if j["status"] not in OK_STATUSES}
    verdicts: dict[str, VariantVerdict] = {}
    mutants: dict[str, dict[str, Any]] = {}
    for name, info in infos.items():
        vjobs = by_variant.get(name, [])
        if info.kind == "series":
            verdicts[name] = _series_verdict(info, vjobs, declared)
        elif info.kind == "baseline":
            verdicts[name] = _baseline_verdict(info, vjobs, declared)
        elif info.kind == "mutant":
            mutants[name] = _mutant_entry(info, vjobs, series_failing)
            verdicts[name] = _mutant_verdict(info, mutants[name], vjobs, declared)
        else:
            verdicts[name] = _other_verdict(info, vjobs, declared)
    reasons = [f"{n}: {v.verdict}: {v.reason}" for n, v in verdicts.items() if not v.ok]
    kinds = {i.kind for i in infos.values()}
    # The kinds the profile has a proof for must be in the run (a profile without a baseline needs none).
    needed = ["series", *(k for k in profile.active().proves if k != "series")]
    reasons += [f"no {k} variant in this run" for k in needed if k not in kinds]
    return RunVerdict(verdicts, mutants, not reasons, reasons)


def _guess_kind(name: str) -> str:
    for kind in ("series", "baseline", "mutant", "coverage"):
        if name == kind or name.startswith(kind + "-"):
            return kind
    return "other"


def job_verdict(job: Mapping[str, Any], kind: str) -> tuple[str, str]:
    """How a single job reads in the variant's light: ("pass"|"failure"|"error", message).

    On the series (and coverage) variant a failed job is a failure. On the baseline a failed check is
    expected (it lacks the async path) and only crashes/infra errors are failures; on a mutant a failed
    check is a kill, so only infrastructure errors count.
    """
    status = str(job["status"])
    reason = str(job.get("reason", "")) or status
    if status in OK_STATUSES:
        return "pass", ""
    if status in INFRA_STATUSES:
        return "error", reason
    if kind == "mutant":
        return "pass", f"flagged: {status}: {reason}"
    if kind == "baseline" and status == "fail":
        return "pass", f"expected on baseline: {reason}"
    return "failure", f"{status}: {reason}"
