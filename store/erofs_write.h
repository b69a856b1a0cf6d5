/*
 * store/erofs_write.h - write an fstree as an EROFS image.
 *
 * Hand-written because Debian 12 ships no liberofs (erofs-utils 1.5 has no
 * library and no tar-index mode). Two modes:
 *  - SHL_EROFS_INDEX: 512-byte blocks, metadata only; one extra device (the
 *    layer tar); every regular file is a chunk-based inode with 8-byte chunk
 *    indexes pointing at its data inside the tar (device 1).
 *  - SHL_EROFS_FULL: 4 KiB blocks, file data copied into the image
 *    (FLAT_PLAIN), independent of the tar.
 * Output is deterministic: same tree + same uuid -> same bytes.
 */
#ifndef SHL_STORE_EROFS_WRITE_H
#define SHL_STORE_EROFS_WRITE_H

#include <stdint.h>
#include "store/fstree.h"

enum shl_erofs_mode { SHL_EROFS_INDEX = 0, SHL_EROFS_FULL = 1 };

typedef struct shl_erofs_wopts {
	int mode;             /* enum shl_erofs_mode */
	int tar_fd;           /* FULL: source of file data (pread) */
	const int *src_fds;   /* FULL, optional: data of inode->src comes from
	                         src_fds[src] (squash of several layers) */
	uint32_t nsrc;
	uint64_t tar_size;    /* INDEX: size of the device (the tar) */
	uint8_t uuid[16];
	const char *volume;   /* optional volume name (<= 15 bytes) */
} shl_erofs_wopts;

/* Write the image to out_fd (from offset 0, truncating). t must be finalized.
 * *size_out (may be NULL) receives the image size in bytes. */
int shl_erofs_write(shl_fstree *t, const shl_erofs_wopts *o, int out_fd, uint64_t *size_out);

#endif
