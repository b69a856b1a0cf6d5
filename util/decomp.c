/*
 * util/decomp.c - streaming gzip (isa-l igzip: 2-3x zlib's inflate speed)
 * and zstd decompression for the layer pipeline (see util/decomp.h).
 *
 * gzip: isa-l with crc_flag = ISAL_GZIP parses each member's header and
 * checks the CRC32 and ISIZE of its trailer, then stops at the member's end
 * with the rest of the input untouched. Between members we look at the next
 * byte: 1f starts another member (isa-l rejects a bad header), 00 starts
 * the zero padding some tools append (only zeros may follow, up to EOF), and
 * anything else is an error. zstd: libzstd starts the next frame by itself;
 * a stream may only end at a frame boundary.
 */
#include <isa-l/igzip_lib.h>
#include <stdlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "util/decomp.h"
#include "util/err.h"
#include "util/instream.h"

enum { G_MEMBER, G_BETWEEN, G_PADDING };

struct shl_decomp {
	int comp;
	uint64_t in_pos;        /* compressed bytes consumed so far */
	/* gzip */
	struct inflate_state *gz;
	int gz_state;
	uint64_t member_start;  /* offset of the current member */
	/* zstd */
	ZSTD_DCtx *zs;
	size_t zs_hint;         /* last ZSTD_decompressStream result; 0 = at a frame boundary */
};

int shl_decomp_new(shl_decomp **out, int comp)
{
	shl_decomp *d = calloc(1, sizeof(*d));

	*out = NULL;
	if (!d)
		return shl_err(SHL_ENOMEM, "decompressor: out of memory");
	d->comp = comp;
	if (comp == SHL_COMP_GZIP) {
		if (!(d->gz = malloc(sizeof(*d->gz))))
			goto nomem;
		isal_inflate_init(d->gz);
		d->gz->crc_flag = ISAL_GZIP;
		d->gz_state = G_MEMBER;
	} else if (comp == SHL_COMP_ZSTD) {
		/* libzstd's default window limit, 2^27: bounded memory per stream */
		if (!(d->zs = ZSTD_createDCtx()))
			goto nomem;
		d->zs_hint = 1;
	} else {
		free(d);
		return shl_err(SHL_EINVAL, "decompressor: bad compression %d", comp);
	}
	*out = d;
	return 0;
nomem:
	shl_decomp_free(d);
	return shl_err(SHL_ENOMEM, "decompressor: out of memory");
}

void shl_decomp_free(shl_decomp *d)
{
	if (!d)
		return;
	free(d->gz);
	ZSTD_freeDCtx(d->zs);
	free(d);
}

static void consume(shl_decomp *d, const uint8_t **in, size_t *in_len, size_t n)
{
	*in += n;
	*in_len -= n;
	d->in_pos += n;
}

/* First nonzero byte of p[0, n), or NULL. */
static const uint8_t *memchr_nonzero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return p + i;
	return NULL;
}

static int gz_error(shl_decomp *d, int ret)
{
	const char *what;

	switch (ret) {
	case ISAL_INCORRECT_CHECKSUM:
		return shl_err(SHL_EFORMAT, "gzip: crc mismatch (CRC32 or size in the trailer of the member "
			       "at offset %llu; corrupt data)", (unsigned long long)d->member_start);
	case ISAL_INVALID_WRAPPER: what = "bad gzip header"; break;
	case ISAL_UNSUPPORTED_METHOD: what = "unsupported compression method"; break;
	case ISAL_INVALID_BLOCK: what = "invalid deflate block"; break;
	case ISAL_INVALID_SYMBOL: what = "invalid deflate symbol"; break;
	case ISAL_INVALID_LOOKBACK: what = "invalid back-reference distance"; break;
	default: what = "decoder error"; break;
	}
	return shl_err(SHL_EFORMAT, "gzip: corrupt data near offset %llu in the member at offset %llu "
		       "(%s, isa-l %d)", (unsigned long long)d->in_pos,
		       (unsigned long long)d->member_start, what, ret);
}

