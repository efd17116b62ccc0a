"""The CI files as data (no workplace paths, valid against the official schemas, the cache key's config
hash current), and ci/gitlab-ci.yml run by a real CI engine: gitlab-ci-local's shell executor."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.cli.ci import config_hash
from harness.core.errors import UserError
from harness.orchestrate import ci

ROOT = Path(__file__).resolve().parent.parent
CI_FILES = (ROOT / "ci" / "gitlab-ci.yml", ROOT / "ci" / "github-actions.yml")
GCL = ROOT / ".tools" / "gitlab-ci-local" / "node_modules" / ".bin" / "gitlab-ci-local"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


@pytest.mark.parametrize("path", CI_FILES, ids=lambda p: p.name)
def test_ci_files_name_no_workplace_path(path: Path) -> None:
    text = path.read_text()
    assert "../shared" not in text and "/work/" not in text and ".mirror" not in text
    assert "KWB_SOURCE" in text and "lore" in text


@pytest.mark.parametrize(("path", "schema"), [(CI_FILES[0], "vendor.gitlab-ci"),
                                              (CI_FILES[1], "vendor.github-workflows")],
                         ids=["gitlab", "github"])
def test_ci_files_validate_against_the_official_schemas(path: Path, schema: str) -> None:
    if not CHECK_JSONSCHEMA.is_file():
        pytest.skip("check-jsonschema is not installed in the venv (pip install -e .[dev])")
    res = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_cache_key_file_holds_the_current_config_hash() -> None:
    # ci/kernel-config.hash keys GitLab's cache; a stale one would reuse a build dir of another config.
    assert (ROOT / "ci" / "kernel-config.hash").read_text().strip() == config_hash("series")
    assert "kernel-config.hash" in CI_FILES[0].read_text()
    assert "kwb ci config-hash" in CI_FILES[1].read_text()


def test_the_gitlab_pipeline_has_a_shell_runner_form() -> None:
    import yaml

    data = yaml.safe_load(CI_FILES[0].read_text())
    shell = data[".kwb-shell"]
    assert shell["tags"] and "image" not in shell
    assert "image" in data[".kwb-docker"]
    for job in ("kwb-plan", "kwb-shard", "kwb-merge"):
        assert ".kwb-docker" in data[job]["extends"] and ".kwb-shell" in data[f"{job}-shell"]["extends"]
    assert data["kwb-merge-shell"]["rules"][0]["when"] == "always"


def test_more_ci_jobs_than_shards_leave_the_extra_jobs_empty() -> None:
    plan = ci.plan(["ext4"], variants=["series", "baseline"], shards=8)
    assert plan["shards"] == 2
    got = [ci.shard_of_plan(plan, i, 8) for i in range(1, 9)]
    assert [len(g) for g in got] == [1, 1, 0, 0, 0, 0, 0, 0]
    with pytest.raises(UserError, match="the plan has 4 shards"):
        ci.shard_of_plan(ci.plan(["ext4", "xfs"], variants=["series", "baseline"], shards=4), 1, 2)


def _merged(jobs: list[tuple[str, str]]) -> tuple[dict[str, Any], str]:
    results: dict[str, Any] = {"run": {},
                               "jobs": [{"variant": v, "fs": fs, "workload": "w"} for v, fs in jobs]}
    cases = "".join(f"<testcase classname='{v}.{fs}' name='w'/>" for v, fs in jobs)
    return results, f"<testsuites><testsuite name='variant.x'>{cases}</testsuite>" \
                    "<testsuite name='verdict'><testcase name='v'/></testsuite></testsuites>"


def test_check_merged_agrees_only_with_its_plan() -> None:
    plan = ci.plan(["ext4"], variants=["series", "baseline"], shards=2)
    results, junit = _merged([("series", "ext4"), ("baseline", "ext4")])
    assert ci.check_merged(plan, results, junit) == []
    results, junit = _merged([("series", "ext4")])
    assert ci.check_merged(plan, results, junit) == \
        ["planned variant baseline on ext4: no job in the merged run"]
    results, _ = _merged([("series", "ext4"), ("baseline", "ext4")])
    _, short = _merged([("series", "ext4")])
    assert ci.check_merged(plan, results, short) == ["junit.xml has 1 testcases, the merged run 2 jobs"]
    results, junit = _merged([("series", "ext4"), ("baseline", "ext4"), ("series", "xfs")])
    assert "job on variant series xfs was not planned" in ci.check_merged(plan, results, junit)


def _project_copy(dest: Path) -> Path:
    """The checkout as a fresh clone would have it (tracked and new files, nothing ignored), with this
    checkout's venv and tools linked in so `make setup` finds them installed."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    (dest / ".tools").symlink_to(ROOT / ".tools")
    # setup.sh re-runs pip when pyproject.toml is newer than the venv's stamp: keep the copy's older.
    stamp = ROOT / ".venv" / ".kwb-installed"
    if stamp.is_file():
        os.utime(dest / "pyproject.toml", (stamp.stat().st_mtime - 1, stamp.stat().st_mtime - 1))
    who = ["-c", "user.name=kwb", "-c", "user.email=kwb@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], [*who, "commit", "-qm", "kwb as cloned"]):
        subprocess.run(["git", "-C", str(dest), *args], check=True, capture_output=True, timeout=120)
    return dest


@pytest.mark.real
@pytest.mark.host
def test_gitlab_pipeline_runs_in_gitlab_ci_local(tmp_path: Path) -> None:
    """plan → 2 shards (series and baseline on ext4, fio-iouring each; each shard boots a guest) → merge,
    through gitlab-ci-local's shell executor; the merged junit.xml and report agree with `kwb ci plan`."""
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.skip("node/npm not installed: gitlab-ci-local cannot run here")
    if not GCL.is_file():
        pytest.skip(f"gitlab-ci-local not installed at {GCL} (run `make setup`)")
    proj = _project_copy(tmp_path / "proj")
    variables = {"KWB_RUNNER": "shell", "KWB_SHARDS": "2", "KWB_VARIANTS": "series,baseline",
                 "KWB_FS": "ext4", "KWB_WORKLOADS": "fio-iouring", "KWB_SOURCE": "lore",
                 "KWB_CACHE": os.environ["KWB_CACHE"]}
    argv = [str(GCL), "--file", "ci/gitlab-ci.yml", "--shell-executor-no-image", "--concurrency", "1",
            "--home", str(tmp_path / "gcl-home")]
    for key, value in variables.items():
        argv += ["--variable", f"{key}={value}"]
    res = subprocess.run(argv, cwd=proj, capture_output=True, text=True, timeout=3 * 3600)
    log = res.stdout + res.stderr
    (tmp_path / "gitlab-ci-local.log").write_text(log)
    assert res.returncode == 0, log[-4000:]
    for job in ("kwb-plan-shell", "kwb-shard-shell: [1/8]", "kwb-shard-shell: [2/8]", "kwb-merge-shell"):
        assert job in log
    assert "nothing to run (the plan has 2 shards)" in log  # jobs 3..8 of `parallel: 8`

    plan = json.loads((proj / "plan.json").read_text())
    expected = subprocess.run([str(ROOT / ".venv" / "bin" / "kwb"), "ci", "plan", "--shards", "2",
                               "--variants", "series,baseline", "--fs", "ext4"], capture_output=True,
                              text=True, timeout=120, check=True).stdout
    assert plan == json.loads(expected)
    merged = proj / "merged" / "latest"
    results = json.loads((merged / "results.json").read_text())
    junit = (merged / "junit.xml").read_text()
    assert ci.check_merged(plan, results, junit) == []
    assert len(results["run"]["shards"]) == 2
    assert {(j["variant"], j["fs"], j["workload"]) for j in results["jobs"]} == \
        {("series", "ext4", "fio-iouring"), ("baseline", "ext4", "fio-iouring")}
    assert 'classname="series.ext4" name="fio-iouring"' in junit
    assert 'classname="baseline.ext4" name="fio-iouring"' in junit
    report = (merged / "report.md").read_text()
    assert report.startswith("**kwb") and "ext4" in report
    assert (merged / "report.html").is_file()


def test_a_shard_without_the_other_kind_passes_and_leaves_that_to_the_merge(tmp_path: Path) -> None:
    import io

    from test_pipeline import Recorder, _opts

    from harness.core.progress import Progress
    from harness.orchestrate.pipeline import run_pipeline

    console = io.StringIO()
    opts = _opts(tmp_path, matrix={"baseline": ["ext4"]})
    assert run_pipeline(opts, Recorder().stages(), Progress(quiet=True, stream=console)) == 0
    data = json.loads((tmp_path / "out" / "latest" / "results.json").read_text())
    assert data["verdict"]["reasons"] == ["no series variant in this run"]  # said, for the merge to judge
    assert "shard verdict: PASS" in console.getvalue()
    # A failure of the shard's own jobs still fails it.
    from test_report_results import synthetic_jobs

    bad = Recorder(jobs=synthetic_jobs(lost_cqe_flagged=False))
    opts = _opts(tmp_path, matrix={"mutant-lost-cqe": ["ext4"], "series": ["ext4"]})
    assert run_pipeline(opts, bad.stages(), Progress(quiet=True, stream=io.StringIO())) == 1
