"""Console scanning on synthetic lines and on console logs recorded from real boots (tests/data/console)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.vm import console
from harness.vm.console import ConsoleWatch, classify, crash_excerpt, scan

DATA = Path(__file__).parent / "data" / "console"

LINES = {
    "panic": "[   12.345678] Kernel panic - not syncing: sysrq triggered crash",
    "oops": "[    3.000001] Oops: general protection fault, probably for non-canonical address 0x1",
    "bug": "[    5.1] kernel BUG at mm/filemap.c:1525!",
    "warning": "[    7.2] WARNING: CPU: 1 PID: 312 at fs/iomap/buffered-io.c:1234 iomap_foo+0x12/0x40",
    "kasan": "[    9.9] BUG: KASAN: use-after-free in io_async_buf_func+0x3c/0x90",
    "lockdep": "[    4.4] WARNING: possible circular locking dependency detected",
    "hung_task": "[  122.0] INFO: task fsfreeze:201 blocked for more than 10 seconds.",
    "rcu_stall": "[   60.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "soft_lockup": "[   44.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [fio:77]",
}


@pytest.mark.parametrize("kind", sorted(LINES))
def test_each_kind_is_classified(kind: str) -> None:
    assert classify(LINES[kind]) == kind


def test_ordinary_lines_are_not_findings() -> None:
    for line in ("[    0.000000] Linux version 6.12.117 (kwb@kwb)", "virtme-ng-init: mount devtmpfs",
                 "BUGS: none", "a WARNING about nothing", "sysrq: Trigger a crash"):
        assert classify(line) is None, line


def test_scan_strips_timestamps_and_numbers_lines() -> None:
    text = "boot\n" + LINES["warning"] + "\nCall Trace:\n ---[ end trace 0000000000000000 ]---\nafter\n"
    (f,) = scan(text)
    assert f.kind == "warning" and f.lineno == 2
    assert f.line.startswith("WARNING: CPU: 1 PID: 312 at fs/iomap")
    # The excerpt runs from a little before the line up to the end-of-trace marker, not beyond.
    assert f.excerpt.splitlines()[0] == "boot" and f.excerpt.splitlines()[-1].endswith("]---")
    assert not f.fatal


def test_fatal_kinds() -> None:
    assert {"panic", "oops", "bug", "kasan"} == console.FATAL_KINDS
    assert crash_excerpt("a\n" + LINES["warning"] + "\n" + LINES["panic"] + "\n").startswith("a\n")
    assert "Kernel panic" in crash_excerpt("x\n" * 10 + LINES["panic"] + "\n").splitlines()[3]
    assert crash_excerpt("l1\nl2\nl3\n", tail=2) == "l2\nl3"


def test_watch_flags_fatal_and_panic_separately() -> None:
    w = ConsoleWatch()
    w.feed(LINES["warning"] + "\n")
    assert not w.fatal.is_set()
    w.feed(LINES["oops"] + "\n")
    assert w.fatal.is_set() and not w.panicked.is_set()
    w.feed(LINES["panic"] + "\n")
    assert w.panicked.is_set()
    assert [f.kind for f in w.findings()] == ["warning", "oops", "panic"]
    assert w.contains("sysrq triggered") and w.text().endswith("crash\n")


def test_stuck_lines_after_a_mark() -> None:
    w = ConsoleWatch()
    w.feed(LINES["hung_task"] + "\n")
    mark = w.line_count()
    assert w.stuck_since(mark) is None  # before the mark: an earlier command's problem
    w.feed(LINES["warning"] + "\n")
    assert w.stuck_since(mark) is None  # a WARNING does not stop a command
    w.feed(LINES["soft_lockup"] + "\n")
    w.feed(LINES["oops"] + "\n")
    stuck = w.stuck_since(mark)
    assert stuck is not None and stuck.kind == "soft_lockup" and stuck.index == mark + 2
    assert console.FATAL_KINDS | {"hung_task", "rcu_stall"} <= console.STUCK_KINDS


def test_summary_counts() -> None:
    fs = scan("\n".join([LINES["warning"], LINES["warning"], LINES["hung_task"]]))
    assert console.summary(fs) == {"warning": 2, "hung_task": 1}


# Recorded real console logs: <name>.log with <name>.expected.json = {"kinds": {...}, "first": "..."}.
RECORDED = sorted(DATA.glob("*.log"))


@pytest.mark.parametrize("log", RECORDED, ids=[p.stem for p in RECORDED])
def test_recorded_console_logs(log: Path) -> None:
    expected_file = log.with_suffix(".expected.json")
    findings = scan(log.read_text(errors="replace"))
    got = {"kinds": console.summary(findings), "first": findings[0].line if findings else ""}
    if os.environ.get("KWB_REGEN") == "1":
        expected_file.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_file.read_text())


def test_recorded_logs_cover_the_cases() -> None:
    names = {p.stem for p in RECORDED}
    assert {"clean-boot", "panic-sysrq", "warning", "hung-task", "rename-race"} <= names
    assert scan((DATA / "clean-boot.log").read_text()) == []
    assert scan((DATA / "panic-sysrq.log").read_text())[0].kind == "panic"
    assert any(f.kind == "hung_task" for f in scan((DATA / "hung-task.log").read_text()))
    (warning,) = scan((DATA / "warning.log").read_text())
    assert warning.kind == "warning" and not warning.fatal
    assert "fs/ext4/super.c:717 ext4_handle_error" in warning.line
    assert warning.excerpt.splitlines()[-1].startswith("---[ end trace")


RACE_REASON = "guest has no network: eth0 renamed to enp0s10 by udev while DHCP ran on it"


def test_boot_problem_names_the_rename_race_on_the_recorded_console() -> None:
    race = (DATA / "rename-race.log").read_text()
    assert console.boot_problem(race) == RACE_REASON
    # Up to the rename nothing is wrong yet; the rename alone is not fatal when DHCP still got its lease.
    before = "\n".join(race.splitlines()[:349])
    assert "renamed from eth0" not in before and console.boot_problem(before) is None
    clean = (DATA / "clean-boot.log").read_text()
    assert "renamed from eth0" in clean and console.boot_problem(clean) is None


def test_boot_problem_other_reasons() -> None:
    clean = (DATA / "clean-boot.log").read_text()
    no_lease = clean.replace("udhcpc: lease of", "udhcpc: no lease,")
    assert console.boot_problem(no_lease) == RACE_REASON  # the set-up ended without network
    unrenamed = no_lease.replace("enp0s10: renamed from eth0 (while UP)", "eth0: link up")
    assert console.boot_problem(unrenamed) == "guest has no network: no DHCP lease"
    sshd = "virtme-init: ssh: /usr/sbin/sshd does not exist.\n"
    assert console.boot_problem(sshd) == "sshd not started: /usr/sbin/sshd does not exist."
    oops = (DATA / "panic-sysrq.log").read_text()
    assert (console.boot_problem(oops) or "").startswith("kernel panic: Kernel panic - not syncing")


def test_stalled_at_names_the_stage() -> None:
    assert "never started" in console.stalled_at({})
    assert "never reached init" in console.stalled_at({"kernel": 1.0})
    assert "udev or DHCP" in console.stalled_at({"kernel": 1.0, "init": 4.0})
    assert "sshd not answering" in console.stalled_at({"kernel": 1.0, "init": 4.0, "init_done": 9.0})


def test_milestones_of_a_recorded_boot() -> None:
    w = ConsoleWatch()
    for line in (DATA / "clean-boot.log").read_text().splitlines():
        w.feed(line + "\n")
    assert {"kernel", "init", "basic_init", "udev", "dhcp", "udev_done", "init_done", "guest_ready"} <= set(
        w.milestones)
