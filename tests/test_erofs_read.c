/*
 * tests/test_erofs_read.c - the EROFS reader (shale/erofs.h).
 *
 * 1. Builds a directory tree (files of many sizes, a multi-block directory,
 *    deep nesting, short and long symlinks, hardlinks, fifo, devices, socket,
 *    xattrs incl. shared ones and an ACL, odd uids and mtimes), makes images
 *    with Debian's mkfs.erofs 1.5 in several variants (inline tails or not,
 *    compact or extended inodes, chunk-based with block maps, chunk indexes
 *    and a blob device, lz4) and compares everything the reader returns with
 *    lstat/readlink/getxattr/read of the source tree.
 * 2. Hand-crafts a 512-byte-block image with a device table, 8-byte chunk
 *    indexes (device 1, holes), a 4-byte block map into the unified address
 *    space, a compact inode, inline/shared/long-prefix xattrs, and reads it
 *    with a device file and as flatdev; then breaks it in targeted ways.
 * 3. Flips bytes in and truncates mkfs images: errors, never crashes.
 * The mkfs part prints a note and is skipped when mkfs.erofs is missing.
 */
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

static char dir[256];
static int have_acl, is_root;

/* ---- helpers -------------------------------------------------------------- */

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)v); put16(p + 2, (uint16_t)(v >> 16)); }
static void put64(uint8_t *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len || close(fd) != 0) {
		perror(path);
		exit(1);
	}
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *b = NULL;
	int fd = open(path, O_RDONLY);

	if (fd >= 0 && fstat(fd, &st) == 0 && (b = malloc((size_t)st.st_size + 1)) &&
	    read(fd, b, (size_t)st.st_size) != st.st_size) {
		free(b);
		b = NULL;
	}
	if (fd >= 0)
		close(fd);
	*len = b ? (size_t)st.st_size : 0;
	return b;
}

/* Regular file `rel` (relative to the cwd, the source tree) of `size`
 * bytes: a pattern, or `text` if given. */
static void mkf(const char *rel, const char *text, size_t size, unsigned seed)
{
	uint8_t *b = malloc(size + 1);
	for (size_t i = 0; i < size; i++)
		b[i] = text ? (uint8_t)text[i] : (uint8_t)((i * 31 + seed * 7 + (i >> 12)) ^ (i >> 5));
	write_file(rel, b, size);
	free(b);
}

static void set_time(const char *rel, time_t s, long ns)
{
	struct timespec ts[2] = { { s, ns }, { s, ns } };
	utimensat(AT_FDCWD, rel, ts, AT_SYMLINK_NOFOLLOW);
}

static void set_xattr(const char *rel, const char *name, const void *v, size_t len)
{
	if (lsetxattr(rel, name, v, len, 0) != 0)
		fprintf(stderr, "note: setxattr %s %s: %s\n", rel, name, strerror(errno));
}

static void build_tree(void)
{
	char p[512], name[128], link_target[4001], big[3000];
	uint8_t acl[4 + 5 * 8];
	static const size_t sizes[] = { 1, 511, 4095, 4096, 4097, 12345, 100000 };
	static const uint16_t tag[5] = { 1, 2, 4, 0x10, 0x20 }, perm[5] = { 6, 4, 4, 4, 0 };
	static const uint32_t id[5] = { 0xffffffffu, 1000, 0xffffffffu, 0xffffffffu, 0xffffffffu };
	struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "sock" };
	int s;

	snprintf(p, sizeof(p), "%s/src", dir);
	if (mkdir(p, 0755) != 0 || chdir(p) != 0)
		exit(1);
	mkf("empty", "", 0, 0);
	mkf("small", "hello\n", 6, 0);
	mkf("-dash", "sorts before '.'", 16, 0);
	mkf("!bang", "x", 1, 0);
	for (unsigned i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "sz%zu", sizes[i]);
		mkf(name, NULL, sizes[i], i);
	}
	memset(big, 0, sizeof(big));
	mkf("zeros", big, sizeof(big), 0);
	/* a directory spanning several blocks */
	mkdir("many", 0755);
	for (unsigned i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "many/entry-%04u-with-a-longer-name-%u", i, i * 7919 % 1000);
		mkf(name, "f", i % 3 ? 1 : 0, 0);
	}
	mkdir("many/subdir", 0755);
	mkf("many/subdir/inner", "inner file", 10, 0);
	/* deep nesting */
	strcpy(name, "deep");
	for (unsigned i = 0; strlen(name) < 100; i++) {
		mkdir(name, 0755);
		snprintf(name + strlen(name), 8, "/%u", i % 10);
	}
	mkf(name, "leaf data", 9, 0);
	/* symlinks: inline, 300 bytes, one that needs its own block */
	symlink("small", "sl_short");
	memset(link_target, 'L', 300);
	link_target[300] = '\0';
	symlink(link_target, "sl_300");
	for (unsigned i = 0; i < 4000; i++)
		link_target[i] = i % 50 ? (char)('a' + i % 26) : '/';
	link_target[4000] = '\0';
	symlink(link_target, "sl_4000");
	/* hardlinks, special files */
	mkf("hl_a", "linked content\n", 15, 0);
	link("hl_a", "hl_b");
	link("hl_a", "many/hl_c");
	mkfifo("fifo", 0640);
	if (is_root) {
		mknod("null", S_IFCHR | 0666, makedev(1, 3));
		mknod("bigdev", S_IFCHR | 0600, makedev(300, 70000));
		mknod("blk", S_IFBLK | 0660, makedev(8, 1));
		mknod("whiteout", S_IFCHR, makedev(0, 0));
	}
	if ((s = socket(AF_UNIX, SOCK_STREAM, 0)) >= 0) {
		if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) != 0)
			perror("bind");
		close(s);
	}
	lchown("small", 1000, 1001);
	lchown("sz511", 100000, 100001);
	lchown("sl_short", 7, 8);
	/* xattrs: user.common on 4 files so that mkfs -x0 shares it */
	set_xattr("small", "user.common", "shared-value", 12);
	set_xattr("sz1", "user.common", "shared-value", 12);
	set_xattr("sz4096", "user.common", "shared-value", 12);
	set_xattr("empty", "user.common", "shared-value", 12);
	set_xattr("small", "user.own", "", 0);
	set_xattr("small", "trusted.overlay.opaque", "y", 1);
	set_xattr("small", "security.label", "some\0binary", 11);
	set_xattr("many", "trusted.overlay.origin", "", 0);
	memset(big, 'v', sizeof(big));
	set_xattr("sz4097", "user.big", big, sizeof(big));
	/* a POSIX ACL (system.posix_acl_access, name index 2) */
	put32(acl, 2);
	for (int i = 0; i < 5; i++) {
		put16(acl + 4 + 8 * i, tag[i]);
		put16(acl + 6 + 8 * i, perm[i]);
		put32(acl + 8 + 8 * i, id[i]);
	}
	have_acl = lsetxattr("sz4095", "system.posix_acl_access", acl, sizeof(acl), 0) == 0;
	/* mtimes, directories last */
	set_time("small", 1600000000, 123456789);
	set_time("sz100000", 4102444800, 999999999); /* year 2100 */
	set_time("sl_short", 1500000000, 1);
	set_time("many", 1234567890, 500);
	set_time(".", 1700000000, 42);
	if (chdir("/") != 0)
		exit(1);
}

