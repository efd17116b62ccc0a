#!/usr/bin/env python3
"""Benchmark: whole-archive ingestion. In one run, on one public-inbox epoch (or v2 inbox):

1. the bare loop: ``git rev-list`` + one ``git cat-file --batch`` + ``email.message_from_bytes`` per
   message, keeping the six headers grouping needs (the least any series tool must do);
2. ``kwb series list --json`` with an empty cache (the archive index is built);
3. the same command again (answered from the index);

each in its own process, timed (wall, and the CPU time of it and its git children: on a shared host the
wall time is mostly the other jobs' load) with the Python process's own peak RSS (``VmHWM`` read at its
exit: the peak since its exec; ``RUSAGE_SELF`` would start from its parent's peak, which exec inherits)
and, for reference, the peak of any descendant (that is ``git cat-file``'s mmapped pack).
Targets: (2) within 1.5x the bare loop's time and 2x its memory; (3) at most 2 s. With
``--compare-tree DIR`` (a checkout of another kwb version, e.g. ``git archive REV | tar -x -C DIR``)
phases 2 and 3 also run on that tree's ``harness`` first (its own empty cache), for a before/after within
one run. Prints a line per phase and a JSON summary; exit 0 whatever the numbers — a benchmark reports,
it does not assert.

The archive is input, never part of the project: its path comes from ``--source`` or ``$KWB_PUBLIC_INBOX``.

    KWB_PUBLIC_INBOX=/path/to/inbox .venv/bin/python scripts/bench_ingest.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIME_RATIO, MEMORY_RATIO, REPEAT_S = 1.5, 2.0, 2.0
TIMEOUT_S = 1800

BARE = r'''
import email, subprocess, sys, threading
from pathlib import Path
spec = Path(sys.argv[1])
repos = [spec] if (spec / "objects").is_dir() else sorted((spec / "git").glob("*.git"),
                                                           key=lambda p: int(p.name.split(".")[0]))
kept = []
for repo in repos:
    revs = subprocess.run(["git", "-C", str(repo), "rev-list", "--reverse", "--first-parent", "--branches"],
                          capture_output=True, check=True).stdout.split()
    git = subprocess.Popen(["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE)
    def feed():
        for r in revs:
            git.stdin.write(r + b":m\n")
        git.stdin.close()
    threading.Thread(target=feed, daemon=True).start()
    for _ in revs:
        head = git.stdout.readline().split()
        if head[-1] == b"missing":
            continue
        data = git.stdout.read(int(head[2]))
        git.stdout.read(1)
        m = email.message_from_bytes(data)
        kept.append(tuple(str(m.get(h, "")) for h in ("Message-ID", "Subject", "From", "Date",
                                                       "In-Reply-To", "References")))
    git.wait()
print(len(kept))
print("SELF_MAXRSS_KB=" + next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")),
      file=sys.stderr)
'''

# kwb run in-process so its own peak RSS can be read at exit (RUSAGE_CHILDREN of the runner is the
# largest of all descendants: that is `git cat-file`, whose mmapped pack pages dominate both phases).
KWB = r'''
import atexit, sys
atexit.register(lambda: print("SELF_MAXRSS_KB=" + next(l.split()[1] for l in open("/proc/self/status")
                                                       if l.startswith("VmHWM:")), file=sys.stderr))
from harness.cli import main
sys.exit(main(sys.argv[1:]))
'''


def _rss_child(argv: list[str], env: dict[str, str], cwd: str | None = None) -> dict[str, float | int | str]:
    # Each phase in a fresh Python so RUSAGE_CHILDREN's running maximum cannot carry over.
    runner = ("import json,resource,subprocess,sys,time;t=time.monotonic();"
              "p=subprocess.run(sys.argv[1:],capture_output=True);w=time.monotonic()-t;"
              "u=resource.getrusage(resource.RUSAGE_CHILDREN);r=u.ru_maxrss;"
              "e=p.stderr.decode(errors='replace').strip().splitlines();"
              "m=[int(x.split('=')[1]) for x in e if x.startswith('SELF_MAXRSS_KB=')];"
              "e=[x for x in e if not x.startswith('SELF_MAXRSS_KB=')];"
              "print(json.dumps({'wall_s':round(w,2),'peak_rss_mib':round(m[-1]/1024,1) if m else None,"
              "'peak_rss_with_git_mib':round(r/1024,1),'cpu_s':round(u.ru_utime+u.ru_stime,2),"
              "'exit':p.returncode,"
              "'stdout_bytes':len(p.stdout),'stderr_last':e[-1] if e else ''}))")
    out = subprocess.run([sys.executable, "-c", runner, *argv], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=TIMEOUT_S, check=True)
    result: dict[str, float | int | str] = json.loads(out.stdout)
    return result


def main() -> int:
    """Run the three phases and print the figures."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--source", default=os.environ.get("KWB_PUBLIC_INBOX", ""))
    ap.add_argument("--compare-tree", metavar="DIR", help="another kwb checkout to measure first")
    args = ap.parse_args()
    if args.compare_tree and not (Path(args.compare_tree) / "harness" / "cli").is_dir():
        print(f"bench_ingest: error: {args.compare_tree}: not a kwb checkout (no harness/cli)",
              file=sys.stderr)
        return 3
    if not args.source or not Path(args.source).is_dir():
        print("bench_ingest: SKIPPED: set KWB_PUBLIC_INBOX (or --source) to a public-inbox mirror",
              file=sys.stderr)
        return 0
    kwb = [sys.executable, "-c", KWB]
    args.source = os.path.abspath(args.source)  # the compared tree's phases run in another directory
    listing = [*kwb, "series", "list", "--json", "--source", args.source]
    compared: list[tuple[str, dict[str, float | int | str]]] = []
    with tempfile.TemporaryDirectory(prefix="kwb-bench-ingest-") as cache:
        env = {**os.environ, "KWB_CACHE": cache}
        bare = _rss_child([sys.executable, "-c", BARE, args.source], env)
        if args.compare_tree:
            # Run from inside it: `python -c` puts the working directory first on sys.path, ahead of
            # this checkout's editable install. A cache of its own.
            tree = os.path.realpath(args.compare_tree)
            old = {**env, "KWB_CACHE": os.path.join(cache, "compare")}
            compared = [("compare: list (cold)", _rss_child(listing, old, tree)),
                        ("compare: list (index)", _rss_child(listing, old, tree))]
        cold = _rss_child(listing, env)
        repeat = _rss_child(listing, env)
        show = _rss_child([*kwb, "series", "show", "--source", args.source, "--json"], env)
    phases = (("bare loop", bare), *compared, ("kwb series list (cold)", cold),
              ("kwb series list (index)", repeat), ("kwb series show (index)", show))
    for name, r in phases:
        print(f"{name:26} {r['wall_s']:7.2f} s (CPU {r['cpu_s']:6.2f} s)  {r['peak_rss_mib']} MiB (with git: "
              f"{r['peak_rss_with_git_mib']} MiB)  exit {r['exit']}")
    time_ratio = float(cold["wall_s"]) / max(float(bare["wall_s"]), 1e-9)
    mem_ratio = float(cold["peak_rss_mib"]) / max(float(bare["peak_rss_mib"]), 1e-9)
    summary = {"bare": bare, "cold": cold, "repeat": repeat, "show": show, "compare": dict(compared),
               "time_ratio": round(time_ratio, 2), "memory_ratio": round(mem_ratio, 2),
               "targets": {"time_ratio": TIME_RATIO, "memory_ratio": MEMORY_RATIO, "repeat_s": REPEAT_S},
               "within_targets": time_ratio <= TIME_RATIO and mem_ratio <= MEMORY_RATIO
               and float(repeat["wall_s"]) <= REPEAT_S}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
