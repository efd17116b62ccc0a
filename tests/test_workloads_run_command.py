"""`kwb run`: argument handling, exit codes, JSON output (run_variant replaced by a recorder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_workloads_fakeguest import fake_kernel

from harness.cli import main
from harness.cli.run import exit_code
from harness.core.errors import InfraError
from harness.kernel import build
from harness.kernel.build import KernelBuild
from harness.workloads import runner
from harness.workloads.model import JobResult, JobStatus, VariantRun


@pytest.fixture(autouse=True)
def _no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    # `kwb run` builds the kernel and hands it to the runner: here a stand-in, built from nothing.
    monkeypatch.setattr(build, "ensure_kernel", lambda variant, progress=None: fake_kernel(variant))


def _fake(statuses: list[JobStatus], calls: list[dict[str, Any]]) -> Any:
    def run_variant(variant: str, filesystems: list[str], workloads: list[str], out_dir: Path,
                    progress: Any = None, *, kernel: KernelBuild) -> VariantRun:
        calls.append({"variant": variant, "fs": filesystems, "workloads": workloads, "out": out_dir,
                      "kernel": kernel.variant})
        iops = {"iops": {"median": 100.0, "min": 90.0, "max": 110.0}}
        return VariantRun([JobResult("fio-iouring", "ext4", variant, s, "" if s is JobStatus.PASS else "why",
                                     metrics=iops) for s in statuses])
    return run_variant


@pytest.mark.parametrize(("statuses", "code"), [
    ([JobStatus.PASS, JobStatus.SKIP], 0),
    ([JobStatus.PASS, JobStatus.FAIL], 1),
    ([JobStatus.CRASH], 1),
    ([JobStatus.ERROR, JobStatus.TIMEOUT], 1),
    ([JobStatus.PASS, JobStatus.ERROR], 2),
])
def test_exit_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    statuses: list[JobStatus], code: int) -> None:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(runner, "run_variant", _fake(statuses, calls))
    assert main(["-q", "run", "--variant", "series", "--fs", "ext4,bdev", "--workload", "fio-iouring",
                 "--out", str(tmp_path)]) == code
    assert calls == [{"variant": "series", "fs": ["ext4", "bdev"], "workloads": ["fio-iouring"],
                      "out": tmp_path, "kernel": "series"}]
    assert exit_code([JobResult("w", "ext4", "v", s) for s in statuses]) == code
    assert json.loads((tmp_path / "run.json").read_text())["variant"] == "series"
    assert "100 [90–110]" in capsys.readouterr().out


def test_json_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(runner, "run_variant", _fake([JobStatus.PASS], []))
    assert main(["-q", "run", "--variant", "series", "--out", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exit"] == 0 and data["jobs"][0]["status"] == "pass"


def test_bad_fs_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--variant", "series", "--fs", "zfs"]) == 3
    assert "unknown filesystem zfs" in capsys.readouterr().err


def test_infra_error_is_exit_2_and_run_json_still_written(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: Any, **kwargs: Any) -> KernelBuild:
        raise InfraError("kernel build failed (exit 2): make: *** [bzImage] Error 2")
    monkeypatch.setattr(build, "ensure_kernel", broken)
    assert main(["-q", "run", "--variant", "series", "--out", str(tmp_path)]) == 2
    assert "kernel build failed" in capsys.readouterr().err
    assert json.loads((tmp_path / "run.json").read_text())["jobs"] == []


def test_unknown_variant_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "run", "--variant", "no-such-variant", "--out", str(tmp_path)]) == 3
    assert "unknown variant" in capsys.readouterr().err


def test_unknown_workload_is_a_usage_error_before_any_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    built: list[str] = []

    def ensure(variant: str, progress: Any = None) -> KernelBuild:
        built.append(variant)
        return fake_kernel(variant)
    monkeypatch.setattr(build, "ensure_kernel", ensure)
    assert main(["-q", "run", "--variant", "series", "--workload", "no-such", "--out", str(tmp_path)]) == 3
    assert "unknown workload no-such" in capsys.readouterr().err and built == []
