/*
 * tests/test_squash.c - squash against the kernel's overlayfs.
 *
 * Three index-mode layers (written through fstree + the EROFS writer, data
 * in per-layer "tars") exercise whiteouts, opaque dirs, replaced paths,
 * hardlinks, xattrs and devices. The squashed full-mode EROFS image, mounted
 * by the kernel, must show exactly the tree overlayfs shows for the same
 * stack (compared entry by entry: type, mode, owner, mtime, size, content,
 * xattrs, link targets, rdev, hardlink groups). Without root the mount
 * comparison is SKIPPED, but the squash itself still runs and is checked
 * with shale's reader.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "shale/erofs.h"
#include "shale/mount.h"
#include "shale/squash.h"
#include "store/erofs_write.h"
#include "store/fstree.h"

static char dir[64];

struct layer_build {
	shl_fstree *t;
	int dev;
	uint64_t off;
};

static void lb_file(struct layer_build *b, const char *path, const char *content, uint32_t mode)
{
	shl_fsattr a;
	size_t n = strlen(content);

	memset(&a, 0, sizeof(a));
	a.mode = S_IFREG | mode;
	a.uid = 1000;
	a.gid = 100;
	a.mtime = 1600000000;
	a.mtime_ns = 42;
	a.size = n;
	a.data_off = b->off;
	CHECK(pwrite(b->dev, content, n, (off_t)b->off) == (ssize_t)n);
	b->off += (n + 511) / 512 * 512 + 512;
	CHECK_OK(shl_fstree_add(b->t, path, &a, NULL));
}

static void lb_simple(struct layer_build *b, const char *path, uint32_t mode, const char *extra)
{
	shl_fsattr a;

	memset(&a, 0, sizeof(a));
	a.mode = mode;
	a.mtime = 1600000100;
	if (S_ISLNK(mode))
		a.symlink = extra;
	else if (extra)
		a.hardlink = extra;
	if (S_ISCHR(mode)) {
		a.rdev_major = 1;
		a.rdev_minor = 5;
	}
	CHECK_OK(shl_fstree_add(b->t, path, &a, NULL));
}

static void build_layer(int i, shl_squash_layer *out, char paths[2][128])
{
	struct layer_build b = { 0 };
	shl_erofs_wopts o;
	int img;

	snprintf(paths[0], 128, "%s/l%d.erofs", dir, i);
	snprintf(paths[1], 128, "%s/l%d.tar", dir, i);
	b.dev = open(paths[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	img = open(paths[0], O_RDWR | O_CREAT | O_TRUNC, 0644);
	b.off = 512;
	CHECK_OK(shl_fstree_new(&b.t, NULL));
	if (i == 0) {
		lb_file(&b, "etc/passwd", "root:x:0:0\n", 0644);
		lb_file(&b, "etc/gone", "to be whited out\n", 0644);
		lb_file(&b, "usr/bin/tool", "#!/bin/sh\necho v1\n", 04755);
		lb_simple(&b, "usr/bin/tool2", 0, "usr/bin/tool"); /* hardlink */
		lb_file(&b, "opq/old1", "old\n", 0644);
		lb_file(&b, "opq/sub/old2", "old\n", 0644);
		lb_file(&b, "replace/was_file", "f\n", 0644);
		lb_file(&b, "dir_to_file/inner", "i\n", 0644);
		lb_simple(&b, "dev/null", S_IFCHR | 0666, NULL);
		{
			uint32_t ino;
			shl_fsattr a;
			memset(&a, 0, sizeof(a));
			a.mode = S_IFREG | 0755;
			a.data_off = b.off;
			CHECK_OK(shl_fstree_add(b.t, "bin/ping", &a, &ino));
			CHECK_OK(shl_fstree_add_xattr(b.t, ino, "security.capability",
						      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20));
			CHECK_OK(shl_fstree_add_xattr(b.t, ino, "user.note", "lower", 5));
		}
	} else if (i == 1) {
		lb_simple(&b, "etc/.wh.gone", S_IFREG | 0644, NULL);
		lb_simple(&b, "opq/.wh..wh..opq", S_IFREG | 0644, NULL);
		lb_file(&b, "opq/new", "new\n", 0644);
		lb_file(&b, "usr/bin/tool", "#!/bin/sh\necho v2\n", 0755); /* replaces one link name */
		lb_simple(&b, "replace/was_file", S_IFDIR | 0700, NULL);
		lb_file(&b, "replace/was_file/now_dir", "d\n", 0600);
		lb_file(&b, "dir_to_file", "now a file\n", 0640);
		lb_simple(&b, "link", S_IFLNK | 0777, "etc/passwd");
	} else {
		lb_simple(&b, ".wh.link", S_IFREG | 0644, NULL);
		lb_file(&b, "link", "regular now\n", 0644);
		lb_file(&b, "opq/sub2/x", "x\n", 0644);
	}
	CHECK_OK(shl_fstree_finalize(b.t));
	CHECK(ftruncate(b.dev, (off_t)(b.off + 1024)) == 0);
	memset(&o, 0, sizeof(o));
	o.mode = SHL_EROFS_INDEX;
	o.tar_size = b.off + 1024;
	CHECK_OK(shl_erofs_write(b.t, &o, img, NULL));
	shl_fstree_free(b.t);
	close(b.dev);
	close(img);
	out->erofs_path = paths[0];
	out->tar_path = paths[1];
}

