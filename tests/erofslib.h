/*
 * tests/erofslib.h - helpers shared by the EROFS reader tests
 * (test_erofs_read.c, test_erofs_crafted.c): little-endian stores, opening
 * an image held in memory (memfds) and reading everything in it, fixing the
 * superblock checksum after a patch.
 */
#ifndef SHL_TESTS_EROFSLIB_H
#define SHL_TESTS_EROFSLIB_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "shale/erofs.h"
#include "util/crc32c.h"

static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static inline void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

/* ---- read everything, for the corruption tests ---------------------------- */

struct all {
	shl_erofs *e;
	int visits;
	uint8_t buf[65536];
};

static inline int noop_x(void *ctx, const char *n, const void *v, size_t l) { (void)ctx; (void)n; (void)v; (void)l; return 0; }
static inline int noop_e(void *ctx, uint64_t a, int d, uint64_t b, uint64_t l) { (void)ctx; (void)a; (void)d; (void)b; (void)l; return 0; }

static inline int all_cb(void *ctx, const char *path, const shl_erofs_stat *st)
{
	struct all *a = ctx;
	int rc;
	(void)path;
	if (++a->visits > 20000)
		return SHL_ELIMIT;
	if ((rc = shl_erofs_xattrs(a->e, st->nid, noop_x, NULL)))
		return rc;
	if (S_ISREG(st->mode)) {
		size_t got;
		for (uint64_t off = 0; off < st->size && off < (1u << 22); off += got) {
			if ((rc = shl_erofs_pread(a->e, st->nid, a->buf, sizeof(a->buf), off, &got)))
				return rc;
			if (!got)
				return -100;
		}
		return shl_erofs_extents(a->e, st->nid, noop_e, NULL);
	}
	if (S_ISLNK(st->mode))
		return shl_erofs_readlink(a->e, st->nid, (char *)a->buf, sizeof(a->buf));
	return 0;
}

static inline int open_mem(shl_erofs **e, const uint8_t *img, size_t len, const uint8_t *dev, size_t dlen, int *fds)
{
	fds[0] = memfd_create("img", 0);
	fds[1] = dev ? memfd_create("dev", 0) : -1;
	if (write(fds[0], img, len) != (ssize_t)len || (dev && write(fds[1], dev, dlen) != (ssize_t)dlen))
		abort();
	return shl_erofs_open_fd(e, fds[0], fds[1]);
}

static inline void close_mem(shl_erofs *e, int *fds)
{
	shl_erofs_close(e);
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

/* Open an image (and device) held in memory and read everything. */
static inline int read_all_mem(const uint8_t *img, size_t len, const uint8_t *dev, size_t dlen)
{
	static struct all a;
	int fds[2], rc;

	memset(&a, 0, sizeof(a));
	if (!(rc = open_mem(&a.e, img, len, dev, dlen, fds)))
		rc = shl_erofs_walk(a.e, all_cb, &a);
	close_mem(a.e, fds);
	return rc;
}

static inline void fix_crc(uint8_t *img, size_t len)
{
	uint32_t blksz = 1u << img[1024 + 12];
	uint32_t n = blksz > 1024 ? blksz - 1024 : blksz;
	if (blksz > 4096 || 1024 + (size_t)n > len || !(img[1024 + 8] & 1))
		return;
	put32(img + 1028, 0);
	put32(img + 1028, shl_crc32c(0xFFFFFFFFu, img + 1024, n));
}


/* ---- xattrs as a sorted list ---- */

struct xa {
	char name[300];
	uint8_t val[4096];
	size_t len;
};

struct xlist {
	struct xa v[32];
	int n, overflow;
};

static inline int xa_cmp(const void *a, const void *b)
{
	return strcmp(((const struct xa *)a)->name, ((const struct xa *)b)->name);
}

static inline int xattr_collect(void *ctx, const char *name, const void *value, size_t len)
{
	struct xlist *l = ctx;
	if (l->n == 32 || strlen(name) >= 300 || len > 4096) {
		l->overflow = 1;
		return 0;
	}
	snprintf(l->v[l->n].name, sizeof(l->v[l->n].name), "%s", name);
	memcpy(l->v[l->n].val, value, len);
	l->v[l->n].len = len;
	l->n++;
	return 0;
}

#endif
