"""Rules turning job results into verdicts: per job, per variant, per run, and the mutant kill table.

The run passes when the series variant passes every job, the baseline shows the io-wq punt path on
every filesystem it ran on, and every mutant (bar documented equivalents) is flagged by at least one
check that does not also fail on the series variant. Works on JobResult dicts (results.json
``jobs``) so merged and re-loaded runs get the same verdict as live ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import ExitCode
from harness.report.metrics import path_of

# Job statuses that count as "a check caught something" on a mutant; `error` is infrastructure.
KILL_STATUSES = frozenset({"fail", "crash", "timeout"})
OK_STATUSES = frozenset({"pass", "skip"})
INFRA_STATUSES = frozenset({"error"})
# Workload-name words that mark a job that deliberately takes another path (forced io-wq, sync IO).
_NOT_PLAIN = ("force", "iowq", "io-wq", "punt", "psync", "preadv", "sync")


@dataclass
class VariantInfo:
    """What the verdict needs to know about a variant (from patches/port-6.12/variants.toml)."""

    name: str
    kind: str  # series | baseline | mutant | coverage
    concern: str = ""
    flagged_by: list[str] = field(default_factory=list)
    equivalent: str = ""


@dataclass
class VariantVerdict:
    """One variant's outcome; ``ok`` is what the run's exit code is built from."""

    kind: str
    verdict: str  # pass | fail | punt-shown | punt-missing | flagged | missed | equivalent | not-run
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


def is_plain_uring(workload: str) -> bool:
    """True for the plain buffered io_uring read job whose path evidence decides async vs punt."""
    w = workload.lower()
    return "uring" in w and not any(word in w for word in _NOT_PLAIN)


def path_by_fs(jobs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Per filesystem: the path the plain io_uring job took, with its counters and the job name."""
    out: dict[str, dict[str, str]] = {}
    for job in jobs:
        if not is_plain_uring(str(job["workload"])):
            continue
        path, text = path_of(job.get("evidence") or {})
        if job["status"] not in OK_STATUSES and path == "unknown":
            # No counters because the job itself failed: say how, that is the useful part.
            text = f"{job['workload']} {job['status']}: {job.get('reason') or 'no reason given'}"
        prev = out.get(str(job["fs"]))
        if prev is None or prev["path"] == "unknown":
            out[str(job["fs"])] = {"path": path, "evidence": text, "workload": str(job["workload"])}
    return out


def _counts(jobs: list[Mapping[str, Any]]) -> dict[str, int]:
    counts = {"total": len(jobs)}
    for job in jobs:
        counts[str(job["status"])] = counts.get(str(job["status"]), 0) + 1
    return counts


def _series_verdict(info: VariantInfo, jobs: list[Mapping[str, Any]]) -> VariantVerdict:
    paths = path_by_fs(jobs)
    bad = [f"{check_name(j)} {j['status']}: {j.get('reason', '')}".strip() for j in jobs
           if j["status"] not in OK_STATUSES]
    no_async = [fs for fs, p in paths.items() if p["path"] != "async"]
    if not jobs:
        return VariantVerdict(info.kind, "not-run", False, "no jobs ran", _counts(jobs), paths)
    if bad or no_async:
        reason = "; ".join(bad[:3] + [f"async path not shown on {fs}" for fs in no_async])
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        return VariantVerdict(info.kind, "fail", False, reason + more, _counts(jobs), paths)
    return VariantVerdict(info.kind, "pass", True, f"all {len(jobs)} jobs passed", _counts(jobs), paths)


def _baseline_verdict(info: VariantInfo, jobs: list[Mapping[str, Any]]) -> VariantVerdict:
    paths = path_by_fs(jobs)
    if not jobs:
        return VariantVerdict(info.kind, "not-run", False, "no jobs ran", _counts(jobs), paths)
    broken = [f"{check_name(j)} {j['status']}" for j in jobs if j["status"] in ("error", "crash")]
    fs_seen = sorted({str(j["fs"]) for j in jobs})
    missing = [fs for fs in fs_seen if paths.get(fs, {}).get("path") != "io-wq"]
    if missing or broken:
        why = [f"punt path not shown on {fs} ({paths.get(fs, {}).get('evidence', 'no plain io_uring job')})"
               for fs in missing] + broken[:3]
        return VariantVerdict(info.kind, "punt-missing", False, "; ".join(why), _counts(jobs), paths)
    return VariantVerdict(info.kind, "punt-shown", True, f"io-wq punt path on {', '.join(fs_seen)}",
                          _counts(jobs), paths)


def _mutant_entry(info: VariantInfo, jobs: list[Mapping[str, Any]],
                  series_failing: set[str]) -> dict[str, Any]:
    # A check that fails on the unmodified kernel too says nothing about the mutant.
    by = sorted({check_name(j) for j in jobs if j["status"] in KILL_STATUSES
                 and check_name(j) not in series_failing})
    infra = sorted({check_name(j) for j in jobs if j["status"] in INFRA_STATUSES})
    return {"concern": info.concern, "flagged": bool(by), "by": by, "expected": list(info.flagged_by),
            "equivalent": info.equivalent, "ran": bool(jobs), "infra_errors": infra}


def _mutant_verdict(info: VariantInfo, entry: dict[str, Any],
                    jobs: list[Mapping[str, Any]]) -> VariantVerdict:
    counts = _counts(jobs)
    if info.equivalent:
        return VariantVerdict(info.kind, "equivalent", True, f"equivalent: {info.equivalent}", counts, {})
    if not jobs:
        return VariantVerdict(info.kind, "not-run", False, "no jobs ran", counts, {})
    if entry["flagged"]:
        return VariantVerdict(info.kind, "flagged", True, "flagged by " + ", ".join(entry["by"]), counts,
                              path_by_fs(jobs))
    return VariantVerdict(info.kind, "missed", False, "no check flagged it", counts, path_by_fs(jobs))


def _other_verdict(info: VariantInfo, jobs: list[Mapping[str, Any]]) -> VariantVerdict:
    # Coverage (instrumented) variants are informational: only crashes or infra errors count.
    bad = [f"{check_name(j)} {j['status']}" for j in jobs if j["status"] in ("crash", "error")]
    ok = bool(jobs) and not bad
    return VariantVerdict(info.kind, "pass" if ok else ("not-run" if not jobs else "fail"), ok,
                          "; ".join(bad) or (f"{len(jobs)} jobs" if jobs else "no jobs ran"),
                          _counts(jobs), path_by_fs(jobs))


def decide(jobs: Iterable[Mapping[str, Any]], variants: Iterable[VariantInfo]) -> RunVerdict:
    """The run verdict for ``jobs`` (JobResult dicts) over the declared ``variants``."""
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
            verdicts[name] = _series_verdict(info, vjobs)
        elif info.kind == "baseline":
            verdicts[name] = _baseline_verdict(info, vjobs)
        elif info.kind == "mutant":
            mutants[name] = _mutant_entry(info, vjobs, series_failing)
            verdicts[name] = _mutant_verdict(info, mutants[name], vjobs)
        else:
            verdicts[name] = _other_verdict(info, vjobs)
    reasons = [f"{n}: {v.verdict}: {v.reason}" for n, v in verdicts.items() if not v.ok]
    kinds = {i.kind for i in infos.values()}
    reasons += [f"no {k} variant in this run" for k in ("series", "baseline") if k not in kinds]
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
