/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for kwb's review-concern probes (header-only: each probe is one translation unit).
 *
 * Contract with harness/workloads/probes.py:
 *   - the last stdout line is `KWB-RESULT {json}` with probe, ok, skip, reason and counters;
 *   - exit 0 pass, 1 a check failed, 77 skip (reason given), 2 the probe could not set itself up;
 *   - an internal alarm() turns a hang into a failed probe (exit 1) with the counters gathered so far.
 * Options every probe understands: --file PATH (regular file or block device, overwritten),
 * --dir DIR (a scratch file is created there and removed), --timeout S, --self-test-fail
 * (or KWB_PROBE_SELF_TEST_FAIL=1: the probe checks against a deliberately wrong expectation, so
 * the harness can prove the probe is able to fail), --size-mb, --iterations, --threads, --seconds,
 * --phase NAME (probes with phases run only that one).
 */
#ifndef KWB_PROBE_COMMON_H
#define KWB_PROBE_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KWB_UNUSED __attribute__((unused))
#define KWB_EXIT_PASS 0
#define KWB_EXIT_FAIL 1
#define KWB_EXIT_SETUP 2
#define KWB_EXIT_SKIP 77
#define KWB_PAGE 4096L
#define KWB_MAX_COUNTERS 48

struct kwb_opts {
	const char *file;
	const char *dir;
	int timeout;
	int self_test_fail;
	long size_mb;
	int iterations;
	int threads;
	int seconds;
	const char *phase;      /* probe-specific: run only this phase (NULL = all) */
	int fadvise_random;     /* POSIX_FADV_RANDOM on the target: no read-ahead for this file */
};

static KWB_UNUSED const char *kwb_probe_name = "probe";
static KWB_UNUSED struct kwb_opts kwb_opt;
static KWB_UNUSED char kwb_path[4096];
static KWB_UNUSED int kwb_path_created;
static KWB_UNUSED int kwb_is_bdev;
static KWB_UNUSED const char *kwb_counter_names[KWB_MAX_COUNTERS];
static KWB_UNUSED long kwb_counter_values[KWB_MAX_COUNTERS];
static KWB_UNUSED int kwb_ncounters;

/* Counters are registered once (single-threaded set-up) and bumped atomically from any thread. */
static KWB_UNUSED long *kwb_counter(const char *name)
{
	for (int i = 0; i < kwb_ncounters; i++)
		if (!strcmp(kwb_counter_names[i], name))
			return &kwb_counter_values[i];
	if (kwb_ncounters == KWB_MAX_COUNTERS)
		abort();
	kwb_counter_names[kwb_ncounters] = name;
	return &kwb_counter_values[kwb_ncounters++];
}

static inline void kwb_add(long *c, long v)
{
	__atomic_add_fetch(c, v, __ATOMIC_RELAXED);
}

/* Async-signal-safe formatting: the alarm handler uses the same writer as the normal exit path. */
static KWB_UNUSED size_t kwb_put(char *buf, size_t pos, size_t cap, const char *s)
{
	while (*s && pos + 1 < cap)
		buf[pos++] = *s++;
	return pos;
}

static KWB_UNUSED size_t kwb_put_json_str(char *buf, size_t pos, size_t cap, const char *s)
{
	pos = kwb_put(buf, pos, cap, "\"");
	for (; *s && pos + 3 < cap; s++) {
		if (*s == '"' || *s == '\\')
			buf[pos++] = '\\';
		buf[pos++] = (*s == '\n' || *s == '\t') ? ' ' : *s;
	}
	return kwb_put(buf, pos, cap, "\"");
}

static KWB_UNUSED size_t kwb_put_long(char *buf, size_t pos, size_t cap, long v)
{
	char tmp[24];
	int n = 0;
	unsigned long u = v < 0 ? -(unsigned long)v : (unsigned long)v;

	if (v < 0)
		pos = kwb_put(buf, pos, cap, "-");
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	while (n && pos + 1 < cap)
		buf[pos++] = tmp[--n];
	return pos;
}

