"""Probes: KWB-RESULT parsing, status mapping, params, argv, run_job with a fake guest; real builds/runs.

The recorded lines below are real probe output from the host (6.18 kernel, ext4), trimmed to fewer
counters. Real tests build every probe, run it on the host, prove it can fail (``--self-test-fail``)
and that its watchdog turns a hang into a failure; the guest test runs them on a booted kernel.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.core.errors import InfraError, UserError
from harness.core.run import Result
from harness.kernel.build import KernelBuild
from harness.vm import markers
from harness.vm.markers import Marker
from harness.workloads import probes, runner
from harness.workloads.model import GuestSession, JobStatus, Target, WorkloadCommand, WorkloadSpec

# What probe_common.h prints last: `KWB-RESULT {json}` (test_markers pins the spelling).
PASS_LINE = markers.line(Marker.RESULT, (
    '{"probe": "probe-kbuf-cancel", "ok": true, "skip": false, "self_test_fail": false, '
    '"reason": "all 32 buffers came back after 144 cancels and 4 child exits", "counters": '
    '{"buffers_returned_in_cqe": 160, "buffer_returned_twice": 0, "cqes": 368, '
    '"buffers_left_in_group": 32, "distinct_buffer_ids": 32}}'))
FAIL_LINE = markers.line(Marker.RESULT, (
    '{"probe": "probe-completion-accounting", "ok": false, "skip": false, '
    '"self_test_fail": true, "reason": "round 0: 1 of 65 CQEs never arrived (waited 2000 ms)", '
    '"counters": {"cqes": 64, "missing_cqes": 1}}'))
HANG_LINE = markers.line(Marker.RESULT, (
    '{"probe": "probe-data-integrity", "ok": false, "skip": false, '
    '"self_test_fail": false, "reason": "internal timeout: the probe did not finish (hang)", '
    '"counters": {"reads": 12}}'))
SKIP_LINE = markers.line(Marker.RESULT, (
    '{"probe": "probe-kbuf-cancel", "ok": false, "skip": true, "self_test_fail": false, '
    '"reason": "io_uring unavailable: Operation not permitted", "counters": {}}'))
SETUP_LINE = markers.line(Marker.RESULT, (
    '{"probe": "probe-short-read", "ok": false, "skip": false, "self_test_fail": false, '
    '"reason": "cannot open /x/.kwb: Read-only file system", "counters": {}}'))


def _spec(name: str = "probe-kbuf-cancel", **params: object) -> WorkloadSpec:
    return WorkloadSpec(name=name, kind="probe", description="", filesystems=["ext4"], timeout=120,
                        must_show=["probe-ok"], concerns=["kbuf-leak-on-cancel"], params=dict(params))


EXT4 = Target("ext4", "/dev/vda", "/tmp/kwb/mnt/ext4", "/tmp/kwb/mnt/ext4/kwb-scratch")
BDEV = Target("bdev", "/dev/vdb", None, "/tmp/kwb/scratch-bdev")


# --- parsing and mapping ---------------------------------------------------------------------------

def test_parse_takes_the_last_result_line() -> None:
    earlier = markers.line(Marker.RESULT, '{"ok": false}')
    out = f"noise\n{earlier}\nmore noise\n{PASS_LINE}\n"
    data = probes.parse_result(out)
    assert data is not None and data["ok"] is True and data["counters"]["cqes"] == 368


@pytest.mark.parametrize("text", ["", "no result here\n", markers.line(Marker.RESULT, "{not json"),
                                  markers.line(Marker.RESULT, "[1, 2]"), markers.line(Marker.RESULT),
                                  f"{PASS_LINE}\n{markers.line(Marker.RESULT, '{cut')}\n"])
def test_parse_without_a_usable_line_is_none(text: str) -> None:
    assert probes.parse_result(text) is None


@pytest.mark.parametrize(("rc", "timed_out", "stdout", "status", "words"), [
    (0, False, PASS_LINE, JobStatus.PASS, "all 32 buffers"),
    (1, False, FAIL_LINE, JobStatus.FAIL, "never arrived"),
    (1, False, HANG_LINE, JobStatus.FAIL, "internal timeout"),
    (77, False, SKIP_LINE, JobStatus.SKIP, "skipped: io_uring unavailable"),
    (2, False, SETUP_LINE, JobStatus.ERROR, "could not set up"),
    (-1, True, "", JobStatus.TIMEOUT, "hung: killed after 120s"),
    (139, False, "partial output\n", JobStatus.FAIL, "without a KWB-RESULT line"),
    (127, False, "", JobStatus.ERROR, "not runnable"),
    (0, False, FAIL_LINE, JobStatus.FAIL, "never arrived"),      # exit 0 but ok=false: not a pass
    (3, False, PASS_LINE, JobStatus.FAIL, "contradicts"),       # unknown exit code with ok=true
])
def test_interpret_maps_exit_and_result(rc: int, timed_out: bool, stdout: str, status: JobStatus,
                                        words: str) -> None:
    outcome = probes.interpret("p", rc, timed_out, stdout, 120)
    assert outcome.status is status
    assert words in outcome.reason


def test_timeout_keeps_counters_printed_before_the_kill() -> None:
    outcome = probes.interpret("p", -1, True, HANG_LINE, 60)
    assert outcome.status is JobStatus.TIMEOUT and outcome.counters == {"reads": 12}


# --- params and argv -------------------------------------------------------------------------------

def test_params_validation_names_the_field() -> None:
    with pytest.raises(UserError, match=r"params\.bogus"):
        probes.validate_params({"bogus": 1}, "w.toml")
    with pytest.raises(UserError, match=r"params\.iterations.*non-negative"):
        probes.validate_params({"iterations": "4"}, "w.toml")
    with pytest.raises(UserError, match=r"params\.self_test_fail"):
        probes.validate_params({"self_test_fail": 1}, "w.toml")
    with pytest.raises(UserError, match="unknown probe 'probe-nope'"):
        probes.validate_params({"probe": "probe-nope"}, "w.toml")
    probes.validate_params({"iterations": 3, "probe": "probe-short-read"}, "w.toml")


def test_argv_uses_scratch_dir_on_a_filesystem_and_the_device_for_bdev() -> None:
    p = probes.ProbeParams(iterations=3, size_mb=8, self_test_fail=True)
    argv = probes.probe_argv(Path("/c/probe-x"), EXT4, p, 100)
    assert argv[:3] == ["/c/probe-x", "--timeout", "100"]
    assert argv[argv.index("--dir") + 1] == EXT4.scratch
    assert argv[-5:] == ["--size-mb", "8", "--iterations", "3", "--self-test-fail"]
    bargv = probes.probe_argv(Path("/c/probe-x"), BDEV, probes.ProbeParams(), 100)
    assert bargv[bargv.index("--file") + 1] == "/dev/vdb" and "--dir" not in bargv


def test_watchdog_fires_inside_the_outer_timeout() -> None:
    assert probes.watchdog_seconds(180, probes.ProbeParams()) == 160
    assert probes.watchdog_seconds(10, probes.ProbeParams()) == 5
    assert probes.watchdog_seconds(180, probes.ProbeParams(probe_timeout=30)) == 30


def test_every_catalogued_probe_has_a_source() -> None:
    names = probes.available()
    for expected in ("probe-completion-accounting", "probe-data-integrity", "probe-kbuf-cancel",
                     "probe-iopoll-buffered", "probe-ring-exit-inflight", "probe-short-read",
                     "probe-lock-page-async"):
        assert expected in names


def test_build_hash_changes_with_the_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "probes"
    shutil.copytree(probes.SOURCE_DIR, src)
    monkeypatch.setattr(probes, "SOURCE_DIR", src)
    before = probes.build_hash()
    assert probes.build_hash() == before
    (src / "probe-short-read.c").write_text((src / "probe-short-read.c").read_text() + "\n/* edit */\n")
    assert probes.build_hash() != before


def test_a_run_keeps_its_probe_directory_when_a_source_changes(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # the guest's payload holds the binaries built at boot: an edit mid-run must not move them
    src = tmp_path / "probes"
    shutil.copytree(probes.SOURCE_DIR, src)
    monkeypatch.setattr(probes, "SOURCE_DIR", src)
    first = probes.build_dir()
    (src / "probe-short-read.c").write_text((src / "probe-short-read.c").read_text() + "\n/* edit */\n")
    assert probes.build_dir() == first
    assert first.name != probes.build_hash(), "the next run builds the edited sources"


def test_build_failure_is_one_line_naming_the_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "probes"
    shutil.copytree(probes.SOURCE_DIR, src)
    (src / "probe-broken.c").write_text("int main(void) { return undeclared; }\n")
    monkeypatch.setattr(probes, "SOURCE_DIR", src)
    monkeypatch.setenv("KWB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InfraError, match=r"building probe probe-broken failed: .*undeclared") as exc:
        probes.build_probe("probe-broken")
    assert "\n" not in str(exc.value)


# --- run_job with a fake guest ---------------------------------------------------------------------

@dataclass
class _Guest:
    """Answers the probe command with recorded output, and the kprobe scripts like a 6.12 kernel."""

    stdout: str = PASS_LINE + "\n"
    rc: int = 0
    timed_out: bool = False
    tracing: bool = True
    commands: list[str] = field(default_factory=list)
    timeouts: list[float] = field(default_factory=list)

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if "--timeout" in command:
            self.timeouts.append(timeout)
            return Result(["ssh"], -1 if self.timed_out else self.rc, self.stdout, "", 0.1, self.timed_out)
        if markers.emits(command, Marker.TRACEABLE):
            names = "__folio_lock_async\nio_async_buf_func\nio_wq_enqueue\n"
            out = (markers.block(Marker.TRACEABLE, names, "available_filter_functions") if self.tracing
                   else markers.line(Marker.NOTRACE) + "\n")
            return Result(["ssh"], 0, out, "", 0.1)
        if command.startswith("cat /sys/kernel/tracing/kprobe_profile"):
            return Result(["ssh"], 0, "  kwb/callback 120 0\n  kwb/async_lock 64 0\n  kwb/iowq_enqueue 0 0\n"
                          "  kwb/fn_filemap_read_folio 7 0\n", "", 0.1)
        return Result(["ssh"], 0, "", "", 0.1)

    def probe_command(self) -> str:
        return next(c for c in self.commands if "--timeout" in c)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return True


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []

    def build(name: str, **_: object) -> Path:
        built.append(name)
        return Path(f"/cache/probes/h/{name}")

    monkeypatch.setattr(probes, "build_probe", build)
    return built


def test_run_job_pass_records_counters_and_files(tmp_path: Path, fake_build: list[str]) -> None:
    guest = _Guest()
    res = probes.run_job(guest, _spec(), EXT4, tmp_path)
    assert res.status is JobStatus.PASS, res.reason
    assert res.metrics["buffers_left_in_group"] == 32
    assert res.evidence["checks"] == [{"name": "probe-ok", "ok": True, "reason": res.reason}]
    assert fake_build == ["probe-kbuf-cancel"]
    assert guest.timeouts == [120]
    want = f"cd {EXT4.scratch} && /cache/probes/h/probe-kbuf-cancel --timeout 100 --dir"
    assert want in guest.probe_command()
    assert res.evidence["counts"]["callback"] == 120 and res.evidence["counts"]["iowq_enqueue"] == 0
    assert res.evidence["counts"]["wake_match"] is None, "an unprobeable role is None, with its reason"
    assert "not probeable" in res.evidence["probes"]["points"]["wake_match"]["reason"]
    assert (tmp_path / "exitcode").read_text() == "0\n"
    assert json.loads((tmp_path / "probe-result.json").read_text())["ok"] is True
    assert (tmp_path / "stdout").read_text().startswith(markers.line(Marker.RESULT))


def test_the_hook_runs_around_the_probe_inside_its_path_counters(tmp_path: Path,
                                                                 fake_build: list[str]) -> None:
    guest = _Guest()
    told: list[WorkloadCommand] = []

    @contextmanager
    def hook(g: GuestSession, command: WorkloadCommand) -> Iterator[None]:
        told.append(command)
        g.run("echo hook-before", 10)
        yield
        g.run("echo hook-after", 10)

    spec = _spec("probe-lock-page-async@contended", probe="probe-lock-page-async", phase="contended")
    res = probes.run_job(guest, spec, EXT4, tmp_path, hook=hook)
    assert res.status is JobStatus.PASS, res.reason
    (command,) = told
    assert (command.program, command.job, command.command) == (
        "probe-lock-page-async", "ext4/probe-lock-page-async@contended", guest.probe_command())
    i = guest.commands.index("echo hook-before")
    assert any("p:kwb/" in c for c in guest.commands[:i])  # the path counters are armed first
    assert guest.commands[i + 1:i + 3] == [command.command, "echo hook-after"]
    assert guest.commands[i + 3].startswith("cat /sys/kernel/tracing/kprobe_profile")  # and read after


def test_run_job_failure_and_timeout(tmp_path: Path, fake_build: list[str]) -> None:
    res = probes.run_job(_Guest(FAIL_LINE, rc=1), _spec("probe-completion-accounting"), EXT4, tmp_path / "a")
    assert res.status is JobStatus.FAIL and "never arrived" in res.reason and res.exitcode == 1
    res = probes.run_job(_Guest("", timed_out=True), _spec(), EXT4, tmp_path / "b")
    assert res.status is JobStatus.TIMEOUT and res.exitcode is None
    assert (tmp_path / "b" / "exitcode").read_text() == ""


def test_run_job_uses_params_probe_and_self_test(tmp_path: Path, fake_build: list[str]) -> None:
    guest = _Guest()
    spec = _spec("my-workload", probe="probe-kbuf-cancel", self_test_fail=True)
    probes.run_job(guest, spec, BDEV, tmp_path)
    assert fake_build == ["probe-kbuf-cancel"]
    assert guest.probe_command().endswith("--file /dev/vdb --self-test-fail")


def test_kprobes_extra_functions_disabled_and_absent(tmp_path: Path, fake_build: list[str]) -> None:
    guest = _Guest()
    res = probes.run_job(guest, _spec("probe-lock-page-async", phase="contended"), EXT4, tmp_path / "a")
    assert guest.probe_command().endswith("--phase contended")
    armed = next(c for c in guest.commands if "p:kwb/" in c)
    assert "p:kwb/fn_filemap_read_folio filemap_read_folio" in armed
    assert res.evidence["counts"]["fn_filemap_read_folio"] == 7
    off = _Guest()
    res = probes.run_job(off, _spec(kprobes=False), EXT4, tmp_path / "b")
    assert res.evidence["kprobes"] == "disabled by params.kprobes" and len(off.commands) == 1
    bare = _Guest(tracing=False)
    res = probes.run_job(bare, _spec(), EXT4, tmp_path / "c")
    assert res.status is JobStatus.PASS and "CONFIG_KPROBE_EVENTS" in res.evidence["probes"]["reason"]


def test_run_job_build_error_is_an_error_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(name: str, **_: object) -> Path:
        raise InfraError(f"building probe {name} failed: gcc: not found")

    monkeypatch.setattr(probes, "build_probe", broken)
    guest = _Guest()
    res = probes.run_job(guest, _spec(), EXT4, tmp_path)
    assert res.status is JobStatus.ERROR and "gcc: not found" in res.reason
    assert guest.commands == []
    assert "gcc: not found" in (tmp_path / "stderr").read_text()


def test_run_job_unknown_check_fails_the_job(tmp_path: Path, fake_build: list[str]) -> None:
    spec = _spec()
    spec.must_show = ["probe-ok", "callback-hits"]
    res = probes.run_job(_Guest(), spec, EXT4, tmp_path)
    assert res.status is JobStatus.FAIL and "callback-hits not shown" in res.reason


# --- real: compile and run on the host --------------------------------------------------------------

QUICK = {"probe-completion-accounting": ["--iterations", "4"], "probe-data-integrity": ["--seconds", "2"],
         "probe-lock-page-async": ["--iterations", "8"],
         "probe-kbuf-cancel": ["--iterations", "2"], "probe-iopoll-buffered": ["--iterations", "2"],
         "probe-ring-exit-inflight": ["--iterations", "8", "--size-mb", "32"],
         "probe-short-read": ["--iterations", "1"], "probe-invalidate-race": ["--seconds", "2"],
         "probe-no-rasync": ["--iterations", "2"]}


@pytest.mark.host
@pytest.mark.real
@pytest.mark.parametrize("name", sorted(QUICK))
def test_real_probe_passes_on_the_host_and_can_fail(name: str, tmp_path: Path) -> None:
    outcome, rc = probes.run_on_host(name, tmp_path, args=QUICK[name], timeout=120)
    assert (rc, outcome.status) == (0, JobStatus.PASS), outcome.reason
    assert outcome.counters, "a passing probe reports its counters"
    bad, rc = probes.run_on_host(name, tmp_path, args=[*QUICK[name], "--self-test-fail"], timeout=120)
    assert (rc, bad.status) == (1, JobStatus.FAIL), bad.reason
    assert bad.result is not None and bad.result["self_test_fail"] is True
    assert not list(tmp_path.glob(".kwb-*")), "the probe removes its scratch file"


@pytest.mark.host
@pytest.mark.real
def test_real_partial_folio_probe_on_a_loop_device(tmp_path: Path) -> None:
    """The raw-device probe on the host: a loop device over a scratch file stands in for the guest's disk."""
    from harness.core.run import run

    image = tmp_path / "disk.img"
    image.write_bytes(b"")
    os.truncate(image, 64 << 20)
    attach = run(["losetup", "-f", "--show", str(image)], timeout=30)
    if not attach.ok:
        pytest.skip(f"no loop device on this host: {attach.stderr.strip() or attach.returncode}")
    device = attach.stdout.strip()
    try:
        binary = probes.build_probe("probe-partial-folio")
        for extra, want_rc, status in (([], 0, JobStatus.PASS), (["--self-test-fail"], 1, JobStatus.FAIL)):
            res = run([str(binary), "--timeout", "60", "--file", device, *extra], timeout=90)
            outcome = probes.interpret("probe-partial-folio", res.returncode, res.timed_out, res.stdout, 90)
            assert (res.returncode, outcome.status) == (want_rc, status), outcome.reason
        assert outcome.counters["partial_pages"] > 0
        bsize = run(["blockdev", "--getbsz", device], timeout=30)
        assert bsize.stdout.strip() == "4096", "the probe puts the device's block size back"
    finally:
        run(["losetup", "-d", device], timeout=30)


