/* SPDX-License-Identifier: MIT */
/*
 * probe-partial-folio — the page-cache update step on a folio that is cached but only partly
 * uptodate, unlocked, with no read in flight: the case the series' changes to that step (the
 * IOCB_NOWAIT / IOCB_WAITQ exits, the re-checks after taking the lock) decide without a reader to
 * wait for. No other probe makes such a folio: read-ahead always leaves folios locked under I/O.
 *
 * On the raw block device, with its block size set to 512 bytes (BLKBSZSET; the old size is put
 * back at the end), a buffered write of the first 512 bytes of an uncached page leaves that page's
 * folio with one uptodate block of eight. Each case starts from a fresh such page:
 *   - io_uring read of the whole page: the new 512 bytes, then the old bytes from the disk;
 *   - preadv2(RWF_NOWAIT) of the whole page: -EAGAIN (reading the rest needs I/O; data means it waited);
 *   - blocking preadv2 of the uptodate 512 bytes, then of the whole page: correct data.
 * Wrong bytes, an -EAGAIN on a read that may block, or a read that never returns fails the probe.
 */
#include "probe_common.h"
#include <sys/uio.h>

#define PAGE 4096
#define SMALL 512
#define CASES 4

static long *c_cases, *c_wrong, *c_eagain, *c_nowait_eagain, *c_nowait_data;
static int fd, old_bsize;
static off_t next_page;

/* The bytes a fresh partial page must read back: the write's pattern (offset + 1), then the disk's. */
static long check_page(const unsigned char *buf, off_t page, size_t len)
{
	size_t head = len < SMALL ? len : SMALL;
	long bad = kwb_pattern_check(buf, (uint64_t)page + 1 + (kwb_opt.self_test_fail ? 1 : 0), head);

	if (bad >= 0)
		return bad;
	bad = len > SMALL ? kwb_pattern_check(buf + SMALL, (uint64_t)page + SMALL, len - SMALL) : -1;
	return bad >= 0 ? bad + SMALL : -1;
}

/* An uncached page whose first 512 bytes are written (buffered): one uptodate block of eight. */
static off_t fresh_partial_page(void)
{
	unsigned char small[SMALL];
	off_t page = next_page;

	next_page += 2 * PAGE;
	kwb_evict(fd, page, PAGE);
	kwb_pattern_fill(small, (uint64_t)page + 1, SMALL);
	if (kwb_write_all(fd, small, SMALL, page))
		kwb_finish(KWB_EXIT_SETUP, "writing 512 bytes at %ld: %s", (long)page, strerror(errno));
	kwb_add(c_cases, 1);
	return page;
}

static void wrong(const char *how, off_t page, long res, long bad)
{
	kwb_add(c_wrong, 1);
	fprintf(stderr, "%s of the partial page at %ld: res %ld, first wrong byte %ld\n", how, (long)page, res, bad);
}

static void ring_case(struct io_uring *ring)
{
	static unsigned char buf[PAGE];
	off_t page = fresh_partial_page();
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int ret;

	memset(buf, 0xa5, sizeof(buf));
	io_uring_prep_read(sqe, fd, buf, PAGE, (uint64_t)page);
	if (io_uring_submit(ring) != 1)
		kwb_finish(KWB_EXIT_FAIL, "io_uring_submit did not take the read of %ld", (long)page);
	ret = kwb_wait_cqe_ms(ring, &cqe, 15000);
	if (ret)
		kwb_finish(KWB_EXIT_FAIL, "io_uring read of the partial page at %ld never completed (15 s)", (long)page);
	if (cqe->res == -EAGAIN)
		kwb_add(c_eagain, 1);
	else if (cqe->res != PAGE || check_page(buf, page, PAGE) >= 0)
		wrong("io_uring read", page, cqe->res, cqe->res == PAGE ? check_page(buf, page, PAGE) : -1);
	io_uring_cqe_seen(ring, cqe);
}

