"""A mutation campaign: each mutant built, booted and run through the checks until the first kill.

The stages are fields of :class:`Lab` (real ones from :func:`.real.real_lab`, fakes in
tests). The campaign's state (every mutant's outcome, each check's kills) is written to
``state.json`` in its results directory after every mutant, so an interrupted campaign resumes where it
stopped; ``report.md`` and ``results.json`` are written from that state in ``finally``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json
from harness.core.errors import InfraError, KwbError, UserError
from harness.kernel.build import KernelBuild
from harness.orchestrate.mutate.generate import Mutant
from harness.orchestrate.mutate.kernel import BuildOutcome
from harness.workloads.model import JobResult, JobStatus

STATE_SCHEMA = 1
OUTCOMES = ("killed", "timeout", "survived", "stillborn", "equivalent", "error", "pending")
# killed and timeout count as detected; stillborn/equivalent are not mutants of the compiled kernel;
# error (the harness failed, not the mutant) and pending are neither, and are run again on resume.
SCORED = ("killed", "timeout", "survived")
Progress = Callable[[str], None]


@dataclass
class Outcome:
    """What happened to one mutant."""

    status: str = "pending"
    check: str = ""          # killed/timeout: the check that flagged it
    fs: str = ""
    evidence: str = ""       # the check's reason, kernel findings, or the compiler error
    job_dir: str = ""
    cost: dict[str, float] = field(default_factory=dict)  # object, kernel, boot, checks, total (s)
    checks_run: list[str] = field(default_factory=list)   # "check/fs: status" in the order run

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


# Run names of generated mutants (their results directories): gen-<mutant id>.
GENERATED_PREFIX = "gen-"


@dataclass
class Lab:
    """The campaign's stages."""

    # (mutant) -> BuildOutcome (stillborn / equivalent / built with a kernel)
    build: Callable[[Mutant], BuildOutcome]
    # (run name, kernel, checks in order, filesystems, out dir, progress) -> the jobs (stop at first flag)
    run_checks: Callable[[str, KernelBuild, list[str], list[str], Path, Progress], list[JobResult]]
    # the last run's guest boot time as the guest measured it (None: use the progress-line timer)
    boot_seconds: Callable[[], float | None] | None = None


@dataclass
class Settings:
    """What the campaign was asked to do (identical settings resume one campaign)."""

    files: list[str]
    max: int | None
    seed: int
    checks: list[str]
    filesystems: list[str]
    tree: str = "default"
    series_commit: str = ""
    shard: str = ""

    def key(self) -> dict[str, Any]:
        """The part that decides which mutants are generated (checks may change between resumes)."""
        return {"files": self.files, "max": self.max, "seed": self.seed, "tree": self.tree,
                "series_commit": self.series_commit, "shard": self.shard}


@dataclass
class State:
    """The campaign's state file."""

    settings: Settings
    mutants: list[Mutant]
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    kills: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    wall_seconds: float = 0.0  # summed over every (resumed) session
    control: dict[str, Any] | None = None  # the checks on the unmodified kernel (--control), an Outcome

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (state.json)."""
        return {"schema": STATE_SCHEMA, "settings": asdict(self.settings),
                "mutants": [m.to_dict() for m in self.mutants],
                "outcomes": {k: v.to_dict() for k, v in self.outcomes.items()}, "kills": self.kills,
                "started": self.started, "wall_seconds": round(self.wall_seconds, 2), "control": self.control}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        """Inverse of :meth:`to_dict`."""
        if data.get("schema") != STATE_SCHEMA:
            raise UserError(f"mutation state file has schema {data.get('schema')!r}, expected {STATE_SCHEMA}")
        return cls(Settings(**data["settings"]), [Mutant(**m) for m in data["mutants"]],
                   {k: Outcome(**v) for k, v in data.get("outcomes", {}).items()},
                   {str(k): int(v) for k, v in data.get("kills", {}).items()},
                   float(data.get("started", time.time())), float(data.get("wall_seconds", 0.0)),
                   data.get("control"))


def check_order(checks: Sequence[str], kills: dict[str, int]) -> list[str]:
    """The checks, those that killed most so far first (ties keep the configured order)."""
    index = {c: i for i, c in enumerate(checks)}
    return sorted(checks, key=lambda c: (-kills.get(c, 0), index[c]))


_FLAGGING = (JobStatus.FAIL, JobStatus.CRASH, JobStatus.TIMEOUT)


def judge(jobs: Sequence[JobResult]) -> Outcome:
    """A mutant's outcome from its jobs: the first flagging job kills it (a timeout is its own outcome)."""
    out = Outcome(checks_run=[f"{j.workload}/{j.fs}: {j.status.value}" for j in jobs
                              if j.status is not JobStatus.SKIP])
    flag = next((j for j in jobs if j.status in _FLAGGING), None)
    if flag is not None:
        out.status = "timeout" if flag.status is JobStatus.TIMEOUT else "killed"
        findings = "; ".join(flag.findings[:3])
        out.check, out.fs, out.job_dir = flag.workload, flag.fs, flag.job_dir
        extra = f" [kernel: {findings}]" if findings and findings not in flag.reason else ""
        out.evidence = flag.reason + extra
        return out
    errors = [j for j in jobs if j.status is JobStatus.ERROR]
    if errors or not jobs:
        out.status, out.evidence = "error", errors[0].reason if errors else "no job ran"
        return out
    out.status = "survived"
    return out


