"""kwb commands: doctor, boot, shell (the VM side of the kernel pipeline)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from harness.core import atomic
from harness.core.errors import ExitCode, UserError
from harness.core.paths import cache_dir, results_root
from harness.kernel.build import ensure_kernel
from harness.vm import console, disks, doctor
from harness.vm.guest import BootError, Guest, GuestConfig
from harness.workloads import payload

DEFAULT_COMMAND_TIMEOUT = 300.0
PREPARE_TIMEOUT = 180.0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register doctor, boot and shell."""
    p = sub.add_parser("doctor", help="check tools, versions, KVM state and cache disk space")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--kernel", type=Path,
                   help="kernel to test-boot for the KVM probe (default: the newest built one)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("boot", help="boot the test kernel, run one command over SSH, record the result")
    _guest_args(p)
    p.add_argument("--exec", dest="command", required=True, metavar="CMD", help="shell command to run")
    p.add_argument("--timeout", type=float, default=DEFAULT_COMMAND_TIMEOUT,
                   help=f"command timeout in seconds (default {DEFAULT_COMMAND_TIMEOUT:.0f})")
    p.add_argument("--json", action="store_true", help="print the result file instead of the output")
    p.set_defaults(func=cmd_boot)

    p = sub.add_parser("shell", help="boot the test kernel and open an interactive SSH shell in it")
    _guest_args(p)
    p.set_defaults(func=cmd_shell)


