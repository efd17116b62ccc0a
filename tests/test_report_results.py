"""results.json: the record, the schema, the files of a run directory, the latest link.

Also the builder of the synthetic runs in tests/data/results/ (regenerate with KWB_REGEN=1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness.core.errors import UserError
from harness.judge.verdict import VariantInfo
from harness.report import schema
from harness.report.results import DEFAULT_TREE, RunRecord, kernel_base
from harness.report.write import finalize, update_latest, write_run
from harness.workloads.model import JobResult, JobStatus

DATA = Path(__file__).parent / "data" / "results"
FSS = ("ext4", "xfs", "btrfs", "bdev")
VARIANTS = [VariantInfo("series", "series"), VariantInfo("baseline", "baseline"),
            VariantInfo("mutant-lost-cqe", "mutant", "lost-cqe-retry-incremental", ["probe-cqe-accounting"]),
            VariantInfo("mutant-kbuf-leak", "mutant", "kbuf-leak-on-cancel", ["probe-kbuf-cancel"]),
            VariantInfo("mutant-hipri-wait", "mutant", "hipri-waitqueue-guard", [],
                        equivalent="IOPOLL rings reject buffered reads before the waitqueue is armed")]


def _fio(variant: str, fs: str, workload: str, iops: list[float], cpu: float, ctx: float,
         cb: int, wq: int) -> JobResult:
    # Shapes as harness.workloads.fio writes them: summaries of repeats, evidence role counts.
    summary = {"median": iops[1], "min": min(iops), "max": max(iops), "stdev": 1.0, "values": iops}
    return JobResult(workload, fs, variant, JobStatus.PASS, command=f"fio --name={workload}",
                     exitcode=0, duration=15.0,
                     metrics={"repeats": 3, "iops": summary, "guest_busy_pct": {"median": cpu},
                              "ctx": {"median": ctx}, "runtime_s": {"median": 8.0}},
                     evidence={"counts": {"callback": cb, "iowq_enqueue": wq, "async_lock": None}},
                     job_dir=f"{variant}/{fs}/{workload}", reproducer=f"kwb run --variant {variant}")


def synthetic_jobs(uring_iops: float = 16000.0, lost_cqe_flagged: bool = True) -> list[JobResult]:
    """A full default-tree run: series/baseline/3 mutants on four filesystems."""
    jobs: list[JobResult] = []
    for fs in FSS:
        for variant, async_ in (("series", True), ("baseline", False)):
            base = uring_iops if async_ else 10700.0
            jobs.append(_fio(variant, fs, "fio-iouring", [base * 0.98, base, base * 1.02],
                             45.0 if async_ else 80.0, 251 if async_ else 44000,
                             144000 if async_ else 0, 0 if async_ else 72000))
            # The baseline's fio-iouring declares the reverse (no-callback, iowq-path) and passes.
            jobs.append(_fio(variant, fs, "fio-iouring-forced-async", [10500.0, 10700.0, 10900.0], 80.0,
                             44174, 0, 72091))
            jobs.append(_fio(variant, fs, "fio-psync", [2900.0, 2926.0, 2950.0], 30.0, 2900, 0, 0))
            for probe in ("probe-cqe-accounting", "probe-kbuf-cancel"):
                jobs.append(JobResult(probe, fs, variant, JobStatus.PASS, command=f"/cache/{probe}",
                                      exitcode=0, duration=3.0))
        for mutant, probe in (("mutant-lost-cqe", "probe-cqe-accounting"),
                              ("mutant-kbuf-leak", "probe-kbuf-cancel"),
                              ("mutant-hipri-wait", "probe-cqe-accounting")):
            killed = (mutant == "mutant-kbuf-leak" or (mutant == "mutant-lost-cqe" and lost_cqe_flagged)) \
                and fs == "ext4"
            jobs.append(JobResult(probe, fs, mutant, JobStatus.TIMEOUT if killed else JobStatus.PASS,
                                  reason="probe hung: expected 64 CQEs, got 63" if killed else "",
                                  command=f"/cache/{probe}", exitcode=None if killed else 0, duration=3.0))
    return jobs


def synthetic_concerns() -> list[dict[str, Any]]:
    """Static concern statuses for v3, v4, v5, v7."""
    out = []
    for rev in (3, 4, 5, 7):
        out.append({"concern_id": "iocb-private-reuse", "file": "include/linux/fs.h",
                    "title": "iocb->private reused for the wait queue",
                    "version": rev, "status": "present" if rev == 3 else "addressed",
                    "evidence": "+\tkiocb->private = wait;" if rev == 3 else "+\tstruct wait_page_queue *w;",
                    "patch": 7})
        out.append({"concern_id": "should-retry-comment", "file": "fs/io_uring.c",
                    "title": "no comment on io_rw_should_retry()",
                    "version": rev, "status": "present", "evidence": "+static bool io_rw_should_retry(",
                    "patch": 12})
    return out


def synthetic_record(run_id: str = "run-a", **kw: Any) -> RunRecord:
    rec = RunRecord(run_id=run_id, command="kwb test-series --source lore.mbox",
                    started="2026-05-21T07:00:00+00:00", variant_infos=list(VARIANTS))
    rec.kernel = {"tree": "debian-6.12", "base": "base", "release": "6.12.117", "revision": None,
                  "config": "/cache/build/.config",
                  "variants": {v.name: {"commit": "0" * 40, "release": "6.12.117", "build_seconds": 26.0}
                               for v in VARIANTS}}
    rec.accel = "tcg"
    rec.add_jobs([j.to_dict() for j in synthetic_jobs(**kw)])
    rec.concerns = synthetic_concerns()
    rec.steps = [{"name": "series", "status": "ok", "seconds": 2.5}]
    rec.status = "complete"
    rec.finished = "2026-05-21T07:20:00+00:00"
    return rec


def stored(name: str) -> dict[str, Any]:
    """A stored synthetic results.json from tests/data/results/."""
    return json.loads((DATA / name / "results.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(("name", "kw"), [("run-a", {}), ("run-b", {"uring_iops": 12000.0,
                                                                     "lost_cqe_flagged": False})])
def test_stored_synthetic_runs_match_builder(name: str, kw: dict[str, Any]) -> None:
    data = synthetic_record(name, **kw).to_dict()
    path = DATA / name / "results.json"
    if os.environ.get("KWB_REGEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")
    assert json.loads(path.read_text()) == json.loads(json.dumps(data))


def test_full_run_validates_and_passes() -> None:
    data = stored("run-a")
    assert schema.errors(data) == []
    assert data["verdict"] == {"ok": True, "exit_code": 0, "reasons": []}
    assert data["mutants"]["mutant-kbuf-leak"]["by"] == ["probe-kbuf-cancel@ext4"]


def test_schema_rejects_broken_results() -> None:
    data = stored("run-a")
    del data["run"]["id"]
    data["jobs"][0]["status"] = "sort-of"
    problems = schema.errors(data)
    assert any("jobs/0/status" in p for p in problems)
    assert any(p.startswith("run:") and "'id'" in p for p in problems)
    with pytest.raises(UserError, match="does not match the results schema"):
        schema.validate(data)


def test_load_results_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no results\.json"):
        schema.load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        schema.load_results(tmp_path)


def test_unfinished_run_never_passes() -> None:
    rec = synthetic_record()
    rec.status, rec.error = "failed", "build: gcc exploded"
    verdict = rec.to_dict()["verdict"]
    assert not verdict["ok"] and verdict["exit_code"] == 2
    assert verdict["reasons"][0] == "run failed: build: gcc exploded"


def test_empty_running_record_is_valid() -> None:
    data = RunRecord(run_id="x", command="kwb test-series").to_dict()
    assert schema.errors(data) == []
    assert data["run"]["finished"] is None and not data["verdict"]["ok"]


def test_finalize_writes_all_files_and_latest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_dir = out / "run-a"
    data = finalize(synthetic_record(), run_dir, out)
    for name in ("results.json", "junit.xml", "report.md", "report.html"):
        assert (run_dir / name).stat().st_size > 0, name
    assert (out / "latest").resolve() == run_dir.resolve()
    assert os.readlink(out / "latest") == "run-a"  # relative: the out dir can move
    assert json.loads((out / "latest" / "results.json").read_text())["run"]["id"] == data["run"]["id"]
    finalize(synthetic_record("run-b"), out / "run-b", out)
    assert os.readlink(out / "latest") == "run-b"
    assert not [p for p in out.iterdir() if p.name.startswith(".latest")]


def test_a_broken_renderer_does_not_cost_results_json(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.report import html

    def boom(data: dict[str, Any]) -> str:
        raise RuntimeError("matplotlib fell over")

    monkeypatch.setattr(html, "render", boom)
    problems = write_run(synthetic_record().to_dict(), tmp_path)
    assert problems == ["report.html: RuntimeError: matplotlib fell over"]
    assert (tmp_path / "results.json").is_file() and (tmp_path / "report.md").is_file()
    assert not (tmp_path / "report.html").exists()


def test_update_latest_replaces_a_stale_link(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    os.symlink("old", tmp_path / "latest")
    update_latest(tmp_path, tmp_path / "new")
    assert os.readlink(tmp_path / "latest") == "new"


SERIES_SHA = "0123456789abcdef0123456789abcdef01234567"
MUTANT_SHA = "fedcba9876543210fedcba9876543210fedcba98"


def default_tree_run(*names: str) -> dict[str, Any]:
    """A default-tree record as the pipeline leaves it: base None, each built variant's commit."""
    rec = RunRecord(run_id="d", command="kwb test-series")
    rec.variant_infos = [v for v in VARIANTS if v.name in names]
    for name in names:
        sha = SERIES_SHA if name == "series" else MUTANT_SHA
        rec.kernel["variants"][name] = {"commit": sha, "release": "6.12.117", "build_seconds": 1.0}
    return rec.to_dict()


def test_kernel_base_on_the_default_tree_is_the_series_commit() -> None:
    data = default_tree_run("series", "mutant-lost-cqe")
    assert data["kernel"]["tree"] == DEFAULT_TREE and data["kernel"]["base"] is None
    assert kernel_base(data) == "0123456789ab (Debian linux-source-6.12)"


def test_kernel_base_without_a_series_build_lists_the_variant_commits() -> None:
    assert kernel_base(default_tree_run("mutant-lost-cqe")) == (
        "– (Debian linux-source-6.12; built at mutant-lost-cqe fedcba987654)")
    assert kernel_base(default_tree_run()) == "–"


def test_kernel_base_on_a_user_tree_is_the_base_given() -> None:
    data = default_tree_run("series")
    data["kernel"].update({"tree": "/src/linux", "base": "v5.7"})
    assert kernel_base(data) == "v5.7"
    # A user tree's series commit is the applied revision, never the base.
    data["kernel"]["base"] = None
    assert kernel_base(data) == "–"


def test_default_tree_name_matches_the_tree_module() -> None:
    from harness.kernel.tree import DEBIAN_TREE_NAME

    assert DEFAULT_TREE == DEBIAN_TREE_NAME
