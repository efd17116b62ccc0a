"""Guest lifecycle. Unit tier: a fake "vng" (a script) exercises boot timeout, crash and reaping.
Real tier: the built kernel under virtme-ng — uname, three filesystems, loopback-only SSH, the host root
read-only, panic → crash, hang → timeout, and never a QEMU left behind."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.core.errors import UserError
from harness.core.run import run
from harness.vm import disks, guest, markers, vng
from harness.vm.guest import POWEROFF, BootError, Guest, GuestConfig
from harness.vm.markers import Marker


def _fake_vng(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Replace the vng argv by a Python one-liner; the guest name stays on its command line."""
    def build(spec: vng.VngSpec, vng: Path | None = None) -> list[str]:
        body = script.format(pidfile=spec.pidfile)
        return [sys.executable, "-c", body, spec.name]
    monkeypatch.setattr(vng, "build_argv", build)


def _cfg(tmp_path: Path, **kw: Any) -> GuestConfig:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"fake")
    # root="host": the fake vng needs no guest root image (the isolated root is tested in test_qemu_rootfs)
    base: dict[str, Any] = dict(kernel=kernel, results_dir=tmp_path / "res", accel="tcg", boot_timeout=3,
                                root="host")
    base.update(kw)
    return GuestConfig(**base)


WRITE_PID = "import os,sys,time; open('{pidfile}','w').write(str(os.getpid())); "


def test_missing_kernel_is_a_usage_error(tmp_path: Path) -> None:
    cfg = GuestConfig(tmp_path / "nope", tmp_path, root="host")
    with pytest.raises(UserError, match="kernel image not found"), Guest(cfg):
        pass


def test_boot_timeout_kills_and_reaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vng(monkeypatch, WRITE_PID + "print('Linux version 6.12.117', flush=True); time.sleep(600)")
    g = Guest(_cfg(tmp_path))
    start = time.monotonic()
    with pytest.raises(BootError, match="not reachable over SSH within 3s") as exc:
        g.start()
    assert exc.value.outcome == "timeout" == g.outcome
    assert time.monotonic() - start < 20
    assert guest.pids_with(g.name) == []
    assert "Linux version 6.12.117" in (tmp_path / "res" / "console.log").read_text()
    assert not g.state_dir.exists()  # the per-run key is gone with the guest
    assert (tmp_path / "res" / "vm.json").is_file()


def test_panic_during_boot_is_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vng(monkeypatch, WRITE_PID + "print('Linux version 6.12.117'); "
                                       "print('Kernel panic - not syncing: VFS: Unable to mount root fs', "
                                       "flush=True); time.sleep(600)")
    g = Guest(_cfg(tmp_path, boot_timeout=60))
    start = time.monotonic()
    with pytest.raises(BootError, match="kernel panic"):
        g.start()
    assert time.monotonic() - start < 20 and g.outcome == "crash"
    assert "Unable to mount root fs" in g.excerpt()
    assert guest.pids_with(g.name) == []


def test_qemu_failing_before_the_kernel_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vng(monkeypatch, "import sys; print('qemu: could not set up host forwarding rule'); sys.exit(1)")
    g = Guest(_cfg(tmp_path, boot_timeout=60))
    with pytest.raises(BootError, match=r"QEMU exited \(vng exit 1\)") as exc:
        g.start()
    assert exc.value.outcome == "error" == g.outcome


RACE_CONSOLE = Path(__file__).parent / "data" / "console" / "rename-race.log"


