"""Concern catalogue and evaluator: synthetic patch texts per rule, bad catalogues, the real postings."""

from __future__ import annotations

import email
import email.policy
import json
import mailbox
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.core import profile
from harness.core.errors import UserError
from harness.core.paths import project_root
from harness.series import find_family, load_families
from harness.series.concerns import (
    STATUSES,
    Concern,
    ConcernStatus,
    added_lines,
    evaluate,
    evaluate_diff,
    evaluate_family,
    load_catalogue,
    summarize,
)

LORE_MBOX = Path(__file__).resolve().parent.parent.parent / "shared" / "lore" / \
    "io-uring-2020-05-18--2020-07-15.mbox"
REQUIRED_IDS = {
    "iocb-private-reuse", "hipri-waitqueue-guard", "goto-retry-state-machine",
    "lost-cqe-retry-incremental", "kbuf-leak-on-cancel", "wait-page-init-public-header",
    "wake-page-match-bit-test", "rahead-implies-nowait", "should-retry-comment", "triple-pglocked-test",
    "lock-page-async-failure-path", "leftover-test-bit-buf-func", "xfs-wrong-data",
}


# ------------------------------------------------------------------------------------------------ fakes

@dataclass
class FakePatch:
    number: int
    subject: str
    diff: str


@dataclass
class FakeRevision:
    version: int
    patches: list[FakePatch] = field(default_factory=list)


@dataclass
class FakeFamily:
    revisions: list[FakeRevision]


def undent(code: str) -> list[str]:
    """Lines of ``code`` without the common leading *spaces* (tabs are kernel code, they stay)."""
    lines = code.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    cut = min(len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip())
    return [ln[cut:] for ln in lines]


def plus(code: str) -> str:
    """Prefix every line of ``code`` with '+' (an added block)."""
    return "\n".join("+" + line for line in undent(code))


def ctx(code: str) -> str:
    """Prefix every line of ``code`` with ' ' (context)."""
    return "\n".join(" " + line for line in undent(code))


def hunk(path: str, context: str, *blocks: str, start: int = 100) -> str:
    """One-file unified diff whose hunk counts match its body."""
    body = "\n".join(blocks).splitlines()
    old = sum(1 for line in body if line[:1] in " -")
    new = sum(1 for line in body if line[:1] in " +")
    return (f"diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n"
            f"@@ -{start},{old} +{start},{new} @@ {context}\n" + "\n".join(body) + "\n")


def revision(*diffs: str, version: int = 9) -> FakeRevision:
    return FakeRevision(version, [FakePatch(i + 1, f"patch {i + 1}", d) for i, d in enumerate(diffs)])


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Concern]:
    return {c.id: c for c in load_catalogue()}


NOWAIT_EXIT = plus("""
    \t\tif (iocb->ki_flags & IOCB_NOWAIT) {
    \t\t\tunlock_page(page);
    \t\t\tput_page(page);
    \t\t\tgoto would_block;
    \t\t}
    """)


def status_of(catalogue: dict[str, Concern], cid: str, *diffs: str) -> ConcernStatus:
    if len(diffs) == 1 and diffs[0].startswith("SUBJECT:"):
        # the same hunk, judged by which patch (subject) carries it
        diff = hunk("mm/filemap.c", "static ssize_t generic_file_buffered_read(struct kiocb *iocb,",
                    ctx("readpage:"), NOWAIT_EXIT)
        rev = FakeRevision(9, [FakePatch(1, "mm: " + diffs[0].removeprefix("SUBJECT:"), diff)])
        return evaluate(catalogue[cid], rev)
    return evaluate(catalogue[cid], revision(*diffs))


# ------------------------------------------------------------------------------------------- diff lines

def test_added_lines_track_file_function_and_leading_comment() -> None:
    diff = hunk("fs/io_uring.c", "static int io_read_prep(struct io_kiocb *req)",
                ctx("""
                    \treturn 0;
                    }
                    """),
                "+",
                plus("""
                    /*
                     * Explains the retry.
                     */
                    static bool io_rw_should_retry(struct io_kiocb *req)
                    {
                    \treturn false;
                    }
                    """),
                ctx("static int io_read(struct io_kiocb *req, bool force_nonblock)"),
                plus("retry:"))
    diff += "-- \n2.26.2\n"  # mail signature after the hunk: must not count as a removed line
    lines = added_lines(diff, patch=12, subject="io_uring: x")
    by_text = {ln.content: ln for ln in lines}
    assert by_text[""].function is None  # the blank line after io_read_prep's closing brace
    assert by_text["/*"].function == "io_rw_should_retry"
    assert by_text[" * Explains the retry."].function == "io_rw_should_retry"
    assert by_text["\treturn false;"].function == "io_rw_should_retry"
    assert by_text["retry:"].function == "io_read"
    assert all(ln.file == "fs/io_uring.c" and ln.patch == 12 for ln in lines)
    assert len(lines) == 9


def test_added_lines_use_hunk_header_function_and_skip_prototypes() -> None:
    diff = hunk("mm/filemap.c", "static ssize_t generic_file_buffered_read(struct kiocb *iocb,",
                ctx("\t\tif (!PageUptodate(page)) {"),
                plus("\t\t\terror = lock_page_async(page, iocb->ki_waitq);"))
    diff += hunk("include/linux/pagemap.h", "struct wait_page_key {",
                 plus("extern int __lock_page_async(struct page *page, struct wait_page_queue *wait);"),
                 start=500)
    lines = added_lines(diff)
    assert lines[0].function == "generic_file_buffered_read" and lines[0].file == "mm/filemap.c"
    assert lines[1].function is None and lines[1].file == "include/linux/pagemap.h"


# ------------------------------------------------------------------------------------ per-concern rules

