"""The channel reader never hangs: exit, timeout, abort and a dropped connection, on a fake channel."""

from __future__ import annotations

import time

from harness.vm import ssh


class FakeTransport:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeChannel:
    """Replays (delay, stream, data) chunks, then an exit status (or none: a command that never ends)."""

    def __init__(self, chunks: list[tuple[float, str, bytes]], status: int | None) -> None:
        self.start = time.monotonic()
        self.chunks = chunks
        self.status = status
        self.closed = False
        self.eof_received = False
        self.transport = FakeTransport()

    def _due(self, stream: str) -> bool:
        now = time.monotonic() - self.start
        return any(d <= now and s == stream for d, s, _ in self.chunks)

    def _take(self, stream: str) -> bytes:
        now = time.monotonic() - self.start
        for i, (d, s, data) in enumerate(self.chunks):
            if d <= now and s == stream:
                del self.chunks[i]
                return data
        return b""

    def recv_ready(self) -> bool:
        return self._due("out")

    def recv_stderr_ready(self) -> bool:
        return self._due("err")

    def recv(self, n: int) -> bytes:
        return self._take("out")

    def recv_stderr(self, n: int) -> bytes:
        return self._take("err")

    def exit_status_ready(self) -> bool:
        return self.status is not None and not self.chunks

    def get_transport(self) -> FakeTransport:
        return self.transport

    def fileno(self) -> int:
        raise ValueError("no fd in the fake")


def test_collects_output_until_exit() -> None:
    chan = FakeChannel([(0, "out", b"hello "), (0.1, "err", b"warn\n"), (0.2, "out", b"world\n")], 0)
    out, err, state = ssh._pump(chan, time.monotonic() + 10, lambda: None)  # type: ignore[arg-type]
    assert (out, err, state) == (b"hello world\n", b"warn\n", "done")


def test_never_returning_command_times_out_in_bound() -> None:
    chan = FakeChannel([(0, "out", b"partial")], None)
    start = time.monotonic()
    out, _, state = ssh._pump(chan, start + 1.0, lambda: None)  # type: ignore[arg-type]
    assert state == "timeout" and out == b"partial"
    assert 0.9 < time.monotonic() - start < 3


def test_abort_reason_stops_the_wait() -> None:
    chan = FakeChannel([], None)
    t0 = time.monotonic()
    _, _, state = ssh._pump(chan, t0 + 60, lambda: "kernel panic" if time.monotonic() - t0 > 0.3 else None)  # type: ignore[arg-type]
    assert state == "kernel panic" and time.monotonic() - t0 < 5


def test_lost_connection_is_reported() -> None:
    chan = FakeChannel([], None)
    chan.transport.active = False
    _, _, state = ssh._pump(chan, time.monotonic() + 60, lambda: None)  # type: ignore[arg-type]
    assert state == "SSH connection to the guest was lost"


def test_exec_without_connection_returns_a_result(tmp_path: object) -> None:
    s = ssh.SshSession(1, key=__import__("pathlib").Path("/nonexistent"))
    res = s.exec("true", timeout=1)
    assert res.returncode == -1 and "could not start command" in res.stderr and not res.timed_out
    assert res.argv == ["sh", "-c", "true"]
    assert not s.ping(1)
