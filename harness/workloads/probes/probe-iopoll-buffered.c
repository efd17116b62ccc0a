/* SPDX-License-Identifier: MIT */
/*
 * probe-iopoll-buffered — concern hipri-waitqueue-guard (Trond Myklebust: with IOCB_HIPRI the
 * kiocb is polled, so arming the page wait queue for it must be refused).
 *
 * An IORING_SETUP_IOPOLL ring is asked for buffered (non-O_DIRECT) reads of uncached and cached
 * pages, with READ, READV and IOSQE_ASYNC. Polled I/O only makes sense for O_DIRECT, so every read
 * must end in a clean error CQE (-EOPNOTSUPP or -EINVAL) within a bounded time; a read that
 * completes with data, a CQE that never comes, or a hang, fails the probe.
 */
#include "probe_common.h"
#include <sys/uio.h>

#define N 32

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 60, .size_mb = 4, .iterations = 4 };
	long *c_sub = kwb_counter("reads_submitted"), *c_clean = kwb_counter("clean_errors");
	long *c_data = kwb_counter("completed_with_data"), *c_other = kwb_counter("other_errors");
	long *c_missing = kwb_counter("missing_cqes"), *c_max_ms = kwb_counter("max_completion_ms");
	static unsigned char buf[N][8192];
	struct iovec iov[N][2];
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	off_t fsize;
	int fd;

	kwb_init("probe-iopoll-buffered", argc, argv, d);
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	if (fsize < N * 8192L)
		kwb_finish(KWB_EXIT_SETUP, "target too small");
	kwb_fill_pattern_file(fd, fsize);
	kwb_ring_init(&ring, 2 * N, IORING_SETUP_IOPOLL);

	for (int it = 0; it < kwb_opt.iterations; it++) {
		double t0;
		int got = 0;

		/* odd rounds read cached pages, even rounds uncached ones */
		if (it % 2 == 0)
			kwb_evict(fd, 0, fsize);
		else if (kwb_read_all(fd, buf[0], sizeof(buf[0]), 0) == 0)
			for (int i = 0; i < N; i++)
				kwb_read_all(fd, buf[1], sizeof(buf[1]), (off_t)i * 8192);
		for (int i = 0; i < N; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			if (i % 3 == 1) {
				iov[i][0] = (struct iovec){ buf[i], 4096 };
				iov[i][1] = (struct iovec){ buf[i] + 4096, 4096 };
				io_uring_prep_readv(sqe, fd, iov[i], 2, (uint64_t)i * 8192);
			} else {
				io_uring_prep_read(sqe, fd, buf[i], 8192, (uint64_t)i * 8192);
			}
			if (i % 3 == 2)
				sqe->flags |= IOSQE_ASYNC;
			io_uring_sqe_set_data64(sqe, (uint64_t)i);
		}
		t0 = kwb_now_ms();
		io_uring_submit(&ring);
		kwb_add(c_sub, N);
		while (got < N) {
			/* on an IOPOLL ring waiting reaps by polling; a bounded wait is the hang check */
			int ret = kwb_wait_cqe_ms(&ring, &cqe, 10000);
			if (ret) {
				fprintf(stderr, "wait: %d %s after %.0f ms\n", ret, strerror(-ret), kwb_now_ms() - t0);
				break;
			}
			got++;
			if (cqe->res == -EOPNOTSUPP || cqe->res == -EINVAL)
				kwb_add(c_clean, 1);
			else if (cqe->res >= 0)
				kwb_add(c_data, 1);
			else
				kwb_add(c_other, 1);
			io_uring_cqe_seen(&ring, cqe);
		}
		if ((long)(kwb_now_ms() - t0) > *c_max_ms)
			*c_max_ms = (long)(kwb_now_ms() - t0);
		kwb_add(c_missing, N - got);
		if (got < N)
			kwb_finish(KWB_EXIT_FAIL, "%d of %d polled buffered reads never completed (10 s)", N - got, N);
	}
	io_uring_queue_exit(&ring);
	/* --self-test-fail expects the reads to succeed with data, the opposite of the guard */
	if (kwb_opt.self_test_fail ? *c_data != *c_sub : *c_clean != *c_sub)
		kwb_finish(KWB_EXIT_FAIL, "%ld of %ld buffered reads on an IOPOLL ring: %ld completed with data, "
			   "%ld other errors", *c_sub - *c_clean, *c_sub, *c_data, *c_other);
	kwb_finish(KWB_EXIT_PASS, "all %ld buffered reads on an IOPOLL ring failed cleanly (EOPNOTSUPP/EINVAL)",
		   *c_sub);
}
