/*
 * store/fstree.c - the in-memory file tree of one layer (see fstree.h).
 *
 * Dentries and inodes live in two growable arrays; a hash on (parent dentry,
 * name) finds a path component in O(1). Replacing a path (a later tar entry
 * wins) kills the old dentry and makes a new one, so whatever hung below a
 * replaced directory becomes unreachable and is dropped by finalize. Names
 * live in an arena; nothing here holds file data.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/fstree.h"
#include "util/err.h"

#define NAME_MAX_EROFS 255
#define SYMLINK_MAX 4095
#define ARENA_CHUNK (64u << 10)

struct arena_chunk {
	struct arena_chunk *next;
	size_t used, cap;
	char data[];
};

struct shl_fstree {
	shl_fstree_limits lim;
	shl_fsdentry *d;
	uint32_t nd, cap_d;
	shl_fsinode *in;
	uint32_t ni, cap_i;
	uint32_t *buckets;      /* head dentry per bucket, SHL_FS_NONE if empty */
	uint32_t nbuckets;      /* power of two */
	struct arena_chunk *arena;
	uint32_t nlive;
	int finalized;
};

/* ---- small helpers ------------------------------------------------------ */

static char *arena_alloc(shl_fstree *t, size_t n)
{
	struct arena_chunk *c = t->arena;

	if (!c || c->cap - c->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->cap = cap;
		c->used = 0;
		c->next = t->arena;
		t->arena = c;
	}
	c->used += n;
	return c->data + c->used - n;
}

