#!/usr/bin/env python3
"""Benchmark: boot-to-SSH on kwb's isolated root (disk image, or the same tree as a 9p directory) vs the
host's root, interleaved A/B/C boots in one run (the host's speed drifts between runs, not within one).

- ``image``: what kwb boots by default (:mod:`harness.vm.rootfs`: ext4 image, per-boot qcow2 overlay);
- ``dir9p``: the same Debian tree exported read-only with vng's ``--root DIR`` over 9p (measured to
  choose between vng's two root options; kwb does not boot this way);
- ``host``: ``kwb --host-root`` (the host's ``/`` read-only over 9p, today's behaviour).

Also reports the image build time (base tree, boot image) as recorded in the cache. Prints JSON.

    flock /tmp/kwb-heavy.lock .venv/bin/python scripts/bench_rootfs.py [--kernel BZIMAGE] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from harness.core.errors import KwbError
from harness.vm import rootfs, vng
from harness.vm.guest import Guest, GuestConfig
from harness.vm.vng import VngSpec
from harness.workloads import payload

MODES = ("image", "dir9p", "host")


class _BuildArgv(Protocol):
    """The signature of :func:`harness.vm.vng.build_argv`, which the dir9p mode swaps out."""

    def __call__(self, spec: VngSpec, vng: Path | None = None) -> list[str]: ...


def _kernel(args: argparse.Namespace) -> Path:
    if args.kernel:
        return Path(args.kernel)
    from harness.kernel.build import ensure_kernel

    return ensure_kernel(args.variant).bzimage


def _dir9p_argv(tree: Path) -> _BuildArgv:
    """vng.build_argv for the 9p-directory root: vng's ``--root TREE``, results on a tmpfs mount point
    (the exported tree is read-only, so a host path cannot be made in it), network restricted."""
    original = vng.build_argv

    def build(spec: VngSpec, vng: Path | None = None) -> list[str]:  # build_argv's own parameter names
        spec.restrict_net = True
        spec.cwd = str(tree)  # vng takes --cwd as a host path inside --root
        argv = original(spec, vng)
        i = argv.index("--rwdir")
        argv[i + 1] = f"/run/kwb-results={argv[i + 1]}"
        return [argv[0], "--root", str(tree), *argv[1:]]
    return build


def one_boot(mode: str, kernel: Path, workdir: Path, timeout: float, tree: Path) -> dict[str, Any]:
    """Boot once on ``mode``'s root; boot-to-SSH and the console milestones."""
    root = "host" if mode in ("host", "dir9p") else "isolated"
    original = vng.build_argv
    if mode == "dir9p":
        vng.build_argv = _dir9p_argv(tree)
    try:
        with Guest(GuestConfig(kernel=kernel, results_dir=workdir, boot_timeout=timeout, root=root)) as g:
            check = g.run("findmnt -no SOURCE,FSTYPE /; uname -r", timeout=60).stdout.split()
    finally:
        vng.build_argv = original
    return {"mode": mode, "boot_to_ssh_s": round(g.boot_seconds or -1, 2), "root": check[:2],
            "prepare_s": g.root.prepare_seconds, "outcome": g.outcome, "milestones": g.milestones,
            "host_load": round(os.getloadavg()[0], 1)}


def main() -> int:
    """Run the benchmark."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--kernel")
    p.add_argument("--variant", default="series")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--boot-timeout", type=float, default=600.0)
    args = p.parse_args()
    kernel = _kernel(args)
    modes = args.modes.split(",")
    t = time.monotonic()
    image = rootfs.ensure_image(payload.default_payload())
    image_s = time.monotonic() - t
    base = rootfs.ensure_base()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kwb-bench-rootfs-") as tmp:
        for r in range(args.rounds):
            for mode in modes:
                try:
                    res = one_boot(mode, kernel, Path(tmp) / f"{mode}-{r}", args.boot_timeout, base.tree)
                except KwbError as exc:  # one mode failing must not lose the others' numbers
                    log = Path(tmp) / f"{mode}-{r}" / "console.log"
                    tail = log.read_text(errors="replace")[-600:] if log.is_file() else ""
                    res = {"mode": mode, "boot_to_ssh_s": -1.0, "error": str(exc), "console_tail": tail}
                print(f"round {r + 1} {mode}: {res['boot_to_ssh_s']}s root={res['root']}", file=sys.stderr,
                      flush=True)
                runs.append(res)
    summary: dict[str, Any] = {"benchmark": "rootfs_boot_to_ssh", "kernel": str(kernel), "image": str(image),
                               "base_build_s": base.build_seconds, "image_ready_s": round(image_s, 2),
                               "runs": runs}
    for mode in modes:
        times = [float(x["boot_to_ssh_s"]) for x in runs if x["mode"] == mode and "error" not in x]
        if not times:
            summary[mode] = {"n": 0, "failed": True}
            continue
        summary[mode] = {"min_s": min(times), "median_s": statistics.median(times), "max_s": max(times),
                         "n": len(times)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