/* ---- comparison against the source tree ----------------------------------- */

struct xa {
	char name[300];
	uint8_t val[4096];
	size_t len;
};

struct xlist {
	struct xa v[32];
	int n, overflow;
};

static int xa_cmp(const void *a, const void *b)
{
	return strcmp(((const struct xa *)a)->name, ((const struct xa *)b)->name);
}

static int xattr_collect(void *ctx, const char *name, const void *value, size_t len)
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

static void src_xattrs(const char *path, struct xlist *l)
{
	char names[8192];
	ssize_t n = llistxattr(path, names, sizeof(names));

	memset(l, 0, sizeof(*l));
	for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names + off) + 1) {
		if (!strcmp(names + off, "security.selinux"))
			continue;
		struct xa *x = &l->v[l->n];
		ssize_t vl = lgetxattr(path, names + off, x->val, sizeof(x->val));
		if (vl < 0 || l->n == 31)
			continue;
		snprintf(x->name, sizeof(x->name), "%s", names + off);
		x->len = (size_t)vl;
		l->n++;
	}
	qsort(l->v, (size_t)l->n, sizeof(l->v[0]), xa_cmp);
}

struct cmp {
	shl_erofs *e;
	const char *root;
	int variant_compressed;
	int64_t fixed_mtime;        /* -T: every mtime is this (nsec 0) */
	int entries, compressed_seen, xattrs_seen, bad, dev1_extents;
	unsigned layouts;           /* bit per data layout seen on files and dirs */
	uint64_t hl_nid;
};

struct dotcheck {
	uint64_t self, parent;
	int dot, dotdot;
};

static int dot_cb(void *ctx, const char *name, size_t len, uint64_t nid, unsigned type)
{
	struct dotcheck *d = ctx;
	if (len == 1 && !strcmp(name, ".")) {
		d->dot = nid == d->self && type == 2;
	} else if (len == 2 && !strcmp(name, "..")) {
		d->dotdot = nid == d->parent && type == 2;
	}
	return 0;
}

static void fail(struct cmp *c, const char *path, const char *what)
{
	c->bad++;
	if (c->bad < 20)
		fprintf(stderr, "  mismatch at '%s': %s (%s)\n", path, what, shl_error_last());
}

