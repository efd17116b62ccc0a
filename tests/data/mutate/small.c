/* A small file with one known mutant per operator site (tests/test_mutate.py). */
#define FLAG_A 1
#define FLAG_B 2
#define TWICE(x) \
	((x) + (x))

static int pick(int flags, int n)
{
	int total = 0;	/* a declaration: never deleted */

	if (flags & (FLAG_A | FLAG_B))
		total = n;
	while (n > 0 && total < 10) {
		total++;
		if (n == 3)
			break;
		n--;
	}
	if (total ||
	    n)
		return -1;
	return total; // the result
}
