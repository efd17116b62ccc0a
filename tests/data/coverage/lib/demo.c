/* Synthetic "kernel" file for tests/test_coverage.py: the series' lines are known. */
#include <stdio.h>

struct ops {
	int flags;
	int (*read)(int);
};

static int slow_read(int n)
{
	return n + 1;
}

static int async_read(int n)
{
	if (n < 0)
		return -11;
	if (n > 100) {
		puts("never here");
		return -1;
	}
	return n * 2;
}

int should_retry(int n)
{
	if (n & 1)
		return 0;
	if (n > 1000)
		return 0;
	return 1;
}

const struct ops demo_ops = {
	.read = async_read,
	.flags = 1 | 2,
};

int main(int argc, char **argv)
{
	int s = 0;

	for (int i = 0; i < 6; i++)
		s += should_retry(i) ? demo_ops.read(i) : slow_read(i);
	printf("%d\n", s);
	return argc > 5;
}
