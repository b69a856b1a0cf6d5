/*
 * tests/helper_mount.c - mounts for the python tests, made with raw syscalls
 * (libc + kernel headers only, no shale code), so the tests check shale's
 * images against the kernel independently of shale's own mount code.
 *
 *   helper_mount erofs IMAGE MNT [--device TAR]       mount(2) of the image file
 *                                                     itself (file-backed EROFS),
 *                                                     data "device=<abs TAR>"
 *   helper_mount erofs-loop IMAGE MNT [--device TAR]  IMAGE (and TAR) on read-only
 *                                                     autoclear loop devices,
 *                                                     "device=/dev/loopN"
 *   helper_mount overlay MNT LOWER1 [LOWER2...]       read-only overlay (top first)
 *                                                     with fsopen/fsconfig lowerdir+
 *   helper_mount umount MNT                           umount2(MNT_DETACH)
 *
 * Compatibility with older callers: `erofs IMAGE MNT TAR` (TAR positional) is
 * accepted, and SHALE_FORCE_LOOP=1 turns `erofs` into `erofs-loop`. The erofs
 * commands print "file" or "loop" on success.
 * Exit 0 ok, 1 failure (message on stderr), 2 usage, 77 with "SKIPPED: <why>"
 * on stdout when the kernel says EPERM (not allowed to mount here).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/loop.h>

static const char *cmd_name = "helper_mount";

__attribute__((format(printf, 2, 3)))
static int fail(int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err == EPERM) {
		printf("SKIPPED: %s: %s (mounting is not permitted here)\n", msg, strerror(err));
		return 77;
	}
	if (err)
		fprintf(stderr, "%s: %s: %s\n", cmd_name, msg, strerror(err));
	else
		fprintf(stderr, "%s: %s\n", cmd_name, msg);
	return 1;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: helper_mount erofs IMAGE MNT [--device TAR]\n"
		"       helper_mount erofs-loop IMAGE MNT [--device TAR]\n"
		"       helper_mount overlay MNT LOWER1 [LOWER2 ...]   (top first)\n"
		"       helper_mount umount MNT\n");
	return 2;
}

/* Attach PATH read-only to a free loop device (autoclear); *fd_out keeps it alive. */
static int loop_attach(const char *path, char *dev, size_t devsz, int *fd_out)
{
	struct loop_config cfg;
	int ctl, file, lfd = -1, n, tries, rc = 1;

	file = open(path, O_RDONLY | O_CLOEXEC);
	if (file < 0)
		return fail(errno, "open %s", path);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		rc = fail(errno, "open /dev/loop-control");
		goto out;
	}
	for (tries = 0; tries < 20; tries++) {
		n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			rc = fail(errno, "LOOP_CTL_GET_FREE");
			goto out;
		}
		snprintf(dev, devsz, "/dev/loop%d", n);
		lfd = open(dev, O_RDONLY | O_CLOEXEC);
		if (lfd < 0) {
			rc = fail(errno, "open %s", dev);
			goto out;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (__u32)file;
		cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
		snprintf((char *)cfg.info.lo_file_name, sizeof(cfg.info.lo_file_name), "%s", path);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			*fd_out = lfd;
			lfd = -1;
			rc = 0;
			goto out;
		}
		if (errno != EBUSY) {
			rc = fail(errno, "LOOP_CONFIGURE %s on %s", dev, path);
			goto out;
		}
		close(lfd); /* raced with another user of that device: take the next */
		lfd = -1;
	}
	rc = fail(EBUSY, "no free loop device for %s", path);
out:
	if (lfd >= 0)
		close(lfd);
	if (ctl >= 0)
		close(ctl);
	close(file);
	return rc;
}

