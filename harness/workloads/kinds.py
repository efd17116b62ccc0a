"""Registry of workload kinds: the kind named in a catalogue file picks the module that runs it.

Modules are imported on first use so that a kind whose module is broken or absent fails only the jobs
of that kind (with a named error), never the catalogue or the other kinds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.errors import InfraError, UserError
from harness.workloads.model import GuestSession, JobResult, Target, WorkloadSpec

JobRunner = Callable[[GuestSession, WorkloadSpec, Target, Path], JobResult]

# kind -> module exposing ``run_job(guest, spec, target, job_dir) -> JobResult`` and, optionally,
# ``validate_params(params: dict, where: str) -> None`` (raises UserError naming the field).
KINDS: dict[str, str] = {
    "fio": "harness.workloads.fio",
    "probe": "harness.workloads.probes",
    "liburing": "harness.workloads.liburing",
}


def _module(kind: str) -> Any:
    if kind not in KINDS:
        raise UserError(f"unknown workload kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    try:
        return importlib.import_module(KINDS[kind])
    except ImportError as exc:
        raise InfraError(f"workload kind {kind!r}: module {KINDS[kind]} not importable: {exc}") from exc


def runner_for(kind: str) -> JobRunner:
    """The ``run_job`` function for ``kind``; UserError for an unknown kind, InfraError if not importable."""
    module = _module(kind)
    fn = getattr(module, "run_job", None)
    if not callable(fn):
        raise InfraError(f"workload kind {kind!r}: {KINDS[kind]} has no run_job()")
    runner: JobRunner = fn
    return runner


def validate_params(kind: str, params: dict[str, Any], where: str) -> None:
    """Let the kind's module check its ``params`` table (if it offers a validator and is importable).

    A kind whose module is not importable yet is not validated here; its jobs fail when run.
    """
    try:
        module = _module(kind)
    except InfraError:
        return
    validator = getattr(module, "validate_params", None)
    if callable(validator):
        validator(params, where)


def resume_merger(kind: str) -> Callable[[JobResult, JobResult], JobResult] | None:
    """The kind's ``merge_resumed(first, second)`` when its jobs can go on after a guest reboot (the
    runner then runs ``evidence["resume"]``, the items the reboot kept from running, on the next guest)."""
    try:
        fn = getattr(_module(kind), "merge_resumed", None)
    except (InfraError, UserError):
        return None
    return fn if callable(fn) else None