IO_READ = "static int io_read(struct io_kiocb *req, bool force_nonblock)"
BUFFERED_READ = "static ssize_t generic_file_buffered_read(struct kiocb *iocb,"
UNRELATED = hunk("fs/ext4/file.c", "const struct file_operations ext4_file_operations = {",
                 plus("\t.mmap_supported_flags = MAP_SYNC,"))

CASES: list[tuple[str, str, str, str]] = [
    # (concern, expected status, evidence line or "", diff)
    ("iocb-private-reuse", "present", "+\t\t\terror = lock_page_async(page, iocb->private);",
     hunk("mm/filemap.c", BUFFERED_READ, plus("\t\t\terror = lock_page_async(page, iocb->private);"))),
    ("iocb-private-reuse", "addressed", "+\t\tstruct wait_page_queue\t*ki_waitq;",
     hunk("include/linux/fs.h", "struct kiocb {",
          plus("\tunion {\n\t\tstruct wait_page_queue\t*ki_waitq;\n\t};"))),
    ("iocb-private-reuse", "not-applicable", "", UNRELATED),
    ("hipri-waitqueue-guard", "present",
     "+static inline int kiocb_wait_page_queue_init(struct kiocb *kiocb,",
     hunk("include/linux/pagemap.h", "static inline int wake_page_match(struct wait_page_queue *wp,",
          ctx("}"), plus("""
              static inline int kiocb_wait_page_queue_init(struct kiocb *kiocb,
              \t\t\t\t\t     struct wait_page_queue *wait)
              {
              \tkiocb->ki_flags |= IOCB_WAITQ;
              \treturn 0;
              }
              """))),
    ("hipri-waitqueue-guard", "addressed", "+\tif (kiocb->ki_flags & IOCB_HIPRI)",
     hunk("include/linux/pagemap.h", "static inline int wake_page_match(struct wait_page_queue *wp,",
          ctx("}"), plus("""
              static inline int kiocb_wait_page_queue_init(struct kiocb *kiocb,
              \t\t\t\t\t     struct wait_page_queue *wait)
              {
              \tif (kiocb->ki_flags & IOCB_HIPRI)
              \t\treturn -EINVAL;
              \treturn 0;
              }
              """))),
    ("hipri-waitqueue-guard", "not-applicable", "", UNRELATED),
    ("goto-retry-state-machine", "present", "+retry:",
     hunk("fs/io_uring.c", IO_READ, plus("retry:"),
          ctx("\t\tret2 = call_read_iter(req->file, kiocb, &iter);"),
          plus("\t\t\tif (io_rw_should_retry(req))\n\t\t\t\tgoto retry;"))),
    ("goto-retry-state-machine", "addressed", "+\t\tret2 = io_iter_do_read(req, &iter);",
     hunk("fs/io_uring.c", IO_READ, plus("\t\tret2 = io_iter_do_read(req, &iter);"))),
    ("goto-retry-state-machine", "not-applicable", "",
     hunk("fs/io_uring.c", "static int io_write(struct io_kiocb *req, bool force_nonblock)",
          plus("retry:"))),
    ("lost-cqe-retry-incremental", "present", "+\t\t\t\tret2 = __io_read(req, &iter);",
     hunk("fs/io_uring.c", IO_READ, plus("""
              \t\t\tif (io_rw_should_retry(req)) {
              \t\t\t\tret2 = __io_read(req, &iter);
              \t\t\t\tif (ret2 != -EAGAIN)
              \t\t\t\t\tgoto out_free;
              \t\t\t}
              """))),
    ("lost-cqe-retry-incremental", "addressed", "+\t\t\t\tif (ret2 != -EAGAIN) {",
     hunk("fs/io_uring.c", IO_READ, plus("""
              \t\t\t\tret2 = io_iter_do_read(req, &iter);
              \t\t\t\tif (ret2 != -EAGAIN) {
              \t\t\t\t\tkiocb_done(kiocb, ret2);
              \t\t\t\t\tgoto out_free;
              \t\t\t\t}
              """))),
    ("lost-cqe-retry-incremental", "not-applicable", "",
     hunk("fs/io_uring.c", IO_READ, plus("\t\t\tif (io_rw_should_retry(req))\n\t\t\t\tgoto retry;"))),
    ("kbuf-leak-on-cancel", "present", "+\tio_cqring_fill_event(req, -ECANCELED);",
     hunk("fs/io_uring.c", "static int io_read_prep(struct io_kiocb *req)", ctx("}"), plus("""
              static void io_async_buf_cancel(struct callback_head *cb)
              {
              \tio_cqring_fill_event(req, -ECANCELED);
              }
              """))),
    ("kbuf-leak-on-cancel", "addressed", "+\tio_put_kbuf(req);",
     hunk("fs/io_uring.c", "static int io_read_prep(struct io_kiocb *req)", ctx("}"), plus("""
              static void io_async_buf_cancel(struct callback_head *cb)
              {
              \tio_put_kbuf(req);
              \tio_cqring_fill_event(req, -ECANCELED);
              }
              """))),
    ("kbuf-leak-on-cancel", "not-applicable", "",
     hunk("fs/io_uring.c", "static void io_complete_rw(struct kiocb *kiocb, long res)",
          plus("\tio_cqring_fill_event(req, -ECANCELED);"))),
    ("wait-page-init-public-header", "present",
     "+static inline int kiocb_wait_page_queue_init(struct kiocb *kiocb,",
     hunk("include/linux/pagemap.h", "struct wait_page_queue {", ctx("};"),
          plus("static inline int kiocb_wait_page_queue_init(struct kiocb *kiocb,\n\t\tvoid *data)\n{\n}"))),
    ("wait-page-init-public-header", "addressed",
     "+static int kiocb_wait_page_queue_init(struct kiocb *kiocb,",
     hunk("fs/io_uring.c", "static int io_read_prep(struct io_kiocb *req)", ctx("}"),
          plus("static int kiocb_wait_page_queue_init(struct kiocb *kiocb,\n\t\tvoid *data)\n{\n}"))),
    ("wait-page-init-public-header", "not-applicable", "", UNRELATED),
    ("wake-page-match-bit-test", "present", "+\tif (test_bit(key->bit_nr, &key->page->flags))",
     hunk("include/linux/pagemap.h", "struct wait_page_queue {", ctx("};"), plus("""
              static inline int wake_page_match(struct wait_page_queue *wait_page,
              \t\t\t\t  struct wait_page_key *key)
              {
              \tif (test_bit(key->bit_nr, &key->page->flags))
              \t\treturn -1;
              \treturn 1;
              }
              """))),
    ("wake-page-match-bit-test", "addressed",
     "+static inline int wake_page_match(struct wait_page_queue *wait_page,",
     hunk("include/linux/pagemap.h", "struct wait_page_queue {", ctx("};"), plus("""
              static inline int wake_page_match(struct wait_page_queue *wait_page,
              \t\t\t\t  struct wait_page_key *key)
              {
              \treturn wait_page->page == key->page;
              }
              """))),
    ("wake-page-match-bit-test", "not-applicable", "", UNRELATED),
    ("rahead-implies-nowait", "present", "+\t((1ULL << __REQ_RAHEAD) | (1ULL << __REQ_NOWAIT))",
     hunk("include/linux/blk_types.h", "enum req_flag_bits {",
          "-#define REQ_RAHEAD\t\t(1ULL << __REQ_RAHEAD)",
          plus("#define REQ_RAHEAD\t\t\\\n\t((1ULL << __REQ_RAHEAD) | (1ULL << __REQ_NOWAIT))"))),
    ("rahead-implies-nowait", "addressed", "+\tif (plug && plug->nowait)",
     hunk("block/blk-core.c", "generic_make_request_checks(struct bio *bio)",
          plus("\tif (plug && plug->nowait)\n\t\tbio->bi_opf |= REQ_NOWAIT;"))),
    ("rahead-implies-nowait", "addressed", "+#define REQ_RAHEAD\t\t(1ULL << __REQ_RAHEAD)",
     hunk("include/linux/blk_types.h", "enum req_flag_bits {",
          "-#define REQ_RAHEAD\t\t\\\n-\t((1ULL << __REQ_RAHEAD) | (1ULL << __REQ_NOWAIT))",
          plus("#define REQ_RAHEAD\t\t(1ULL << __REQ_RAHEAD)"))),
    # patch 01 dropped and nothing added in its place: the concern is gone with it
    ("rahead-implies-nowait", "addressed", "", UNRELATED),
    ("should-retry-comment", "present", "+static bool io_rw_should_retry(struct io_kiocb *req)",
     hunk("fs/io_uring.c", "static int io_read_prep(struct io_kiocb *req)", ctx("}"), plus("""
              static bool io_rw_should_retry(struct io_kiocb *req)
              {
              \t/* already tried, or we're doing O_DIRECT */
              \treturn false;
              }
              """))),
    ("should-retry-comment", "addressed",
     "+ * a private wait_page_queue entry is armed; the read then either finds the page uptodate",
     hunk("fs/io_uring.c", "static int io_read_prep(struct io_kiocb *req)", ctx("}"), plus("""
              /*
               * For a buffered read that would block on a locked page,
               * a private wait_page_queue entry is armed; the read then either finds the page uptodate
               * or the unlock callback queues task_work that retries it.
               */
              static bool io_rw_should_retry(struct io_kiocb *req)
              {
              \treturn false;
              }
              """))),
    ("should-retry-comment", "not-applicable", "", UNRELATED),
    ("triple-pglocked-test", "present", "+\t\tret = !trylock_page(page);",
     hunk("mm/filemap.c", "int wait_on_page_bit_killable(struct page *page, int bit_nr)", ctx("}"), plus("""
              static int __wait_on_page_locked_async(struct page *page,
              \t\t\t\t       struct wait_page_queue *wait, bool set)
              {
              \tspin_lock_irq(&q->lock);
              \tif (set)
              \t\tret = !trylock_page(page);
              \tif (ret) {
              \t\t__add_wait_queue_entry_tail(q, &wait->wait);
              \t\tif (set)
              \t\t\tret = !trylock_page(page);
              \t}
              }
              """))),
    ("triple-pglocked-test", "addressed", "+\t__add_wait_queue_entry_tail(q, &wait->wait);",
     hunk("mm/filemap.c", "int wait_on_page_bit_killable(struct page *page, int bit_nr)", ctx("}"), plus("""
              static int __wait_on_page_locked_async(struct page *page,
              \t\t\t\t       struct wait_page_queue *wait, bool set)
              {
              \tspin_lock_irq(&q->lock);
              \t__add_wait_queue_entry_tail(q, &wait->wait);
              \tif (set)
              \t\tret = !trylock_page(page);
              }
              """))),
    # RFC shape: tests only before queueing, no re-check: another defect, not this one
    ("triple-pglocked-test", "not-applicable", "",
     hunk("mm/filemap.c", "int wait_on_page_bit_killable(struct page *page, int bit_nr)", ctx("}"), plus("""
              static int __wait_on_page_locked_async(struct page *page,
              \t\t\t\t       struct wait_page_async *wait)
              {
              \tspin_lock_irq(&q->lock);
              \tif (PageLocked(page)) {
              \t\t__add_wait_queue_entry_tail(q, &wait->wait);
              \t}
              }
              """))),
    ("lock-page-async-failure-path", "present", "+\t\t\terror = lock_page_async(page, iocb->ki_waitq);",
     hunk("mm/filemap.c", BUFFERED_READ, plus("\t\t\terror = lock_page_async(page, iocb->ki_waitq);"))),
    ("lock-page-async-failure-path", "addressed",
     "+\t\t\t * the unlock callback only queues a retry, which takes the page lock again",
     hunk("mm/filemap.c", BUFFERED_READ, plus("""
              \t\t\t/*
              \t\t\t * If the page is locked by someone else,
              \t\t\t * the unlock callback only queues a retry, which takes the page lock again
              \t\t\t */
              \t\t\terror = lock_page_async(page, iocb->ki_waitq);
              """))),
    ("lock-page-async-failure-path", "not-applicable", "", UNRELATED),
    ("leftover-test-bit-buf-func", "present", "+\tif (test_bit(PG_locked, &key->page->flags))",
     hunk("fs/io_uring.c", "static void io_async_buf_retry(struct callback_head *cb)", ctx("}"), plus("""
              static int io_async_buf_func(struct wait_queue_entry *wait, unsigned mode,
              \t\t\t     int sync, void *arg)
              {
              \tif (test_bit(PG_locked, &key->page->flags))
              \t\treturn -1;
              \treturn 1;
              }
              """))),
    ("leftover-test-bit-buf-func", "addressed",
     "+static int io_async_buf_func(struct wait_queue_entry *wait, unsigned mode,",
     hunk("fs/io_uring.c", "static void io_async_buf_retry(struct callback_head *cb)", ctx("}"), plus("""
              static int io_async_buf_func(struct wait_queue_entry *wait, unsigned mode,
              \t\t\t     int sync, void *arg)
              {
              \tif (wpq->page != key->page)
              \t\treturn 0;
              \treturn 1;
              }
              """))),
    ("leftover-test-bit-buf-func", "not-applicable", "", UNRELATED),
    ("xfs-wrong-data", "present", "+\t\t\tif (io_rw_should_retry(req)) {",
     hunk("fs/io_uring.c", IO_READ, plus("""
              \t\t\tif (io_rw_should_retry(req)) {
              \t\t\t\tret2 = io_iter_do_read(req, &iter);
              \t\t\t\tif (ret2 != -EAGAIN) {
              \t\t\t\t\tkiocb_done(kiocb, ret2);
              \t\t\t\t\tgoto out_free;
              \t\t\t\t}
              \t\t\t}
              """))),
    ("xfs-wrong-data", "addressed", "+\t\t\t\tif (ret2 == -EIOCBQUEUED) {",
     hunk("fs/io_uring.c", IO_READ, plus("""
              \t\t\tif (io_rw_should_retry(req)) {
              \t\t\t\tret2 = io_iter_do_read(req, &iter);
              \t\t\t\tif (ret2 == -EIOCBQUEUED) {
              \t\t\t\t\tgoto out;
              \t\t\t\t}
              \t\t\t}
              """))),
    ("xfs-wrong-data", "not-applicable", "", hunk("fs/io_uring.c", IO_READ, plus("\t\tret = 0;"))),
    ("nowait-readahead-blocks", "present", "-\t\t\tif (iocb->ki_flags & IOCB_NOWAIT)",
     hunk("mm/filemap.c", BUFFERED_READ, ctx("\t\tif (!page) {"),
          "-\t\t\tif (iocb->ki_flags & IOCB_NOWAIT)\n-\t\t\t\tgoto would_block;",
          ctx("\t\t\tpage_cache_sync_readahead(mapping,"))),
    ("nowait-readahead-blocks", "addressed", "+\t\t\t\tflags = memalloc_noio_save();",
     hunk("mm/filemap.c", BUFFERED_READ, ctx("\t\tif (!page) {"),
          "-\t\t\tif (iocb->ki_flags & IOCB_NOWAIT)\n-\t\t\t\tgoto would_block;",
          plus("\t\t\tif (nowait)\n\t\t\t\tflags = memalloc_noio_save();"),
          ctx("\t\t\tpage_cache_sync_readahead(mapping,"))),
    ("nowait-readahead-blocks", "not-applicable", "", UNRELATED),
    ("iovec-free-early-error", "present", "-out_free:",
     hunk("fs/io_uring.c", IO_READ, "-out_free:\n-\tkfree(iovec);", plus("out:"), ctx("\treturn ret;"))),
    ("iovec-free-early-error", "addressed", "+\tkfree(iovec);",
     hunk("fs/io_uring.c", IO_READ, "-out_free:\n-\tkfree(iovec);", plus("out:\n\tkfree(iovec);"),
          ctx("\treturn ret;"))),
    ("iovec-free-early-error", "not-applicable", "", hunk("fs/io_uring.c", IO_READ, plus("retry:"))),
    ("wait-page-key-cachefiles", "present", "+struct wait_page_key {",
     hunk("include/linux/pagemap.h", "static inline pgoff_t linear_page_index(struct vm_area_struct *vma,",
          plus("struct wait_page_key {\n\tstruct page *page;\n};"))),
    ("wait-page-key-cachefiles", "addressed", "+\tstruct wait_page_key key;",
     hunk("include/linux/pagemap.h", "static inline pgoff_t linear_page_index(struct vm_area_struct *vma,",
          plus("struct wait_page_key {\n\tstruct page *page;\n};"))
     + hunk("fs/cachefiles/rdwr.c", "static int cachefiles_read_waiter(wait_queue_entry_t *wait,",
            plus("\tstruct wait_page_key key;"))),
    ("wait-page-key-cachefiles", "not-applicable", "", UNRELATED),
    ("nowait-hunk-misplaced", "present", "+\t\tif (iocb->ki_flags & IOCB_NOWAIT) {",
     "SUBJECT:async page locking"),
    ("nowait-hunk-misplaced", "addressed", "+\t\tif (iocb->ki_flags & IOCB_NOWAIT) {",
     "SUBJECT:read-ahead with IOCB_NOWAIT set"),
    ("nowait-hunk-misplaced", "not-applicable", "", UNRELATED),
    ("kiocb-union-magic-flag", "present", "+\tunion {",
     hunk("include/linux/fs.h", "struct kiocb {", "-\tunsigned int\t\tki_cookie; /* for ->iopoll */",
          plus("\tunion {\n\t\tunsigned int\t\tki_cookie; /* for ->iopoll */\n"
               "\t\tstruct wait_page_queue\t*ki_waitq; /* for async buffered IO */\n\t};"))),
    ("kiocb-union-magic-flag", "not-applicable", "",
     hunk("include/linux/fs.h", "struct kiocb {", plus("\tstruct wait_page_queue\t*ki_waitq;"))),
    # ---- issue 15's additions
    ("pagemap-include-missing", "present", "+\tstruct wait_page_queue\t\twpq;",
     hunk("fs/io_uring.c", "struct io_async_rw {", plus("\tstruct wait_page_queue\t\twpq;"))),
    ("pagemap-include-missing", "addressed", "+#include <linux/pagemap.h>",
     hunk("fs/io_uring.c", "#include <linux/mman.h>", plus("#include <linux/pagemap.h>"),
          ctx("struct io_async_rw {"), plus("\tstruct wait_page_queue\t\twpq;"))),
    ("pagemap-include-missing", "not-applicable", "", UNRELATED),
    ("readahead-disabled-punts", "present", "+\t\t\tif (iocb->ki_flags & IOCB_WAITQ) {",
     hunk("mm/filemap.c", BUFFERED_READ, plus("\t\t\tif (iocb->ki_flags & IOCB_WAITQ) {"))),
    ("readahead-disabled-punts", "addressed", "+\t\tif (!ra->ra_pages) {",
     hunk("mm/filemap.c", BUFFERED_READ, plus("\t\t\tif (iocb->ki_flags & IOCB_WAITQ) {\n"
                                              "\t\tif (!ra->ra_pages) {"))),
    ("readahead-disabled-punts", "not-applicable", "", UNRELATED),
    ("noio-readahead-can-sleep", "present", "+\tflags = memalloc_noio_save();",
     hunk("mm/readahead.c", "void page_cache_readahead_unbounded(", plus("\tflags = memalloc_noio_save();"))),
    ("noio-readahead-can-sleep", "addressed", "+\tflags = memalloc_nowait_save();",
     hunk("mm/readahead.c", "void page_cache_readahead_unbounded(",
          plus("\tflags = memalloc_nowait_save();"))),
    ("noio-readahead-can-sleep", "not-applicable", "", UNRELATED),
    ("resubmit-uninitialised-ret", "present", "+\tssize_t ret;",
     hunk("fs/io_uring.c", "static void io_complete_rw_common(", ctx("}"),
          plus("static bool io_resubmit_prep(struct io_kiocb *req, int error)\n{\n\tssize_t ret;\n}"))),
    ("resubmit-uninitialised-ret", "addressed", "+\tssize_t ret = -ECANCELED;",
     hunk("fs/io_uring.c", "static void io_complete_rw_common(", ctx("}"),
          plus("static bool io_resubmit_prep(struct io_kiocb *req, int error)\n{\n"
               "\tssize_t ret = -ECANCELED;\n}"))),
    ("resubmit-uninitialised-ret", "not-applicable", "", UNRELATED),
]