static void pread_case(int flags, size_t len)
{
	static unsigned char buf[PAGE];
	off_t page = fresh_partial_page();
	struct iovec iov = { buf, len };
	ssize_t r = preadv2(fd, &iov, 1, page, flags);

	if (flags & RWF_NOWAIT) {
		if (r < 0 && errno == EAGAIN) {
			kwb_add(c_nowait_eagain, 1);
			return;
		}
		kwb_add(c_nowait_data, 1);
	} else if (r < 0 && errno == EAGAIN) {
		kwb_add(c_eagain, 1);
		fprintf(stderr, "blocking preadv2 of %zu bytes at %ld: EAGAIN\n", len, (long)page);
		return;
	}
	if (r <= 0 || (!(flags & RWF_NOWAIT) && (size_t)r != len) || check_page(buf, page, (size_t)r) >= 0)
		wrong(flags & RWF_NOWAIT ? "RWF_NOWAIT preadv2" : "blocking preadv2", page, (long)r,
		      r > 0 ? check_page(buf, page, (size_t)r) : -1);
}

static void restore_bsize(void)
{
	if (old_bsize && ioctl(fd, BLKBSZSET, &old_bsize))
		fprintf(stderr, "BLKBSZSET back to %d: %s\n", old_bsize, strerror(errno));
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 60, .size_mb = 16, .iterations = 16 };
	struct io_uring ring;
	off_t fsize;
	int small = SMALL;

	c_cases = kwb_counter("partial_pages");
	c_wrong = kwb_counter("wrong_results");
	c_eagain = kwb_counter("eagain_on_reads_that_may_block");
	c_nowait_eagain = kwb_counter("nowait_eagain");
	c_nowait_data = kwb_counter("nowait_with_data");
	kwb_init("probe-partial-folio", argc, argv, d);
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	if (!kwb_is_bdev)
		kwb_finish(KWB_EXIT_SKIP, "needs a raw block device (a 512-byte block size makes partial pages)");
	if (fsize < (off_t)kwb_opt.iterations * CASES * 2 * PAGE)
		kwb_finish(KWB_EXIT_SETUP, "device too small (%ld bytes)", (long)fsize);
	if (ioctl(fd, BLKBSZGET, &old_bsize))
		kwb_finish(KWB_EXIT_SETUP, "BLKBSZGET: %s", strerror(errno));
	kwb_fill_pattern_file(fd, fsize);
	/* a new block size drops the device's page cache: set it after the pattern is on the disk */
	if (ioctl(fd, BLKBSZSET, &small)) {
		int err = errno;
		old_bsize = 0;
		kwb_finish(err == EBUSY ? KWB_EXIT_SKIP : KWB_EXIT_SETUP, "BLKBSZSET 512: %s", strerror(err));
	}
	kwb_ring_init(&ring, 4, 0);
	for (int i = 0; i < kwb_opt.iterations; i++) {
		ring_case(&ring);
		pread_case(RWF_NOWAIT, PAGE);
		pread_case(0, SMALL);
		pread_case(0, PAGE);
	}
	io_uring_queue_exit(&ring);
	if (fsync(fd))
		fprintf(stderr, "fsync: %s\n", strerror(errno));
	restore_bsize();
	/* RWF_NOWAIT must not wait for the read of the other seven blocks: data there means it did */
	if (*c_nowait_data && !*c_wrong && !*c_eagain)
		kwb_finish(KWB_EXIT_FAIL, "%ld of %ld RWF_NOWAIT reads of a partly uptodate page returned data: they "
			   "waited for I/O", *c_nowait_data, *c_nowait_data + *c_nowait_eagain);
	if (*c_wrong || *c_eagain)
		kwb_finish(KWB_EXIT_FAIL, "%ld wrong results and %ld EAGAIN on reads that may block, in %ld partly "
			   "uptodate pages (RWF_NOWAIT: %ld EAGAIN, %ld with data)", *c_wrong, *c_eagain, *c_cases,
			   *c_nowait_eagain, *c_nowait_data);
	kwb_finish(KWB_EXIT_PASS, "%ld partly uptodate pages read right by io_uring and preadv2 (RWF_NOWAIT: %ld "
		   "EAGAIN, %ld with data)", *c_cases, *c_nowait_eagain, *c_nowait_data);
}