@pytest.mark.host
@pytest.mark.real
def test_real_self_test_fail_via_environment(tmp_path: Path) -> None:
    outcome, rc = probes.run_on_host("probe-short-read", tmp_path, args=["--iterations", "1"],
                                     env={"KWB_PROBE_SELF_TEST_FAIL": "1"})
    assert rc == 1 and "wrong byte counts" in outcome.reason


@pytest.mark.host
@pytest.mark.real
def test_real_watchdog_turns_a_hang_into_a_failure(tmp_path: Path) -> None:
    # 30 s of work under a 2 s alarm: the probe must report itself as hung, with counters, and exit 1.
    binary = probes.build_probe("probe-data-integrity")
    from harness.core.run import run
    res = run([str(binary), "--timeout", "2", "--seconds", "30", "--dir", str(tmp_path)], timeout=60)
    outcome = probes.interpret("probe-data-integrity", res.returncode, res.timed_out, res.stdout, 60)
    assert res.returncode == 1 and res.duration < 20
    assert "internal timeout" in outcome.reason and outcome.counters["reads"] > 0
    assert not list(tmp_path.glob(".kwb-*"))


@pytest.mark.host
@pytest.mark.real
def test_real_build_is_skipped_when_sources_are_unchanged() -> None:
    first = probes.build_all()
    stamps = {n: p.stat().st_mtime_ns for n, p in first.items()}
    again = probes.build_all()
    assert {n: p.stat().st_mtime_ns for n, p in again.items()} == stamps


