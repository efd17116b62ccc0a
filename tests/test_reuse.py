"""Keeping and reusing a baseline's results: the key, the kept copy, and what a reused run points at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_workloads_fakeguest import fake_kernel

from harness.kernel.build import KernelBuild
from harness.orchestrate import reuse
from harness.workloads.model import WorkloadSpec


def K(commit: str, config: Path) -> KernelBuild:
    return fake_kernel(commit=commit, config=config)


def _spec(runtime: int = 5) -> WorkloadSpec:
    return WorkloadSpec("fio-iouring", "fio", "", ["ext4"], 300.0, params={"runtime": runtime},
                        source=Path("/somewhere/fio-iouring.toml"))


@pytest.fixture
def kernel(tmp_path: Path) -> KernelBuild:
    config = tmp_path / "config"
    config.write_text("CONFIG_IO_URING=y\n")
    return K("a" * 40, config)


def _key(kernel: Any, **kw: Any) -> str | None:
    args: dict[str, Any] = {"filesystems": ["ext4", "xfs"], "specs": [_spec()], "accel": "tcg", "code": "c1",
                            "root": "isolated:r1"}
    args.update(kw)
    return reuse.reuse_key(kernel, **args)


def test_key_changes_with_everything_that_decides_the_results(kernel: KernelBuild, tmp_path: Path) -> None:
    base = _key(kernel)
    assert base is not None and base == _key(kernel)
    assert _key(kernel, filesystems=["xfs", "ext4"]) == base  # order of --fs does not matter
    changed = [_key(K("b" * 40, kernel.config)), _key(kernel, filesystems=["ext4"]),
               _key(kernel, specs=[_spec(runtime=8)]), _key(kernel, accel="kvm"), _key(kernel, code="c2")]
    assert base not in changed and len(set(changed)) == len(changed)
    other = tmp_path / "other-config"
    other.write_text("CONFIG_IO_URING=y\nCONFIG_KASAN=y\n")
    assert _key(K(kernel.commit, other)) != base
    # where the catalogue file sits is not part of what it says
    moved = _spec()
    moved.source = Path("/elsewhere/fio-iouring.toml")
    assert _key(kernel, specs=[moved]) == base


def test_no_key_without_a_commit_or_a_readable_config(tmp_path: Path) -> None:
    assert _key(K("", tmp_path / "config")) is None
    assert _key(K("a" * 40, tmp_path / "missing")) is None


def test_code_digest_follows_the_workload_sources(tmp_path: Path) -> None:
    (tmp_path / "harness" / "workloads").mkdir(parents=True)
    (tmp_path / "harness" / "qemu").mkdir()
    (tmp_path / "harness" / "evidence.py").write_text("A = 1\n")
    (tmp_path / "harness" / "workloads" / "fio.py").write_text("runtime = 5\n")
    first = reuse.code_digest(tmp_path)
    assert first == reuse.code_digest(tmp_path)
    (tmp_path / "harness" / "workloads" / "fio.py").write_text("runtime = 8\n")
    assert reuse.code_digest(tmp_path) != first


def _job(run_dir: Path, status: str = "pass", findings: list[str] | None = None) -> dict[str, Any]:
    return {"workload": "fio-iouring", "fs": "ext4", "variant": "baseline", "status": status,
            "findings": findings or [], "job_dir": str(run_dir / "baseline" / "ext4" / "fio-iouring")}


def _variant_dir(run_dir: Path) -> Path:
    job = run_dir / "baseline" / "ext4" / "fio-iouring"
    job.mkdir(parents=True)
    (job / "command").write_text("fio ...\n")
    return run_dir / "baseline"


def test_store_lookup_restore_round_trip(cache: Path, tmp_path: Path) -> None:
    first = tmp_path / "out" / "run-1"
    vdir = _variant_dir(first)
    slot = reuse.store("baseline", "k1", "run-1", "2026-11-21T10:00:00Z", "tcg", [_job(first)], vdir)
    assert slot is not None and slot.parent == cache / "results"
    kept = reuse.lookup("baseline", "k1")
    assert kept is not None and kept.info() == {"run": "run-1", "measured": "2026-11-21T10:00:00Z",
                                                "key": "k1", "accel": "tcg"}
    assert reuse.lookup("baseline", "k2") is None and reuse.lookup("series", "k1") is None
    second = tmp_path / "out" / "run-2"
    jobs = reuse.restore(kept, second)
    job_dir = Path(jobs[0]["job_dir"])
    assert job_dir == second / "baseline" / "ext4" / "fio-iouring"
    assert (job_dir / "command").read_text() == "fio ...\n"
    # the kept copy does not depend on the first run's directory
    (vdir / "ext4" / "fio-iouring" / "command").unlink()
    assert (kept.path / "ext4" / "fio-iouring" / "command").is_file()


@pytest.mark.parametrize("jobs", [[], [{"status": "timeout"}], [{"status": "pass", "findings": ["oops"]}],
                                  [{"status": "pass"}, {"status": "error"}], [{"status": "crash"}]])
def test_only_complete_healthy_runs_are_kept(cache: Path, tmp_path: Path, jobs: list[dict[str, Any]]) -> None:
    vdir = _variant_dir(tmp_path / "run")
    assert reuse.store("baseline", "k", "run", "now", "tcg", jobs, vdir) is None
    assert reuse.lookup("baseline", "k") is None


def test_unreadable_entry_is_no_entry(cache: Path, tmp_path: Path) -> None:
    vdir = _variant_dir(tmp_path / "run")
    slot = reuse.store("baseline", "k", "run", "now", "tcg", [_job(tmp_path / "run")], vdir)
    assert slot is not None
    (slot / reuse.ENTRY).write_text("{not json")
    assert reuse.lookup("baseline", "k") is None
    (slot / reuse.ENTRY).write_text(json.dumps({"run_id": "run"}))
    assert reuse.lookup("baseline", "k") is None


def test_a_baseline_that_fails_its_checks_is_a_result_and_kept(cache: Path, tmp_path: Path) -> None:
    vdir = _variant_dir(tmp_path / "run")
    assert reuse.store("baseline", "k", "run", "now", "tcg", [_job(tmp_path / "run", status="fail")], vdir)
    assert reuse.lookup("baseline", "k") is not None
