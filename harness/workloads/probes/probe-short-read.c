/* SPDX-License-Identifier: MIT */
/*
 * probe-short-read — short reads across cached/uncached pages and EOF (concerns
 * lost-cqe-retry-incremental and goto-retry-state-machine: a retried read resumes where the first
 * attempt stopped, so its byte count and data are where such bugs show).
 *
 * The file is not a multiple of the page size. Each case reads a range (page-straddling, ending at,
 * crossing, starting at or beyond EOF) with READ and a three-segment READV, after preparing the
 * cache: all uncached, all cached, first half cached, second half cached, every other page cached.
 * Checks: res == min(len, EOF - off) (0 at/after EOF), the bytes equal the file's pattern, and no
 * byte past res in the buffer is touched. Cases run one by one, then all at once per cache state.
 */
#include "probe_common.h"
#include <sys/uio.h>

#define MAXLEN (160 * 1024)
#define NSTATES 5

static const char *state_names[NSTATES] = { "uncached", "cached", "first_half", "second_half", "alternate" };
static int fd;
static off_t eof;

struct rcase {
	off_t off;
	size_t len;
	int readv;
	unsigned char *buf;
	struct iovec iov[3];
};

static void prepare(int state, off_t off, size_t len)
{
	static unsigned char tmp[MAXLEN];
	off_t first = off & ~(KWB_PAGE - 1), end = off + (off_t)len;

	if (end > eof)
		end = eof;
	kwb_evict(fd, 0, eof + KWB_PAGE);
	if (state == 1)
		kwb_read_all(fd, tmp, (size_t)(end - first), first);
	for (off_t p = first; state >= 2 && p < end; p += KWB_PAGE) {
		long idx = (long)((p - first) / KWB_PAGE), mid = (long)((end - first) / KWB_PAGE / 2);
		int want = state == 2 ? idx < mid : state == 3 ? idx >= mid : idx % 2 == 0;
		if (want && pread(fd, tmp, 1, p) < 0)
			kwb_finish(KWB_EXIT_SETUP, "priming pread: %s", strerror(errno));
	}
}

static void prep_sqe(struct io_uring *ring, struct rcase *c, uint64_t ud)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	memset(c->buf, 0xa5, MAXLEN);
	if (c->readv) {
		size_t a = c->len / 3 + 1, b = c->len / 5;
		if (a + b > c->len)
			a = c->len, b = 0;
		c->iov[0] = (struct iovec){ c->buf, a };
		c->iov[1] = (struct iovec){ c->buf + a, b };
		c->iov[2] = (struct iovec){ c->buf + a + b, c->len - a - b };
		io_uring_prep_readv(sqe, fd, c->iov, 3, (uint64_t)c->off);
	} else {
		io_uring_prep_read(sqe, fd, c->buf, (unsigned)c->len, (uint64_t)c->off);
	}
	io_uring_sqe_set_data64(sqe, ud);
}

static long *c_cases, *c_wrong, *c_short_ok, *c_bad, *c_canary, *c_missing;

static void check(struct rcase *c, int res)
{
	off_t avail = eof - c->off;
	long want = c->off >= eof ? 0 : (avail < (off_t)c->len ? (long)avail : (long)c->len);

	/* --self-test-fail expects one byte more from every read that stops at EOF */
	if (kwb_opt.self_test_fail && want < (long)c->len)
		want++;
	kwb_add(c_cases, 1);
	if (res != want) {
		kwb_add(c_wrong, 1);
		fprintf(stderr, "read off %ld len %zu (%s): res %d, want %ld\n",
			(long)c->off, c->len, c->readv ? "readv" : "read", res, want);
		return;
	}
	if (want < (long)c->len)
		kwb_add(c_short_ok, 1);
	if (kwb_pattern_check(c->buf, (uint64_t)c->off, (size_t)want) >= 0)
		kwb_add(c_bad, 1);
	for (size_t i = (size_t)want; i < MAXLEN; i++)
		if (c->buf[i] != 0xa5) {
			kwb_add(c_canary, 1);
			break;
		}
}

