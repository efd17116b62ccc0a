"""liburing suite: classification, known failures, test selection, guest commands, run_job with a fake guest.

Real tests fetch Debian's liburing source (apt-get source), build the tests on the host, run the curated
subset there, and run it in a booted guest on ext4 through the workload runner.
"""

from __future__ import annotations

import subprocess
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
from harness.workloads import liburing, runner
from harness.workloads.model import GuestSession, JobStatus, Target, WorkloadCommand, WorkloadSpec

EXT4 = Target("ext4", "/dev/vda", "/tmp/kwb/mnt/ext4", "/tmp/kwb/mnt/ext4/kwb-scratch")
BDEV = Target("bdev", "/dev/vdb", None, "/tmp/kwb/scratch-bdev")


def _reason(k: liburing.KnownFailure | None) -> str | None:
    return k.reason if k is not None else None


def _spec(name: str = "liburing-subset", timeout: float = 600, **params: object) -> WorkloadSpec:
    return WorkloadSpec(name=name, kind="liburing", description="", filesystems=["ext4"], timeout=timeout,
                        must_show=["tests-pass"], params=dict(params))


# --- classification -----------------------------------------------------------------------------

@pytest.mark.parametrize(("rc", "timed_out", "output", "status"), [
    (0, False, "", "pass"),
    (77, False, "Kernel does not support buffer rings\n", "skip"),
    (0, False, "Skipping, not supported on this kernel\n", "skip"),
    (0, False, "File/device/fs doesn't support polled IO\n", "skip"),   # iopoll.t on a virtio disk
    (1, False, "test_write_efbig failed\n", "fail"),
    (124, False, "", "timeout"),
    (-1, True, "", "timeout"),
    (139, False, "", "fail"),
])
def test_classify(rc: int, timed_out: bool, output: str, status: str) -> None:
    assert liburing.classify("t", rc, timed_out, output, 1.0).status == status


def test_classify_names_the_failure_and_marks_known_ones() -> None:
    o = liburing.classify("read-write", 1, False, "setrlimit: EPERM\ntest_write_efbig failed\n", 1.234)
    assert o.reason == "exit 1: test_write_efbig failed" and o.duration == 1.23
    listed = liburing.KnownFailure("read-write", ("*",), (), "sandbox refuses setrlimit", ("fail",))
    k = liburing.classify("read-write", 1, False, "x\n", 1.0, known=listed)
    assert k.status == "known-fail" and "known fail: sandbox refuses setrlimit" in k.reason
    # listed for a failure, it hangs: that is not what is known, so it stays a timeout
    assert liburing.classify("read-write", 124, False, "", 1.0, known=listed).status == "timeout"
    xpass = liburing.classify("read-write", 0, False, "", 1.0, known=listed)
    assert xpass.status == "xpass" and "listed as a known fail" in xpass.reason


