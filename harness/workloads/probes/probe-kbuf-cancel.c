/* SPDX-License-Identifier: MIT */
/*
 * probe-kbuf-cancel — concern kbuf-leak-on-cancel (Pavel Begunkov: a cancelled request that had
 * picked a provided buffer never gave it back, io_put_kbuf was missing on that path).
 *
 * A group of B provided buffers (IORING_OP_PROVIDE_BUFFERS) feeds reads with IOSQE_BUFFER_SELECT:
 *   1. reads on an empty pipe, cancelled with IORING_OP_ASYNC_CANCEL;
 *   2. buffered reads of uncached file pages, cancelled right behind their submission, inline and
 *      with IOSQE_ASYNC (io-wq);
 *   3. a forked child submits uncached file reads and pipe reads on the shared ring and exits with
 *      them in flight; the parent then feeds the pipe so the orphaned reads complete.
 * Every buffer a CQE hands back (IORING_CQE_F_BUFFER) is re-provided (data is checked except for
 * the child's reads, which copied into the child's copy-on-write memory). At the end the group must
 * satisfy exactly B reads, with B distinct buffer ids: a buffer neither in the group nor handed back
 * in a CQE was leaked.
 */
#include "probe_common.h"
#include <sys/wait.h>

#define NBUF 32
#define BUFSZ 4096
#define BGID 7
#define K 16

static struct io_uring ring;
static unsigned char *bufs;
static int owned[NBUF];
static int fd, pfd[2];
static long *c_returned, *c_double, *c_cqes, *c_cancel_ok, *c_cancel_other, *c_read_ok, *c_read_err;
static long *c_bad_data, *c_orphan_ok, *c_orphan_failed_buf, *c_orphan_failed_nobuf;
static int in_child_phase;

static struct io_uring_sqe *sqe_get(void)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

	if (!sqe) {
		io_uring_submit(&ring);
		sqe = io_uring_get_sqe(&ring);
	}
	if (!sqe)
		kwb_finish(KWB_EXIT_SETUP, "no SQE available");
	return sqe;
}

static void account(struct io_uring_cqe *cqe);

static void provide(int bid, int n)
{
	struct io_uring_sqe *sqe = sqe_get();
	struct io_uring_cqe *cqe;

	io_uring_prep_provide_buffers(sqe, bufs + (size_t)bid * BUFSZ, BUFSZ, n, BGID, bid);
	io_uring_sqe_set_data64(sqe, 1);
	io_uring_submit(&ring);
	for (;;) {
		if (kwb_wait_cqe_ms(&ring, &cqe, 5000))
			kwb_finish(KWB_EXIT_FAIL, "PROVIDE_BUFFERS never completed");
		if (io_uring_cqe_get_data64(cqe) == 1)
			break;
		/* a late read completion: account it, its buffer is re-provided by the caller's loop */
		account(cqe);
		io_uring_cqe_seen(&ring, cqe);
	}
	if (cqe->res < 0) {
		if (cqe->res == -EINVAL || cqe->res == -EOPNOTSUPP)
			kwb_finish(KWB_EXIT_SKIP, "IORING_OP_PROVIDE_BUFFERS unsupported: %s", strerror(-cqe->res));
		kwb_finish(KWB_EXIT_FAIL, "PROVIDE_BUFFERS: %s", strerror(-cqe->res));
	}
	io_uring_cqe_seen(&ring, cqe);
}

/* Account one CQE: user_data >= 2000 are cancel requests, 1000.. reads of file offset (ud-1000)*4k. */
static void account(struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);

	kwb_add(c_cqes, 1);
	if (ud >= 2000) {
		kwb_add(cqe->res == 0 ? c_cancel_ok : c_cancel_other, 1);
		return;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		if (bid < 0 || bid >= NBUF || owned[bid])
			kwb_add(c_double, 1);
		else
			owned[bid] = 1;
		kwb_add(c_returned, 1);
		/* a read the child submitted copied into the child's (copy-on-write) memory, not ours */
		if (cqe->res > 0 && ud >= 1000 && ud < 1500 && !in_child_phase &&
		    kwb_pattern_check(bufs + (size_t)bid * BUFSZ, (ud - 1000) * BUFSZ, (size_t)cqe->res) >= 0)
			kwb_add(c_bad_data, 1);
	}
	kwb_add(cqe->res >= 0 ? c_read_ok : c_read_err, 1);
	/* orphaned file reads: completed anyway, or failed by the terminate path (with its buffer) */
	if (in_child_phase && ud >= 1000 && ud < 1500)
		kwb_add(cqe->res >= 0 ? c_orphan_ok : (cqe->flags & IORING_CQE_F_BUFFER) ? c_orphan_failed_buf
			: c_orphan_failed_nobuf, 1);
}

