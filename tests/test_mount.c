/*
 * tests/test_mount.c - run/mount.c against the kernel: two index-mode layers
 * written by the EROFS writer are mounted file-backed and through loop
 * devices, stacked with overlayfs (lowerdir+), and the merged view must apply
 * the upper layer's whiteout and opaque directory. Needs root; prints
 * SKIPPED otherwise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "shale/mount.h"
#include "store/erofs_write.h"
#include "store/fstree.h"

static char dir[64];

static void add_file(shl_fstree *t, int dev_fd, uint64_t *off, const char *path, const char *content)
{
	shl_fsattr a;
	size_t n = strlen(content);

	memset(&a, 0, sizeof(a));
	a.mode = S_IFREG | 0644;
	a.size = n;
	a.data_off = *off;
	CHECK(pwrite(dev_fd, content, n, (off_t)*off) == (ssize_t)n);
	*off += (n + 511) / 512 * 512 + 512;
	CHECK_OK(shl_fstree_add(t, path, &a, NULL));
}

/* layer 0: a/keep a/foo b/old b/sub/x c_lower ; layer 1: a/.wh.foo b/.wh..wh..opq b/new a/keep (new) */
static void make_layer(int which, const char *img, const char *tar)
{
	shl_fstree *t;
	shl_erofs_wopts o;
	uint64_t off = 512;
	int dev = open(tar, O_RDWR | O_CREAT | O_TRUNC, 0644), out = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
	shl_fsattr a;

	CHECK(dev >= 0 && out >= 0);
	CHECK_OK(shl_fstree_new(&t, NULL));
	if (which == 0) {
		add_file(t, dev, &off, "a/keep", "lower keep\n");
		add_file(t, dev, &off, "a/foo", "lower foo\n");
		add_file(t, dev, &off, "b/old", "lower old\n");
		add_file(t, dev, &off, "b/sub/x", "lower x\n");
		add_file(t, dev, &off, "c_lower", "c\n");
	} else {
		memset(&a, 0, sizeof(a));
		a.mode = S_IFREG;
		CHECK_OK(shl_fstree_add(t, "a/.wh.foo", &a, NULL));
		CHECK_OK(shl_fstree_add(t, "b/.wh..wh..opq", &a, NULL));
		add_file(t, dev, &off, "b/new", "upper new\n");
		add_file(t, dev, &off, "a/keep", "upper keep\n");
	}
	CHECK_OK(shl_fstree_finalize(t));
	CHECK(ftruncate(dev, (off_t)(off + 1024)) == 0);
	memset(&o, 0, sizeof(o));
	o.mode = SHL_EROFS_INDEX;
	o.tar_size = off + 1024;
	CHECK_OK(shl_erofs_write(t, &o, out, NULL));
	shl_fstree_free(t);
	close(dev);
	close(out);
}

static int file_is(const char *path, const char *want)
{
	char buf[256] = "";
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n >= 0 && (size_t)n == strlen(want) && !memcmp(buf, want, (size_t)n);
}

static void stack_and_check(int force_loop)
{
	char img[2][128], tar[2][128], mnt[2][128], ovl[128], p[256];
	const char *lowers[2];
	int loop = -1;
	struct stat st;

	if (force_loop)
		setenv("SHALE_FORCE_LOOP", "1", 1);
	else
		unsetenv("SHALE_FORCE_LOOP");
	for (int i = 0; i < 2; i++) {
		snprintf(img[i], sizeof(img[i]), "%s/l%d.erofs", dir, i);
		snprintf(tar[i], sizeof(tar[i]), "%s/l%d.tar", dir, i);
		snprintf(mnt[i], sizeof(mnt[i]), "%s/m%d", dir, i);
		mkdir(mnt[i], 0755);
		make_layer(i, img[i], tar[i]);
		if (shl_mount_erofs(img[i], tar[i], mnt[i], &loop) != 0) {
			if (shl_error_errno() == EPERM)
				SKIP("mounting needs CAP_SYS_ADMIN");
			CHECK(!"mount erofs");
			return;
		}
		CHECK(loop == force_loop);
		CHECK(shl_is_mountpoint(mnt[i]));
	}
	snprintf(ovl, sizeof(ovl), "%s/ovl", dir);
	mkdir(ovl, 0755);
	lowers[0] = mnt[1]; /* top first */
	lowers[1] = mnt[0];
	CHECK_OK(shl_mount_overlay(ovl, lowers, 2, NULL, NULL));
	snprintf(p, sizeof(p), "%s/a/keep", ovl);
	CHECK(file_is(p, "upper keep\n"));
	snprintf(p, sizeof(p), "%s/a/foo", ovl);
	CHECK(lstat(p, &st) != 0 && errno == ENOENT); /* whiteout hides it */
	snprintf(p, sizeof(p), "%s/b/old", ovl);
	CHECK(lstat(p, &st) != 0); /* opaque dir hides lower children */
	snprintf(p, sizeof(p), "%s/b/sub", ovl);
	CHECK(lstat(p, &st) != 0);
	snprintf(p, sizeof(p), "%s/b/new", ovl);
	CHECK(file_is(p, "upper new\n"));
	snprintf(p, sizeof(p), "%s/c_lower", ovl);
	CHECK(file_is(p, "c\n"));
	/* the upper layer as the only lower of a writable overlay: its whiteout
	 * must not leak as a broken entry (trusted.overlay.origin on a/) */
	CHECK_OK(shl_umount(ovl, 0));
	{
		char up[160], wk[160];
		snprintf(up, sizeof(up), "%s/up%d", dir, force_loop);
		snprintf(wk, sizeof(wk), "%s/wk%d", dir, force_loop);
		mkdir(up, 0755);
		mkdir(wk, 0755);
		CHECK_ERR(shl_mount_overlay(ovl, lowers, 1, NULL, NULL), SHL_EINVAL);
		CHECK_OK(shl_mount_overlay(ovl, lowers, 1, up, wk));
		snprintf(p, sizeof(p), "%s/a/foo", ovl);
		CHECK(lstat(p, &st) != 0 && errno == ENOENT);
		snprintf(p, sizeof(p), "%s/a/keep", ovl);
		CHECK(file_is(p, "upper keep\n"));
		CHECK_OK(shl_umount(ovl, 0));
	}
	for (int i = 0; i < 2; i++)
		CHECK_OK(shl_umount(mnt[i], 0));
	CHECK(!shl_is_mountpoint(mnt[0]));
}

int main(void)
{
	char cmd[128];
	const char *many[SHL_OVERLAY_MAX_LOWERS + 1];

	if (geteuid() != 0)
		SKIP("not root: kernel mounts need CAP_SYS_ADMIN");
	snprintf(dir, sizeof(dir), "/tmp/shl-mount-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	stack_and_check(0);
	stack_and_check(1);
	for (int i = 0; i <= SHL_OVERLAY_MAX_LOWERS; i++)
		many[i] = dir;
	CHECK_ERR(shl_mount_overlay(dir, many, SHL_OVERLAY_MAX_LOWERS + 1, NULL, NULL), SHL_ELIMIT);
	CHECK_ERR(shl_mount_erofs("/nonexistent.erofs", NULL, dir, NULL), SHL_ENOTFOUND);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	CHECK(system(cmd) == 0);
	return check_result("test_mount");
}
