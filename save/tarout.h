/*
 * save/tarout.h - a minimal deterministic tar writer for archives shale
 * produces: ustar headers (names here are short: blobs/sha256/<hex>), mtime
 * 0, root-owned, no user/group names. File bodies from an fd are copied in
 * the kernel (copy_file_range to a file, sendfile/splice to a pipe).
 */
#ifndef SHL_SAVE_TAROUT_H
#define SHL_SAVE_TAROUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct shl_tarout {
	int fd;
	uint64_t off;   /* bytes written so far */
} shl_tarout;

int shl_tarout_dir(shl_tarout *t, const char *name);
int shl_tarout_mem(shl_tarout *t, const char *name, const void *data, size_t len);
int shl_tarout_file(shl_tarout *t, const char *name, int src_fd, uint64_t size);
int shl_tarout_finish(shl_tarout *t);

#endif
