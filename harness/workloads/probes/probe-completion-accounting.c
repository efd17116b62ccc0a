/* SPDX-License-Identifier: MIT */
/*
 * probe-completion-accounting — concern lost-cqe-retry-incremental (Pavel Begunkov).
 *
 * Pavel pointed out that the proposed retry incremental could lose a completion when a buffered read
 * was partly done and retried. Each round submits N reads mixing fully cached, uncached and
 * half-cached ranges (READ and multi-segment READV, page-aligned and unaligned) while a dropper
 * thread keeps evicting those ranges (POSIX_FADV_DONTNEED). The check: exactly N CQEs per round,
 * each user_data seen once, res == the requested length, the data equal to the file's pattern,
 * and no extra CQE afterwards.
 */
#include "probe_common.h"
#include <pthread.h>
#include <sys/uio.h>

#define QD 64
#define SLOT (256 * 1024L)
#define MAX_LEN (128 * 1024L)

enum kind { CACHED, UNCACHED, HALF, NKINDS };

struct req {
	off_t off;
	size_t len;
	int kind;
	int seen;
	unsigned char *buf;
	struct iovec iov[3];
};

static int fd;
static off_t fsize;
static struct req reqs[QD];
static volatile int round_active;
static long *c_drops;

static void *dropper(void *arg)
{
	uint64_t seed = 0xfeedULL;

	(void)arg;
	while (__atomic_load_n(&round_active, __ATOMIC_ACQUIRE)) {
		struct req *r = &reqs[kwb_rand_r(&seed) % QD];
		kwb_evict(fd, r->off, (off_t)r->len);
		kwb_add(c_drops, 1);
		if (kwb_rand_r(&seed) % 64 == 0)
			kwb_evict(fd, 0, fsize);
		/* a short pause keeps the dropper from starving the submitter on a 2-vCPU guest */
		usleep(20);
	}
	return NULL;
}

static void prepare_round(off_t *slots, int nslots)
{
	static char scratch[MAX_LEN];

	/* pick QD distinct slots (partial Fisher-Yates) so ranges never overlap within a round */
	for (int i = 0; i < QD; i++) {
		int j = i + (int)(kwb_rand() % (uint64_t)(nslots - i));
		off_t t = slots[i];
		slots[i] = slots[j];
		slots[j] = t;
	}
	kwb_evict(fd, 0, fsize);
	for (int i = 0; i < QD; i++) {
		struct req *r = &reqs[i];
		long pages = 1 + (long)(kwb_rand() % 31);
		int unaligned = kwb_rand() % 4 == 0;

		r->kind = i % NKINDS;
		r->off = slots[i] + (unaligned ? 512 * (off_t)(1 + kwb_rand() % 7) : 0);
		r->len = (size_t)(pages * KWB_PAGE) - (unaligned ? 100 * (kwb_rand() % 5) : 0);
		r->seen = 0;
		if (r->kind == CACHED && kwb_read_all(fd, scratch, r->len, r->off))
			kwb_finish(KWB_EXIT_SETUP, "priming read failed: %s", strerror(errno));
		if (r->kind == HALF && kwb_read_all(fd, scratch, r->len / 2, r->off))
			kwb_finish(KWB_EXIT_SETUP, "priming read failed: %s", strerror(errno));
	}
}

static void submit_round(struct io_uring *ring, int round)
{
	static long *c_resident, *c_pages, *c_readv;

	if (!c_resident) {
		c_resident = kwb_counter("pages_resident_at_submit");
		c_pages = kwb_counter("pages_requested");
		c_readv = kwb_counter("readv_requests");
	}
	for (int i = 0; i < QD; i++) {
		struct req *r = &reqs[i];
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		long res = kwb_resident_pages(fd, r->off, (off_t)r->len);

		kwb_add(c_resident, res > 0 ? res : 0);
		kwb_add(c_pages, (long)((r->len + KWB_PAGE - 1) / KWB_PAGE));
		memset(r->buf, 0xa5, MAX_LEN);
		if (i % 2) {
			/* three uneven segments: a partial completion must resume mid-iovec */
			size_t a = r->len / 3, b = r->len / 4;
			r->iov[0] = (struct iovec){ r->buf, a };
			r->iov[1] = (struct iovec){ r->buf + a, b };
			r->iov[2] = (struct iovec){ r->buf + a + b, r->len - a - b };
			io_uring_prep_readv(sqe, fd, r->iov, 3, (uint64_t)r->off);
			kwb_add(c_readv, 1);
		} else {
			io_uring_prep_read(sqe, fd, r->buf, (unsigned)r->len, (uint64_t)r->off);
		}
		io_uring_sqe_set_data64(sqe, ((uint64_t)round << 32) | (uint64_t)i);
	}
	if (io_uring_submit(ring) != QD)
		kwb_finish(KWB_EXIT_FAIL, "round %d: io_uring_submit did not take %d SQEs", round, QD);
}

struct tally {
	long *cqes, *missing, *dup, *unknown, *wrong_res, *short_res, *mismatch, *extra, *by_kind[NKINDS];
};

