/*
 * store/erofs_read_int.h - internals shared by the EROFS reader's files.
 */
#ifndef SHL_STORE_EROFS_READ_INT_H
#define SHL_STORE_EROFS_READ_INT_H

#include <stdint.h>
#include "shale/erofs.h"

struct shl_erofs {
	int fd, dev_fd, own_fds;
	uint64_t img_size, dev_size;
	unsigned blkbits;
	uint32_t blksz;
	uint64_t root_nid, inos, epoch;
	uint32_t fixed_nsec, blocks, meta_blkaddr, xattr_blkaddr;
	uint32_t feature_compat, feature_incompat;
	uint16_t extra_devices;
	uint32_t dev_blocks, uniaddr;
	uint8_t uuid[16];
	char volume[17];
};

struct shl_erofs_inode {
	uint64_t nid, iloc, size;
	uint32_t mode, uid, gid, nlink, i_u, mtime_nsec;
	int64_t mtime;
	uint16_t xattr_icount;
	uint32_t isize, xattr_isize;
	uint8_t layout;
};

/* Bounded pread from device `dev` (0 primary, 1 the extra device). */
int shl_erofs__read(shl_erofs *e, int dev, void *buf, size_t len, uint64_t off);
int shl_erofs__inode(shl_erofs *e, uint64_t nid, struct shl_erofs_inode *ino);
int shl_erofs__map(shl_erofs *e, const struct shl_erofs_inode *ino, uint64_t off,
		   int *dev, uint64_t *pa, uint64_t *len);
int shl_erofs__pread_inode(shl_erofs *e, const struct shl_erofs_inode *ino, void *buf, size_t len,
			   uint64_t off, size_t *got);

#endif