static void cmp_data(struct cmp *c, const char *path, const char *sp, const shl_erofs_stat *st)
{
	size_t slen, got, step = 3001, done = 0;
	uint8_t *want = read_whole(sp, &slen), *buf;
	int rc;

	if (!want) {
		fail(c, path, "source unreadable");
		return;
	}
	buf = malloc(slen + 8192);
	rc = shl_erofs_pread(c->e, st->nid, buf, 1, 0, &got);
	if (rc == SHL_EUNSUPPORTED && c->variant_compressed && (st->layout == 1 || st->layout == 3)) {
		c->compressed_seen++;
		goto out;
	}
	if (rc) {
		fail(c, path, "pread");
		goto out;
	}
	while (done < slen) {
		if (shl_erofs_pread(c->e, st->nid, buf + done, step, done, &got) || got == 0) {
			fail(c, path, "pread chunk");
			goto out;
		}
		if (got < step && done + got != slen)
			fail(c, path, "short read before EOF");
		done += got;
	}
	if (memcmp(buf, want, slen))
		fail(c, path, "content differs");
	/* one read crossing block boundaries at an odd offset, and past EOF */
	if (slen > 5000) {
		CHECK_OK(shl_erofs_pread(c->e, st->nid, buf, 5000, 333, &got));
		CHECK(got == 5000 && !memcmp(buf, want + 333, 5000));
	}
	CHECK_OK(shl_erofs_pread(c->e, st->nid, buf, 100, slen + 10, &got));
	CHECK(got == 0);
	CHECK_OK(shl_erofs_pread(c->e, st->nid, buf, 8192, slen ? slen - 1 : 0, &got));
	CHECK(got == (slen ? 1u : 0u));
out:
	free(want);
	free(buf);
}

struct extsum {
	uint64_t next, total;
	int ok, dev1;
};

static int ext_cb(void *ctx, uint64_t file_off, int device, uint64_t dev_off, uint64_t len)
{
	struct extsum *s = ctx;
	(void)dev_off;
	if (file_off != s->next || !len || device < -1 || device > 1)
		s->ok = 0;
	s->dev1 += device == 1;
	s->next = file_off + len;
	s->total += len;
	return 0;
}

#define EXPECT(cond, what) do { if (!(cond)) fail(c, path, what); } while (0)

static int cmp_cb(void *ctx, const char *path, const shl_erofs_stat *st)
{
	struct cmp *c = ctx;
	char sp[1024], want[4200], got[4200];
	const char *slash = strrchr(path, '/');
	struct stat ss;
	uint64_t nid;

	c->entries++;
	if (S_ISREG(st->mode) || S_ISDIR(st->mode))
		c->layouts |= 1u << st->layout;
	snprintf(sp, sizeof(sp), "%s%s%s", c->root, *path ? "/" : "", path);
	if (lstat(sp, &ss) != 0) {
		fail(c, path, "not in the source");
		return 0;
	}
	EXPECT(st->mode == ss.st_mode, "mode");
	EXPECT(st->uid == ss.st_uid && st->gid == ss.st_gid, "owner");
	EXPECT(st->nlink == ss.st_nlink, "nlink");
	EXPECT(S_ISDIR(ss.st_mode) || st->size == (uint64_t)ss.st_size, "size");
	EXPECT(c->fixed_mtime >= 0 ? st->mtime == c->fixed_mtime && st->mtime_nsec == 0
				   : st->mtime == ss.st_mtim.tv_sec && st->mtime_nsec == (uint32_t)ss.st_mtim.tv_nsec,
	       "mtime");
	EXPECT(!(S_ISCHR(ss.st_mode) || S_ISBLK(ss.st_mode)) ||
	       (st->rdev_major == major(ss.st_rdev) && st->rdev_minor == minor(ss.st_rdev)), "rdev");
	EXPECT(!shl_erofs_lookup(c->e, path, &nid) && nid == st->nid, "lookup");
	if (!strcmp(path, "hl_a"))
		c->hl_nid = st->nid;
	EXPECT((strcmp(path, "hl_b") && strcmp(path, "many/hl_c")) || st->nid == c->hl_nid, "hardlink nid");
	if (S_ISLNK(ss.st_mode)) {
		ssize_t n = readlink(sp, want, sizeof(want) - 1);
		want[n < 0 ? 0 : n] = '\0';
		EXPECT(!shl_erofs_readlink(c->e, st->nid, got, sizeof(got)) && !strcmp(got, want), "symlink");
		EXPECT(shl_erofs_readlink(c->e, st->nid, got, (size_t)n) == SHL_ELIMIT, "short readlink buffer");
	}
	if (S_ISREG(ss.st_mode)) {
		struct extsum s = { 0, 0, 1, 0 };
		cmp_data(c, path, sp, st);
		if (st->layout != 1 && st->layout != 3) {
			EXPECT(!shl_erofs_extents(c->e, st->nid, ext_cb, &s) && s.ok && s.total == st->size, "extents");
			c->dev1_extents += s.dev1;
		}
	}
	if (S_ISDIR(ss.st_mode)) {
		struct dotcheck d = { st->nid, 0, 0, 0 };
		snprintf(want, sizeof(want), "%.*s", slash ? (int)(slash - path) : 0, path);
		EXPECT(!shl_erofs_lookup(c->e, want, &d.parent), "parent lookup");
		EXPECT(!shl_erofs_readdir(c->e, st->nid, dot_cb, &d) && d.dot && d.dotdot, "'.' and '..'");
	}
	{
		struct xlist xw, xg;
		src_xattrs(sp, &xw);
		memset(&xg, 0, sizeof(xg));
		if (shl_erofs_xattrs(c->e, st->nid, xattr_collect, &xg) || xg.overflow) {
			fail(c, path, "xattrs");
			return 0;
		}
		qsort(xg.v, (size_t)xg.n, sizeof(xg.v[0]), xa_cmp);
		EXPECT(xg.n == xw.n, "xattr count");
		for (int i = 0; i < xg.n && i < xw.n; i++)
			EXPECT(!strcmp(xg.v[i].name, xw.v[i].name) && xg.v[i].len == xw.v[i].len &&
			       !memcmp(xg.v[i].val, xw.v[i].val, xg.v[i].len), xg.v[i].name);
		c->xattrs_seen += xg.n;
	}
	return 0;
}

