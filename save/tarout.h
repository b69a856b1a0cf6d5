/*
 * save/tarout.h - a minimal deterministic tar writer for the archives shale
 * produces: ustar headers (pax records only when a size or name does not fit),
 * mtime 0, uid/gid 0, no user/group names, mode 0644 files / 0755 dirs. File
 * bodies from an fd are copied in the kernel (copy_file_range to a regular
 * file, sendfile to a pipe or socket), never through a user-space buffer
 * unless the kernel refuses both.
 */
#ifndef SHL_SAVE_TAROUT_H
#define SHL_SAVE_TAROUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct shl_tarout {
	int fd;
	uint64_t off;     /* bytes of the archive written so far */
	int copy_mode;    /* how file bodies move: 0 copy_file_range, 1 sendfile, 2 read/write */
	uint64_t copied;  /* body bytes moved without a user-space copy (tests, --debug) */
	struct shl_dio *dio; /* regular-file output: direct I/O (util/dio.h) */
	int dio_tried;
} shl_tarout;

#define SHL_TAROUT_INIT(fd) { (fd), 0, 0, 0, NULL, 0 }

int shl_tarout_dir(shl_tarout *t, const char *name);
int shl_tarout_mem(shl_tarout *t, const char *name, const void *data, size_t len);
/* `size` bytes from offset 0 of src (the fd's file position is not used). */
int shl_tarout_file(shl_tarout *t, const char *name, int src_fd, uint64_t size);
/* The two zero blocks that end an archive (and the direct-I/O tail). */
int shl_tarout_finish(shl_tarout *t);
/* Free what the writer holds (after finish, or on an error path). */
void shl_tarout_release(shl_tarout *t);

#endif
