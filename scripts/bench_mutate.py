#!/usr/bin/env python3
"""Benchmark a mutation campaign: the issue's 40 generated mutants over io_uring/rw.c and mm/filemap.c.

    flock /tmp/kwb-heavy.lock .venv/bin/python scripts/bench_mutate.py --out out/bench-mutate \\
        [--max 40] [--seed 1] [--budget 120] [--checks a,b] [--fs ext4]

Runs `kwb mutate --control` with the campaign's settings (orchestrate/mutate/operators.toml unless overridden)
and prints JSON: the score, the outcome counts, the cost per mutant (object build, kernel link, boot,
checks) and the campaign's wall time, from the campaign's results.json. Resumable like the campaign
(same --out). Never asserts; a person reads the numbers. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.cli import main as kwb_main


def main() -> int:
    """Run the campaign and print its summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max", default="40")
    p.add_argument("--seed", default="1")
    p.add_argument("--budget", help="minutes")
    p.add_argument("--checks")
    p.add_argument("--fs")
    args = p.parse_args()
    argv = ["mutate", "--control", "--max", args.max, "--seed", args.seed, "--out", str(args.out)]
    for flag in ("budget", "checks", "fs"):
        if getattr(args, flag):
            argv += [f"--{flag}", getattr(args, flag)]
    rc = kwb_main(argv)
    results = args.out / "results.json"
    if not results.is_file():
        print(json.dumps({"exit_code": rc, "error": "no results.json written"}))
        return rc
    data = json.loads(results.read_text(encoding="utf-8"))
    survivors = [m["id"] for m in data["mutants"] if m["outcome"]["status"] == "survived"]
    print(json.dumps({"exit_code": rc, **data["summary"], "survivors": survivors}, indent=2))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
