#!/usr/bin/env python3
"""Benchmark the kernel build: cold build time and one-file-change rebuild time of the lean config.

    .venv/bin/python scripts/bench_build.py            # incremental: touch io_uring/rw.c, rebuild
    .venv/bin/python scripts/bench_build.py --cold     # also a cold build in a scratch build dir, no ccache

Targets (this machine, 2 cores): cold build <= 7 min, one-file rebuild ~30 s. Prints JSON; never asserts.
The cold run uses a scratch build dir with ccache disabled so it measures compilation, not the cache, and
leaves the shared build dir and ccache untouched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.core.paths import cache_dir
from harness.kernel import build, kconfig
from harness.kernel.tree import checkout, locked, prepare_tree
from harness.kernel.variants import checkout_variant

TOUCHED = "io_uring/rw.c"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", action="store_true", help="also time a cold build (ccache off)")
    args = parser.parse_args()
    frags = kconfig.load_fragments()
    cfg_hash = kconfig.config_hash(frags)
    result: dict[str, object] = {"jobs": build.jobs(), "cpus": os.cpu_count(),
                                 "fragments": [f.name for f in frags]}
    with locked("kernel"):
        tree = prepare_tree(progress=_say)
        checkout(tree, checkout_variant(tree, "series", progress=_say))
        logs = cache_dir() / "logs"
        if args.cold:
            scratch = cache_dir() / "build" / f"bench-cold-{os.getpid()}"
            shutil.rmtree(scratch, ignore_errors=True)
            try:
                log = logs / f"bench-cold-{int(time.time())}.log"
                t0 = time.monotonic()
                kconfig.configure(tree.path, scratch, frags, build.make_args(), log)
                configure_s = time.monotonic() - t0
                _say("cold build (ccache disabled) ...")
                cold = build.make_kernel(tree, scratch, log, extra_env={"CCACHE_DISABLE": "1"})
                result.update(cold_configure_s=round(configure_s, 1), cold_build_s=round(cold, 1))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        kb = build.build_tree(tree, "series", frags, _say)  # make sure the shared build dir is current
        bdir = build.build_dir_for(tree, cfg_hash)
        log = logs / f"bench-incremental-{int(time.time())}.log"
        # The shared build dir may hold another variant's objects: bring it to "series" first.
        sync = build.make_kernel(tree, bdir, log)
        noop = build.make_kernel(tree, bdir, log)
        (tree.path / TOUCHED).touch()
        _say(f"rebuild after touching {TOUCHED} ...")
        one_file = build.make_kernel(tree, bdir, log)
        result.update(release=kb.release, sync_after_variant_switch_s=round(sync, 1),
                      noop_rebuild_s=round(noop, 1),
                      one_file_rebuild_s=round(one_file, 1), touched=TOUCHED,
                      load_avg_1m=round(os.getloadavg()[0], 2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