# --- real: in the guest, through the workload runner ------------------------------------------------

def _catalogue_with_every_probe() -> dict[str, WorkloadSpec]:
    """The project catalogue, plus an entry for any probe it does not list yet."""
    from harness.workloads.catalogue import load_catalogue

    cat = dict(load_catalogue())
    for name in probes.available():
        cat.setdefault(name, WorkloadSpec(name=name, kind="probe", description=name,
                                          filesystems=["ext4", "xfs", "btrfs"], timeout=180,
                                          must_show=["probe-ok"]))
    return cat


@pytest.mark.boot
@pytest.mark.real
def test_real_probes_in_the_guest_on_ext4_and_the_raw_device(built_kernel: KernelBuild,
                                                              tmp_path: Path) -> None:
    names = probes.available()
    cat = _catalogue_with_every_probe()
    results = runner.run_variant("series", ["ext4", "bdev"], names, tmp_path, kernel=built_kernel,
                                 catalogue=cat).jobs
    by_name = {(r.fs, r.workload): r for r in results}
    expected = [(fs, n) for fs in ("ext4", "bdev") for n in names if fs in cat[n].filesystems]
    assert sorted(by_name) == sorted(expected)
    assert ("bdev", "probe-short-read") in by_name, "the probes read the raw device too"
    for key in expected:
        r, name = by_name[key], key[1]
        assert r.status is JobStatus.PASS, f"{name}: {r.status.value}: {r.reason}"
        assert r.metrics, f"{name} reported no counters"
