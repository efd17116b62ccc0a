/* SPDX-License-Identifier: MIT */
/*
 * probe-data-integrity — concern xfs-wrong-data (Andres Freund saw oopses and wrong data on XFS
 * running postgres on the series).
 *
 * Every 4 KiB block carries a header (magic, its own block index, a generation) and a checksum over
 * header + payload; the payload is derived from (index, generation). Several reader threads, each
 * with its own ring, keep buffered reads of 1..8 blocks in flight while writer threads rewrite
 * other blocks with a new generation and evictor threads drop random ranges from the page cache.
 * A per-block reader/writer claim keeps a block from being rewritten while a read of it is in
 * flight, so any mismatch (wrong block, stale generation, bad checksum, short read) is a kernel bug.
 */
#include "probe_common.h"
#include <pthread.h>

#define BLK 4096
#define MAGIC 0x6b77622d626c6b31ULL /* "kwb-blk1" */
#define RQD 16
#define MAX_BLKS 8

struct hdr {
	uint64_t magic, index, gen, csum;
};

static int fd;
static long nblocks;
static int *claim;          /* >0 readers, -1 writer, 0 free */
static uint64_t *gen_of;    /* generation last written (valid while claimed) */
static volatile int stop;
static long bad_reports;
static long *c_reads, *c_blocks, *c_bad_magic, *c_bad_index, *c_stale, *c_bad_csum, *c_wrong_res;
static long *c_writes, *c_evicts, *c_busy, *c_errors;