/* Compare two trees recursively; returns the number of differences. */
static int compare(const char *a, const char *b, const char *rel)
{
	char pa[1024], pb[1024];
	struct stat sa, sb;
	int diffs = 0;

	snprintf(pa, sizeof(pa), "%s/%s", a, rel);
	snprintf(pb, sizeof(pb), "%s/%s", b, rel);
	if (lstat(pa, &sa) != 0 || lstat(pb, &sb) != 0) {
		fprintf(stderr, "  '%s': missing on one side\n", rel);
		return 1;
	}
	if (sa.st_mode != sb.st_mode || sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid ||
	    (!S_ISDIR(sa.st_mode) && sa.st_size != sb.st_size) || sa.st_mtime != sb.st_mtime ||
	    sa.st_mtim.tv_nsec != sb.st_mtim.tv_nsec || sa.st_rdev != sb.st_rdev) {
		/* nlink is not compared: overlayfs reports a lower inode's stale
		 * count after an upper layer replaced one of its names; squash
		 * counts the names that remain (checked separately). */
		fprintf(stderr, "  '%s': stat differs (mode %o/%o size %lld/%lld nlink %lu/%lu)\n", rel,
			sa.st_mode, sb.st_mode, (long long)sa.st_size, (long long)sb.st_size,
			(unsigned long)sa.st_nlink, (unsigned long)sb.st_nlink);
		diffs++;
	}
	{
		char la[4096], lbuf[4096];
		ssize_t na = llistxattr(pa, la, sizeof(la)), nb = llistxattr(pb, lbuf, sizeof(lbuf));
		/* overlay adds nothing visible for lower-only entries; compare the sets */
		for (ssize_t k = 0; na > 0 && k < na; k += (ssize_t)strlen(la + k) + 1) {
			char va[256], vb[256];
			ssize_t x = lgetxattr(pa, la + k, va, sizeof(va)), y = lgetxattr(pb, la + k, vb, sizeof(vb));
			if (!strncmp(la + k, "trusted.overlay.", 16))
				continue;
			if (x != y || (x > 0 && memcmp(va, vb, (size_t)x))) {
				fprintf(stderr, "  '%s': xattr %s differs\n", rel, la + k);
				diffs++;
			}
		}
		(void)nb;
	}
	if (S_ISREG(sa.st_mode)) {
		char ca[4096] = "", cb[4096] = "";
		int fa = open(pa, O_RDONLY), fb = open(pb, O_RDONLY);
		ssize_t ra = fa >= 0 ? read(fa, ca, sizeof(ca)) : -1, rb = fb >= 0 ? read(fb, cb, sizeof(cb)) : -1;
		if (ra != rb || ra < 0 || memcmp(ca, cb, (size_t)ra)) {
			fprintf(stderr, "  '%s': content differs\n", rel);
			diffs++;
		}
		if (fa >= 0)
			close(fa);
		if (fb >= 0)
			close(fb);
	} else if (S_ISLNK(sa.st_mode)) {
		char ta[4096], tb[4096];
		ssize_t x = readlink(pa, ta, sizeof(ta)), y = readlink(pb, tb, sizeof(tb));
		if (x != y || x < 0 || memcmp(ta, tb, (size_t)x)) {
			fprintf(stderr, "  '%s': link target differs\n", rel);
			diffs++;
		}
	} else if (S_ISDIR(sa.st_mode)) {
		/* same names on both sides */
		const char *sides[2] = { pa, pb };
		for (int s = 0; s < 2; s++) {
			DIR *d = opendir(sides[s]);
			struct dirent *e;
			while (d && (e = readdir(d))) {
				char sub[1024], other[2200];
				struct stat so;
				if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
					continue;
				snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", e->d_name);
				snprintf(other, sizeof(other), "%s/%s", s ? a : b, sub);
				if (lstat(other, &so) != 0) {
					fprintf(stderr, "  '%s': only in %s\n", sub, s ? "squash" : "overlay");
					diffs++;
				} else if (s == 0) {
					diffs += compare(a, b, sub);
				}
			}
			if (d)
				closedir(d);
		}
	}
	return diffs;
}

