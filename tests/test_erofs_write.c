/*
 * tests/test_erofs_write.c - the EROFS writer against the kernel.
 *
 * Builds file trees directly through the fstree API (no tar parser), with
 * file data placed in a "device" file at 512-aligned offsets, writes index
 * and full images, mounts them with the kernel (file-backed, device=) and
 * compares what the kernel shows with what was put in. Also checks the
 * determinism of the output and Debian's fsck.erofs on full images.
 * Mount checks print SKIPPED when mounting is not permitted.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"
#include "store/erofs_write.h"
#include "store/fstree.h"

static char dir[256];
static int can_mount = -1;

struct file_spec {
	const char *path;
	uint64_t size;
	uint64_t off;
};

/* a deterministic byte pattern per file */
static uint8_t pat(uint64_t off, uint64_t seed)
{
	return (uint8_t)((off * 131 + seed * 7 + (off >> 9)) & 0xff);
}

static void fill_dev(int fd, uint64_t off, uint64_t size, uint64_t seed)
{
	uint8_t buf[65536];
	uint64_t done = 0;

	while (done < size) {
		size_t n = size - done > sizeof(buf) ? sizeof(buf) : (size_t)(size - done);
		for (size_t i = 0; i < n; i++)
			buf[i] = pat(done + i, seed);
		if (pwrite(fd, buf, n, (off_t)(off + done)) != (ssize_t)n)
			abort();
		done += n;
	}
}

static int check_content(const char *path, uint64_t size, uint64_t seed)
{
	uint8_t buf[65536];
	uint64_t done = 0;
	int fd = open(path, O_RDONLY);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
		if (fd >= 0)
			close(fd);
		fprintf(stderr, "  %s: size mismatch\n", path);
		return 0;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0) {
			close(fd);
			fprintf(stderr, "  %s: read: %s\n", path, strerror(errno));
			return 0;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != pat(done + (uint64_t)i, seed)) {
				close(fd);
				fprintf(stderr, "  %s: content differs at %llu\n", path,
					(unsigned long long)(done + (uint64_t)i));
				return 0;
			}
		}
		done += (uint64_t)n;
	}
	close(fd);
	return done == size;
}

static shl_fsattr attr(uint32_t mode, uint32_t uid, uint32_t gid, int64_t mtime, uint32_t ns)
{
	shl_fsattr a;
	memset(&a, 0, sizeof(a));
	a.mode = mode;
	a.uid = uid;
	a.gid = gid;
	a.mtime = mtime;
	a.mtime_ns = ns;
	return a;
}

#define NFILES 8
static const uint64_t sizes[NFILES] = { 0, 1, 511, 512, 513, 4096, 70000, 3u << 20 };

