/*
 * fuzz/fuzz_erofs_read.c - shale's EROFS reader on arbitrary images: open
 * from a memfd (flatdev: extra devices live inside the image), walk the whole
 * tree, read every file's data, extents, link targets and xattrs, and look up
 * a few paths. Images with extra devices are read a second time with the
 * image itself as device 1. Work per input is capped. Must never crash, hang
 * or allocate without bound.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale/erofs.h"

#define MAX_VISITS 4000
#define MAX_BYTES (4u << 20)

struct ctx {
	shl_erofs *e;
	unsigned visits;
	uint64_t bytes;
	char buf[8192];
};

static int xattr_cb(void *c, const char *name, const void *value, size_t len)
{
	(void)c;
	/* touch everything the reader hands out */
	volatile size_t n = strlen(name);
	if (len)
		n += ((const volatile uint8_t *)value)[len - 1];
	(void)n;
	return 0;
}

static int extent_cb(void *c, uint64_t fo, int dev, uint64_t off, uint64_t len)
{
	(void)c; (void)fo; (void)dev; (void)off; (void)len;
	return 0;
}

static int dirent_cb(void *c, const char *name, size_t len, uint64_t nid, unsigned type)
{
	(void)c; (void)nid; (void)type;
	return strlen(name) == len ? 0 : 1;
}

static int visit(void *cp, const char *path, const shl_erofs_stat *st)
{
	struct ctx *c = cp;
	uint64_t nid;
	size_t got;

	if (++c->visits > MAX_VISITS || c->bytes > MAX_BYTES)
		return 1; /* enough work for one input */
	shl_erofs_xattrs(c->e, st->nid, xattr_cb, NULL);
	if (c->visits < 50)
		shl_erofs_lookup(c->e, path, &nid);
	if (S_ISREG(st->mode)) {
		for (uint64_t off = 0; off < st->size && c->bytes <= MAX_BYTES; off += got) {
			if (shl_erofs_pread(c->e, st->nid, c->buf, sizeof(c->buf), off, &got) || !got)
				break;
			c->bytes += got;
		}
		shl_erofs_extents(c->e, st->nid, extent_cb, NULL);
	} else if (S_ISLNK(st->mode)) {
		shl_erofs_readlink(c->e, st->nid, c->buf, sizeof(c->buf));
	} else if (S_ISDIR(st->mode) && c->visits < 50) {
		shl_erofs_readdir(c->e, st->nid, dirent_cb, NULL);
	}
	return 0;
}

static void run(int fd, int dev_fd)
{
	static struct ctx c;
	shl_erofs_info info;
	uint64_t nid;

	memset(&c, 0, sizeof(c));
	if (shl_erofs_open_fd(&c.e, fd, dev_fd) != 0)
		return;
	shl_erofs_get_info(c.e, &info);
	shl_erofs_walk(c.e, visit, &c);
	shl_erofs_lookup(c.e, "a/b/../c", &nid);
	shl_erofs_close(c.e);
	if (dev_fd < 0 && info.extra_devices)
		run(fd, fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz", 0);

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size)
		run(fd, -1);
	close(fd);
	return 0;
}
