"""What the workloads need inside kwb's isolated guest root: the host-built liburing tests and probes.

The guest root (:mod:`harness.vm.rootfs`) copies in whatever directories it is handed; this module, on
the workloads' side of the pipeline, says which ones.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.errors import InfraError
from harness.vm import rootfs
from harness.vm.rootfs import Progress
from harness.workloads import liburing, probes


def default_payload(progress: Progress | None = None) -> list[Path]:
    """The host-built binaries the workloads run in the guest: liburing's tests and the probes.

    Each is built when missing (both builds are cached); one that cannot be built is left out with a
    progress note, and the job that needs it reports the same build error when it runs.
    """
    say = progress or (lambda _msg: None)
    dirs: list[Path] = []

    def built_probes() -> Path:
        probes.build_all()
        return probes.build_dir()

    for what, build in (("liburing tests", liburing.build_tests), ("probes", built_probes)):
        try:
            dirs.append(build().resolve())
        except (InfraError, OSError) as exc:
            say(f"guest root: {what} not included ({exc})")
    return dirs


def for_guest(progress: Progress | None = None) -> tuple[Path, ...]:
    """The payload a guest of the root mode in effect needs: none on the host's root (it sees the host's
    files), :func:`default_payload` on kwb's isolated root."""
    return () if rootfs.mode() == "host" else tuple(default_payload(progress))
