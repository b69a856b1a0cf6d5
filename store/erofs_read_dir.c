/*
 * store/erofs_read_dir.c - directories of EROFS images: readdir, path lookup
 * and the depth-first walk (shale/erofs.h).
 *
 * Each directory block is checked as a whole before any entry is used: the
 * dirent array fits, name offsets are strictly increasing and inside the
 * block, names are 1..255 bytes without '/' or NUL, and names are sorted
 * bytewise across the whole directory (the kernel's lookup relies on that).
 * The walk is iterative with an explicit stack capped at WALK_MAX_DEPTH, and
 * a directory reached twice (its own ancestor, or a hard-linked directory)
 * is an error, so work stays bounded on hostile images.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/erofs_read_int.h"
#include "util/err.h"

#define NID(n) ((unsigned long long)(n))
#define WALK_MAX_DEPTH 4096u

/* Iterator over the entries of one directory, block by block. */
struct diter {
	shl_erofs *e;
	struct erd_inode ino;
	uint8_t *blk;
	uint64_t off;           /* file offset of the loaded block */
	size_t blen;            /* bytes of the loaded block */
	unsigned n, i;          /* dirents in the block, next one */
	int loaded;
	char prev[ERD_NAME_MAX + 1];
	size_t prev_len;        /* 0: no previous name yet */
};

static int diter_open(struct diter *d, shl_erofs *e, uint64_t nid)
{
	int rc;

	memset(d, 0, sizeof(*d));
	d->e = e;
	if ((rc = shl_erofs__inode(e, nid, &d->ino)))
		return rc;
	if (!S_ISDIR(d->ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: not a directory", NID(nid));
	if (!(d->blk = malloc(e->blksz)))
		return shl_err(SHL_ENOMEM, "out of memory");
	return 0;
}

static void diter_close(struct diter *d)
{
	free(d->blk);
	d->blk = NULL;
}

static size_t nameoff(const uint8_t *blk, unsigned i)
{
	return erd_le16(blk + (size_t)i * ERD_DIRENT_SIZE + 8);
}

/* Bytewise order, a proper prefix first (strcmp order for names without NUL). */
static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	if (c)
		return c;
	return al < bl ? -1 : al > bl;
}

/* Load and validate the block at d->off. */
static int diter_load(struct diter *d)
{
	shl_erofs *e = d->e;
	uint64_t nid = d->ino.nid;
	size_t first;
	int rc;

	if ((rc = shl_erofs__pread_inode(e, &d->ino, d->blk, e->blksz, d->off, &d->blen)))
		return shl_err_ctx(rc, "erofs nid %llu: directory block at %llu", NID(nid),
				   (unsigned long long)d->off);
	if (d->blen < ERD_DIRENT_SIZE)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: directory block at %llu is only %zu bytes",
			       NID(nid), (unsigned long long)d->off, d->blen);
	first = nameoff(d->blk, 0);
	if (first < ERD_DIRENT_SIZE || first % ERD_DIRENT_SIZE || first >= d->blen)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: invalid de[0].nameoff %zu in block at %llu",
			       NID(nid), first, (unsigned long long)d->off);
	d->n = (unsigned)(first / ERD_DIRENT_SIZE);
	d->i = 0;
	/* the last name runs to the end of the block (or of the directory),
	 * minus trailing NULs */
	for (unsigned i = 0; i < d->n; i++) {
		size_t no = nameoff(d->blk, i), end;
		if (i + 1 < d->n) {
			end = nameoff(d->blk, i + 1);
		} else {
			end = d->blen;
			while (end > no && d->blk[end - 1] == '\0')
				end--;
		}
		if (no < first || end > d->blen || end <= no || end - no > ERD_NAME_MAX)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: bad name offsets of dirent %u in block at %llu",
				       NID(nid), i, (unsigned long long)d->off);
		if (memchr(d->blk + no, '/', end - no) || memchr(d->blk + no, '\0', end - no))
			return shl_err(SHL_EFORMAT, "erofs nid %llu: '/' or NUL in a name in block at %llu",
				       NID(nid), (unsigned long long)d->off);
	}
	d->loaded = 1;
	return 0;
}

/* Next entry: 1 with the fields set (name valid until the next call), 0 at
 * the end, or an error. */
