/*
 * util/compress.h - compress a file into another, deterministically (gzip
 * with a zero mtime and no name; zstd level 3), hashing the output.
 */
#ifndef SHL_UTIL_COMPRESS_H
#define SHL_UTIL_COMPRESS_H

#include <stdint.h>

/* comp: SHL_COMP_GZIP or SHL_COMP_ZSTD (util/instream.h). Writes from the
 * current offset of out_fd; *out_size and out_sha256 describe what was written. */
int shl_compress_fd(int in_fd, int out_fd, int comp, uint8_t out_sha256[32], uint64_t *out_size);

#endif
