/*
 * util/instream.h - the front of the layer pipeline.
 *
 * Pulls bytes from a source (fd or callback), sniffs the compression by magic
 * (gzip via isa-l, zstd, or none), decompresses, optionally tees the plain
 * bytes into an output fd (the stored tar), and hashes on a second thread:
 * SHA-256 + XXH3-128 of the plain stream and SHA-256 of the raw (compressed)
 * stream. The consumer (libarchive's read callback) gets the plain bytes in
 * large chunks with no extra copy. Memory is a fixed ring of buffers.
 */
#ifndef SHL_UTIL_INSTREAM_H
#define SHL_UTIL_INSTREAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Source callback: read up to len bytes; return count, 0 at EOF, or a
 * negative SHL_E* code (with the error set). */
typedef ssize_t (*shl_read_fn)(void *ctx, void *buf, size_t len);

enum shl_compression { SHL_COMP_NONE = 0, SHL_COMP_GZIP = 1, SHL_COMP_ZSTD = 2 };

typedef struct shl_instream shl_instream;

typedef struct shl_instream_result {
	int compression;              /* enum shl_compression as sniffed */
	uint64_t raw_size;            /* bytes read from the source */
	uint8_t raw_sha256[32];       /* of the raw source bytes */
	uint64_t plain_size;          /* bytes after decompression */
	uint8_t plain_sha256[32];     /* the diff_id */
	uint8_t plain_xxh3[16];
} shl_instream_result;

/* Open on a callback source. out_fd >= 0: every plain byte is written there
 * (sequentially, from the current offset). */
int shl_instream_new(shl_instream **out, shl_read_fn fn, void *ctx, int out_fd);
/* Convenience: source is a file descriptor (file or pipe). */
int shl_instream_new_fd(shl_instream **out, int in_fd, int out_fd);

/* Next chunk of plain bytes. *len == 0 means end of stream. The buffer stays
 * valid until the call after next (libarchive needs the previous one). */
int shl_instream_next(shl_instream *s, const void **buf, size_t *len);

/* Read to the end (so trailing bytes after the tar's end marker are hashed
 * and stored too), join the hash thread and return the digests. */
int shl_instream_finish(shl_instream *s, shl_instream_result *res);

/* Stop and free; safe on a stream that failed or was not finished. */
void shl_instream_free(shl_instream *s);

#endif
