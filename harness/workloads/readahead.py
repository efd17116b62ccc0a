"""The read-ahead dimension: a job run with the target's read-ahead window set (``read_ahead_kb = 0``).

A reviewer measured the series with read-ahead disabled and saw every buffered read go to io-wq workers:
the async path then depends on how the kernel reads a page nobody read ahead. A catalogue workload with
a top-level ``read_ahead_kb`` runs with that window on every backing-device-info the target's reads go
through, and the old values are put back after the job (the same guest runs the next job).

Which files: the block device's ``queue/read_ahead_kb`` (ext4, xfs and the raw device read through that
queue's backing-device info) and the filesystem-private one under ``/sys/fs/*/<id>/bdi/`` of a filesystem
whose ``devices/`` lists the target's device (a filesystem that spans devices has a bdi of its own).
The file's own window is copied from its bdi when it is opened, so the setting is made before the
workload opens anything. What was set is read back and kept in the job's evidence: a job that claims
"read-ahead off" shows the kernel's own figure.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from harness.core.errors import InfraError
from harness.workloads.model import GuestSession, Target

SET_TIMEOUT = 30.0
# Filesystem-private backing-device infos (btrfs: /sys/fs/btrfs/<fsid>/bdi), each beside the devices the
# filesystem spans (/sys/fs/btrfs/<fsid>/devices/vdc): the glob names no filesystem, and only the ones on
# the target's device are taken.
FS_DIR_GLOB = "/sys/fs/*/*"


@dataclass(frozen=True)
class Window:
    """The read-ahead files of one target: their values before the job and after the setting."""

    before: dict[str, int]
    after: dict[str, int]


def _files_script(target: Target) -> str:
    dev = shlex.quote(target.device.rsplit("/", 1)[-1])
    return (f'for d in {FS_DIR_GLOB}; do [ -e "$d/devices/{dev}" ] && echo "$d/bdi/read_ahead_kb"; done | '
            f"{{ cat; echo /sys/block/{dev}/queue/read_ahead_kb; }} | "
            'while read -r f; do [ -w "$f" ] && echo "$f $(cat "$f")"; done; true')


def parse_values(text: str) -> dict[str, int]:
    """``"<path> <kb>"`` lines → {path: kb}; any other line is an error naming it."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        path, _, kb = line.strip().rpartition(" ")
        if not path.startswith("/sys/") or not kb.isdigit():
            raise InfraError(f"read-ahead: unexpected line from the guest: {line.strip()!r}")
        values[path] = int(kb)
    return values


def _read(guest: GuestSession, target: Target) -> dict[str, int]:
    res = guest.run(_files_script(target), timeout=SET_TIMEOUT)
    if not res.ok:
        raise InfraError(f"read-ahead: listing the windows of {target.device} failed: "
                         f"{(res.stderr or res.stdout).strip() or f'exit {res.returncode}'}")
    return parse_values(res.stdout)


def _write(guest: GuestSession, values: dict[str, int]) -> None:
    script = "; ".join(f"echo {kb} > {shlex.quote(path)}" for path, kb in sorted(values.items()))
    res = guest.run(script or "true", timeout=SET_TIMEOUT)
    if not res.ok:
        raise InfraError(f"read-ahead: setting {', '.join(sorted(values))} failed: "
                         f"{(res.stderr or res.stdout).strip() or f'exit {res.returncode}'}")


def apply(guest: GuestSession, target: Target, kb: int) -> Window:
    """Set every read-ahead window of ``target`` to ``kb``; InfraError when the kernel did not take it."""
    before = _read(guest, target)
    if not before:
        raise InfraError(f"read-ahead: no writable read_ahead_kb for {target.device} in the guest")
    _write(guest, {path: kb for path in before})
    after = _read(guest, target)
    wrong = {p: v for p, v in after.items() if p in before and v != kb}
    if wrong:
        raise InfraError(f"read-ahead: asked for {kb} KiB, the kernel kept "
                         + ", ".join(f"{p}={v}" for p, v in sorted(wrong.items())))
    return Window(before=before, after={p: v for p, v in after.items() if p in before})


def restore(guest: GuestSession, window: Window) -> None:
    """Put the values from before the job back (the next job on this guest expects the defaults)."""
    _write(guest, window.before)
