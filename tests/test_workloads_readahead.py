"""The read-ahead dimension: windows set, read back and restored around a job (fake guest), the catalogue
field validated, the probes' POSIX_FADV_RANDOM switch."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_workloads_fakeguest import FakeFactory, FakeGuest, fake_kernel

from harness.core.errors import InfraError, UserError
from harness.kernel.build import KernelBuild
from harness.workloads import catalogue, readahead, runner
from harness.workloads.model import JobStatus, Target
from harness.workloads.probes import ProbeParams, probe_argv

EXT4 = Target("ext4", "/dev/vdb", "/mnt/ext4", "/mnt/ext4/kwb")
BTRFS = Target("btrfs", "/dev/vdc", "/mnt/btrfs", "/mnt/btrfs/kwb")
BTRFS_BDI = "/sys/fs/btrfs/0b1c/bdi/read_ahead_kb"


def test_parse_values_reads_path_and_kib_and_rejects_anything_else() -> None:
    text = "/sys/block/vdb/queue/read_ahead_kb 128\n\n/sys/fs/btrfs/x/bdi/read_ahead_kb 4096\n"
    assert readahead.parse_values(text) == {"/sys/block/vdb/queue/read_ahead_kb": 128,
                                            "/sys/fs/btrfs/x/bdi/read_ahead_kb": 4096}
    with pytest.raises(InfraError, match="unexpected line"):
        readahead.parse_values("cat: /sys/block/vdb/queue/read_ahead_kb: No such file\n")


def test_apply_sets_every_window_and_restore_puts_the_old_values_back() -> None:
    guest = FakeGuest(read_ahead={BTRFS_BDI: 4096}, read_ahead_device={BTRFS_BDI: "vdc"})
    window = readahead.apply(guest, BTRFS, 0)
    assert window.before == {"/sys/block/vdc/queue/read_ahead_kb": 128, BTRFS_BDI: 4096}
    assert window.after == {"/sys/block/vdc/queue/read_ahead_kb": 0, BTRFS_BDI: 0}
    assert guest.read_ahead["/sys/block/vdc/queue/read_ahead_kb"] == 0
    readahead.restore(guest, window)
    assert guest.read_ahead == {"/sys/block/vdc/queue/read_ahead_kb": 128, BTRFS_BDI: 4096}


def test_only_the_filesystems_on_the_target_device_are_touched() -> None:
    guest = FakeGuest(read_ahead={BTRFS_BDI: 4096}, read_ahead_device={BTRFS_BDI: "vdc"})
    window = readahead.apply(guest, EXT4, 0)
    assert window.before == {"/sys/block/vdb/queue/read_ahead_kb": 128}
    assert guest.read_ahead[BTRFS_BDI] == 4096, "another device's filesystem keeps its window"


def test_a_window_the_kernel_keeps_is_an_infrastructure_error_naming_it() -> None:
    guest = FakeGuest(read_ahead_stuck=True)
    kept = r"asked for 0 KiB, the kernel kept /sys/block/vdb/queue/read_ahead_kb=128"
    with pytest.raises(InfraError, match=kept):
        readahead.apply(guest, EXT4, 0)


def test_ra0_job_runs_with_the_window_closed_and_reopens_it(tmp_path: Path) -> None:
    factory = FakeFactory()
    results = runner.run_variant("series", ["ext4"], ["fio-iouring-ra0", "fio-psync"], tmp_path,
                                 guest_factory=factory, kernel=fake_kernel()).jobs
    by = {r.workload: r for r in results}
    assert by["fio-iouring-ra0"].status is JobStatus.PASS, by["fio-iouring-ra0"].reason
    ra = by["fio-iouring-ra0"].evidence["read_ahead_kb"]
    assert ra["asked"] == 0 and set(ra["set"].values()) == {0} and set(ra["before"].values()) == {128}
    assert "read_ahead_kb" not in by["fio-psync"].evidence
    guest = factory.guests[0]
    assert set(guest.read_ahead.values()) == {128}, "the next job must see the kernel's default window"
    # fio started only after the window was closed
    first_fio = next(i for i, c in enumerate(guest.commands) if "fio --name" in c)
    first_set = next(i for i, c in enumerate(guest.commands) if c.startswith("echo 0 >"))
    assert first_set < first_fio


def test_ra0_job_whose_window_cannot_be_set_is_an_error_not_a_pass(tmp_path: Path) -> None:
    factory = FakeFactory({"read_ahead_stuck": True})
    results = runner.run_variant("series", ["ext4"], ["fio-iouring-ra0"], tmp_path,
                                 guest_factory=factory, kernel=fake_kernel()).jobs
    assert results[0].status is JobStatus.ERROR
    assert "the kernel kept" in results[0].reason


def test_catalogue_rejects_a_negative_window(tmp_path: Path) -> None:
    path = tmp_path / "w.toml"
    path.write_text('name = "w"\nkind = "fio"\ndescription = "d"\nfilesystems = ["ext4"]\ntimeout = 10\n'
                    "read_ahead_kb = -1\n")
    with pytest.raises(UserError, match=r"w\.toml: field 'read_ahead_kb' must be >= 0"):
        catalogue.load_file(path)
    path.write_text(path.read_text().replace("-1", '"off"'))
    with pytest.raises(UserError, match=r"field 'read_ahead_kb' must be a number"):
        catalogue.load_file(path)


def test_the_dimension_covers_fio_and_the_page_cache_probes_on_every_target() -> None:
    cat = catalogue.load_catalogue()
    ra0 = {n: s for n, s in cat.items() if s.read_ahead_kb == 0}
    assert {"fio-iouring-ra0", "probe-short-read-ra0", "probe-completion-accounting-ra0",
            "probe-data-integrity-ra0"} <= set(ra0)
    for name, spec in ra0.items():
        assert spec.filesystems == list(catalogue.FILESYSTEMS), name
        if spec.kind == "probe":
            assert spec.params["fadvise_random"] is True, name


def test_probe_argv_passes_fadvise_random() -> None:
    p = ProbeParams.from_dict({"fadvise_random": True})
    assert probe_argv(Path("/p"), EXT4, p, 30)[-1] == "--fadvise-random"
    assert "--fadvise-random" not in probe_argv(Path("/p"), EXT4, ProbeParams(), 30)
    with pytest.raises(UserError, match=r"params\.fadvise_random' must be true or false"):
        ProbeParams.from_dict({"fadvise_random": 1})


@pytest.mark.boot
@pytest.mark.real
def test_real_read_ahead_off_on_btrfs_and_ext4(built_kernel: KernelBuild, tmp_path: Path) -> None:
    """On a booted kernel: each target's own windows go to 0 (btrfs: its bdi and its device's queue; ext4:
    its queue only), the probe passes with them closed, and the kernel's values come back after the job."""
    run = runner.run_variant("series", ["ext4", "btrfs"], ["probe-short-read-ra0"], tmp_path,
                             kernel=built_kernel)
    by = {r.fs: r for r in run.jobs if r.workload == "probe-short-read-ra0"}
    for fs, r in by.items():
        assert r.status is JobStatus.PASS, f"{fs}: {r.reason}"
        ra = r.evidence["read_ahead_kb"]
        assert set(ra["set"].values()) == {0} and all(v > 0 for v in ra["before"].values()), (fs, ra)
        assert "read_ahead_restore_error" not in r.evidence
    # the disks are attached in the order of the filesystems asked for: ext4 /dev/vda, btrfs /dev/vdb
    assert list(by["ext4"].evidence["read_ahead_kb"]["set"]) == ["/sys/block/vda/queue/read_ahead_kb"]
    btrfs = by["btrfs"].evidence["read_ahead_kb"]["set"]
    assert "/sys/block/vdb/queue/read_ahead_kb" in btrfs
    assert any(p.startswith("/sys/fs/btrfs/") for p in btrfs), btrfs
