"""kwb's own guest root: a minimal Debian bookworm tree, built once per cache, booted as a disk image.

Why: the kernel under test may be anyone's posted patch. With the host's root exported over 9p (the
``--host-root`` mode) the guest can read every file of the host. The isolated root holds only what the
workloads need:

- the base: ``mmdebstrap --variant=minbase`` of :data:`PACKAGES` from the Debian mirror the host's apt
  already uses, unpacked once under ``$KWB_CACHE/guest-root/<recipe digest>/tree`` (a manifest of the
  installed packages is kept beside it; its digest is the root's :func:`identity`);
- the payload: the host-built binaries the workloads run (liburing's ``*.t`` tests, the probes), copied
  in at the same absolute paths they have on the host, so workload code needs no path translation;
- one ext4 image per (base, payload) made with ``mkfs.ext4 -d`` (no loop mount, a few seconds), and per
  boot a qcow2 overlay on it: the guest gets a private writable root (mount points for the results
  directory can be made) and nothing it writes outlives the boot or reaches the shared image.

A disk image was measured to boot faster than the same tree exported as a 9p directory (see
scripts/bench_rootfs.py and docs/benchmarks.md), hence the image.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.core import atomic
from harness.core.errors import InfraError, UserError
from harness.core.paths import cache_dir
from harness.core.run import run

SUITE = "bookworm"
# Guest packages and why: sshd (kwb drives the guest over SSH; virtme-ng starts it), fio, the three
# filesystems' mkfs/check tools, liburing2 (the probes link it), busybox (virtme-ng's DHCP client and
# the isolation test's nc), iproute2 (virtme-ng's DHCP script), procps (ps/kill in the job scripts).
PACKAGES = ("openssh-server", "busybox", "fio", "e2fsprogs", "xfsprogs", "btrfs-progs", "liburing2",
            "iproute2", "procps")
# Documentation and translations are never read in the guest: half the size of the tree.
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
RECIPE_VERSION = 1        # bump when the build steps below change what ends up in the tree
BUILD_TIMEOUT = 1800.0
MKFS_TIMEOUT = 300.0
IMAGE_SLACK_MB = 384      # free space in the root beyond its files (logs, the guest's scratch files)
KEEP_IMAGES = 3           # payload images kept per base (older ones are removed)
MODES = ("isolated", "host")
MODE_ENV = "KWB_GUEST_ROOT"
Progress = Callable[[str], None]


def mode() -> str:
    """The guest root in effect: ``isolated`` (default) or ``host`` (``kwb --host-root``)."""
    value = os.environ.get(MODE_ENV, "isolated").strip() or "isolated"
    if value not in MODES:
        raise UserError(f"{MODE_ENV}={value!r} is not a guest root mode (use one of: {', '.join(MODES)})")
    return value


def mirror() -> str:
    """The Debian mirror the host's apt uses (first ``deb.debian.org``-style main entry), else the default."""
    default = "http://deb.debian.org/debian"
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if path.suffix == ".sources" and words[:1] == ["URIs:"] and len(words) > 1:
                uri = words[1]
            elif words[:1] == ["deb"]:
                uri = next((w for w in words[1:] if "://" in w), "")
            else:
                continue
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return default


def recipe() -> dict[str, object]:
    """Everything that decides what the base tree holds (its digest names the cache directory)."""
    return {"suite": SUITE, "variant": "minbase", "packages": sorted(PACKAGES),
            "dpkg_excludes": list(DPKG_EXCLUDES), "mirror": mirror(), "version": RECIPE_VERSION}


def recipe_digest() -> str:
    """sha256 of :func:`recipe` (16 hex digits)."""
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


def base_dir() -> Path:
    """Where the base tree of the current recipe lives."""
    return cache_dir() / "guest-root" / f"{SUITE}-{recipe_digest()}"