class _BootTimer:
    """A progress callback that passes lines on and times the first guest boot (boot line → next line)."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.started, self.seconds = progress, 0.0, 0.0

    def __call__(self, line: str) -> None:
        if self.started and not self.seconds:
            self.seconds = round(time.monotonic() - self.started, 2)
        if not self.started and "booting guest" in line:
            self.started = time.monotonic()
        self.progress(line)


def run_mutant(lab: Lab, mutant: Mutant, checks: list[str], filesystems: list[str], out_dir: Path,
               progress: Progress) -> Outcome:
    """Build, boot and check one mutant; every stage timed into ``Outcome.cost``."""
    start = time.monotonic()
    try:
        built = lab.build(mutant)
    except KwbError as exc:
        # The harness failed (a stuck build, a broken tree), not the mutant: run it again on resume.
        return Outcome(status="error", evidence=str(exc), cost={"total": round(time.monotonic() - start, 2)})
    cost = dict(built.seconds)
    if built.status != "built":
        out = Outcome(status=built.status, evidence=built.reason)
    else:
        assert built.kernel is not None, "a built mutant carries its kernel"
        timer = _BootTimer(progress)
        run_start, name = time.monotonic(), f"{GENERATED_PREFIX}{mutant.id}"
        try:
            jobs = lab.run_checks(name, built.kernel, checks, filesystems, out_dir, timer)
        except KwbError as exc:
            jobs = [JobResult("run", "-", name, JobStatus.ERROR, str(exc))]
        out = judge(jobs)
        cost["checks"] = round(sum(j.duration for j in jobs), 2)
        measured = lab.boot_seconds() if lab.boot_seconds is not None else None
        cost["boot"] = round(measured, 2) if measured is not None else timer.seconds
        rest = time.monotonic() - run_start - cost["checks"] - cost["boot"]
        cost["guest_other"] = round(max(0.0, rest), 2)
    cost["total"] = round(time.monotonic() - start, 2)
    out.cost = cost
    return out


def run_control(state: State, lab: Lab, kernel: KernelBuild, out_dir: Path, progress: Progress) -> Outcome:
    """Run the campaign's checks on the unmodified kernel: a check that fails there kills every mutant
    for nothing, so the campaign stops (InfraError) instead of reporting a meaningless score."""
    timer = _BootTimer(progress)
    start = time.monotonic()
    try:
        jobs = lab.run_checks("control-series", kernel, list(state.settings.checks),
                              state.settings.filesystems, out_dir, timer)
    finally:
        state.wall_seconds += time.monotonic() - start  # the control is part of the campaign's cost
    out = judge(jobs)
    out.cost = {"boot": timer.seconds, "checks": round(sum(j.duration for j in jobs), 2)}
    state.control = out.to_dict()
    if out.status != "survived":
        raise InfraError(f"control: the unmodified kernel does not pass the checks ({out.status}"
                         + (f" by {out.check} on {out.fs}" if out.check else "") + f": {out.evidence})")
    return out


def run_campaign(state: State, lab: Lab, out_dir: Path, progress: Progress, *,
                 budget_minutes: float | None = None, save: Callable[[State], None] | None = None,
                 only: set[str] | None = None) -> State:
    """Run every mutant of ``state`` without a final outcome; stop starting new ones past the budget.

    ``save`` is called after every mutant (the state file); an interrupt leaves the running mutant
    pending, to be run again on resume. ``only``: run just these mutant ids.
    """
    session = time.monotonic()
    wall0 = state.wall_seconds
    todo = [m for m in state.mutants if state.outcomes.get(m.id, Outcome()).status in ("pending", "error")
            and (only is None or m.id in only)]
    progress(f"{len(todo)} of {len(state.mutants)} mutants to run")
    try:
        for i, mutant in enumerate(todo, 1):
            if budget_minutes is not None and time.monotonic() - session > budget_minutes * 60:
                progress(f"budget of {budget_minutes:g} min spent: {len(todo) - i + 1} mutants left pending")
                break
            order = check_order(state.settings.checks, state.kills)
            progress(f"[{i}/{len(todo)}] {mutant.id}: {mutant.original.strip()} → {mutant.mutated.strip()}")
            out = run_mutant(lab, mutant, order, state.settings.filesystems, out_dir, progress)
            state.outcomes[mutant.id] = out
            if out.status in ("killed", "timeout"):
                state.kills[out.check] = state.kills.get(out.check, 0) + 1
            progress(f"{mutant.id}: {out.status}" + (f" by {out.check} on {out.fs}" if out.check else "")
                     + f" ({out.cost.get('total', 0):.0f} s)")
            state.wall_seconds = wall0 + time.monotonic() - session
            if save is not None:
                save(state)
    finally:
        state.wall_seconds = wall0 + time.monotonic() - session
        if save is not None:
            save(state)
    return state


def save_state(path: Path) -> Callable[[State], None]:
    """A ``save`` callback writing the state atomically to ``path``."""
    def save(state: State) -> None:
        write_json(path, state.to_dict())
    return save