static int mount_erofs(const char *image, const char *mnt, const char *tar, int loop)
{
	char data[PATH_MAX + 16] = "", abs_tar[PATH_MAX], dev_img[64], dev_tar[64];
	int fd_img = -1, fd_tar = -1, rc = 1;
	const char *source = image;

	if (tar && !realpath(tar, abs_tar))
		return fail(errno, "device %s", tar);
	if (loop) {
		rc = loop_attach(image, dev_img, sizeof(dev_img), &fd_img);
		if (rc)
			goto out;
		source = dev_img;
		if (tar) {
			rc = loop_attach(abs_tar, dev_tar, sizeof(dev_tar), &fd_tar);
			if (rc)
				goto out;
			snprintf(data, sizeof(data), "device=%s", dev_tar);
		}
	} else if (tar) {
		snprintf(data, sizeof(data), "device=%s", abs_tar);
	}
	if (mount(source, mnt, "erofs", MS_RDONLY, data[0] ? data : NULL) != 0) {
		int err = errno;

		if (err == ENOTBLK && !loop)
			rc = fail(err, "mount %s on %s (file-backed EROFS needs Linux >= 6.12 with "
				  "CONFIG_EROFS_FS_BACKED_BY_FILE)", source, mnt);
		else
			rc = fail(err, "mount -t erofs %s%s%s %s (see dmesg)", source,
				  data[0] ? " -o " : "", data, mnt);
		goto out;
	}
	printf("%s\n", loop ? "loop" : "file");
	rc = 0;
out:
	/* autoclear: the loops go away with the last user (the mount, or now) */
	if (fd_img >= 0)
		close(fd_img);
	if (fd_tar >= 0)
		close(fd_tar);
	return rc;
}

/* The kernel's fs_context log ("e overlayfs: ..."), for a clearer error. */
static void fsctx_log(int fsfd)
{
	char buf[512];
	ssize_t n;

	while ((n = read(fsfd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = 0;
		fprintf(stderr, "%s: kernel: %s\n", cmd_name, buf);
	}
}

static int mount_overlay(const char *mnt, char **lowers, int n)
{
	int fsfd, mfd = -1, rc = 1, i;

	fsfd = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
	if (fsfd < 0)
		return fail(errno, "fsopen overlay");
	if (syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "source", "shale-test", 0) != 0) {
		rc = fail(errno, "fsconfig source");
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (syscall(SYS_fsconfig, fsfd, FSCONFIG_SET_STRING, "lowerdir+", lowers[i], 0) != 0) {
			int err = errno;

			fsctx_log(fsfd);
			rc = fail(err, "fsconfig lowerdir+ %s%s", lowers[i],
				  err == EINVAL ? " (lowerdir+ needs Linux >= 6.8)" : "");
			goto out;
		}
	}
	if (syscall(SYS_fsconfig, fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
		int err = errno;

		fsctx_log(fsfd);
		rc = fail(err, "fsconfig create overlay");
		goto out;
	}
	mfd = (int)syscall(SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY);
	if (mfd < 0) {
		rc = fail(errno, "fsmount overlay");
		goto out;
	}
	if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, mnt, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
		rc = fail(errno, "move_mount overlay to %s", mnt);
		goto out;
	}
	rc = 0;
out:
	if (mfd >= 0)
		close(mfd);
	close(fsfd);
	return rc;
}

int main(int argc, char **argv)
{
	const char *tar = NULL;
	int loop;

	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "erofs") || !strcmp(argv[1], "erofs-loop")) {
		const char *force = getenv("SHALE_FORCE_LOOP");

		loop = !strcmp(argv[1], "erofs-loop") || (force && !strcmp(force, "1"));
		if (argc == 5 && strcmp(argv[4], "--device"))
			tar = argv[4];
		else if (argc == 6 && !strcmp(argv[4], "--device"))
			tar = argv[5];
		else if (argc != 4)
			return usage();
		return mount_erofs(argv[2], argv[3], tar, loop);
	}
	if (!strcmp(argv[1], "overlay")) {
		if (argc < 4)
			return usage();
		return mount_overlay(argv[2], argv + 3, argc - 3);
	}
	if (!strcmp(argv[1], "umount")) {
		if (argc != 3)
			return usage();
		if (umount2(argv[2], MNT_DETACH) != 0)
			return fail(errno, "umount %s", argv[2]);
		return 0;
	}
	return usage();
}
