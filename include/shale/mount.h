/*
 * shale/mount.h - kernel mount primitives for EROFS layers and overlay
 * stacks (Linux; needs CAP_SYS_ADMIN).
 *
 * An index-mode layer image is mounted file-backed (mount(2) on the regular
 * file with `device=<tar>`, Linux >= 6.12). If the kernel answers ENOTBLK
 * (older kernel, or EROFS_FS_BACKED_BY_FILE=n), both the image and the tar
 * are attached to read-only loop devices (a loop primary cannot take a
 * regular-file device=). Overlay stacks use the new mount API with one
 * `lowerdir+` per layer (Linux >= 6.8, up to 500 lowers).
 */
#ifndef SHALE_MOUNT_H
#define SHALE_MOUNT_H

#include <stddef.h>
#include "shale/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHL_OVERLAY_MAX_LOWERS 500

/* Mount an EROFS image read-only at `target`. `device` is the extra device
 * (the layer tar) or NULL for self-contained images. *used_loop (may be
 * NULL) tells whether loop devices were needed; they are set to autoclear,
 * so unmounting releases them. */
int shl_mount_erofs(const char *image, const char *device, const char *target, int *used_loop);

/* Stack `nlower` directories (lowers[0] is the TOP layer) at `target`.
 * upper/work NULL: read-only overlay (the kernel needs >= 2 lowers then);
 * else a writable one. */
int shl_mount_overlay(const char *target, const char *const *lowers, size_t nlower,
		      const char *upper, const char *work);

/* Unmount `target` (lazily with detach != 0). */
int shl_umount(const char *target, int detach);

/* Whether `path` is a mount point (differs from its parent's mount). */
int shl_is_mountpoint(const char *path);

/* ---- images ---------------------------------------------------------------
 * Mount a stored image at `dir` (an empty directory): each layer's EROFS is
 * mounted once under <root>/run/layers and shared by every mounted image;
 * overlayfs stacks them. Read-only by default; rw adds an upper layer on a
 * fresh tmpfs (or in `upper`, which gets upper/ and work/ subdirectories).
 * State lives in <root>/run/mounts and is swept when stale. */
typedef struct shl_image_mount_opts {
	int rw;
	const char *upper;
	int owner_pid;     /* if set: the mount is released once that process is gone */
} shl_image_mount_opts;

int shl_image_mount(shl_store *s, const char *ref, const char *dir, const shl_image_mount_opts *o);
/* Unmount `dir` and release the layers no other mounted image uses. */
int shl_image_umount(shl_store *s, const char *dir);
typedef int (*shl_mount_list_fn)(void *ctx, const char *dir, const char *image, int layers);
int shl_image_mounts(shl_store *s, shl_mount_list_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
