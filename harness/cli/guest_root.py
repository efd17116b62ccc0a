"""`kwb guest-image`: build (once per cache) the isolated guest root and print what it holds."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from harness.core.errors import ExitCode
from harness.vm import rootfs
from harness.workloads import payload


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Register `kwb guest-image`."""
    p = sub.add_parser("guest-image",
                       help="build the isolated guest root (once per cache; `make setup` runs it)",
                       description="Build kwb's own guest root — a minimal Debian tree made with mmdebstrap "
                                   "from the host's Debian mirror — and the boot image with the workloads' "
                                   "host-built binaries. Idempotent: an existing build is reused.")
    p.add_argument("--base-only", action="store_true",
                   help="only the Debian tree (no liburing/probe builds, no image): what `make setup` does")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_guest_image)


def cmd_guest_image(args: argparse.Namespace) -> int:
    """`kwb guest-image`."""
    def say(msg: str) -> None:
        if not args.quiet:
            print(f"kwb: {msg}", file=sys.stderr, flush=True)

    start = time.monotonic()
    base = rootfs.ensure_base(say)
    out: dict[str, Any] = {"tree": str(base.tree), "identity": base.identity, "built_now": base.built_now,
                           "base_build_seconds": round(base.build_seconds, 1), "recipe": rootfs.recipe()}
    if not args.base_only:
        dirs = payload.default_payload(say)
        t = time.monotonic()
        image = rootfs.ensure_image(dirs, say)
        out.update(image=str(image), payload=[str(p) for p in dirs],
                   image_seconds=round(time.monotonic() - t, 1))
    out["seconds"] = round(time.monotonic() - start, 1)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        how = "built now" if base.built_now else "already built"
        print(f"guest root {base.identity} ({how}; base build took {base.build_seconds:.0f}s): {base.tree}")
        if "image" in out:
            print(f"boot image: {out['image']} ({out['image_seconds']}s now)")
        print(f"kwb guest-image: ok ({out['seconds']}s)")
    return int(ExitCode.PASS)
