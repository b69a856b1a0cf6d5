/*
 * tests/testbuf.h - byte buffers for the C tests: a growable buffer, gzip of
 * a buffer (zlib), the sha256 digest string of bytes, ustar entries.
 */
#ifndef SHL_TESTS_TESTBUF_H
#define SHL_TESTS_TESTBUF_H

#include <stdint.h>
#include <stdio.h>
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

/* One ustar entry (type '0' file, '5' dir, '1'/'2' links), mode 0644/0755,
 * mtime 1700000000, owned by uid = gid = `id`, data padded to 512. */
static inline void tar_entry(struct buf *t, const char *name, char type, const void *data, size_t len,
			     const char *link, unsigned id)
{
	uint8_t h[512] = { 0 }, pad[512] = { 0 };
	unsigned sum = 0;

	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", type == '5' ? 0755 : 0644);
	snprintf((char *)h + 108, 8, "%07o", id);
	snprintf((char *)h + 116, 8, "%07o", id);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)len);
	snprintf((char *)h + 136, 12, "%011o", 1700000000);
	memset(h + 148, ' ', 8);
	h[156] = (uint8_t)type;
	if (link)
		snprintf((char *)h + 157, 100, "%s", link);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	buf_add(t, h, 512);
	if (len) {
		buf_add(t, data, len);
		buf_add(t, pad, (512 - len % 512) % 512);
	}
}

#endif
