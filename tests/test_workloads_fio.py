"""fio workloads: JSON parsing (recorded host fio 3.33 output), command lines, job outcomes on a FakeGuest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from test_workloads_fakeguest import DATA, FakeGuest

from harness.workloads import catalogue, fio
from harness.workloads.model import JobStatus, Target, WorkloadSpec

EXT4 = Target("ext4", "/dev/vda", "/tmp/kwb/mnt/ext4", "/tmp/kwb/mnt/ext4/kwb-scratch")
BDEV = Target("bdev", "/dev/vdb", None, "/tmp/kwb/scratch-bdev")


def _spec(name: str, **params: object) -> WorkloadSpec:
    spec = catalogue.load_catalogue()[name]
    return replace(spec, params={**spec.params, **params})


def test_extract_json_trims_text_around_it() -> None:
    text = (DATA / "psync.json").read_text()
    assert text.startswith("note: both iodepth")  # as fio really printed it
    data = fio.extract_json("garbage before\n" + text + "\ntrailing text\n")
    assert data["jobs"][0]["job options"]["ioengine"] == "psync"
    with pytest.raises(ValueError, match="no JSON"):
        fio.extract_json("fio: unrecognized option '--bogus=1'\n")
    with pytest.raises(ValueError, match="unparsable"):
        fio.extract_json('{"jobs": [')
    with pytest.raises(ValueError, match="no jobs"):
        fio.extract_json('{"fio version": "fio-3.33"}')


def test_parse_recorded_io_uring_json() -> None:
    m = fio.parse_fio(fio.extract_json((DATA / "io_uring.json").read_text()))
    assert m["iops"] == pytest.approx(38716.141929)
    assert m["total_ios"] == 77471 and m["ctx"] == 2356 and m["error"] == 0
    assert m["usr_cpu"] == pytest.approx(5.65) and m["sys_cpu"] == pytest.approx(33.25)
    assert m["clat_p50_us"] == pytest.approx(481.28) and m["clat_p99_us"] is not None
    assert m["cpu_per_io_us"] == pytest.approx((5.65 + 33.25) / 100 * 2.001 / 77471 * 1e6, rel=1e-3)
    forced = fio.parse_fio(fio.extract_json((DATA / "io_uring-forced.json").read_text()))
    assert forced["ctx"] > 10 * m["ctx"]  # the io-wq path switches context per read, even on the host


def test_parse_stat_and_summary() -> None:
    assert fio.parse_stat("cpu  100 0 100 800 50 0 0 0 0 0") == (200, 1050)
    s = fio.summarise([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0 and s["stdev"] == 1.0


def test_fio_argv_modes() -> None:
    spec = _spec("fio-iouring")
    p = fio.FioParams.from_dict(spec.params)
    argv = fio.fio_argv(spec, p, "/f")
    assert "--ioengine=io_uring" in argv and "--iodepth=32" in argv and "--direct=0" in argv
    assert "--force_async=1" not in argv and "--output-format=json" in argv and "--time_based=1" in argv
    forced = _spec("fio-iouring-forced-async")
    assert "--force_async=1" in fio.fio_argv(forced, fio.FioParams.from_dict(forced.params), "/f")
    assert fio.data_file(BDEV, p) == "/dev/vdb"
    assert fio.data_file(EXT4, p) == "/tmp/kwb/mnt/ext4/kwb-fio/data-1024M"


def test_plain_io_uring_shows_async_path(tmp_path: Path) -> None:
    g = FakeGuest()
    r = fio.run_job(g, _spec("fio-iouring"), EXT4, tmp_path)
    assert r.status is JobStatus.PASS, r.reason
    assert r.metrics["repeats"] == 3 and r.metrics["iops"]["median"] == pytest.approx(38716.141929)
    assert set(r.metrics["iops"]) >= {"median", "min", "max", "stdev"}
    assert r.evidence["counts"]["callback"] > 0 and r.evidence["counts"]["iowq_enqueue"] == 0
    assert [(c["name"], c["ok"]) for c in r.evidence["checks"]] == [("async-path", True)]
    assert r.evidence["probes"]["points"]["should_retry"]["reason"].startswith("not probeable")
    assert r.evidence["iowq_workers_max"] == 0 and r.evidence["path"] == "async"
    assert r.metrics["guest_busy_pct"]["median"] == pytest.approx(100 * 400 / 500)
    assert r.metrics["fio_wall_s"]["median"] == pytest.approx(2.5)
    for name in ("command", "stdout", "stderr", "exitcode", "fio-1.json", "fio-3.json"):
        assert (tmp_path / name).is_file(), name
    assert "--ioengine=io_uring" in (tmp_path / "command").read_text()
    # layout happened once, drop_caches before every repeat
    assert sum("--name=kwb-layout" in c for c in g.commands) == 1
    assert not any("drop_caches" in c for c in g.commands)  # invalidate=1 targets the data file
    # the counters are read inside each repeat's command, not in round trips of their own
    assert not any("kprobe_profile" in c and "fio --name" not in c for c in g.commands)
    assert [len(r["kprobe_hits"]) > 0 for r in r.metrics["per_repeat"]] == [True] * 3


def test_forced_async_shows_iowq_path(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(), _spec("fio-iouring-forced-async"), BDEV, tmp_path)
    assert r.status is JobStatus.PASS, r.reason
    assert r.evidence["counts"]["iowq_enqueue"] > 0 and r.evidence["iowq_workers_max"] == 5
    assert r.evidence["path"] == "io-wq"
    assert r.evidence["layout_s"] is None  # the raw device needs no data file


def test_baseline_kernel_fails_async_path_on_series_kind(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(mode="baseline"), _spec("fio-iouring"), EXT4, tmp_path)
    assert r.status is JobStatus.FAIL
    assert "async-path not shown" in r.reason and "io_async_buf_func 0 hits" in r.reason


def test_baseline_kind_expects_the_reverse(tmp_path: Path) -> None:
    spec = replace(_spec("fio-iouring"), variant_kind="baseline")
    assert fio.run_job(FakeGuest(mode="baseline"), spec, EXT4, tmp_path / "b").status is JobStatus.PASS
    r = fio.run_job(FakeGuest(mode="series"), spec, EXT4, tmp_path / "s")
    assert r.status is JobStatus.FAIL and "no-callback not shown" in r.reason


def test_no_kprobes_means_no_verdict(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(tracefs=False), _spec("fio-iouring"), EXT4, tmp_path)
    assert r.status is JobStatus.FAIL and "no evidence" in r.reason
    assert r.metrics["iops"]["median"] > 0  # measured anyway


def test_psync_has_no_path_checks(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(), _spec("fio-psync"), EXT4, tmp_path)
    assert r.status is JobStatus.PASS and r.evidence["checks"] == []
    assert r.evidence["counts"]["callback"] == 0


def test_fio_missing_in_guest(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(fio=False), _spec("fio-iouring"), EXT4, tmp_path)
    assert r.status is JobStatus.ERROR and r.reason == "fio not found in guest"
    assert (tmp_path / "command").is_file()


def test_fio_failure_and_hang(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(fio_fail_on="randread"), _spec("fio-iouring"), EXT4, tmp_path / "f")
    assert r.status is JobStatus.FAIL and "fio exited 1 on repeat 1" in r.reason
    assert (tmp_path / "f" / "exitcode").read_text() == "1\n"
    r = fio.run_job(FakeGuest(hang_on="fio-iouring"), _spec("fio-iouring"), EXT4, tmp_path / "h")
    assert r.status is JobStatus.TIMEOUT and "repeat 1" in r.reason


def test_job_timeout_bounds_every_step(tmp_path: Path) -> None:
    spec = replace(_spec("fio-iouring"), timeout=0.5)
    r = fio.run_job(FakeGuest(), spec, EXT4, tmp_path)
    assert r.status is JobStatus.TIMEOUT and "exceeded its timeout" in r.reason


def test_result_is_json_serialisable(tmp_path: Path) -> None:
    r = fio.run_job(FakeGuest(), _spec("fio-iouring"), EXT4, tmp_path)
    assert r.status is JobStatus.PASS and r.metrics["per_repeat"] and r.evidence["probes"]
    # what results.json holds reads back as the same result: nothing is lost or changed in JSON
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()


def test_drop_caches_before_every_repeat_when_asked(tmp_path: Path) -> None:
    g = FakeGuest()
    r = fio.run_job(g, _spec("fio-iouring", drop_caches=True), EXT4, tmp_path)
    assert r.status is JobStatus.PASS
    assert sum("echo 3 > /proc/sys/vm/drop_caches" in c for c in g.commands) == 3