def test_no_network_is_given_up_at_once_with_the_reason_and_rebooted_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorded rename race: both boots are given up on as soon as the console says why."""
    _fake_vng(monkeypatch, WRITE_PID + f"sys.stdout.write(open({str(RACE_CONSOLE)!r}).read()); "
                                       "sys.stdout.flush(); time.sleep(600)")
    g = Guest(_cfg(tmp_path, boot_timeout=300))
    start = time.monotonic()
    with pytest.raises(BootError, match="guest has no network: eth0 renamed to enp0s10") as exc:
        g.start()
    assert time.monotonic() - start < 20  # not the 300 s boot timeout
    assert exc.value.outcome == "error" and g.outcome == "error"
    assert [b["reason"] for b in g.lost_boots] == [exc.value.reason]  # one reboot, then the error
    assert (tmp_path / "res" / "console-lost-boot-1.log").read_text().count("renamed from eth0") == 1
    assert guest.pids_with(g.name) == []


def test_booted_but_unreachable_is_given_up_after_ssh_after_boot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = ["Linux version 6.12.117", "Run /x as init process", "udhcpc: lease of 10.0.2.15",
             "virtme-ng-init: starting script"]
    _fake_vng(monkeypatch, WRITE_PID + f"print({chr(10).join(lines)!r}, flush=True); time.sleep(600)")
    g = Guest(_cfg(tmp_path, boot_timeout=300, ssh_after_boot=1, boot_retries=0))
    start = time.monotonic()
    with pytest.raises(BootError, match="within 1s of finishing its set-up: sshd not answering") as exc:
        g.start()
    assert time.monotonic() - start < 20 and exc.value.outcome == "timeout" and g.lost_boots == []


def test_a_kernel_crash_while_booting_is_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vng(monkeypatch, WRITE_PID + "print('Linux version 6.12.117'); "
                                       "print('BUG: kernel NULL pointer dereference, address: 0', "
                                       "flush=True); "
                                       "time.sleep(600)")
    g = Guest(_cfg(tmp_path, boot_timeout=60))
    with pytest.raises(BootError, match="kernel oops: BUG: kernel NULL pointer") as exc:
        g.start()
    assert exc.value.outcome == "crash" and g.lost_boots == []


class _AnsweringSsh:
    """An sshd that answers at once (records what it was asked)."""

    commands: ClassVar[list[str]] = []

    def __init__(self, *_a: Any, **_k: Any) -> None:
        self.connected = False

    def connect(self, timeout: float) -> None:
        self.connected = True

    def exec(self, command: str, timeout: float, abort: Any = None, kill_timeout: float = 0) -> Any:
        from harness.core.run import Result
        _AnsweringSsh.commands.append(command)
        return Result(["sh", "-c", command], 0, "", "", 0.0)

    def close(self) -> None:
        self.connected = False


@pytest.mark.parametrize("early", [True, False])
def test_early_ssh_connects_once_dhcp_is_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              early: bool) -> None:
    """Early: SSH is tried once DHCP has a lease (sshd starts beside udev), and the first command hides
    ~/.bashrc itself; late: only after the init script's marker, which this boot never prints."""
    _fake_vng(monkeypatch, WRITE_PID + "print('Linux version 6.12.117'); print('udhcpc: lease of 10.0.2.15', "
                                       "flush=True); time.sleep(600)")
    monkeypatch.setattr(guest, "SshSession", _AnsweringSsh)
    _AnsweringSsh.commands = []
    g = Guest(_cfg(tmp_path, early_ssh=early, boot_retries=0, boot_timeout=3, shutdown_timeout=1))
    if early:
        with g:
            assert g.boot_seconds is not None and g.boot_seconds < 3
        assert _AnsweringSsh.commands[0] == guest.GUEST_FIRST_COMMAND
    else:
        with pytest.raises(BootError, match="not reachable over SSH within 3s"):
            g.start()
        assert _AnsweringSsh.commands == []


def test_qemu_gone_mid_boot_without_a_kernel_report_is_booted_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in the boot benchmark: QEMU exited (vng exit 255) during PCI enumeration, nothing on the
    console: not the kernel's fault, so one more boot."""
    _fake_vng(monkeypatch, "import sys; print('Linux version 6.12.117'); print('pci 0000:00:08.0: BAR 1'); "
                           "sys.exit(255)")
    g = Guest(_cfg(tmp_path, boot_timeout=60))
    with pytest.raises(BootError, match=r"QEMU exited \(vng exit 255\)") as exc:
        g.start()
    assert exc.value.outcome == "crash"
    assert [b["reason"] for b in g.lost_boots] == ["QEMU exited (vng exit 255)"]


