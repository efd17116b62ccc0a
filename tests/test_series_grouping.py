"""Threading and grouping on small synthetic archives: one test per class of mistake a real list showed
(gateway-added References ids, empty-subject interlopers, re-ided covers, RESEND, revision order, a
series renamed between revisions)."""

from __future__ import annotations

from pathlib import Path

from test_series_fixtures import mail, mbox, patch_body

from harness.series.loader import load_series
from harness.series.model import Family


def _load(tmp_path: Path, *messages: bytes) -> list[Family]:
    path = tmp_path / "a.mbox"
    path.write_bytes(mbox(*messages))
    return load_series(path).families


def _with_refs(raw: bytes, refs: list[str], reply_to: str | None) -> bytes:
    head, body = raw.split(b"\n\n", 1)
    lines = [line for line in head.split(b"\n") if not line.startswith((b"In-Reply-To", b"References"))]
    if reply_to:
        lines.append(f"In-Reply-To: <{reply_to}>".encode())
    if refs:
        lines.append(("References: " + " ".join(f"<{r}>" for r in refs)).encode())
    return b"\n".join(lines) + b"\n\n" + body


def _series(prefix: str, title: str, subjects: list[str], *, label: str = "PATCH", sender: str | None = None,
            date: str = "Sat, 23 May 2020 12:57:43 -0600") -> list[bytes]:
    n = len(subjects)
    kw = {"sender": sender} if sender else {}
    out = [mail(f"{prefix}-0@x", f"[{label} 0/{n}] {title}", "cover text\n", date=date, **kw)]
    out += [mail(f"{prefix}-{i}@x", f"[{label} {i}/{n}] {s}", patch_body(s), reply_to=f"{prefix}-0@x",
                 date=date, **kw) for i, s in enumerate(subjects, 1)]
    return out


def test_gateway_added_reference_does_not_beat_in_reply_to(tmp_path: Path) -> None:
    # A gateway appends its own <CGME…> id after the cover in every patch's References.
    msgs = _series("z", "zone-append", ["a: one", "b: two", "c: three"])
    cover = _with_refs(msgs[0], ["CGME0@samsung.example"], "CGME0@samsung.example")
    patches = [_with_refs(m, ["z-0@x", f"CGME{i}@samsung.example"], "z-0@x")
               for i, m in enumerate(msgs[1:], 1)]
    [fam] = _load(tmp_path, cover, *patches)
    [rev] = fam.revisions
    assert rev.cover is not None and len(rev.patches) == 3 and rev.expected == 3


def test_reply_with_trimmed_references_reaches_its_patch_through_in_reply_to(tmp_path: Path) -> None:
    msgs = _series("t", "trim", ["a: one", "b: two"])
    r1 = mail("r1@x", "Re: [PATCH 1/2] a: one", "> q\nfirst\n", reply_to="t-1@x", sender="R <r@x>")
    r2 = _with_refs(mail("r2@x", "Re: [PATCH 1/2] a: one", "> q\nsecond\n", sender="S <s@x>"),
                    ["r1@x"], "r1@x")
    [fam] = _load(tmp_path, *msgs, r1, r2)
    assert [r.message.message_id for r in fam.revisions[0].patch(1).reviews] == ["r1@x", "r2@x"]


def test_empty_subject_interloper_between_cover_and_patches_is_skipped(tmp_path: Path) -> None:
    msgs = _series("s", "SQPOLL related", ["a: one", "b: two"])
    interloper = mail("s-x@x", "", "stray\n")
    patches = [_with_refs(m, ["s-0@x", "s-x@x"], "s-x@x") for m in msgs[1:]]
    [fam] = _load(tmp_path, msgs[0], interloper, *patches)
    [rev] = fam.revisions
    assert rev.cover is not None and rev.cover.message_id == "s-0@x" and len(rev.patches) == 2


def test_empty_subject_cover_still_holds_its_patches(tmp_path: Path) -> None:
    # v7's first send: the real cover lost its Subject, the patches reply to it.
    msgs = _series("e", "lost", ["a: one", "b: two"])
    cover = mail("e-0@x", "", "cover text\n")
    [fam] = _load(tmp_path, cover, *msgs[1:])
    assert len(fam.revisions[0].patches) == 2


