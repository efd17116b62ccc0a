"""`kwb report --merge`: CI shard runs merged into one run with one verdict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_report_results import synthetic_record

from harness.cli import main
from harness.core.errors import UserError
from harness.report import schema
from harness.report.merge import merge_runs
from harness.report.write import finalize


def _shards(tmp_path: Path, split: int = 2) -> list[Path]:
    """The synthetic full run split into shard runs by filesystem, each with its job directories."""
    full = synthetic_record()
    fss = ["ext4", "xfs", "btrfs", "bdev"]
    dirs = []
    for i in range(split):
        rec = synthetic_record(f"shard-{i}")
        mine = set(fss[i::split])
        rec.jobs = [j for j in full.jobs if j["fs"] in mine]
        run_dir = tmp_path / "shard-out" / rec.run_id
        for job in rec.jobs:
            job_dir = run_dir / job["variant"] / job["fs"] / job["workload"]
            job_dir.mkdir(parents=True)
            (job_dir / "command").write_text(job["command"] + "\n")
            job["job_dir"] = str(job_dir)
        finalize(rec, run_dir, None)
        dirs.append(run_dir)
    return dirs


def test_merged_shards_give_the_full_runs_verdict(tmp_path: Path) -> None:
    record, run_dir = merge_runs(_shards(tmp_path), tmp_path / "merged", "kwb report --merge")
    data = finalize(record, run_dir, tmp_path / "merged")
    assert schema.errors(data) == []
    full = synthetic_record().to_dict()
    assert data["verdict"] == full["verdict"] and data["mutants"] == full["mutants"]
    assert len(data["jobs"]) == len(full["jobs"])
    assert data["run"]["shards"] == ["shard-0", "shard-1"]
    assert {(c["concern_id"], c["version"]) for c in data["concerns"]} == \
        {(c["concern_id"], c["version"]) for c in full["concerns"]}
    for job in data["jobs"]:
        assert Path(job["job_dir"]).is_relative_to(run_dir / "shards"), job["job_dir"]
        assert (Path(job["job_dir"]) / "command").is_file()
    assert os.readlink(tmp_path / "merged" / "latest") == record.run_id


def test_merge_of_failed_shard_is_failed(tmp_path: Path) -> None:
    dirs = _shards(tmp_path)
    data = json.loads((dirs[1] / "results.json").read_text())
    data["run"].update(status="failed", error="guest panicked at boot")
    (dirs[1] / "results.json").write_text(json.dumps(data))
    record, _ = merge_runs(dirs, tmp_path / "m", "merge")
    assert record.status == "failed" and record.error == "shard shard-1 failed: guest panicked at boot"


def test_overlapping_shards_are_refused(tmp_path: Path) -> None:
    dirs = _shards(tmp_path)
    with pytest.raises(UserError, match="is in two shards"):
        merge_runs([dirs[0], dirs[0]], tmp_path / "m", "merge")
    with pytest.raises(UserError, match="at least one"):
        merge_runs([], tmp_path / "m", "merge")


def test_revision_shards_keep_their_variants_apart(tmp_path: Path) -> None:
    dirs = []
    for rev in (4, 5):
        rec = synthetic_record(f"rev-{rev}")
        rec.revision = rec.kernel["revision"] = rev
        rec.jobs = [j for j in rec.jobs if j["variant"] in ("series", "baseline")]
        rec.variant_infos = [v for v in rec.variant_infos if v.name in ("series", "baseline")]
        finalize(rec, tmp_path / rec.run_id, None)
        dirs.append(tmp_path / rec.run_id)
    record, _ = merge_runs(dirs, tmp_path / "m", "merge")
    data = record.to_dict()
    assert set(data["variants"]) == {"v4/series", "v4/baseline", "v5/series", "v5/baseline"}
    assert data["variants"]["v5/baseline"]["kind"] == "baseline" and data["verdict"]["ok"]


def test_kwb_report_merge_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _shards(tmp_path, split=4)
    code = main(["report", "--merge", *map(str, dirs), "--out", str(tmp_path / "merged")])
    assert code == 0
    assert "merged 4 shard runs" in capsys.readouterr().err
    merged = tmp_path / "merged" / "latest"
    assert all((merged / f).is_file() for f in ("results.json", "junit.xml", "report.md", "report.html"))
    assert main(["report", "--merge", str(tmp_path / "nope")]) == 3


def test_kwb_report_rerenders_and_rejudges_a_run(tmp_path: Path) -> None:
    run_dir = _shards(tmp_path, split=1)[0]
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text().startswith("**kwb verdict: ")
    assert "- run shard-0: " in (run_dir / "report.md").read_text()
    data = json.loads((run_dir / "results.json").read_text())
    data["variants"]["mutant-lost-cqe"].update(verdict="missed", ok=False)  # as an older rule had it
    data["verdict"] = {"ok": False, "exit_code": 1, "reasons": ["stale"]}
    (run_dir / "results.json").write_text(json.dumps(data))
    assert main(["report", str(run_dir)]) == 0
    assert json.loads((run_dir / "results.json").read_text())["verdict"]["ok"] is True
