/* SPDX-License-Identifier: MIT */
/*
 * probe-ring-exit-inflight — concern lock-page-async-failure-path (Linus: "what happens when the
 * lock_page_async() case actually fails to lock"), and the missed wake-ups reviewers worried about.
 *
 * Children each submit a queue of buffered reads of uncached pages, so the reads sit on page wait
 * queues, and then leave in one of four ways: close the ring and exit, exit with the ring open, get
 * SIGKILLed, or have the submitting thread exit while the main thread closes the ring. Checks:
 *   - every child is gone within a bound (a missed wake-up or a stuck cancel hangs exit);
 *   - afterwards a fresh reader can read the whole file back with the right data within a bound
 *     (a page left locked by the failure path would hang it);
 *   - the io_kiocb slab does not keep growing (leaked requests), when /proc/slabinfo is readable.
 * The harness scans dmesg for splats after the probe.
 */
#include "probe_common.h"
#include <pthread.h>
#include <sys/wait.h>

#define QD 64
#define MAX_LEN (64 * 1024)

static const char *mode_names[] = { "close", "exit", "kill", "thread-exit" };
static int fd;
static off_t fsize;

static long slab_active(const char *name)
{
	char line[512];
	long active = -1;
	FILE *f = fopen("/proc/slabinfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char n[128];
		long a;
		if (sscanf(line, "%127s %ld", n, &a) == 2 && !strcmp(n, name))
			active = a;
	}
	fclose(f);
	return active;
}

static void submit_uncached(struct io_uring *ring, unsigned char *bufs, uint64_t seed)
{
	for (int i = 0; i < QD; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		size_t len = (size_t)(1 + kwb_rand_r(&seed) % 16) * 4096;
		off_t off = (off_t)(kwb_rand_r(&seed) % (uint64_t)((fsize - MAX_LEN) / 4096)) * 4096;
		io_uring_prep_read(sqe, fd, bufs + (size_t)i * MAX_LEN, (unsigned)len, (uint64_t)off);
	}
	io_uring_submit(ring);
}

struct thr_arg {
	struct io_uring *ring;
	unsigned char *bufs;
	uint64_t seed;
};

static void *submitter(void *p)
{
	struct thr_arg *a = p;

	submit_uncached(a->ring, a->bufs, a->seed);
	return NULL;    /* the thread exits with its requests in flight */
}

static void child(int mode, int ready_fd, uint64_t seed)
{
	unsigned char *bufs = malloc((size_t)QD * MAX_LEN);
	struct io_uring ring;
	char c = 'r';

	kwb_ring_init(&ring, QD, 0);
	if (mode == 3) {
		struct thr_arg a = { &ring, bufs, seed };
		pthread_t t;
		pthread_create(&t, NULL, submitter, &a);
		pthread_join(t, NULL);
		io_uring_queue_exit(&ring);
		_exit(0);
	}
	submit_uncached(&ring, bufs, seed);
	if (mode == 0)
		io_uring_queue_exit(&ring);
	if (mode == 2) {
		if (write(ready_fd, &c, 1) != 1)
			_exit(3);
		pause();
	}
	_exit(0);
}

/* Wait for pid for at most ms; returns the elapsed ms or -1 when it did not go away. */
static long reap_within(pid_t pid, long ms)
{
	double t0 = kwb_now_ms();
	int status;

	while (kwb_now_ms() - t0 < (double)ms) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return (long)(kwb_now_ms() - t0);
		usleep(2000);
	}
	return -1;
}

