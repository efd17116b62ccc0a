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
  guest only), prints :data:`READY_MARKER` and sleeps; SSH attempts start once the marker is seen.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import InfraError, UserError
from harness.qemu.disks import disk_format

# Guest kernel options kwb always wants: a panic reboots at once and -no-reboot turns that into exit.
BASE_CMDLINE = ("panic=-1",)
READY_MARKER = "KWB-GUEST-READY"
GUEST_INIT = ('[ -f "$HOME/.bashrc" ] && mount --bind /dev/null "$HOME/.bashrc"; '
              f"echo {READY_MARKER}; exec sleep infinity")
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


def disk_qemu_opts(disks: list[Path]) -> list[str]:
    """QEMU options attaching images as virtio-blk (vda, vdb, ... in order), each with its explicit format."""
    opts: list[str] = []
    for i, disk in enumerate(disks):
        path = check_path(disk, "disk image")
        fmt = disk_format(disk)
        opts += ["-drive", f"if=none,id=kwbdisk{i},file={path},format={fmt},cache=writeback",
                 "-device", f"virtio-blk-pci,drive=kwbdisk{i},serial=kwbdisk{i}"]
    return opts


def qemu_opts(spec: VngSpec) -> list[str]:
    """The extra QEMU options kwb passes through vng."""
    return ["-no-reboot", "-pidfile", check_path(spec.pidfile, "pid file"), *disk_qemu_opts(spec.disks)]


def build_argv(spec: VngSpec, vng: Path | None = None) -> list[str]:
    """The vng argv that boots ``spec.kernel`` with an SSH server and waits (no --exec)."""
    if spec.accel not in ("kvm", "tcg"):
        raise InfraError(f"unknown accelerator {spec.accel!r}")
    if not re.match(r"^[A-Za-z0-9-]+$", spec.name):
        raise InfraError(f"bad guest name {spec.name!r}")
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
    for d in spec.rwdirs:
        argv += ["--rwdir", check_path(d, "rw directory")]
    argv += ["--append", " ".join([*BASE_CMDLINE, *spec.cmdline])]
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
