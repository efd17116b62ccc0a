"""A booted test kernel as a context manager: boot with virtme-ng, drive over SSH, always reap QEMU.

::

    with Guest(GuestConfig(kernel=bz, results_dir=out)) as g:
        g.run("uname -r", timeout=30)

QEMU runs under :func:`harness.core.run.run` in a background thread (so its whole process group is bounded
by ``lifetime`` and its output is teed to ``results_dir/console.log``); the console is scanned as it
arrives. ``__exit__`` powers the guest off cleanly when it still answers and otherwise kills QEMU; it
never returns with QEMU still running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from harness.core import atomic
from harness.core.errors import InfraError, UserError
from harness.core.paths import cache_dir
from harness.core.run import Result, run
from harness.vm import accel as accel_mod
from harness.vm import console, rootfs, vng
from harness.vm.console import ConsoleWatch, Finding
from harness.vm.markers import Marker, echo_section, parse
from harness.vm.ssh import SshSession

# What an early first connection runs (the init script does the same once udev has settled): later
# commands must not run the host user's ~/.bashrc (see harness.vm.vng).
GUEST_FIRST_COMMAND = '[ -f "$HOME/.bashrc" ] && mount --bind /dev/null "$HOME/.bashrc"; true'
# Run on a second SSH connection after a command overran: kill its session (the command's pid is the
# session id sshd gave it; timeout(1) puts tests in process groups of their own) for good; any thread
# left 2 s later, zombies aside (a killed leader waits as one for its io-wq threads), is stuck in the
# kernel (spinning, or blocked uninterruptibly): its kernel stacks, then sysrq w (blocked tasks) and
# l (every CPU's backtrace) onto the console. The threads left are section WEDGED (its presence is the
# verdict), their stacks section STACKS. A str.format template: {pidfile} and {force}.
WEDGE_CHECK = "\n".join([
    'p=$(cat {pidfile} 2>/dev/null)',
    'left=""',
    'if [ -n "$p" ]; then',
    '  pkill -KILL -s "$p"; sleep 2',
    """  left=$(ps -L -o pid=,lwp=,stat=,wchan:32=,comm= -s "$p" | awk '$3 !~ /^Z/')""",
    'fi',
    'if [ -n "$left" ] || [ {force} = 1 ]; then',
    echo_section(Marker.WEDGED, 'echo "$left"'),
    echo_section(Marker.STACKS, '\n'.join([
        'echo "$left" | while read -r pid lwp _; do',
        '  [ -n "$lwp" ] && echo "== /proc/$pid/task/$lwp/stack" && cat /proc/$pid/task/$lwp/stack',
        'done'])),
    '  echo 1 > /proc/sys/kernel/sysrq; echo w > /proc/sysrq-trigger; echo l > /proc/sysrq-trigger',
    'fi',
    'true'])
SYSRQ_SETTLE = 1.5        # console quiet this long after sysrq: its output is complete
SYSRQ_WAIT_MAX = 10.0
WEDGE_EXCERPT_LINES = 200
# Filesystems unmounted, then an immediate reboot that QEMU's -no-reboot turns into exit: unlike a
# power-off this needs no ACPI in the guest kernel.
POWEROFF = ("umount -a -t ext4,xfs,btrfs 2>/dev/null; sync; "
            "echo 1 > /proc/sys/kernel/sysrq; echo b > /proc/sysrq-trigger")


@dataclass
class GuestConfig:
    """How to boot one guest."""

    kernel: Path
    results_dir: Path
    disks: list[Path] = field(default_factory=list)
    memory_mb: int = 2048
    cpus: int = 2
    boot_timeout: float = 120.0
    accel: str = "auto"
    extra_cmdline: list[str] = field(default_factory=list)
    lifetime: float = 6 * 3600.0      # hard cap on QEMU's life, whatever happens
    ping_timeout: float = 30.0        # "still answering?" after a command timed out (TCG is slow)
    # After an oops/lockup/hung task on the console a command gets this long to end by itself before it
    # is abandoned (an oopsed task usually dies at once; a stuck one would otherwise cost its timeout).
    stuck_grace: float = 10.0
    # While a command runs longer than this, the guest is asked every this often whether it still runs
    # `true` on a second channel (0: never); HEARTBEAT_MISSES unanswered checks in a row (each bounded
    # by ping_timeout) abandon the command. A kernel that hangs with nothing on the console (both CPUs
    # spinning with interrupts off) otherwise costs the command's whole timeout: 10 min for a liburing
    # pool on 5.8 + v3.
    heartbeat: float = 60.0
    shutdown_timeout: float = 30.0
    # "isolated" (kwb's own image, no host files, no network but SSH) or "host" (the host's root over
    # 9p, read-only); "" = the mode in effect (KWB_GUEST_ROOT, set by `kwb --host-root`).
    root: str = ""
    # Host directories the isolated root must hold at their host paths (the workloads' binaries; see
    # harness.workloads.payload). Unused on the host's root, which the guest sees whole.
    root_payload: tuple[Path, ...] = ()
    # A boot that never answers over SSH (no network, no sshd, timeout, QEMU gone) is retried this often;
    # a kernel that panics or oopses while booting is not (the same kernel crashes again).
    boot_retries: int = 1
    # Once virtme-ng-init has finished its set-up, sshd has this long to answer: a boot that is over but
    # unreachable is given up on in seconds rather than at ``boot_timeout``.
    ssh_after_boot: float = 30.0
    # Boot-to-SSH settings (measured A/B by scripts/bench_boot.py; see docs/benchmarks.md)
    # 9p cache mode of the read-only root ("" = virtme-run's uncached default): "loose" cut the median
    # boot-to-SSH from 21.3 s to 12.3 s and a fio start from 5.6 s to 2.8 s (10 boots each, A/B in one run)
    root_cache: str = "loose"
    # QEMU -cpu ("" = virtme-run's max): qemu64 measured no faster and lost 2 of 20 boots (QEMU exit 255)
    cpu_model: str = ""
    early_ssh: bool = False   # SSH once DHCP is done: no faster here (~/.bashrc runs once more), kept off
    wedge_probe_timeout: float = 20.0  # the second connection's "still alive?" after an overrun


class BootError(InfraError):
    """The guest never became reachable; ``outcome`` says whether it crashed, timed out or never ran."""

    def __init__(self, message: str, outcome: str, reason: str = "") -> None:
        super().__init__(message)
        self.outcome = outcome
        self.reason = reason or message


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pids_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker`` (the guest's unique name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


HEARTBEAT_MISSES = 2  # unanswered liveness checks in a row before a running command is abandoned


class Heartbeat:
    """Liveness checks of a guest while one command runs: the first after ``every`` seconds, then every
    ``every`` seconds after an answer and at once after a miss; each runs on its own thread (the
    command's reader must not block) and asks ``answers(timeout)``."""

    def __init__(self, answers: Callable[[float], bool], every: float, timeout: float) -> None:
        self._answers, self._every, self._timeout = answers, every, timeout
        self._next = time.monotonic() + every
        self._lock = threading.Lock()
        self._busy = False
        self.misses = 0

    def dead(self) -> bool:
        """Start a check when one is due; True once HEARTBEAT_MISSES checks in a row went unanswered."""
        if self._every <= 0:
            return False
        with self._lock:
            if self.misses >= HEARTBEAT_MISSES:
                return True
            if self._busy or time.monotonic() < self._next:
                return False
            self._busy = True
        threading.Thread(target=self._check, name="kwb-heartbeat", daemon=True).start()
        return False

    def _check(self) -> None:
        try:
            ok = self._answers(self._timeout)
        except Exception:  # a closed or broken connection is no answer
            ok = False
        with self._lock:
            self.misses = 0 if ok else self.misses + 1
            self._next = time.monotonic() + (self._every if ok else 0.0)
            self._busy = False


class Guest:
    """One booted kernel. Implements :class:`harness.workloads.model.GuestSession`."""

    def __init__(self, cfg: GuestConfig) -> None:
        self.cfg = cfg
        self.name = f"kwb-{uuid.uuid4().hex[:12]}"
        self.state_dir = cache_dir() / "vm" / "runs" / self.name
        self.console_log = cfg.results_dir / "console.log"
        self.accel = "tcg"
        self.kvm = "not-probed"
        self.accel_reason = ""
        self.port = 0
        self.boot_seconds: float | None = None
        self.argv: list[str] = []
        self.root = rootfs.BootRoot(cfg.root or "unprepared")
        # Boots given up on before this one answered: attempt, reason, outcome, seconds.
        self.lost_boots: list[dict[str, object]] = []
        # Set when a command overran and the guest turned out wedged or dead (see _diagnose()).
        self.wedge: dict[str, object] | None = None
        self._watch = ConsoleWatch()
        self._ssh: SshSession | None = None
        self._thread: threading.Thread | None = None
        self._vng_result: Result | None = None
        self._vng_error: BaseException | None = None
        self._t0 = 0.0
        self._stopping = False
        self._hung = False
        self._abandoned = ""
        self._boot_timed_out = False
        self._infra_failure = ""
        self._died = False
        self._closed = False
        self.poweroff_error = ""  # why the clean power-off failed (QEMU was killed instead)

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Boot and wait for SSH, rebooting up to ``boot_retries`` times after a boot that never answered;
        on any failure QEMU is reaped before the error propagates."""
        try:
            attempt = 0
            while True:
                attempt += 1
                try:
                    self._launch()
                    self._wait_ready()
                    return
                except BootError as exc:
                    # A kernel that panicked or oopsed while booting does so again; anything else (no
                    # network, no sshd, QEMU gone without a kernel report) gets one more boot.
                    crashed = self._watch.panicked.is_set() or any(f.fatal for f in self._watch.findings())
                    if crashed or attempt > self.cfg.boot_retries:
                        raise
                    self.lost_boots.append({"attempt": attempt, "reason": exc.reason, "outcome": exc.outcome,
                                            "seconds": round(time.monotonic() - self._t0, 2)})
                    self._discard_boot(attempt)
        except BaseException:
            self.close()
            raise

    def _discard_boot(self, attempt: int) -> None:
        """Reap a boot given up on and keep its console beside the next one's."""
        self._stopping = True
        if self._qemu_running():
            self._kill()
        if self._ssh is not None:
            self._ssh.close()
        with contextlib.suppress(OSError):
            self.console_log.replace(self.console_log.with_name(f"console-lost-boot-{attempt}.log"))
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def _reset(self) -> None:
        """Per-boot state, fresh for every attempt."""
        self._watch = ConsoleWatch()
        self._ssh = None
        self._thread = None
        self._vng_result = None
        self._vng_error = None
        self._stopping = self._hung = self._boot_timed_out = self._died = False
        self._abandoned = self._infra_failure = ""
        self.wedge = None

    def _launch(self) -> None:
        cfg = self.cfg
        self._reset()
        if not cfg.kernel.is_file():
            raise UserError(f"kernel image not found: {cfg.kernel}")
        for disk in cfg.disks:
            if not disk.is_file():
                raise UserError(f"disk image not found: {disk}")
        cfg.results_dir.mkdir(parents=True, exist_ok=True)
        home = self.state_dir / "home"
        key = vng.ssh_key_path(home)
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", key],
            timeout=30, check=True)
        choice = accel_mod.choose(cfg.accel, cfg.kernel)
        self.accel, self.kvm, self.accel_reason = choice.accel, choice.kvm, choice.reason
        self.root = rootfs.prepare_boot(cfg.root or rootfs.mode(), self.state_dir, cfg.root_payload)
        self.port = free_port()
        spec = vng.VngSpec(kernel=cfg.kernel, name=self.name, ssh_port=self.port,
                           pidfile=self.state_dir / "qemu.pid", accel=self.accel,
                           memory_mb=cfg.memory_mb, cpus=cfg.cpus, rwdirs=[cfg.results_dir.resolve()],
                           disks=[d.resolve() for d in cfg.disks], cmdline=list(cfg.extra_cmdline),
                           root_disk=self.root.overlay, restrict_net=self.root.mode == "isolated",
                           root_cache=cfg.root_cache, cpu_model=cfg.cpu_model)
        self.argv = vng.build_argv(spec)
        self.console_log.unlink(missing_ok=True)  # one console log per boot
        self._ssh = SshSession(self.port, key, key.parent / "etc" / "ssh" / "ssh_host_ed25519_key.pub")
        self._t0 = time.monotonic()
        self._watch.started = self._t0
        self._thread = threading.Thread(target=self._run_vng, args=(vng.vng_env(home),),
                                        name=f"qemu-{self.name}", daemon=True)
        self._thread.start()

    def _run_vng(self, env: dict[str, str]) -> None:
        try:
            self._vng_result = run(self.argv, timeout=self.cfg.lifetime, env=env, log=self.console_log,
                                   on_line=self._watch.feed)
        except BaseException as exc:  # reported by the waiting side; a thread has nobody to raise to
            self._vng_error = exc

    def _wait_ready(self) -> None:
        assert self._ssh is not None
        deadline = self._t0 + self.cfg.boot_timeout
        booted_at: float | None = None
        # The init script (after udev has settled) hides ~/.bashrc; an early connection does it itself.
        ready, probe = ("dhcp", GUEST_FIRST_COMMAND) if self.cfg.early_ssh else ("guest_ready", "true")
        while True:
            reason = self._dead_reason()
            if reason:
                outcome = "crash" if self._watch.contains("Linux version") else "error"
                if outcome == "error":
                    self._infra_failure = reason
                raise BootError(f"guest failed to boot: {reason} (console: {self.console_log})", outcome,
                                reason)
            problem = console.boot_problem(self._watch.text())
            if problem:
                outcome = "crash" if problem.startswith("kernel ") else "error"
                if outcome == "error":
                    self._infra_failure = problem
                raise BootError(f"guest failed to boot: {problem} (console: {self.console_log})", outcome,
                                problem)
            now = time.monotonic()
            if booted_at is None and "init_done" in self._watch.milestones:
                booted_at = now
            if booted_at is not None and now - booted_at > self.cfg.ssh_after_boot:
                self._boot_timed_out = True
                why = console.stalled_at(self._watch.milestones)
                raise BootError(f"guest booted but not reachable over SSH within "
                                f"{self.cfg.ssh_after_boot:.0f}s of finishing its set-up: {why} "
                                f"(console: {self.console_log})", "timeout", why)
            remaining = deadline - now
            if remaining <= 0:
                self._boot_timed_out = True
                why = console.stalled_at(self._watch.milestones)
                raise BootError(f"guest not reachable over SSH within {self.cfg.boot_timeout:.0f}s: {why} "
                                f"(console: {self.console_log})", "timeout", why)
            # Until sshd can be up, don't burn CPU on attempts.
            if ready in self._watch.milestones and self._try_connect(min(10.0, remaining), probe):
                self.boot_seconds = time.monotonic() - self._t0
                return
            time.sleep(0.2)

    def _try_connect(self, timeout: float, probe: str = "true") -> bool:
        assert self._ssh is not None
        try:
            if not self._ssh.connected:
                self._ssh.close()
                self._ssh.connect(timeout)
            return self._ssh.exec(probe, timeout, self._dead_reason).ok
        except Exception:  # refused, banner/auth errors while sshd starts: retried until the deadline
            self._ssh.close()
            return False

    def close(self) -> None:
        """Power off (cleanly if the guest answers), else kill; reap QEMU; record vm.json. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._died = self._thread is not None and not self._thread.is_alive()
        self._stopping = True
        try:
            if self._qemu_running():
                try:
                    self._poweroff()
                except Exception as exc:  # a clean power-off is a courtesy; the kill follows
                    # An SSH error here (a wedged guest's channel open timing out) used to skip the kill
                    # and leave QEMU running after kwb had exited (seen on a SIGTERM during a wedge).
                    self.poweroff_error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                if self._qemu_running():
                    self._kill()
            finally:
                if self._ssh is not None:
                    self._ssh.close()
                self._record()
                shutil.rmtree(self.state_dir, ignore_errors=True)

    def _poweroff(self) -> None:
        if self._ssh is None or not self._ssh.connected or self._hung or self._watch.panicked.is_set():
            return
        if self._abandoned or self.wedge is not None or self._watch.stuck_since(-1) is not None:
            return  # after an oops/lockup/wedge a clean shutdown tends to hang on what the dead task held
        self._ssh.exec(POWEROFF, timeout=min(15.0, self.cfg.shutdown_timeout))
        if self._thread is not None:
            self._thread.join(self.cfg.shutdown_timeout)

    def _kill(self) -> None:
        # SIGTERM to QEMU first: virtme-run then reaps it and vng exits, leaving no zombie behind.
        qemu = self._qemu_pid()
        for sig in (signal.SIGCONT, signal.SIGTERM):
            if qemu is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(qemu, sig)
        if self._thread is not None:
            self._thread.join(5)
        if not self._qemu_running():
            return
        for pid in pids_with(self.name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
        if self._thread is not None:
            self._thread.join(15)
        if self._qemu_running():
            raise InfraError(f"QEMU of {self.name} could not be killed")

    def _qemu_pid(self) -> int | None:
        try:
            pid = int((self.state_dir / "qemu.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def _qemu_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _dead_reason(self) -> str | None:
        if self._watch.panicked.is_set():
            return "kernel panic"
        if self._thread is not None and not self._thread.is_alive():
            if self._vng_error is not None:
                return f"vng failed: {self._vng_error}"
            rc = self._vng_result.returncode if self._vng_result else -1
            return f"QEMU exited (vng exit {rc})"
        return None

    # -- the GuestSession protocol -------------------------------------------------------------------

    def run(self, command: str, timeout: float) -> Result:
        """Run ``command`` in the guest (as root); a timeout gives ``timed_out=True``, never a hang."""
        argv = ["sh", "-c", command]
        dead = self._dead_reason()
        if dead or self._ssh is None:
            return Result(argv, -1, "", f"kwb: guest is not running ({dead or 'not booted'})\n", 0.0)
        if self._hung:
            return Result(argv, -1, "", "kwb: guest stopped answering\n", 0.0, timed_out=True)
        mark = self._watch.line_count()
        started = time.monotonic()
        res = self._ssh.exec(command, timeout, self._abort_check(), kill_timeout=self.cfg.ping_timeout)
        # The kill request after a timeout is a first "does the guest still answer" probe.
        if res.timed_out and not self._ssh.last_kill_answered:
            self._hung = True
        if (res.timed_out or self._abandoned) and self.wedge is None:
            self._diagnose(command, mark, started)
        return res

    def _diagnose(self, command: str, mark: int, started: float) -> None:
        """After an overrun: ask on a second SSH connection whether the guest lives and the command can
        be killed; a command that can't (stuck in the kernel), or a console lockup report, makes the
        guest wedged — kernel stacks and sysrq w/l go to the console and into :attr:`wedge`."""
        assert self._ssh is not None
        second = self._second_session()
        out = ""
        try:
            second.connect(self.cfg.wedge_probe_timeout)
            script = WEDGE_CHECK.format(pidfile=self._ssh.last_pidfile, force=int(bool(self._abandoned)))
            res = second.exec(script, self.cfg.wedge_probe_timeout)
            alive, out = res.ok, res.stdout
        except Exception:  # refused, reset, banner timeout: the guest does not answer on a new connection
            alive = False
        finally:
            second.close()
        said = parse(out)
        if alive and not said.has(Marker.WEDGED):
            return  # the command was killed: slow or stuck in user space, the guest is fine
        self._hung = True
        self._settle_console()
        lines = self._watch.text().splitlines()[mark:]
        self.wedge = {
            "command": command[:300], "alive": alive,
            "detected_after_s": round(time.monotonic() - started, 1),
            "how": ("the command could not be killed (stuck in the kernel); sysrq w/l over a second "
                    "SSH connection" if alive and not self._abandoned else
                    f"{self._abandoned}; sysrq w/l over a second SSH connection" if alive else
                    "no answer on a second SSH connection (no sysrq: the guest has no keyboard and the "
                    "serial console is output-only); console since the command started"),
            "unkillable": [ln.strip() for ln in (said.section(Marker.WEDGED) or "").splitlines()
                           if ln.strip()] if alive else [],
            "stacks": (said.section(Marker.STACKS) or "") if alive else "",
            "excerpt": "\n".join(lines[-WEDGE_EXCERPT_LINES:]),
        }

    def _second_session(self) -> SshSession:
        """A new SSH connection's session (not a channel on the first one: its transport may be stuck)."""
        assert self._ssh is not None
        return SshSession(self.port, self._ssh.key, self._ssh.host_key)

    def _settle_console(self) -> None:
        """Wait (bounded) until the console has been quiet for a moment: sysrq output is complete."""
        deadline = time.monotonic() + SYSRQ_WAIT_MAX
        seen, quiet_since = self._watch.line_count(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < SYSRQ_SETTLE:
            time.sleep(0.25)
            now_seen = self._watch.line_count()
            if now_seen != seen:
                seen, quiet_since = now_seen, time.monotonic()

    def _abort_check(self) -> Callable[[], str | None]:
        """Abort a command when QEMU died, a stuck-kind console line is older than the grace period, or
        the guest stopped answering the heartbeat."""
        mark = self._watch.line_count()
        assert self._ssh is not None
        beat = Heartbeat(self._ssh.answers, self.cfg.heartbeat, self.cfg.ping_timeout)

        def check() -> str | None:
            dead = self._dead_reason()
            if dead:
                return dead
            if beat.dead():
                self._abandoned = (f"abandoned: the guest did not answer {beat.misses} liveness checks "
                                   f"({self.cfg.ping_timeout:.0f}s each, on a second channel) while the "
                                   "command ran")
                return self._abandoned
            stuck = self._watch.stuck_since(mark)
            if stuck is not None and time.monotonic() - stuck.at >= self.cfg.stuck_grace:
                self._abandoned = (f"abandoned {self.cfg.stuck_grace:.0f}s after kernel {stuck.kind} "
                                   f"on the console: {stuck.line[:120]}")
                return self._abandoned
            return None
        return check

    @property
    def root_mode(self) -> str:
        """What this guest's / is: "isolated" or "host" (harness.workloads.model.ReportsBoot)."""
        return self.root.mode

    def console_text(self) -> str:
        """Everything the guest printed on its consoles so far (kernel log included)."""
        return self._watch.text()

    def alive(self) -> bool:
        """True while QEMU runs, the kernel has not panicked, no command had to be abandoned (a stuck
        task may hold locks the next command needs) and the guest answers over SSH."""
        if self._dead_reason() or self._hung or self._abandoned or self._ssh is None:
            return False
        if not self._ssh.ping(self.cfg.ping_timeout):
            self._hung = True
            return False
        return True

    @property
    def findings(self) -> list[Finding]:
        """Console findings so far (panic, oops, WARNING, hung task, ...)."""
        return self._watch.findings()

    @property
    def outcome(self) -> str:
        """"ok", "crash" (fatal console finding or QEMU died), "timeout" (boot or hang), "error"."""
        if any(f.fatal for f in self.findings) or self._watch.panicked.is_set():
            return "crash"
        if self._infra_failure:
            return "error"
        if self._boot_timed_out or self._hung:
            return "timeout"
        if self._died or (self._thread is not None and not self._thread.is_alive() and not self._stopping):
            return "crash"
        return "ok"

    @property
    def ssh(self) -> SshSession:
        """The SSH session (for an interactive shell)."""
        if self._ssh is None:
            raise InfraError("guest not booted")
        return self._ssh

    @property
    def milestones(self) -> dict[str, float]:
        """Seconds from launch to each boot milestone seen on the console (kernel, init, dhcp, ...)."""
        return dict(self._watch.milestones)

    def qemu_pid(self) -> int | None:
        """QEMU's pid while it runs."""
        return self._qemu_pid()

    def excerpt(self) -> str:
        """The console excerpt that explains the outcome (first fatal finding, else the tail)."""
        return console.crash_excerpt(self.console_text(), self.findings)

    def info(self) -> dict[str, object]:
        """What to record about this boot."""
        return {"name": self.name, "kernel": str(self.cfg.kernel), "accel": self.accel, "kvm": self.kvm,
                "accel_reason": self.accel_reason, "ssh_port": self.port,
                "boot_to_ssh_seconds": self.boot_seconds, "boot_milestones": self.milestones,
                "outcome": self.outcome, "guest_root": self.root.info(),
                "infra_failure": self._infra_failure, "poweroff_error": self.poweroff_error,
                "lost_boots": self.lost_boots, "wedge": self.wedge,
                "findings": [f.to_dict() for f in self.findings], "console_log": str(self.console_log),
                "vng_argv": self.argv}

    def _record(self) -> None:
        with contextlib.suppress(OSError):
            atomic.write_json(self.cfg.results_dir / "vm.json", self.info())
