"""Registry of workload kinds: the kind named in a catalogue file picks the module that runs it.

Each kind's module is imported plainly (a broken one fails at import, where the error names it); the
registry hands out its functions typed, so no caller reaches a module by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.core.errors import UserError
from harness.workloads import fio, liburing, probes
from harness.workloads.model import GuestSession, JobResult, Target, WorkloadHook, WorkloadSpec


class JobRunner(Protocol):
    """A kind's ``run_job``: one job on one target, its workload commands run inside ``hook``."""

    def __call__(self, guest: GuestSession, spec: WorkloadSpec, target: Target, job_dir: Path, /,
                 hook: WorkloadHook | None = None) -> JobResult:
        """Run the job; every outcome is a JobResult."""
        ...


Validator = Callable[[dict[str, Any], str], None]
ResumeMerger = Callable[[JobResult, JobResult], JobResult]


@dataclass(frozen=True)
class Kind:
    """What a workload kind offers: how to run a job, how to check a catalogue entry's ``params`` table
    (raises UserError naming the field), and, for kinds whose jobs can go on after a guest reboot, how to
    merge the two parts of a resumed job."""

    run_job: JobRunner
    validate_params: Validator
    merge_resumed: ResumeMerger | None = None


KINDS: dict[str, Kind] = {
    "fio": Kind(fio.run_job, fio.validate_params),
    "probe": Kind(probes.run_job, probes.validate_params),
    "liburing": Kind(liburing.run_job, liburing.validate_params, liburing.merge_resumed),
}


def _kind(kind: str) -> Kind:
    found = KINDS.get(kind)
    if found is None:
        raise UserError(f"unknown workload kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    return found


def runner_for(kind: str) -> JobRunner:
    """The ``run_job`` function for ``kind``; UserError for an unknown kind."""
    return _kind(kind).run_job


def validate_params(kind: str, params: dict[str, Any], where: str) -> None:
    """Let the kind's module check its ``params`` table."""
    _kind(kind).validate_params(params, where)


def resume_merger(kind: str) -> ResumeMerger | None:
    """The kind's ``merge_resumed(first, second)`` when its jobs can go on after a guest reboot (the
    runner then runs ``evidence["resume"]``, the items the reboot kept from running, on the next guest)."""
    return _kind(kind).merge_resumed
