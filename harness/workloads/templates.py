"""Filesystem template images made on the host, and the per-run qcow2 overlays backed by them.

Making a filesystem and laying out fio's 1 GiB data file inside a TCG guest takes ~20 s per filesystem;
on the host it takes a second or two. The guest's root is the host's, so the host's mkfs is the guest's:
a template made here is what the guest would have made, with the data already written. Templates are
populated without mounting anything (``mkfs.ext4 -d``, ``mkfs.btrfs --rootdir``, ``mkfs.xfs -p PROTO``),
built once per cache, keyed by filesystem, size, contents and the mkfs tool's version, and never written
again: every run attaches a private qcow2 overlay (:func:`make_overlay`) and writes go there.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import struct
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.core.errors import InfraError
from harness.core.paths import cache_dir
from harness.core.run import run
from harness.kernel.tree import locked
from harness.vm.disks import FILESYSTEMS
from harness.workloads.fio import FioParams, data_file
from harness.workloads.model import Target

Progress = Callable[[str], None]

# Which filesystems get a template. Not xfs: xfsprogs 6.1's ``mkfs.xfs -p`` with the 1 GiB data file
# wrote over AG headers and left the log unformatted (xfs_repair -n: "Metadata CRC error … xfs_agf",
# "empty log check failed"; the 6.12 guest: "log mount failed"). Small files come out clean, which is
# worse: a filesystem that mounts but is damaged would pass for the series' wrong-data bug.
TEMPLATE_FILESYSTEMS = ("ext4", "btrfs")
BUILDABLE = ("ext4", "xfs", "btrfs")  # what _build can make (xfs for tests of the check below)
SCRATCH_DIR = "kwb-scratch"      # what the runner's _prepare_fs makes on every filesystem
LAYOUT_VERSION = 2               # bump when the contents below change: old templates are then not reused
MKFS_TIMEOUT = 900.0             # mkfs copying a few GiB on a loaded 2-core host
VERSION_TIMEOUT = 30.0
OVERLAY_TIMEOUT = 60.0
CHUNK = 1024 * 1024
BLOCK = 4096
SPACE_MARGIN = 256 * 1024 * 1024

# The mkfs option that fills the new filesystem from a host directory (xfs: from a proto file).
_POPULATE = {"ext4": "-d", "btrfs": "--rootdir", "xfs": "-p"}
_VERSION_FLAG = {"ext4": "-V", "xfs": "-V", "btrfs": "--version"}


def templates_dir() -> Path:
    """Where templates live: ``cache_dir()/disks/templates``."""
    path = cache_dir() / "disks" / "templates"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_relpath(size_mb: int) -> str:
    """fio's data file for ``size_mb``, relative to the mount point (exactly where fio.py looks)."""
    return data_file(Target("ext4", "/dev/null", "", ""), FioParams(size_mb=size_mb)).lstrip("/")


def _mkfs_argv(fs: str) -> list[str]:
    if fs not in BUILDABLE:
        raise InfraError(f"no filesystem template for {fs!r} (only {', '.join(TEMPLATE_FILESYSTEMS)})")
    return FILESYSTEMS[fs][0].split()


def tool_version(fs: str) -> str:
    """The mkfs tool's version line (part of the template key); InfraError when the tool is missing."""
    mkfs = _mkfs_argv(fs)[0]
    res = run([mkfs, _VERSION_FLAG[fs]], timeout=VERSION_TIMEOUT)
    text = (res.stdout + res.stderr).strip()
    if not res.ok or not text:
        raise InfraError(f"{mkfs} {_VERSION_FLAG[fs]} failed (exit {res.returncode}): {res.tail(1)}")
    return text.splitlines()[0].strip()


def template_path(fs: str, size_mb: int, data_mb: Sequence[int], version: str) -> Path:
    """The template's path: one file per (fs, size, contents, mkfs version, layout version)."""
    key = repr((fs, size_mb, sorted(set(data_mb)), version, _mkfs_argv(fs), LAYOUT_VERSION))
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return templates_dir() / f"{fs}-{size_mb}M-{digest}.img"


def ensure_template(fs: str, size_mb: int, data_mb: Sequence[int], progress: Progress | None = None) -> Path:
    """The template for ``fs`` on a ``size_mb`` MiB disk holding fio data files of ``data_mb`` MiB.

    Built on first use under a per-filesystem lock (concurrent runs share the cache), written under a
    temporary name and renamed. InfraError when it cannot be built (tool missing, mkfs refuses, no space).
    """
    say = progress or (lambda _msg: None)
    target = template_path(fs, size_mb, data_mb, tool_version(fs))
    if target.is_file():
        return target
    with locked(f"disk-template-{fs}", progress=progress):
        if target.is_file():  # another process built it while we waited
            return target
        _remove_leftovers(target.parent, fs)
        say(f"templates: building {target.name} on the host (once per cache)")
        _build(fs, size_mb, sorted(set(data_mb)), target)
    return target


