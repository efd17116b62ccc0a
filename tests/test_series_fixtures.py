"""Shared helpers (no tests) for the series and source tests: the real archive loaded once, tiny mail."""

from __future__ import annotations

import re
from functools import cache

import pytest
from conftest import LORE_MBOX

from harness.series.loader import LoadResult, find_family, load_series
from harness.series.model import Family

FAMILY = "Add support for async buffered reads"


@cache
def _loaded() -> LoadResult:
    return load_series(LORE_MBOX)


def lore_loaded() -> LoadResult:
    """The shared io-uring archive, parsed once per test session (skips when absent)."""
    if not LORE_MBOX.is_file():
        pytest.skip(f"shared input missing: {LORE_MBOX}")
    return _loaded()


def abr_family() -> Family:
    """The async-buffered-reads family from the shared archive."""
    return find_family(lore_loaded().families, FAMILY)


def mail(msgid: str | None, subject: str, body: str, *, reply_to: str | None = None,
         sender: str = "Jens Axboe <axboe@kernel.dk>", date: str = "Sat, 23 May 2020 12:57:43 -0600",
         charset: str = "utf-8") -> bytes:
    """A small RFC 822 message (bytes)."""
    head = [f"From: {sender}", f"Subject: {subject}", f"Date: {date}"]
    if msgid:
        head.append(f"Message-ID: <{msgid}>")
    if reply_to:
        head += [f"In-Reply-To: <{reply_to}>", f"References: <{reply_to}>"]
    head += ["MIME-Version: 1.0", f"Content-Type: text/plain; charset={charset}",
             "Content-Transfer-Encoding: 8bit"]
    return ("\n".join(head) + "\n\n").encode() + body.encode("utf-8")


def mbox(*messages: bytes) -> bytes:
    """mboxrd bytes of ``messages`` (body ``From `` lines escaped)."""
    out = b""
    for m in messages:
        escaped = re.sub(rb"(?m)^(>*From )", rb">\1", m.rstrip(b"\n"))
        out += b"From mboxrd@z Thu Jan  1 00:00:00 1970\n" + escaped + b"\n\n"
    return out


DIFF = """diff --git a/fs/foo.c b/fs/foo.c
index 1111111..2222222 100644
--- a/fs/foo.c
+++ b/fs/foo.c
@@ -1,3 +1,3 @@
 int a;
-int b;
+long b;
 int c;
"""


def patch_body(text: str = "Make b long.") -> str:
    """A git-format-patch style body with a one-hunk diff."""
    return (f"{text}\n\nSigned-off-by: Jens Axboe <axboe@kernel.dk>\n---\n fs/foo.c | 2 +-\n"
            f" 1 file changed, 1 insertion(+), 1 deletion(-)\n\n{DIFF}-- \n2.26.2\n")