static char *arena_strndup(shl_fstree *t, const char *s, size_t n)
{
	char *p = arena_alloc(t, n + 1);

	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

static uint64_t hash_name(uint32_t parent, const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ ((uint64_t)parent * 0x9E3779B97F4A7C15ull);

	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
	uint32_t ncap;
	void *p;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 256;
	while (ncap < need) {
		if (ncap > UINT32_MAX / 2)
			return shl_err(SHL_ENOMEM, "file tree too large");
		ncap *= 2;
	}
	p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return shl_err(SHL_ENOMEM, "out of memory growing the file tree");
	*arr = p;
	*cap = ncap;
	return 0;
}

static int rehash(shl_fstree *t, uint32_t nb)
{
	uint32_t *b = malloc((size_t)nb * sizeof(*b));

	if (!b)
		return shl_err(SHL_ENOMEM, "out of memory growing the file tree");
	memset(b, 0xff, (size_t)nb * sizeof(*b));
	for (uint32_t i = 1; i < t->nd; i++) {
		shl_fsdentry *e = &t->d[i];
		if (e->inode == SHL_FS_NONE)
			continue; /* dead: not in the hash */
		uint32_t h = (uint32_t)hash_name(e->parent, e->name, e->name_len) & (nb - 1);
		e->next = b[h];
		b[h] = i;
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = nb;
	return 0;
}

static uint32_t lookup(const shl_fstree *t, uint32_t parent, const char *name, size_t n)
{
	uint32_t h = (uint32_t)hash_name(parent, name, n) & (t->nbuckets - 1);

	for (uint32_t i = t->buckets[h]; i != SHL_FS_NONE; i = t->d[i].next) {
		const shl_fsdentry *e = &t->d[i];
		if (e->parent == parent && e->name_len == n && memcmp(e->name, name, n) == 0)
			return i;
	}
	return SHL_FS_NONE;
}

static void unhash(shl_fstree *t, uint32_t di)
{
	shl_fsdentry *e = &t->d[di];
	uint32_t h = (uint32_t)hash_name(e->parent, e->name, e->name_len) & (t->nbuckets - 1);
	uint32_t *pp = &t->buckets[h];

	while (*pp != SHL_FS_NONE) {
		if (*pp == di) {
			*pp = e->next;
			break;
		}
		pp = &t->d[*pp].next;
	}
	e->inode = SHL_FS_NONE;
	e->next = SHL_FS_NONE;
}

static int new_inode(shl_fstree *t, uint32_t *out)
{
	int rc = grow((void **)&t->in, &t->cap_i, t->ni + 1, sizeof(*t->in));

	if (rc)
		return rc;
	memset(&t->in[t->ni], 0, sizeof(t->in[0]));
	t->in[t->ni].dentry = SHL_FS_NONE;
	*out = t->ni++;
	return 0;
}

static int new_dentry(shl_fstree *t, uint32_t parent, const char *name, size_t n,
		      uint32_t ino, const char *path, uint32_t *out)
{
	uint32_t h;
	int rc;

	if (t->nd >= t->lim.max_entries)
		return shl_err(SHL_ELIMIT, "tar entry '%s': more than %u entries in one layer",
			       path, t->lim.max_entries);
	if ((rc = grow((void **)&t->d, &t->cap_d, t->nd + 1, sizeof(*t->d))))
		return rc;
	if ((uint64_t)(t->nd + 1) * 4 > (uint64_t)t->nbuckets * 3 && (rc = rehash(t, t->nbuckets * 2)))
		return rc;
	shl_fsdentry *e = &t->d[t->nd];
	e->name = arena_strndup(t, name, n);
	if (!e->name)
		return shl_err(SHL_ENOMEM, "out of memory");
	e->name_len = (uint16_t)n;
	e->parent = parent;
	e->inode = ino;
	h = (uint32_t)hash_name(parent, name, n) & (t->nbuckets - 1);
	e->next = t->buckets[h];
	t->buckets[h] = t->nd;
	*out = t->nd++;
	return 0;
}

static void free_xattrs(shl_fsinode *in)
{
	for (uint32_t i = 0; i < in->nxattrs; i++) {
		free(in->xattrs[i].name);
		free(in->xattrs[i].value);
	}
	free(in->xattrs);
	in->xattrs = NULL;
	in->nxattrs = 0;
}

/* ---- construction ------------------------------------------------------- */

int shl_fstree_new(shl_fstree **out, const shl_fstree_limits *lim)
{
	static const shl_fstree_limits defaults = SHL_FSTREE_LIMITS_DEFAULT;
	shl_fstree *t;
	uint32_t root_ino, root_d;
	int rc;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return shl_err(SHL_ENOMEM, "out of memory");
	t->lim = lim ? *lim : defaults;
	if (!t->lim.max_entries)
		t->lim.max_entries = defaults.max_entries;
	if (!t->lim.max_path)
		t->lim.max_path = defaults.max_path;
	if (!t->lim.max_xattr_size || t->lim.max_xattr_size > 65535)
		t->lim.max_xattr_size = defaults.max_xattr_size;
	if (!t->lim.max_xattrs_total)
		t->lim.max_xattrs_total = defaults.max_xattrs_total;
	if ((rc = rehash(t, 1024)) || (rc = new_inode(t, &root_ino)) ||
	    (rc = new_dentry(t, 0, "", 0, root_ino, "/", &root_d))) {
		shl_fstree_free(t);
		return rc;
	}
	/* The root's own chain entry would make (0, "") findable; harmless, but
	 * keep the root out of the hash for clarity. */
	unhash(t, root_d);
	t->d[root_d].inode = root_ino;
	t->in[root_ino].mode = S_IFDIR | 0755;
	t->in[root_ino].flags = SHL_FSI_IMPLICIT;
	t->in[root_ino].dentry = root_d;
	*out = t;
	return 0;
}

void shl_fstree_free(shl_fstree *t)
{
	if (!t)
		return;
	for (uint32_t i = 0; i < t->ni; i++) {
		free_xattrs(&t->in[i]);
		free(t->in[i].children);
	}
	while (t->arena) {
		struct arena_chunk *c = t->arena;
		t->arena = c->next;
		free(c);
	}
	free(t->in);
	free(t->d);
	free(t->buckets);
	free(t);
}

/*
 * Split a tar path into components in `buf` (NUL-separated), count them.
 * Rules: strip leading "./", collapse "//" and "/./", drop a trailing "/";
 * reject absolute paths and "..".
 */
static int split_path(const shl_fstree *t, const char *path, char *buf, size_t *ncomp,
		      const char **comps, size_t maxcomp)
{
	size_t len = strlen(path), n = 0;
	const char *p = path;
	char *w = buf;

	if (len == 0)
		return shl_err(SHL_EFORMAT, "tar entry with an empty name");
	if (len > t->lim.max_path)
		return shl_err(SHL_ELIMIT, "tar entry '%.200s...': path longer than %u bytes",
			       path, t->lim.max_path);
	if (path[0] == '/')
		return shl_err(SHL_EFORMAT, "tar entry '%s': absolute path", path);
	while (*p) {
		const char *s = p;
		size_t cl;
		while (*p && *p != '/')
			p++;
		cl = (size_t)(p - s);
		while (*p == '/')
			p++;
		if (cl == 0 || (cl == 1 && s[0] == '.'))
			continue;
		if (cl == 2 && s[0] == '.' && s[1] == '.')
			return shl_err(SHL_EFORMAT, "tar entry '%s': path contains '..'", path);
		if (cl > NAME_MAX_EROFS)
			return shl_err(SHL_EFORMAT, "tar entry '%.200s...': name component longer than %d bytes",
				       path, NAME_MAX_EROFS);
		if (n == maxcomp)
			return shl_err(SHL_ELIMIT, "tar entry '%.200s...': too deeply nested", path);
		memcpy(w, s, cl);
		w[cl] = '\0';
		comps[n++] = w;
		w += cl + 1;
	}
	*ncomp = n;
	return 0;
}

/* Walk to the dentry of the directory holding the last component, creating
 * implicit parents when `create` is set. */
static int walk_parents(shl_fstree *t, const char *path, const char **comps, size_t n,
			int create, uint32_t *out)
{
	uint32_t cur = 0;
	int rc;

	for (size_t i = 0; i + 1 < n; i++) {
		size_t cl = strlen(comps[i]);
		uint32_t d = lookup(t, cur, comps[i], cl);
		if (d == SHL_FS_NONE) {
			uint32_t ino;
			if (!create)
				return shl_err(SHL_ENOTFOUND, "'%s' does not exist", path);
			if ((rc = new_inode(t, &ino)) || (rc = new_dentry(t, cur, comps[i], cl, ino, path, &d)))
				return rc;
			t->in[ino].mode = S_IFDIR | 0755;
			t->in[ino].flags = SHL_FSI_IMPLICIT;
			t->in[ino].dentry = d;
		} else if (!S_ISDIR(t->in[t->d[d].inode].mode)) {
			return shl_err(SHL_EFORMAT, "tar entry '%s': parent '%s' is not a directory",
				       path, comps[i]);
		}
		cur = d;
	}
	*out = cur;
	return 0;
}

static void set_attrs(shl_fsinode *in, const shl_fsattr *a, uint32_t mode)
{
	in->mode = mode;
	in->uid = a->uid;
	in->gid = a->gid;
	in->mtime = a->mtime;
	in->mtime_ns = a->mtime_ns < 1000000000u ? a->mtime_ns : 0;
}

static int valid_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR:
	case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		return 1;
	default:
		return 0;
	}
}

