"""The virtme-ng command line for one guest, built from a small declarative :class:`VngSpec`.

Why each flag (checked against virtme-ng 1.42's source):

- ``--ssh PORT --ssh-tcp``: virtme-run adds ``hostfwd=tcp:127.0.0.1:PORT-:22``, so sshd is reachable on
  loopback only. The client key is ``$HOME/.cache/virtme-ng/.ssh/id_virtme``; running vng with ``HOME``
  set to a per-run directory makes that key (and the guest's authorized_keys) per run.
- ``--disk`` is not used: vng hands it to QEMU without a format (QEMU then probes the image and
  restricts writes to block 0). Disks go through ``--qemu-opts`` as ``-drive ...,format=raw`` instead.
- ``--qemu-opts`` also adds ``-no-reboot`` (vng only adds it in script mode) so ``panic=-1`` ends QEMU,
  and ``-pidfile`` so kwb knows QEMU's pid. vng joins these into a shell string unquoted, hence the
  strict path check.
- ``--force-9p``: virtiofsd here is too old for virtme-ng and each failed start costs a second.
- ``--disable-microvm``: q35 gives PCI virtio devices, so our ``virtio-blk-pci`` disks always fit.
- ``--verbose``: without it the guest boots with ``quiet`` and panics would not reach the console.
- ``--rwdir``: the results directory is the only host directory the guest may write.
- ``--exec GUEST_INIT`` (vng's script mode, which keeps sshd): the guest root is the host's filesystem,
  so bash would run the host user's ~/.bashrc for every command sshd starts — slow under TCG (seconds
  per command with pyenv-style rc files) and noisy. The init script hides it (a bind mount inside the
  guest only), prints the GUEST-READY marker (:mod:`harness.vm.markers`) and sleeps; SSH attempts start
  once the console shows it.

The isolated root (:mod:`harness.vm.rootfs`, ``VngSpec.root_disk``) changes three things:

- ``--root-disk IMAGE --root-fstype ext4 --rw`` instead of the host's ``/`` over 9p: IMAGE is a per-boot
  qcow2 overlay, so ``--rw`` writes only that overlay. vng attaches it as the first virtio-blk device;
  kwb's own disks must stay /dev/vda, vdb, ... so the first of them is swapped onto vng's drive
  (``-set drive.virtme-root.file=...``) and the root goes last (``--root-dev /dev/vdN``).
- ``--rwdir=PATH=PATH``: the results directory appears at its host path (vng makes the mount point).
- ``-set netdev.ssh.restrict=on``: QEMU's user network then carries nothing but the SSH forward — the
  guest cannot reach the host's loopback services (10.0.2.2) or anything beyond.

Kernel command line (:data:`BASE_CMDLINE`), why each entry:

- ``SYSTEMD_PROC_CMDLINE=net.ifnames=0``: vng already puts ``net.ifnames=0`` on the command line, but the
  guest's root is the host's, and a host that is a Docker container has ``/.dockerenv``: the guest's
  systemd-udevd then believes it runs in a container and reads PID 1's argv instead of /proc/cmdline,
  so it renames eth0 to enp0sN while virtme-ng-init's udhcpc configures eth0 — on some boots the guest
  is left without network (issue 16: 2 of 11 boots lost for 300 s each). The kernel hands an unknown
  ``KEY=value`` to init as an environment variable, udevd inherits it, and systemd reads that variable
  in preference to any command line.
- ``softlockup_all_cpu_backtrace=1``, ``sysctl.kernel.hung_task_all_cpu_backtrace=1``: a lockup report
  shows every CPU's stack, not only the detecting one's.
- ``sysctl.kernel.hung_task_check_interval_secs=5``: khungtaskd looks every 5 s instead of every
  timeout (30 s, kconfig/debug.config), so a task blocked for good is reported 30-35 s in, within a
  liburing test's 60 s budget, rather than up to 60 s in.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.errors import InfraError, UserError
from harness.vm.disks import disk_format
from harness.vm.markers import Marker, echo

# Guest kernel options kwb always wants (why: module docstring); a panic reboots at once and
# -no-reboot turns that into exit.
BASE_CMDLINE = ("panic=-1", "SYSTEMD_PROC_CMDLINE=net.ifnames=0", "softlockup_all_cpu_backtrace=1",
                "sysctl.kernel.hung_task_all_cpu_backtrace=1",
                "sysctl.kernel.hung_task_check_interval_secs=5")
# virtme-run's own 9p root flags; a cache mode is appended to a copy given later on the command line
# (the kernel keeps the last rootflags=).
ROOT_9P_FLAGS = "version=9p2000.L,trans=virtio,access=any,msize=524288"
ROOT_CACHE_MODES = ("", "loose", "mmap", "readahead")
GUEST_INIT = ('[ -f "$HOME/.bashrc" ] && mount --bind /dev/null "$HOME/.bashrc"; '
              f"{echo(Marker.GUEST_READY)}; exec sleep infinity")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+@%-]+$")


@dataclass
class VngSpec:
    """Everything that varies between two guest launches."""

    kernel: Path
    name: str
    ssh_port: int
    pidfile: Path
    accel: str = "tcg"
    memory_mb: int = 2048
    cpus: int = 2
    rwdirs: list[Path] = field(default_factory=list)
    disks: list[Path] = field(default_factory=list)
    cmdline: list[str] = field(default_factory=list)
    cwd: str = "/"
    user: str = "root"
    root_disk: Path | None = None     # the isolated root's per-boot overlay; None = the host's root
    restrict_net: bool = False        # no guest traffic except the SSH forward
    # "" keeps virtme-run's uncached 9p root; else a 9p cache mode (the root is read-only to the guest)
    root_cache: str = ""
    # "" keeps virtme-run's choice (``max`` under TCG); else a QEMU -cpu model given after it
    cpu_model: str = ""


def vng_binary() -> Path:
    """The vng script of the running Python environment (else the one on PATH)."""
    beside = Path(sys.executable).parent / "vng"
    if beside.is_file():
        return beside
    found = shutil.which("vng")
    if not found:
        raise InfraError("vng (virtme-ng) not found: run `make setup`")
    return Path(found)


def check_path(path: Path, what: str) -> str:
    """``path`` as a string, refused when vng's shell joining would mangle it."""
    text = str(path)
    if not _SAFE_PATH.match(text):
        raise UserError(f"{what} path {text!r} has characters virtme-ng cannot pass through; "
                        "use a path of letters, digits and ._/+@%-")
    return text


