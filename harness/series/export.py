"""Export one revision as an am-ready mbox with ``b4 am`` (offline, on a local mbox of that revision):
patches in order, trailers collected from the replies."""

from __future__ import annotations

import mailbox
import re
import shutil
import tempfile
from pathlib import Path

from harness.core.errors import InfraError, UserError
from harness.core.run import run
from harness.series.integrity import check_patch
from harness.series.model import Revision
from harness.series.subjects import parse_subject
from harness.sources.lore import b4_command, b4_env
from harness.sources.message import Message

_MBOX_FROM = re.compile(rb"^(>*From )", re.MULTILINE)


def _cover_usable(rev: Revision) -> bool:
    # b4 trusts the cover's 0/N; when the patches say another N (v7: 0/12 vs NN/15) it finds no series.
    return rev.cover is not None and all(p.total == rev.expected for p in rev.patches)


def revision_messages(rev: Revision) -> list[Message]:
    """Cover, patches and every reply attached to them (each once, posting order); the cover is left
    out when its count disagrees with the patches'."""
    out: dict[str, Message] = {}
    if rev.cover is not None and _cover_usable(rev):
        out[rev.cover.message_id] = rev.cover
    for p in rev.patches:
        out[p.message.message_id] = p.message
    for r in rev.all_reviews():
        if _is_repost(r.message):
            # A patch re-sent inside the thread (RFC 03/11's v2) is kept as a fix-up review; handed to
            # b4 it would be taken as the newer patch 3, so export would write what show does not.
            continue
        out.setdefault(r.message.message_id, r.message)
    return list(out.values())


def _is_repost(msg: Message) -> bool:
    info = parse_subject(msg.subject)
    return info.is_patch and not info.is_reply and info.number is not None


def write_mboxrd(messages: list[Message], path: Path) -> None:
    """Write raw messages as mboxrd (``From `` lines in bodies escaped with one more ``>``)."""
    with path.open("wb") as f:
        for m in messages:
            raw = m.raw.replace(b"\r\n", b"\n")
            f.write(b"From mboxrd@z Thu Jan  1 00:00:00 1970\n")
            f.write(_MBOX_FROM.sub(rb">\1", raw))
            if not raw.endswith(b"\n"):
                f.write(b"\n")
            f.write(b"\n")


def count_patches(mbx: Path) -> int:
    """Number of messages in an mbox file."""
    box = mailbox.mbox(str(mbx), create=False)
    try:
        return len(box)
    finally:
        box.close()


def check_revision(rev: Revision) -> None:
    """UserError naming the first patch of ``rev`` whose body does not add up (hunks, diffstat)."""
    for p in rev.patches:
        problem = check_patch(p.message.body, p.diff)
        if problem:
            raise UserError(f"v{rev.version} patch {p.number}/{p.total} <{p.message.message_id}> "
                            f"({p.subject[:60]!r}) is cut short: {problem}; not exporting a shorter patch")


def export_revision(rev: Revision, output: Path, *, timeout: float = 300.0) -> Path:
    """Write ``rev`` as an am-ready mbox at ``output`` (via b4 am); returns ``output``."""
    if not rev.patches:
        raise UserError(f"revision v{rev.version} has no patches to export")
    check_revision(rev)
    anchor = rev.cover if rev.cover is not None and _cover_usable(rev) else rev.patches[0].message
    with tempfile.TemporaryDirectory(prefix="kwb-export-") as tmp:
        local = Path(tmp) / "revision.mbox"
        write_mboxrd(revision_messages(rev), local)
        outdir = Path(tmp) / "out"
        argv = [*b4_command(), "--offline-mode", "am", "-m", str(local), "-o", str(outdir), "-n", "series",
                anchor.message_id]
        result = run(argv, timeout=timeout, env=b4_env())
        mbx = outdir / "series.mbx"
        if result.timed_out:
            raise InfraError(f"b4 am timed out after {timeout:.0f}s exporting v{rev.version}")
        if not result.ok or not mbx.is_file():
            raise InfraError(f"b4 am failed exporting v{rev.version}: {result.tail(1)}")
        found = count_patches(mbx)
        if found != len(rev.patches):
            raise InfraError(f"b4 am wrote {found} patches for v{rev.version}, expected {len(rev.patches)}")
        output.parent.mkdir(parents=True, exist_ok=True)
        staged = output.with_name(f".{output.name}.tmp")
        shutil.copyfile(mbx, staged)
        staged.replace(output)
    return output
