"""run_variant with fakes: one boot, per-job files, and the robustness promises (mkfs failure, panic,
hang, kernel warning, missing fio, guest that won't boot) — each a named failure, the run continues."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_workloads_fakeguest import AVAILABLE_612, FakeFactory, FakeGuest, fake_kernel

from harness.core.errors import InfraError, UserError
from harness.core.run import Result
from harness.kernel.build import KernelBuild
from harness.workloads import runner
from harness.workloads.catalogue import load_catalogue
from harness.workloads.fio import FioParams
from harness.workloads.model import GuestSession, JobResult, JobStatus, WorkloadCommand

KERNEL = fake_kernel()


@pytest.fixture(autouse=True)
def _variant_kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "variant_kind", lambda v: "baseline" if v == "baseline" else "series")


@pytest.fixture(autouse=True)
def _no_host_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fake runs must not build GiB templates with the host's mkfs: they take the fallback path (guest
    # mkfs + layout) unless a test passes its own ``templates``.
    def unavailable(fs: str, *_a: object) -> Path:
        raise InfraError("templates disabled in fake runs")
    monkeypatch.setattr(runner, "template_overlay", unavailable)


@dataclass
class FakeTemplates:
    """Records template requests and makes a stand-in overlay file; ``broken`` filesystems fail."""

    broken: tuple[str, ...] = ()
    calls: list[tuple[str, int, list[int], str]] = field(default_factory=list)

    def __call__(self, fs: str, size_mb: int, data_mb: list[int], overlay: Path, progress: object) -> Path:
        self.calls.append((fs, size_mb, list(data_mb), overlay.name))
        if fs in self.broken:
            raise InfraError(f"mkfs.{fs}: unsupported option (fake)")
        overlay.write_bytes(b"QFI\xfb")
        return overlay


def _run(tmp_path: Path, factory: FakeFactory, fss: list[str], workloads: list[str],
         variant: str = "series") -> list[JobResult]:
    return runner.run_variant(variant, fss, workloads, tmp_path, guest_factory=factory, kernel=KERNEL).jobs


def _by(results: list[JobResult]) -> dict[tuple[str, str], JobResult]:
    return {(r.fs, r.workload): r for r in results}


def test_all_pass_one_boot_and_job_files(tmp_path: Path) -> None:
    factory = FakeFactory()
    lines: list[str] = []
    results = runner.run_variant("series", ["ext4", "bdev"], ["fio-iouring", "fio-psync"], tmp_path,
                                 progress=lines.append, guest_factory=factory, kernel=KERNEL).jobs
    assert [(r.fs, r.workload, r.status) for r in results] == [
        ("ext4", "fio-iouring", JobStatus.PASS), ("ext4", "fio-psync", JobStatus.PASS),
        ("bdev", "fio-iouring", JobStatus.PASS), ("bdev", "fio-psync", JobStatus.PASS)]
    assert len(factory.guests) == 1
    job = tmp_path / "series" / "ext4" / "fio-iouring"
    for name in ("command", "stdout", "stderr", "exitcode", "reproduce.sh", "result.json", "dmesg"):
        assert (job / name).is_file(), name
    repro = (job / "reproduce.sh").read_text()
    assert "kwb run --variant series --fs ext4 --workload fio-iouring --out" in repro
    assert json.loads((job / "result.json").read_text())["status"] == "pass"
    summary = json.loads((tmp_path / "series" / "summary.json").read_text())
    assert len(summary["jobs"]) == 4 and summary["kernel"]["release"] == "6.12.117"
    assert summary["accel"] == "tcg"
    g = factory.guests[0]
    assert any("mkfs.ext4" in c and "/dev/vda" in c for c in g.commands)
    assert any("test -b /dev/vdb" in c for c in g.commands)
    assert any("[4/4]" in ln for ln in lines)
    assert factory.disks and all(d.parent.name.startswith("series-") for d in factory.disks)
    assert not any(d.exists() for d in factory.disks)  # the run's private images are removed


def test_mkfs_failure_costs_that_fs_only(tmp_path: Path) -> None:
    results = _by(_run(tmp_path, FakeFactory({"mkfs_fail": ("xfs",)}), ["ext4", "xfs"], ["fio-iouring"]))
    assert results[("xfs", "fio-iouring")].status is JobStatus.ERROR
    assert "mkfs.xfs" in results[("xfs", "fio-iouring")].reason
    assert results[("ext4", "fio-iouring")].status is JobStatus.PASS
    assert (tmp_path / "series" / "xfs" / "fio-iouring" / "reproduce.sh").is_file()


def test_panic_mid_workload_is_a_crash_and_the_guest_reboots(tmp_path: Path) -> None:
    factory = FakeFactory({"panic_on": "--name=fio-iouring "})
    results = _by(_run(tmp_path, factory, ["ext4", "bdev"], ["fio-iouring", "fio-psync"]))
    crash = results[("ext4", "fio-iouring")]
    assert crash.status is JobStatus.CRASH
    assert "kernel" in crash.reason and "NULL pointer" in crash.reason
    assert any("panic" in f for f in crash.findings)
    assert "Kernel panic" in (tmp_path / "series" / "ext4" / "fio-iouring" / "health.txt").read_text()
    assert len(factory.guests) == 2
    for key in [("ext4", "fio-psync"), ("bdev", "fio-iouring"), ("bdev", "fio-psync")]:
        assert results[key].status is JobStatus.PASS, key
    # the re-booted guest re-mounts the existing filesystem rather than re-making it
    assert not any("mkfs.ext4 -q -F" in c for c in factory.guests[1].commands)
    assert any("mkfs.ext4 -q -F" in c for c in factory.guests[0].commands)


def test_hang_is_a_timeout_and_the_guest_reboots(tmp_path: Path) -> None:
    factory = FakeFactory({"hang_on": "--name=fio-psync "})
    results = _by(_run(tmp_path, factory, ["ext4"], ["fio-psync", "fio-iouring"]))
    assert results[("ext4", "fio-psync")].status is JobStatus.TIMEOUT
    assert results[("ext4", "fio-iouring")].status is JobStatus.PASS
    assert len(factory.guests) == 2


def test_stop_on_flag_skips_the_rest_naming_the_flagging_job(tmp_path: Path) -> None:
    factory = FakeFactory({"hang_on": "--name=fio-psync "})
    results = runner.run_variant("series", ["ext4", "bdev"], ["fio-psync", "fio-iouring"], tmp_path,
                                 guest_factory=factory, kernel=KERNEL, stop_on_flag=True).jobs
    by = _by(results)
    assert by[("ext4", "fio-psync")].status is JobStatus.TIMEOUT
    for key in [("ext4", "fio-iouring"), ("bdev", "fio-psync"), ("bdev", "fio-iouring")]:
        assert by[key].status is JobStatus.SKIP, key
        assert by[key].reason == "not run: already flagged by fio-psync on ext4"
    assert len(factory.guests) == 1  # no re-boot just to run checks that are no longer needed


def test_stop_on_flag_without_reboot_ends_the_session(tmp_path: Path) -> None:
    factory = FakeFactory({"warn_on": "--name=fio-psync "})  # a plain failure: the guest stays up
    results = runner.run_variant("series", ["ext4", "bdev"], ["fio-psync", "fio-iouring"], tmp_path,
                                 guest_factory=factory, kernel=KERNEL, stop_on_flag=True).jobs
    by = _by(results)
    assert by[("ext4", "fio-psync")].status is JobStatus.FAIL
    assert [by[k].status for k in [("ext4", "fio-iouring"), ("bdev", "fio-psync"), ("bdev", "fio-iouring")]] \
        == [JobStatus.SKIP] * 3
    assert not any("--name=fio-iouring " in c for c in factory.guests[0].commands)


def test_stop_on_flag_runs_each_check_on_every_filesystem_first(tmp_path: Path) -> None:
    factory = FakeFactory({"fio_fail_on": "--name=fio-psync --filename=/dev/"})  # fails on bdev only
    results = runner.run_variant("series", ["ext4", "bdev"], ["fio-psync", "fio-iouring"], tmp_path,
                                 guest_factory=factory, kernel=KERNEL, stop_on_flag=True).jobs
    by = _by(results)
    assert by[("ext4", "fio-psync")].status is JobStatus.PASS
    assert by[("bdev", "fio-psync")].status is JobStatus.FAIL
    assert by[("ext4", "fio-iouring")].status is JobStatus.SKIP  # never reached: bdev flagged it first
    assert not any("--name=fio-iouring " in c for c in factory.guests[0].commands)


def test_kernel_warning_fails_the_job_with_excerpt(tmp_path: Path) -> None:
    factory = FakeFactory({"warn_on": "--name=fio-psync "})
    results = _by(_run(tmp_path, factory, ["ext4"], ["fio-psync", "fio-iouring"]))
    warned = results[("ext4", "fio-psync")]
    assert warned.status is JobStatus.FAIL and warned.reason.startswith("kernel warning: WARNING: CPU: 0")
    assert "folio_wake_bit" in (tmp_path / "series" / "ext4" / "fio-psync" / "dmesg").read_text()
    assert results[("ext4", "fio-iouring")].status is JobStatus.PASS  # only its own dmesg lines
    assert len(factory.guests) == 1


def test_fio_missing_in_guest(tmp_path: Path) -> None:
    results = _run(tmp_path, FakeFactory({"fio": False}), ["bdev"], ["fio-iouring"])
    assert results[0].status is JobStatus.ERROR and results[0].reason == "fio not found in guest"


def test_guest_that_does_not_boot(tmp_path: Path) -> None:
    results = _run(tmp_path, FakeFactory(fail_boot=True), ["ext4", "bdev"], ["fio-iouring"])
    assert [r.status for r in results] == [JobStatus.ERROR, JobStatus.ERROR]
    assert all("guest unavailable" in r.reason for r in results)
    assert (tmp_path / "series" / "guest-2").is_dir()  # one retry before giving up
    assert json.loads((tmp_path / "series" / "summary.json").read_text())["jobs"][0]["status"] == "error"


def test_one_failed_boot_is_retried(tmp_path: Path) -> None:
    factory = FakeFactory(fail_first=1)
    results = _run(tmp_path, factory, ["ext4"], ["fio-psync"])
    assert [r.status for r in results] == [JobStatus.PASS] and factory.attempts == 2


def test_baseline_variant_must_show_the_reverse(tmp_path: Path) -> None:
    results = _run(tmp_path, FakeFactory({"mode": "baseline"}), ["ext4"], ["fio-iouring"], variant="baseline")
    assert results[0].status is JobStatus.PASS, results[0].reason
    assert results[0].evidence["counts"]["callback"] == 0
    # as measured on the real baseline kernel: the callback is compiled out altogether
    no_cb = [n for n in AVAILABLE_612 if n != "io_async_buf_func"]
    factory = FakeFactory({"mode": "baseline", "available": no_cb, "kallsyms": no_cb})
    results = _run(tmp_path / "gone", factory, ["ext4"], ["fio-iouring"], variant="baseline")
    assert results[0].status is JobStatus.PASS, results[0].reason
    assert results[0].evidence["probes"]["points"]["callback"]["absent"] is True


def test_final_health_after_unmount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    factory = FakeFactory()

    @contextmanager
    def factory_with_unmount_warning(kernel: Path, disks: list[Path],
                                     results_dir: Path) -> Iterator[FakeGuest]:
        with factory(kernel, disks, results_dir) as guest:
            guest.warn_on = None
            real_answer = guest._answer

            def answer(command: str) -> Result:
                if "umount" in command:
                    guest.dmesg_pending += ("[ 99.0] WARNING: CPU: 1 PID: 9 at fs/xfs/xfs_mount.c:1 "
                                            "x+0x1/0x2\n")
                return real_answer(command)

            monkeypatch.setattr(guest, "_answer", answer)
            yield guest

    results = runner.run_variant("series", ["ext4"], ["fio-psync"], tmp_path,
                                 guest_factory=factory_with_unmount_warning, kernel=KERNEL).jobs
    assert [r.workload for r in results] == ["fio-psync", "final-health"]
    assert results[1].status is JobStatus.FAIL and "xfs_mount" in results[1].reason


def test_unknown_filesystem_or_workload_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown filesystem zfs"):
        _run(tmp_path, FakeFactory(), ["zfs"], ["fio-iouring"])
    with pytest.raises(UserError, match="unknown workload"):
        _run(tmp_path, FakeFactory(), ["ext4"], ["no-such"])


def test_jobs_only_on_their_filesystems(tmp_path: Path) -> None:
    # liburing-eventfd runs on ext4 only: a bdev-only run of it has nothing to do
    results = _run(tmp_path, FakeFactory(), ["bdev"], ["liburing-eventfd"])
    assert results == []


@pytest.mark.boot
@pytest.mark.real
def test_real_plain_io_uring_on_ext4_shows_async_path(tmp_path: Path, built_kernel: KernelBuild) -> None:
    """The real thing, kept small for CI: series kernel under QEMU, ext4, one short repeat.

    The async buffered read path must be shown by the kprobe counters: io_async_buf_func hits > 0 and
    io_wq_enqueue ≈ 0, with the guest's kernel log clean.
    """
    from dataclasses import replace

    from harness.workloads.catalogue import load_catalogue
    from harness.workloads.evidence import IOWQ_NOISE_FLOOR, IOWQ_NOISE_FRACTION

    spec = load_catalogue()["fio-iouring"]
    spec = replace(spec, params={**spec.params, "size_mb": 256, "runtime": 3, "repeats": 1})
    results = runner.run_variant("series", ["ext4"], ["fio-iouring"], tmp_path,
                                 kernel=built_kernel,
                                 catalogue={"fio-iouring": spec}).jobs
    assert len(results) == 1
    r = results[0]
    assert r.status is JobStatus.PASS, r.reason
    counts, ios = r.evidence["counts"], r.metrics["per_repeat"][0]["total_ios"]
    assert counts["callback"] > 0
    assert counts["iowq_enqueue"] <= max(IOWQ_NOISE_FLOOR, ios * IOWQ_NOISE_FRACTION)
    assert r.evidence["probes"]["era"] == "6.x-folio"
    assert r.metrics["iops"]["median"] > 0 and r.findings == []
    assert (Path(r.job_dir) / "reproduce.sh").is_file()


class _PanicOnFirstFio:
    """Wraps a real Guest: the first fio repeat is replaced by a real kernel panic (sysrq-c)."""

    def __init__(self, guest: Any) -> None:
        self.guest = guest
        self.accel = getattr(guest, "accel", "")
        self.fired = False

    def run(self, command: str, timeout: float) -> Any:
        if not self.fired and "fio --name=fio-iouring" in command:
            self.fired = True
            command = "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger"
        return self.guest.run(command, timeout)

    def console_text(self) -> str:
        return str(self.guest.console_text())

    def alive(self) -> bool:
        return bool(self.guest.alive())


@pytest.mark.boot
@pytest.mark.real
def test_real_panic_mid_workload_crashes_that_job_and_the_run_continues(tmp_path: Path,
                                                                        built_kernel: KernelBuild) -> None:
    """A real kernel panic (sysrq-c) during a job: that job is "crash" with the console excerpt, the guest
    is re-booted and the next job passes."""
    from contextlib import contextmanager
    from dataclasses import replace

    from harness.workloads.catalogue import load_catalogue

    boots: list[Any] = []

    @contextmanager
    def factory(kernel: Path, disks: list[Path], results_dir: Path) -> Iterator[Any]:
        with runner.default_guest_factory(kernel, disks, results_dir) as guest:
            boots.append(guest)
            yield _PanicOnFirstFio(guest) if len(boots) == 1 else guest

    cat = load_catalogue()
    small = {"size_mb": 64, "runtime": 2, "repeats": 1}
    specs = {n: replace(cat[n], params={**cat[n].params, **small}) for n in ("fio-iouring", "fio-psync")}
    results = runner.run_variant("series", ["bdev"], ["fio-iouring", "fio-psync"], tmp_path,
                                 kernel=built_kernel, guest_factory=factory,
                                 catalogue=specs).jobs
    by = _by(results)
    crash = by[("bdev", "fio-iouring")]
    assert crash.status is JobStatus.CRASH, crash.reason
    assert "panic" in crash.reason.lower() or "sysrq" in crash.reason.lower()
    assert "sysrq" in (Path(crash.job_dir) / "health.txt").read_text().lower()
    assert len(boots) == 2
    assert by[("bdev", "fio-psync")].status is JobStatus.PASS, by[("bdev", "fio-psync")].reason


def test_template_backed_disks_skip_guest_mkfs(tmp_path: Path) -> None:
    factory, templates = FakeFactory(), FakeTemplates()
    lines: list[str] = []
    results = runner.run_variant("series", ["ext4", "xfs", "bdev"], ["fio-iouring"], tmp_path,
                                 progress=lines.append, guest_factory=factory, kernel=KERNEL,
                                 templates=templates).jobs
    assert {r.status for r in results} == {JobStatus.PASS}
    # size: the 1024 MiB fio file + headroom; contents: that one data file; overlays in the run's dir.
    # xfs has no template (xfsprogs 6.1's proto bug, see harness.workloads.templates): the guest makes it.
    assert templates.calls == [("ext4", 2048, [1024], "ext4.qcow2")]
    assert [d.name for d in factory.disks] == ["ext4.qcow2", "xfs.img", "bdev.img"]
    g = factory.guests[0]
    assert not any(" mkfs.ext4 -q -F /dev/" in f" {c}" for c in g.commands)
    assert any("mkfs.xfs -q -f /dev/vdb" in c for c in g.commands)
    assert any("mount -t ext4 /dev/vda" in c for c in g.commands)
    assert any("mount -t xfs /dev/vdb" in c for c in g.commands)
    assert not any("templates:" in ln for ln in lines)


def test_template_failure_falls_back_to_guest_mkfs_and_says_so_once(tmp_path: Path) -> None:
    factory, templates = FakeFactory(), FakeTemplates(broken=("btrfs",))
    lines: list[str] = []
    results = runner.run_variant("series", ["ext4", "btrfs"], ["fio-iouring", "fio-psync"], tmp_path,
                                 progress=lines.append, guest_factory=factory, kernel=KERNEL,
                                 templates=templates).jobs
    assert {r.status for r in results} == {JobStatus.PASS}
    said = [ln for ln in lines if ln.startswith("templates:")]
    assert len(said) == 1 and "btrfs" in said[0] and "making btrfs in the guest" in said[0], lines
    assert [d.name for d in factory.disks] == ["ext4.qcow2", "btrfs.img"]
    g = factory.guests[0]
    assert any("mkfs.btrfs -q -f /dev/vdb" in c for c in g.commands)
    assert not any("mkfs.ext4 -q -F /dev/vda" in c for c in g.commands)
    assert any("--name=kwb-layout" in c and "/mnt/btrfs/" in c for c in g.commands)  # laid out in the guest


def test_template_backed_fs_is_not_remade_after_a_reboot(tmp_path: Path) -> None:
    factory = FakeFactory({"panic_on": "--name=fio-iouring "})
    runner.run_variant("series", ["ext4"], ["fio-iouring", "fio-psync"], tmp_path, guest_factory=factory,
                       kernel=KERNEL, templates=FakeTemplates())
    assert len(factory.guests) == 2
    assert not any("mkfs.ext4 -q -F /dev/" in c for g in factory.guests for c in g.commands)
    assert all(any("mount -t ext4 /dev/vda" in c for c in g.commands) for g in factory.guests)


def test_make_disks_keeps_bdev_raw_and_sparse(tmp_path: Path) -> None:
    from harness.workloads.catalogue import select

    disks, ready = runner._make_disks(tmp_path, ["btrfs", "bdev"], select(["fio-psync"]), FakeTemplates(),
                                      lambda _m: None)
    assert [d.name for d in disks] == ["btrfs.qcow2", "bdev.img"] and ready == {"btrfs"}
    assert disks[1].stat().st_size == 2048 * 1024 * 1024 and disks[1].stat().st_blocks == 0


def test_template_that_does_not_mount_is_remade_in_the_guest_and_said(tmp_path: Path) -> None:
    factory = FakeFactory({"mkfs_fail": ("btrfs",)})
    lines: list[str] = []
    results = runner.run_variant("series", ["btrfs"], ["fio-psync"], tmp_path, progress=lines.append,
                                 guest_factory=factory, kernel=KERNEL, templates=FakeTemplates()).jobs
    prepares = [c for c in factory.guests[0].commands if "mount -t btrfs" in c]
    assert len(prepares) == 2
    assert "mkfs.btrfs -q -f /dev/vda" not in prepares[0] and "mkfs.btrfs -q -f /dev/vda" in prepares[1]
    assert any("btrfs did not mount" in ln and "making it afresh" in ln for ln in lines), lines
    assert results[0].status is JobStatus.ERROR  # this fake's btrfs never mounts: a named, per-fs error


def test_the_run_says_what_its_guests_booted_on(tmp_path: Path) -> None:
    """run_variant hands on the accelerator, guest root and boots (the pipeline no longer re-reads them)."""
    factory = FakeFactory({"root_mode": "isolated", "panic_on": "--name=fio-iouring "})
    ran = runner.run_variant("series", ["ext4"], ["fio-iouring", "fio-psync"], tmp_path,
                             guest_factory=factory, kernel=KERNEL)
    assert (ran.accel, ran.guest_root, ran.boots) == ("tcg", "isolated", 2)
    assert [(j.workload, j.status) for j in ran.jobs] == [("fio-iouring", JobStatus.CRASH),
                                                          ("fio-psync", JobStatus.PASS)]
    summary = json.loads((tmp_path / "series" / "summary.json").read_text())
    assert (summary["accel"], summary["guest_root"], summary["boots"]) == ("tcg", "isolated", 2)
    assert summary["kernel"] == {"release": "6.12.117", "commit": "abc123", "bzimage": "/nonexistent/bzImage"}


def test_a_guest_that_does_not_say_leaves_the_facts_empty(tmp_path: Path) -> None:
    @contextmanager
    def quiet(_k: Path, _d: list[Path], _r: Path) -> Iterator[_Silent]:
        yield _Silent()

    ran = runner.run_variant("series", ["bdev"], ["fio-psync"], tmp_path, guest_factory=quiet, kernel=KERNEL)
    assert (ran.accel, ran.guest_root, ran.boots) == ("", "", 1)


class _Silent:
    """A guest with only the GuestSession calls (no accel, no root, no wedge): every command succeeds."""

    def run(self, command: str, timeout: float) -> Result:
        return FakeGuest().run(command, timeout)

    def console_text(self) -> str:
        return ""

    def alive(self) -> bool:
        return True


def test_the_workload_hook_is_told_each_job_and_runs_around_its_commands(tmp_path: Path) -> None:
    told: list[tuple[str, str, str, bool]] = []

    @contextmanager
    def hook(guest: GuestSession, command: WorkloadCommand) -> Iterator[None]:
        told.append((command.job, command.spec.name, command.program, "fio --name" in command.command))
        guest.run("echo hook-before", 10)
        yield
        guest.run("echo hook-after", 10)

    factory = FakeFactory()
    (job,) = runner.run_variant("series", ["xfs"], ["fio-iouring"], tmp_path, guest_factory=factory,
                                kernel=KERNEL, on_workload=hook).jobs
    assert job.status is JobStatus.PASS, job.reason
    repeats = FioParams.from_dict(load_catalogue()["fio-iouring"].params).repeats
    assert told == [("xfs/fio-iouring", "fio-iouring", "fio", True)] * repeats  # each repeat, no set-up
    commands = factory.guests[0].commands
    first = commands.index("echo hook-before")
    assert "fio --name=fio-iouring" in commands[first + 1] and commands[first + 2] == "echo hook-after"