def _remove_leftovers(directory: Path, fs: str) -> None:
    # A build killed half-way leaves its staging dir (GiBs) and temp image; we hold the fs lock here.
    for stale in directory.glob(f".{fs}-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _build(fs: str, size_mb: int, data_mb: list[int], target: Path) -> None:
    tag = f".{fs}-{os.getpid()}"
    staging = target.parent / f"{tag}-staging"
    tmp = target.parent / f"{tag}-{target.name}.tmp"
    try:
        _check_space(target.parent, size_mb, data_mb)
        _stage(staging, data_mb)
        with open(tmp, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        res = run([*_mkfs_argv(fs), *_populate_args(fs, staging), str(tmp)], timeout=MKFS_TIMEOUT,
                  log=target.parent / f"{target.stem}.log")
        if res.timed_out:
            raise InfraError(f"building the {fs} template timed out after {MKFS_TIMEOUT:.0f}s")
        if not res.ok:
            raise InfraError(f"building the {fs} template failed (exit {res.returncode}): {res.tail(1)}")
        check_image(fs, tmp, target.parent / f"{target.stem}.check.log")
        os.replace(tmp, target)
    except OSError as exc:
        raise InfraError(f"building the {fs} template in {target.parent} failed: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        _proto_path(staging).unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


# Read-only checkers: a template is published only if its filesystem's own checker finds it clean.
CHECKERS = {"ext4": ["e2fsck", "-fn"], "xfs": ["xfs_repair", "-n", "-f"],
            "btrfs": ["btrfs", "check", "--readonly"]}
CHECK_TIMEOUT = 300.0


def check_image(fs: str, image: Path, log: Path | None = None) -> None:
    """InfraError unless ``fs``'s checker (read-only) finds the filesystem in ``image`` clean."""
    res = run([*CHECKERS[fs], str(image)], timeout=CHECK_TIMEOUT, log=log)
    if not res.ok:
        why = "timed out" if res.timed_out else f"exit {res.returncode}: {res.tail(1)}"
        raise InfraError(f"the {fs} template is not clean ({CHECKERS[fs][0]} {why})")


def _check_space(directory: Path, size_mb: int, data_mb: list[int]) -> None:
    # The data is held twice while building (staging copy + image); fail before writing GiBs.
    need = 2 * sum(data_mb) * CHUNK + SPACE_MARGIN
    free = shutil.disk_usage(directory).free
    if free < need:
        raise InfraError(f"not enough space for a {size_mb} MB template in {directory}: "
                         f"{free // CHUNK} MB free, {need // CHUNK} MB needed")


def _stage(staging: Path, data_mb: list[int]) -> None:
    """The directory tree copied into the template: the scratch dir and fio's data files."""
    staging.mkdir(mode=0o755)
    staging.chmod(0o755)  # becomes the filesystem's root directory
    (staging / SCRATCH_DIR).mkdir(mode=0o755)
    for mb in data_mb:
        path = staging / data_relpath(mb)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _write_data(path, mb)


def _write_data(path: Path, size_mb: int) -> None:
    # Never zero: mkfs.ext4 -d leaves all-zero blocks as holes, and reads of holes never reach the disk.
    # One pseudo-random MiB (seeded: the same bytes in every template, so a guest can check them) reused,
    # each 4 KiB block stamped with its index (much cheaper than GiBs of os.urandom).
    pool = bytearray(random.Random(size_mb).randbytes(CHUNK))
    with open(path, "wb") as f:
        for mb in range(size_mb):
            for blk in range(CHUNK // BLOCK):
                struct.pack_into("<Q", pool, blk * BLOCK, mb * (CHUNK // BLOCK) + blk + 1)
            f.write(pool)
    path.chmod(0o644)


def _populate_args(fs: str, staging: Path) -> list[str]:
    if fs != "xfs":
        return [_POPULATE[fs], str(staging)]
    proto = _proto_path(staging)
    proto.write_text(proto_text(staging), encoding="utf-8")
    return [_POPULATE[fs], str(proto)]


def _proto_path(staging: Path) -> Path:
    return staging.parent / f"{staging.name}.proto"


def proto_text(root: Path) -> str:
    """An xfsprogs (6.1) proto file reproducing the directory tree ``root`` (dirs and regular files)."""
    lines = ["kwb-template", "0 0", "d--755 0 0", *_proto_entries(root, 1), "$", ""]
    return "\n".join(lines)


def _proto_entries(directory: Path, depth: int) -> list[str]:
    pad = " " * depth
    lines: list[str] = []
    for entry in sorted(directory.iterdir()):
        if any(c.isspace() for c in str(entry)):
            raise InfraError(f"xfs proto files cannot name paths with spaces: {entry}")
        if entry.is_dir():
            lines += [f"{pad}{entry.name} d--755 0 0", *_proto_entries(entry, depth + 1), f"{pad}$"]
        else:
            lines.append(f"{pad}{entry.name} ---644 0 0 {entry}")
    return lines


def make_overlay(template: Path, overlay: Path) -> Path:
    """A qcow2 image at ``overlay`` backed by the raw ``template``: the guest's writes never reach it."""
    overlay.parent.mkdir(parents=True, exist_ok=True)
    overlay.unlink(missing_ok=True)
    res = run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(template.resolve()), "-F", "raw",
               str(overlay)], timeout=OVERLAY_TIMEOUT)
    if not res.ok:
        raise InfraError(f"qemu-img create {overlay.name} failed (exit {res.returncode}): {res.tail(1)}")
    return overlay


def template_overlay(fs: str, size_mb: int, data_mb: Sequence[int], overlay: Path,
                     progress: Progress | None = None) -> Path:
    """The runner's hook: ensure the template, then a fresh overlay on it at ``overlay``."""
    return make_overlay(ensure_template(fs, size_mb, data_mb, progress), overlay)