static int src_count;
static int count_cb(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)p; (void)sb; (void)flag; (void)f;
	src_count++;
	return 0;
}

static int run_mkfs(const char *img, const char *opts, const char *srcdir)
{
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "mkfs.erofs --quiet %s '%s' '%s' >/dev/null 2>&1", opts, img, srcdir);
	return system(cmd);
}

static void test_mkfs_variant(const char *opts, const char *blob, int compressed, int64_t fixed_mtime,
			      unsigned want_layouts)
{
	char img[512], srcdir[512], blobp[512], full[600];
	struct cmp c;
	shl_erofs_info info;
	shl_erofs_stat st;
	uint64_t nid;

	snprintf(img, sizeof(img), "%s/img.erofs", dir);
	snprintf(srcdir, sizeof(srcdir), "%s/src", dir);
	snprintf(blobp, sizeof(blobp), "%s/blob", dir);
	snprintf(full, sizeof(full), "%s%s%s", opts, blob ? " --blobdev=" : "", blob ? blobp : "");
	unlink(blobp);
	if (run_mkfs(img, full, srcdir) != 0) {
		fprintf(stderr, "note: mkfs.erofs %s failed; variant skipped\n", full);
		return;
	}
	printf("variant: mkfs.erofs %s\n", opts);
	memset(&c, 0, sizeof(c));
	c.root = srcdir;
	c.variant_compressed = compressed;
	c.fixed_mtime = fixed_mtime;
	CHECK_OK(shl_erofs_open(&c.e, img, blob ? blobp : NULL));
	if (!c.e)
		return;
	shl_erofs_get_info(c.e, &info);
	CHECK(info.block_size == 4096);
	CHECK(info.root_nid == shl_erofs_root(c.e));
	CHECK(!blob || info.extra_devices == 1);
	CHECK_OK(shl_erofs_walk(c.e, cmp_cb, &c));
	CHECK(c.bad == 0);
	CHECK(c.entries == src_count);
	CHECK(c.xattrs_seen == 9 + have_acl);
	CHECK(!compressed || c.compressed_seen > 0);
	CHECK(!blob || c.dev1_extents > 0);
	if (c.layouts != want_layouts)
		fprintf(stderr, "  layouts seen 0x%x, expected 0x%x\n", c.layouts, want_layouts);
	CHECK(c.layouts == want_layouts);
	CHECK_OK(shl_erofs_lookup(c.e, "many", &nid));
	CHECK_OK(shl_erofs_getattr(c.e, nid, &st));
	CHECK(st.size > 3 * 4096);
	CHECK_OK(shl_erofs_lookup(c.e, "/", &nid));
	CHECK(nid == info.root_nid);
	CHECK_OK(shl_erofs_lookup(c.e, "//many//subdir/", &nid));
	CHECK_OK(shl_erofs_lookup(c.e, "many/subdir/../../small", &nid));
	CHECK_ERR(shl_erofs_lookup(c.e, "many/nope", &nid), SHL_ENOTFOUND);
	CHECK_ERR(shl_erofs_lookup(c.e, "small/x", &nid), SHL_ENOTFOUND);
	CHECK_ERR(shl_erofs_lookup(c.e, "zzzz", &nid), SHL_ENOTFOUND);
	CHECK_ERR(shl_erofs_lookup(c.e, "!", &nid), SHL_ENOTFOUND);
	shl_erofs_close(c.e);
}

/* ---- read everything, for the corruption tests ---------------------------- */

struct all {
	shl_erofs *e;
	int visits;
	uint8_t buf[65536];
};

static int noop_x(void *ctx, const char *n, const void *v, size_t l) { (void)ctx; (void)n; (void)v; (void)l; return 0; }
static int noop_e(void *ctx, uint64_t a, int d, uint64_t b, uint64_t l) { (void)ctx; (void)a; (void)d; (void)b; (void)l; return 0; }

static int all_cb(void *ctx, const char *path, const shl_erofs_stat *st)
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

static int open_mem(shl_erofs **e, const uint8_t *img, size_t len, const uint8_t *dev, size_t dlen, int *fds)
{
	fds[0] = memfd_create("img", 0);
	fds[1] = dev ? memfd_create("dev", 0) : -1;
	if (write(fds[0], img, len) != (ssize_t)len || (dev && write(fds[1], dev, dlen) != (ssize_t)dlen))
		abort();
	return shl_erofs_open_fd(e, fds[0], fds[1]);
}

static void close_mem(shl_erofs *e, int *fds)
{
	shl_erofs_close(e);
	close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
}

/* Open an image (and device) held in memory and read everything. */
static int read_all_mem(const uint8_t *img, size_t len, const uint8_t *dev, size_t dlen)
{
	static struct all a;
	int fds[2], rc;

	memset(&a, 0, sizeof(a));
	if (!(rc = open_mem(&a.e, img, len, dev, dlen, fds)))
		rc = shl_erofs_walk(a.e, all_cb, &a);
	close_mem(a.e, fds);
	return rc;
}

