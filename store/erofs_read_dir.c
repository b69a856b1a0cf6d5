/*
 * store/erofs_read_dir.c - directories of EROFS images: readdir, path
 * lookup and the depth-first walk (shale/erofs.h). Hostile images are
 * contained: dirent name offsets are checked, nesting is capped, and a
 * directory reachable twice (a cycle or a DAG) is an error.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/erofs_read_int.h"
#include "util/err.h"

#define WALK_MAX_DEPTH 4096
#define WALK_MAX_PATH 65536
#define DIRENT_SIZE 12

int shl_erofs_readdir(shl_erofs *e, uint64_t dir_nid, shl_erofs_dirent_fn fn, void *ctx)
{
	struct shl_erofs_inode ino;
	uint8_t *blk = NULL;
	uint64_t off;
	int rc = shl_erofs__inode(e, dir_nid, &ino);

	if (rc)
		return rc;
	if (!S_ISDIR(ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: not a directory", (unsigned long long)dir_nid);
	blk = malloc(e->blksz);
	if (!blk)
		return shl_err(SHL_ENOMEM, "out of memory");
	for (off = 0; off < ino.size && !rc; off += e->blksz) {
		size_t blen, got, n, first;
		if ((rc = shl_erofs__pread_inode(e, &ino, blk, e->blksz, off, &got)))
			break;
		blen = got;
		if (blen < DIRENT_SIZE) {
			rc = shl_err(SHL_EFORMAT, "erofs nid %llu: short directory block", (unsigned long long)dir_nid);
			break;
		}
		first = (size_t)(blk[8] | blk[9] << 8);
		if (first < DIRENT_SIZE || first % DIRENT_SIZE || first > blen) {
			rc = shl_err(SHL_EFORMAT, "erofs nid %llu: bad directory block at %llu",
				     (unsigned long long)dir_nid, (unsigned long long)off);
			break;
		}
		n = first / DIRENT_SIZE;
		for (size_t i = 0; i < n && !rc; i++) {
			const uint8_t *d = blk + i * DIRENT_SIZE;
			uint64_t nid = 0;
			size_t no = (size_t)(d[8] | d[9] << 8), end, len;
			for (int k = 7; k >= 0; k--)
				nid = nid << 8 | d[k];
			if (i + 1 < n) {
				end = (size_t)(d[DIRENT_SIZE + 8] | d[DIRENT_SIZE + 9] << 8);
			} else {
				end = blen;
				while (end > no && blk[end - 1] == '\0')
					end--;
			}
			if (no < first || end > blen || end <= no || end - no > 255) {
				rc = shl_err(SHL_EFORMAT, "erofs nid %llu: bad dirent name offset",
					     (unsigned long long)dir_nid);
				break;
			}
			len = end - no;
			char name[256];
			memcpy(name, blk + no, len);
			name[len] = '\0';
			if (memchr(name, '/', len) || memchr(name, '\0', len)) {
				rc = shl_err(SHL_EFORMAT, "erofs nid %llu: bad character in a name",
					     (unsigned long long)dir_nid);
				break;
			}
			rc = fn(ctx, name, len, nid, d[10]);
		}
	}
	free(blk);
	return rc;
}

struct find_ctx {
	const char *name;
	size_t len;
	uint64_t nid;
	int found;
};

static int find_cb(void *ctx, const char *name, size_t len, uint64_t nid, unsigned type)
{
	struct find_ctx *f = ctx;

	(void)type;
	if (len == f->len && !memcmp(name, f->name, len)) {
		f->nid = nid;
		f->found = 1;
		return 1;
	}
	return 0;
}

int shl_erofs_lookup(shl_erofs *e, const char *path, uint64_t *nid_out)
{
	uint64_t cur = e->root_nid;
	const char *p = path;
	int rc;

	while (*p) {
		struct find_ctx f = { 0 };
		const char *s;
		while (*p == '/')
			p++;
		if (!*p)
			break;
		s = p;
		while (*p && *p != '/')
			p++;
		f.name = s;
		f.len = (size_t)(p - s);
		{
			struct shl_erofs_inode ino;
			if ((rc = shl_erofs__inode(e, cur, &ino)))
				return rc;
			if (!S_ISDIR(ino.mode))
				return shl_err(SHL_ENOTFOUND, "'%s': not found in the image", path);
		}
		rc = shl_erofs_readdir(e, cur, find_cb, &f);
		if (rc < 0)
			return rc;
		if (!f.found)
			return shl_err(SHL_ENOTFOUND, "'%s': not found in the image", path);
		cur = f.nid;
	}
	*nid_out = cur;
	return 0;
}

/* ---- walk ----------------------------------------------------------------- */