int main(void)
{
	shl_squash_layer layers[3];
	char paths[3][2][128], out[128], mnt[3][128], ovl[128], sq[128], cmd[256];
	shl_squash_opts o = SHL_SQUASH_OPTS_INIT;
	shl_erofs *e = NULL;
	uint64_t nid;
	int fd, mounted = 0;

	snprintf(dir, sizeof(dir), "/tmp/shl-squash-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	for (int i = 0; i < 3; i++)
		build_layer(i, &layers[i], paths[i]);
	snprintf(out, sizeof(out), "%s/squash.erofs", dir);
	fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK_OK(shl_squash(layers, 3, &o, fd));
	close(fd);

	/* shale's reader view of the result (no root needed) */
	CHECK_OK(shl_erofs_open(&e, out, NULL));
	if (e) {
		CHECK_ERR(shl_erofs_lookup(e, "etc/gone", &nid), SHL_ENOTFOUND);
		CHECK_ERR(shl_erofs_lookup(e, "opq/old1", &nid), SHL_ENOTFOUND);
		CHECK_ERR(shl_erofs_lookup(e, "opq/sub", &nid), SHL_ENOTFOUND);
		CHECK_OK(shl_erofs_lookup(e, "opq/new", &nid));
		CHECK_OK(shl_erofs_lookup(e, "opq/sub2/x", &nid));
		CHECK_OK(shl_erofs_lookup(e, "replace/was_file/now_dir", &nid));
		CHECK_ERR(shl_erofs_lookup(e, "dir_to_file/inner", &nid), SHL_ENOTFOUND);
		shl_erofs_close(e);
	}
	CHECK(system("command -v fsck.erofs >/dev/null") != 0 ||
	      (snprintf(cmd, sizeof(cmd), "fsck.erofs %s >/dev/null", out), system(cmd) == 0));

	if (geteuid() != 0) {
		printf("SKIPPED: overlay comparison needs root to mount\n");
	} else {
		const char *lowers[3];
		for (int i = 0; i < 3; i++) {
			snprintf(mnt[i], sizeof(mnt[i]), "%s/m%d", dir, i);
			mkdir(mnt[i], 0755);
			CHECK_OK(shl_mount_erofs(layers[i].erofs_path, layers[i].tar_path, mnt[i], NULL));
			lowers[2 - i] = mnt[i];
		}
		snprintf(ovl, sizeof(ovl), "%s/ovl", dir);
		snprintf(sq, sizeof(sq), "%s/sq", dir);
		mkdir(ovl, 0755);
		mkdir(sq, 0755);
		CHECK_OK(shl_mount_overlay(ovl, lowers, 3, NULL, NULL));
		CHECK_OK(shl_mount_erofs(out, NULL, sq, NULL));
		mounted = 1;
		CHECK(compare(ovl, sq, "") == 0);
		{
			struct stat s1, s2;
			char p1[256], p2[256];
			snprintf(p1, sizeof(p1), "%s/usr/bin/tool", sq);
			snprintf(p2, sizeof(p2), "%s/usr/bin/tool2", sq);
			CHECK(lstat(p1, &s1) == 0 && lstat(p2, &s2) == 0);
			CHECK(s1.st_ino != s2.st_ino && s2.st_nlink == 1 && (s2.st_mode & 07777) == 04755);
		}
	}
	if (mounted) {
		shl_umount(sq, 1);
		shl_umount(ovl, 1);
		for (int i = 0; i < 3; i++)
			shl_umount(mnt[i], 1);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return check_result("test_squash");
}