static void fix_crc(uint8_t *img, size_t len)
{
	uint32_t blksz = 1u << img[1024 + 12];
	uint32_t n = blksz > 1024 ? blksz - 1024 : blksz;
	if (blksz > 4096 || 1024 + (size_t)n > len || !(img[1024 + 8] & 1))
		return;
	put32(img + 1028, 0);
	put32(img + 1028, shl_crc32c(0xFFFFFFFFu, img + 1024, n));
}

static void test_corruption(void)
{
	char img[512], srcdir[512];
	uint8_t *orig, *b;
	size_t len;
	int errors = 0;

	snprintf(img, sizeof(img), "%s/img.erofs", dir);
	snprintf(srcdir, sizeof(srcdir), "%s/src", dir);
	if (run_mkfs(img, "", srcdir) != 0 || !(orig = read_whole(img, &len)))
		return;
	CHECK_OK(read_all_mem(orig, len, NULL, 0));
	b = malloc(len);
	/* the checksum catches a flip in block 0 */
	memcpy(b, orig, len);
	b[1500] ^= 0x40;
	CHECK_ERR(read_all_mem(b, len, NULL, 0), SHL_EFORMAT);
	/* random flips in the metadata, checksum fixed up so they get through */
	for (int i = 0; i < 400; i++) {
		size_t meta = len < 16384 ? len : 16384;
		memcpy(b, orig, len);
		for (int k = 0, n = 1 + (int)(rnd() % 4); k < n; k++)
			b[1024 + rnd() % (meta - 1024)] ^= (uint8_t)(1u << (rnd() % 8));
		if (i % 5 == 0)
			b[1024 + 128 + rnd() % 2048] = (uint8_t)rnd();
		fix_crc(b, len);
		if (read_all_mem(b, len, NULL, 0) != 0)
			errors++;
	}
	printf("corruption: %d of 400 flipped images gave errors\n", errors);
	CHECK(errors > 20);
	/* truncations */
	{
		static const size_t cuts[] = { 0, 100, 1100, 1151, 1152, 2048, 4095 };
		for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
			CHECK_ERR(read_all_mem(orig, cuts[i], NULL, 0), SHL_EFORMAT);
		CHECK(read_all_mem(orig, len / 2, NULL, 0) < 0);
		(void)read_all_mem(orig, len - 1, NULL, 0);
	}
	free(b);
	free(orig);
}

/* ---- the hand-crafted 512-byte-block image -------------------------------- */

/* Layout (blksz 512): SB @1024, device slot @1152, root dir nid 40 @1280
 * (extended, FLAT_INLINE dirents ". .. c f g h"), block 3: nid 48 "f"
 * (CHUNK_BASED, 8-byte indexes, 1 KiB chunks: dev1 blk0, hole, dev1 blk4),
 * nid 52 "g" (4-byte block map, 512 B chunks: unified blk 9 = dev1 blk1,
 * primary blk4, hole), nid 56 "h" (compact FLAT_PLAIN @blk5, xattrs: shared
 * security.sel1, inline user.abc and long-prefix trusted.overlay.opaque),
 * nid 60 "c" (compact chr 300:70000). Block 7: shared xattr + prefix table.
 * Primary = 8 blocks, device 1 (uniaddr 8) = 8 blocks. */
#define C_IMG 4096
#define C_DEV 4096

static uint8_t dev_byte(size_t i) { return (uint8_t)(i * 7 + 3 + (i >> 9)); }

static uint8_t *ext_inode(uint8_t *p, unsigned layout, unsigned mode, uint64_t size, uint32_t i_u)
{
	put16(p, (uint16_t)(1 | layout << 1));
	put16(p + 4, (uint16_t)mode);
	put64(p + 8, size);
	put32(p + 16, i_u);
	put32(p + 44, S_ISDIR(mode) ? 2 : 1);
	return p;
}