@pytest.mark.parametrize(("cid", "expected", "evidence", "diff"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_rule_on_synthetic_patch(catalogue: dict[str, Concern], cid: str, expected: str, evidence: str,
                                 diff: str) -> None:
    status = status_of(catalogue, cid, diff)
    assert status.status == expected, status.evidence
    assert status.concern_id == cid and status.version == 9
    if evidence:
        assert status.file is not None and status.basis in ("match", "scope")
        assert status.evidence == f"{status.file}: {evidence}"
        if not diff.startswith("SUBJECT:"):
            assert evidence in diff.splitlines()
        assert status.patch == 1


def test_every_concern_has_a_firing_and_a_quiet_case() -> None:
    seen: dict[str, set[str]] = {}
    for cid, expected, _evidence, _diff in CASES:
        seen.setdefault(cid, set()).add(expected)
    assert set(seen) | SUBJECT_SCOPED == {c.id for c in load_catalogue()}
    for cid, statuses in seen.items():
        assert "present" in statuses and len(statuses) >= 2, cid


# Judged by which patch carries a line (the CASES fakes are all titled "patch N"): tested below.
SUBJECT_SCOPED = {"wait-on-page-locked-async-late", "task-work-undiscoverable-cancel"}


@pytest.mark.parametrize(("cid", "subject", "line"), [
    ("wait-on-page-locked-async-late", "mm: support async buffered reads in generic_file_buffered_read()",
     "static int wait_on_page_locked_async(struct page *page,"),
    ("task-work-undiscoverable-cancel", "io_uring: re-issue block requests that failed because of resources",
     "\tret = task_work_add(tsk, &req->task_work, true);"),
])
def test_subject_scoped_concerns(catalogue: dict[str, Concern], cid: str, subject: str, line: str) -> None:
    diff = hunk("mm/filemap.c", "int wait_on_page_bit_killable(struct page *page, int bit_nr)", plus(line))
    fired = evaluate(catalogue[cid], FakeRevision(9, [FakePatch(1, subject, diff)]))
    assert fired.status == "present" and fired.evidence.endswith("+" + line)
    quiet = evaluate(catalogue[cid], FakeRevision(9, [FakePatch(1, "mm: add support for async page locking",
                                                                diff)]))
    assert quiet.status == "not-applicable"


def test_leftover_bit_test_follows_wake_page_match(catalogue: dict[str, Concern]) -> None:
    """A call to wake_page_match() counts as a page-bit test only while wake_page_match() does one."""
    callback = hunk("fs/io_uring.c", "static void io_async_buf_retry(struct callback_head *cb)", ctx("}"),
                    plus("""
                        static int io_async_buf_func(struct wait_queue_entry *wait, unsigned mode,
                        \t\t\t     int sync, void *arg)
                        {
                        \tret = wake_page_match(wpq, key);
                        \treturn ret;
                        }
                        """))

    def helper(body: str) -> str:
        return hunk("include/linux/pagemap.h", "struct wait_page_queue {", ctx("};"), plus(
            "static inline int wake_page_match(struct wait_page_queue *wait_page,\n"
            "\t\t\t\t  struct wait_page_key *key)\n{\n" + body + "\n}"))

    with_bit = helper("\tif (test_bit(key->bit_nr, &key->page->flags))\n\t\treturn -1;\n\treturn 1;")
    without_bit = helper("\treturn 1;")
    present = status_of(catalogue, "leftover-test-bit-buf-func", with_bit, callback)
    assert present.status == "present"
    assert present.evidence == "fs/io_uring.c: +\tret = wake_page_match(wpq, key);"
    assert present.patch == 2
    assert status_of(catalogue, "leftover-test-bit-buf-func", without_bit, callback).status == "addressed"


def test_precedence_addressed_wins_over_leftover_mentions(catalogue: dict[str, Concern]) -> None:
    both = hunk("include/linux/fs.h", "struct kiocb {",
                plus("/* iocb->private used to hold this */\n\tstruct wait_page_queue\t*ki_waitq;"))
    assert status_of(catalogue, "iocb-private-reuse", both).status == "addressed"


def test_evaluate_family_covers_every_revision(catalogue: dict[str, Concern]) -> None:
    old = revision(hunk("fs/io_uring.c", IO_READ, plus("retry:")), version=3)
    new = revision(hunk("fs/io_uring.c", IO_READ, plus("\t\tret2 = io_iter_do_read(req, &iter);")), version=5)
    cat = list(catalogue.values())
    statuses = evaluate_family(cat, FakeFamily([old, new]))
    assert len(statuses) == 2 * len(cat)
    assert {s.status for s in statuses} <= set(STATUSES)
    goto = {s.version: s.status for s in statuses if s.concern_id == "goto-retry-state-machine"}
    assert goto == {3: "present", 5: "addressed"}
    summary = summarize(cat, statuses)
    assert [s["id"] for s in summary] == [c.id for c in cat]
    assert set(summary[0]["statuses"]) == {"3", "5"}
    leftover = next(s for s in summary if s["id"] == "leftover-test-bit-buf-func")
    assert leftover["rule"]["present"][1]["requires"] == "wake-page-match-bit-test"
    assert json.loads(json.dumps(summary)) == summary


# ------------------------------------------------------------------------------------- catalogue loading

def test_project_catalogue_is_complete() -> None:
    cat = load_catalogue()
    assert {c.id for c in cat} >= REQUIRED_IDS
    for c in cat:
        assert c.source in ("review", "merge", "report")
        assert c.quote and c.title and c.raised_by
        assert "@" in c.message_id and not c.message_id.startswith("<")
        assert all(w.startswith(("fio-", "probe-", "liburing-")) for w in c.workloads), c.id
        assert all(m.startswith("mutant-") for m in c.mutants), c.id
    merge = {c.id for c in cat if c.source == "merge"}
    assert merge == {"wait-page-init-public-header", "wake-page-match-bit-test", "should-retry-comment",
                     "lock-page-async-failure-path", "leftover-test-bit-buf-func", "kiocb-union-magic-flag"}


GOOD_ENTRY = """
[[concern]]
id = "x-one"
title = "t"
raised_by = "r"
message_id = "<a@b>"
raised_on = 3
source = "review"
quote = "q"
[concern.rule]
present = ['foo']
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "concerns.toml"
    path.write_text(text)
    return path


def test_minimal_catalogue_loads(tmp_path: Path) -> None:
    (concern,) = load_catalogue(write(tmp_path, GOOD_ENTRY))
    assert concern.id == "x-one" and concern.rule.untouched == "not-applicable"
    assert concern.workloads == () and concern.mutants == ()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda t: t.replace('raised_on = 3', 'raised_on = "three"'), "concern 'x-one': 'raised_on'"),
    (lambda t: t.replace('source = "review"', 'source = "hallway"'), "concern 'x-one': 'source'"),
    (lambda t: t.replace("present = ['foo']", "present = ['(unclosed']"), "bad regex"),
    (lambda t: t.replace("present = ['foo']", "present = []"), "at least one 'present'"),
    (lambda t: t.replace('quote = "q"\n', ''), "missing 'quote'"),
    (lambda t: t.replace('quote = "q"', 'quote = "q"\nqoute = "typo"'), "unknown key(s) qoute"),
    (lambda t: t.replace("[concern.rule]", '[concern.rule]\notherwise = "maybe"'), "'otherwise'"),
    (lambda t: t.replace('message_id = "<a@b>"', 'message_id = "a-at-b"'), "'message_id'"),
    (lambda t: t.replace('message_id = "<a@b>"', 'message_id = "<a@b> <c@d>"'), "'message_id'"),
    (lambda t: t.replace('quote = "q"', 'quote = "q"\nrelated = ["nope"]'), "'related'"),
    (lambda t: t.replace("present = ['foo']", "present = [{ match = 'foo', side = 'both' }]"), "'side'"),
    (lambda t: t.replace('id = "x-one"', 'id = "X One"'), "concern #1: 'id'"),
    (lambda t: t + t, "concern 'x-one': duplicate id"),
    (lambda t: t.replace("present = ['foo']", "present = [{ match = 'foo', requires = 'nope' }]"),
     "unknown concern 'nope'"),
    (lambda t: t.replace("present = ['foo']", "present = [{ match = 'foo', requires = 'x-one' }]"),
     "'requires' cycle"),
    (lambda t: t.replace("[[concern]]", "[[concern]\n"), "invalid TOML"),
    (lambda t: "", "no [[concern]] entries"),
])
def test_bad_catalogue_names_file_and_entry(tmp_path: Path, mutate: object, message: str) -> None:
    assert callable(mutate)
    path = write(tmp_path, mutate(GOOD_ENTRY))
    with pytest.raises(UserError) as exc:
        load_catalogue(path)
    text = str(exc.value)
    assert str(path) in text and message in text and "\n" not in text


def test_missing_catalogue_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^concern catalogue .*nope\.toml: not found$"):
        load_catalogue(tmp_path / "nope.toml")


def test_mutants_match_variants_file() -> None:
    """Mutant names agree with the default profile's variants.toml."""
    variants_path = profile.load(profile.default_name()).variants_file()
    variants = tomllib.loads(variants_path.read_text())["variant"]
    mutants = {v["name"]: v for v in variants if v.get("kind") == "mutant"}
    cat = {c.id: c for c in load_catalogue()}
    for concern in cat.values():
        for name in concern.mutants:
            assert name in mutants, f"{concern.id}: mutant {name} is not in variants.toml"
    for name, variant in mutants.items():
        assert variant.get("concern") in cat, f"{name}: concern {variant.get('concern')!r} not catalogued"
        concern = cat[variant["concern"]]
        assert name in concern.mutants, f"{name} not listed by {concern.id}"
        # `kwb concern repro` runs the concern's workloads: they must include whatever flags its mutants
        # ("health" is the console/dmesg scan every job gets, not a workload)
        missing = set(variant.get("flagged_by", [])) - set(concern.workloads) - {"health"}
        assert not missing, f"{concern.id}: workloads miss {sorted(missing)} that flag {name}"


# Named by concerns but written by a later issue (issue 6: both lock_page_async() branches on purpose).
PLANNED_WORKLOADS = {"probe-lock-page-async"}


def test_workloads_agree_with_workload_catalogue() -> None:
    """Every workload a concern names exists (or is planned); every concern a workload names lists it."""
    catalogue_dir = project_root() / "harness" / "workloads" / "catalogue"
    specs = [tomllib.loads(p.read_text()) for p in sorted(catalogue_dir.glob("*.toml"))]
    if not specs:
        pytest.skip(f"no workload catalogue in {catalogue_dir} yet")
    known = {spec["name"] for spec in specs}
    cat = {c.id: c for c in load_catalogue()}
    for concern in cat.values():
        unknown = set(concern.workloads) - known - PLANNED_WORKLOADS
        assert not unknown, f"{concern.id}: unknown workloads {sorted(unknown)}"
    for spec in specs:
        for cid in spec.get("concerns", []):
            assert cid in cat, f"workload {spec['name']}: unknown concern {cid!r}"
            assert spec["name"] in cat[cid].workloads, f"{cid} does not list workload {spec['name']}"


# ------------------------------------------------------------------------------------ the real postings

# Verified by reading each posting's patches (see concerns.toml notes): version -> status.
EXPECTED: dict[str, dict[int, str]] = {
    "iocb-private-reuse": {1: "present", 2: "present", 3: "present", 4: "addressed", 5: "addressed",
                           7: "addressed"},
    "hipri-waitqueue-guard": {1: "present", 2: "present", 3: "present", 4: "addressed", 5: "addressed",
                              7: "addressed"},
    "goto-retry-state-machine": {1: "present", 2: "present", 3: "present", 4: "present", 5: "addressed",
                                 7: "addressed"},
    "lost-cqe-retry-incremental": {1: "not-applicable", 2: "not-applicable", 3: "not-applicable",
                                   4: "not-applicable", 5: "addressed", 7: "addressed"},
    "kbuf-leak-on-cancel": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "wait-page-init-public-header": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "wake-page-match-bit-test": {1: "not-applicable", 2: "not-applicable", 3: "present", 4: "present",
                                 5: "present", 7: "present"},
    "rahead-implies-nowait": {1: "present", 2: "present", 3: "present", 4: "present", 5: "present",
                              7: "addressed"},
    "should-retry-comment": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    # RFC 03/11 tests PG_locked three times across wait_on_page_locked_async() and its inner helper
    "triple-pglocked-test": {1: "present", 2: "present", 3: "present", 4: "present", 5: "present",
                             7: "addressed"},
    "lock-page-async-failure-path": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "leftover-test-bit-buf-func": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "xfs-wrong-data": {1: "present", 2: "present", 3: "present", 4: "present", 5: "present",
                       7: "addressed"},
    "nowait-readahead-blocks": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "iovec-free-early-error": {1: "not-applicable", 2: "not-applicable", 3: "not-applicable",
                               4: "not-applicable", 5: "not-applicable", 7: "present"},
    "wait-page-key-cachefiles": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "nowait-hunk-misplaced": {1: "not-applicable", 2: "not-applicable", 3: "not-applicable",
                              4: "not-applicable", 5: "not-applicable", 7: "present"},
    "kiocb-union-magic-flag": {1: "not-applicable", 2: "not-applicable", 3: "not-applicable",
                               4: "present", 5: "present", 7: "present"},
    # issue 15's additions, checked against each posting's patches the same way
    "pagemap-include-missing": {1: "not-applicable", 2: "not-applicable", 3: "present", 4: "present",
                                5: "addressed", 7: "addressed"},
    "readahead-disabled-punts": dict.fromkeys((1, 2, 3, 4, 5, 7), "present"),
    "noio-readahead-can-sleep": dict.fromkeys((1, 2, 3, 4, 5, 7), "not-applicable"),  # an incremental's
    "wait-on-page-locked-async-late": {1: "not-applicable", 2: "not-applicable", 3: "present",
                                       4: "present", 5: "present", 7: "present"},
    "task-work-undiscoverable-cancel": {1: "not-applicable", 2: "not-applicable", 3: "not-applicable",
                                        4: "not-applicable", 5: "not-applicable", 7: "present"},
    "resubmit-uninitialised-ret": {1: "not-applicable", 2: "not-applicable", 3: "not-applicable",
                                   4: "not-applicable", 5: "not-applicable", 7: "addressed"},
}
ORIGINAL_18 = 18  # the catalogue issue 15 audited: 18 concerns x 6 revisions = 108 cells


@pytest.fixture(scope="module")
def real_family() -> object:
    if not LORE_MBOX.is_file():
        pytest.skip(f"shared input missing: {LORE_MBOX}")
    return find_family(load_families(LORE_MBOX), None)


@pytest.mark.shared
@pytest.mark.real
def test_real_postings_statuses(real_family: object) -> None:
    from harness.series import Family
    assert isinstance(real_family, Family)
    versions = [r.version for r in real_family.revisions]
    assert {3, 4, 5, 7} <= set(versions)
    statuses = evaluate_family(load_catalogue(), real_family)
    got = {(s.concern_id, s.version): s for s in statuses}
    assert sum(len(v) for v in list(EXPECTED.values())[:ORIGINAL_18]) == 108
    assert set(EXPECTED) == {c.id for c in load_catalogue()}  # every concern pinned
    for cid, per_version in EXPECTED.items():
        for version, expected in per_version.items():
            status = got[(cid, version)]
            assert status.status == expected, f"{cid} v{version}: {status.evidence}"
            if status.basis in ("match", "scope"):
                # the evidence is a real line of that posted patch
                line = status.evidence.split(": ", 1)[1]
                posted = real_family.revision(version).patch(status.patch or 0).diff
                assert line in posted.splitlines(), f"{cid} v{version}: {line!r} not in the patch"


def _archive(path: Path) -> dict[str, email.message.EmailMessage]:
    out: dict[str, email.message.EmailMessage] = {}
    for raw in mailbox.mbox(path, factory=None):
        msg = email.message_from_bytes(raw.as_bytes(), policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        mid = str(msg.get("Message-ID", "")).strip().strip("<>")
        if mid:
            out[mid] = msg
    return out


def _words(text: str) -> str:
    return " ".join(re.sub(r"(?m)^[> ]+", " ", text).split())


def _body(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


@pytest.mark.shared
@pytest.mark.real
def test_message_ids_quotes_and_revisions_are_real(lore_mbox: Path, seeds: Path,
                                                   real_family: object) -> None:
    from harness.series import Family
    assert isinstance(real_family, Family)
    archive = _archive(lore_mbox)
    merge_mail = _words(next(seeds.glob("000_*")).read_text())
    for concern in load_catalogue():
        for mid in concern.related:
            assert mid in archive, f"{concern.id}: related {mid} not in the archive"
        if concern.source == "merge":
            # Linus's reply to the 5.9 pull (Aug 2020) is after the archive ends: check the seed copy
            assert _words(concern.quote) in merge_mail, concern.id
            assert concern.raised_on == max(r.version for r in real_family.revisions)
            continue
        msg = archive.get(concern.message_id)
        if concern.source == "report":  # a report against a tree: in the archive, quote verbatim
            assert msg is not None, f"{concern.id}: {concern.message_id} not in the archive"
            assert _words(concern.quote) in _words(_body(msg)), f"{concern.id}: quote not in the report"
            continue
        if msg is None:  # original not archived: a reply that quotes it must answer it
            assert concern.quoted_in in archive, f"{concern.id}: {concern.message_id} not in the archive"
            msg = archive[concern.quoted_in]
            assert f"<{concern.message_id}>" in str(msg.get("In-Reply-To", "")), concern.id
        assert _words(concern.quote) in _words(_body(msg)), f"{concern.id}: quote not in {concern.message_id}"
        posted = real_family.revision(concern.raised_on)
        own = {p.message.message_id: p.number for p in posted.patches}
        if posted.cover:
            own[posted.cover.message_id] = 0
        refs = [*str(msg.get("References", "")).split(), str(msg.get("In-Reply-To", "")).strip()]
        answered = [own[r.strip("<>")] for r in refs if r.strip("<>") in own]
        assert answered, f"{concern.id}: {concern.message_id} does not answer v{concern.raised_on}"
        if concern.patch is not None and any(n != 0 for n in answered):
            assert concern.patch in answered, f"{concern.id}: not a reply to patch {concern.patch}"


@pytest.mark.shared
@pytest.mark.real
@pytest.mark.parametrize(("message_id", "expected"), [
    # Jens's __io_read() incremental: the goto is gone, but Pavel saw the CQE it loses
    ("717e474a-5168-8e1e-2e02-c1bdff007bd9@kernel.dk",
     {"goto-retry-state-machine": "addressed", "lost-cqe-retry-incremental": "present"}),
    # the ki_waitq incremental answering Trond, with the IOCB_HIPRI guard
    ("dca84a29-99dc-c9f0-7758-e47fc4d6fbc4@kernel.dk",
     {"iocb-private-reuse": "addressed", "hipri-waitqueue-guard": "addressed"}),
    # the patch-01 revert sent for Sedat's slow boot
    ("230d3380-0269-d113-2c32-6e4fb94b79b8@kernel.dk", {"rahead-implies-nowait": "addressed"}),
    # Jens's memalloc_noio incremental that Willy answers: noio can still sleep
    ("70b0427c-7303-8f45-48bd-caa0562a2951@kernel.dk", {"noio-readahead-can-sleep": "present"}),
    # the fix for Andres's postgres/XFS report
    ("34aadc75-5b8a-331e-e149-45e1547b543e@kernel.dk", {"xfs-wrong-data": "addressed"}),
])
def test_real_review_fixups(real_family: object, catalogue: dict[str, Concern], message_id: str,
                            expected: dict[str, str]) -> None:
    from harness.series import Family
    assert isinstance(real_family, Family)
    reviews = [rv for r in real_family.revisions for rv in r.all_reviews()
               if rv.message.message_id == message_id]
    assert reviews and reviews[0].fixup_diff, f"no fix-up diff attached for {message_id}"
    for cid, status in expected.items():
        got = evaluate_diff(catalogue[cid], reviews[0].fixup_diff, version=0)
        assert got.status == status, f"{cid}: {got.evidence}"