def disk_qemu_opts(disks: list[Path], first_index: int = 0) -> list[str]:
    """QEMU options attaching images as virtio-blk (vda, vdb, ... in order), each with its explicit format."""
    opts: list[str] = []
    for i, disk in enumerate(disks, start=first_index):
        path = check_path(disk, "disk image")
        fmt = disk_format(disk)
        opts += ["-drive", f"if=none,id=kwbdisk{i},file={path},format={fmt},cache=writeback",
                 "-device", f"virtio-blk-pci,drive=kwbdisk{i},serial=kwbdisk{i}"]
    return opts


# vng's drive id for --root-disk (virtme/commands/run.py, export_root_disk); checked by a --dry-run test.
VNG_ROOT_DRIVE = "virtme-root"


def root_device(spec: VngSpec) -> str:
    """The guest device of the root disk: after kwb's disks (see :func:`qemu_opts`)."""
    return "/dev/vd" + "abcdefghijklmnopqrstuvwxyz"[len(spec.disks)]


def qemu_opts(spec: VngSpec) -> list[str]:
    """The extra QEMU options kwb passes through vng."""
    cpu = ["-cpu", spec.cpu_model] if spec.cpu_model else []  # QEMU keeps the last -cpu given
    opts = ["-no-reboot", "-pidfile", check_path(spec.pidfile, "pid file"), *cpu]
    if spec.restrict_net:
        opts += ["-set", "netdev.ssh.restrict=on"]
    if spec.root_disk is None or not spec.disks:
        return opts + disk_qemu_opts(spec.disks)
    # vng's root device comes first on the PCI bus (vda): give it kwb's first disk, attach the root last.
    first, rest = spec.disks[0], spec.disks[1:]
    opts += ["-set", f"drive.{VNG_ROOT_DRIVE}.file={check_path(first, 'disk image')}",
             "-set", f"drive.{VNG_ROOT_DRIVE}.format={disk_format(first)}",
             "-set", f"drive.{VNG_ROOT_DRIVE}.cache=writeback"]
    opts += disk_qemu_opts(rest, first_index=1)
    root = check_path(spec.root_disk, "root image")
    return [*opts, "-drive", f"if=none,id=kwbroot,file={root},format={disk_format(spec.root_disk)}",
            "-device", "virtio-blk-pci,drive=kwbroot,serial=kwbroot"]


