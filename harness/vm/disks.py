"""Sparse raw disk images for the guest, and the ``SIZE_MB:fs`` disk specs of the CLI.

Images are attached with an explicit ``format=`` (see :func:`disk_format` and :mod:`harness.vm.vng`) so
QEMU never probes them, and appear in the guest as /dev/vda, /dev/vdb, ... in the order given. Besides raw
images, the runner attaches qcow2 overlays on host-made templates (:mod:`harness.workloads.templates`).
"""

from __future__ import annotations

import os
import shlex
import string
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import UserError

# mkfs in the guest per filesystem, and the smallest image that mkfs accepts (xfsprogs refuses < 300 MB).
FILESYSTEMS: dict[str, tuple[str, int]] = {
    "ext4": ("mkfs.ext4 -q -F", 16),
    "xfs": ("mkfs.xfs -q -f", 300),
    "btrfs": ("mkfs.btrfs -q -f", 128),
    "raw": ("", 1),
}
MAX_DISKS = 16


@dataclass(frozen=True)
class DiskSpec:
    """A disk the user asked for: its size and the filesystem to make on it ("raw" = none)."""

    size_mb: int
    fs: str

    @classmethod
    def parse(cls, text: str) -> DiskSpec:
        """Parse ``SIZE_MB:fs`` (``fs`` defaults to raw); a bad spec is a :class:`UserError`."""
        size_s, _, fs = text.partition(":")
        fs = fs or "raw"
        if not size_s.isdigit() or int(size_s) <= 0:
            raise UserError(f"bad --disk {text!r}: expected SIZE_MB:fs, e.g. 512:ext4")
        if fs not in FILESYSTEMS:
            raise UserError(f"bad --disk {text!r}: unknown filesystem {fs!r} "
                            f"(choose from {', '.join(FILESYSTEMS)})")
        minimum = FILESYSTEMS[fs][1]
        if int(size_s) < minimum:
            raise UserError(f"bad --disk {text!r}: {fs} needs at least {minimum} MB")
        return cls(int(size_s), fs)


def disk_format(path: Path) -> str:
    """QEMU's ``format=`` for an image kwb made: ``qcow2`` for ``*.qcow2`` overlays, else ``raw``.

    Decided by kwb's own naming, never by probing the contents: a guest that wrote a qcow2 header into a
    raw image must not make QEMU read it as qcow2 on the next boot.
    """
    return "qcow2" if path.suffix == ".qcow2" else "raw"


def guest_device(index: int) -> str:
    """The guest block device of the ``index``-th attached disk (0 → /dev/vda)."""
    if not 0 <= index < MAX_DISKS:
        raise UserError(f"at most {MAX_DISKS} disks can be attached")
    return f"/dev/vd{string.ascii_lowercase[index]}"


def make_disk(path: Path, size_mb: int) -> Path:
    """Create (or recreate, empty) a sparse raw image of ``size_mb`` MiB at ``path``."""
    if size_mb <= 0:
        raise UserError(f"disk size must be positive, got {size_mb} MB")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Truncating to zero first drops old contents: a reused path must not leak an old filesystem.
    with open(path, "wb") as f:
        f.truncate(0)
        f.truncate(size_mb * 1024 * 1024)
    return path


def ensure_disk(path: Path, size_mb: int) -> Path:
    """``path`` as it is when it exists (a re-booted guest keeps its filesystem), else a new empty image."""
    return path if path.exists() else make_disk(path, size_mb)


def allocated_bytes(path: Path) -> int:
    """Bytes actually allocated on the host for ``path`` (small for a fresh sparse image)."""
    return os.stat(path).st_blocks * 512


def mount_point(index: int) -> str:
    """Where :func:`prepare_command` mounts the ``index``-th disk (under the guest's tmpfs /tmp)."""
    return f"/tmp/kwb-mnt/{guest_device(index).rsplit('/', 1)[1]}"


def prepare_command(index: int, fs: str) -> str:
    """Guest shell command making ``fs`` on the ``index``-th disk and mounting it; "" for raw disks."""
    if fs not in FILESYSTEMS:
        raise UserError(f"unknown filesystem {fs!r}")
    mkfs = FILESYSTEMS[fs][0]
    if not mkfs:
        return ""
    dev = guest_device(index)
    mnt = shlex.quote(mount_point(index))
    return f"{mkfs} {dev} && mkdir -p {mnt} && mount -t {fs} {dev} {mnt}"
