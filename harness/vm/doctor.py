"""`kwb doctor`: is this machine able to run kwb? Tools and versions, KVM state, cache disk space, and
the guest isolation in effect (kwb's own root image, or the host's root with ``--host-root``).

The tool list is data (``harness/vm/doctor.toml``). KVM is probed afresh with a bounded test boot (see
:mod:`harness.vm.accel`), so the whole check stays well under a minute even when KVM hangs.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import InfraError
from harness.core.paths import cache_dir
from harness.core.run import run
from harness.core.tomlfile import load_toml
from harness.vm import accel, rootfs

TOOLS_FILE = Path(__file__).with_name("doctor.toml")
LOW_DISK_GB = 10.0
VERSION_TIMEOUT = 15.0


@dataclass
class Tool:
    """One host tool as declared in doctor.toml, and what was found."""

    name: str
    binary: str
    version_argv: list[str]
    required: bool = True
    reason: str = ""
    path: str = ""
    version: str = ""

    @property
    def ok(self) -> bool:
        """Present on this machine."""
        return bool(self.path)


@dataclass
class Report:
    """Everything doctor found."""

    tools: list[Tool]
    kvm: str
    kvm_reason: str
    accel: str
    cache_dir: str
    disk_free_gb: float
    disk_total_gb: float
    duration: float = 0.0
    warnings: list[str] = field(default_factory=list)
    isolation: dict[str, Any] = field(default_factory=dict)

    @property
    def missing(self) -> list[str]:
        """Required tools that are not installed."""
        return [t.name for t in self.tools if t.required and not t.ok]

    @property
    def usable(self) -> bool:
        """True when every required tool is present."""
        return not self.missing

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        tools = {t.name: {**{k: v for k, v in asdict(t).items() if k not in ("name", "version_argv")},
                          "ok": t.ok} for t in self.tools}
        return {"usable": self.usable, "missing": self.missing, "tools": tools, "kvm": self.kvm,
                "kvm_reason": self.kvm_reason, "accel": self.accel, "cache_dir": self.cache_dir,
                "disk": {"free_gb": round(self.disk_free_gb, 1), "total_gb": round(self.disk_total_gb, 1)},
                "isolation": self.isolation, "warnings": self.warnings, "duration": round(self.duration, 1)}


def load_tools(path: Path | None = None) -> list[Tool]:
    """The declared tools (``doctor.toml`` beside this module unless ``path`` is given)."""
    path = path or TOOLS_FILE
    data = load_toml(path, "tool list", error=InfraError)  # packaged file: broken means broken install
    return [Tool(name=t["name"], binary=t.get("binary", t["name"]), version_argv=list(t.get("version", [])),
                 required=bool(t.get("required", True)), reason=str(t.get("reason", "")))
            for t in data.get("tool", [])]


def search_path() -> str:
    """PATH plus the sbin directories and this Python environment's bin (vng, b4 live there)."""
    extra = [str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/sbin", "/sbin"]
    return os.pathsep.join([os.environ.get("PATH", ""), *extra])


def check_tool(tool: Tool) -> Tool:
    """Fill in path and version of ``tool``."""
    found = shutil.which(tool.binary, path=search_path())
    if not found:
        return tool
    tool.path = found
    if tool.version_argv:
        res = run([found, *tool.version_argv[1:]], timeout=VERSION_TIMEOUT)
        text = (res.stdout.strip() or res.stderr.strip()).splitlines()
        tool.version = text[0].strip() if text else f"(no version output, exit {res.returncode})"
    return tool


def isolation() -> dict[str, Any]:
    """What a guest booted now may see and reach (the mode comes from KWB_GUEST_ROOT / ``--host-root``)."""
    mode = rootfs.mode()
    if mode == "host":
        return {"mode": "host", "chosen_by": "--host-root (KWB_GUEST_ROOT=host)",
                "host_files": "the host's whole root, read-only over 9p",
                "network": "QEMU user network: the host's loopback services are reachable at 10.0.2.2",
                "writable_host_paths": "the results directory"}
    base = rootfs.existing_base()
    return {"mode": "isolated", "chosen_by": "default",
            "host_files": "none (kwb's image, a per-boot overlay on it); "
                          "read-only: virtme-ng's guest scripts",
            "network": "SSH forward on 127.0.0.1 only (QEMU user network, restrict=on)",
            # vng hands sshd its per-boot host keys through a fresh directory under the per-run HOME.
            "writable_host_paths": "the results directory, virtme-ng's per-boot sshd key directory",
            "image": {"built": base is not None, "identity": base.identity if base else "",
                      "tree": str(base.tree if base else rootfs.base_dir() / "tree"),
                      "build_seconds": round(base.build_seconds, 1) if base else None}}


def diagnose(kernel: Path | None = None) -> Report:
    """Run every check (KVM probed afresh and recorded)."""
    start = time.monotonic()
    tools = [check_tool(t) for t in load_tools()]
    choice = accel.choose("auto", kernel, fresh=True)
    cache = cache_dir()
    usage = shutil.disk_usage(cache)
    report = Report(tools=tools, kvm=choice.kvm, kvm_reason=choice.reason, accel=choice.accel,
                    cache_dir=str(cache), disk_free_gb=usage.free / 2**30, disk_total_gb=usage.total / 2**30)
    if report.disk_free_gb < LOW_DISK_GB:
        report.warnings.append(f"only {report.disk_free_gb:.1f} GiB free in {cache} "
                               f"(a kernel build tree needs ~{LOW_DISK_GB:.0f} GiB)")
    for t in tools:
        if not t.required and not t.ok:
            report.warnings.append(f"{t.name} not found: {t.reason}")
    report.isolation = isolation()
    image = report.isolation.get("image")
    if isinstance(image, dict) and not image["built"]:
        report.warnings.append("the isolated guest root is not built yet: `kwb guest-image` "
                               "(or `make setup`) builds it; otherwise the first boot does")
    report.duration = time.monotonic() - start
    return report


def render(report: Report) -> str:
    """Human-readable report."""
    lines = []
    for t in report.tools:
        status = "ok" if t.ok else ("MISSING" if t.required else "missing (optional)")
        lines.append(f"  {t.name:<20} {status:<20} {t.version or t.path}")
    lines.append(f"  {'kvm':<20} {report.kvm:<20} {report.kvm_reason}")
    lines.append(f"  {'accelerator':<20} {report.accel}")
    lines.append(f"  {'cache':<20} {report.disk_free_gb:.1f} GiB free of {report.disk_total_gb:.1f} "
                 f"GiB  {report.cache_dir}")
    iso = report.isolation
    if iso:
        lines.append(f"  {'guest root':<20} {iso['mode']:<20} {iso['host_files']} ({iso['chosen_by']})")
        lines.append(f"  {'guest network':<20} {'restricted' if iso['mode'] == 'isolated' else 'open':<20} "
                     f"{iso['network']}")
        image = iso.get("image")
        if isinstance(image, dict):
            state = f"built ({image['identity']})" if image["built"] else "not built"
            lines.append(f"  {'guest image':<20} {state:<20} {image['tree']}")
    lines += [f"warning: {w}" for w in report.warnings]
    verdict = "usable" if report.usable else f"NOT usable: missing {', '.join(report.missing)}"
    lines.append(f"kwb doctor: {verdict} ({report.duration:.1f}s)")
    return "\n".join(lines)
