"""Where the series' mail comes from when the user names none: the static concern step's source.

In order: ``--source``/``SOURCE=`` as given; else the shared list archive beside the checkout when it is
there (``$KWB_SHARED`` or ``../shared``: ``lore/*.mbox``); else lore through b4, one thread per revision
of the series (the message-ids in the series profile), when lore answers within a few seconds; else
nothing — the concern step is skipped and says how to give a source. The kernel part of the pipeline
needs no mail, so a machine with no archive and no network still runs it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.core import profile
from harness.core.errors import InfraError, OfflineError, UserError
from harness.core.paths import cache_dir, project_root
from harness.core.run import run
from harness.core.tomlfile import load_toml
from harness.sources import lore

NETWORK_TIMEOUT = 3.0   # seconds; the whole probe is bounded by NETWORK_TIMEOUT + 1 (harness.sources.lore)
B4_TIMEOUT = 180.0      # one thread
AUTO, LORE = "auto", "lore"  # the two source names that are not a path or a message-id
SKIPPED = "skipped: no mail source (offline) — pass SOURCE=… (make) or --source … (kwb)"


@dataclass
class MailChoice:
    """The chosen source: ``kind`` is given | shared | lore | none; ``spec`` is what the loaders read."""

    kind: str
    spec: str | None
    reason: str

    def to_dict(self) -> dict[str, str | None]:
        """results.json's ``run.mail`` form."""
        return {"kind": self.kind, "spec": self.spec, "reason": self.reason}


def network_up(timeout: float = NETWORK_TIMEOUT) -> bool:
    """Does lore answer within ``timeout`` s? ``KWB_OFFLINE=1`` says no without asking (CI, tests)."""
    if os.environ.get("KWB_OFFLINE") == "1":
        return False
    try:
        lore.check_online(timeout=timeout)
    except OfflineError:
        return False
    return True


def _profile() -> dict[str, object]:
    """The active series profile's series metadata (its revisions' message-ids, its list)."""
    path = profile.active().series_file
    if not path.is_file():
        return {}
    return dict(load_toml(path, "series metadata"))


def revision_message_ids() -> list[str]:
    """One message-id per revision of the series (its cover, else its first patch), in profile order."""
    revisions = _profile().get("revision") or []
    ids: list[str] = []
    for rev in revisions if isinstance(revisions, list) else []:
        if isinstance(rev, dict):
            msgid = rev.get("cover") or rev.get("first_patch")
            if isinstance(msgid, str) and msgid and msgid not in ids:
                ids.append(msgid)
    return ids


def shared_archive(root: Path | None = None) -> Path | None:
    """The shared list archive, if one is beside the checkout: ``<shared>/lore/*.mbox``, preferring the
    one named after the series' list (``io-uring@…`` → ``io-uring-*.mbox``)."""
    base = Path(os.environ.get("KWB_SHARED") or (root or project_root()).parent / "shared") / "lore"
    candidates = sorted(p for p in base.glob("*.mbox") if p.is_file()) if base.is_dir() else []
    if not candidates:
        return None
    list_addr = str(_profile().get("list") or "")
    local = list_addr.split("@", 1)[0]
    named = [p for p in candidates if local and p.name.startswith(local + "-")]
    if named:
        return named[0]
    return candidates[0] if len(candidates) == 1 else None


def choose(given: str | None, *, probe: Callable[[], bool] = network_up,
           shared: Callable[[], Path | None] = shared_archive,
           msgids: Callable[[], list[str]] = revision_message_ids) -> MailChoice:
    """Pick the mail source (see the module docstring); never touches the network beyond ``probe``.

    ``given`` empty or ``auto``: shared archive, else lore, else none; ``lore``: lore only (what the CI
    files default to); anything else is a path or message-id for the source loaders.
    """
    if given and given not in (AUTO, LORE):
        return MailChoice("given", given, "as given")
    archive = shared() if given != LORE else None
    if archive is not None:
        return MailChoice("shared", str(archive), f"shared archive {archive}")
    ids = msgids()
    if not ids:
        return MailChoice("none", None, "skipped: no mail source (the series profile names no "
                                        "message-ids) — pass SOURCE=…")
    if probe():
        return MailChoice("lore", ",".join(ids), f"lore through b4: {len(ids)} revision threads")
    return MailChoice("none", None, SKIPPED)


def fetch_lore(msgids: list[str], progress: Callable[[str], None] | None = None,
               run_b4: Callable[[str, Path], None] | None = None) -> Path:
    """Every thread of ``msgids`` fetched with ``b4 mbox`` into one mbox in the cache; returns its path.

    Threads already fetched are kept (a posted thread is immutable enough for a review status; delete
    ``<cache>/lore-threads`` to fetch again).
    """
    fetch = run_b4 or _b4_mbox
    folder = cache_dir() / "lore-threads"
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for n, msgid in enumerate(msgids, 1):
        part = folder / (msgid.replace("/", "_") + ".mbox")
        if not part.is_file() or part.stat().st_size == 0:
            if progress:
                progress(f"lore: b4 mbox {n}/{len(msgids)} {msgid}")
            fetch(msgid, part)
        parts.append(part)
    combined = folder / "combined.mbox"
    tmp = combined.with_suffix(".tmp")
    with tmp.open("wb") as out:
        for part in parts:
            data = part.read_bytes()
            out.write(data if data.endswith(b"\n") else data + b"\n")
    os.replace(tmp, combined)
    return combined


def _b4_mbox(msgid: str, dest: Path) -> None:
    result = run([*lore.b4_command(), "mbox", "-n", dest.name + ".part", "-o", str(dest.parent), msgid],
                 timeout=B4_TIMEOUT, env=lore.b4_env())
    part = dest.with_name(dest.name + ".part")
    if result.timed_out:
        raise InfraError(f"b4 mbox {msgid} timed out after {B4_TIMEOUT:.0f}s")
    if not result.ok or not part.is_file():
        raise InfraError(f"b4 mbox {msgid} failed: {result.tail(1).strip()}")
    os.replace(part, dest)


def resolve(given: str | None, progress: Callable[[str], None] | None = None,
            *, probe: Callable[[], bool] = network_up,
            shared: Callable[[], Path | None] = shared_archive) -> MailChoice:
    """:func:`choose`, then for lore the fetched mbox as ``spec``; ``kind`` none means skip."""
    choice = choose(given, probe=probe, shared=shared)
    if choice.kind == "lore" and choice.spec:
        path = fetch_lore(choice.spec.split(","), progress)
        return MailChoice("lore", str(path), choice.reason)
    return choice


def require(given: str | None, progress: Callable[[str], None] | None = None,
            *, probe: Callable[[], bool] = network_up,
            shared: Callable[[], Path | None] = shared_archive) -> str:
    """A source for commands that cannot run without mail (`kwb series …`): OfflineError in one line,
    within the probe's few seconds, when there is none."""
    choice = resolve(given, progress, probe=probe, shared=shared)
    if choice.spec is None:
        if "offline" in choice.reason:
            raise OfflineError("no mail source: no shared archive and lore is unreachable (offline) — "
                               "pass --source MBOX|MAILDIR|PUBLIC-INBOX")
        raise UserError("no mail source — pass --source MBOX|MAILDIR|PUBLIC-INBOX|MSGID")
    return choice.spec