def test_keyboard_interrupt_still_reaps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vng(monkeypatch, WRITE_PID + "time.sleep(600)")
    g = Guest(_cfg(tmp_path, boot_timeout=60))

    def interrupted(self: Guest) -> None:
        time.sleep(0.5)
        raise KeyboardInterrupt

    monkeypatch.setattr(Guest, "_wait_ready", interrupted)
    with pytest.raises(KeyboardInterrupt):
        g.start()
    assert guest.pids_with(g.name) == []


def test_run_on_a_dead_guest_returns_at_once(tmp_path: Path) -> None:
    g = Guest(_cfg(tmp_path))
    res = g.run("true", timeout=5)
    assert res.returncode == -1 and "not booted" in res.stderr and not g.alive()


class _StuckSsh:
    """An SSH session whose command never ends; the console shows ``line`` once the command runs."""

    def __init__(self, g: Guest, line: str) -> None:
        self.g, self.line, self.last_kill_answered = g, line, True
        self.last_pidfile = "/tmp/kwb-cmd/1.pid"

    def exec(self, command: str, timeout: float, abort: Any, kill_timeout: float = 0) -> Any:
        from harness.core.run import Result
        self.g._watch.feed(self.line + "\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reason = abort()
            if reason:
                return Result(["sh", "-c", command], -1, "", f"kwb: {reason}\n", 0.0)
            time.sleep(0.01)
        return Result(["sh", "-c", command], -1, "", "kwb: command timed out\n", timeout, timed_out=True)

    def ping(self, timeout: float) -> bool:
        return True

    def answers(self, timeout: float) -> bool:
        return self.alive

    alive = True  # what the heartbeat's second channel hears


@pytest.mark.parametrize("line,abandoned", [
    ("INFO: task fio:123 blocked for more than 30 seconds.", True),
    ("BUG: kernel NULL pointer dereference, address: 0000000000000058", True),
    ("WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 foo+0x1/0x2", False),
])
def test_command_abandoned_after_a_stuck_console_line(tmp_path: Path, line: str, abandoned: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    g = Guest(_cfg(tmp_path, stuck_grace=0.2))
    g._ssh = _StuckSsh(g, line)  # type: ignore[assignment]
    second = _Second(g, "")
    monkeypatch.setattr(g, "_second_session", lambda: second)  # _Second stands in for the SshSession
    start = time.monotonic()
    res = g.run("read-the-file", timeout=3)
    took = time.monotonic() - start
    if abandoned:
        assert took < 2 and not res.timed_out and "kwb: abandoned" in res.stderr, res.stderr
        assert line[:40] in res.stderr
        assert not g.alive()  # the next job needs a fresh guest
    else:
        assert res.timed_out and took >= 3
        assert g.alive()


class _Second:
    """The second SSH connection of a wedge check: answers with ``out`` (and prints ``console`` lines, as
    sysrq would), or refuses to connect when ``out`` is None."""

    def __init__(self, g: Guest, out: str | None, console: str = "") -> None:
        self.g, self.out, self.console = g, out, console
        self.scripts: list[str] = []

    def connect(self, timeout: float) -> None:
        if self.out is None:
            raise OSError("connection reset by peer")

    def exec(self, command: str, timeout: float) -> Any:
        from harness.core.run import Result
        self.scripts.append(command)
        for line in self.console.splitlines():
            self.g._watch.feed(line + "\n")
        return Result(["sh", "-c", command], 0, self.out or "", "", 0.1)

    def close(self) -> None:
        pass


SYSRQ_CONSOLE = """sysrq: Show Blocked State
task:kworker/1:2  state:D stack:0 pid:77
sysrq: Show backtrace of all active CPUs
NMI backtrace for cpu 1
RIP: 0010:filemap_read+0x3a/0x4f0
 io_read+0x5d/0x300
"""


@pytest.mark.parametrize("answer,alive", [
    (markers.block(Marker.WEDGED, "  412   415 R    -  read-write.t\n")
     + markers.block(Marker.STACKS, "== /proc/412/task/415/stack\n[<0>] filemap_read+0x3a/0x4f0\n"), True),
    (None, False),
])
def test_an_unkillable_command_or_a_dead_guest_is_a_wedge(tmp_path: Path, answer: str | None, alive: bool,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    g = Guest(_cfg(tmp_path))
    g._ssh = _StuckSsh(g, "nothing on the console")  # type: ignore[assignment]
    second = _Second(g, answer, SYSRQ_CONSOLE if alive else "")
    monkeypatch.setattr(g, "_second_session", lambda: second)  # _Second stands in for the SshSession
    res = g.run("/t/read-write.t", timeout=0.5)
    assert res.timed_out and g.wedge is not None
    assert g.wedge["alive"] is alive and g.wedge["command"] == "/t/read-write.t"
    if alive:
        # The stuck process was killed for good on the second connection, then its stack and sysrq w/l.
        assert "pkill -KILL -s" in second.scripts[0] and "/tmp/kwb-cmd/1.pid" in second.scripts[0]
        assert "echo w > /proc/sysrq-trigger" in second.scripts[0]
        assert g.wedge["unkillable"] == ["412   415 R    -  read-write.t"]
        assert "filemap_read+0x3a" in str(g.wedge["stacks"]) and "NMI backtrace for cpu 1" in str(
            g.wedge["excerpt"])
        assert "could not be killed" in str(g.wedge["how"])
    else:
        assert "no answer on a second SSH connection" in str(g.wedge["how"])
    assert not g.alive() and g.outcome == "timeout"
    assert g.run("true", timeout=5).timed_out  # nothing more is sent to a wedged guest


def test_the_wedge_check_is_sh_and_prints_its_sections() -> None:
    script = guest.WEDGE_CHECK.format(pidfile="/tmp/kwb-cmd/1.pid", force=1)
    assert run(["sh", "-n", "-c", script], timeout=10).ok  # syntax only: it kills and pokes sysrq
    assert markers.emits(script, Marker.WEDGED) and markers.emits(script, Marker.STACKS)


def test_a_killed_command_is_not_a_wedge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Guest(_cfg(tmp_path))
    g._ssh = _StuckSsh(g, "nothing on the console")  # type: ignore[assignment]
    monkeypatch.setattr(g, "_second_session", lambda: _Second(g, ""))  # stands in for the SshSession
    assert g.run("sleep 1000", timeout=0.3).timed_out
    assert g.wedge is None and g.alive()


class _PoweroffSsh:
    connected = True

    def __init__(self) -> None:
        self.commands: list[str] = []

    def exec(self, command: str, timeout: float, abort: Any = None, kill_timeout: float = 0) -> Any:
        from harness.core.run import Result
        self.commands.append(command)
        return Result(["sh", "-c", command], 0, "", "", 0.0)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("line,clean", [
    ("BUG: kernel NULL pointer dereference, address: 0000000000000020", False),
    ("WARNING: CPU: 0 PID: 1 at mm/filemap.c:1 foo+0x1/0x2", True),
])
def test_no_clean_poweroff_after_an_oops(tmp_path: Path, line: str, clean: bool) -> None:
    g = Guest(_cfg(tmp_path))
    ssh = _PoweroffSsh()
    g._ssh = ssh  # type: ignore[assignment]
    g._watch.feed(line + "\n")
    g._poweroff()
    assert (ssh.commands == [POWEROFF]) is clean


def test_free_port_is_loopback_bindable() -> None:
    import socket

    port = guest.free_port()
    assert 1024 <= port <= 65535  # an ephemeral port, never a privileged one
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname() == ("127.0.0.1", port)


# ---------------------------------------------------------------------------------------------------
# Real tier: the built kernel. Boot timeouts are generous: TCG guests of parallel jobs share 2 cores.
BOOT_TIMEOUT = 400.0

def _our_qemu(name: str) -> list[str]:
    res = run(["pgrep", "-af", "qemu-system"], timeout=10)
    return [ln for ln in res.stdout.splitlines() if name in ln]


def _listeners(pid: int) -> list[str]:
    lines = []
    for proto in ("-ltnpH", "-lunpH"):
        res = run(["ss", proto], timeout=10, check=True)
        lines += [ln for ln in res.stdout.splitlines() if f"pid={pid}," in ln]
    return lines


@pytest.fixture
def kernel(built_kernel: Any) -> Path:
    return Path(built_kernel.bzimage)


@pytest.mark.boot
@pytest.mark.real
def test_real_boot_filesystems_and_isolation(built_kernel: Any, tmp_path: Path) -> None:
    res_dir = tmp_path / "results"
    specs = [("ext4", 256), ("xfs", 300), ("btrfs", 256)]
    images = [disks.make_disk(tmp_path / f"{fs}.img", mb) for fs, mb in specs]
    # The host root (`kwb --host-root`); the isolated root has its own test in test_qemu_rootfs.py.
    cfg = GuestConfig(kernel=Path(built_kernel.bzimage), results_dir=res_dir, disks=images, accel="auto",
                      boot_timeout=BOOT_TIMEOUT, root="host")
    with Guest(cfg) as g:
        assert g.boot_seconds is not None and g.boot_seconds < cfg.boot_timeout
        assert g.run("uname -r", timeout=30).stdout.strip() == built_kernel.release == "6.12.117"
        # SSH (and anything else QEMU listens on) is on loopback only.
        pid = g.qemu_pid()
        assert pid is not None
        listeners = _listeners(pid)
        assert listeners and all(re.search(r"\s127\.0\.0\.1:\d+\s", ln) for ln in listeners), listeners
        assert any(f"127.0.0.1:{g.port} " in ln for ln in listeners)
        # Three disks, in order, each with its filesystem; write, drop caches, read back.
        for i, (fs, _) in enumerate(specs):
            dev, mnt = disks.guest_device(i), disks.mount_point(i)
            prep = g.run(disks.prepare_command(i, fs), timeout=180)
            assert prep.ok, prep.stderr
            rw = g.run(f"echo kwb-{fs} > {mnt}/f && sync && echo 3 > /proc/sys/vm/drop_caches && "
                       f"cat {mnt}/f && findmnt -no FSTYPE,SOURCE {mnt}", timeout=60)
            assert rw.ok, rw.stderr
            assert rw.stdout.split() == [f"kwb-{fs}", fs, dev]
        # The results dir is writable from the guest; the host root is not (writes land in overlays).
        marker = f"/usr/kwb-guest-write-{g.name}"
        w = g.run(f"echo hi > {res_dir}/from-guest && touch {marker} && ls {marker} && "
                  "! touch /kwb-root-write 2>/dev/null && echo ro", timeout=30)
        assert w.ok and w.stdout.split() == [marker, "ro"], w.stderr
        assert not Path(marker).exists() and not Path("/kwb-root-write").exists()
        assert (res_dir / "from-guest").read_text() == "hi\n"
        assert g.alive() and g.outcome == "ok"
    assert g.outcome == "ok" and g.findings == []
    assert _our_qemu(g.name) == []
    log = (res_dir / "console.log").read_text()
    assert "Linux version 6.12.117" in log
    # The filesystems were unmounted cleanly at poweroff (xfs logs it; a crash would not).
    assert "Unmounting Filesystem" in log


@pytest.mark.boot
@pytest.mark.real
def test_real_panic_is_a_crash_with_excerpt(kernel: Path, tmp_path: Path) -> None:
    with Guest(GuestConfig(kernel=kernel, results_dir=tmp_path, boot_timeout=BOOT_TIMEOUT)) as g:
        start = time.monotonic()
        res = g.run("echo c > /proc/sysrq-trigger", timeout=120)
        took = time.monotonic() - start
        assert res.returncode == -1 and not res.timed_out
        assert took < 60, f"panic noticed only after {took:.0f}s"
        assert not g.alive()
    assert g.outcome == "crash"
    assert "Kernel panic - not syncing: sysrq triggered crash" in g.excerpt()
    assert [f.kind for f in g.findings if f.fatal][:1] == ["panic"]
    assert _our_qemu(g.name) == []
    assert "sysrq triggered crash" in (tmp_path / "console.log").read_text()


@pytest.mark.boot
@pytest.mark.real
def test_real_hang_then_unresponsive_guest_is_a_timeout(kernel: Path, tmp_path: Path) -> None:
    with Guest(GuestConfig(kernel=kernel, results_dir=tmp_path, ping_timeout=15,
                           boot_timeout=BOOT_TIMEOUT)) as g:
        start = time.monotonic()
        res = g.run("sleep 100000", timeout=10)
        assert res.timed_out and 10 <= time.monotonic() - start < 10 + 40
        # The command's process group was killed; the guest still answers: not a hang.
        assert g.run("pgrep -fx 'sleep 100000' || echo none", timeout=30).stdout.strip() == "none"
        assert g.alive() and g.outcome == "ok"
        # Now the guest stops answering (every process but init stopped, sshd included).
        start = time.monotonic()
        res = g.run("kill -STOP -1", timeout=10)
        assert res.timed_out and time.monotonic() - start < 10 + 15 + 30
        assert not g.alive() and g.outcome == "timeout"
        quick = g.run("true", timeout=30)
        assert quick.timed_out and quick.duration < 1
        close_start = time.monotonic()
    assert time.monotonic() - close_start < 30
    assert g.outcome == "timeout"
    assert _our_qemu(g.name) == []


@pytest.mark.boot
@pytest.mark.real
def test_real_silent_hang_is_caught_by_the_heartbeat(kernel: Path, tmp_path: Path) -> None:
    """QEMU frozen (SIGSTOP) under a long command: no console line, no SSH answer, the vCPUs stopped. The
    heartbeat's two unanswered checks abandon the command long before its 600 s timeout, and closing the
    guest still reaps the frozen QEMU."""
    import os
    import signal
    import threading

    cfg = GuestConfig(kernel=kernel, results_dir=tmp_path, boot_timeout=BOOT_TIMEOUT, heartbeat=5,
                      ping_timeout=5)
    with Guest(cfg) as g:
        pid = g.qemu_pid()
        assert pid is not None
        freeze = threading.Timer(5, os.kill, (pid, signal.SIGSTOP))
        freeze.start()
        start = time.monotonic()
        res = g.run("sleep 600", timeout=600)
        took = time.monotonic() - start
        freeze.cancel()
        assert "did not answer 2 liveness checks" in res.stderr, res.stderr
        assert took < 60, f"a frozen guest noticed only after {took:.0f}s"
        assert not g.alive()
    assert _our_qemu(g.name) == []


@pytest.mark.boot
@pytest.mark.real
def test_real_hung_task_abandons_the_command(kernel: Path, tmp_path: Path) -> None:
    """A writer blocked (uninterruptibly) on a frozen filesystem: the hung-task report ends the command."""
    image = disks.make_disk(tmp_path / "ext4.img", 256)
    cfg = GuestConfig(kernel=kernel, results_dir=tmp_path / "res", disks=[image], boot_timeout=BOOT_TIMEOUT,
                      stuck_grace=2)
    with Guest(cfg) as g:
        prep = g.run(disks.prepare_command(0, "ext4") + " && echo 2 > /proc/sys/kernel/hung_task_timeout_secs"
                     f" && fsfreeze -f {disks.mount_point(0)}", timeout=180)
        assert prep.ok, prep.stderr
        start = time.monotonic()
        res = g.run(f"echo x > {disks.mount_point(0)}/f", timeout=300)
        took = time.monotonic() - start
        assert "kwb: abandoned" in res.stderr and "hung_task" in res.stderr, res.stderr
        assert took < 120, f"abandoned only after {took:.0f}s"
        assert not g.alive()
    assert any(f.kind == "hung_task" for f in g.findings)
    assert _our_qemu(g.name) == []


@pytest.mark.boot
@pytest.mark.real
@pytest.mark.timeout(900)  # an interactive relay that never ends must fail, not hang the suite
def test_real_interactive_shell_on_a_pty(kernel: Path, tmp_path: Path) -> None:
    """What `kwb shell` runs, on a pty pair instead of the user's terminal."""
    import os
    import select

    master, slave = os.openpty()
    os.write(master, b"uname -r; echo shell-$((6*7)); exit 3\r")
    with Guest(GuestConfig(kernel=kernel, results_dir=tmp_path, boot_timeout=BOOT_TIMEOUT)) as g:
        code = g.ssh.interactive(in_fd=slave, out_fd=slave)
    output = b""
    while select.select([master], [], [], 0.5)[0]:
        chunk = os.read(master, 65536)
        if not chunk:
            break
        output += chunk
    os.close(master)
    os.close(slave)
    text = output.decode(errors="replace")
    assert code == 3 and "6.12.117" in text and "shell-42" in text, text
    assert g.outcome == "ok"


@pytest.mark.boot
@pytest.mark.real
def test_real_warning_is_a_finding_not_a_crash(kernel: Path, tmp_path: Path) -> None:
    """A genuine kernel WARNING (ext4 warn_on_error + trigger_fs_error): reported, run goes on."""
    image = disks.make_disk(tmp_path / "w.img", 64)
    cfg = GuestConfig(kernel=kernel, results_dir=tmp_path / "res", disks=[image], boot_timeout=BOOT_TIMEOUT)
    with Guest(cfg) as g:
        res = g.run("mkfs.ext4 -q -F /dev/vda && mkdir -p /tmp/w && "
                    "mount -t ext4 -o warn_on_error,errors=continue /dev/vda /tmp/w && "
                    "echo kwb-provoked-error > /sys/fs/ext4/vda/trigger_fs_error && sleep 1", timeout=180)
        assert res.ok, res.stderr
        assert g.alive()
    warnings = [f for f in g.findings if f.kind == "warning"]
    assert warnings and "fs/ext4/super.c" in warnings[0].line, g.findings
    assert "ext4_handle_error" in warnings[0].excerpt
    assert g.outcome == "ok"


class _BrokenSsh:
    """An SSH session to a wedged guest: connected, but opening a channel fails."""

    connected = True

    def exec(self, command: str, timeout: float, **_kw: object) -> object:
        raise OSError("channel open timed out")

    def close(self) -> None:
        pass


def test_a_failed_poweroff_still_kills_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vng(monkeypatch, WRITE_PID + "print('Linux version 6.12.117', flush=True); time.sleep(600)")
    g = Guest(_cfg(tmp_path, boot_timeout=60))
    g._launch()
    deadline = time.monotonic() + 20
    while not g._watch.contains("Linux version") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert guest.pids_with(g.name), "the fake QEMU runs"
    g._ssh = _BrokenSsh()  # type: ignore[assignment]
    g.close()
    assert guest.pids_with(g.name) == []
    assert "channel open timed out" in g.poweroff_error
    assert "channel open timed out" in (tmp_path / "res" / "vm.json").read_text()


def test_a_silent_hang_is_abandoned_by_the_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing on the console and the command never ends: two unanswered liveness checks abandon it long
    before its timeout; the wedge diagnosis then runs as after any abandoned command."""
    g = Guest(_cfg(tmp_path, heartbeat=0.2, ping_timeout=0.1))
    ssh = _StuckSsh(g, "")
    ssh.alive = False
    g._ssh = ssh  # type: ignore[assignment]
    monkeypatch.setattr(g, "_second_session", lambda: _Second(g, None))
    start = time.monotonic()
    res = g.run("read-the-file", timeout=30)
    assert time.monotonic() - start < 10
    assert "did not answer 2 liveness checks" in res.stderr and not res.timed_out
    assert not g.alive()


def test_an_answering_guest_keeps_its_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Guest(_cfg(tmp_path, heartbeat=0.1, ping_timeout=0.1))
    ssh = _StuckSsh(g, "")
    g._ssh = ssh  # type: ignore[assignment]
    monkeypatch.setattr(g, "_second_session", lambda: _Second(g, ""))
    res = g.run("read-the-file", timeout=1.5)
    assert res.timed_out and "liveness" not in res.stderr


def test_heartbeat_misses_in_a_row_only() -> None:
    replies = [False, True, False, False]
    asked: list[bool] = []

    def answers(_timeout: float) -> bool:
        asked.append(replies[len(asked)])
        return asked[-1]
    beat = guest.Heartbeat(answers, every=0.05, timeout=0.01)
    deadline = time.monotonic() + 10
    while not beat.dead() and time.monotonic() < deadline:
        time.sleep(0.005)
    # dead only after the fourth check: the answer in between reset the count of misses
    assert beat.dead() and asked == replies and beat.misses == 2
    assert guest.Heartbeat(lambda _t: False, every=0, timeout=1).dead() is False  # 0: off
