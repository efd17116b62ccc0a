#!/usr/bin/env python3
"""How far off was the build's ETA at the halfway point? (issue 14: within ±25 % on a cold build)

Reads a build's progress samples (``<build dir>/kwb-progress/<log name>.jsonl``, one JSON object per line:
``t`` seconds since make started, ``done`` objects, ``expected``, ``eta`` seconds) and prints, at the
sample nearest to half the build's real duration, the ETA shown then against the time that really
remained, and the error in percent. ``--replay HISTORY`` recomputes the ETAs of the same build with
another build's samples as the history (what the meter would have shown with that build as its "last
build of this configuration"), to check the ETA logic without building again. ``--reconstruct BUILD_DIR
--log LOG`` reads a finished cold build's timeline back from its objects' modification times (a build
made before meters existed), prints how far a linear ETA (the meter's fallback) was off at its halfway
point, and with ``--seed`` keeps it as that build dir's cold history so the next cold build has a profile.

    scripts/bench_eta.py ~/.cache/kwb/build/debian-6.12-611e53e9b56f/kwb-progress/build-series-….jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.kernel.buildmeter import BuildMeter, Expectation


def load(path: Path) -> list[dict[str, Any]]:
    """The samples of one build, in order."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(rows) < 3:
        raise SystemExit(f"{path}: only {len(rows)} samples, not a build to judge")
    return rows


def halfway(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """ETA error at the sample nearest to half the real duration."""
    total = float(rows[-1]["t"])
    mid = min(rows[:-1], key=lambda r: abs(float(r["t"]) - total / 2))
    remaining = total - float(mid["t"])
    eta = mid.get("eta")
    error = None if eta is None or remaining <= 0 else (float(eta) - remaining) / remaining
    return {"duration": total, "at": float(mid["t"]), "done": mid["done"], "expected": mid.get("expected"),
            "eta": eta, "remaining": remaining, "error": error, "objects": rows[-1]["done"]}


def replay(rows: list[dict[str, Any]], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` again, each ETA recomputed as the meter would with ``history`` as the earlier build."""
    profile = [(float(r["t"]), int(r["done"])) for r in history]
    exp = Expectation(int(history[-1]["done"]), "replay", profile, float(history[-1]["t"]))
    meter = BuildMeter(exp, None, None, clock=lambda: 0.0)
    out = []
    for r in rows:
        meter.done = int(r["done"])
        out.append({**r, "expected": meter.expected(), "eta": meter.eta(float(r["t"]))})
    return out


def main(argv: list[str] | None = None) -> int:
    """Print the halfway ETA error of a samples file (optionally replayed against another)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("samples", type=Path, help="a kwb-progress/*.jsonl file")
    ap.add_argument("--replay", type=Path, metavar="HISTORY",
                    help="recompute ETAs with this build as history")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reconstruct", type=Path, metavar="BUILD_DIR",
                    help="the samples argument is ignored: rebuild a timeline from BUILD_DIR's objects")
    ap.add_argument("--log", type=Path, help="with --reconstruct: that build's log (start time, count)")
    ap.add_argument("--end", type=float, help="with --reconstruct: epoch seconds the build finished")
    ap.add_argument("--seed", action="store_true", help="with --reconstruct: keep it as the cold history")
    args = ap.parse_args(argv)
    if args.reconstruct:
        return _reconstruct(args)
    rows = load(args.samples)
    if args.replay:
        rows = replay(rows, load(args.replay))
    res = halfway(rows)
    if args.json:
        print(json.dumps(res))
    elif res["error"] is None:
        print(f"{args.samples.name}: no ETA at the halfway point ({res['at']:.0f}s of "
              f"{res['duration']:.0f}s; no earlier build of this configuration to expect from)")
    else:
        ok = "within" if abs(res["error"]) <= 0.25 else "OUTSIDE"
        print(f"{args.samples.name}: build {res['duration']:.0f}s, {res['objects']} objects; "
              f"at {res['at']:.0f}s ({res['done']}/{res['expected']} objects) ETA {res['eta']:.0f}s "
              f"vs {res['remaining']:.0f}s "
              f"really left: error {100 * res['error']:+.1f}% ({ok} ±25%)")
    return 0


def _reconstruct(args: argparse.Namespace) -> int:
    from harness.kernel import buildmeter

    if args.log is None or args.end is None:
        raise SystemExit("--reconstruct needs --log LOG (its name ends in the start time) and --end EPOCH")
    start = float(args.log.stem.rsplit("-", 1)[-1])
    profile = buildmeter.profile_from_mtimes(args.reconstruct, start, args.end)
    total = profile[-1][1]
    linear = [{"t": t, "done": n, "expected": total, "eta": t / n * (total - n) if n else None}
              for t, n in profile]
    res = halfway(linear)
    print(f"{args.reconstruct.name}: {total} objects in {res['duration']:.0f}s (from mtimes); "
          f"a linear ETA at {res['at']:.0f}s said {res['eta']:.0f}s, {res['remaining']:.0f}s really left: "
          f"error {100 * res['error']:+.1f}%")
    if args.seed:
        count = buildmeter.count_log(args.log) or total
        # The meter counts kbuild's target lines; the profile is in objects: ETA lookups scale between them.
        path = buildmeter.keep(args.reconstruct, True, count, res["duration"], profile)
        print(f"kept as the cold history of {args.reconstruct.name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
