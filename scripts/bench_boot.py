#!/usr/bin/env python3
"""Benchmark: boot-to-SSH of the test kernel under virtme-ng, N consecutive boots, and A/B settings.

Boot-to-SSH is measured by :class:`harness.vm.guest.Guest` from launching vng to the first command
that completes over SSH. Each boot runs ``uname -r`` and one fio start (the per-exec cost the 9p cache
mode is about), then powers off. A boot is *lost* when it never answered (even after the Guest's own
one reboot); *retried* counts boots that answered only on the second attempt. ``--config`` runs the
given settings round-robin (A/B/A/B...) so that host drift hits every setting alike:

    default       GuestConfig's defaults (what kwb uses)
    legacy        the previous design: uncached 9p root, -cpu max, SSH after udev has settled
    cache=MODE    9p root cache mode (loose, mmap, readahead); cpu=MODEL  QEMU -cpu; early / late  SSH
                  once DHCP is done / after udev; combine with "+", e.g. ``cache=loose+cpu=qemu64+early``

Prints a JSON summary per setting (median/min/max boot-to-SSH, lost, retried, first-command seconds).

    .venv/bin/python scripts/bench_boot.py [--kernel BZIMAGE | --variant series] [--runs 10]
        [--config legacy --config default ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from harness.vm.guest import BootError, Guest, GuestConfig

TARGET_SECONDS = 8.0
LEGACY = {"root_cache": "", "cpu_model": "", "early_ssh": False}
FIO_START = ("fio --name=t --filename=/tmp/kwb-bench-f --size=1M --rw=read --bs=4k "
             "--output-format=terse >/dev/null")


def parse_config(text: str) -> dict[str, Any]:
    """``default``, ``legacy`` or ``key=value+...`` as GuestConfig overrides; ValueError names the part."""
    if text == "default":
        return {}
    if text == "legacy":
        return dict(LEGACY)
    out: dict[str, Any] = {}
    for part in text.split("+"):
        key, _, value = part.partition("=")
        if key == "cache":
            out["root_cache"] = value
        elif key == "cpu":
            out["cpu_model"] = value
        elif key in ("early", "late") and not value:
            out["early_ssh"] = key == "early"
        else:
            raise ValueError(f"unknown boot setting {part!r} (cache=MODE, cpu=MODEL, early, late)")
    known = {f.name for f in fields(GuestConfig)}
    assert set(out) <= known
    return out


def _kernel(args: argparse.Namespace) -> Path:
    if args.kernel:
        return Path(args.kernel)
    from harness.kernel.build import ensure_kernel

    return ensure_kernel(args.variant).bzimage


def one_boot(kernel: Path, accel: str, workdir: Path, boot_timeout: float,
             overrides: dict[str, Any]) -> dict[str, Any]:
    """Boot once; boot-to-SSH, first commands, shutdown time, console milestones, lost/retried."""
    cfg = GuestConfig(kernel=kernel, results_dir=workdir, accel=accel, boot_timeout=boot_timeout, **overrides)
    g = Guest(cfg)
    t0 = time.monotonic()
    try:
        with g:
            t1 = time.monotonic()
            uname = g.run("uname -r", timeout=60)
            fio = g.run(FIO_START, timeout=120)
            t2 = time.monotonic()
    except BootError as exc:
        return {"lost": True, "reason": exc.reason, "retried": len(g.lost_boots), "lost_boots": g.lost_boots,
                "wall_s": round(time.monotonic() - t0, 2), "host_load": round(os.getloadavg()[0], 1)}
    return {"lost": False, "boot_to_ssh_s": round(g.boot_seconds or -1, 2), "retried": len(g.lost_boots),
            "lost_boots": g.lost_boots, "uname_ok": uname.ok and bool(uname.stdout.strip()),
            "uname_s": round(uname.duration, 2), "fio_start_s": round(fio.duration, 2), "fio_ok": fio.ok,
            "commands_s": round(t2 - t1, 2), "shutdown_s": round(time.monotonic() - t2, 2),
            "accel": g.accel, "outcome": g.outcome, "milestones": g.milestones,
            # the interface rename race's trace (kwb's fix keeps eth0): should stay 0
            "renamed": g.console_text().count("renamed from eth"),
            "host_load": round(os.getloadavg()[0], 1)}


def summarise(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median/min/max of the boots that answered; lost and retried counts."""
    ok = [r for r in runs if not r["lost"]]
    times = [float(r["boot_to_ssh_s"]) for r in ok]
    out: dict[str, Any] = {"config": name, "boots": len(runs), "lost": len(runs) - len(ok),
                           "retried": sum(1 for r in runs if r["retried"]),
                           "lost_reasons": sorted({str(b["reason"]) for r in runs for b in r["lost_boots"]}
                                                  | {str(r["reason"]) for r in runs if r["lost"]})}
    if times:
        out.update({"median_s": round(statistics.median(times), 2), "min_s": min(times), "max_s": max(times),
                    "median_uname_s": statistics.median(float(r["uname_s"]) for r in ok),
                    "median_fio_start_s": statistics.median(float(r["fio_start_s"]) for r in ok),
                    "commands_ok": all(r["uname_ok"] and r["fio_ok"] for r in ok),
                    "boots_with_rename": sum(1 for r in ok if r.get("renamed")),
                    "meets_target": statistics.median(times) <= TARGET_SECONDS})
    return out


def main() -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--kernel")
    p.add_argument("--variant", default="series")
    p.add_argument("--runs", type=int, default=10, help="boots per setting")
    p.add_argument("--config", action="append", help="a boot setting (repeatable; default: default)")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--boot-timeout", type=float, default=300.0)
    p.add_argument("--json-out", help="also write the summary here")
    p.add_argument("--max-seconds", type=float, default=0.0,
                   help="stop starting rounds after this long (0: no limit); the summary says how many ran")
    args = p.parse_args()
    names = args.config or ["default"]
    try:
        configs = {n: parse_config(n) for n in names}
    except ValueError as exc:
        print(f"bench_boot: {exc}", file=sys.stderr)
        return 3
    kernel = _kernel(args)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kwb-bench-boot-") as tmp:
        for i in range(args.runs):
            if args.max_seconds and time.monotonic() - began > args.max_seconds:
                print(f"bench_boot: stopping after {i} rounds ({args.max_seconds:.0f}s limit)",
                      file=sys.stderr)
                break
            for n in names:  # round-robin: A/B/A/B, so host drift hits every setting alike
                workdir = Path(tmp) / f"s{names.index(n)}-{i}"  # vng passes only plain path characters
                r = one_boot(kernel, args.accel, workdir, args.boot_timeout, configs[n])
                r["config"] = n
                print(f"boot {i + 1} [{n}]: " + json.dumps({k: v for k, v in r.items() if k != "milestones"}),
                      file=sys.stderr, flush=True)
                runs[n].append(r)
    summary = {"benchmark": "boot_to_ssh", "kernel": str(kernel), "target_s": TARGET_SECONDS,
               "rounds_asked": args.runs, "wall_s": round(time.monotonic() - began, 1),
               "settings": [summarise(n, runs[n]) for n in names], "runs": runs}
    text = json.dumps(summary, indent=2)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    print(json.dumps(summary["settings"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
