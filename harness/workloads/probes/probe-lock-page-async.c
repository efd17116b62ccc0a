/* SPDX-License-Identifier: MIT */
/*
 * probe-lock-page-async — concern lock-page-async-failure-path (Linus, merging the series: "what
 * happens when the lock_page_async() case actually fails to lock", and is the retry caught by the
 * "just waiting for it to be unlocked" case or by the "lock page now" case?).
 *
 * Each phase sets up one of those situations on purpose, on a fresh (evicted) 64 KiB chunk, then
 * reads the chunk with io_uring (one 4 KiB read per page plus one 64 KiB read) and verifies data:
 *   contended  another thread is inside a synchronous pread() of the same chunk when the reads are
 *              submitted: its folios are locked for I/O, the io_uring reads find them locked and
 *              queue on the page wait queue (the lock-page-async / __folio_lock_async case);
 *   uptodate   readahead was started with POSIX_FADV_WILLNEED and nobody reads yet: the folios
 *              exist, locked under I/O, and the reads only wait for them to become uptodate
 *              (the wait_on_page_locked_async case);
 *   cold       nothing is cached or in flight: io_uring's own read starts readahead and waits;
 *   random     as cold, with POSIX_FADV_RANDOM (no readahead): the read must create the folio
 *              itself, which the non-blocking attempt refuses (the io-wq fallback).
 * Counters per phase: rounds, whether the other reader was still busy (contended) or the pages were
 * already in the page cache (uptodate) at submission, wrong results, bad data. The branch counts
 * themselves come from kprobes armed by the harness (__folio_lock_async / __lock_page_async,
 * io_async_buf_func, wake_page_function, filemap_read_folio ...): run one phase per job to separate
 * them.
 */
#include "probe_common.h"
#include <pthread.h>

#define CHUNK (64 * 1024L)
#define PAGES (CHUNK / 4096)
#define NPHASES 4
#define RACE_EXTRA 8   /* the racy phases may run up to 8x the asked-for rounds */

static const char *phase_names[NPHASES] = { "contended", "uptodate", "cold", "random" };
static int fd, fd_random;
static off_t fsize;
static unsigned char *bufs;   /* PAGES + 1 buffers: one per page, then the whole chunk */
static long *c_wrong, *c_bad, *c_missing;

struct helper {
	off_t off;
	volatile int go, started, done;
	unsigned char buf[CHUNK];
};

