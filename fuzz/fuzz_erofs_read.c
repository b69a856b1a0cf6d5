/*
 * fuzz/fuzz_erofs_read.c - shale's EROFS reader on arbitrary images: open,
 * walk the whole tree, read every file's data, link targets and xattrs.
 * The image doubles as its own extra device (flatdev). Must never crash,
 * hang or allocate without bound.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale/erofs.h"

struct ctx {
	shl_erofs *e;
	unsigned visits;
};

static int xattr_cb(void *c, const char *name, const void *value, size_t len)
{
	(void)c; (void)name; (void)value; (void)len;
	return 0;
}

static int extent_cb(void *c, uint64_t fo, int dev, uint64_t off, uint64_t len)
{
	(void)c; (void)fo; (void)dev; (void)off; (void)len;
	return 0;
}

static int visit(void *cp, const char *path, const shl_erofs_stat *st)
{
	struct ctx *c = cp;
	char buf[4096];
	size_t got;

	(void)path;
	if (++c->visits > 5000)
		return 1; /* enough work per input */
	shl_erofs_xattrs(c->e, st->nid, xattr_cb, NULL);
	if (S_ISREG(st->mode)) {
		shl_erofs_pread(c->e, st->nid, buf, sizeof(buf), 0, &got);
		if (st->size > sizeof(buf))
			shl_erofs_pread(c->e, st->nid, buf, sizeof(buf), st->size - sizeof(buf), &got);
		shl_erofs_extents(c->e, st->nid, extent_cb, NULL);
	} else if (S_ISLNK(st->mode)) {
		shl_erofs_readlink(c->e, st->nid, buf, sizeof(buf));
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz", 0);
	struct ctx c = { 0 };
	uint64_t nid;

	if (fd < 0)
		return 0;
	if (write(fd, data, size) == (ssize_t)size && shl_erofs_open_fd(&c.e, fd, -1) == 0) {
		shl_erofs_walk(c.e, visit, &c);
		shl_erofs_lookup(c.e, "a/b", &nid);
		shl_erofs_close(c.e);
	}
	close(fd);
	return 0;
}
