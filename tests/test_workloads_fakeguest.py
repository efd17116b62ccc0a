"""FakeGuest: a scripted stand-in for harness.vm.guest.Guest (the GuestSession protocol).

It answers the shell scripts the workload code sends with recorded fio JSON (tests/data/fio/, recorded
with the host's fio 3.33) and kprobe counters that move the way the real kernel's do: plain io_uring
hits the page-unlock callback on the series kernel and io-wq on the baseline; force_async always hits
io-wq. Scenarios (panic, hang, warning, missing fio, failing mkfs) are triggered by substrings of the
commands. It speaks the guest channel's grammar through harness.vm.markers: it tells scripts apart by
the markers they print (markers.emits) and answers with marker lines and sections made by the same
module (markers.line, markers.block). Other test modules import it; the tests below pin its own behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.run import Result
from harness.kernel.build import KernelBuild
from harness.vm import markers
from harness.vm.markers import Marker

DATA = Path(__file__).resolve().parent / "data" / "fio"
AVAILABLE_612 = ["io_async_buf_func", "io_wq_enqueue", "io_queue_iowq", "__folio_lock_async",
                 "wake_page_function"]
AVAILABLE_2020 = ["io_async_buf_func", "io_wq_enqueue", "io_queue_async_work", "__lock_page_async",
                  "wake_page_function.isra.0", "io_rw_should_retry"]
PANIC = ("[   42.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
         "[   42.000001] Oops: 0000 [#1] PREEMPT SMP\n"
         "[   42.000002] RIP: 0010:io_async_buf_func+0x12/0x80\n"
         "[   42.000003] Kernel panic - not syncing: Fatal exception\n")
WARNING = "[   43.000000] WARNING: CPU: 0 PID: 77 at mm/filemap.c:1234 folio_wake_bit+0x1/0x2\n"


def _ok(stdout: str = "", stderr: str = "", rc: int = 0) -> Result:
    return Result(["ssh", "guest"], rc, stdout, stderr, 0.01)


@dataclass
class FakeGuest:
    """Scripted guest; ``mode`` is "series" (async path) or "baseline" (io-wq path)."""

    mode: str = "series"
    fio: bool = True
    available: list[str] = field(default_factory=lambda: list(AVAILABLE_612))
    tracefs: bool = True
    kallsyms: list[str] | None = None  # default: every traceable name is also a symbol
    mkfs_fail: tuple[str, ...] = ()
    panic_on: str | None = None
    hang_on: str | None = None
    warn_on: str | None = None
    fio_fail_on: str | None = None
    commands: list[str] = field(default_factory=list)
    console: str = "[    0.000000] Linux version 6.12.117 (fake)\n"
    dead: bool = False
    dmesg_pending: str = ""
    hits: dict[str, int] = field(default_factory=dict)
    armed: list[str] = field(default_factory=list)
    laid_out: set[str] = field(default_factory=set)
    accel: str = "tcg"
    root_mode: str = ""  # harness.workloads.model.ReportsBoot: the fake does not say what its / is
    # read-ahead windows (sysfs path → KiB); a device's queue file appears at its first listing
    read_ahead: dict[str, int] = field(default_factory=dict)
    # a filesystem-private window (/sys/fs/<fs>/<id>/bdi/read_ahead_kb) -> the device its filesystem is on
    read_ahead_device: dict[str, str] = field(default_factory=dict)
    read_ahead_stuck: bool = False  # the kernel ignores writes to read_ahead_kb

    # --- GuestSession -------------------------------------------------------------------------
    def run(self, command: str, timeout: float) -> Result:
        self.commands.append(command)
        if self.dead:
            return _ok("", "ssh: connection lost", 255)
        if self.panic_on and self.panic_on in command and "fio --name" in command:
            self.dead = True
            self.console += PANIC
            return _ok("", "ssh: connection lost", 255)
        if self.hang_on and self.hang_on in command and "fio --name" in command:
            return Result(["ssh", "guest"], -1, "", "", timeout, timed_out=True)
        if self.warn_on and self.warn_on in command and "fio --name" in command:
            self.dmesg_pending += WARNING
        return self._answer(command)

    def console_text(self) -> str:
        return self.console

    def alive(self) -> bool:
        return not self.dead

    # --- scripted answers ----------------------------------------------------------------------
    def _answer(self, command: str) -> Result:
        if "/read_ahead_kb" in command:
            return self._read_ahead(command)
        if markers.emits(command, Marker.NO_FIO):
            return _ok("/usr/bin/fio\n" if self.fio else markers.line(Marker.NO_FIO) + "\n")
        if markers.emits(command, Marker.TRACEABLE):
            if not self.tracefs:
                return _ok(markers.line(Marker.NOTRACE) + "\n")
            syms = self.available if self.kallsyms is None else self.kallsyms
            return _ok(markers.block(Marker.TRACEABLE, "".join(f"{n}\n" for n in self.available),
                                     "available_filter_functions")
                       + markers.block(Marker.KALLSYMS, "".join(f"{n}\n" for n in syms)))
        if "p:kwb/" in command:
            self.armed = re.findall(r"p:kwb/(\w+) ", command)
            self.hits = dict.fromkeys(self.armed, 0)
            return _ok()
        if "kprobe_profile" in command and "fio --name" not in command:
            return _ok(self._profile())
        if "echo > /sys/kernel/tracing/kprobe_events" in command:
            self.armed = []
            return _ok()
        if command.startswith("dmesg -c"):
            text, self.dmesg_pending = self.dmesg_pending, ""
            return _ok("" if ">" in command else text)
        if markers.emits(command, Marker.LAID_OUT):
            name = re.search(r"stat -c %s (\S+)", command)
            laid_out = name is not None and name.group(1) in self.laid_out
            return _ok(markers.line(Marker.LAID_OUT) + "\n" if laid_out else "")
        if "--name=kwb-layout" in command:
            self.laid_out.add(re.search(r"--filename=(\S+)", command).group(1))  # type: ignore[union-attr]
            return _ok()
        if "fio --name" in command:
            return self._fio(command)
        for fs in self.mkfs_fail:
            if f"mount -t {fs}" in command:
                return _ok("", f"mkfs.{fs} /dev/vdX failed", 1)
        return _ok()

    def _read_ahead(self, command: str) -> Result:
        if command.startswith("for d in"):  # the listing: the device's queue, its filesystems' bdis
            dev = re.search(r"/sys/block/(\w+)/queue/read_ahead_kb", command).group(1)  # type: ignore[union-attr]
            queue = f"/sys/block/{dev}/queue/read_ahead_kb"
            self.read_ahead.setdefault(queue, 128)
            mine = [p for p, d in self.read_ahead_device.items() if d == dev and p in self.read_ahead]
            return _ok("".join(f"{p} {self.read_ahead[p]}\n" for p in [*mine, queue]))
        if not self.read_ahead_stuck:
            for kb, path in re.findall(r"echo (\d+) > ([^\s;]+)", command):
                self.read_ahead[path] = int(kb)
        return _ok()

    def _fio(self, command: str) -> Result:
        if self.fio_fail_on and self.fio_fail_on in command:
            return _ok("fio: pid=0, err=5/file:io_u.c:1845, func=io_u error, error=Input/output error\n",
                       "", 1)
        engine = re.search(r"--ioengine=(\w+)", command).group(1)  # type: ignore[union-attr]
        forced = "--force_async=1" in command
        name = f"{engine}-forced" if forced else engine
        text = (DATA / f"{name}.json").read_text()
        ios = int(re.search(r'"total_ios" : (\d+)', text).group(1))  # type: ignore[union-attr]
        before = self._profile_at(command, Marker.KPROBES_BEFORE)  # inline counter reads
        self._count(engine, forced, ios)
        after = self._profile_at(command, Marker.KPROBES_AFTER)
        workers = "4\n5\n" if engine == "io_uring" and (forced or self.mode == "baseline") else "0\n0\n"
        out = (before + markers.line(Marker.STAT_BEFORE, "10.00 cpu  100 0 100 800 0 0 0 0 0 0") + "\n"
               + markers.block(Marker.FIO, text)
               + markers.line(Marker.STAT_AFTER, "12.50 cpu  200 0 400 900 0 0 0 0 0 0") + "\n" + after
               + markers.block(Marker.IOWQ_SAMPLES, workers))
        return _ok(out)

    def _profile(self) -> str:
        return "".join(f"  {r:44} {self.hits[r]:15} {0:15}\n" for r in self.armed)

    def _profile_at(self, command: str, tag: Marker) -> str:
        """The counters as a script reading them inline as section ``tag`` prints them (or "")."""
        return markers.block(tag, self._profile()) if markers.emits(command, tag) else ""

    def _count(self, engine: str, forced: bool, ios: int) -> None:
        def bump(role: str, n: int) -> None:
            if role in self.hits:
                self.hits[role] += n
        if engine != "io_uring":
            return
        if forced or self.mode == "baseline":
            bump("iowq_enqueue", ios)
            bump("queue_async", ios)
        else:
            bump("callback", ios // 2)
            bump("async_lock", ios // 2)
            bump("wake_function", ios // 2)


@dataclass
class FakeFactory:
    """Guest factory for run_variant: one FakeGuest per boot, built from the same settings."""

    settings: dict[str, object] = field(default_factory=dict)
    guests: list[FakeGuest] = field(default_factory=list)
    fail_boot: bool = False
    fail_first: int = 0  # this many boots fail before one succeeds
    attempts: int = 0
    disks: list[Path] = field(default_factory=list)

    @contextmanager
    def __call__(self, kernel: Path, disks: list[Path], results_dir: Path) -> Iterator[FakeGuest]:
        from harness.core.errors import InfraError

        self.attempts += 1
        self.disks = list(disks)
        assert all(d.is_file() for d in disks), "disk images must exist when the guest boots"
        if self.fail_boot or self.attempts <= self.fail_first:
            raise InfraError("guest did not boot within 120s (fake)")
        guest = FakeGuest(**self.settings)  # type: ignore[arg-type]
        if self.guests:  # only the first boot hits the scenario: a re-booted guest behaves
            guest.panic_on = guest.hang_on = None
        self.guests.append(guest)
        yield guest


def test_fake_fio_counts_follow_the_mode() -> None:
    g = FakeGuest()
    g.run("echo 'p:kwb/callback io_async_buf_func' 'p:kwb/iowq_enqueue io_wq_enqueue' ", 10)
    g.run("fio --name=x --ioengine=io_uring", 10)
    assert g.hits["callback"] > 0 and g.hits["iowq_enqueue"] == 0
    g.run("fio --name=x --ioengine=io_uring --force_async=1", 10)
    assert g.hits["iowq_enqueue"] > 0


def test_fake_panic_kills_the_guest() -> None:
    g = FakeGuest(panic_on="boom")
    res = g.run("fio --name=boom", 10)
    assert not res.ok and not g.alive() and "Kernel panic" in g.console_text()
    assert g.run("true", 1).returncode == 255


def fake_kernel(variant: str = "series", root: Path = Path("/nonexistent"), **fields: Any) -> KernelBuild:
    """A KernelBuild for fakes: paths under ``root`` (nothing need exist), any field overridden."""
    base: dict[str, Any] = {"variant": variant, "commit": "abc123", "bzimage": root / "bzImage",
                            "build_dir": root / "build", "config": root / "build" / ".config",
                            "release": "6.12.117", "duration": 1.0, "log": root / "build.log"}
    return KernelBuild(**{**base, **fields})
