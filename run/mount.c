/*
 * run/mount.c - EROFS and overlay mounts (see shale/mount.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <linux/mount.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shale/mount.h"
#include "util/err.h"

/* glibc 2.36 has no wrappers for the new mount API everywhere: call directly. */
static int sys_fsopen(const char *fs, unsigned flags)
{
	return (int)syscall(SYS_fsopen, fs, flags);
}

static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *val, int aux)
{
	return (int)syscall(SYS_fsconfig, fd, cmd, key, val, aux);
}

static int sys_fsmount(int fd, unsigned flags, unsigned attr)
{
	return (int)syscall(SYS_fsmount, fd, flags, attr);
}

static int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{
	return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}

/* Attach `path` read-only to a free loop device; autoclear on last close. */
static int loop_attach(const char *path, char *dev, size_t devlen, int *loop_fd)
{
	struct loop_config cfg;
	int ctl = -1, fd = -1, lfd = -1, rc = 0;

	*loop_fd = -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return shl_err_sys(SHL_EIO, "open %s", path);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		rc = shl_err_sys(SHL_EIO, "open /dev/loop-control");
		goto out;
	}
	for (int tries = 0; tries < 16; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			rc = shl_err_sys(SHL_EIO, "LOOP_CTL_GET_FREE");
			goto out;
		}
		snprintf(dev, devlen, "/dev/loop%d", n);
		lfd = open(dev, O_RDONLY | O_CLOEXEC);
		if (lfd < 0) {
			rc = shl_err_sys(SHL_EIO, "open %s", dev);
			goto out;
		}
		memset(&cfg, 0, sizeof(cfg));
		cfg.fd = (unsigned)fd;
		cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0) {
			*loop_fd = lfd;
			lfd = -1;
			goto out;
		}
		if (errno != EBUSY) {
			rc = shl_err_sys(SHL_EIO, "LOOP_CONFIGURE %s for %s", dev, path);
			goto out;
		}
		close(lfd); /* raced with another user: try the next free one */
		lfd = -1;
	}
	rc = shl_err(SHL_EBUSY, "no free loop device for %s", path);
out:
	if (lfd >= 0)
		close(lfd);
	if (ctl >= 0)
		close(ctl);
	close(fd);
	return rc;
}

int shl_mount_erofs(const char *image, const char *device, const char *target, int *used_loop)
{
	char opts[4200], ldev_img[64], ldev_tar[64];
	int lfd_img = -1, lfd_tar = -1, rc = 0;

	if (used_loop)
		*used_loop = 0;
	if (device && (strlen(device) > 4000 || strchr(device, ',')))
		return shl_err(SHL_EINVAL, "mount %s: unusable device path '%s'", image, device);
	if (device)
		snprintf(opts, sizeof(opts), "device=%s", device);
	/* SHALE_FORCE_LOOP=1 exercises the loop path on kernels that don't need it */
	if (!getenv("SHALE_FORCE_LOOP")) {
		if (mount(image, target, "erofs", MS_RDONLY | MS_NODEV | MS_NOSUID,
			  device ? opts : NULL) == 0)
			return 0;
		if (errno != ENOTBLK)
			return shl_err_sys(SHL_EIO, "mount erofs %s on %s", image, target);
	}
	/* not file-backed capable: loop devices for the image and the tar */
	if ((rc = loop_attach(image, ldev_img, sizeof(ldev_img), &lfd_img)))
		goto out;
	if (device) {
		if ((rc = loop_attach(device, ldev_tar, sizeof(ldev_tar), &lfd_tar)))
			goto out;
		snprintf(opts, sizeof(opts), "device=%s", ldev_tar);
	}
	if (mount(ldev_img, target, "erofs", MS_RDONLY | MS_NODEV | MS_NOSUID, device ? opts : NULL) != 0) {
		rc = shl_err_sys(SHL_EIO, "mount erofs %s (loop %s) on %s", image, ldev_img, target);
		goto out;
	}
	if (used_loop)
		*used_loop = 1;
out:
	/* autoclear: the loops go away with the mount, or now if it failed */
	if (lfd_img >= 0)
		close(lfd_img);
	if (lfd_tar >= 0)
		close(lfd_tar);
	return rc;
}

int shl_mount_overlay(const char *target, const char *const *lowers, size_t nlower,
		      const char *upper, const char *work)
{
	int fs = -1, mnt = -1, rc = 0;

	if (nlower == 0 || (nlower == 1 && !upper))
		return shl_err(SHL_EINVAL, "overlay on %s: needs two layers or an upper dir", target);
	if (nlower > SHL_OVERLAY_MAX_LOWERS)
		return shl_err(SHL_ELIMIT, "overlay on %s: %zu layers exceed the kernel's limit of %d",
			       target, nlower, SHL_OVERLAY_MAX_LOWERS);
	fs = sys_fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return shl_err_sys(SHL_EIO, "fsopen overlay");
	for (size_t i = 0; i < nlower; i++) {
		if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", lowers[i], 0) != 0) {
			rc = shl_err_sys(SHL_EIO, "overlay lowerdir+ %s", lowers[i]);
			goto out;
		}
	}
	if (upper && (sys_fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) != 0 ||
		      sys_fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) != 0)) {
		rc = shl_err_sys(SHL_EIO, "overlay upperdir %s", upper);
		goto out;
	}
	if (sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
		rc = shl_err_sys(SHL_EIO, "create overlay for %s", target);
		goto out;
	}
	mnt = sys_fsmount(fs, FSMOUNT_CLOEXEC, upper ? 0 : MOUNT_ATTR_RDONLY);
	if (mnt < 0) {
		rc = shl_err_sys(SHL_EIO, "fsmount overlay");
		goto out;
	}
	if (sys_move_mount(mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
		rc = shl_err_sys(SHL_EIO, "move overlay to %s", target);
		goto out;
	}
out:
	if (mnt >= 0)
		close(mnt);
	if (fs >= 0)
		close(fs);
	return rc;
}

int shl_umount(const char *target, int detach)
{
	if (umount2(target, detach ? MNT_DETACH : 0) != 0)
		return shl_err_sys(SHL_EIO, "umount %s", target);
	return 0;
}

int shl_is_mountpoint(const char *path)
{
	struct stat a, b;
	struct statx sx;
	char parent[4200];

	if (lstat(path, &a) != 0 || !S_ISDIR(a.st_mode))
		return 0;
	/* the kernel knows (>= 5.8): this also sees a bind mount within one
	 * file system, which a device comparison misses */
	if (statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_BASIC_STATS, &sx) == 0 &&
	    (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
		return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
	snprintf(parent, sizeof(parent), "%s/..", path);
	if (stat(parent, &b) != 0)
		return 0;
	return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}