/* Build the test tree; file data is laid into dev_fd; returns the device size. */
static uint64_t build(shl_fstree *t, int dev_fd, int nmany)
{
	uint64_t off = 512;
	uint32_t ino;
	char name[300];
	shl_fsattr a;

	a = attr(S_IFDIR | 0755, 0, 0, 1700000000, 5);
	CHECK_OK(shl_fstree_add(t, "./", &a, NULL));
	for (int i = 0; i < NFILES; i++) {
		snprintf(name, sizeof(name), "files/f%d", i);
		a = attr(S_IFREG | 0644, 1000, 1000, 1700000001 + i, 123456789u);
		a.size = sizes[i];
		a.data_off = off;
		fill_dev(dev_fd, off, sizes[i], (uint64_t)i);
		CHECK_OK(shl_fstree_add(t, name, &a, NULL));
		off += (sizes[i] + 511) / 512 * 512 + 512;
	}
	/* special modes, big ids, xattrs */
	a = attr(S_IFREG | 04755, 4294967294u, 4294967293u, -5, 0);
	a.data_off = off;
	CHECK_OK(shl_fstree_add(t, "modes/suid", &a, &ino));
	CHECK_OK(shl_fstree_add_xattr(t, ino, "user.test", "hello", 5));
	CHECK_OK(shl_fstree_add_xattr(t, ino, "trusted.foo", "bar", 3));
	CHECK_OK(shl_fstree_add_xattr(t, ino, "security.capability",
				      "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20));
	a = attr(S_IFDIR | 01777, 0, 0, 4102444800LL, 999999999u);
	CHECK_OK(shl_fstree_add(t, "modes/sticky", &a, NULL));
	a = attr(S_IFDIR | 02750, 7, 8, 10, 0);
	CHECK_OK(shl_fstree_add(t, "modes/sgid", &a, NULL));
	/* symlinks */
	a = attr(S_IFLNK | 0777, 0, 0, 20, 0);
	a.symlink = "../files/f1";
	CHECK_OK(shl_fstree_add(t, "links/short", &a, NULL));
	memset(name, 'x', 299);
	name[299] = '\0';
	a.symlink = name;
	CHECK_OK(shl_fstree_add(t, "links/long299", &a, NULL));
	{
		static char longt[3000];
		memset(longt, 'y', sizeof(longt) - 1);
		a.symlink = longt;
		CHECK_OK(shl_fstree_add(t, "links/long2999", &a, NULL));
	}
	/* devices, fifo, socket */
	a = attr(S_IFCHR | 0666, 0, 0, 30, 0);
	a.rdev_major = 1;
	a.rdev_minor = 3;
	CHECK_OK(shl_fstree_add(t, "dev/null", &a, NULL));
	a = attr(S_IFBLK | 0660, 0, 6, 30, 0);
	a.rdev_major = 259;
	a.rdev_minor = 300000;
	CHECK_OK(shl_fstree_add(t, "dev/bigminor", &a, NULL));
	a = attr(S_IFIFO | 0600, 0, 0, 30, 0);
	CHECK_OK(shl_fstree_add(t, "dev/fifo", &a, NULL));
	a = attr(S_IFSOCK | 0600, 0, 0, 30, 0);
	CHECK_OK(shl_fstree_add(t, "dev/sock", &a, NULL));
	/* hardlinks */
	a = attr(S_IFREG, 0, 0, 0, 0);
	a.hardlink = "files/f6";
	CHECK_OK(shl_fstree_add(t, "hard/one", &a, NULL));
	CHECK_OK(shl_fstree_add(t, "hard/two", &a, NULL));
	/* whiteouts and opaque */
	a = attr(S_IFREG | 0644, 0, 0, 40, 0);
	CHECK_OK(shl_fstree_add(t, "wh/.wh.gone", &a, NULL));
	CHECK_OK(shl_fstree_add(t, "opq/.wh..wh..opq", &a, NULL));
	a = attr(S_IFREG | 0644, 0, 0, 40, 0);
	a.data_off = off;
	CHECK_OK(shl_fstree_add(t, "opq/kept", &a, NULL));
	/* duplicate: file then dir, dir then file; later wins */
	CHECK_OK(shl_fstree_add(t, "dup/x", &a, NULL));
	a = attr(S_IFDIR | 0700, 0, 0, 41, 0);
	CHECK_OK(shl_fstree_add(t, "dup/x", &a, NULL));
	a = attr(S_IFREG | 0600, 0, 0, 42, 0);
	a.data_off = off;
	CHECK_OK(shl_fstree_add(t, "dup/x/inner", &a, NULL));
	CHECK_OK(shl_fstree_add(t, "dup/y/inner", &a, NULL));
	CHECK_OK(shl_fstree_add(t, "dup/y", &a, NULL));
	/* a big directory with names sorting around "." */
	for (int i = 0; i < nmany; i++) {
		static const char *pfx[] = { "!", "#", "+", "-", ".a", "A", "_", "z" };
		snprintf(name, sizeof(name), "many/%s%05d-%0*d", pfx[i % 8], i, i % 40, 0);
		a = attr(S_IFREG | 0644, 0, 0, 50, 0);
		a.data_off = off;
		CHECK_OK(shl_fstree_add(t, name, &a, NULL));
	}
	/* implicit parents */
	CHECK_OK(shl_fstree_add(t, "imp/a/b/c", &a, NULL));
	/* a 255-byte name */
	memset(name, 'n', 255);
	memcpy(name, "long/", 5);
	memset(name + 5, 'n', 255);
	name[260] = '\0';
	CHECK_OK(shl_fstree_add(t, name, &a, NULL));
	CHECK_OK(shl_fstree_finalize(t));
	return off + 4096;
}

static int try_mount(const char *img, const char *mnt, const char *dev)
{
	char opts[600];
	if (dev)
		snprintf(opts, sizeof(opts), "device=%s", dev);
	if (mount(img, mnt, "erofs", MS_RDONLY, dev ? opts : NULL) != 0) {
		if (errno == EPERM) {
			can_mount = 0;
			return -1;
		}
		fprintf(stderr, "mount %s: %s\n", img, strerror(errno));
		return -1;
	}
	can_mount = 1;
	return 0;
}

static int getx(const char *p, const char *name, char *buf, size_t len)
{
	ssize_t n = lgetxattr(p, name, buf, len);
	return (int)n;
}

static void verify_mounted(const char *mnt, int nmany)
{
	char p[1024], buf[64];
	struct stat st, st2;

	snprintf(p, sizeof(p), "%s", mnt);
	CHECK(stat(p, &st) == 0 && (st.st_mode & 07777) == 0755 && st.st_mtime == 1700000000);
	for (int i = 0; i < NFILES; i++) {
		snprintf(p, sizeof(p), "%s/files/f%d", mnt, i);
		CHECK(lstat(p, &st) == 0);
		CHECK(st.st_uid == 1000 && st.st_gid == 1000 && (st.st_mode & 07777) == 0644);
		CHECK(st.st_mtime == 1700000001 + i && st.st_mtim.tv_nsec == 123456789);
		CHECK(check_content(p, sizes[i], (uint64_t)i));
	}
	snprintf(p, sizeof(p), "%s/modes/suid", mnt);
	CHECK(lstat(p, &st) == 0 && (st.st_mode & 07777) == 04755 && st.st_uid == 4294967294u &&
	      st.st_gid == 4294967293u && st.st_mtime == -5);
	CHECK(getx(p, "user.test", buf, sizeof(buf)) == 5 && !memcmp(buf, "hello", 5));
	CHECK(getx(p, "trusted.foo", buf, sizeof(buf)) == 3 && !memcmp(buf, "bar", 3));
	CHECK(getx(p, "security.capability", buf, sizeof(buf)) == 20 && buf[0] == 1 && buf[3] == 2);
	snprintf(p, sizeof(p), "%s/modes/sticky", mnt);
	CHECK(lstat(p, &st) == 0 && (st.st_mode & 07777) == 01777 && st.st_mtime == 4102444800LL &&
	      st.st_mtim.tv_nsec == 999999999);
	snprintf(p, sizeof(p), "%s/modes/sgid", mnt);
	CHECK(lstat(p, &st) == 0 && (st.st_mode & 07777) == 02750 && st.st_uid == 7 && st.st_gid == 8);
	snprintf(p, sizeof(p), "%s/links/short", mnt);
	{
		char target[4096];
		ssize_t n = readlink(p, target, sizeof(target));
		CHECK(n == 11 && !memcmp(target, "../files/f1", 11));
		snprintf(p, sizeof(p), "%s/links/long299", mnt);
		CHECK(readlink(p, target, sizeof(target)) == 299);
		snprintf(p, sizeof(p), "%s/links/long2999", mnt);
		n = readlink(p, target, sizeof(target));
		CHECK(n == 2999 && target[0] == 'y' && target[2998] == 'y');
	}
	snprintf(p, sizeof(p), "%s/dev/null", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
	snprintf(p, sizeof(p), "%s/dev/bigminor", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISBLK(st.st_mode) && major(st.st_rdev) == 259 &&
	      minor(st.st_rdev) == 300000 && st.st_gid == 6);
	snprintf(p, sizeof(p), "%s/dev/fifo", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISFIFO(st.st_mode));
	snprintf(p, sizeof(p), "%s/dev/sock", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISSOCK(st.st_mode));
	snprintf(p, sizeof(p), "%s/hard/one", mnt);
	CHECK(lstat(p, &st) == 0 && st.st_nlink == 3);
	snprintf(p, sizeof(p), "%s/files/f6", mnt);
	CHECK(lstat(p, &st2) == 0 && st2.st_ino == st.st_ino);
	CHECK(check_content(p, sizes[6], 6));
	snprintf(p, sizeof(p), "%s/wh/gone", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0);
	snprintf(p, sizeof(p), "%s/wh", mnt);
	CHECK(getx(p, "trusted.overlay.origin", buf, sizeof(buf)) == 0);
	snprintf(p, sizeof(p), "%s/opq", mnt);
	CHECK(getx(p, "trusted.overlay.opaque", buf, sizeof(buf)) == 1 && buf[0] == 'y');
	snprintf(p, sizeof(p), "%s/opq/.wh..wh..opq", mnt);
	CHECK(lstat(p, &st) != 0);
	snprintf(p, sizeof(p), "%s/dup/x", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	snprintf(p, sizeof(p), "%s/dup/x/inner", mnt);
	CHECK(lstat(p, &st) == 0);
	snprintf(p, sizeof(p), "%s/dup/y", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISREG(st.st_mode));
	snprintf(p, sizeof(p), "%s/imp/a/b", mnt);
	CHECK(lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0755);
	snprintf(p, sizeof(p), "%s/many/!00000-0", mnt);
	CHECK(lstat(p, &st) == 0);
	snprintf(p, sizeof(p), "%s/many/z%05d-%0*d", mnt, nmany - 1, (nmany - 1) % 40, 0);
	CHECK(lstat(p, &st) == 0);
	snprintf(p, sizeof(p), "%s/many", mnt);
	CHECK(lstat(p, &st) == 0 && st.st_nlink == 2);
	{
		/* count entries via readdir(3) through the kernel */
		char cmd[1200];
		snprintf(cmd, sizeof(cmd), "test $(ls -A %s/many | wc -l) -eq %d", mnt, nmany);
		CHECK(system(cmd) == 0);
	}
}

static int run(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void one_mode(int mode)
{
	char dev[300], img[300], img2[300], mnt[300], cmd[1200];
	shl_fstree *t = NULL;
	shl_erofs_wopts o;
	uint64_t size = 0, size2 = 0;
	int dev_fd, fd, fd2;
	const int nmany = 600;

	snprintf(dev, sizeof(dev), "%s/dev.bin", dir);
	snprintf(img, sizeof(img), "%s/img%d.erofs", dir, mode);
	snprintf(img2, sizeof(img2), "%s/img%d-2.erofs", dir, mode);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	mkdir(mnt, 0755);
	dev_fd = open(dev, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(dev_fd >= 0);
	CHECK_OK(shl_fstree_new(&t, NULL));
	memset(&o, 0, sizeof(o));
	o.mode = mode;
	o.tar_fd = dev_fd;
	o.tar_size = build(t, dev_fd, nmany);
	CHECK(ftruncate(dev_fd, (off_t)o.tar_size) == 0);
	memcpy(o.uuid, "0123456789abcdef", 16);
	fd = open(img, O_RDWR | O_CREAT | O_TRUNC, 0644);
	fd2 = open(img2, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK_OK(shl_erofs_write(t, &o, fd, &size));
	CHECK_OK(shl_erofs_write(t, &o, fd2, &size2));
	CHECK(size > 0 && size == size2);
	close(fd);
	close(fd2);
	snprintf(cmd, sizeof(cmd), "cmp -s %s %s", img, img2);
	CHECK(run(cmd) == 0); /* deterministic */
	shl_fstree_free(t);

	if (mode == SHL_EROFS_FULL && run("command -v fsck.erofs >/dev/null") == 0) {
		snprintf(cmd, sizeof(cmd), "fsck.erofs %s >%s/fsck.log 2>&1", img, dir);
		CHECK(run(cmd) == 0);
		snprintf(cmd, sizeof(cmd), "cat %s/fsck.log >&2", dir);
		run(cmd);
	}
	if (can_mount != 0 && try_mount(img, mnt, mode == SHL_EROFS_INDEX ? dev : NULL) == 0) {
		verify_mounted(mnt, nmany);
		CHECK(umount2(mnt, MNT_DETACH) == 0);
	} else if (can_mount != 0) {
		CHECK(!"kernel mount failed");
		snprintf(cmd, sizeof(cmd), "dmesg | tail -5 >&2");
		run(cmd);
	}
	close(dev_fd);
}

static void hostile_tree(void)
{
	shl_fstree *t;
	shl_fsattr a = attr(S_IFREG | 0644, 0, 0, 0, 0);
	char big[5000];

	CHECK_OK(shl_fstree_new(&t, NULL));
	CHECK_ERR(shl_fstree_add(t, "../x", &a, NULL), SHL_EFORMAT);
	CHECK_ERR(shl_fstree_add(t, "/etc/passwd", &a, NULL), SHL_EFORMAT);
	CHECK_ERR(shl_fstree_add(t, "a/../../x", &a, NULL), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "a/../../x") != NULL);
	memset(big, 'a', 300);
	big[300] = 0;
	CHECK_ERR(shl_fstree_add(t, big, &a, NULL), SHL_EFORMAT);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK_ERR(shl_fstree_add(t, big, &a, NULL), SHL_ELIMIT);
	a.hardlink = "missing";
	CHECK_ERR(shl_fstree_add(t, "h", &a, NULL), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "missing") != NULL);
	a.hardlink = NULL;
	a.data_off = 3;
	CHECK_ERR(shl_fstree_add(t, "unaligned", &a, NULL), SHL_EFORMAT);
	a.data_off = 0;
	CHECK_OK(shl_fstree_add(t, "file", &a, NULL));
	CHECK_ERR(shl_fstree_add(t, "file/sub", &a, NULL), SHL_EFORMAT);
	a.mode = S_IFDIR | 0755;
	CHECK_OK(shl_fstree_add(t, "d", &a, NULL));
	a.hardlink = "d";
	CHECK_ERR(shl_fstree_add(t, "hd", &a, NULL), SHL_EFORMAT);
	a.hardlink = NULL;
	a.mode = S_IFREG | 0644;
	CHECK_ERR(shl_fstree_add(t, "x/.wh.", &a, NULL), SHL_EFORMAT);
	{
		uint32_t ino;
		CHECK_OK(shl_fstree_add(t, "xa", &a, &ino));
		CHECK_ERR(shl_fstree_add_xattr(t, ino, "weird.name", "v", 1), SHL_EUNSUPPORTED);
	}
	shl_fstree_free(t);
	{
		shl_fstree_limits lim = SHL_FSTREE_LIMITS_DEFAULT;
		int rc = 0;
		lim.max_entries = 10;
		CHECK_OK(shl_fstree_new(&t, &lim));
		for (int i = 0; i < 20 && !rc; i++) {
			char n[32];
			snprintf(n, sizeof(n), "f%d", i);
			rc = shl_fstree_add(t, n, &a, NULL);
		}
		CHECK(rc == SHL_ELIMIT);
		shl_fstree_free(t);
	}
}

int main(void)
{
	char cmd[400];

	snprintf(dir, sizeof(dir), "/tmp/shl-ewrite-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	hostile_tree();
	one_mode(SHL_EROFS_INDEX);
	one_mode(SHL_EROFS_FULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	run(cmd);
	if (can_mount == 0)
		printf("SKIPPED: kernel mount checks (mount not permitted)\n");
	return check_result("test_erofs_write");
}