/* Read the file back in a child (a locked page would put the reader in D state, not us). */
static int read_back_ok(long *elapsed)
{
	pid_t pid = fork();

	if (pid == 0) {
		unsigned char *buf = malloc(1 << 20);
		alarm(0);
		kwb_evict(fd, 0, fsize);
		for (off_t off = 0; off < fsize; off += 1 << 20) {
			if (kwb_read_all(fd, buf, 1 << 20, off))
				_exit(2);
			/* --self-test-fail checks against the pattern shifted by one byte */
			if (kwb_pattern_check(buf, (uint64_t)off + (kwb_opt.self_test_fail ? 1 : 0), 1 << 20) >= 0)
				_exit(1);
		}
		_exit(0);
	}
	int status = 0;
	double t0 = kwb_now_ms();
	while (waitpid(pid, &status, WNOHANG) == 0) {
		if (kwb_now_ms() - t0 > 30000) {
			kill(pid, SIGKILL);
			*elapsed = -1;
			return 0;
		}
		usleep(5000);
	}
	*elapsed = (long)(kwb_now_ms() - t0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	struct kwb_opts d = { .timeout = 180, .size_mb = 64, .iterations = 24 };
	long *c_children = kwb_counter("children"), *c_reads = kwb_counter("reads_in_flight_at_exit");
	long *c_max = kwb_counter("max_exit_ms"), *c_stuck = kwb_counter("children_stuck");
	long *c_by_mode[4] = { kwb_counter("mode_close"), kwb_counter("mode_exit"), kwb_counter("mode_kill"),
			       kwb_counter("mode_thread_exit") };
	long *c_slab0 = kwb_counter("io_kiocb_active_before"), *c_slab1 = kwb_counter("io_kiocb_active_after");
	long *c_readback = kwb_counter("readback_ms");
	long limit;

	kwb_init("probe-ring-exit-inflight", argc, argv, d);
	fsize = kwb_opt.size_mb << 20;
	fd = kwb_open_target(&fsize);
	if (fsize < 4 * MAX_LEN)
		kwb_finish(KWB_EXIT_SETUP, "target too small");
	kwb_fill_pattern_file(fd, fsize);
	*c_slab0 = slab_active("io_kiocb");

	for (int i = 0; i < kwb_opt.iterations; i++) {
		int mode = i % 4, ready[2];
		char c;
		pid_t pid;
		long ms;

		if (pipe(ready))
			kwb_finish(KWB_EXIT_SETUP, "pipe: %s", strerror(errno));
		kwb_evict(fd, 0, fsize);
		pid = fork();
		if (pid < 0)
			kwb_finish(KWB_EXIT_SETUP, "fork: %s", strerror(errno));
		if (pid == 0) {
			alarm(0);
			close(ready[0]);
			child(mode, ready[1], 0x5eedULL + (uint64_t)i * 31);
		}
		close(ready[1]);
		if (mode == 2) {
			if (read(ready[0], &c, 1) == 1)
				kill(pid, SIGKILL);
		}
		close(ready[0]);
		ms = reap_within(pid, 15000);
		kwb_add(c_children, 1);
		kwb_add(c_reads, QD);
		kwb_add(c_by_mode[mode], 1);
		if (ms < 0) {
			kwb_add(c_stuck, 1);
			kill(pid, SIGKILL);
			kwb_finish(KWB_EXIT_FAIL, "child %d (%s) did not exit within 15 s with reads in flight",
				   i, mode_names[mode]);
		}
		if (ms > *c_max)
			*c_max = ms;
	}
	/* ring teardown is deferred to a workqueue: give it a moment before counting requests */
	usleep(500000);
	*c_slab1 = slab_active("io_kiocb");
	if (!read_back_ok(c_readback))
		kwb_finish(KWB_EXIT_FAIL, *c_readback < 0 ? "reading the file back hung (a page left locked?)"
			   : "reading the file back returned wrong data or failed");
	/* every child left QD requests behind: a leak of most of them shows in the active count */
	limit = (long)kwb_opt.iterations * QD / 2;
	if (*c_slab0 >= 0 && *c_slab1 - *c_slab0 > limit)
		kwb_finish(KWB_EXIT_FAIL, "io_kiocb slab grew by %ld objects (limit %ld): requests leaked",
			   *c_slab1 - *c_slab0, limit);
	kwb_finish(KWB_EXIT_PASS, "%ld children left with %ld reads in flight; all exited (max %ld ms), "
		   "file read back intact in %ld ms", *c_children, *c_reads, *c_max, *c_readback);
}