static KWB_UNUSED void kwb_emit(int ok, int skip, const char *reason)
{
	static char buf[8192];
	size_t p = 0, cap = sizeof(buf);

	p = kwb_put(buf, p, cap, "\nKWB-RESULT {\"probe\": ");
	p = kwb_put_json_str(buf, p, cap, kwb_probe_name);
	p = kwb_put(buf, p, cap, ok ? ", \"ok\": true" : ", \"ok\": false");
	p = kwb_put(buf, p, cap, skip ? ", \"skip\": true" : ", \"skip\": false");
	p = kwb_put(buf, p, cap, ", \"self_test_fail\": ");
	p = kwb_put(buf, p, cap, kwb_opt.self_test_fail ? "true" : "false");
	p = kwb_put(buf, p, cap, ", \"reason\": ");
	p = kwb_put_json_str(buf, p, cap, reason ? reason : "");
	p = kwb_put(buf, p, cap, ", \"counters\": {");
	for (int i = 0; i < kwb_ncounters; i++) {
		p = kwb_put(buf, p, cap, i ? ", " : "");
		p = kwb_put_json_str(buf, p, cap, kwb_counter_names[i]);
		p = kwb_put(buf, p, cap, ": ");
		p = kwb_put_long(buf, p, cap, __atomic_load_n(&kwb_counter_values[i], __ATOMIC_RELAXED));
	}
	p = kwb_put(buf, p, cap, "}}\n");
	if (write(STDOUT_FILENO, buf, p) < 0)
		_exit(KWB_EXIT_SETUP);
}

static KWB_UNUSED void kwb_cleanup_file(void)
{
	if (kwb_path_created)
		unlink(kwb_path);
}

static KWB_UNUSED __attribute__((noreturn, format(printf, 2, 3))) void kwb_finish(int code, const char *fmt, ...)
{
	char reason[1024] = "";

	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(reason, sizeof(reason), fmt, ap);
		va_end(ap);
	}
	fflush(stdout);
	fflush(stderr);
	kwb_cleanup_file();
	kwb_emit(code == KWB_EXIT_PASS, code == KWB_EXIT_SKIP, reason);
	_exit(code);
}

static KWB_UNUSED void kwb_on_alarm(int sig)
{
	(void)sig;
	kwb_cleanup_file();
	kwb_emit(0, 0, "internal timeout: the probe did not finish (hang)");
	_exit(KWB_EXIT_FAIL);
}

static KWB_UNUSED __attribute__((noreturn)) void kwb_usage(void)
{
	fprintf(stderr, "usage: %s [--file PATH | --dir DIR] [--timeout S] [--self-test-fail] "
		"[--size-mb N] [--iterations N] [--threads N] [--seconds N] [--phase NAME] "
		"[--fadvise-random]\n", kwb_probe_name);
	kwb_finish(KWB_EXIT_SETUP, "bad arguments");
}

static KWB_UNUSED long kwb_num_arg(int argc, char **argv, int *i)
{
	char *end;
	long v;

	if (*i + 1 >= argc)
		kwb_usage();
	v = strtol(argv[++*i], &end, 10);
	if (*end || v < 0)
		kwb_usage();
	return v;
}

/* Parse the common options; defaults come from the probe. Starts the watchdog. */
static KWB_UNUSED void kwb_init(const char *name, int argc, char **argv, struct kwb_opts defaults)
{
	const char *env = getenv("KWB_PROBE_SELF_TEST_FAIL");

	kwb_probe_name = name;
	kwb_opt = defaults;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--file") && i + 1 < argc)
			kwb_opt.file = argv[++i];
		else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
			kwb_opt.dir = argv[++i];
		else if (!strcmp(argv[i], "--timeout"))
			kwb_opt.timeout = (int)kwb_num_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--size-mb"))
			kwb_opt.size_mb = kwb_num_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--iterations"))
			kwb_opt.iterations = (int)kwb_num_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--threads"))
			kwb_opt.threads = (int)kwb_num_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--seconds"))
			kwb_opt.seconds = (int)kwb_num_arg(argc, argv, &i);
		else if (!strcmp(argv[i], "--phase") && i + 1 < argc)
			kwb_opt.phase = argv[++i];
		else if (!strcmp(argv[i], "--self-test-fail"))
			kwb_opt.self_test_fail = 1;
		else if (!strcmp(argv[i], "--fadvise-random"))
			kwb_opt.fadvise_random = 1;
		else
			kwb_usage();
	}
	if (env && *env && strcmp(env, "0"))
		kwb_opt.self_test_fail = 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, kwb_on_alarm);
	signal(SIGPIPE, SIG_IGN);
	if (kwb_opt.timeout > 0)
		alarm((unsigned)kwb_opt.timeout);
}

