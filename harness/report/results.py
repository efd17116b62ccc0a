"""One run's record and its files: out/<run-id>/{results.json,junit.xml,report.md,report.html}, out/latest.

Every writer is atomic (harness.core.atomic) and called from ``finally`` by the pipeline, so a run that dies
half-way still leaves readable results saying how far it got.
"""

from __future__ import annotations

import datetime as dt
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness import __version__
from harness.core import profile
from harness.judge import metrics
from harness.judge.verdict import VariantInfo, decide
from harness.report.schema import SCHEMA_VERSION

# The default tree's name in results.json (harness/profiles/trees.toml, as harness.kernel.tree reads it).
DEFAULT_TREE = profile.default_tree().name
DEFAULT_TREE_ORIGIN = profile.default_tree().origin


def now_iso() -> str:
    """Current UTC time, ISO 8601, seconds precision."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def new_run_id() -> str:
    """A sortable, collision-safe run id: ``20260521T071500Z-1a2b``."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


@dataclass
class RunRecord:
    """Everything a run learned so far; ``to_dict()`` gives results.json."""

    run_id: str
    command: str
    started: str = field(default_factory=now_iso)
    finished: str | None = None
    status: str = "running"
    error: str = ""
    revision: int | None = None
    source: str | None = None
    kernel: dict[str, Any] = field(default_factory=lambda: {"tree": DEFAULT_TREE, "base": None,
                                                             "variants": {}})
    accel: str = "unknown"
    guest_roots: dict[str, str] = field(default_factory=dict)  # variant -> "isolated" | "host" (as booted)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    concerns: list[dict[str, Any]] = field(default_factory=list)
    variant_infos: list[VariantInfo] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, Any] = field(default_factory=lambda: {"steps": {}, "build": {}, "boot": {},
                                                              "variants": {}, "jobs": {}})
    shards: list[str] = field(default_factory=list)
    coverage: dict[str, Any] | None = None  # the coverage variant's summary (orchestrate.coverage_run)
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant -> kept run (orchestrate.reuse)
    mail: dict[str, Any] | None = None  # where the series' mail came from (sources.mailsource.MailChoice)
    not_checked: list[str] = field(default_factory=list)  # what this run could not check, and why

    def add_jobs(self, jobs: list[dict[str, Any]]) -> None:
        """Record job results and their durations."""
        for job in jobs:
            self.jobs.append(job)
            key = f"{job['variant']}/{job['fs']}/{job['workload']}"
            self.timings["jobs"][key] = float(job.get("duration") or 0.0)

    def to_dict(self) -> dict[str, Any]:
        """results.json content (see docs/results-schema.json); the verdict is recomputed each time."""
        verdict = judge(self.jobs, self.variant_infos, self.status, self.error, self.not_checked)
        run: dict[str, Any] = {"id": self.run_id, "started": self.started, "finished": self.finished,
                               "command": self.command, "kwb_version": __version__,
                               "host": socket.gethostname(), "status": self.status, "steps": self.steps,
                               "revision": self.revision, "source": self.source}
        if self.error:
            run["error"] = self.error
        if self.shards:
            run["shards"] = self.shards
        if self.mail is not None:
            run["mail"] = self.mail
        timings = dict(self.timings)
        timings["total"] = _elapsed(self.started, self.finished)
        data = {"schema": SCHEMA_VERSION, "run": run, "kernel": self.kernel, "accel": self.accel,
                "jobs": self.jobs, "variants": verdict["variants"], "mutants": verdict["mutants"],
                "concerns": self.concerns, "timings": timings, "verdict": verdict["verdict"]}
        ratios = metrics.run_ratios(self.jobs, {v.name: v.kind for v in self.variant_infos})
        if ratios:
            data["ratios"] = ratios
        if self.coverage is not None:
            data["coverage"] = self.coverage
        if self.reused:
            data["reused"] = self.reused
        if self.guest_roots:
            data["guest_root"] = dict(self.guest_roots)
        return data


def judge(jobs: list[dict[str, Any]], infos: list[VariantInfo], status: str, error: str,
          not_checked: list[str] | None = None) -> dict[str, Any]:
    """``variants``/``mutants``/``verdict`` for a run; a run that didn't complete can't pass.
    ``not_checked``: what the run could not check (no mail: no concern status); said, never a failure."""
    verdict = decide(jobs, infos).to_dict()
    if not_checked:  # only when something was left out: a complete run's verdict keeps its old form
        verdict["verdict"]["not_checked"] = list(not_checked)
    if status != "complete":
        why = f"run {status}" + (f": {error}" if error else "")
        verdict["verdict"] = {"ok": False, "exit_code": 2 if status == "failed" else 1,
                              "reasons": [why, *verdict["verdict"]["reasons"]],
                              **({"not_checked": list(not_checked)} if not_checked else {})}
    return verdict


def infos_of(data: dict[str, Any]) -> list[VariantInfo]:
    """The variant declarations a results.json was judged with (kinds, mutant expectations)."""
    infos = []
    for name, v in data.get("variants", {}).items():
        m = data.get("mutants", {}).get(name, {})
        infos.append(VariantInfo(name, str(v.get("kind", "")), str(m.get("concern", "")),
                                 list(m.get("expected") or []), str(m.get("equivalent", ""))))
    return infos


def kernel_base(data: Mapping[str, Any]) -> str:
    """The base the run's kernels were built on, for humans: the ``--base`` ref on a user's tree; on the
    default tree (single base commit, recorded as base ``None``) the series variant's commit, which is
    that base, else the commits each variant was built at."""
    kernel = data.get("kernel") or {}
    if kernel.get("base"):
        return str(kernel["base"])
    built = {n: str(v["commit"]) for n, v in (kernel.get("variants") or {}).items() if v.get("commit")}
    if not built or kernel.get("tree") != DEFAULT_TREE:
        return "–"
    kinds = {n: v.get("kind") for n, v in (data.get("variants") or {}).items()}
    series = [c for n, c in built.items() if kinds.get(n, "series" if n == "series" else "") == "series"]
    if series:
        return f"{series[0][:12]} ({DEFAULT_TREE_ORIGIN})"
    commits = ", ".join(f"{n} {c[:12]}" for n, c in built.items())
    return f"– ({DEFAULT_TREE_ORIGIN}; built at {commits})"


def rejudge(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with its verdict recomputed by the current rules (for `kwb report RUN`)."""
    run = data["run"]
    verdict = judge(data["jobs"], infos_of(data), str(run["status"]), str(run.get("error", "")),
                    list((data.get("verdict") or {}).get("not_checked") or []))
    return {**data, "variants": verdict["variants"], "mutants": verdict["mutants"],
            "verdict": verdict["verdict"]}


def _elapsed(started: str, finished: str | None) -> float:
    try:
        end = dt.datetime.fromisoformat(finished) if finished else dt.datetime.now(dt.UTC)
        return max(0.0, (end - dt.datetime.fromisoformat(started)).total_seconds())
    except ValueError:
        return 0.0