static int diter_next(struct diter *d, const char **name, size_t *len, uint64_t *nid, unsigned *type)
{
	const uint8_t *de;
	size_t no, end;
	int rc;

	while (!d->loaded || d->i >= d->n) {
		if (d->loaded)
			d->off += d->e->blksz;
		d->loaded = 0;
		if (d->off >= d->ino.size)
			return 0;
		if ((rc = diter_load(d)))
			return rc;
	}
	de = d->blk + (size_t)d->i * ERD_DIRENT_SIZE;
	no = nameoff(d->blk, d->i);
	if (d->i + 1 < d->n) {
		end = nameoff(d->blk, d->i + 1);
	} else {
		end = d->blen;
		while (end > no && d->blk[end - 1] == '\0')
			end--;
	}
	d->i++;
	*name = (const char *)d->blk + no;
	*len = end - no;
	*nid = erd_le64(de);
	*type = de[10];
	if (d->prev_len && name_cmp(d->prev, d->prev_len, *name, *len) >= 0)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: directory entries out of order ('%.*s' after '%s')",
			       NID(d->ino.nid), (int)*len, *name, d->prev);
	memcpy(d->prev, *name, *len);
	d->prev[*len] = '\0';
	d->prev_len = *len;
	return 1;
}

int shl_erofs_readdir(shl_erofs *e, uint64_t dir_nid, shl_erofs_dirent_fn fn, void *ctx)
{
	struct diter d;
	const char *name;
	size_t len;
	uint64_t nid;
	unsigned type;
	int rc;

	if ((rc = diter_open(&d, e, dir_nid)))
		goto out;
	while ((rc = diter_next(&d, &name, &len, &nid, &type)) == 1) {
		char buf[ERD_NAME_MAX + 1];
		memcpy(buf, name, len);
		buf[len] = '\0';
		if ((rc = fn(ctx, buf, len, nid, type)))
			break;
	}
out:
	diter_close(&d);
	return rc;
}

int shl_erofs_lookup(shl_erofs *e, const char *path, uint64_t *nid_out)
{
	uint64_t cur = e->root_nid;
	const char *p = path;
	int rc = 0;

	while (*p) {
		struct diter d;
		const char *s, *name;
		size_t want, len;
		uint64_t nid;
		unsigned type;
		int found = 0;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		s = p;
		while (*p && *p != '/')
			p++;
		want = (size_t)(p - s);
		if ((rc = diter_open(&d, e, cur))) {
			diter_close(&d);
			if (rc == SHL_EINVAL)
				rc = shl_err(SHL_ENOTFOUND, "'%s': not found in the image (not a directory on the way)", path);
			return rc;
		}
		/* entries are sorted: stop at the first name past the wanted one */
		while ((rc = diter_next(&d, &name, &len, &nid, &type)) == 1) {
			int c = name_cmp(name, len, s, want);
			if (c == 0) {
				found = 1;
				break;
			}
			if (c > 0)
				break;
		}
		diter_close(&d);
		if (rc < 0)
			return shl_err_ctx(rc, "lookup '%s'", path);
		if (!found)
			return shl_err(SHL_ENOTFOUND, "'%s': not found in the image", path);
		cur = nid;
	}
	*nid_out = cur;
	return 0;
}

/* ---- walk ----------------------------------------------------------------- */

/* Open-addressing set of directory nids already entered. */
struct seen {
	uint64_t *slots;        /* nid + 1; 0 = empty */
	size_t cap, n;
};

static size_t seen_hash(uint64_t key, size_t cap)
{
	return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

/* Insert nid: 0 if new, 1 if already present, or an error. */
static int seen_add(struct seen *s, uint64_t nid)
{
	uint64_t key = nid + 1;
	size_t h;

	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		uint64_t *ns = calloc(cap, sizeof(*ns));
		if (!ns)
			return shl_err(SHL_ENOMEM, "out of memory");
		for (size_t i = 0; i < s->cap; i++) {
			if (!s->slots[i])
				continue;
			h = seen_hash(s->slots[i], cap);
			while (ns[h])
				h = (h + 1) & (cap - 1);
			ns[h] = s->slots[i];
		}
		free(s->slots);
		s->slots = ns;
		s->cap = cap;
	}
	h = seen_hash(key, s->cap);
	while (s->slots[h]) {
		if (s->slots[h] == key)
			return 1;
		h = (h + 1) & (s->cap - 1);
	}
	s->slots[h] = key;
	s->n++;
	return 0;
}

struct frame {
	struct diter d;
	size_t path_len;        /* length of this directory's path */
};

