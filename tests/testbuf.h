/*
 * tests/testbuf.h - byte buffers for the C tests: a growable buffer, gzip of
 * a buffer (zlib), the sha256 digest string of bytes.
 */
#ifndef SHL_TESTS_TESTBUF_H
#define SHL_TESTS_TESTBUF_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util/hash.h"

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static inline void buf_add(struct buf *b, const void *p, size_t n)
{
	if (!n)
		return;
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 4096;
		if (!(b->p = realloc(b->p, b->cap)))
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static inline struct buf gzip_buf(const struct buf *in)
{
	struct buf out = { 0 };
	z_stream z;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	out.cap = deflateBound(&z, in->n) + 64;
	out.p = malloc(out.cap);
	z.next_in = in->p;
	z.avail_in = (uInt)in->n;
	z.next_out = out.p;
	z.avail_out = (uInt)out.cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		abort();
	out.n = z.total_out;
	deflateEnd(&z);
	return out;
}

static inline void digest_of(const void *p, size_t n, char out[72])
{
	uint8_t d[32];

	shl_sha256_buf(p, n, d);
	shl_digest_str(d, out);
}

#endif