def test_wrong_result_of_the_racy_sqpoll_test_fails_the_job(tmp_path: Path, fake_suite: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """d4ae271dfaae is known to hang (timeout), not to read wrong data: a wrong result fails the job,
    its hang is a known failure, and its pass is an xpass, all with the project's own list."""
    monkeypatch.setattr(liburing, "KNOWN_FAILURES", Path(liburing.__file__).resolve().parent
                        / "liburing-known-failures.toml")
    wrong = _Guest({"d4ae271dfaae": (1, "res=2048 wanted 4096\n", False)})
    res = liburing.run_job(wrong, _spec(), EXT4, tmp_path / "wrong")
    by = {s["name"]: s for s in res.subresults}
    assert res.status is JobStatus.FAIL and "failed: d4ae271dfaae" in res.reason
    assert by["d4ae271dfaae"]["status"] == "fail" and "known timeout only" in by["d4ae271dfaae"]["reason"]
    hung = liburing.run_job(_Guest({"d4ae271dfaae": (0, "", True)}), _spec(), EXT4, tmp_path / "hung")
    assert hung.status is JobStatus.PASS, hung.reason
    assert {s["name"]: s["status"] for s in hung.subresults}["d4ae271dfaae"] == "known-fail"
    passed = liburing.run_job(_Guest(), _spec(), EXT4, tmp_path / "pass")
    assert passed.status is JobStatus.PASS and passed.metrics["xpass"] == 1 and "1 xpass" in passed.reason


# --- known failures -----------------------------------------------------------------------------

def test_project_known_failures_load_and_each_has_a_reason() -> None:
    known = liburing.load_known_failures()
    assert known and all(k.reason for k in known)
    # the racy SQPOLL test is known everywhere; tests in the subset that must pass are not
    for release, fs in (("6.12.117", "xfs"), ("6.18.1", "host"), ("5.8.0", "ext4")):
        assert "racy" in (_reason(liburing.known_failure(known, "d4ae271dfaae", release, fs)) or "")
        racy = liburing.known_failure(known, "d4ae271dfaae", release, fs)
        assert racy is not None and racy.modes == ("timeout",)
        assert _reason(liburing.known_failure(known, "fpos", release, fs)) is None


def test_known_failure_matching_by_release_prefix_and_fs(tmp_path: Path) -> None:
    f = tmp_path / "k.toml"
    f.write_text('[[failure]]\ntest = "a"\nkernels = ["6.12"]\nfilesystems = ["xfs"]\nreason = "r"\n'
                 'modes = ["fail"]\n[[failure]]\ntest = "b"\nkernels = ["*"]\nreason = "any"\n'
                 'modes = ["timeout"]\n')
    known = liburing.load_known_failures(f)
    assert _reason(liburing.known_failure(known, "a", "6.12.117", "xfs")) == "r"
    assert _reason(liburing.known_failure(known, "a", "6.120.1", "xfs")) is None
    assert _reason(liburing.known_failure(known, "a", "6.12.117", "ext4")) is None
    assert _reason(liburing.known_failure(known, "b", "5.8.0-rc1", "btrfs")) == "any"


@pytest.mark.parametrize(("text", "words"), [
    ('[[failure]]\ntest = "a"\nkernels = ["6.12"]\n', "'reason'"),
    ('[[failure]]\ntest = "a"\nkernels = "6.12"\nreason = "r"\n', "'kernels'"),
    ('[[failure]]\ntest = "a"\nkernels = ["*"]\nreason = "r"\nmodes = ["timeout"]\nwhy = 1\n',
     "unknown field"),
    ('[[failure]]\ntest = "a"\nkernels = ["*"]\nreason = "r"\n', "'modes'"),
    ('[[failure]]\ntest = "a"\nkernels = ["*"]\nreason = "r"\nmodes = ["wrong"]\n', "'modes'"),
    ("[[failure]\n", r"liburing known-failures file .*k\.toml: invalid TOML"),
])
def test_malformed_known_failures_name_the_problem(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "k.toml"
    f.write_text(text)
    with pytest.raises(UserError, match=words):
        liburing.load_known_failures(f)


# --- selection, params, commands ----------------------------------------------------------------

BUILT = sorted({*liburing.SUBSET, "accept", "poll", "sq-poll-dup"})


def test_select_subset_full_explicit_and_exclude() -> None:
    assert liburing.select_tests(_spec(), BUILT) == list(liburing.SUBSET)
    assert liburing.select_tests(_spec("liburing-full"), BUILT) == BUILT
    no_poll = [t for t in BUILT if t != "poll"]
    assert liburing.select_tests(_spec(set="full", exclude=["poll"]), BUILT) == no_poll
    assert liburing.select_tests(_spec(tests=["accept", "nop"]), BUILT) == ["accept", "nop"]
    with pytest.raises(InfraError, match="not built: nope"):
        liburing.select_tests(_spec(tests=["nope"]), BUILT)


def test_params_validation() -> None:
    with pytest.raises(UserError, match=r"params\.set"):
        liburing.validate_params({"set": "most"}, "w")
    with pytest.raises(UserError, match=r"params\.tests"):
        liburing.validate_params({"tests": "nop"}, "w")
    with pytest.raises(UserError, match=r"params\.bogus"):
        liburing.validate_params({"bogus": 1}, "w")
    liburing.validate_params({"set": "full", "exclude": ["poll"], "per_test_timeout": 30}, "w")


def test_commands_run_in_the_scratch_dir_or_on_the_device() -> None:
    cmd = liburing.command_for(Path("/c/t"), "read-write", EXT4, "/m/kwb-scratch/liburing", 60)
    assert cmd == ("mkdir -p /m/kwb-scratch/liburing && cd /m/kwb-scratch/liburing && "
                   "timeout -k 5 60 /c/t/read-write.t")
    bcmd = liburing.command_for(Path("/c/t"), "read-write", BDEV, "/tmp/x", 60)
    assert bcmd is not None and bcmd.endswith("/c/t/read-write.t /dev/vdb")
    assert liburing.command_for(Path("/c/t"), "nop", BDEV, "/tmp/x", 60) is None
    # timeout.t execs ./exec-target.t from its working directory
    tcmd = liburing.command_for(Path("/c/t"), "timeout", EXT4, "/w", 60)
    assert tcmd is not None
    assert "ln -sf /c/t/exec-target.t exec-target.t; timeout -k 5 60 /c/t/timeout.t" in tcmd


# --- run_job with a fake guest ------------------------------------------------------------------

@dataclass
class _Guest:
    answers: dict[str, tuple[int, str, bool]] = field(default_factory=dict)   # test -> (rc, output, hang)
    dead_after_hang: bool = False
    commands: list[str] = field(default_factory=list)
    dead: bool = False

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if command == "uname -r":
            return Result(["ssh"], 0, "6.12.117\n", "", 0.01)
        for name, (rc, out, hang) in self.answers.items():
            if f"/{name}.t" in command:
                if hang:
                    self.dead = self.dead_after_hang
                    return Result(["ssh"], -1, "", "", timeout, True)
                return Result(["ssh"], rc, out, "", 0.2)
        return Result(["ssh"], 0, "", "", 0.1)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return not self.dead


@pytest.fixture
def fake_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    test_dir = tmp_path / "suite" / "test"
    test_dir.mkdir(parents=True)
    for name in BUILT:
        (test_dir / f"{name}.t").write_text("")
    monkeypatch.setattr(liburing, "build_tests", lambda tree=None: test_dir)
    known = tmp_path / "known.toml"
    known.write_text('[[failure]]\ntest = "fpos"\nkernels = ["6.12"]\nreason = "flaky on TCG"\n'
                     'modes = ["fail"]\n')
    monkeypatch.setattr(liburing, "KNOWN_FAILURES", known)
    return test_dir


def test_run_job_all_pass(tmp_path: Path, fake_suite: Path) -> None:
    guest = _Guest({"iopoll": (77, "no poll queues\n", False)})
    res = liburing.run_job(guest, _spec(), EXT4, tmp_path / "job")
    assert res.status is JobStatus.PASS, res.reason
    # fpos is listed as a known failure in the fake list: its pass is an xpass, counted apart
    assert res.metrics["pass"] == len(liburing.SUBSET) - 2 and res.metrics["skip"] == 1
    assert res.metrics["xpass"] == 1
    assert {s["name"] for s in res.subresults} == set(liburing.SUBSET)
    assert (tmp_path / "job" / "tests" / "read-write.log").is_file()
    assert any(c.startswith("rm -rf ") for c in guest.commands)
    assert res.evidence["kernel"] == "6.12.117"


def test_run_job_failure_known_failure_and_hang(tmp_path: Path, fake_suite: Path) -> None:
    guest = _Guest({"file-verify": (1, "data mismatch at 4096\n", False), "fpos": (1, "x\n", False),
                    "io-cancel": (0, "", True)})
    res = liburing.run_job(guest, _spec(), EXT4, tmp_path / "job")
    assert res.status is JobStatus.FAIL
    assert "failed: file-verify" in res.reason and "fpos" not in res.reason.split("failed:")[1]
    by = {s["name"]: s for s in res.subresults}
    assert by["fpos"]["status"] == "known-fail" and "flaky on TCG" in by["fpos"]["reason"]
    assert by["io-cancel"]["status"] == "timeout"
    assert res.metrics["timeout"] == 1 and res.metrics["known-fail"] == 1


def test_run_job_stops_when_the_guest_dies(tmp_path: Path, fake_suite: Path) -> None:
    guest = _Guest({"short-read": (0, "", True)}, dead_after_hang=True)
    res = liburing.run_job(guest, _spec(), EXT4, tmp_path / "job")
    by = {s["name"]: s["status"] for s in res.subresults}
    assert by["short-read"] == "timeout" and by["submit-reuse"] == "not-run"
    assert res.status is JobStatus.TIMEOUT


def test_run_job_respects_the_time_budget(tmp_path: Path, fake_suite: Path) -> None:
    res = liburing.run_job(_Guest(), _spec(timeout=10), EXT4, tmp_path / "job")
    assert res.status is JobStatus.TIMEOUT and "budget exhausted" in res.reason
    assert res.metrics["not-run"] == len(liburing.SUBSET)


def test_late_tests_get_what_is_left_of_the_budget(tmp_path: Path, fake_suite: Path) -> None:
    guest = _Guest()
    liburing.run_job(guest, _spec(timeout=100, tests=["nop"]), EXT4, tmp_path / "job")
    (cmd,) = [c for c in guest.commands if "/nop.t" in c]
    limit = int(cmd.split("timeout -k 5 ")[1].split()[0])
    assert liburing.MIN_TEST_TIMEOUT <= limit <= 100 - liburing.GUEST_SLACK < liburing.PER_TEST_TIMEOUT


def test_run_job_on_bdev_runs_only_path_tests(tmp_path: Path, fake_suite: Path) -> None:
    guest = _Guest()
    res = liburing.run_job(guest, _spec(), BDEV, tmp_path / "job")
    ran = {s["name"] for s in res.subresults if s["status"] == "pass"}
    assert ran == {t for t in liburing.SUBSET if t in liburing.PATH_TESTS}
    assert all(c.endswith("/dev/vdb") for c in guest.commands if ".t" in c)


def test_the_hook_is_told_each_command_that_runs_tests(tmp_path: Path, fake_suite: Path) -> None:
    guest = _Guest()
    told: list[WorkloadCommand] = []

    @contextmanager
    def hook(_g: GuestSession, command: WorkloadCommand) -> Iterator[None]:
        told.append(command)
        yield

    res = liburing.run_job(guest, _spec(tests=["nop", "fsync"]), EXT4, tmp_path / "job", hook=hook)
    assert res.status is JobStatus.PASS, res.reason
    assert {(c.program, c.job) for c in told} == {("liburing", "ext4/liburing-subset")}
    assert [c.command for c in told] == [c for c in guest.commands if ".t" in c] and len(told) == 2


def test_pool_output_parsing() -> None:
    out = (markers.block(Marker.LIBURING, "ok\n", "nop", "nop 0 10.50 11.75")
           + markers.block(Marker.LIBURING, "", "fsync", "fsync 1 10.50 13.00")
           + markers.block(Marker.LIBURING, "", "fpos", "nop 0 1.0 2.0")  # names another test
           + markers.block(Marker.LIBURING, "", "iopoll", "iopoll 0 1.0")  # no end uptime
           + markers.line(Marker.LIBURING, "link") + "\npartial\n")  # cut short: no end line
    parsed = liburing.parse_pool_output(out)
    assert parsed == {"nop": (0, 1.25, "ok\n"), "fsync": (1, 2.5, "")}


@dataclass
class _ShellGuest:
    """Runs the guest commands with the host's sh (the scripts are what the guest would run)."""

    commands: list[str] = field(default_factory=list)

    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if command == "uname -r":
            return Result(["ssh"], 0, "6.12.117\n", "", 0.01)
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout)
        return Result(["sh"], p.returncode, p.stdout, p.stderr, 0.1)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return True


def test_parallel_tests_run_side_by_side_in_their_own_dirs(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    scripts = {"nop": "echo nop ran in $(basename $PWD); exit 0",
               "fsync": "touch shared-name; sleep 0.3; ls; exit 1",
               "link": "touch shared-name; echo Skipping, not supported; exit 0",
               "probe": "exit 77", "fpos": "sleep 5", "d4ae271dfaae": "exit 0"}
    for name, body in scripts.items():
        (suite / f"{name}.t").write_text(f"#!/bin/sh\n{body}\n")
        (suite / f"{name}.t").chmod(0o755)
    monkeypatch.setattr(liburing, "build_tests", lambda tree=None: suite)
    monkeypatch.setattr(liburing, "list_tests", lambda d: sorted(scripts))
    monkeypatch.setattr(liburing, "MIN_TEST_TIMEOUT", 1)
    scratch = tmp_path / "fs" / "kwb-scratch"
    target = Target("ext4", "/dev/vda", str(tmp_path / "fs"), str(scratch))
    guest = _ShellGuest()
    spec = _spec(tests=list(scripts), parallel=2, per_test_timeout=2, timeout=2 + liburing.GUEST_SLACK + 60)
    res = liburing.run_job(guest, spec, target, tmp_path / "job")
    by = {s["name"]: s for s in res.subresults}
    assert {n: by[n]["status"] for n in scripts} == {"nop": "pass", "fsync": "fail", "link": "skip",
                                                     "probe": "skip", "fpos": "timeout",
                                                     "d4ae271dfaae": "xpass"}
    assert by["fsync"]["reason"] == "exit 1: shared-name" and by["fsync"]["duration"] >= 0.2
    assert "nop ran in nop" in (tmp_path / "job" / "tests" / "nop.log").read_text()
    (pool,) = [c for c in guest.commands if markers.emits(c, Marker.LIBURING)]  # one command for the job
    assert "wait -n" in pool
    assert "d4ae271dfaae" not in pool  # SQPOLL: alone, after the pool
    assert guest.commands[-2].endswith("/d4ae271dfaae.t")
    assert res.status is JobStatus.FAIL
    # two at a time: fpos (killed after 2 s) overlaps the others, the job does not take their sum
    assert res.duration < 2 + 0.3 + 1.5


def test_run_job_build_failure_is_an_error_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(tree: Path | None = None) -> Path:
        raise InfraError("apt-get source liburing failed: E: no deb-src")

    monkeypatch.setattr(liburing, "build_tests", broken)
    guest = _Guest()
    res = liburing.run_job(guest, _spec(), EXT4, tmp_path / "job")
    assert res.status is JobStatus.ERROR and "no deb-src" in res.reason and guest.commands == []


def test_fetch_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWB_CACHE", str(tmp_path / "cache"))

    def fake_run(argv: list[str], **_: object) -> Result:
        return Result(list(argv), 100, "", "Reading package lists...\nE: You must put some 'deb-src' URIs "
                      "in your sources.list\n", 0.5)

    monkeypatch.setattr(liburing, "run", fake_run)
    with pytest.raises(InfraError, match=r"apt-get source liburing failed: E: You must put some 'deb-src'") \
            as exc:
        liburing.fetch_sources()
    assert "\n" not in str(exc.value)


# --- real ---------------------------------------------------------------------------------------

@pytest.mark.host
@pytest.mark.real
def test_real_subset_builds_and_passes_on_the_host(tmp_path: Path) -> None:
    test_dir = liburing.build_tests()
    built = liburing.list_tests(test_dir)
    assert len(built) > 100 and set(liburing.SUBSET) <= set(built)
    outcomes = liburing.run_on_host(list(liburing.SUBSET), tmp_path, per_test=30)
    bad = [o for o in outcomes if o.status in ("fail", "timeout")]
    assert not bad, bad
    assert sum(o.status == "pass" for o in outcomes) >= len(liburing.SUBSET) - 3


@pytest.mark.boot
@pytest.mark.real
def test_real_subset_in_the_guest_on_ext4(built_kernel: KernelBuild, tmp_path: Path) -> None:
    (res,) = runner.run_variant("series", ["ext4"], ["liburing-subset"], tmp_path, kernel=built_kernel).jobs
    assert res.status is JobStatus.PASS, res.reason
    assert res.metrics["pass"] >= len(liburing.SUBSET) // 2


class _DeadPoolGuest:
    """A guest whose pool command is cut short: ``fsync`` finished, ``nop`` and ``fpos`` had started,
    ``link`` never did; the wedge report names ``fpos.t`` as stuck in the kernel."""

    def __init__(self) -> None:
        self.dead = False
        self.wedge = {"alive": True, "how": "the command could not be killed",
                      "unkillable": ["77 77 R - fpos.t"]}

    def run(self, command: str, timeout: float) -> Result:
        if "uname" in command:
            return Result(["sh"], 0, "6.12.117\n", "", 0.01)
        if not markers.emits(command, Marker.LIBURING_START) or self.dead:
            return Result(["sh"], 0, "", "", 0.01)
        self.dead = True
        start = [markers.line(Marker.LIBURING_START, t) + "\n" for t in ("fsync", "nop", "fpos")]
        out = (start[0] + start[1] + markers.block(Marker.LIBURING, "", "fsync", "fsync 0 1.00 2.00")
               + start[2])
        return Result(["sh"], -1, out, "kwb: abandoned\n", 30.0)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return not self.dead


def test_a_pool_cut_short_names_the_stuck_test_and_keeps_the_unstarted_for_the_next_guest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(liburing, "build_tests", lambda tree=None: tmp_path)
    monkeypatch.setattr(liburing, "list_tests", lambda d: ["fpos", "fsync", "link", "nop"])
    spec = _spec(tests=["fsync", "nop", "fpos", "link"], parallel=2)
    res = liburing.run_job(_DeadPoolGuest(), spec, EXT4, tmp_path / "job")
    by = {s["name"]: (s["status"], s["reason"]) for s in res.subresults}
    assert by["fsync"][0] == "pass"
    assert by["fpos"][0] == "timeout" and "wedged in the kernel during this test" in by["fpos"][1]
    # nop ran beside fpos (not named by the wedge report) and link never started: both go on next guest
    assert by["nop"] == by["link"] == ("not-run", liburing.NOT_RUN_REBOOT + "fpos")
    assert res.evidence["stopped_by"] == ["fpos"] and res.evidence["resume"] == ["nop", "link"]