static KWB_UNUSED double kwb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* splitmix64: a cheap, well-mixed function of the file offset, so any byte can be checked alone. */
static inline uint64_t kwb_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline unsigned char kwb_pattern_byte(uint64_t off)
{
	uint64_t w = kwb_mix(off & ~7ULL);

	return (unsigned char)(w >> (8 * (off & 7)));
}

static KWB_UNUSED void kwb_pattern_fill(unsigned char *buf, uint64_t off, size_t len)
{
	size_t i = 0;

	/* byte by byte up to a word boundary of the file offset, then whole words (TCG is slow) */
	for (; i < len && ((off + i) & 7); i++)
		buf[i] = kwb_pattern_byte(off + i);
	for (; i + 8 <= len; i += 8) {
		uint64_t w = kwb_mix(off + i);
		memcpy(buf + i, &w, 8);
	}
	for (; i < len; i++)
		buf[i] = kwb_pattern_byte(off + i);
}

/* Returns the index of the first wrong byte, or -1 when buf holds the pattern for [off, off+len). */
static KWB_UNUSED long kwb_pattern_check(const unsigned char *buf, uint64_t off, size_t len)
{
	size_t i = 0;

	for (; i < len && ((off + i) & 7); i++)
		if (buf[i] != kwb_pattern_byte(off + i))
			return (long)i;
	for (; i + 8 <= len; i += 8) {
		uint64_t w = kwb_mix(off + i);
		if (memcmp(buf + i, &w, 8))
			break;
	}
	for (; i < len; i++)
		if (buf[i] != kwb_pattern_byte(off + i))
			return (long)i;
	return -1;
}

static KWB_UNUSED void kwb_evict(int fd, off_t off, off_t len)
{
	/* DONTNEED drops only clean pages; callers fdatasync after writing. */
	posix_fadvise(fd, off, len, POSIX_FADV_DONTNEED);
}

/* Pages of [off, off+len) cached and uptodate (mincore() does not count folios still under read I/O); -1 if unusable. */
static KWB_UNUSED long kwb_resident_pages(int fd, off_t off, off_t len)
{
	off_t start = off & ~(KWB_PAGE - 1);
	size_t span = (size_t)(off + len - start);
	size_t pages = (span + KWB_PAGE - 1) / KWB_PAGE;
	unsigned char vec[1024];
	long n = 0;
	void *map;

	if (pages > sizeof(vec))
		return -1;
	map = mmap(NULL, span, PROT_READ, MAP_SHARED, fd, start);
	if (map == MAP_FAILED)
		return -1;
	if (mincore(map, span, vec) == 0)
		for (size_t i = 0; i < pages; i++)
			n += vec[i] & 1;
	else
		n = -1;
	munmap(map, span);
	return n;
}

static KWB_UNUSED int kwb_write_all(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, off);
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

static KWB_UNUSED int kwb_read_all(int fd, void *buf, size_t len, off_t off)
{
	char *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, off);
		if (r <= 0)
			return -1;
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

/*
 * Open the scratch target read-write: --file (a regular file or a block device, whose contents are
 * overwritten) or a new file in --dir. *size is capped to a block device's size.
 */
static KWB_UNUSED int kwb_open_target(off_t *size)
{
	struct stat st;
	int fd;

	if (kwb_opt.file) {
		snprintf(kwb_path, sizeof(kwb_path), "%s", kwb_opt.file);
		fd = open(kwb_path, O_RDWR | O_CREAT, 0644);
	} else {
		snprintf(kwb_path, sizeof(kwb_path), "%s/.kwb-%s-%d.dat",
			 kwb_opt.dir ? kwb_opt.dir : ".", kwb_probe_name, (int)getpid());
		fd = open(kwb_path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		kwb_path_created = fd >= 0;
	}
	if (fd < 0)
		kwb_finish(KWB_EXIT_SETUP, "cannot open %s: %s", kwb_path, strerror(errno));
	/* The read-ahead dimension: this file's reads then bring in only the pages asked for. */
	if (kwb_opt.fadvise_random && (errno = posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)))
		kwb_finish(KWB_EXIT_SETUP, "posix_fadvise(%s, RANDOM): %s", kwb_path, strerror(errno));
	if (fstat(fd, &st) == 0 && S_ISBLK(st.st_mode)) {
		uint64_t bytes = 0;
		kwb_is_bdev = 1;
		if (ioctl(fd, BLKGETSIZE64, &bytes) == 0 && (off_t)bytes < *size)
			*size = (off_t)(bytes & ~(uint64_t)(KWB_PAGE - 1));
	}
	return fd;
}

