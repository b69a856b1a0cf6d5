/*
 * util/decomp.h - streaming decompression for the layer pipeline: gzip
 * through isa-l (multi-member, CRC32 and ISIZE of every member verified,
 * trailing zero padding tolerated) and zstd through libzstd (multi-frame).
 * Used by util/instream.c. Memory per stream is bounded: isa-l's fixed
 * state, and zstd's default window limit (128 MiB; bigger: SHL_ELIMIT).
 */
#ifndef SHL_UTIL_DECOMP_H
#define SHL_UTIL_DECOMP_H

#include <stddef.h>
#include <stdint.h>

typedef struct shl_decomp shl_decomp;

/* comp: SHL_COMP_GZIP or SHL_COMP_ZSTD (util/instream.h). */
int shl_decomp_new(shl_decomp **out, int comp);

/*
 * Decompress input [*in, *in + *in_len) into out[0, cap), advancing *in and
 * *in_len over what was consumed and setting *produced. in_eof says that no
 * input follows the bytes given. Returns:
 *   0  stopped because out is full or the input is used up (call again with
 *      more input, or with more room);
 *   1  end of the compressed stream (only with in_eof; *produced may be > 0);
 *   <0 SHL_EFORMAT (corrupt, truncated, garbage after the end) or SHL_ELIMIT
 *      (zstd window over the limit) with the error set; messages name the
 *      offset in the compressed stream.
 * Never returns 0 with both input and room left.
 */
int shl_decomp_run(shl_decomp *d, const uint8_t **in, size_t *in_len, int in_eof, uint8_t *out,
		   size_t cap, size_t *produced);

void shl_decomp_free(shl_decomp *d);

#endif