def _guest_args(p: argparse.ArgumentParser) -> None:
    which = p.add_mutually_exclusive_group()
    which.add_argument("--kernel", type=Path, metavar="BZIMAGE", help="boot this kernel image")
    which.add_argument("--variant", default="series", help="build (or reuse) this variant (default: series)")
    p.add_argument("--disk", action="append", default=[], metavar="SIZE_MB:FS",
                   help="attach a raw disk (/dev/vda, vdb, ... in order); FS ext4|xfs|btrfs is made and "
                        "mounted on /tmp/kwb-mnt/vdX, raw leaves it blank (repeatable)")
    p.add_argument("--memory", type=int, default=2048, metavar="MB", help="guest memory (default 2048)")
    p.add_argument("--cpus", type=int, default=2, help="guest CPUs (default 2)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="accelerator (auto: KVM only if a test boot works)")
    p.add_argument("--boot-timeout", type=float, default=120.0, metavar="S",
                   help="boot timeout in seconds (default 120)")
    p.add_argument("--out", type=Path, help="results directory (default out/<run-id>)")


def _progress(args: argparse.Namespace) -> Any:
    quiet = bool(getattr(args, "quiet", False))
    return None if quiet else (lambda msg: print(f"kwb: {msg}", file=sys.stderr, flush=True))


def cmd_doctor(args: argparse.Namespace) -> int:
    """`kwb doctor`."""
    if args.kernel is not None and not args.kernel.is_file():
        raise UserError(f"kernel image not found: {args.kernel}")
    report = doctor.diagnose(args.kernel)
    print(json.dumps(report.to_dict(), indent=2) if args.json else doctor.render(report))
    if not report.usable:
        print(f"kwb: error: required tools missing: {', '.join(report.missing)}", file=sys.stderr)
        return int(ExitCode.INFRASTRUCTURE)
    return int(ExitCode.PASS)


def _kernel(args: argparse.Namespace) -> tuple[Path, str]:
    if args.kernel is not None:
        if not args.kernel.is_file():
            raise UserError(f"kernel image not found: {args.kernel}")
        return args.kernel.resolve(), ""
    build = ensure_kernel(args.variant, progress=_progress(args))
    return build.bzimage, build.release


def _guest_config(args: argparse.Namespace, kernel: Path, out: Path, images: list[Path]) -> GuestConfig:
    if args.memory < 256 or args.cpus < 1:
        raise UserError("--memory must be at least 256 MB and --cpus at least 1")
    return GuestConfig(kernel=kernel, results_dir=out, disks=images, memory_mb=args.memory, cpus=args.cpus,
                       boot_timeout=args.boot_timeout, accel=args.accel, root_payload=payload.for_guest())


def _prepare_disks(guest: Guest, specs: list[disks.DiskSpec]) -> list[dict[str, Any]]:
    """mkfs + mount each formatted disk; an error here is infrastructure (raised as BootError)."""
    info = []
    for i, spec in enumerate(specs):
        entry: dict[str, Any] = {"device": disks.guest_device(i), "size_mb": spec.size_mb, "fs": spec.fs}
        command = disks.prepare_command(i, spec.fs)
        if command:
            res = guest.run(command, timeout=PREPARE_TIMEOUT)
            if not res.ok:
                raise BootError(f"preparing {entry['device']} ({spec.fs}) failed: {res.tail(1)}", "error")
            entry["mount"] = disks.mount_point(i)
        info.append(entry)
    return info


def _run_id() -> str:
    return time.strftime("boot-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def cmd_boot(args: argparse.Namespace) -> int:
    """`kwb boot --exec CMD`: the result file is written whatever happens."""
    specs = [disks.DiskSpec.parse(d) for d in args.disk]
    if args.timeout <= 0:
        raise UserError("--timeout must be positive")
    kernel, release = _kernel(args)
    run_id = _run_id()
    out = (args.out or results_root() / run_id).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": args.command, "stdout": "", "stderr": "", "exit_code": None,
                              "timed_out": False, "outcome": "error", "error": "", "kernel": str(kernel),
                              "release": release, "accel": None, "kvm": None,
                              "boot_to_ssh_seconds": None, "disks": [], "findings": [],
                              "console_excerpt": "", "console_log": str(out / "console.log")}
    disk_dir = cache_dir() / "vm" / "disks" / run_id
    progress = _progress(args)
    try:
        images = [disks.make_disk(disk_dir / f"disk{i}.img", s.size_mb) for i, s in enumerate(specs)]
        guest = Guest(_guest_config(args, kernel, out, images))
    except BaseException as exc:
        result["error"] = str(exc) or type(exc).__name__
        _write_result(out, result)
        raise
    try:
        _boot_and_run(guest, specs, args, result, progress)
    finally:
        shutil.rmtree(disk_dir, ignore_errors=True)
        _write_result(out, result)
    return _report(args, out, result)


def _boot_and_run(guest: Guest, specs: list[disks.DiskSpec], args: argparse.Namespace,
                  result: dict[str, Any], progress: Any) -> None:
    try:
        if progress:
            progress(f"booting {guest.cfg.kernel} ({guest.cfg.memory_mb} MB, {guest.cfg.cpus} CPUs)")
        guest.start()
        if progress:
            progress(f"guest up over SSH after {guest.boot_seconds:.1f}s ({guest.accel})")
        result["disks"] = _prepare_disks(guest, specs)
        res = guest.run(args.command, timeout=args.timeout)
        result.update(stdout=res.stdout, stderr=res.stderr, exit_code=res.returncode,
                      timed_out=res.timed_out, duration=round(res.duration, 3))
    except BootError as exc:
        result["error"] = str(exc)
    except BaseException as exc:  # recorded in the result file, then the CLI maps it to an exit code
        result["error"] = str(exc) or type(exc).__name__
        raise
    finally:
        guest.close()
        outcome = guest.outcome
        if outcome == "ok" and result["timed_out"]:
            outcome = "timeout"
        if outcome == "ok" and result["error"]:
            outcome = "error"
        result.update(outcome=outcome, guest=guest.name, accel=guest.accel, kvm=guest.kvm,
                      boot_to_ssh_seconds=guest.boot_seconds,
                      boot_milestones=guest.milestones,
                      findings=[f.to_dict() for f in guest.findings],
                      console_excerpt=guest.excerpt() if outcome != "ok" else "",
                      findings_summary=console.summary(guest.findings))


def _write_result(out: Path, result: dict[str, Any]) -> None:
    atomic.write_json(out / "result.json", result)
    # fio-style per-job files, for grep and for reproducing by hand.
    atomic.write_text(out / "command", result["command"] + "\n")
    atomic.write_text(out / "stdout", result["stdout"])
    atomic.write_text(out / "stderr", result["stderr"])
    atomic.write_text(out / "exitcode", f"{result['exit_code']}\n")


def _report(args: argparse.Namespace, out: Path, result: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        sys.stdout.write(result["stdout"])
        sys.stderr.write(result["stderr"])
        boot = result["boot_to_ssh_seconds"]
        boot_s = f"{boot:.1f}s" if boot is not None else "-"
        print(f"kwb: outcome {result['outcome']}, exit {result['exit_code']}, boot-to-ssh {boot_s} "
              f"({result['accel']}); results in {out}", file=sys.stderr)
        if result["error"]:
            print(f"kwb: error: {result['error']}", file=sys.stderr)
        if result["outcome"] == "crash":
            print(result["console_excerpt"], file=sys.stderr)
    if result["outcome"] != "ok":
        return int(ExitCode.INFRASTRUCTURE)
    return int(ExitCode.PASS if result["exit_code"] == 0 else ExitCode.TEST_FAILURE)


def cmd_shell(args: argparse.Namespace) -> int:
    """`kwb shell`: an interactive shell in the booted test kernel; the guest goes when the shell ends."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("kwb shell needs a terminal (stdin and stdout must be a tty)")
    specs = [disks.DiskSpec.parse(d) for d in args.disk]
    kernel, _ = _kernel(args)
    run_id = _run_id().replace("boot-", "shell-")
    out = (args.out or results_root() / run_id).resolve()
    disk_dir = cache_dir() / "vm" / "disks" / run_id
    progress = _progress(args)
    try:
        images = [disks.make_disk(disk_dir / f"disk{i}.img", s.size_mb) for i, s in enumerate(specs)]
        with Guest(_guest_config(args, kernel, out, images)) as guest:
            for entry in _prepare_disks(guest, specs):
                if progress and "mount" in entry:
                    progress(f"{entry['device']}: {entry['fs']} mounted on {entry['mount']}")
            if progress:
                progress(f"guest up after {guest.boot_seconds:.1f}s ({guest.accel}); second terminal: "
                         f"ssh -i {guest.ssh.key} -p {guest.port} -o StrictHostKeyChecking=no "
                         f"-o UserKnownHostsFile=/dev/null root@127.0.0.1")
            code = guest.ssh.interactive()
        if progress:
            progress(f"guest powered off (outcome {guest.outcome}); console log {guest.console_log}")
    finally:
        shutil.rmtree(disk_dir, ignore_errors=True)
    return int(ExitCode.PASS if code == 0 else ExitCode.TEST_FAILURE)