/* Reap exactly n CQEs (each within ms), then hand every returned buffer back to the group. */
static int reap(int n, long ms)
{
	struct io_uring_cqe *cqe;
	int got = 0;

	while (got < n && kwb_wait_cqe_ms(&ring, &cqe, ms) == 0) {
		account(cqe);
		io_uring_cqe_seen(&ring, cqe);
		got++;
	}
	for (int again = 1; again;) {
		again = 0;
		for (int bid = 0; bid < NBUF; bid++)
			if (owned[bid]) {
				owned[bid] = 0;
				provide(bid, 1);
				again = 1;
			}
	}
	return n - got;
}

static void submit_reads(int n, int first_page, unsigned sqe_flags, int cancel)
{
	for (int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = sqe_get();
		io_uring_prep_read(sqe, fd, NULL, BUFSZ, (uint64_t)(first_page + i) * BUFSZ);
		sqe->flags |= IOSQE_BUFFER_SELECT | sqe_flags;
		sqe->buf_group = BGID;
		io_uring_sqe_set_data64(sqe, 1000 + (uint64_t)(first_page + i));
	}
	for (int i = 0; cancel && i < n; i++) {
		struct io_uring_sqe *sqe = sqe_get();
		io_uring_prep_cancel64(sqe, 1000 + (uint64_t)(first_page + i), 0);
		io_uring_sqe_set_data64(sqe, 2000 + (uint64_t)i);
	}
	io_uring_submit(&ring);
}