/* Put inode `ino` at (parent, name), replacing what was there. */
static int place(shl_fstree *t, uint32_t parent, const char *name, uint32_t ino,
		 const char *path)
{
	size_t n = strlen(name);
	uint32_t d = lookup(t, parent, name, n);
	int rc;

	if (d != SHL_FS_NONE) {
		if (t->d[d].inode == ino)
			return 0;
		unhash(t, d);
	}
	if ((rc = new_dentry(t, parent, name, n, ino, path, &d)))
		return rc;
	if (S_ISDIR(t->in[ino].mode))
		t->in[ino].dentry = d;
	return 0;
}

int shl_fstree_add(shl_fstree *t, const char *path, const shl_fsattr *a, uint32_t *ino_out)
{
	const char *comps[512];
	char *buf = NULL;
	size_t n = 0;
	uint32_t parent, ino, d;
	const char *name;
	uint32_t mode = a->mode;
	int rc, whiteout = 0;

	if (ino_out)
		*ino_out = SHL_FS_NONE;
	if (t->finalized)
		return shl_err(SHL_EINVAL, "file tree already finalized");
	buf = malloc(strlen(path) + 2);
	if (!buf)
		return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = split_path(t, path, buf, &n, comps, sizeof(comps) / sizeof(comps[0]))))
		goto out;

	if (!a->hardlink && !valid_type(mode)) {
		rc = shl_err(SHL_EFORMAT, "tar entry '%s': unsupported file type 0%o", path,
			     (unsigned)(mode & S_IFMT));
		goto out;
	}
	if (n == 0) { /* the root itself */
		if (a->hardlink || !S_ISDIR(mode)) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': the root must be a directory", path);
			goto out;
		}
		shl_fsinode *root = &t->in[t->d[0].inode];
		set_attrs(root, a, mode);
		root->flags &= ~SHL_FSI_IMPLICIT;
		free_xattrs(root);
		if (ino_out)
			*ino_out = t->d[0].inode;
		goto out;
	}
	if ((rc = walk_parents(t, path, comps, n, 1, &parent)))
		goto out;
	name = comps[n - 1];

	/* Overlay whiteouts (OCI layer spec, aufs naming). */
	if (strncmp(name, ".wh.", 4) == 0) {
		if (strcmp(name, ".wh..wh..opq") == 0) {
			t->in[t->d[parent].inode].flags |= SHL_FSI_OPAQUE;
			goto out;
		}
		if (strncmp(name, ".wh..wh.", 8) == 0)
			goto out; /* aufs metadata (.wh..wh.plnk, .wh..wh.aufs): ignored as docker does */
		if (name[4] == '\0' || !strcmp(name + 4, ".") || !strcmp(name + 4, "..")) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': whiteout of '%s' is not a valid name", path, name + 4);
			goto out;
		}
		name += 4;
		mode = S_IFCHR;
		whiteout = 1;
	}

	if (a->hardlink && !whiteout) {
		const char *tcomps[512];
		char *tbuf = malloc(strlen(a->hardlink) + 2);
		size_t tn = 0;
		uint32_t tparent, td = SHL_FS_NONE;

		if (!tbuf) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		rc = split_path(t, a->hardlink, tbuf, &tn, tcomps, sizeof(tcomps) / sizeof(tcomps[0]));
		if (!rc && tn == 0)
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': hardlink to the root", path);
		if (!rc && walk_parents(t, a->hardlink, tcomps, tn, 0, &tparent) == 0)
			td = lookup(t, tparent, tcomps[tn - 1], strlen(tcomps[tn - 1]));
		free(tbuf);
		if (rc)
			goto out;
		if (td == SHL_FS_NONE) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': hardlink target '%s' not found earlier in the layer",
				     path, a->hardlink);
			goto out;
		}
		ino = t->d[td].inode;
		if (S_ISDIR(t->in[ino].mode)) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': hardlink to directory '%s'",
				     path, a->hardlink);
			goto out;
		}
		if (t->in[ino].flags & SHL_FSI_WHITEOUT) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': hardlink to whiteout '%s'",
				     path, a->hardlink);
			goto out;
		}
		rc = place(t, parent, name, ino, path);
		goto out; /* no own inode: xattrs of a link entry are ignored */
	}

	if (S_ISLNK(mode)) {
		if (!a->symlink || !a->symlink[0]) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': symlink without a target", path);
			goto out;
		}
		if (strlen(a->symlink) > SYMLINK_MAX) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': symlink target longer than %d bytes",
				     path, SYMLINK_MAX);
			goto out;
		}
	}
	if (S_ISREG(mode) && !whiteout && (a->data_off % 512) != 0) {
		rc = shl_err(SHL_EFORMAT, "tar entry '%s': data at offset %llu is not 512-aligned",
			     path, (unsigned long long)a->data_off);
		goto out;
	}

	d = lookup(t, parent, name, strlen(name));
	if (d != SHL_FS_NONE && S_ISDIR(mode) && S_ISDIR(t->in[t->d[d].inode].mode)) {
		/* dir over dir: tar updates the attributes and keeps the contents */
		ino = t->d[d].inode;
		set_attrs(&t->in[ino], a, mode);
		t->in[ino].flags &= ~SHL_FSI_IMPLICIT;
		free_xattrs(&t->in[ino]);
	} else {
		if ((rc = new_inode(t, &ino)))
			goto out;
		shl_fsinode *in = &t->in[ino];
		set_attrs(in, a, mode);
		if (whiteout) {
			in->flags = SHL_FSI_WHITEOUT;
		} else if (S_ISREG(mode)) {
			in->size = a->size;
			in->data_off = a->data_off;
			in->src = a->src;
		} else if (S_ISLNK(mode)) {
			in->size = strlen(a->symlink);
			in->symlink = arena_strndup(t, a->symlink, in->size);
			if (!in->symlink) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				goto out;
			}
		} else if (S_ISCHR(mode) || S_ISBLK(mode)) {
			in->rdev_major = a->rdev_major;
			in->rdev_minor = a->rdev_minor;
		}
		if ((rc = place(t, parent, name, ino, path)))
			goto out;
	}
	if (ino_out && !whiteout)
		*ino_out = ino;
