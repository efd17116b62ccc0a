/* fake io_uring */
static int io_read(int x)
{
	int ret = x;

	return ret;
}

static int io_write(int x)
{
	int ret = x;

	return ret;
}
