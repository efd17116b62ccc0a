"""Sparse raw images and the SIZE_MB:fs specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.vm import disks
from harness.vm.disks import DiskSpec


def test_make_disk_is_sparse_and_sized(tmp_path: Path) -> None:
    img = disks.make_disk(tmp_path / "sub" / "d.img", 512)
    assert img.stat().st_size == 512 * 1024 * 1024
    assert disks.allocated_bytes(img) < 1024 * 1024


def test_make_disk_recreates_empty(tmp_path: Path) -> None:
    img = tmp_path / "d.img"
    img.write_bytes(b"old filesystem" * 100)
    disks.make_disk(img, 1)
    assert img.read_bytes()[:14] == b"\0" * 14


def test_ensure_disk_keeps_an_existing_image(tmp_path: Path) -> None:
    img = disks.ensure_disk(tmp_path / "sub" / "d.img", 4)
    assert img.stat().st_size == 4 * 1024 * 1024
    img.write_bytes(b"a filesystem")
    assert disks.ensure_disk(img, 8).read_bytes() == b"a filesystem"  # a re-boot keeps its fs


def test_make_disk_rejects_nonsense(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        disks.make_disk(tmp_path / "d.img", 0)


@pytest.mark.parametrize(("text", "spec"), [
    ("512:ext4", DiskSpec(512, "ext4")), ("300:xfs", DiskSpec(300, "xfs")),
    ("128:btrfs", DiskSpec(128, "btrfs")), ("64", DiskSpec(64, "raw")), ("64:raw", DiskSpec(64, "raw")),
])
def test_parse(text: str, spec: DiskSpec) -> None:
    assert DiskSpec.parse(text) == spec


@pytest.mark.parametrize(("text", "message"), [("big:ext4", "expected SIZE_MB:fs"), ("0:ext4", "expected"),
                                               ("512:zfs", "unknown filesystem 'zfs'"),
                                               ("100:xfs", "xfs needs at least 300 MB")])
def test_parse_errors_name_the_spec(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as exc:
        DiskSpec.parse(text)
    assert repr(text) in str(exc.value)


def test_devices_and_prepare_commands() -> None:
    assert [disks.guest_device(i) for i in range(3)] == ["/dev/vda", "/dev/vdb", "/dev/vdc"]
    assert disks.prepare_command(1, "xfs") == (
        "mkfs.xfs -q -f /dev/vdb && mkdir -p /tmp/kwb-mnt/vdb && mount -t xfs /dev/vdb /tmp/kwb-mnt/vdb")
    assert disks.prepare_command(0, "raw") == ""
    with pytest.raises(UserError):
        disks.guest_device(disks.MAX_DISKS)


@pytest.mark.parametrize(("name", "fmt"), [("ext4.qcow2", "qcow2"), ("bdev.img", "raw"), ("disk", "raw"),
                                           ("x.qcow2.img", "raw")])
def test_disk_format_follows_kwbs_naming_not_the_contents(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"QFI\xfb" if fmt == "raw" else b"")  # a qcow2 magic in a raw image stays raw
    assert disks.disk_format(path) == fmt