@dataclass(frozen=True)
class Base:
    """A built base tree, its package manifest and how long it took to build."""

    tree: Path
    manifest: Path
    build_seconds: float
    built_now: bool

    @property
    def identity(self) -> str:
        """Digest of the recipe and the exact package versions installed (16 hex digits)."""
        h = hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode())
        h.update(self.manifest.read_bytes())
        return h.hexdigest()[:16]


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    lock_dir = cache_dir() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / name, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def existing_base() -> Base | None:
    """The base tree of the current recipe when it is built, else None (never builds)."""
    d = base_dir()
    manifest, info = d / "manifest.txt", d / "build.json"
    if not (d / "tree" / "usr" / "sbin" / "sshd").is_file() or not manifest.is_file():
        return None
    try:
        seconds = float(json.loads(info.read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        seconds = 0.0
    return Base(d / "tree", manifest, seconds, False)


def identity() -> str | None:
    """The built root's identity (for result cache keys), None when it is not built yet."""
    base = existing_base()
    return base.identity if base is not None else None


def mmdebstrap_argv(target: Path) -> list[str]:
    """The mmdebstrap command that unpacks the base tree into ``target``."""
    binary = shutil.which("mmdebstrap")
    if not binary:
        raise InfraError("mmdebstrap not found: run `make setup` (it is in ci/debian-packages.txt)")
    argv = [binary, "--variant=minbase", "--format=directory", "--include=" + ",".join(PACKAGES),
            "--aptopt=Acquire::Retries \"3\"", "--skip=cleanup/reproducible"]
    argv += [f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES]
    # Keep the copyright files' directory so dpkg's bookkeeping stays consistent; nothing reads them.
    argv += [SUITE, str(target), f"deb {mirror()} {SUITE} main"]
    return argv


def _finish_tree(tree: Path) -> None:
    """Make the unpacked tree a kwb guest root: no host keys baked in, a name, an empty fstab."""
    for key in (tree / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()  # virtme-ng hands the guest per-run host keys; shared ones would be one key for all
    (tree / "etc" / "hostname").write_text("kwb-guest\n")
    (tree / "etc" / "fstab").write_text("# kwb guest root: virtme-ng mounts what the guest needs\n")
    (tree / "etc" / "kwb-guest-root").write_text(json.dumps(recipe(), sort_keys=True) + "\n")


def ensure_base(progress: Progress | None = None, timeout: float = BUILD_TIMEOUT) -> Base:
    """The base tree of the current recipe, built (once, under a lock) when missing."""
    say = progress or (lambda _msg: None)
    have = existing_base()
    if have is not None:
        return have
    with _locked("guest-root.lock"):
        have = existing_base()
        if have is not None:
            return have
        d = base_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / "tree.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        say(f"guest root: building a minimal {SUITE} tree with mmdebstrap (once per cache)")
        start = time.monotonic()
        res = run(mmdebstrap_argv(tmp), timeout=timeout, log=d / "build.log")
        if not res.ok:
            why = "timed out" if res.timed_out else (res.tail(1).strip() or f"exit {res.returncode}")
            shutil.rmtree(tmp, ignore_errors=True)
            raise InfraError(f"building the guest root failed: mmdebstrap: {why} (log: {d / 'build.log'})")
        _finish_tree(tmp)
        listing = run(["dpkg-query", f"--admindir={tmp / 'var' / 'lib' / 'dpkg'}", "-W",
                       "-f=${Package} ${Version} ${Architecture}\n"], timeout=60, check=True)
        shutil.rmtree(d / "tree", ignore_errors=True)
        tmp.rename(d / "tree")
        atomic.write_text(d / "manifest.txt", "".join(sorted(listing.stdout.splitlines(keepends=True))))
        seconds = time.monotonic() - start
        atomic.write_json(d / "build.json", {"seconds": round(seconds, 1), "recipe": recipe(),
                                             "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        say(f"guest root: built in {seconds:.0f}s ({d / 'tree'})")
        return Base(d / "tree", d / "manifest.txt", seconds, True)


# --- payload and image -------------------------------------------------------------------------------

# Build artefacts of a source directory the guest never needs (the tests run from their binaries).
_SKIP_SUFFIXES = (".c", ".cc", ".h", ".o", ".d", ".log", ".tmp")


def _payload_files(dirs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for top in dirs:
        if not top.is_absolute():
            raise InfraError(f"guest root payload {top} is not an absolute path")
        files += sorted(p for p in top.rglob("*")
                        if p.is_file() and not p.is_symlink() and p.suffix not in _SKIP_SUFFIXES)
    return files


def payload_digest(dirs: list[Path]) -> str:
    """Digest of the payload files (paths, modes and contents)."""
    h = hashlib.sha256()
    for path in _payload_files(dirs):
        h.update(f"{path}\0{path.stat().st_mode:o}\0".encode() + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def _tree_mb(tree: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(tree):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total // 2**20


def ensure_image(payload: list[Path], progress: Progress | None = None) -> Path:
    """The ext4 image of the base tree plus ``payload`` (directories copied in at their host paths)."""
    say = progress or (lambda _msg: None)
    base = ensure_base(say)
    images = base_dir() / "images"
    image = images / f"root-{base.identity}-{payload_digest(payload)}.img"
    if image.is_file():
        os.utime(image)  # most recently used: the last to be pruned
        return image
    with _locked("guest-root.lock"):
        if image.is_file():
            return image
        images.mkdir(parents=True, exist_ok=True)
        staging = images / "staging.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        start = time.monotonic()
        # Hard links: the staging copy costs no data; the payload files added below are new files.
        run(["cp", "-al", str(base.tree), str(staging)], timeout=MKFS_TIMEOUT, check=True)
        for path in _payload_files(payload):
            dest = staging / path.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        size_mb = _tree_mb(staging) * 5 // 4 + IMAGE_SLACK_MB
        tmp = image.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        res = run(["mkfs.ext4", "-q", "-F", "-L", "kwb-root", "-d", str(staging), str(tmp), f"{size_mb}M"],
                  timeout=MKFS_TIMEOUT)
        shutil.rmtree(staging, ignore_errors=True)
        if not res.ok:
            tmp.unlink(missing_ok=True)
            raise InfraError(f"making the guest root image failed: mkfs.ext4 -d: "
                             f"{res.tail(1).strip() or res.returncode}")
        tmp.rename(image)
        say(f"guest root: image {image.name} ({size_mb} MiB) made in {time.monotonic() - start:.1f}s")
        _prune(images, keep=image)
        return image


def _prune(images: Path, keep: Path) -> None:
    old = sorted((p for p in images.glob("root-*.img") if p != keep), key=lambda p: p.stat().st_mtime)
    for path in old[:max(0, len(old) - (KEEP_IMAGES - 1))]:
        path.unlink(missing_ok=True)  # a guest still booted on it keeps its open file


def boot_overlay(image: Path, dest: Path) -> Path:
    """A qcow2 overlay on ``image`` at ``dest``: the guest's private, writable, thrown-away root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image), str(dest)],
        timeout=60, check=True)
    return dest


@dataclass(frozen=True)
class BootRoot:
    """The root one guest boots: its mode, the per-boot overlay and the image under it."""

    mode: str
    overlay: Path | None = None
    image: Path | None = None
    identity: str = ""
    prepare_seconds: float = 0.0

    def info(self) -> dict[str, object]:
        """What vm.json records about the root."""
        return {"mode": self.mode, "image": str(self.image or ""), "identity": self.identity,
                "prepare_seconds": round(self.prepare_seconds, 2)}


def prepare_boot(root_mode: str, state_dir: Path, payload: Sequence[Path] = (),
                 progress: Progress | None = None) -> BootRoot:
    """The root of one boot: for ``isolated`` the image (built when missing) with ``payload`` (host
    directories the workloads run from, copied in at their host paths) and a fresh overlay on it."""
    if root_mode not in MODES:
        raise UserError(f"unknown guest root {root_mode!r} (use one of: {', '.join(MODES)})")
    if root_mode == "host":
        return BootRoot("host")
    start = time.monotonic()
    image = ensure_image(list(payload), progress)
    overlay = boot_overlay(image, state_dir / "root.qcow2")
    base = existing_base()
    return BootRoot("isolated", overlay, image, base.identity if base else "", time.monotonic() - start)
