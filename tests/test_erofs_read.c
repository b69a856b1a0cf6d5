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
 * 2. (test_erofs_crafted.c: a hand-crafted image.)
 * 3. Flips bytes in and truncates mkfs images: errors, never crashes.
 * The mkfs part prints a note and is skipped when mkfs.erofs is missing.
 */
#include "erofslib.h"

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

int main(void)
{
	char srcdir[512];

	snprintf(dir, sizeof(dir), "%s/shl-erofs-read-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	is_root = geteuid() == 0;
	if (system("command -v mkfs.erofs >/dev/null 2>&1") != 0) {
		printf("SKIPPED: mkfs.erofs not found (Debian: erofs-utils)\n");
		rmdir(dir);
		return 77;
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