/* Write the offset pattern over [off, off+len) (no sync). */
static KWB_UNUSED void kwb_fill_pattern_range(int fd, off_t off, off_t len)
{
	size_t chunk = 1 << 20;
	unsigned char *buf = malloc(chunk);
	off_t end = off + len;

	if (!buf)
		kwb_finish(KWB_EXIT_SETUP, "out of memory");
	for (; off < end; off += (off_t)chunk) {
		size_t n = (size_t)(end - off) < chunk ? (size_t)(end - off) : chunk;
		kwb_pattern_fill(buf, (uint64_t)off, n);
		if (kwb_write_all(fd, buf, n, off))
			kwb_finish(KWB_EXIT_SETUP, "writing %s: %s", kwb_path, strerror(errno));
	}
	free(buf);
}

/* Fill [0, size) with the offset pattern, make it durable and drop it from the page cache. */
static KWB_UNUSED void kwb_fill_pattern_file(int fd, off_t size)
{
	kwb_fill_pattern_range(fd, 0, size);
	if (!kwb_is_bdev && ftruncate(fd, size))
		kwb_finish(KWB_EXIT_SETUP, "truncating %s: %s", kwb_path, strerror(errno));
	if (fsync(fd))
		kwb_finish(KWB_EXIT_SETUP, "fsync %s: %s", kwb_path, strerror(errno));
	kwb_evict(fd, 0, size);
}

/* io_uring_queue_init, turning "io_uring unavailable" into a skip rather than a failure. */
static KWB_UNUSED void kwb_ring_init(struct io_uring *ring, unsigned entries, unsigned flags)
{
	int ret = io_uring_queue_init(entries, ring, flags);

	if (ret == -ENOSYS || ret == -EPERM)
		kwb_finish(KWB_EXIT_SKIP, "io_uring unavailable: %s", strerror(-ret));
	if (ret < 0)
		kwb_finish(KWB_EXIT_SETUP, "io_uring_queue_init(%u, 0x%x): %s", entries, flags, strerror(-ret));
}

/*
 * Wait for one CQE for at most ms milliseconds; returns 0, -ETIME or another -errno. The wait is
 * sliced because an IOPOLL ring ignores the timeout argument and returns -ETIME at once.
 *
 * Before 5.11 (no IORING_FEAT_EXT_ARG) liburing turns a timed wait into a timeout SQE of its own: it
 * then returns the number it submitted (1) instead of 0, which read as "never completed" at once on
 * 5.8, and its SQE shifts what the next io_uring_submit() returns. There the CQ ring is polled instead
 * (with a GETEVENTS enter for an IOPOLL ring, whose completions only a poll reaps).
 */
static KWB_UNUSED int kwb_wait_cqe_ms(struct io_uring *ring, struct io_uring_cqe **cqe, long ms)
{
	double deadline = kwb_now_ms() + (double)ms;
	int ret;

	if (!(ring->features & IORING_FEAT_EXT_ARG)) {
		for (;;) {
			ret = io_uring_peek_cqe(ring, cqe);
			if (ret != -EAGAIN)
				return ret;
			if (ring->flags & IORING_SETUP_IOPOLL)
				io_uring_enter(ring->ring_fd, 0, 0, IORING_ENTER_GETEVENTS, NULL);
			if (kwb_now_ms() >= deadline)
				return -ETIME;
			usleep(200);
		}
	}
	for (;;) {
		double left = deadline - kwb_now_ms(), t0 = kwb_now_ms();
		long slice = left > 100 ? 100 : (left > 0 ? (long)left : 0);
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = slice * 1000000L };

		ret = io_uring_wait_cqe_timeout(ring, cqe, &ts);
		if (ret != -ETIME && ret != -EINTR)
			return ret;
		if (kwb_now_ms() >= deadline)
			return -ETIME;
		if (kwb_now_ms() - t0 < 1)
			usleep(1000);
	}
}

static KWB_UNUSED uint64_t kwb_rand_state = 0x12345678abcdefULL;

/* xorshift64*, seeded per thread via kwb_rand_r(&state); kwb_rand() is the main thread's. */
static inline uint64_t kwb_rand_r(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static inline uint64_t kwb_rand(void)
{
	return kwb_rand_r(&kwb_rand_state);
}

#endif