out:
	free(buf);
	return rc;
}

/* Find the dentry of an existing path (SHL_FS_NONE if absent). */
static int find_path(shl_fstree *t, const char *path, uint32_t *out)
{
	const char *comps[512];
	char *buf = malloc(strlen(path) + 2);
	size_t n = 0;
	uint32_t cur = 0;
	int rc;

	*out = SHL_FS_NONE;
	if (!buf)
		return shl_err(SHL_ENOMEM, "out of memory");
	rc = split_path(t, path, buf, &n, comps, sizeof(comps) / sizeof(comps[0]));
	for (size_t i = 0; !rc && i < n; i++) {
		cur = lookup(t, cur, comps[i], strlen(comps[i]));
		if (cur == SHL_FS_NONE)
			break;
		if (i + 1 < n && !S_ISDIR(t->in[t->d[cur].inode].mode)) {
			cur = SHL_FS_NONE;
			break;
		}
	}
	if (!rc)
		*out = cur;
	free(buf);
	return rc;
}

int shl_fstree_remove(shl_fstree *t, const char *path)
{
	uint32_t d;
	int rc = find_path(t, path, &d);

	if (rc || d == SHL_FS_NONE)
		return rc;
	if (d == 0)
		return shl_err(SHL_EFORMAT, "whiteout of the root directory");
	unhash(t, d);
	return 0;
}