def kernel_cmdline(spec: VngSpec) -> list[str]:
    """The kernel options kwb adds after virtme-run's own."""
    if spec.root_cache not in ROOT_CACHE_MODES:
        known = ", ".join(ROOT_CACHE_MODES[1:])
        raise InfraError(f"unknown 9p cache mode {spec.root_cache!r} (known: {known})")
    # A 9p cache mode only means something for the host's root over 9p, not for kwb's own root disk.
    cache = ([f"rootflags={ROOT_9P_FLAGS},cache={spec.root_cache}"]
             if spec.root_cache and spec.root_disk is None else [])
    return [*BASE_CMDLINE, *cache, *spec.cmdline]


def build_argv(spec: VngSpec, vng: Path | None = None) -> list[str]:
    """The vng argv that boots ``spec.kernel`` with an SSH server and waits (no --exec)."""
    if spec.accel not in ("kvm", "tcg"):
        raise InfraError(f"unknown accelerator {spec.accel!r}")
    if not re.match(r"^[A-Za-z0-9-]+$", spec.name):
        raise InfraError(f"bad guest name {spec.name!r}")
    if not re.match(r"^[A-Za-z0-9_,=.+-]*$", spec.cpu_model):
        raise UserError(f"bad QEMU cpu model {spec.cpu_model!r}")
    argv = [
        str(vng or vng_binary()), "--run", check_path(spec.kernel, "kernel"),
        "--name", spec.name, "--user", spec.user,
        "--verbose", "--force-9p", "--disable-microvm", "--disable-monitor",
        "--memory", f"{spec.memory_mb}M", "--cpus", str(spec.cpus),
        "--ssh", str(spec.ssh_port), "--ssh-tcp",
        "--cwd", spec.cwd,
        "--exec", GUEST_INIT,
    ]
    if spec.accel == "tcg":
        argv.append("--disable-kvm")
    if spec.root_disk is not None:
        if len(spec.disks) >= 25:
            raise UserError("at most 25 disks fit beside the isolated root")
        # The image is the overlay we hand in (format detected by vng); --rw writes only that overlay.
        argv += ["--root-disk", check_path(spec.root_disk, "root image"), "--root-fstype", "ext4",
                 "--root-dev", root_device(spec), "--rw"]
    for d in spec.rwdirs:
        path = check_path(d, "rw directory")
        # With a root of its own the guest path must be given; the same path keeps host paths valid.
        argv += ["--rwdir", f"{path}={path}" if spec.root_disk is not None else path]
    argv += ["--append", " ".join(kernel_cmdline(spec))]
    # Must stay last: vng appends it verbatim after every other virtme-run option.
    argv.append("--qemu-opts=" + " ".join(qemu_opts(spec)))
    return argv


def vng_env(home: Path, vng: Path | None = None) -> dict[str, str]:
    """Environment overrides for vng: a per-run HOME (per-run SSH keys) and virtme-run on PATH."""
    bindir = (vng or vng_binary()).parent
    return {"HOME": str(home), "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}


def ssh_key_path(home: Path) -> Path:
    """Where virtme-ng looks for (and kwb creates) the per-run client key under ``home``."""
    return home / ".cache" / "virtme-ng" / ".ssh" / "id_virtme"
