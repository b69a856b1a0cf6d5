/*
 * util/compress.c - deterministic gzip (zlib) and zstd compression of a file
 * (util/compress.h), used by `save --compress`. Same input, same bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "util/compress.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

#define CHUNK (1u << 20)

struct sink {
	int fd;
	shl_sha256 *h;
	uint64_t n;
};

static int put(struct sink *k, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	shl_sha256_update(k->h, buf, len);
	k->n += len;
	while (len) {
		ssize_t w = write(k->fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return shl_err_sys(SHL_EIO, "write compressed layer");
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static ssize_t get(int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = read(fd, buf, len);
		if (n >= 0 || errno != EINTR)
			return n < 0 ? shl_err_sys(SHL_EIO, "read layer") : n;
	}
}

static int do_gzip(int in_fd, struct sink *k, uint8_t *ib, uint8_t *ob)
{
	z_stream z;
	int rc = 0, flush;

	memset(&z, 0, sizeof(z));
	/* windowBits 15+16: gzip wrapper; zlib writes mtime 0 and no name */
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return shl_err(SHL_ENOMEM, "gzip: init failed");
	do {
		ssize_t n = get(in_fd, ib, CHUNK);
		if (n < 0) {
			rc = (int)n;
			break;
		}
		flush = n == 0 ? Z_FINISH : Z_NO_FLUSH;
		z.next_in = ib;
		z.avail_in = (uInt)n;
		do {
			z.next_out = ob;
			z.avail_out = CHUNK;
			deflate(&z, flush);
			if ((rc = put(k, ob, CHUNK - z.avail_out)))
				break;
		} while (z.avail_out == 0);
	} while (!rc && flush != Z_FINISH);
	deflateEnd(&z);
	return rc;
}

static int do_zstd(int in_fd, struct sink *k, uint8_t *ib, uint8_t *ob)
{
	ZSTD_CCtx *c = ZSTD_createCCtx();
	int rc = 0;

	if (!c)
		return shl_err(SHL_ENOMEM, "zstd: init failed");
	ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, 3);
	ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
	for (;;) {
		ssize_t n = get(in_fd, ib, CHUNK);
		ZSTD_EndDirective mode;
		ZSTD_inBuffer in;
		size_t left;
		if (n < 0) {
			rc = (int)n;
			break;
		}
		mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
		in.src = ib;
		in.size = (size_t)n;
		in.pos = 0;
		do {
			ZSTD_outBuffer out = { ob, CHUNK, 0 };
			left = ZSTD_compressStream2(c, &out, &in, mode);
			if (ZSTD_isError(left)) {
				rc = shl_err(SHL_EIO, "zstd: %s", ZSTD_getErrorName(left));
				break;
			}
			if ((rc = put(k, ob, out.pos)))
				break;
		} while (mode == ZSTD_e_end ? left != 0 : in.pos < in.size);
		if (rc || n == 0)
			break;
	}
	ZSTD_freeCCtx(c);
	return rc;
}

int shl_compress_fd(int in_fd, int out_fd, int comp, uint8_t out_sha256[32], uint64_t *out_size)
{
	struct sink k = { out_fd, NULL, 0 };
	uint8_t *ib = malloc(CHUNK), *ob = malloc(CHUNK);
	int rc;

	if (!ib || !ob) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shl_sha256_new(&k.h)))
		goto out;
	if (comp == SHL_COMP_GZIP)
		rc = do_gzip(in_fd, &k, ib, ob);
	else if (comp == SHL_COMP_ZSTD)
		rc = do_zstd(in_fd, &k, ib, ob);
	else
		rc = shl_err(SHL_EINVAL, "unknown compression %d", comp);
	if (!rc) {
		shl_sha256_final(k.h, out_sha256);
		*out_size = k.n;
	}
out:
	shl_sha256_free(k.h);
	free(ib);
	free(ob);
	return rc;
}