static void craft(uint8_t *img, uint8_t *dev)
{
	uint8_t *sb = img + 1024, *p;
	static const char *names[6] = { ".", "..", "c", "f", "g", "h" };
	static const uint64_t nids[6] = { 40, 40, 60, 48, 52, 56 };
	static const uint8_t types[6] = { 2, 2, 3, 1, 1, 1 };
	unsigned no = 72;

	memset(img, 0, C_IMG);
	for (size_t i = 0; i < C_DEV; i++)
		dev[i] = dev_byte(i);
	put32(sb, 0xE0F5E1E2u);
	put32(sb + 8, 1);                         /* SB_CHKSUM */
	sb[12] = 9;
	put16(sb + 14, 40);                       /* root nid */
	put64(sb + 16, 5);                        /* inodes */
	put64(sb + 24, 1700000000);               /* epoch */
	put32(sb + 32, 7);                        /* fixed_nsec */
	put32(sb + 36, 8);                        /* blocks */
	put32(sb + 44, 7);                        /* xattr_blkaddr */
	memcpy(sb + 64, "crafted", 7);
	put32(sb + 80, 0x4 | 0x8 | 0x40);         /* CHUNKED_FILE | DEVICE_TABLE | XATTR_PREFIXES */
	put16(sb + 86, 1); put16(sb + 88, 9);     /* one device, slot at 1152 */
	sb[91] = 1; put32(sb + 92, 3648 / 4);     /* one long prefix, at 3648 */
	put32(img + 1152 + 64, 8);                /* device blocks */
	put32(img + 1152 + 68, 8);                /* uniaddr */
	/* root: extended FLAT_INLINE dir with 79 bytes of dirents */
	p = ext_inode(img + 1280, 2, S_IFDIR | 0755, 79, 0xFFFFFFFFu);
	put64(p + 32, 1600000000);
	for (int i = 0; i < 6; i++) {
		put64(p + 64 + 12 * i, nids[i]);
		put16(p + 64 + 12 * i + 8, (uint16_t)no);
		p[64 + 12 * i + 10] = types[i];
		memcpy(p + 64 + no, names[i], strlen(names[i]));
		no += (unsigned)strlen(names[i]);
	}
	/* f: 2500 bytes, chunkbits 10, indexes at 1600 */
	p = ext_inode(img + 1536, 4, S_IFREG | 0644, 2500, 0x20 | 1);
	put16(p + 64 + 2, 1); put32(p + 64 + 4, 0);
	put16(p + 72 + 2, 1); put32(p + 72 + 4, 0xFFFFFFFFu);
	put16(p + 80 + 2, 1); put32(p + 80 + 4, 4);
	/* g: 1200 bytes, chunkbits 9, block map at 1728 */
	p = ext_inode(img + 1664, 4, S_IFREG | 0600, 1200, 0);
	put32(p + 64, 9); put32(p + 68, 4); put32(p + 72, 0xFFFFFFFFu);
	for (int i = 0; i < 512; i++)
		img[2048 + i] = (uint8_t)(0xA0 ^ i);
	/* h: compact, FLAT_PLAIN at block 5, 700 bytes, 40 bytes of xattrs */
	p = img + 1792;
	put16(p + 2, 8); put16(p + 4, S_IFREG | 0640); put16(p + 6, 1);
	put32(p + 8, 700); put32(p + 12, 5); put32(p + 16, 5);
	put16(p + 24, 7); put16(p + 26, 8);
	p[32 + 4] = 1;                    /* h_shared_count */
	put32(p + 32 + 12, 0);            /* shared id 0 */
	p[48] = 3; p[49] = 1; put16(p + 50, 2); memcpy(p + 52, "abcxy", 5);
	p[60] = 6; p[61] = 0x80; put16(p + 62, 1); memcpy(p + 64, "opaquey", 7);
	for (int i = 0; i < 700; i++)
		img[2560 + i] = (uint8_t)(i * 13);
	/* c: compact chr */
	p = img + 1920;
	put16(p + 4, S_IFCHR | 0600); put16(p + 6, 1);
	put32(p + 16, (70000 & 0xff) | (300u << 8) | ((70000u & ~0xffu) << 12));
	/* block 7: shared xattr security.sel1=label, long prefix trusted.overlay. */
	p = img + 3584;
	p[0] = 4; p[1] = 6; put16(p + 2, 5); memcpy(p + 4, "sel1label", 9);
	put16(img + 3648, 9); img[3650] = 4; memcpy(img + 3651, "overlay.", 8);
	fix_crc(img, C_IMG);
}

static void expect_file(shl_erofs *e, const char *path, const uint8_t *want, size_t len)
{
	uint8_t buf[4096];
	uint64_t nid = 0;
	size_t got = 0;

	CHECK_OK(shl_erofs_lookup(e, path, &nid));
	CHECK_OK(shl_erofs_pread(e, nid, buf, sizeof(buf), 0, &got));
	CHECK(got == len && !memcmp(buf, want, len));
	/* reads starting inside each piece */
	for (size_t off = 1; off < len; off += 509) {
		CHECK_OK(shl_erofs_pread(e, nid, buf, 700, off, &got));
		CHECK(got == (len - off < 700 ? len - off : 700) && !memcmp(buf, want + off, got));
	}
}

struct ext_rec {
	uint64_t v[8][4];
	int n;
};

static int ext_rec_cb(void *ctx, uint64_t fo, int dev, uint64_t off, uint64_t len)
{
	struct ext_rec *r = ctx;
	if (r->n < 8) {
		r->v[r->n][0] = fo;
		r->v[r->n][1] = (uint64_t)(int64_t)dev;
		r->v[r->n][2] = off;
		r->v[r->n][3] = len;
	}
	r->n++;
	return 0;
}

static int stop_dirent(void *ctx, const char *name, size_t len, uint64_t nid, unsigned type)
{
	(void)name; (void)len; (void)nid; (void)type;
	return ++*(int *)ctx == 2 ? 7 : 0;
}

static int stop_walk(void *ctx, const char *path, const shl_erofs_stat *st)
{
	(void)st;
	return !strcmp(path, "g") ? ++*(int *)ctx + 4 : 0;
}

