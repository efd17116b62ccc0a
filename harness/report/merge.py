"""`kwb report --merge DIR…`: shard runs (CI matrix jobs) merged into one run with one verdict.

Each shard's directory is copied under ``shards/<shard-run-id>/`` of the merged run so the merged
artifact is self-contained; job directories are re-pointed there. On a user's tree, shards of different
revisions keep their variants apart as ``v<N>/<variant>``.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.judge.verdict import VariantInfo
from harness.report.results import DEFAULT_TREE, RunRecord, infos_of, new_run_id
from harness.report.schema import load_results

_TOP_FILES = {"results.json", "junit.xml", "report.md", "report.html"}


def _variant_infos(data: dict[str, Any], rename: dict[str, str]) -> list[VariantInfo]:
    return [replace(i, name=rename.get(i.name, i.name)) for i in infos_of(data)]


def _copy_shard(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for entry in src.iterdir():
        if entry.name in _TOP_FILES:
            continue
        target = dest / entry.name
        if entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(entry, target)


def _repoint(job_dir: str, shard_dir: Path, new_home: Path) -> str:
    if not job_dir:
        return job_dir
    path = Path(job_dir)
    for root in (shard_dir, shard_dir.resolve()):
        try:
            return str(new_home / path.relative_to(root))
        except ValueError:
            continue
    # Written by a runner on another machine: keep the tail below the shard's run id.
    parts = path.parts
    if shard_dir.name in parts:
        return str(new_home.joinpath(*parts[parts.index(shard_dir.name) + 1:]))
    return job_dir


def merge_runs(dirs: list[Path], out_root: Path, command: str) -> tuple[RunRecord, Path]:
    """Merge the shard runs in ``dirs`` into a new record (files not yet written) and its directory."""
    if not dirs:
        raise UserError("--merge needs at least one run directory")
    shards = [(d, load_results(d)) for d in dirs]
    revisions = {s["run"].get("revision") for _, s in shards}
    prefix_by_revision = len(revisions) > 1
    record = RunRecord(run_id=new_run_id(), command=command,
                       started=min(s["run"]["started"] for _, s in shards),
                       revision=next(iter(revisions)) if not prefix_by_revision else None,
                       source=shards[0][1]["run"].get("source"))
    run_dir = out_root / record.run_id
    seen_jobs: dict[tuple[str, str, str], str] = {}
    infos: dict[str, VariantInfo] = {}
    concerns: dict[tuple[str, int], dict[str, Any]] = {}
    errors: list[str] = []
    accels: set[str] = set()
    for shard_dir, data in shards:
        shard_id = str(data["run"]["id"])
        record.shards.append(shard_id)
        rev = data["run"].get("revision")
        rename = {n: f"v{rev}/{n}" for n in data.get("variants", {})} if prefix_by_revision else {}
        home = run_dir / "shards" / shard_id
        _copy_shard(shard_dir, home)
        for job in data["jobs"]:
            job = {**job, "variant": rename.get(job["variant"], job["variant"]),
                   "job_dir": _repoint(str(job.get("job_dir", "")), shard_dir, home)}
            key = (job["variant"], job["fs"], job["workload"])
            if key in seen_jobs and job["fs"] != "-":
                raise UserError(f"job {'/'.join(key)} is in two shards ({seen_jobs[key]}, {shard_id}): "
                                f"overlapping shards can't be merged")
            seen_jobs[key] = shard_id
            record.add_jobs([job])
        for info in _variant_infos(data, rename):
            infos.setdefault(info.name, info)
        for c in data.get("concerns", []):
            concerns.setdefault((str(c["concern_id"]), int(c["version"])), c)
        _merge_kernel(record, data, rename)
        _merge_timings(record, data, rename, shard_id)
        if data.get("accel") and data["accel"] != "unknown":
            accels.add(str(data["accel"]))
        record.guest_roots.update({str(k): str(v) for k, v in (data.get("guest_root") or {}).items()})
        if data.get("coverage") and record.coverage is None:
            record.coverage = data["coverage"]
        if data["run"]["status"] != "complete":
            why = data["run"].get("error", "")
            errors.append(f"shard {shard_id} {data['run']['status']}" + (f": {why}" if why else ""))
    for _, data in shards:
        # What one shard could not check the merged run could not either (each shard reads the same mail).
        for item in (data.get("verdict") or {}).get("not_checked") or []:
            if item not in record.not_checked:
                record.not_checked.append(item)
        if record.mail is None and data["run"].get("mail"):
            record.mail = data["run"]["mail"]
    record.variant_infos = list(infos.values())
    record.concerns = list(concerns.values())
    record.accel = "+".join(sorted(accels)) or "unknown"
    record.status = "failed" if errors else "complete"
    record.error = "; ".join(errors)
    return record, run_dir


def _merge_kernel(record: RunRecord, data: dict[str, Any], rename: dict[str, str]) -> None:
    kernel = data.get("kernel", {})
    for key in ("tree", "base", "release", "config", "revision"):
        if kernel.get(key) is not None and record.kernel.get(key) in (None, DEFAULT_TREE):
            record.kernel[key] = kernel[key]
    for name, info in (kernel.get("variants") or {}).items():
        record.kernel["variants"].setdefault(rename.get(name, name), info)


def _merge_timings(record: RunRecord, data: dict[str, Any], rename: dict[str, str], shard_id: str) -> None:
    timings = data.get("timings", {})
    for group in ("build", "boot", "variants"):
        for name, seconds in (timings.get(group) or {}).items():
            record.timings[group].setdefault(rename.get(name, name), seconds)
    for key, seconds in (timings.get("jobs") or {}).items():
        variant, _, rest = key.partition("/")
        record.timings["jobs"][f"{rename.get(variant, variant)}/{rest}"] = seconds
    for step in data["run"].get("steps") or []:
        record.steps.append({**step, "name": f"{shard_id}: {step['name']}"})
    record.timings["steps"][f"shard {shard_id}"] = float(timings.get("total", 0.0))