static void reap_one(struct tally *t, struct io_uring_cqe *cqe, int round)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned idx = (unsigned)(ud & 0xffffffffu);
	struct req *r;

	kwb_add(t->cqes, 1);
	if ((int)(ud >> 32) != round || idx >= QD) {
		kwb_add(t->unknown, 1);
		return;
	}
	r = &reqs[idx];
	if (r->seen++) {
		kwb_add(t->dup, 1);
		return;
	}
	kwb_add(t->by_kind[r->kind], 1);
	if (cqe->res != (int)r->len) {
		kwb_add(t->wrong_res, 1);
		if (cqe->res > 0 && cqe->res < (int)r->len)
			kwb_add(t->short_res, 1);
		fprintf(stderr, "round %d req %u off %ld len %zu kind %d: res %d\n",
			round, idx, (long)r->off, r->len, r->kind, cqe->res);
		return;
	}
	if (kwb_pattern_check(r->buf, (uint64_t)r->off, r->len) >= 0)
		kwb_add(t->mismatch, 1);
}

/* Reap one round; returns the number of CQEs that never came (a lost completion or a hang). */
static int reap_round(struct io_uring *ring, struct tally *t, int round, int expect, long wait_ms)
{
	struct io_uring_cqe *cqe;
	int got = 0;

	while (got < expect) {
		int ret = kwb_wait_cqe_ms(ring, &cqe, wait_ms);
		if (ret == -ETIME)
			break;
		if (ret < 0)
			kwb_finish(KWB_EXIT_FAIL, "round %d: wait_cqe: %s", round, strerror(-ret));
		reap_one(t, cqe, round);
		io_uring_cqe_seen(ring, cqe);
		got++;
	}
	/* a duplicate/extra completion shows up after the expected ones */
	while (kwb_wait_cqe_ms(ring, &cqe, got < expect ? 0 : 100) == 0) {
		kwb_add(t->extra, 1);
		reap_one(t, cqe, round);
		io_uring_cqe_seen(ring, cqe);
	}
	return expect - got;
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 120, .size_mb = 32, .iterations = 16 };
	struct tally t;
	struct io_uring ring;
	pthread_t thr;
	off_t *slots;
	int nslots;

	kwb_init("probe-completion-accounting", argc, argv, d);
	t = (struct tally){ kwb_counter("cqes"), kwb_counter("missing_cqes"), kwb_counter("duplicate_cqes"),
			    kwb_counter("unknown_cqes"), kwb_counter("wrong_res"), kwb_counter("short_res"),
			    kwb_counter("data_mismatch"), kwb_counter("extra_cqes"),
			    { kwb_counter("ok_cached"), kwb_counter("ok_uncached"), kwb_counter("ok_half_cached") } };
	long *c_reads = kwb_counter("reads_submitted"), *c_rounds = kwb_counter("rounds");
	c_drops = kwb_counter("dontneed_calls");
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	nslots = (int)(fsize / SLOT);
	if (nslots < QD)
		kwb_finish(KWB_EXIT_SETUP, "target too small: %ld bytes, need %ld", (long)fsize, QD * SLOT);
	kwb_fill_pattern_file(fd, fsize);
	slots = calloc((size_t)nslots, sizeof(*slots));
	for (int i = 0; i < nslots; i++)
		slots[i] = i * SLOT;
	for (int i = 0; i < QD; i++)
		reqs[i].buf = aligned_alloc(KWB_PAGE, MAX_LEN);
	kwb_ring_init(&ring, 2 * QD, 0);

	for (int round = 0; round < kwb_opt.iterations; round++) {
		/* --self-test-fail expects one CQE more than was submitted: must read as a lost CQE */
		int expect = QD + (kwb_opt.self_test_fail ? 1 : 0), lost;
		long wait_ms = kwb_opt.self_test_fail ? 2000 : 15000;

		prepare_round(slots, nslots);
		__atomic_store_n(&round_active, 1, __ATOMIC_RELEASE);
		if (pthread_create(&thr, NULL, dropper, NULL))
			kwb_finish(KWB_EXIT_SETUP, "pthread_create failed");
		submit_round(&ring, round);
		kwb_add(c_reads, QD);
		lost = reap_round(&ring, &t, round, expect, wait_ms);
		__atomic_store_n(&round_active, 0, __ATOMIC_RELEASE);
		pthread_join(thr, NULL);
		kwb_add(c_rounds, 1);
		if (lost) {
			kwb_add(t.missing, lost);
			kwb_finish(KWB_EXIT_FAIL, "round %d: %d of %d CQEs never arrived (waited %ld ms)",
				   round, lost, expect, wait_ms);
		}
	}
	io_uring_queue_exit(&ring);
	if (*t.dup || *t.unknown || *t.extra)
		kwb_finish(KWB_EXIT_FAIL, "%ld duplicate, %ld unknown, %ld extra CQEs", *t.dup, *t.unknown, *t.extra);
	if (*t.wrong_res)
		kwb_finish(KWB_EXIT_FAIL, "%ld reads completed with the wrong length (%ld short)",
			   *t.wrong_res, *t.short_res);
	if (*t.mismatch)
		kwb_finish(KWB_EXIT_FAIL, "%ld reads returned wrong data", *t.mismatch);
	kwb_finish(KWB_EXIT_PASS, "%ld reads, %ld CQEs, each once with the right length and data",
		   *c_reads, *t.cqes);
}