static void check_crafted(shl_erofs *e)
{
	uint8_t f[2500], g[1200], h[700];
	shl_erofs_stat st;
	shl_erofs_info info;
	struct xlist xl;
	struct ext_rec r;
	uint64_t nid = 0;
	size_t got;
	int n = 0;

	for (int i = 0; i < 2500; i++)
		f[i] = i < 1024 ? dev_byte((size_t)i) : i < 2048 ? 0 : dev_byte((size_t)i);
	for (int i = 0; i < 1200; i++)
		g[i] = i < 512 ? dev_byte(512 + (size_t)i) : i < 1024 ? (uint8_t)(0xA0 ^ (i - 512)) : 0;
	for (int i = 0; i < 700; i++)
		h[i] = (uint8_t)(i * 13);
	shl_erofs_get_info(e, &info);
	CHECK(info.block_size == 512 && info.root_nid == 40 && info.extra_devices == 1);
	CHECK(info.device_blocks == 8 && info.blocks == 8 && !strcmp(info.volume, "crafted"));
	expect_file(e, "f", f, sizeof(f));
	expect_file(e, "/g", g, sizeof(g));
	expect_file(e, "h", h, sizeof(h));
	CHECK_OK(shl_erofs_lookup(e, "h", &nid));
	CHECK_OK(shl_erofs_getattr(e, nid, &st));
	CHECK(st.uid == 7 && st.gid == 8 && st.mtime == 1700000005 && st.mtime_nsec == 7);
	CHECK(st.layout == 0 && st.size == 700 && st.mode == (S_IFREG | 0640));
	memset(&xl, 0, sizeof(xl));
	CHECK_OK(shl_erofs_xattrs(e, nid, xattr_collect, &xl));
	CHECK(xl.n == 3);
	CHECK(!strcmp(xl.v[0].name, "user.abc") && xl.v[0].len == 2 && !memcmp(xl.v[0].val, "xy", 2));
	CHECK(!strcmp(xl.v[1].name, "trusted.overlay.opaque") && xl.v[1].len == 1);
	CHECK(!strcmp(xl.v[2].name, "security.sel1") && !memcmp(xl.v[2].val, "label", 5));
	CHECK_OK(shl_erofs_lookup(e, "c", &nid));
	CHECK_OK(shl_erofs_getattr(e, nid, &st));
	CHECK(S_ISCHR(st.mode) && st.rdev_major == 300 && st.rdev_minor == 70000);
	CHECK_ERR(shl_erofs_pread(e, nid, f, 1, 0, &got), SHL_EINVAL);
	CHECK_ERR(shl_erofs_readlink(e, nid, (char *)f, 10), SHL_EINVAL);
	CHECK_ERR(shl_erofs_readdir(e, nid, stop_dirent, &n), SHL_EINVAL);
	/* callbacks stop readdir and the walk with their own value */
	CHECK(shl_erofs_readdir(e, 40, stop_dirent, &n) == 7 && n == 2);
	n = 0;
	CHECK(shl_erofs_walk(e, stop_walk, &n) == 5 && n == 1);
	memset(&r, 0, sizeof(r));
	CHECK_OK(shl_erofs_lookup(e, "f", &nid));
	CHECK_OK(shl_erofs_extents(e, nid, ext_rec_cb, &r));
	CHECK(r.n == 3 && r.v[0][1] == 1 && r.v[0][2] == 0 && r.v[0][3] == 1024);
	CHECK(r.v[1][0] == 1024 && r.v[1][1] == (uint64_t)-1 && r.v[1][3] == 1024);
	CHECK(r.v[2][1] == 1 && r.v[2][2] == 2048 && r.v[2][3] == 452);
	memset(&r, 0, sizeof(r));
	CHECK_OK(shl_erofs_lookup(e, "g", &nid));
	CHECK_OK(shl_erofs_extents(e, nid, ext_rec_cb, &r));
	CHECK(r.n == 3 && r.v[0][1] == 1 && r.v[0][2] == 512 && r.v[1][1] == 0 && r.v[1][2] == 2048);
	CHECK(r.v[2][1] == (uint64_t)-1 && r.v[2][3] == 176);
}

/* A targeted break of the crafted image: write `val` (`width` bytes) at
 * `off`, fix the checksum (unless stage 2), and expect `code` from open
 * (stage 1, 2) or from reading everything (stage 0). */
struct patch {
	const char *what;
	unsigned off, width;
	uint64_t val;
	int code, stage;
};

