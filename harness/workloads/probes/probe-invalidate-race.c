/* SPDX-License-Identifier: MIT */
/*
 * probe-invalidate-race — the mapping's invalidate lock on the buffered read path (the page-cache
 * update step the series made asynchronous takes it shared: a trylock for IOCB_NOWAIT, a sleeping
 * lock otherwise).
 *
 * A file (or the raw device) is filled with the offset pattern. Readers read only the even 64 KiB
 * chunks, uncached, three ways at once: io_uring buffered reads (the nonblocking attempt, then the
 * armed retry), blocking preadv2() and preadv2(RWF_NOWAIT). One thread meanwhile punches the odd
 * chunks (fallocate PUNCH_HOLE; BLKZEROOUT on a block device), which holds the invalidate lock
 * exclusively, over and over. The even chunks never change, so every read must return its full
 * length (a RWF_NOWAIT read may instead say -EAGAIN or stop early) with the pattern: a blocking read
 * that fails with -EAGAIN, wrong bytes, a CQE that never comes or a punch that never returns (a
 * lock taken and not released) fails the probe.
 */
#include "probe_common.h"
#include <linux/falloc.h>
#include <pthread.h>
#include <sys/uio.h>

#define CHUNK (64 * 1024)
#define RLEN (16 * 1024)
#define QD 32

static int fd;
static off_t fsize;
static long nchunks;
static volatile int stop;
static volatile long punches;
static long *c_ring, *c_sync, *c_nowait, *c_nowait_eagain, *c_wrong, *c_eagain, *c_punch_ms;

static off_t even_offset(uint64_t *rs)
{
	long chunk = (long)(kwb_rand_r(rs) % (uint64_t)(nchunks / 2)) * 2;
	return (off_t)chunk * CHUNK + (off_t)(kwb_rand_r(rs) % (CHUNK / RLEN)) * RLEN;
}

/* The pattern, or (--self-test-fail) the pattern one byte further on, which no read can return. */
static int data_ok(const unsigned char *buf, off_t off, size_t len)
{
	return kwb_pattern_check(buf, (uint64_t)off + (kwb_opt.self_test_fail ? 1 : 0), len) < 0;
}

static void *puncher(void *arg)
{
	uint64_t rs = 0x5eed;

	(void)arg;
	while (!stop) {
		off_t off = (off_t)((kwb_rand_r(&rs) % (uint64_t)(nchunks / 2)) * 2 + 1) * CHUNK;
		double t0 = kwb_now_ms();
		int ret;

		if (kwb_is_bdev) {
			uint64_t range[2] = { (uint64_t)off, CHUNK };
			ret = ioctl(fd, BLKZEROOUT, range);
		} else {
			ret = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, CHUNK);
		}
		if (ret)
			kwb_finish(KWB_EXIT_SETUP, "%s at %ld: %s", kwb_is_bdev ? "BLKZEROOUT" : "fallocate(PUNCH_HOLE)",
				   (long)off, strerror(errno));
		if ((long)(kwb_now_ms() - t0) > *c_punch_ms)
			*c_punch_ms = (long)(kwb_now_ms() - t0);
		punches++;
	}
	return NULL;
}

