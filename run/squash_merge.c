/*
 * run/squash_merge.c - merge a stack of layer images into one file tree, the
 * way overlayfs would show it, without mounting anything.
 *
 * Each layer's EROFS index is walked with shale's reader (metadata only; the
 * tar data is never read here). Layers are applied bottom to top onto one
 * fstree: a whiteout (char 0:0) removes the path, an opaque directory drops
 * what lower layers put below it, everything else is added with tar
 * extraction semantics. Regular files keep (layer index, offset in that
 * layer's tar), so the writers copy data straight from the stored tars.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "run/squash_int.h"
#include "shale/erofs.h"
#include "util/err.h"

struct merge_ctx {
	shl_erofs *e;
	shl_fstree *t;
	uint32_t layer;
	/* first path seen of each multiply-linked nid in this layer */
	uint64_t *link_nid;
	char **link_path;
	size_t nlinks, caplinks;
	int opaque;
	uint32_t ino;
	int rc;
};

static int xattr_opaque(void *ctx, const char *name, const void *value, size_t len)
{
	struct merge_ctx *m = ctx;

	if (!strcmp(name, "trusted.overlay.opaque") && len == 1 && *(const char *)value == 'y')
		m->opaque = 1;
	return 0;
}

static int xattr_copy(void *ctx, const char *name, const void *value, size_t len)
{
	struct merge_ctx *m = ctx;

	if (!strncmp(name, "trusted.overlay.", 16))
		return 0; /* overlay bookkeeping, meaningless once merged */
	return shl_fstree_add_xattr(m->t, m->ino, name, value, len);
}

static int data_extent(void *ctx, uint64_t file_off, int device, uint64_t dev_off, uint64_t len)
{
	uint64_t *out = ctx;

	(void)len;
	if (file_off == 0) {
		if (device != 1)
			return shl_err(SHL_EFORMAT, "layer file data not in the layer tar (device %d)", device);
		*out = dev_off;
	}
	return 0;
}

static const char *first_link(struct merge_ctx *m, uint64_t nid)
{
	for (size_t i = 0; i < m->nlinks; i++)
		if (m->link_nid[i] == nid)
			return m->link_path[i];
	return NULL;
}

static int remember_link(struct merge_ctx *m, uint64_t nid, const char *path)
{
	if (m->nlinks == m->caplinks) {
		size_t cap = m->caplinks ? m->caplinks * 2 : 64;
		uint64_t *n = realloc(m->link_nid, cap * sizeof(*n));
		char **p;
		if (!n)
			return shl_err(SHL_ENOMEM, "out of memory");
		m->link_nid = n;
		p = realloc(m->link_path, cap * sizeof(*p));
		if (!p)
			return shl_err(SHL_ENOMEM, "out of memory");
		m->link_path = p;
		m->caplinks = cap;
	}
	m->link_path[m->nlinks] = strdup(path);
	if (!m->link_path[m->nlinks])
		return shl_err(SHL_ENOMEM, "out of memory");
	m->link_nid[m->nlinks++] = nid;
	return 0;
}

static int visit(void *ctx, const char *path, const shl_erofs_stat *st)
{
	struct merge_ctx *m = ctx;
	shl_fsattr a;
	char target[4097];
	const char *p = *path ? path : ".";
	int rc;

	if (S_ISCHR(st->mode) && st->rdev_major == 0 && st->rdev_minor == 0)
		return shl_fstree_remove(m->t, p); /* whiteout */
	memset(&a, 0, sizeof(a));
	a.mode = st->mode;
	a.uid = st->uid;
	a.gid = st->gid;
	a.mtime = st->mtime;
	a.mtime_ns = st->mtime_nsec;
	a.rdev_major = st->rdev_major;
	a.rdev_minor = st->rdev_minor;
	if (S_ISDIR(st->mode)) {
		m->opaque = 0;
		if ((rc = shl_erofs_xattrs(m->e, st->nid, xattr_opaque, m)))
			return rc;
		if (m->opaque && (rc = shl_fstree_clear_dir(m->t, p)))
			return rc;
	} else if (st->nlink > 1) {
		const char *first = first_link(m, st->nid);
		if (first) {
			a.hardlink = first;
			return shl_fstree_add(m->t, p, &a, NULL);
		}
		if ((rc = remember_link(m, st->nid, p)))
			return rc;
	}
	if (S_ISLNK(st->mode)) {
		if ((rc = shl_erofs_readlink(m->e, st->nid, target, sizeof(target))))
			return rc;
		a.symlink = target;
	} else if (S_ISREG(st->mode)) {
		a.size = st->size;
		a.src = m->layer;
		if (st->size && (rc = shl_erofs_extents(m->e, st->nid, data_extent, &a.data_off)))
			return rc;
	}
	if ((rc = shl_fstree_add(m->t, p, &a, &m->ino)))
		return rc;
	if (m->ino != SHL_FS_NONE)
		rc = shl_erofs_xattrs(m->e, st->nid, xattr_copy, m);
	return rc;
}

int shl_squash__merge(const shl_squash_layer *layers, size_t n, shl_fstree **out)
{
	struct merge_ctx m;
	int rc = 0;

	memset(&m, 0, sizeof(m));
	*out = NULL;
	if ((rc = shl_fstree_new(&m.t, NULL)))
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		if ((rc = shl_erofs_open(&m.e, layers[i].erofs_path, layers[i].tar_path))) {
			shl_err_ctx(rc, "layer %zu", i);
			break;
		}
		m.layer = (uint32_t)i;
		rc = shl_erofs_walk(m.e, visit, &m);
		if (rc)
			shl_err_ctx(rc, "layer %zu (%s)", i, layers[i].erofs_path);
		shl_erofs_close(m.e);
		m.e = NULL;
		for (size_t k = 0; k < m.nlinks; k++)
			free(m.link_path[k]);
		m.nlinks = 0;
	}
	free(m.link_nid);
	free(m.link_path);
	if (!rc)
		rc = shl_fstree_finalize(m.t);
	if (rc) {
		shl_fstree_free(m.t);
		return rc;
	}
	*out = m.t;
	return 0;
}