def test_cover_re_ided_by_its_mail_server_joins_its_patches(tmp_path: Path) -> None:
    # Outlook: the cover got a new Message-ID; the patches still reply to the one git send-email gave.
    msgs = _series("o", "fast poll", ["a: one", "b: two"], label="PATCH v4 RESEND")
    cover = mail("NEWID@outlook.example", "[PATCH v4 RESEND 0/2] fast poll", "cover\n")
    patches = [_with_refs(m.replace(b"[PATCH v4 RESEND", b"[PATCH"), ["o-0@x"], "o-0@x") for m in msgs[1:]]
    [fam] = _load(tmp_path, cover, *patches)
    [rev] = fam.revisions
    assert rev.version == 4 and len(rev.patches) == 2 and rev.cover is not None
    assert any("new Message-ID" in w for w in rev.warnings)


def test_resend_is_named_a_resend_of_the_same_version(tmp_path: Path) -> None:
    v4 = _series("a", "thing", ["a: one", "b: two"], label="PATCH v4")
    again = _series("b", "thing", ["a: one", "b: two"], label="PATCH v4 RESEND",
                    date="Sun, 24 May 2020 12:57:43 -0600")
    old_style = _series("c", "thing", ["a: one", "b: two"], label="RESEND PATCH v4",
                        date="Mon, 25 May 2020 12:57:43 -0600")
    [fam] = _load(tmp_path, *v4, *again, *old_style)
    assert [r.version for r in fam.revisions] == [4, 4, 4]
    assert [r.label for r in fam.revisions] == ["v4", "v4 RESEND", "RESEND v4"]
    assert all(any("is a resend of" in w for w in r.warnings) for r in fam.revisions[1:])


def test_revisions_in_posting_order_with_an_explanation(tmp_path: Path) -> None:
    subjects = ["a: one", "b: two", "c: three"]
    rfc1 = _series("r1", "feature", subjects, label="RFC PATCH", date="Mon, 1 Jun 2020 10:00:00 +0000")
    rfc3 = _series("r3", "feature", subjects, label="RFC PATCH v3", date="Wed, 3 Jun 2020 10:00:00 +0000")
    v1 = _series("p1", "feature", subjects, label="PATCH", date="Fri, 5 Jun 2020 10:00:00 +0000")
    v2 = _series("p2", "feature", subjects, label="PATCH v2",
                 date="Sat, 6 Jun 2020 04:00:00 -0800")  # 12:00 UTC: after v1 although "earlier" as text
    [fam] = _load(tmp_path, *v2, *v1, *rfc3, *rfc1)
    assert [(r.version, r.rfc) for r in fam.revisions] == [(1, True), (3, True), (1, False), (2, False)]
    assert any("numbering restarted when the RFC tag was dropped" in w for w in fam.revisions[2].warnings)
    assert fam.revision(1).rfc is False  # --revision 1 is the later, non-RFC posting


def test_series_renamed_between_revisions_is_one_family_with_a_note(tmp_path: Path) -> None:
    subjects = ["a: one", "b: two", "c: three", "d: four"]
    v1 = _series("n1", "Add async reads", subjects, date="Mon, 1 Jun 2020 10:00:00 +0000")
    v2 = _series("n2", "Add support for async buffered reads", [*subjects[:3], "e: five"],
                 label="PATCH v2", date="Tue, 2 Jun 2020 10:00:00 +0000")
    other = _series("o1", "Something else", ["a: one", "x: other", "y: other", "z: other"],
                    sender="Else <else@x>", date="Wed, 3 Jun 2020 10:00:00 +0000")
    fams = _load(tmp_path, *v1, *v2, *other)
    assert len(fams) == 2
    fam = next(f for f in fams if len(f.revisions) == 2)
    assert fam.name == "Add support for async buffered reads"
    assert any("title changed" in n and "3 patch subjects carried over" in n for n in fam.notes)
