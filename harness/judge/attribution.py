"""Each failure of a revision judged against the base (the same tree without the series, run with the
same checks): "introduced by vN", "fails on the base too", or "not applicable on this kernel: <why>".

A check is a job (``workload@fs``) or one case inside it (``workload@fs:case``, liburing's tests, the
probes). Works on results.json job dicts. "Not applicable" comes from what the run saw, never from a
list of kernel versions: the check skipped itself with a reason (exit 77, "not supported"), or a
feature probe of this kernel said the feature the check needs is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

OK = frozenset({"pass"})
SKIPPED = frozenset({"skip"})
INFRA = frozenset({"error", "not-run"})

INTRODUCED = "introduced"
ON_BASE = "fails-on-base"
NOT_APPLICABLE = "not-applicable"
PASS = "pass"
UNATTRIBUTED = "unattributed"   # the base has no outcome for this check: nothing to compare with
INFRA_ERROR = "infra-error"     # kwb or the machine failed: says nothing about the series


@dataclass(frozen=True)
class Outcome:
    """One check's outcome on one kernel."""

    status: str
    reason: str = ""


@dataclass(frozen=True)
class Attribution:
    """One check of one revision, judged against the base."""

    check: str
    revision: str
    verdict: str
    status: str
    base_status: str | None
    text: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def checks_of(jobs: Iterable[Mapping[str, Any]], variant: str) -> dict[str, Outcome]:
    """``{check: Outcome}`` of one variant's jobs, cases included (``workload@fs:case``)."""
    out: dict[str, Outcome] = {}
    for job in jobs:
        if str(job.get("variant")) != variant:
            continue
        name = f"{job['workload']}@{job['fs']}"
        out[name] = Outcome(str(job["status"]), str(job.get("reason", "")))
        for sub in job.get("subresults") or []:
            case = sub.get("name")
            if case:
                status = "fail" if sub.get("status") == "known-fail" else str(sub.get("status", ""))
                out[f"{name}:{case}"] = Outcome(status, str(sub.get("reason", "")))
    return out


def classify(check: str, revision: str, outcome: Outcome, base: Outcome | None,
             missing_feature: str | None = None) -> Attribution:
    """The judgement of one check of ``revision`` (e.g. "v5") given the base's outcome of it.

    ``missing_feature``: a feature probe's reason when this kernel lacks what the check needs.
    """
    base_status = base.status if base is not None else None

    def make(verdict: str, text: str) -> Attribution:
        return Attribution(check, revision, verdict, outcome.status, base_status, text)

    if missing_feature:
        return make(NOT_APPLICABLE, f"not applicable on this kernel: {missing_feature}")
    if outcome.status in SKIPPED:
        return make(NOT_APPLICABLE, f"not applicable on this kernel: {outcome.reason or 'the check skipped'}")
    if outcome.status in OK:
        if base is not None and base.status not in OK | SKIPPED | INFRA:
            return make(PASS, f"passes on {revision}; fails on the base ({base.status}: {base.reason})")
        return make(PASS, f"passes on {revision}")
    if outcome.status in INFRA:
        return make(INFRA_ERROR, f"{outcome.status} on {revision}: {outcome.reason} (says nothing about "
                    "the series)")
    failed = f"{outcome.status} on {revision}: {outcome.reason}".rstrip(": ")
    if base is None or base.status in INFRA:
        why = "the base did not run it" if base is None else f"the base's run was an {base.status}"
        return make(UNATTRIBUTED, f"{failed}; cannot attribute: {why}")
    if base.status in OK:
        return make(INTRODUCED, f"introduced by {revision}: {failed}; passes on the base")
    if base.status in SKIPPED:
        return make(INTRODUCED, f"introduced by {revision}: {failed}; the base skipped it "
                    f"({base.reason or 'skip'})")
    return make(ON_BASE, f"fails on the base too: {failed}; base: {base.status}: {base.reason}".rstrip(": "))


def attribute(jobs: Iterable[Mapping[str, Any]], revision_variant: str, revision: str, base_variant: str,
              missing_features: Mapping[str, str] | None = None) -> list[Attribution]:
    """Every check of ``revision_variant`` judged against ``base_variant`` (checks in name order).

    ``missing_features``: ``{check: reason}`` from feature probes (checks this kernel cannot run).
    """
    jobs = list(jobs)
    mine, base = checks_of(jobs, revision_variant), checks_of(jobs, base_variant)
    missing = dict(missing_features or {})
    return [classify(check, revision, mine[check], base.get(check), missing.get(check))
            for check in sorted(mine)]


def failures(attributions: Iterable[Attribution]) -> list[Attribution]:
    """The attributions that are not a pass (what a report lists)."""
    return [a for a in attributions if a.verdict != PASS]
