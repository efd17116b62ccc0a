"""SSH into the guest with paramiko: 127.0.0.1 only, the per-run key, the per-run host key checked.

Every command has a deadline; a command that never returns comes back as ``Result(timed_out=True)``
and its session in the guest is killed over a second channel (which doubles as the "does the
guest still answer" probe).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import select
import shlex
import sys
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

import paramiko

from harness.core.errors import InfraError
from harness.core.run import Result

HOST = "127.0.0.1"
MAX_OUTPUT = 64 * 1024 * 1024
KILL_TIMEOUT = 20.0
Abort = Callable[[], str | None]

# Before sshd is up, QEMU's port forward accepts and drops connections; paramiko logs each one as an
# error. Those are expected while waiting and reported by kwb itself when they matter.
logging.getLogger("paramiko").setLevel(logging.CRITICAL)


def _never() -> str | None:
    return None


class SshSession:
    """One paramiko connection to a guest's sshd on 127.0.0.1:``port``."""

    def __init__(self, port: int, key: Path, host_key: Path | None = None, user: str = "root") -> None:
        self.port = port
        self.key = key
        self.host_key = host_key
        self.user = user
        self._client: paramiko.SSHClient | None = None
        self._seq = 0
        # After a timeout: did the guest answer the kill request? (None: no timeout yet.)
        self.last_kill_answered: bool | None = None
        # The guest file holding the last command's session id (for a kill from elsewhere).
        self.last_pidfile = ""

    def connect(self, timeout: float) -> None:
        """Open the connection (raises paramiko/socket errors; callers retry while the guest boots)."""
        client = paramiko.SSHClient()
        if self.host_key is not None:
            if not self.host_key.is_file():
                # vng writes the guest's host keys before QEMU starts; no key yet means no sshd yet.
                raise InfraError(f"guest host key not generated yet: {self.host_key}")
            kind, blob = self.host_key.read_text().split()[:2]
            client.get_host_keys().add(f"[{HOST}]:{self.port}", kind,
                                       paramiko.PKey.from_type_string(kind, _b64(blob)))
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        try:
            client.connect(HOST, self.port, username=self.user, key_filename=str(self.key),
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                           channel_timeout=timeout, allow_agent=False, look_for_keys=False)
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)
        self._client = client

    @property
    def connected(self) -> bool:
        """True while the transport is up."""
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def close(self) -> None:
        """Drop the connection (idempotent)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _transport(self) -> paramiko.Transport:
        t = self._client.get_transport() if self._client else None
        if t is None or not t.is_active():
            raise InfraError("SSH connection to the guest is closed")
        return t

    def exec(self, command: str, timeout: float, abort: Abort = _never,
             kill_timeout: float = KILL_TIMEOUT) -> Result:
        """Run ``command`` under the guest's shell; never blocks past ``timeout`` (or ``abort()``).

        On timeout the command's session is killed (bounded by ``kill_timeout``) and
        :attr:`last_kill_answered` records whether the guest still responded.
        """
        self._seq += 1
        pidfile = f"/tmp/kwb-cmd/{self._seq}.pid"
        self.last_pidfile = pidfile
        # $$ becomes the command's pid and, as sshd made the session leader, its process group.
        wrapped = (f"mkdir -p /tmp/kwb-cmd && echo $$ > {pidfile} && "
                   f"exec sh -c {shlex.quote(command)}")
        argv = ["sh", "-c", command]
        start = time.monotonic()
        try:
            chan = self._transport().open_session(timeout=min(timeout, 30.0))
            chan.exec_command(wrapped)
        except (OSError, EOFError, paramiko.SSHException, InfraError) as exc:
            return Result(argv, -1, "", f"kwb: could not start command over SSH: {exc}\n",
                          time.monotonic() - start)
        out, err, state = _pump(chan, start + timeout, abort)
        duration = time.monotonic() - start
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if state == "timeout":
            chan.close()
            self.last_kill_answered = self.kill(pidfile, kill_timeout)
            return Result(argv, -1, stdout, stderr + f"kwb: command timed out after {timeout:.0f}s\n",
                          duration, timed_out=True)
        if state != "done":
            chan.close()
            return Result(argv, -1, stdout, stderr + f"kwb: {state}\n", duration)
        code = chan.exit_status if chan.exit_status_ready() else -1
        chan.close()
        return Result(argv, code, stdout, stderr, duration)

    def _bare(self, script: str, timeout: float) -> int | None:
        """Run ``script`` on a new channel without :meth:`exec`'s pidfile wrapper (so it leaves
        :attr:`last_pidfile` and the command counter alone); its exit status (-1 when sshd gave none), or
        None when the guest did not answer within ``timeout``."""
        try:
            chan = self._transport().open_session(timeout=timeout)
            chan.exec_command(script)
        except (OSError, EOFError, paramiko.SSHException, InfraError):
            return None
        _, _, state = _pump(chan, time.monotonic() + timeout, _never)
        code = (chan.exit_status if chan.exit_status_ready() else -1) if state == "done" else None
        chan.close()
        return code

    def answers(self, timeout: float) -> bool:
        """True when the guest runs ``true`` on a new channel within ``timeout``. Safe beside a running
        :meth:`exec` (another thread's)."""
        return self._bare("true", timeout) == 0

    def kill(self, pidfile: str, timeout: float = KILL_TIMEOUT) -> bool:
        """Kill a timed-out command's session; False when the guest does not answer."""
        # Its whole session: timeout(1) gives the command it runs a process group of its own.
        script = (f"p=$(cat {pidfile} 2>/dev/null) && [ -n \"$p\" ] && "
                  "{ pkill -TERM -s $p; sleep 1; pkill -KILL -s $p; }; true")
        return self._bare(script, timeout) is not None

    def ping(self, timeout: float) -> bool:
        """True when the guest runs a trivial command within ``timeout``."""
        return self.connected and self.answers(timeout)

    def interactive(self, in_fd: int | None = None, out_fd: int | None = None) -> int:
        """An interactive shell on a pty, wired to a terminal (default: this process's stdin/stdout);
        returns the shell's exit status."""
        in_fd = sys.stdin.fileno() if in_fd is None else in_fd
        out_fd = sys.stdout.fileno() if out_fd is None else out_fd
        if not (os.isatty(in_fd) and os.isatty(out_fd)):
            raise InfraError("an interactive shell needs a terminal on stdin and stdout")
        cols, rows = os.get_terminal_size(out_fd)
        chan = self._transport().open_session(timeout=30)
        chan.get_pty(term=os.environ.get("TERM", "xterm"), width=cols or 80, height=rows or 24)
        chan.invoke_shell()
        saved = termios.tcgetattr(in_fd)
        try:
            tty.setraw(in_fd, termios.TCSANOW)  # TCSANOW: keep what was typed while the guest booted
            _relay(chan, in_fd, out_fd)
        finally:
            termios.tcsetattr(in_fd, termios.TCSADRAIN, saved)
        # The output EOF can arrive before the exit-status message: give it a moment.
        deadline = time.monotonic() + 5
        while not chan.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.05)
        code = chan.exit_status if chan.exit_status_ready() else -1
        chan.close()
        return code


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def _pump(chan: paramiko.Channel, deadline: float, abort: Abort) -> tuple[bytes, bytes, str]:
    """Read a channel until exit, deadline or abort; state is "done", "timeout" or the abort reason."""
    out = bytearray()
    err = bytearray()
    while True:
        while chan.recv_ready() and len(out) < MAX_OUTPUT:
            out += chan.recv(65536)
        while chan.recv_stderr_ready() and len(err) < MAX_OUTPUT:
            err += chan.recv_stderr(65536)
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            return bytes(out), bytes(err), "done"
        if chan.closed or (chan.eof_received and chan.exit_status_ready()):
            return bytes(out), bytes(err), "done" if chan.exit_status_ready() else "connection lost"
        transport = chan.get_transport()
        if transport is None or not transport.is_active():
            return bytes(out), bytes(err), "SSH connection to the guest was lost"
        reason = abort()
        if reason:
            return bytes(out), bytes(err), reason
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return bytes(out), bytes(err), "timeout"
        with contextlib.suppress(OSError, ValueError):
            select.select([chan], [], [], min(0.25, remaining))


def _relay(chan: paramiko.Channel, in_fd: int, out_fd: int) -> None:
    chan_fd = chan.fileno()
    while not chan.closed:
        ready, _, _ = select.select([chan_fd, in_fd], [], [], 0.5)
        if chan_fd in ready:
            data = chan.recv(65536)
            if not data:
                break
            os.write(out_fd, data)
        if in_fd in ready:
            data = os.read(in_fd, 4096)
            if not data:
                break
            chan.send(data)
        if chan.exit_status_ready() and not chan.recv_ready():
            break
