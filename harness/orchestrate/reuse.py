"""Results of an unchanged baseline kernel, kept in the cache and reused by later runs.

A new revision of a series changes the series kernel, not the kernel it is compared with: the baseline
(the base commit, same configuration) measures what it measured last time, within the spread the report
already shows, and re-measuring it costs about three minutes per revision on the 2-core TCG machine. So a
complete baseline run (no job errored, timed out or crashed, no kernel findings) is kept under
``$KWB_CACHE/results/``, keyed by everything that decides
its results: the kernel commit, the .config, the filesystems, the workload definitions, the code that runs
them, the accelerator and the guest root (the isolated image's identity — recipe and package versions —
or "host"): a rebuilt image re-measures the baseline. A later run with the same key takes those results
(job directories included) instead of booting the baseline, and results.json / report.md say which run
measured them.
``kwb test-series --fresh-baseline`` (``make test-series FRESH_BASELINE=1``) re-measures.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.core.atomic import write_json
from harness.core.paths import cache_dir, project_root
from harness.kernel.build import KernelBuild
from harness.vm import rootfs
from harness.workloads.model import WorkloadSpec

ENTRY = "entry.json"
# What runs a job and turns its output into results: a change here may change the results.
CODE = ("harness/workloads", "harness/workloads/evidence.py", "harness/vm")


@dataclass(frozen=True)
class Stored:
    """A kept variant run: which run measured it, when, and its job results."""

    variant: str
    key: str
    run_id: str
    measured: str
    accel: str
    jobs: list[dict[str, Any]]
    path: Path  # the kept copy of the variant's result directory

    def info(self) -> dict[str, Any]:
        """What results.json records about the reuse."""
        return {"run": self.run_id, "measured": self.measured, "key": self.key, "accel": self.accel}


def code_digest(root: Path | None = None) -> str:
    """Hash of the sources that run workloads and read their results."""
    base = root or project_root()
    h = hashlib.sha256()
    for rel in CODE:
        top = base / rel
        files = sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts) \
            if top.is_dir() else [top]
        for path in files:
            if path.is_file():
                h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def guest_root_identity() -> str:
    """What the guest boots on: ``isolated:<image identity>`` (the image is built if missing: the run
    needs it right after) or ``host``."""
    if rootfs.mode() == "host":
        return "host"
    return f"isolated:{rootfs.ensure_base().identity}"


def reuse_key(kernel: KernelBuild, filesystems: Iterable[str], specs: Iterable[WorkloadSpec], accel: str,
              code: str | None = None, root: str | None = None) -> str | None:
    """The cache key of a variant run, or None when the kernel does not say what it is (no commit, or
    its .config is not readable).

    ``root`` is the guest root's identity (default: :func:`guest_root_identity`)."""
    commit, config = kernel.commit, kernel.config
    if not commit or not config.is_file():
        return None
    workloads = []
    for spec in specs:
        d = asdict(spec)
        d.pop("source", None)  # where the TOML lives, not what it says
        workloads.append(d)
    blob = json.dumps({"commit": commit, "config": hashlib.sha256(Path(config).read_bytes()).hexdigest(),
                       "filesystems": sorted(filesystems), "workloads": workloads, "accel": accel,
                       "code": code if code is not None else code_digest(),
                       "root": root if root is not None else guest_root_identity()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _slot(variant: str, key: str) -> Path:
    return cache_dir() / "results" / f"{variant}-{key}"


def lookup(variant: str, key: str) -> Stored | None:
    """The kept run of ``variant`` under ``key``; None when there is none (or it is unreadable)."""
    slot = _slot(variant, key)
    try:
        entry = json.loads((slot / ENTRY).read_text(encoding="utf-8"))
        return Stored(variant, key, str(entry["run_id"]), str(entry["measured"]), str(entry["accel"]),
                      list(entry["jobs"]), slot / variant)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def keepable(jobs: list[dict[str, Any]]) -> bool:
    """Only a complete, healthy run is kept: every job passed or failed its checks (a baseline that
    does not show the punt path is a result too), none errored, timed out or crashed, no kernel
    findings."""
    return bool(jobs) and all(j.get("status") in ("pass", "fail") and not j.get("findings") for j in jobs)


def store(variant: str, key: str, run_id: str, measured: str, accel: str, jobs: list[dict[str, Any]],
          variant_dir: Path) -> Path | None:
    """Keep a clean run of ``variant`` (its jobs and result directory); returns the slot, or None."""
    if not keepable(jobs) or not variant_dir.is_dir():
        return None
    slot = _slot(variant, key)
    tmp = slot.with_name(f".{slot.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copytree(variant_dir, tmp / variant, symlinks=True)
    write_json(tmp / ENTRY, {"run_id": run_id, "measured": measured, "accel": accel, "key": key,
                             "variant_dir": str(variant_dir), "jobs": jobs})
    shutil.rmtree(slot, ignore_errors=True)
    tmp.rename(slot)
    return slot


def restore(stored: Stored, run_dir: Path) -> list[dict[str, Any]]:
    """Copy the kept result directory into ``run_dir`` and return its jobs, pointing at the copy."""
    dest = run_dir / stored.variant
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(stored.path, dest, symlinks=True)
    entry = json.loads((stored.path.parent / ENTRY).read_text(encoding="utf-8"))
    old = str(entry.get("variant_dir", ""))
    jobs = []
    for job in stored.jobs:
        job = dict(job)
        job_dir = str(job.get("job_dir") or "")
        if old and job_dir.startswith(old):
            job["job_dir"] = str(dest) + job_dir[len(old):]
        jobs.append(job)
    return jobs
