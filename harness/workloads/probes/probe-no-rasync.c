/* SPDX-License-Identifier: MIT */
/*
 * probe-no-rasync — the series' own guard: io_uring may arm the page wait queue only for files whose
 * filesystem says it supports async buffered reads (FMODE_BUF_RASYNC in 2020, FOP_BUFFER_RASYNC
 * later); every other file that refuses a nonblocking read must be retried from a worker thread.
 *
 * An overlay filesystem is stacked on the target (lower, upper and work directories in its scratch
 * directory) and a file written to the lower layer is opened through it with O_NONBLOCK, so the
 * nonblocking attempt reaches the real filesystem and can fail with -EAGAIN, while the overlay's own
 * file operations do not advertise async buffered reads. The overlay is detached at once (the open
 * file keeps it alive), so nothing stays mounted. Rounds of uncached io_uring reads through it must
 * each complete with the right length and data within a bounded time; a kernel that arms the wait
 * queue for such a file hands the real filesystem a request without one.
 */
#include "probe_common.h"
#include <sys/mount.h>

#define RLEN (16 * 1024)
#define QD 32

static char base[3072], lower[3200], upper[3200], work[3200], merged[3200];

static void make_dirs(void)
{
	snprintf(base, sizeof(base), "%s/.kwb-ovl-%d", kwb_opt.dir ? kwb_opt.dir : ".", (int)getpid());
	snprintf(lower, sizeof(lower), "%s/lower", base);
	snprintf(upper, sizeof(upper), "%s/upper", base);
	snprintf(work, sizeof(work), "%s/work", base);
	snprintf(merged, sizeof(merged), "%s/merged", base);
	const char *dirs[] = { base, lower, upper, work, merged };
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (mkdir(dirs[i], 0755) && errno != EEXIST)
			kwb_finish(KWB_EXIT_SETUP, "mkdir %s: %s", dirs[i], strerror(errno));
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 60, .size_mb = 32, .iterations = 16 };
	long *c_reads = kwb_counter("reads"), *c_wrong = kwb_counter("wrong_results");
	long *c_max_ms = kwb_counter("max_round_ms");
	static unsigned char buf[QD][RLEN];
	static char opts[16384], path[4096];
	off_t offs[QD], fsize;
	struct io_uring ring;
	uint64_t rs = 0x0e1a;
	int real_fd, fd;

	kwb_init("probe-no-rasync", argc, argv, d);
	if (kwb_opt.file)
		kwb_finish(KWB_EXIT_SKIP, "needs a filesystem to stack an overlay on, not a raw device");
	make_dirs();
	kwb_opt.dir = lower;          /* the data file lives in the overlay's lower layer */
	fsize = kwb_opt.size_mb << 20;
	real_fd = kwb_open_target(&fsize);
	kwb_fill_pattern_file(real_fd, fsize);
	snprintf(opts, sizeof(opts), "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
	if (mount("overlay", merged, "overlay", 0, opts)) {
		if (errno == ENODEV)
			kwb_finish(KWB_EXIT_SKIP, "no overlay filesystem in this kernel");
		kwb_finish(KWB_EXIT_SETUP, "mount -t overlay on %s: %s", merged, strerror(errno));
	}
	snprintf(path, sizeof(path), "%s/%s", merged, strrchr(kwb_path, '/') + 1);
	fd = open(path, O_RDONLY | O_NONBLOCK);
	if (umount2(merged, MNT_DETACH))
		kwb_finish(KWB_EXIT_SETUP, "umount2(%s, MNT_DETACH): %s", merged, strerror(errno));
	if (fd < 0)
		kwb_finish(KWB_EXIT_SETUP, "open %s through the overlay: %s", path, strerror(errno));
	kwb_ring_init(&ring, QD, 0);

	for (int round = 0; round < kwb_opt.iterations; round++) {
		double t0 = kwb_now_ms();
		int got = 0;

		kwb_evict(real_fd, 0, fsize);
		for (int i = 0; i < QD; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			offs[i] = (off_t)(kwb_rand_r(&rs) % (uint64_t)(fsize / RLEN)) * RLEN;
			memset(buf[i], 0xa5, RLEN);
			io_uring_prep_read(sqe, fd, buf[i], RLEN, (uint64_t)offs[i]);
			io_uring_sqe_set_data64(sqe, (uint64_t)i);
		}
		if (io_uring_submit(&ring) != QD)
			kwb_finish(KWB_EXIT_FAIL, "round %d: io_uring_submit did not take %d SQEs", round, QD);
		while (got < QD) {
			struct io_uring_cqe *cqe;
			int ret = kwb_wait_cqe_ms(&ring, &cqe, 15000);
			if (ret)
				kwb_finish(KWB_EXIT_FAIL, "round %d: %d of %d reads through the overlay never completed "
					   "(15 s)", round, QD - got, QD);
			int i = (int)io_uring_cqe_get_data64(cqe);
			kwb_add(c_reads, 1);
			/* --self-test-fail expects the pattern one byte further on, which no read returns */
			if (cqe->res != RLEN || kwb_pattern_check(buf[i], (uint64_t)offs[i] + (kwb_opt.self_test_fail ? 1 : 0),
							    RLEN) >= 0) {
				kwb_add(c_wrong, 1);
				fprintf(stderr, "read off %ld through the overlay: res %d%s\n", (long)offs[i], cqe->res,
					cqe->res == RLEN ? " (wrong data)" : "");
			}
			io_uring_cqe_seen(&ring, cqe);
			got++;
		}
		if ((long)(kwb_now_ms() - t0) > *c_max_ms)
			*c_max_ms = (long)(kwb_now_ms() - t0);
	}
	io_uring_queue_exit(&ring);
	close(fd);
	close(real_fd);
	kwb_cleanup_file();
	kwb_path_created = 0;
	snprintf(path, sizeof(path), "%s/work", work);   /* overlayfs's own work directory */
	const char *dirs[] = { path, work, upper, lower, merged, base };
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		rmdir(dirs[i]);
	if (*c_wrong)
		kwb_finish(KWB_EXIT_FAIL, "%ld of %ld uncached reads through an overlay (no async buffered reads) "
			   "came back wrong", *c_wrong, *c_reads);
	kwb_finish(KWB_EXIT_PASS, "%ld uncached reads through an overlay (no async buffered reads), each right",
		   *c_reads);
}
