/*
 * tests/test_instream.c - util/instream.c and util/hash.c: digests against
 * known answers, plain/gzip (single and multi-member, zero padding)/zstd
 * (multi-frame) inputs of many sizes through odd-sized reads, the tee file,
 * corrupt and truncated streams, source errors, freeing mid-stream.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

struct src {
	const uint8_t *p;
	size_t left, chunk;
	int fail_after; /* -1: never */
};

static ssize_t src_read(void *ctx, void *buf, size_t len)
{
	struct src *s = ctx;
	size_t n = len < s->left ? len : s->left;

	if (s->fail_after == 0)
		return shl_err(SHL_ENET, "source broke on purpose");
	if (s->fail_after > 0)
		s->fail_after--;
	if (s->chunk && n > s->chunk)
		n = s->chunk;
	memcpy(buf, s->p, n);
	s->p += n;
	s->left -= n;
	return (ssize_t)n;
}

static uint8_t *gz(const uint8_t *in, size_t n, size_t *out_len)
{
	z_stream z;
	size_t cap = compressBound(n) + 64;
	uint8_t *out = malloc(cap);

	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	deflate(&z, Z_FINISH);
	*out_len = z.total_out;
	deflateEnd(&z);
	return out;
}

/* Run a stream to the end; returns rc and fills res; the teed bytes go to tee_path. */
static int run(const uint8_t *in, size_t n, size_t chunk, int fail_after, shl_instream_result *res,
	       const char *tee_path, size_t *consumed)
{
	struct src s = { in, n, chunk, fail_after };
	shl_instream *st = NULL;
	int fd = tee_path ? open(tee_path, O_RDWR | O_CREAT | O_TRUNC, 0600) : -1;
	int rc = shl_instream_new(&st, src_read, &s, fd);
	const void *b;
	size_t len;

	*consumed = 0;
	while (!rc) {
		rc = shl_instream_next(st, &b, &len);
		if (rc || !len)
			break;
		*consumed += len;
	}
	if (!rc)
		rc = shl_instream_finish(st, res);
	shl_instream_free(st);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int file_equals(const char *path, const uint8_t *want, size_t n)
{
	uint8_t *buf = malloc(n + 1);
	int fd = open(path, O_RDONLY);
	ssize_t got = fd >= 0 ? read(fd, buf, n + 1) : -1;
	int ok = got == (ssize_t)n && (n == 0 || memcmp(buf, want, n) == 0);

	if (fd >= 0)
		close(fd);
	free(buf);
	return ok;
}

int main(void)
{
	char tee[] = "/tmp/shl-instream-XXXXXX";
	static const size_t sizes[] = { 1, 511, 262144, 262145, 1048576, 3 * 1048576 + 7 };
	uint8_t d[32], d2[32];
	char hex[72];
	shl_instream_result res;
	size_t consumed;
	int tfd = mkstemp(tee);

	close(tfd);
	/* known answers */
	shl_sha256_buf("abc", 3, d);
	shl_digest_str(d, hex);
	CHECK(!strcmp(hex, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
	shl_sha256_buf("", 0, d);
	shl_hex(d, 32, hex);
	CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	CHECK_OK(shl_digest_parse("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d2));
	shl_sha256_buf("abc", 3, d);
	CHECK(!memcmp(d, d2, 32));
	CHECK_ERR(shl_digest_parse("sha256:BA7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d2), SHL_EFORMAT);
	CHECK_ERR(shl_digest_parse("sha512:ab", d2), SHL_EFORMAT);
	CHECK_ERR(shl_digest_parse("sha256:abc", d2), SHL_EFORMAT);

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k], zn, gn, gn2;
		uint8_t *in = malloc(n), *z, *g, *g2, *multi;
		uint8_t want[32];
		for (size_t i = 0; i < n; i++)
			in[i] = (uint8_t)((i * 7919) ^ (i >> 11));
		shl_sha256_buf(in, n, want);

		/* plain, odd chunks */
		CHECK_OK(run(in, n, 4099, -1, &res, tee, &consumed));
		CHECK(res.compression == SHL_COMP_NONE && res.plain_size == n && consumed == n);
		CHECK(!memcmp(res.plain_sha256, want, 32) && !memcmp(res.raw_sha256, want, 32));
		CHECK(file_equals(tee, in, n));

		/* gzip, and two members + zero padding */
		g = gz(in, n / 2, &gn);
		g2 = gz(in + n / 2, n - n / 2, &gn2);
		multi = malloc(gn + gn2 + 512);
		memcpy(multi, g, gn);
		memcpy(multi + gn, g2, gn2);
		memset(multi + gn + gn2, 0, 512);
		CHECK_OK(run(multi, gn + gn2 + 512, 0, -1, &res, tee, &consumed));
		CHECK(res.compression == SHL_COMP_GZIP && res.plain_size == n);
		CHECK(!memcmp(res.plain_sha256, want, 32));
		CHECK(file_equals(tee, in, n));
		shl_sha256_buf(multi, gn + gn2 + 512, d);
		CHECK(!memcmp(res.raw_sha256, d, 32) && res.raw_size == gn + gn2 + 512);
		/* corrupt: flip a CRC byte of the first member */
		multi[gn - 6] ^= 0xff;
		CHECK_ERR(run(multi, gn + gn2, 0, -1, &res, NULL, &consumed), SHL_EFORMAT);
		/* truncated */
		CHECK_ERR(run(g, gn - 3, 0, -1, &res, NULL, &consumed), SHL_EFORMAT);
		/* garbage after the stream */
		memcpy(multi, g, gn);
		memcpy(multi + gn, "junk", 4);
		CHECK_ERR(run(multi, gn + 4, 0, -1, &res, NULL, &consumed), SHL_EFORMAT);

		/* zstd, two frames */
		zn = ZSTD_compressBound(n);
		z = malloc(2 * zn);
		size_t z1 = ZSTD_compress(z, zn, in, n / 3, 3);
		size_t z2 = ZSTD_compress(z + z1, zn, in + n / 3, n - n / 3, 3);
		CHECK(!ZSTD_isError(z1) && !ZSTD_isError(z2));
		CHECK_OK(run(z, z1 + z2, 777, -1, &res, tee, &consumed));
		CHECK(res.compression == SHL_COMP_ZSTD && res.plain_size == n && !memcmp(res.plain_sha256, want, 32));
		CHECK(file_equals(tee, in, n));
		CHECK_ERR(run(z, z1 + z2 - 2, 0, -1, &res, NULL, &consumed), SHL_EFORMAT);

		/* the source's own error comes through with its message */
		if (n > 1000) { /* enough reads for the failure to happen */
			CHECK_ERR(run(in, n, 100, 2, &res, NULL, &consumed), SHL_ENET);
			CHECK(strstr(shl_error_last(), "on purpose") != NULL);
		}
		free(in);
		free(g);
		free(g2);
		free(multi);
		free(z);
	}
	/* freeing mid-stream, with the hash thread busy */
	{
		size_t n = 8u << 20;
		uint8_t *in = calloc(1, n);
		struct src s = { in, n, 0, -1 };
		shl_instream *st;
		const void *b;
		size_t len;
		CHECK_OK(shl_instream_new(&st, src_read, &s, -1));
		CHECK_OK(shl_instream_next(st, &b, &len));
		CHECK(len > 0);
		shl_instream_free(st);
		free(in);
	}
	/* empty input: plain, zero bytes */
	CHECK_OK(run((const uint8_t *)"", 0, 0, -1, &res, NULL, &consumed));
	CHECK(res.plain_size == 0);
	unlink(tee);
	return check_result("test_instream");
}