struct seen {
	uint64_t *slots;
	size_t cap, n;
};

/* Insert nid; returns 1 if it was already there. */
static int seen_add(struct seen *s, uint64_t nid)
{
	uint64_t key = nid + 1;

	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *ns = calloc(cap, sizeof(*ns));
		if (!ns)
			return -1;
		for (size_t i = 0; i < s->cap; i++) {
			if (s->slots[i]) {
				size_t h = (size_t)(s->slots[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
				while (ns[h])
					h = (h + 1) & (cap - 1);
				ns[h] = s->slots[i];
			}
		}
		free(s->slots);
		s->slots = ns;
		s->cap = cap;
	}
	size_t h = (size_t)(key * 0x9E3779B97F4A7C15ull) & (s->cap - 1);
	while (s->slots[h]) {
		if (s->slots[h] == key)
			return 1;
		h = (h + 1) & (s->cap - 1);
	}
	s->slots[h] = key;
	s->n++;
	return 0;
}

struct walk {
	shl_erofs *e;
	shl_erofs_walk_fn fn;
	void *ctx;
	char *path;
	size_t len;
	unsigned depth;
	struct seen seen;
};

static int walk_dir(struct walk *w, uint64_t nid);

struct child {
	uint64_t nid;
	char name[256];
	size_t len;
};

struct kids {
	struct child *v;
	size_t n, cap;
};

static int collect(void *ctx, const char *name, size_t len, uint64_t nid, unsigned type)
{
	struct kids *k = ctx;

	(void)type;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	if (k->n == k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 32;
		struct child *v = realloc(k->v, cap * sizeof(*v));
		if (!v)
			return shl_err(SHL_ENOMEM, "out of memory");
		k->v = v;
		k->cap = cap;
	}
	k->v[k->n].nid = nid;
	memcpy(k->v[k->n].name, name, len + 1);
	k->v[k->n].len = len;
	k->n++;
	return 0;
}

static int visit(struct walk *w, uint64_t nid)
{
	shl_erofs_stat st;
	int rc = shl_erofs_getattr(w->e, nid, &st);

	if (rc)
		return shl_err_ctx(rc, "'%s'", w->path);
	if ((rc = w->fn(w->ctx, w->path, &st)))
		return rc;
	if (S_ISDIR(st.mode))
		return walk_dir(w, nid);
	return 0;
}

static int walk_dir(struct walk *w, uint64_t nid)
{
	struct kids k = { 0 };
	size_t saved = w->len;
	int rc, r;

	if (++w->depth > WALK_MAX_DEPTH) {
		rc = shl_err(SHL_ELIMIT, "erofs: directories nested deeper than %d", WALK_MAX_DEPTH);
		goto out;
	}
	r = seen_add(&w->seen, nid);
	if (r) {
		rc = r < 0 ? shl_err(SHL_ENOMEM, "out of memory")
			   : shl_err(SHL_EFORMAT, "erofs: directory nid %llu reached twice ('%s')",
				     (unsigned long long)nid, w->path);
		goto out;
	}
	if ((rc = shl_erofs_readdir(w->e, nid, collect, &k)))
		goto out;
	for (size_t i = 0; i < k.n && !rc; i++) {
		size_t add = (saved ? 1 : 0) + k.v[i].len;
		if (saved + add + 1 > WALK_MAX_PATH) {
			rc = shl_err(SHL_ELIMIT, "erofs: path longer than %d bytes", WALK_MAX_PATH);
			break;
		}
		if (saved)
			w->path[saved] = '/';
		memcpy(w->path + saved + (saved ? 1 : 0), k.v[i].name, k.v[i].len + 1);
		w->len = saved + add;
		rc = visit(w, k.v[i].nid);
		w->len = saved;
		w->path[saved] = '\0';
	}
out:
	w->depth--;
	free(k.v);
	return rc;
}

int shl_erofs_walk(shl_erofs *e, shl_erofs_walk_fn fn, void *ctx)
{
	struct walk w = { 0 };
	int rc;

	w.e = e;
	w.fn = fn;
	w.ctx = ctx;
	w.path = malloc(WALK_MAX_PATH);
	if (!w.path)
		return shl_err(SHL_ENOMEM, "out of memory");
	w.path[0] = '\0';
	rc = visit(&w, e->root_nid);
	free(w.path);
	free(w.seen.slots);
	return rc;
}