static int make_cases(struct rcase *cs, unsigned char *mem)
{
	off_t last_page = eof & ~(KWB_PAGE - 1);
	struct { off_t off; size_t len; } r[] = {
		{ 0, 65536 }, { KWB_PAGE - 100, 8192 }, { eof - 10000, 20000 }, { eof - 1, 4096 },
		{ eof, 4096 }, { eof + 4096, 4096 }, { eof - 8192 - 7, 8192 + 7 }, { last_page, 8192 },
		{ eof - 65536 - 3, 131072 }, { last_page - 3 * KWB_PAGE + 1, 5 * KWB_PAGE },
	};
	int n = 0;

	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		for (int v = 0; v < 2; v++) {
			cs[n] = (struct rcase){ .off = r[i].off, .len = r[i].len, .readv = v,
						.buf = mem + (size_t)n * MAXLEN };
			n++;
		}
	return n;
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 60, .size_mb = 1, .iterations = 2 };
	long *c_states[NSTATES];
	struct rcase cs[32];
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	unsigned char *mem;
	int n;

	kwb_init("probe-short-read", argc, argv, d);
	c_cases = kwb_counter("cases");
	c_wrong = kwb_counter("wrong_res");
	c_short_ok = kwb_counter("eof_short_reads_ok");
	c_bad = kwb_counter("bad_data");
	c_canary = kwb_counter("bytes_written_past_res");
	c_missing = kwb_counter("missing_cqes");
	for (int s = 0; s < NSTATES; s++)
		c_states[s] = kwb_counter(state_names[s]);
	eof = INT64_MAX;
	fd = kwb_open_target(&eof);
	if (kwb_is_bdev) {
		/* a block device's EOF is its size: pattern only the two ends the cases read */
		if (eof < (4 << 20))
			kwb_finish(KWB_EXIT_SETUP, "block device too small");
		kwb_fill_pattern_range(fd, 0, 1 << 20);
		kwb_fill_pattern_range(fd, eof - (1 << 20), 1 << 20);
		if (fsync(fd))
			kwb_finish(KWB_EXIT_SETUP, "fsync: %s", strerror(errno));
	} else {
		eof = (kwb_opt.size_mb << 20) + 1234;
		kwb_fill_pattern_file(fd, eof);
	}
	*kwb_counter("eof") = (long)eof;
	mem = malloc(32 * (size_t)MAXLEN);
	n = make_cases(cs, mem);
	kwb_ring_init(&ring, 64, 0);

	for (int it = 0; it < kwb_opt.iterations; it++)
		for (int s = 0; s < NSTATES; s++) {
			/* one at a time: the cache state is exactly the prepared one */
			for (int i = 0; i < n; i++) {
				prepare(s, cs[i].off, cs[i].len);
				prep_sqe(&ring, &cs[i], (uint64_t)i);
				io_uring_submit(&ring);
				if (kwb_wait_cqe_ms(&ring, &cqe, 10000)) {
					kwb_add(c_missing, 1);
					kwb_finish(KWB_EXIT_FAIL, "read off %ld len %zu never completed",
						   (long)cs[i].off, cs[i].len);
				}
				check(&cs[i], cqe->res);
				io_uring_cqe_seen(&ring, cqe);
				kwb_add(c_states[s], 1);
			}
			/* all at once: overlapping reads race each other's readahead */
			for (int i = 0; i < n; i++)
				prepare(s, cs[i].off, cs[i].len);
			for (int i = 0; i < n; i++)
				prep_sqe(&ring, &cs[i], (uint64_t)i);
			io_uring_submit(&ring);
			for (int got = 0; got < n; got++) {
				if (kwb_wait_cqe_ms(&ring, &cqe, 10000)) {
					kwb_add(c_missing, n - got);
					kwb_finish(KWB_EXIT_FAIL, "%d of %d concurrent reads never completed", n - got, n);
				}
				check(&cs[io_uring_cqe_get_data64(cqe)], cqe->res);
				io_uring_cqe_seen(&ring, cqe);
			}
		}
	io_uring_queue_exit(&ring);
	if (*c_wrong || *c_bad || *c_canary)
		kwb_finish(KWB_EXIT_FAIL, "%ld wrong byte counts, %ld with wrong data, %ld wrote past res",
			   *c_wrong, *c_bad, *c_canary);
	kwb_finish(KWB_EXIT_PASS, "%ld reads (%ld stopped at EOF) with the right byte count and data",
		   *c_cases, *c_short_ok);
}
