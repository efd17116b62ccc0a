"""lore.kernel.org by message-id, through ``b4 mbox``. Offline it fails fast with OfflineError."""

from __future__ import annotations

import re
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

from harness.core.errors import InfraError, OfflineError
from harness.core.paths import cache_dir
from harness.core.run import run
from harness.sources.base import SourceResult
from harness.sources.mbox import MboxSource

LORE_HOST = "lore.kernel.org"
_MSGID = re.compile(r"^<?[^\s<>/@]+@[^\s<>/@]+>?$")


def normalise_msgid(spec: str) -> str:
    """``<id@host>`` or ``id@host`` or a lore URL → ``id@host``."""
    text = spec.strip()
    if text.startswith(("http://", "https://")):
        text = text.rstrip("/").split("/")[-1] if "@" in text.rstrip("/").split("/")[-1] else text
    return text.strip("<>")


def b4_command() -> list[str]:
    """argv prefix for b4: the one installed beside this Python (the venv), else the one on PATH."""
    local = Path(sys.executable).parent / "b4"
    if local.is_file():
        return [str(local)]
    found = shutil.which("b4")
    if not found:
        raise InfraError("b4 is not installed (run `make setup`)")
    return [found]


def b4_env() -> dict[str, str]:
    """Environment for b4: its cache goes under kwb's cache dir, nowhere else on the host."""
    return {"XDG_CACHE_HOME": str(cache_dir() / "b4-xdg-cache")}


def check_online(host: str = LORE_HOST, timeout: float = 3.0) -> None:
    """Raise OfflineError unless ``host`` answers on port 443 within ``timeout`` seconds.

    The probe runs in a daemon thread because name resolution has no timeout of its own; a resolver
    that hangs must not hang kwb.
    """
    outcome: list[BaseException | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    if outcome and outcome[0] is None:
        return
    reason = f"{outcome[0].__class__.__name__}: {outcome[0]}" if outcome else f"no answer in {timeout:.0f}s"
    raise OfflineError(f"cannot reach {host} ({reason}); this machine looks offline — pass a local mbox, "
                       "Maildir or public-inbox with --source")


class LoreSource:
    """A message-id fetched from lore with ``b4 mbox`` (needs network)."""

    name = "lore"

    def accepts(self, spec: str) -> tuple[bool, str]:
        """Anything shaped like a message-id that is not an existing path."""
        if Path(spec).exists():
            return False, "is a local path"
        if not _MSGID.match(normalise_msgid(spec)):
            return False, "not a message-id (id@host)"
        return True, ""

    def load(self, spec: str) -> SourceResult:
        """Fetch the thread of ``spec`` with b4 and parse it as an mbox."""
        msgid = normalise_msgid(spec)
        check_online()
        with tempfile.TemporaryDirectory(prefix="kwb-lore-") as tmp:
            out = Path(tmp) / "thread.mbox"
            result = run([*b4_command(), "mbox", "-n", out.name, "-o", tmp, msgid], timeout=180,
                         env=b4_env())
            if result.timed_out:
                raise InfraError(f"b4 mbox {msgid} timed out after 180s")
            if not result.ok or not out.is_file():
                raise InfraError(f"b4 mbox {msgid} failed: {result.tail(1)}")
            loaded = MboxSource().load(str(out))
        loaded.kind, loaded.location = self.name, msgid
        return loaded