static int gz_run(shl_decomp *d, const uint8_t **in, size_t *in_len, int in_eof, uint8_t *out,
		  size_t cap, size_t *produced)
{
	struct inflate_state *z = d->gz;
	size_t done = 0;

	for (;;) {
		if (d->gz_state == G_BETWEEN) {
			if (!*in_len)
				break;
			if ((*in)[0] == 0x1f) {
				isal_inflate_reset(z);
				z->crc_flag = ISAL_GZIP;
				d->member_start = d->in_pos;
				d->gz_state = G_MEMBER;
			} else if ((*in)[0] == 0) {
				d->gz_state = G_PADDING;
			} else {
				return shl_err(SHL_EFORMAT, "gzip: garbage after the member ending at "
					       "offset %llu (neither a new member nor zero padding)",
					       (unsigned long long)d->in_pos);
			}
			continue;
		}
		if (d->gz_state == G_PADDING) {
			const uint8_t *nz = memchr_nonzero(*in, *in_len);
			if (nz)
				return shl_err(SHL_EFORMAT, "gzip: garbage after the end of the stream "
					       "(nonzero byte at offset %llu after zero padding)",
					       (unsigned long long)(d->in_pos + (uint64_t)(nz - *in)));
			consume(d, in, in_len, *in_len);
			break;
		}
		if (done == cap)
			break;
		size_t in_n = *in_len > UINT32_MAX ? UINT32_MAX : *in_len;
		size_t out_n = cap - done > UINT32_MAX ? UINT32_MAX : cap - done;
		z->next_in = (uint8_t *)*in;
		z->avail_in = (uint32_t)in_n;
		z->next_out = out + done;
		z->avail_out = (uint32_t)out_n;
		int ret = isal_inflate(z);
		size_t used = in_n - z->avail_in, made = out_n - z->avail_out;
		consume(d, in, in_len, used);
		done += made;
		if (ret < 0 || ret == ISAL_NEED_DICT)
			return gz_error(d, ret);
		if (z->block_state == ISAL_BLOCK_FINISH) {
			d->gz_state = G_BETWEEN;
			continue;
		}
		if (!used && !made) {
			if (*in_len)  /* cannot happen; never spin */
				return shl_err(SHL_EFORMAT, "gzip: decoder stalled at offset %llu",
					       (unsigned long long)d->in_pos);
			if (in_eof)
				return shl_err(SHL_EFORMAT, "gzip: unexpected end of stream (truncated "
					       "member at offset %llu)", (unsigned long long)d->member_start);
			break;
		}
	}
	*produced = done;
	return in_eof && !*in_len && d->gz_state != G_MEMBER ? 1 : 0;
}

static int zs_run(shl_decomp *d, const uint8_t **in, size_t *in_len, int in_eof, uint8_t *out,
		  size_t cap, size_t *produced)
{
	ZSTD_outBuffer ob = { out, cap, 0 };

	for (;;) {
		ZSTD_inBuffer ib = { *in, *in_len, 0 };
		size_t before = ob.pos, r;
		if (!*in_len && d->zs_hint == 0) {
			/* between frames: a fresh call would ask for the next header */
			*produced = ob.pos;
			return in_eof ? 1 : 0;
		}
		if (ob.pos == ob.size)
			break;
		r = ZSTD_decompressStream(d->zs, &ob, &ib);
		if (ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge)
			return shl_err(SHL_ELIMIT, "zstd: the frame at offset %llu needs a window over "
				       "128 MiB (made with --long?); refused to bound memory",
				       (unsigned long long)d->in_pos);
		if (ZSTD_isError(r))
			return shl_err(SHL_EFORMAT, "zstd: %s (near offset %llu)", ZSTD_getErrorName(r),
				       (unsigned long long)d->in_pos);
		consume(d, in, in_len, ib.pos);
		d->zs_hint = r;
		if (!ib.pos && ob.pos == before) {
			if (*in_len)  /* cannot happen; never spin */
				return shl_err(SHL_EFORMAT, "zstd: decoder stalled at offset %llu",
					       (unsigned long long)d->in_pos);
			if (r == 0)
				continue;
			if (in_eof)
				return shl_err(SHL_EFORMAT, "zstd: unexpected end of stream (truncated "
					       "frame at offset %llu)", (unsigned long long)d->in_pos);
			break;
		}
	}
	*produced = ob.pos;
	return 0;
}

int shl_decomp_run(shl_decomp *d, const uint8_t **in, size_t *in_len, int in_eof, uint8_t *out,
		   size_t cap, size_t *produced)
{
	*produced = 0;
	if (d->comp == SHL_COMP_GZIP)
		return gz_run(d, in, in_len, in_eof, out, cap, produced);
	return zs_run(d, in, in_len, in_eof, out, cap, produced);
}