static const struct patch patches[] = {
	{ "checksum", 1100, 1, 1, SHL_EFORMAT, 2 },
	{ "unknown incompat bit", 1024 + 81, 1, 0x02, SHL_EUNSUPPORTED, 1 },
	{ "block size 8K", 1024 + 12, 1, 13, SHL_EUNSUPPORTED, 1 },
	{ "magic", 1024, 1, 0, SHL_EFORMAT, 1 },
	{ "root not a dir", 1024 + 14, 2, 56, SHL_EFORMAT, 1 },
	{ "device table beyond the image", 1024 + 88, 2, 500, SHL_EFORMAT, 1 },
	{ "de[0].nameoff", 1344 + 8, 2, 70, SHL_EFORMAT, 0 },
	{ "nameoffs decreasing", 1344 + 36 + 8, 2, 74, SHL_EFORMAT, 0 },
	{ "names unsorted", 1344 + 76, 2, 'g' | 'f' << 8, SHL_EFORMAT, 0 },
	{ "slash in a name", 1344 + 75, 1, '/', SHL_EFORMAT, 0 },
	{ "inline data crossing a block", 1280 + 8, 8, 300, SHL_EFORMAT, 0 },
	{ "directory is its own ancestor", 1344 + 24, 8, 40, SHL_EFORMAT, 0 },
	{ "huge nid", 1344 + 36, 8, 1ull << 60, SHL_EFORMAT, 0 },
	{ "compressed layout", 1792, 2, 1 << 1, SHL_EUNSUPPORTED, 0 },
	{ "layout 7", 1792, 2, 7 << 1, SHL_EUNSUPPORTED, 0 },
	{ "bad file type", 1792 + 4, 2, 0170000, SHL_EFORMAT, 0 },
	{ "48-bit chunks", 1536 + 16, 4, 0x41, SHL_EUNSUPPORTED, 0 },
	{ "chunk beyond the device", 1536 + 80 + 4, 4, 100, SHL_EFORMAT, 0 },
	{ "xattr value overruns", 1792 + 50, 2, 200, SHL_EFORMAT, 0 },
	{ "too many shared xattrs", 1792 + 36, 1, 200, SHL_EFORMAT, 0 },
	{ "unknown xattr index", 1792 + 49, 1, 9, SHL_EUNSUPPORTED, 0 },
	{ "long prefix id", 1792 + 61, 1, 0x81, SHL_EFORMAT, 0 },
};

static void crafted_bad(const struct patch *pt)
{
	static uint8_t img[C_IMG], dev[C_DEV];
	shl_erofs *e = NULL;
	int fds[2], rc;

	craft(img, dev);
	for (unsigned i = 0; i < pt->width; i++)
		img[pt->off + i] = (uint8_t)(pt->val >> (8 * i));
	if (pt->stage != 2)
		fix_crc(img, C_IMG);
	if (pt->stage) {
		rc = open_mem(&e, img, C_IMG, dev, C_DEV, fds);
		close_mem(e, fds);
	} else {
		rc = read_all_mem(img, C_IMG, dev, C_DEV);
	}
	if (rc != pt->code)
		fprintf(stderr, "  crafted '%s': got %d, expected %d (%s)\n", pt->what, rc, pt->code, shl_error_last());
	CHECK(rc == pt->code);
}

static void test_crafted(void)
{
	static uint8_t img[C_IMG + C_DEV], dev[C_DEV];
	shl_erofs *e = NULL;
	int fds[2];
	uint64_t nid;
	size_t got;
	uint8_t buf[64];

	craft(img, dev);
	/* the device as its own file */
	CHECK_OK(open_mem(&e, img, C_IMG, dev, C_DEV, fds));
	if (e)
		check_crafted(e);
	close_mem(e, fds);
	/* flatdev: the device appended to the primary at uniaddr (block 8) */
	memcpy(img + C_IMG, dev, C_DEV);
	CHECK_OK(open_mem(&e, img, C_IMG + C_DEV, NULL, 0, fds));
	if (e)
		check_crafted(e);
	close_mem(e, fds);
	/* no device at all: metadata and primary data work, device data fails */
	CHECK_OK(open_mem(&e, img, C_IMG, NULL, 0, fds));
	CHECK_OK(shl_erofs_lookup(e, "h", &nid));
	CHECK_OK(shl_erofs_pread(e, nid, buf, sizeof(buf), 0, &got));
	CHECK_OK(shl_erofs_lookup(e, "f", &nid));
	CHECK_ERR(shl_erofs_pread(e, nid, buf, sizeof(buf), 0, &got), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "erofs nid 48") != NULL);
	close_mem(e, fds);

	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		crafted_bad(&patches[i]);
		if (strstr(patches[i].what, "ancestor"))
			CHECK(strstr(shl_error_last(), "own ancestor") != NULL);
		if (strstr(patches[i].what, "compressed"))
			CHECK(strstr(shl_error_last(), "compressed") != NULL);
	}
}

int main(void)
{
	char srcdir[512];

	snprintf(dir, sizeof(dir), "%s/shl-erofs-read-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	is_root = geteuid() == 0;
	test_crafted();
	if (system("command -v mkfs.erofs >/dev/null 2>&1") != 0) {
		printf("note: mkfs.erofs not found; only the hand-crafted image was tested\n");
	} else {
		build_tree();
		snprintf(srcdir, sizeof(srcdir), "%s/src", dir);
		nftw(srcdir, count_cb, 16, FTW_PHYS);
		test_mkfs_variant("", NULL, 0, -1, 0x5);
		test_mkfs_variant("-x0 -Enoinline_data", NULL, 0, -1, 0x5); /* shared xattrs */
		test_mkfs_variant("-Eforce-inode-extended", NULL, 0, -1, 0x5);
		test_mkfs_variant("-T1234567", NULL, 0, 1234567, 0x5);
		test_mkfs_variant("--chunksize=4096", NULL, 0, -1, 0x15);
		test_mkfs_variant("--chunksize=8192 -Eforce-chunk-indexes", NULL, 0, -1, 0x15);
		test_mkfs_variant("--chunksize=4096", "blob", 0, -1, 0x15);
		test_mkfs_variant("-zlz4", NULL, 1, -1, 0xd);
		test_corruption();
	}
	{
		char cmd[600];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", dir);
	}
	return check_result("test_erofs_read");
}