static void submit_pipe_reads(int n, int cancel)
{
	for (int i = 0; i < n; i++) {
		struct io_uring_sqe *sqe = sqe_get();
		io_uring_prep_read(sqe, pfd[0], NULL, BUFSZ, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = BGID;
		io_uring_sqe_set_data64(sqe, 1500 + (uint64_t)i);
	}
	io_uring_submit(&ring);
	for (int i = 0; cancel && i < n; i++) {
		struct io_uring_sqe *sqe = sqe_get();
		io_uring_prep_cancel64(sqe, 1500 + (uint64_t)i, 0);
		io_uring_sqe_set_data64(sqe, 2000 + (uint64_t)i);
	}
	io_uring_submit(&ring);
}

/* Empty the pipe (non-blocking only meanwhile: io_uring fails O_NONBLOCK reads instead of polling). */
static void drain_pipe(void)
{
	static char junk[BUFSZ];
	int fl = fcntl(pfd[0], F_GETFL);

	fcntl(pfd[0], F_SETFL, fl | O_NONBLOCK);
	while (read(pfd[0], junk, sizeof(junk)) > 0)
		;
	fcntl(pfd[0], F_SETFL, fl);
}

static void child_exits_mid_flight(off_t fsize, long *c_missing)
{
	static char junk[4 * BUFSZ];
	pid_t pid;
	int status;

	kwb_evict(fd, 0, fsize);
	pid = fork();
	if (pid < 0)
		kwb_finish(KWB_EXIT_SETUP, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* the child shares the ring's mmaps: submit and leave without waiting */
		alarm(0);
		submit_reads(K, 2 * K, 0, 0);
		submit_pipe_reads(4, 0);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		kwb_finish(KWB_EXIT_SETUP, "waitpid: %s", strerror(errno));
	/* the child advanced the shared SQ tail; bring this copy of liburing's SQ state up to it */
	ring.sq.sqe_head = ring.sq.sqe_tail = *ring.sq.ktail;
	if (write(pfd[1], junk, sizeof(junk)) < 0)
		kwb_finish(KWB_EXIT_SETUP, "pipe write: %s", strerror(errno));
	in_child_phase = 1;
	kwb_add(c_missing, reap(K + 4, 10000));
	in_child_phase = 0;
	drain_pipe();
}

/* Take every buffer out of the group with reads of cached pages; returns how many reads got one. */
static int drain(int *distinct)
{
	int seen[NBUF] = { 0 }, got = 0, n = NBUF + 4;
	struct io_uring_cqe *cqe;

	submit_reads(n, 0, 0, 0);
	*distinct = 0;
	for (int i = 0; i < n; i++) {
		if (kwb_wait_cqe_ms(&ring, &cqe, 10000))
			kwb_finish(KWB_EXIT_FAIL, "drain read %d never completed", i);
		if (cqe->res >= 0 && (cqe->flags & IORING_CQE_F_BUFFER)) {
			int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			got++;
			if (bid >= 0 && bid < NBUF && !seen[bid]++)
				(*distinct)++;
		} else if (cqe->res != -ENOBUFS) {
			kwb_finish(KWB_EXIT_FAIL, "drain read: unexpected res %d", cqe->res);
		}
		io_uring_cqe_seen(&ring, cqe);
	}
	return got;
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 60, .size_mb = 4, .iterations = 4 };
	long *c_missing, *c_rounds;
	int got, distinct, expect;
	off_t fsize;

	kwb_init("probe-kbuf-cancel", argc, argv, d);
	c_returned = kwb_counter("buffers_returned_in_cqe");
	c_double = kwb_counter("buffer_returned_twice");
	c_cqes = kwb_counter("cqes");
	c_cancel_ok = kwb_counter("cancel_found");
	c_cancel_other = kwb_counter("cancel_not_found_or_running");
	c_read_ok = kwb_counter("reads_ok");
	c_read_err = kwb_counter("reads_failed_or_cancelled");
	c_bad_data = kwb_counter("bad_data");
	c_missing = kwb_counter("missing_cqes");
	c_rounds = kwb_counter("rounds");
	c_orphan_ok = kwb_counter("orphan_reads_completed");
	c_orphan_failed_buf = kwb_counter("orphan_reads_failed_buffer_returned");
	c_orphan_failed_nobuf = kwb_counter("orphan_reads_failed_no_buffer");
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	if (fsize < 4 * K * BUFSZ)
		kwb_finish(KWB_EXIT_SETUP, "target too small");
	kwb_fill_pattern_file(fd, fsize);
	if (pipe(pfd))
		kwb_finish(KWB_EXIT_SETUP, "pipe: %s", strerror(errno));
	bufs = aligned_alloc(KWB_PAGE, (size_t)NBUF * BUFSZ);
	kwb_ring_init(&ring, 128, 0);
	if (!(ring.features & IORING_FEAT_FAST_POLL))
		kwb_finish(KWB_EXIT_SKIP, "kernel lacks IORING_FEAT_FAST_POLL (pipe reads would block io-wq)");
	provide(0, NBUF);

	for (int r = 0; r < kwb_opt.iterations; r++) {
		submit_pipe_reads(4, 1);
		kwb_add(c_missing, reap(8, 10000));
		kwb_evict(fd, 0, fsize);
		submit_reads(K, K, 0, 1);
		kwb_add(c_missing, reap(2 * K, 10000));
		kwb_evict(fd, 0, fsize);
		submit_reads(K, 3 * K, IOSQE_ASYNC, 1);
		kwb_add(c_missing, reap(2 * K, 10000));
		child_exits_mid_flight(fsize, c_missing);
		kwb_add(c_rounds, 1);
	}
	/* the drain reads file pages 0..NBUF+3: cache them so they cannot fail for I/O reasons */
	{
		static unsigned char tmp[(NBUF + 4) * BUFSZ];
		if (kwb_read_all(fd, tmp, sizeof(tmp), 0))
			kwb_finish(KWB_EXIT_SETUP, "priming read: %s", strerror(errno));
	}
	got = drain(&distinct);
	*kwb_counter("buffers_left_in_group") = got;
	*kwb_counter("distinct_buffer_ids") = distinct;
	/* --self-test-fail expects one buffer more than was ever provided */
	expect = NBUF + (kwb_opt.self_test_fail ? 1 : 0);
	io_uring_queue_exit(&ring);
	if (*c_missing)
		kwb_finish(KWB_EXIT_FAIL, "%ld CQEs never arrived", *c_missing);
	if (*c_double)
		kwb_finish(KWB_EXIT_FAIL, "%ld buffers were handed back twice", *c_double);
	if (got != expect || distinct != got)
		kwb_finish(KWB_EXIT_FAIL, "buffer group holds %d buffers (%d distinct), expected %d: %d leaked",
			   got, distinct, expect, expect - got);
	if (*c_bad_data)
		kwb_finish(KWB_EXIT_FAIL, "%ld reads returned wrong data", *c_bad_data);
	kwb_finish(KWB_EXIT_PASS, "all %d buffers came back after %ld cancels and %ld child exits",
		   NBUF, *c_cancel_ok + *c_cancel_other, *c_rounds);
}