struct walk {
	shl_erofs *e;
	struct frame *stack;
	size_t depth, cap;
	uint64_t budget;        /* dirents the image (and device) can hold */
	char *path;
	size_t path_cap;
	struct seen seen;
};

/* Enter directory `nid` (whose path is w->path): push a frame. */
static int walk_push(struct walk *w, uint64_t nid, size_t path_len)
{
	struct frame *f;
	int r;

	if (w->depth >= WALK_MAX_DEPTH)
		return shl_err(SHL_ELIMIT, "erofs: '%s': directories nested deeper than %u", w->path, WALK_MAX_DEPTH);
	if ((r = seen_add(&w->seen, nid))) {
		if (r < 0)
			return r;
		for (size_t i = 0; i < w->depth; i++)
			if (w->stack[i].d.ino.nid == nid)
				return shl_err(SHL_EFORMAT, "erofs nid %llu: directory '%s' is its own ancestor",
					       NID(nid), w->path);
		return shl_err(SHL_EFORMAT, "erofs nid %llu: directory '%s' reached twice (hard-linked directory)",
			       NID(nid), w->path);
	}
	if (w->depth == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct frame *s = realloc(w->stack, cap * sizeof(*s));
		if (!s)
			return shl_err(SHL_ENOMEM, "out of memory");
		w->stack = s;
		w->cap = cap;
	}
	f = &w->stack[w->depth];
	f->path_len = path_len;
	if ((r = diter_open(&f->d, w->e, nid))) {
		diter_close(&f->d);
		return shl_err_ctx(r, "erofs: '%s'", w->path);
	}
	w->depth++;
	return 0;
}

/* Set w->path to the path of child `name` of the directory at path_len. */
static int walk_path(struct walk *w, size_t path_len, const char *name, size_t len)
{
	size_t need = path_len + (path_len ? 1 : 0) + len + 1;

	if (need > w->path_cap) {
		size_t cap = w->path_cap * 2;
		char *p;
		while (cap < need)
			cap *= 2;
		if (!(p = realloc(w->path, cap)))
			return shl_err(SHL_ENOMEM, "out of memory");
		w->path = p;
		w->path_cap = cap;
	}
	if (path_len)
		w->path[path_len++] = '/';
	memcpy(w->path + path_len, name, len);
	w->path[path_len + len] = '\0';
	return 0;
}

int shl_erofs_walk(shl_erofs *e, shl_erofs_walk_fn fn, void *ctx)
{
	struct walk w;
	shl_erofs_stat st;
	int rc;

	memset(&w, 0, sizeof(w));
	w.e = e;
	w.path_cap = 4096;
	if (!(w.path = malloc(w.path_cap)))
		return shl_err(SHL_ENOMEM, "out of memory");
	w.path[0] = '\0';
	/* Every dirent of a sane image takes 12 bytes of its own; directories
	 * sharing blocks could otherwise make the walk quadratic. */
	w.budget = (e->img_size + e->dev_size) / ERD_DIRENT_SIZE + 16;
	if ((rc = shl_erofs_getattr(e, e->root_nid, &st)))
		goto out;
	if ((rc = fn(ctx, "", &st)))
		goto out;
	if ((rc = walk_push(&w, e->root_nid, 0)))
		goto out;
	while (w.depth) {
		struct frame *f = &w.stack[w.depth - 1];
		const char *name;
		size_t len, plen = f->path_len;
		uint64_t nid;
		unsigned type;

		rc = diter_next(&f->d, &name, &len, &nid, &type);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			diter_close(&f->d);
			w.depth--;
			continue;
		}
		rc = 0;
		if (!w.budget--) {
			rc = shl_err(SHL_ELIMIT, "erofs: more directory entries than the image can hold "
				     "(directories sharing blocks?)");
			goto out;
		}
		if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
			continue;
		if ((rc = walk_path(&w, plen, name, len)))
			goto out;
		if ((rc = shl_erofs_getattr(e, nid, &st))) {
			shl_err_ctx(rc, "erofs: '%s'", w.path);
			goto out;
		}
		if ((rc = fn(ctx, w.path, &st)))
			goto out;
		if (S_ISDIR(st.mode) && (rc = walk_push(&w, nid, strlen(w.path))))
			goto out;
	}
out:
	while (w.depth)
		diter_close(&w.stack[--w.depth].d);
	free(w.stack);
	free(w.path);
	free(w.seen.slots);
	return rc;
}
