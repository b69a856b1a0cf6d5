/*
 * shale/erofs.h - read EROFS images written by shale (and by mkfs.erofs for
 * the uncompressed layouts): superblock, inodes, directories, xattrs, chunk
 * maps and file data, for both the 512-byte tar-index mode (data in an extra
 * device: the layer tar) and 4 KiB full images.
 *
 * Used by `shale tree`, fsck, squash and the tests. Every on-disk field is
 * bounds-checked: a corrupt or hostile image gives SHL_EFORMAT, never a crash.
 * Reads use pread(); nothing is mapped or loaded whole.
 */
#ifndef SHALE_EROFS_H
#define SHALE_EROFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shl_erofs shl_erofs;

typedef struct shl_erofs_info {
	uint32_t block_size;
	uint64_t root_nid;
	uint64_t inodes;
	uint64_t blocks;          /* primary device */
	uint16_t extra_devices;
	uint64_t device_blocks;   /* blocks of extra device 1 (0 if none) */
	uint32_t feature_compat, feature_incompat;
	uint8_t uuid[16];
	char volume[17];
} shl_erofs_info;

typedef struct shl_erofs_stat {
	uint64_t nid;
	uint32_t mode;            /* st_mode */
	uint32_t uid, gid;
	uint32_t nlink;
	uint64_t size;
	int64_t mtime;
	uint32_t mtime_nsec;
	uint32_t rdev_major, rdev_minor;
	uint8_t layout;           /* 0 plain, 2 inline, 4 chunk-based */
} shl_erofs_stat;

/* Open an image. `device_path` is the extra device (the layer tar) for
 * tar-index images, or NULL (full images; or index images whose tar is
 * appended to the metadata: flatdev). Checks magic, block size, feature bits
 * and the superblock crc32c when the image claims one. */
int shl_erofs_open(shl_erofs **out, const char *image_path, const char *device_path);
/* Same on already-open fds (not closed by shl_erofs_close; dev_fd may be -1). */
int shl_erofs_open_fd(shl_erofs **out, int image_fd, int dev_fd);
void shl_erofs_close(shl_erofs *e);

void shl_erofs_get_info(const shl_erofs *e, shl_erofs_info *out);
uint64_t shl_erofs_root(const shl_erofs *e);

int shl_erofs_getattr(shl_erofs *e, uint64_t nid, shl_erofs_stat *out);

/* Resolve a path ("/", "a/b", "/a/b") without following symlinks. */
int shl_erofs_lookup(shl_erofs *e, const char *path, uint64_t *nid_out);

/* Directory entries in on-disk order, "." and ".." included.
 * The callback returns 0 to continue, or non-zero to stop (returned as is). */
typedef int (*shl_erofs_dirent_fn)(void *ctx, const char *name, size_t name_len,
				   uint64_t nid, unsigned file_type);
int shl_erofs_readdir(shl_erofs *e, uint64_t dir_nid, shl_erofs_dirent_fn fn, void *ctx);

/* Read file data at offset; *got < len only at end of file. */
int shl_erofs_pread(shl_erofs *e, uint64_t nid, void *buf, size_t len, uint64_t off, size_t *got);

/* Symlink target into buf (NUL-terminated); SHL_ELIMIT if it doesn't fit. */
int shl_erofs_readlink(shl_erofs *e, uint64_t nid, char *buf, size_t bufsize);

/* All xattrs of an inode with their full names ("trusted.overlay.opaque"). */
typedef int (*shl_erofs_xattr_fn)(void *ctx, const char *name, const void *value, size_t len);
int shl_erofs_xattrs(shl_erofs *e, uint64_t nid, shl_erofs_xattr_fn fn, void *ctx);

/* Where the data of a regular file lives: for each extent (chunk or plain
 * run), the device (0 primary, 1.. extra), the byte offset on that device and
 * the length. Holes are reported with device -1. */
typedef int (*shl_erofs_extent_fn)(void *ctx, uint64_t file_off, int device,
				   uint64_t dev_off, uint64_t len);
int shl_erofs_extents(shl_erofs *e, uint64_t nid, shl_erofs_extent_fn fn, void *ctx);

/* Depth-first walk of the whole tree in dirent order ("." and ".." skipped),
 * paths relative to the root ("" for the root itself, then "a", "a/b").
 * Guards against directory cycles and nesting beyond a depth cap. */
typedef int (*shl_erofs_walk_fn)(void *ctx, const char *path, const shl_erofs_stat *st);
int shl_erofs_walk(shl_erofs *e, shl_erofs_walk_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