int shl_fstree_clear_dir(shl_fstree *t, const char *path)
{
	uint32_t d, nd;
	shl_fsdentry old;
	int rc = find_path(t, path, &d);

	if (rc || d == SHL_FS_NONE || !S_ISDIR(t->in[t->d[d].inode].mode))
		return rc;
	if (d == 0) {
		/* the root keeps dentry 0: detach its children one by one */
		for (uint32_t i = 1; i < t->nd; i++)
			if (t->d[i].inode != SHL_FS_NONE && t->d[i].parent == 0)
				unhash(t, i);
		return 0;
	}
	/* a fresh dentry for the same dir orphans everything hanging below the old one */
	old = t->d[d];
	unhash(t, d);
	if ((rc = new_dentry(t, old.parent, old.name, old.name_len, old.inode, path, &nd)))
		return rc;
	t->in[old.inode].dentry = nd;
	return 0;
}

static const char *const xattr_prefixes[] = {
	"user.", "trusted.", "security.", NULL
};

int shl_fstree_add_xattr(shl_fstree *t, uint32_t ino, const char *name,
			 const void *value, size_t len)
{
	shl_fsinode *in;
	size_t total = 0, suffix = 0;
	int ok = 0;

	if (ino >= t->ni)
		return shl_err(SHL_EINVAL, "xattr on a bad inode");
	in = &t->in[ino];
	/* Linux allows user.* only on regular files and directories; extraction
	 * drops them elsewhere, and a kernel mount could list but not read them */
	if (!strncmp(name, "user.", 5) && !S_ISREG(in->mode) && !S_ISDIR(in->mode))
		return 0;
	if (!strcmp(name, "system.posix_acl_access") || !strcmp(name, "system.posix_acl_default")) {
		ok = 1;
	} else {
		for (int i = 0; xattr_prefixes[i]; i++) {
			size_t pl = strlen(xattr_prefixes[i]);
			if (!strncmp(name, xattr_prefixes[i], pl) && name[pl]) {
				ok = 1;
				suffix = strlen(name) - pl;
			}
		}
	}
	if (!ok)
		return shl_err(SHL_EUNSUPPORTED, "xattr '%s': namespace not storable in EROFS", name);
	if (suffix > 255)
		return shl_err(SHL_ELIMIT, "xattr '%.64s...': name longer than 255 bytes", name);
	if (len > t->lim.max_xattr_size)
		return shl_err(SHL_ELIMIT, "xattr '%s': value of %zu bytes exceeds %u", name, len,
			       t->lim.max_xattr_size);
	for (uint32_t i = 0; i < in->nxattrs; i++) {
		if (!strcmp(in->xattrs[i].name, name)) {
			void *v = malloc(len ? len : 1);
			if (!v)
				return shl_err(SHL_ENOMEM, "out of memory");
			if (len)
				memcpy(v, value, len);
			free(in->xattrs[i].value);
			in->xattrs[i].value = v;
			in->xattrs[i].len = (uint32_t)len;
			return 0;
		}
		total += strlen(in->xattrs[i].name) + in->xattrs[i].len + 8;
	}
	if (total + strlen(name) + len + 8 > t->lim.max_xattrs_total)
		return shl_err(SHL_ELIMIT, "xattr '%s': xattrs of one file exceed %u bytes", name,
			       t->lim.max_xattrs_total);
	shl_fsxattr *nx = realloc(in->xattrs, (in->nxattrs + 1) * sizeof(*nx));
	if (!nx)
		return shl_err(SHL_ENOMEM, "out of memory");
	in->xattrs = nx;
	nx[in->nxattrs].name = strdup(name);
	nx[in->nxattrs].value = malloc(len ? len : 1);
	if (!nx[in->nxattrs].name || !nx[in->nxattrs].value) {
		free(nx[in->nxattrs].name);
		free(nx[in->nxattrs].value);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	if (len)
		memcpy(nx[in->nxattrs].value, value, len);
	nx[in->nxattrs].len = (uint32_t)len;
	in->nxattrs++;
	return 0;
}

/* ---- finalize ----------------------------------------------------------- */

/* qsort has no context argument: the tree being sorted, per thread */
static __thread shl_fstree *sort_ctx;

static int cmp_dentry(const void *pa, const void *pb)
{
	const shl_fsdentry *a = &sort_ctx->d[*(const uint32_t *)pa];
	const shl_fsdentry *b = &sort_ctx->d[*(const uint32_t *)pb];
	size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
	int c = memcmp(a->name, b->name, n);

	if (c)
		return c;
	return (a->name_len > b->name_len) - (a->name_len < b->name_len);
}

static int cmp_xattr(const void *pa, const void *pb)
{
	return strcmp(((const shl_fsxattr *)pa)->name, ((const shl_fsxattr *)pb)->name);
}

int shl_fstree_finalize(shl_fstree *t)
{
	uint32_t *count = NULL, *stack = NULL;
	uint32_t sp = 0;
	int rc = 0;

	if (t->finalized)
		return 0;
	/* children per directory inode: count, allocate, fill */
	count = calloc(t->ni, sizeof(*count));
	stack = malloc((size_t)t->nd * sizeof(*stack));
	if (!count || !stack) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 1; i < t->nd; i++) {
		const shl_fsdentry *e = &t->d[i];
		uint32_t pi;
		if (e->inode == SHL_FS_NONE || t->d[e->parent].inode == SHL_FS_NONE)
			continue;
		pi = t->d[e->parent].inode;
		if (t->in[pi].dentry != e->parent)
			continue; /* parent dentry no longer names that dir */
		count[pi]++;
	}
	for (uint32_t i = 0; i < t->ni; i++) {
		if (count[i]) {
			t->in[i].children = malloc((size_t)count[i] * sizeof(uint32_t));
			if (!t->in[i].children) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				goto out;
			}
		}
		t->in[i].nchildren = 0;
		t->in[i].nlink = 0;
	}
	for (uint32_t i = 1; i < t->nd; i++) {
		const shl_fsdentry *e = &t->d[i];
		uint32_t pi;
		if (e->inode == SHL_FS_NONE || t->d[e->parent].inode == SHL_FS_NONE)
			continue;
		pi = t->d[e->parent].inode;
		if (t->in[pi].dentry != e->parent)
			continue;
		t->in[pi].children[t->in[pi].nchildren++] = i;
	}
	/* reachability from the root: only reachable dentries count */
	t->nlive = 0;
	sort_ctx = t;
	stack[sp++] = 0;
	while (sp) {
		uint32_t di = stack[--sp];
		shl_fsinode *in = &t->in[t->d[di].inode];
		t->nlive++;
		if (!S_ISDIR(in->mode)) {
			in->nlink++;
			continue;
		}
		in->nlink = 2;
		if (in->nchildren > 1)
			qsort(in->children, in->nchildren, sizeof(uint32_t), cmp_dentry);
		for (uint32_t k = 0; k < in->nchildren; k++) {
			shl_fsinode *c = &t->in[t->d[in->children[k]].inode];
			if (S_ISDIR(c->mode))
				in->nlink++;
			if (c->flags & SHL_FSI_WHITEOUT)
				in->flags |= SHL_FSI_HAS_WH;
			stack[sp++] = in->children[k];
		}
	}
	sort_ctx = NULL;
	for (uint32_t i = 0; i < t->ni; i++)
		if (t->in[i].nxattrs > 1)
			qsort(t->in[i].xattrs, t->in[i].nxattrs, sizeof(shl_fsxattr), cmp_xattr);
	t->finalized = 1;
out:
	free(count);
	free(stack);
	return rc;
}

uint32_t shl_fstree_root(const shl_fstree *t) { return t->d[0].inode; }
uint32_t shl_fstree_ninodes(const shl_fstree *t) { return t->ni; }
shl_fsinode *shl_fstree_inode(shl_fstree *t, uint32_t ino) { return &t->in[ino]; }
const shl_fsdentry *shl_fstree_dentry(const shl_fstree *t, uint32_t d) { return &t->d[d]; }
uint32_t shl_fstree_nentries(const shl_fstree *t) { return t->nlive; }