static uint64_t fnv(const unsigned char *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

static uint64_t block_csum(const unsigned char *b)
{
	uint64_t h = fnv(b, 24, 0xcbf29ce484222325ULL);

	return fnv(b + sizeof(struct hdr), BLK - sizeof(struct hdr), h);
}

static void make_block(unsigned char *b, uint64_t index, uint64_t gen)
{
	struct hdr *h = (struct hdr *)b;

	for (size_t i = sizeof(*h); i < BLK; i += 8) {
		uint64_t w = kwb_mix(index * 1000003ULL + gen * 7919ULL + i);
		memcpy(b + i, &w, 8);
	}
	h->magic = MAGIC;
	h->index = index;
	h->gen = gen;
	h->csum = block_csum(b);
}

static int verify_block(const unsigned char *b, uint64_t index, uint64_t gen)
{
	const struct hdr *h = (const struct hdr *)b;
	/* --self-test-fail perturbs the expected checksum: every block must then be reported bad */
	uint64_t want = block_csum(b) ^ (kwb_opt.self_test_fail ? 1 : 0);

	if (h->magic != MAGIC)
		return kwb_add(c_bad_magic, 1), 1;
	if (h->index != index)
		return kwb_add(c_bad_index, 1), 1;
	if (h->gen != gen)
		return kwb_add(c_stale, 1), 1;
	if (h->csum != want)
		return kwb_add(c_bad_csum, 1), 1;
	return 0;
}

static int try_claim_read(long first, int n)
{
	for (int i = 0; i < n; i++) {
		int v = __atomic_load_n(&claim[first + i], __ATOMIC_ACQUIRE);
		while (v >= 0 && !__atomic_compare_exchange_n(&claim[first + i], &v, v + 1, 0,
							      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			;
		if (v < 0) {
			while (i--)
				__atomic_sub_fetch(&claim[first + i], 1, __ATOMIC_RELEASE);
			return 0;
		}
	}
	return 1;
}

struct rd {
	long first;
	int n;
	uint64_t gens[MAX_BLKS];
	unsigned char *buf;
};

static void submit_read(struct io_uring *ring, struct rd *r, uint64_t *seed)
{
	struct io_uring_sqe *sqe;

	for (;;) {
		r->n = 1 + (int)(kwb_rand_r(seed) % MAX_BLKS);
		r->first = (long)(kwb_rand_r(seed) % (uint64_t)(nblocks - r->n));
		if (try_claim_read(r->first, r->n))
			break;
		kwb_add(c_busy, 1);
	}
	for (int i = 0; i < r->n; i++)
		r->gens[i] = __atomic_load_n(&gen_of[r->first + i], __ATOMIC_ACQUIRE);
	memset(r->buf, 0, (size_t)r->n * BLK);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_read(sqe, fd, r->buf, (unsigned)(r->n * BLK), (uint64_t)r->first * BLK);
	io_uring_sqe_set_data(sqe, r);
}

static void complete_read(struct io_uring_cqe *cqe)
{
	struct rd *r = io_uring_cqe_get_data(cqe);
	int bad = 0;

	kwb_add(c_reads, 1);
	if (cqe->res != r->n * BLK) {
		kwb_add(c_wrong_res, 1);
		fprintf(stderr, "read of blocks %ld+%d: res %d\n", r->first, r->n, cqe->res);
	} else {
		for (int i = 0; i < r->n; i++) {
			bad += verify_block(r->buf + (size_t)i * BLK, (uint64_t)(r->first + i), r->gens[i]);
			kwb_add(c_blocks, 1);
		}
	}
	/* the first few bad reads are enough to debug; thousands would drown the job's stderr */
	if (bad && __atomic_add_fetch(&bad_reports, 1, __ATOMIC_RELAXED) <= 20)
		fprintf(stderr, "read of blocks %ld+%d: %d bad blocks\n", r->first, r->n, bad);
	for (int i = 0; i < r->n; i++)
		__atomic_sub_fetch(&claim[r->first + i], 1, __ATOMIC_RELEASE);
}

static void *reader(void *arg)
{
	uint64_t seed = 0x1234ULL + (uintptr_t)arg * 7777ULL;
	struct rd rds[RQD];
	struct io_uring ring;
	struct io_uring_cqe *cqe;
	int inflight = 0;

	kwb_ring_init(&ring, RQD, 0);
	for (int i = 0; i < RQD; i++) {
		rds[i].buf = aligned_alloc(KWB_PAGE, MAX_BLKS * BLK);
		submit_read(&ring, &rds[i], &seed);
		inflight++;
	}
	io_uring_submit(&ring);
	while (inflight) {
		int ret = kwb_wait_cqe_ms(&ring, &cqe, 20000);
		if (ret)
			kwb_finish(KWB_EXIT_FAIL, "reader: no completion within 20 s (%s)", strerror(-ret));
		complete_read(cqe);
		struct rd *r = io_uring_cqe_get_data(cqe);
		io_uring_cqe_seen(&ring, cqe);
		inflight--;
		if (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
			submit_read(&ring, r, &seed);
			io_uring_submit(&ring);
			inflight++;
		}
	}
	io_uring_queue_exit(&ring);
	return NULL;
}

static void *writer(void *arg)
{
	uint64_t seed = 0x9999ULL + (uintptr_t)arg;
	unsigned char *b = aligned_alloc(KWB_PAGE, BLK);
	long n = 0;

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		long i = (long)(kwb_rand_r(&seed) % (uint64_t)nblocks);
		int zero = 0;
		if (!__atomic_compare_exchange_n(&claim[i], &zero, -1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			kwb_add(c_busy, 1);
			continue;
		}
		make_block(b, (uint64_t)i, gen_of[i] + 1);
		if (kwb_write_all(fd, b, BLK, (off_t)i * BLK))
			kwb_add(c_errors, 1);
		else
			__atomic_store_n(&gen_of[i], gen_of[i] + 1, __ATOMIC_RELEASE);
		/* write back now and then so the evictors can drop rewritten pages too */
		if (++n % 32 == 0)
			fdatasync(fd);
		__atomic_store_n(&claim[i], 0, __ATOMIC_RELEASE);
		kwb_add(c_writes, 1);
		usleep(50);
	}
	free(b);
	return NULL;
}

static void *evictor(void *arg)
{
	uint64_t seed = 0x4242ULL + (uintptr_t)arg;

	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		long first = (long)(kwb_rand_r(&seed) % (uint64_t)nblocks);
		long n = 1 + (long)(kwb_rand_r(&seed) % 64);
		if (kwb_rand_r(&seed) % 50 == 0)
			kwb_evict(fd, 0, 0);
		else
			kwb_evict(fd, (off_t)first * BLK, (off_t)n * BLK);
		kwb_add(c_evicts, 1);
		usleep(100);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 120, .size_mb = 32, .threads = 3, .seconds = 8 };
	pthread_t thr[32];
	int nthr = 0, nreaders;
	off_t size;
	unsigned char *b;

	kwb_init("probe-data-integrity", argc, argv, d);
	c_reads = kwb_counter("reads");
	c_blocks = kwb_counter("blocks_verified");
	c_bad_magic = kwb_counter("bad_magic");
	c_bad_index = kwb_counter("wrong_block");
	c_stale = kwb_counter("stale_generation");
	c_bad_csum = kwb_counter("bad_checksum");
	c_wrong_res = kwb_counter("wrong_res");
	c_writes = kwb_counter("blocks_rewritten");
	c_evicts = kwb_counter("evictions");
	c_busy = kwb_counter("claim_collisions");
	c_errors = kwb_counter("write_errors");
	nreaders = kwb_opt.threads < 1 ? 1 : (kwb_opt.threads > 16 ? 16 : kwb_opt.threads);
	size = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&size);
	nblocks = (long)(size / BLK);
	if (nblocks < 2 * MAX_BLKS)
		kwb_finish(KWB_EXIT_SETUP, "target too small (%ld bytes)", (long)size);
	claim = calloc((size_t)nblocks, sizeof(*claim));
	gen_of = calloc((size_t)nblocks, sizeof(*gen_of));
	b = aligned_alloc(KWB_PAGE, 1 << 20);
	for (long i = 0; i < nblocks; i += 256) {
		long n = nblocks - i < 256 ? nblocks - i : 256;
		for (long j = 0; j < n; j++) {
			gen_of[i + j] = 1;
			make_block(b + j * BLK, (uint64_t)(i + j), 1);
		}
		if (kwb_write_all(fd, b, (size_t)n * BLK, (off_t)i * BLK))
			kwb_finish(KWB_EXIT_SETUP, "writing %s: %s", kwb_path, strerror(errno));
	}
	if (fsync(fd))
		kwb_finish(KWB_EXIT_SETUP, "fsync: %s", strerror(errno));
	kwb_evict(fd, 0, 0);

	for (int i = 0; i < nreaders; i++)
		pthread_create(&thr[nthr++], NULL, reader, (void *)(uintptr_t)i);
	pthread_create(&thr[nthr++], NULL, writer, (void *)1);
	pthread_create(&thr[nthr++], NULL, evictor, (void *)1);
	pthread_create(&thr[nthr++], NULL, evictor, (void *)2);
	for (int s = 0; s < kwb_opt.seconds * 10; s++) {
		usleep(100000);
		if (*c_bad_magic + *c_bad_index + *c_stale + *c_bad_csum + *c_wrong_res > 1000)
			break;
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < nthr; i++)
		pthread_join(thr[i], NULL);

	long bad = *c_bad_magic + *c_bad_index + *c_stale + *c_bad_csum;
	if (*c_wrong_res || bad)
		kwb_finish(KWB_EXIT_FAIL, "%ld bad blocks (magic %ld, wrong block %ld, stale %ld, checksum %ld), "
			   "%ld reads with wrong length", bad, *c_bad_magic, *c_bad_index, *c_stale,
			   *c_bad_csum, *c_wrong_res);
	if (*c_errors)
		kwb_finish(KWB_EXIT_SETUP, "%ld block rewrites failed", *c_errors);
	if (*c_blocks == 0)
		kwb_finish(KWB_EXIT_FAIL, "no block was read");
	kwb_finish(KWB_EXIT_PASS, "%ld blocks verified in %ld reads while %ld blocks were rewritten",
		   *c_blocks, *c_reads, *c_writes);
}