/* Blocking and RWF_NOWAIT reads of even chunks, side by side with the ring's. */
static void *sync_reader(void *arg)
{
	static unsigned char buf[RLEN];
	uint64_t rs = 0xabcdef;

	(void)arg;
	while (!stop) {
		off_t off = even_offset(&rs);
		int nowait = kwb_rand_r(&rs) & 1;
		struct iovec iov = { buf, RLEN };
		ssize_t r = preadv2(fd, &iov, 1, off, nowait ? RWF_NOWAIT : 0);

		kwb_add(nowait ? c_nowait : c_sync, 1);
		if (nowait && r < 0 && errno == EAGAIN) {
			kwb_add(c_nowait_eagain, 1);
			continue;
		}
		if (nowait && r == -1 && errno == EOPNOTSUPP)
			continue;
		if (!nowait && r < 0 && errno == EAGAIN) {
			kwb_add(c_eagain, 1);
			fprintf(stderr, "blocking preadv2 off %ld: EAGAIN\n", (long)off);
			continue;
		}
		if (r <= 0 || (!nowait && r != RLEN) || !data_ok(buf, off, (size_t)r)) {
			kwb_add(c_wrong, 1);
			fprintf(stderr, "%s preadv2 off %ld: res %zd%s\n", nowait ? "RWF_NOWAIT" : "blocking",
				(long)off, r, r > 0 ? " (wrong data)" : "");
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 60, .size_mb = 32, .seconds = 8 };
	static unsigned char buf[QD][RLEN];
	off_t offs[QD];
	pthread_t pt, st;
	struct io_uring ring;
	double end;
	long rounds = 0, before;

	c_ring = kwb_counter("ring_reads");
	c_sync = kwb_counter("blocking_reads");
	c_nowait = kwb_counter("nowait_reads");
	c_nowait_eagain = kwb_counter("nowait_eagain");
	c_wrong = kwb_counter("wrong_results");
	c_eagain = kwb_counter("eagain_on_blocking_reads");
	c_punch_ms = kwb_counter("max_punch_ms");
	long *c_punches = kwb_counter("punches"), *c_rounds = kwb_counter("rounds");
	kwb_init("probe-invalidate-race", argc, argv, d);
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	nchunks = (long)(fsize / CHUNK);
	if (nchunks < 8)
		kwb_finish(KWB_EXIT_SETUP, "target too small (%ld bytes)", (long)fsize);
	kwb_fill_pattern_file(fd, fsize);
	kwb_ring_init(&ring, QD, 0);
	if (pthread_create(&pt, NULL, puncher, NULL) || pthread_create(&st, NULL, sync_reader, NULL))
		kwb_finish(KWB_EXIT_SETUP, "pthread_create failed");

	uint64_t rs = 0x1234;
	end = kwb_now_ms() + 1000.0 * kwb_opt.seconds;
	while (kwb_now_ms() < end) {
		int got = 0;

		kwb_evict(fd, 0, fsize);
		for (int i = 0; i < QD; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			offs[i] = even_offset(&rs);
			memset(buf[i], 0xa5, RLEN);
			io_uring_prep_read(sqe, fd, buf[i], RLEN, (uint64_t)offs[i]);
			io_uring_sqe_set_data64(sqe, (uint64_t)i);
		}
		if (io_uring_submit(&ring) != QD)
			kwb_finish(KWB_EXIT_FAIL, "round %ld: io_uring_submit did not take %d SQEs", rounds, QD);
		kwb_add(c_ring, QD);
		while (got < QD) {
			struct io_uring_cqe *cqe;
			int ret = kwb_wait_cqe_ms(&ring, &cqe, 15000);
			if (ret)
				kwb_finish(KWB_EXIT_FAIL, "round %ld: %d of %d reads never completed (15 s) while "
					   "%ld punches ran", rounds, QD - got, QD, punches);
			int i = (int)io_uring_cqe_get_data64(cqe);
			if (cqe->res == -EAGAIN) {
				kwb_add(c_eagain, 1);
				fprintf(stderr, "io_uring read off %ld: -EAGAIN in the CQE\n", (long)offs[i]);
			} else if (cqe->res != RLEN || !data_ok(buf[i], offs[i], RLEN)) {
				kwb_add(c_wrong, 1);
				fprintf(stderr, "io_uring read off %ld: res %d%s\n", (long)offs[i], cqe->res,
					cqe->res == RLEN ? " (wrong data)" : "");
			}
			io_uring_cqe_seen(&ring, cqe);
			got++;
		}
		rounds++;
	}
	/* the punches must go on: one that never returns holds (or waits for) the invalidate lock */
	before = punches;
	for (double t0 = kwb_now_ms(); punches == before && kwb_now_ms() - t0 < 10000;)
		usleep(10000);
	if (punches == before)
		kwb_finish(KWB_EXIT_FAIL, "no %s returned in 10 s after %ld reads (a lock left held?)",
			   kwb_is_bdev ? "BLKZEROOUT" : "punch", *c_ring + *c_sync + *c_nowait);
	stop = 1;
	pthread_join(pt, NULL);
	pthread_join(st, NULL);
	io_uring_queue_exit(&ring);
	*c_punches = punches;
	*c_rounds = rounds;
	if (*c_wrong || *c_eagain)
		kwb_finish(KWB_EXIT_FAIL, "%ld wrong results and %ld EAGAIN on reads that must block, of %ld ring, "
			   "%ld blocking and %ld RWF_NOWAIT reads beside %ld punches", *c_wrong, *c_eagain, *c_ring,
			   *c_sync, *c_nowait, punches);
	kwb_finish(KWB_EXIT_PASS, "%ld ring, %ld blocking and %ld RWF_NOWAIT reads (%ld EAGAIN) of unchanged "
		   "chunks right beside %ld punches of their neighbours", *c_ring, *c_sync, *c_nowait,
		   *c_nowait_eagain, punches);
}