static void *helper_read(void *p)
{
	struct helper *h = p;

	while (!__atomic_load_n(&h->go, __ATOMIC_ACQUIRE))
		;
	__atomic_store_n(&h->started, 1, __ATOMIC_RELEASE);
	if (kwb_read_all(fd, h->buf, CHUNK, h->off) || kwb_pattern_check(h->buf, (uint64_t)h->off, CHUNK) >= 0)
		kwb_add(c_bad, 1);
	__atomic_store_n(&h->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void submit_chunk(struct io_uring *ring, int rfd, off_t off)
{
	for (int i = 0; i <= PAGES; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		unsigned char *b = bufs + (size_t)i * CHUNK;
		if (i < PAGES)
			io_uring_prep_read(sqe, rfd, b, 4096, (uint64_t)(off + i * 4096L));
		else
			io_uring_prep_read(sqe, rfd, b, CHUNK, (uint64_t)off);
		io_uring_sqe_set_data64(sqe, (uint64_t)i);
	}
	io_uring_submit(ring);
}

static void reap_chunk(struct io_uring *ring, off_t off, long *c_max_ms, double t0)
{
	struct io_uring_cqe *cqe;

	for (int got = 0; got <= PAGES; got++) {
		if (kwb_wait_cqe_ms(ring, &cqe, 15000)) {
			kwb_add(c_missing, PAGES + 1 - got);
			kwb_finish(KWB_EXIT_FAIL, "%d reads of chunk %ld never completed (15 s)",
				   (int)(PAGES + 1 - got), (long)off);
		}
		int i = (int)io_uring_cqe_get_data64(cqe);
		long len = i < PAGES ? 4096 : CHUNK;
		off_t at = i < PAGES ? off + i * 4096L : off;
		/* --self-test-fail checks every read against the pattern one page further on */
		uint64_t want_off = (uint64_t)at + (kwb_opt.self_test_fail ? 4096 : 0);
		if (cqe->res != len)
			kwb_add(c_wrong, 1);
		else if (kwb_pattern_check(bufs + (size_t)i * CHUNK, want_off, (size_t)len) >= 0)
			kwb_add(c_bad, 1);
		io_uring_cqe_seen(ring, cqe);
	}
	if ((long)(kwb_now_ms() - t0) > *c_max_ms)
		*c_max_ms = (long)(kwb_now_ms() - t0);
}

static void run_phase(struct io_uring *ring, int phase, int rounds, off_t *next_chunk)
{
	char name[64];
	long *c_rounds, *c_busy, *c_resident, *c_max_ms;

	snprintf(name, sizeof(name), "%s_rounds", phase_names[phase]);
	c_rounds = kwb_counter(strdup(name));
	snprintf(name, sizeof(name), "%s_%s", phase_names[phase],
		 phase == 0 ? "other_reader_busy_at_submit" : "io_in_flight_at_submit");
	c_busy = kwb_counter(strdup(name));
	snprintf(name, sizeof(name), "%s_uptodate_pages_at_submit", phase_names[phase]);
	c_resident = kwb_counter(strdup(name));
	snprintf(name, sizeof(name), "%s_max_ms", phase_names[phase]);
	c_max_ms = kwb_counter(strdup(name));

	/*
	 * A contended (uptodate) round needs the helper's read (the readahead) still in flight when the
	 * io_uring reads are submitted, which is a race with the device: on a fast one (TCG with the
	 * image in the host's page cache) many rounds miss it. So these phases keep going past `rounds`
	 * until one round hit the case or `rounds` * RACE_EXTRA rounds ran, and each contended miss
	 * halves the head start the helper gets; the counters say how many rounds ran and how many hit.
	 */
	double head_start_ms = 0.05;
	int max_rounds = phase <= 1 ? rounds * RACE_EXTRA : rounds;

	for (int r = 0; r < max_rounds && (r < rounds || *c_busy == 0); r++) {
		off_t off = *next_chunk;
		struct helper *h = NULL;
		pthread_t thr;
		double t0;
		long res;

		*next_chunk = (off + CHUNK) % fsize;
		kwb_evict(fd, off, CHUNK);
		if (phase == 1)
			posix_fadvise(fd, off, CHUNK, POSIX_FADV_WILLNEED);
		/* contended: counted before the helper starts, so nothing sits between its read and ours */
		res = kwb_resident_pages(fd, off, CHUNK);
		if (phase == 0) {
			h = calloc(1, sizeof(*h));
			h->off = off;
			pthread_create(&thr, NULL, helper_read, h);
			__atomic_store_n(&h->go, 1, __ATOMIC_RELEASE);
			while (!__atomic_load_n(&h->started, __ATOMIC_ACQUIRE))
				;
			/* let the helper get into the page cache and lock the folios for I/O */
			for (double s = kwb_now_ms(); kwb_now_ms() - s < head_start_ms;)
				;
			if (!__atomic_load_n(&h->done, __ATOMIC_ACQUIRE))
				kwb_add(c_busy, 1);
			else
				head_start_ms /= 2;
		}
		/* mincore() reports only uptodate folios: fewer than PAGES means readahead still in flight */
		if (phase == 1 && res >= 0 && res < PAGES)
			kwb_add(c_busy, 1);
		kwb_add(c_resident, res > 0 ? res : 0);
		t0 = kwb_now_ms();
		submit_chunk(ring, phase == 3 ? fd_random : fd, off);
		reap_chunk(ring, off, c_max_ms, t0);
		if (h) {
			pthread_join(thr, NULL);
			free(h);
		}
		kwb_add(c_rounds, 1);
	}
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 120, .size_mb = 32, .iterations = 32 };
	struct io_uring ring;
	off_t next = 0;
	int ran = 0;

	kwb_init("probe-lock-page-async", argc, argv, d);
	c_wrong = kwb_counter("wrong_res");
	c_bad = kwb_counter("bad_data");
	c_missing = kwb_counter("missing_cqes");
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	if (fsize < 4 * CHUNK)
		kwb_finish(KWB_EXIT_SETUP, "target too small");
	fsize -= fsize % CHUNK;
	kwb_fill_pattern_file(fd, fsize);
	fd_random = open(kwb_path, O_RDONLY);
	if (fd_random < 0)
		kwb_finish(KWB_EXIT_SETUP, "reopen %s: %s", kwb_path, strerror(errno));
	posix_fadvise(fd_random, 0, 0, POSIX_FADV_RANDOM);
	bufs = aligned_alloc(KWB_PAGE, (size_t)(PAGES + 1) * CHUNK);
	kwb_ring_init(&ring, 64, 0);
	for (int p = 0; p < NPHASES; p++) {
		if (kwb_opt.phase && strcmp(kwb_opt.phase, phase_names[p]))
			continue;
		run_phase(&ring, p, kwb_opt.iterations, &next);
		ran++;
	}
	io_uring_queue_exit(&ring);
	if (!ran)
		kwb_finish(KWB_EXIT_SETUP, "unknown phase %s (contended, uptodate, cold, random)", kwb_opt.phase);
	if (*c_missing || *c_wrong || *c_bad)
		kwb_finish(KWB_EXIT_FAIL, "%ld reads with the wrong length, %ld with wrong data", *c_wrong, *c_bad);
	kwb_finish(KWB_EXIT_PASS, "%d phase(s), at least %d rounds each: every read complete and correct", ran,
		   kwb_opt.iterations);
}
