"""The one subprocess runner."""

from __future__ import annotations

import _thread
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.errors import CommandTimeout, InfraError
from harness.core.run import run, spawn


@pytest.fixture(autouse=True)
def _sigint_delivered() -> object:
    """A job a shell starts in the background inherits SIGINT ignored, and exec keeps that for every child:
    the Ctrl-C tests below would then send signals nobody receives. Give this process (and so its
    children, which exec resets to the default) a real SIGINT handler while each test runs."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_captures_output_and_status(tmp_path: Path) -> None:
    r = run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert r.returncode == 3 and not r.ok
    assert r.stdout == "out\n" and r.stderr == "err\n"


def test_tees_to_log_with_command_line(tmp_path: Path) -> None:
    log = tmp_path / "sub" / "x.log"
    run(["echo", "hello world"], timeout=10, log=log, env={"FOO": "a b"})
    text = log.read_text()
    assert text.splitlines()[0] == "$ FOO='a b' echo 'hello world'"
    assert "hello world\n" in text


def test_timeout_kills_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    r = run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1)
    assert r.timed_out and not r.ok
    child = int(pidfile.read_text())
    # Killed means gone, or a zombie waiting for init to reap it: never still sleeping.
    status = Path(f"/proc/{child}/status")
    if status.exists():
        assert "State:\tZ" in status.read_text()


def test_check_raises_one_line_errors() -> None:
    with pytest.raises(InfraError, match=r"^sh failed \(exit 1\): boom$"):
        run(["sh", "-c", "echo boom >&2; exit 1"], timeout=10, check=True)
    with pytest.raises(CommandTimeout):
        run(["sleep", "5"], timeout=0.5, check=True)


def test_missing_command_is_infra_error() -> None:
    with pytest.raises(InfraError, match="command not found: /nonexistent/tool"):
        run(["/nonexistent/tool"], timeout=5)
    # Popen calls a missing cwd FileNotFoundError as well: it must not read as a missing command
    with pytest.raises(InfraError, match="working directory not usable: /nonexistent/dir"):
        run(["cat"], timeout=5, cwd="/nonexistent/dir")


def test_cwd_and_input(tmp_path: Path) -> None:
    r = run(["sh", "-c", "pwd; cat"], timeout=10, cwd=tmp_path, input="piped")
    assert r.stdout == f"{tmp_path}\npiped"
    assert r.command_line().startswith(f"cd {tmp_path} && ")
    assert os.getcwd() != str(tmp_path)


def _gone(pid: int, wait: float = 10.0) -> bool:
    # Killed means gone, or a zombie waiting for init to reap it: never still sleeping. SIGKILL is
    # delivered asynchronously, so allow the kernel a moment to finish the exit.
    deadline = time.monotonic() + wait
    while True:
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "State:\tZ" in status.read_text():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


_DRIVER = """
import signal, sys
from harness.cli import _on_sigterm
from harness.core.run import run, spawn
signal.signal(signal.SIGTERM, _on_sigterm)
try:
    run(["sh", "-c", "sleep 300 & echo $! > " + sys.argv[1] + "; wait"], timeout=600)
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_kills_process_group(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C (SIGINT) or SIGTERM of a kwb process inside run() leaves no child of the command behind."""
    pidfile = tmp_path / "child.pid"
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(pidfile)])
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "driver never started its child"
        time.sleep(0.05)
    child = int(pidfile.read_text())
    assert not _gone(child, wait=0)
    driver.send_signal(sig)
    assert driver.wait(timeout=30) == 130
    assert _gone(child), f"sleep {child} survived {sig.name} of its kwb process"


def test_exception_in_caller_thread_kills_group(tmp_path: Path) -> None:
    """An exception raised while run() waits (here from on_line) still kills the whole group."""
    pidfile = tmp_path / "child.pid"

    def interrupt_main(line: str) -> None:
        _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt):
        run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started; wait"], timeout=60,
            on_line=interrupt_main)
    assert _gone(int(pidfile.read_text()))


_KWB_BUILD = """
import sys
from harness.kernel import build
from harness import cli
from harness.core.run import run, spawn

def fake_make(variant, **kw):
    # stands in for `make -j`: a command with a child of its own, started through the one runner
    run(["sh", "-c", "sleep 300 & echo $! > " + sys.argv[1] + "; wait"], timeout=600)
    raise AssertionError("not reached: interrupted")

build.ensure_kernel = fake_make
sys.exit(cli.main(["build", "--variant", "series"]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_kwb_build_leaves_no_process(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C (or SIGTERM) of `kwb build` while its make runs: kwb exits 2 and the make's children are
    gone, so nothing keeps writing into the shared build directory once the build lock is released."""
    pidfile = tmp_path / "make.pid"
    proc = subprocess.Popen([sys.executable, "-c", _KWB_BUILD, str(pidfile)], stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "kwb build never started its make"
        time.sleep(0.05)
    child = int(pidfile.read_text())
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "kwb: interrupted" in err
    assert _gone(child), f"make's child {child} survived {sig.name} of kwb build"


# spawn(): a long-lived child under the same rules (argv list, logged, deadline, its group killed on any
# exit).


def test_spawn_talks_through_binary_pipes_and_logs(tmp_path: Path) -> None:
    log = tmp_path / "cat.log"
    with spawn(["sh", "-c", "echo warming up >&2; exec cat"], timeout=10, log=log, env={"X": "1"}) as child:
        child.stdin.write(b"\x00bytes\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"\x00bytes\n"
        assert child.running()
    assert not child.running()
    text = log.read_text()
    assert text.splitlines()[0] == "$ X=1 sh -c 'echo warming up >&2; exec cat'"
    assert "warming up" in text and child.stderr_tail() == "warming up"
    assert child.close() == 0  # idempotent


def test_spawn_deadline_kills_a_silent_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    child = spawn(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; cat"], timeout=10)
    child.renew(0.5)
    start = time.monotonic()
    assert child.stdout.readline() == b""  # nothing was asked: it never answers, the watchdog kills it
    assert child.timed_out and time.monotonic() - start < 10
    child.close()
    assert _gone(int(pidfile.read_text()))


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_spawn_exception_in_the_with_block_kills_the_group(error: type[BaseException]) -> None:
    with pytest.raises(error), spawn(["sh", "-c", "sleep 300 & echo $!; cat"], timeout=60) as child:
        grandchild = int(child.stdout.readline())
        raise error("stop")
    assert _gone(child.pid) and _gone(grandchild)


_SPAWN_DRIVER = """
import signal, sys, time
from harness.cli import _on_sigterm
from harness.core.run import spawn
signal.signal(signal.SIGTERM, _on_sigterm)
child = spawn(["sh", "-c", "sleep 300 & echo $! > " + sys.argv[1] + "; cat"], timeout=600)
if sys.argv[2] == "exit":
    while not open(sys.argv[1]).read().strip():
        time.sleep(0.05)
    sys.exit(0)  # never closed: interpreter exit closes it
try:
    child.stdout.readline()
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "exit"])
def test_spawned_group_dies_with_its_kwb_process(tmp_path: Path, how: str) -> None:
    """Ctrl-C, SIGTERM, or a kwb process that exits without closing its child: nothing is left behind."""
    pidfile = tmp_path / "child.pid"
    pidfile.write_text("")
    driver = subprocess.Popen([sys.executable, "-c", _SPAWN_DRIVER, str(pidfile), how])
    deadline = time.monotonic() + 30
    while not pidfile.read_text().strip():
        assert time.monotonic() < deadline, "driver never started its child"
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    if how != "exit":
        time.sleep(0.2)  # into the blocking read
        driver.send_signal(getattr(signal, how))
    assert driver.wait(timeout=30) == (0 if how == "exit" else 130)
    assert _gone(grandchild), f"sleep {grandchild} survived ({how})"


def test_spawn_missing_command_is_one_line() -> None:
    with pytest.raises(InfraError, match="command not found: /nonexistent/tool"):
        spawn(["/nonexistent/tool"], timeout=5)
    with pytest.raises(InfraError, match="working directory not usable"):
        spawn(["cat"], timeout=5, cwd="/nonexistent/dir")
