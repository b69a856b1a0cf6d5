/*
 * tests/test_hash.c - util/hash.c: SHA-256 known answers (FIPS 180-2
 * examples), streaming == one-shot at every kind of split, reset and reuse;
 * XXH3-128 streaming == XXH3_128bits() on the same bytes in canonical
 * (big-endian) order; hex and strict "sha256:<hex>" parsing with bounded
 * error messages.
 */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "check.h"
#include "util/err.h"
#include "util/hash.h"

static void hexof(const uint8_t *d, size_t n, char *out)
{
	shl_hex(d, n, out);
}

static int sha_is(const void *buf, size_t len, const char *want_hex)
{
	uint8_t d[32];
	char hex[65];

	shl_sha256_buf(buf, len, d);
	hexof(d, 32, hex);
	return strcmp(hex, want_hex) == 0;
}

/* Streaming SHA-256 of buf in pieces of `step` bytes equals the one-shot. */
static int sha_stream_ok(shl_sha256 *h, const uint8_t *buf, size_t len, size_t step)
{
	uint8_t a[32], b[32];

	shl_sha256_reset(h);
	for (size_t off = 0; off < len; off += step)
		shl_sha256_update(h, buf + off, len - off < step ? len - off : step);
	shl_sha256_final(h, a);
	shl_sha256_buf(buf, len, b);
	return memcmp(a, b, 32) == 0;
}

/* Streaming XXH3 equals XXH3_128bits() of the whole buffer, canonical. */
static int xxh_ok(const uint8_t *buf, size_t len, size_t step)
{
	shl_xxh3 *h = NULL;
	XXH128_canonical_t c;
	uint8_t got[16];
	int ok;

	if (shl_xxh3_new(&h))
		return 0;
	for (size_t off = 0; off < len; off += step)
		shl_xxh3_update(h, buf + off, len - off < step ? len - off : step);
	shl_xxh3_final(h, got);
	shl_xxh3_free(h);
	XXH128_canonicalFromHash(&c, XXH3_128bits(buf, len));
	ok = memcmp(got, c.digest, 16) == 0;
	return ok;
}

int main(void)
{
	static const char abc_hex[] = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	static const char good[] = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	size_t big = 1000000 + 4097;
	uint8_t *buf = malloc(big), d[32], d2[32];
	char hex[SHL_DIGEST_STRLEN], bad[300];
	shl_sha256 *h = NULL;

	if (!buf)
		SKIP("out of memory");
	/* FIPS 180-2 known answers */
	CHECK(sha_is("abc", 3, abc_hex));
	CHECK(sha_is("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
	CHECK(sha_is("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
		     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
	memset(buf, 'a', 1000000);
	CHECK(sha_is(buf, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
	CHECK(!sha_is("abd", 3, abc_hex));

	/* streaming: 1M 'a' fed in odd pieces, then reuse after reset */
	CHECK_OK(shl_sha256_new(&h));
	if (h) {
		for (size_t off = 0; off < 1000000; off += 777)
			shl_sha256_update(h, buf + off, 1000000 - off < 777 ? 1000000 - off : 777);
		shl_sha256_update(h, buf, 0);
		shl_sha256_final(h, d);
		hexof(d, 32, hex);
		CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
		shl_sha256_reset(h);
		shl_sha256_update(h, "ab", 2);
		shl_sha256_update(h, "c", 1);
		shl_sha256_final(h, d);
		hexof(d, 32, hex);
		CHECK(!strcmp(hex, abc_hex));
		shl_sha256_reset(h); /* empty after reset */
		shl_sha256_final(h, d);
		hexof(d, 32, hex);
		CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
		for (size_t i = 0; i < big; i++)
			buf[i] = (uint8_t)(i * 2654435761u >> 13);
		static const size_t steps[] = { 1, 63, 64, 65, 4096, 65537, 1u << 20 };
		for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++)
			CHECK(sha_stream_ok(h, buf, steps[k] == 1 ? 5000 : big, steps[k]));
	}
	shl_sha256_free(h);
	shl_sha256_free(NULL);

	/* XXH3-128: sizes around the algorithm's internal boundaries */
	static const size_t xl[] = { 0, 1, 3, 4, 8, 9, 16, 17, 128, 129, 240, 241, 1023, 1024, 1025,
				     64 * 1024 + 5, 1000000 + 4097 };
	for (size_t k = 0; k < sizeof(xl) / sizeof(xl[0]); k++) {
		CHECK(xxh_ok(buf, xl[k], xl[k] ? xl[k] : 1));
		CHECK(xxh_ok(buf, xl[k], 7));
		CHECK(xxh_ok(buf, xl[k], 4096 + 3));
	}
	{
		/* the canonical form of the empty input, as `xxhsum -H2` prints it */
		shl_xxh3 *x = NULL;
		CHECK_OK(shl_xxh3_new(&x));
		if (x) {
			shl_xxh3_final(x, d);
			hexof(d, 16, hex);
			CHECK(!strcmp(hex, "99aa06d3014798d86001c324468d497f"));
		}
		shl_xxh3_free(x);
		shl_xxh3_free(NULL);
	}

	/* hex and digest strings */
	{
		uint8_t b3[3] = { 0x00, 0xab, 0xff };
		shl_hex(b3, 3, hex);
		CHECK(!strcmp(hex, "00abff"));
		shl_hex(b3, 0, hex);
		CHECK(hex[0] == '\0');
	}
	shl_sha256_buf("abc", 3, d);
	shl_digest_str(d, hex);
	CHECK(!strcmp(hex, good) && strlen(hex) == SHL_DIGEST_STRLEN - 1);
	memset(d2, 0, 32);
	CHECK_OK(shl_digest_parse(good, d2));
	CHECK(!memcmp(d, d2, 32));

	/* strict parsing; the output is untouched on error */
	static const char *const rejects[] = {
		"sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", /* upper */
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a",  /* 63 */
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0", /* 65 */
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ag", /* g */
		"sha256:ba7816bf8f01cfea414140de5dae2223 00361a396177a9cb410ff61f20015ad", /* space */
		"sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"SHA256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256:", "sha256", "",
		" sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
		"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n",
	};
	for (size_t k = 0; k < sizeof(rejects) / sizeof(rejects[0]); k++) {
		memset(d2, 0x5a, 32);
		CHECK_ERR(shl_digest_parse(rejects[k], d2), SHL_EFORMAT);
		CHECK(d2[0] == 0x5a && d2[31] == 0x5a);
	}
	CHECK_ERR(shl_digest_parse(NULL, d2), SHL_EFORMAT);
	/* the message names the bad string, cut at 80 characters */
	CHECK_ERR(shl_digest_parse("sha256:xyz", d2), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "'sha256:xyz'") != NULL);
	memset(bad, 'q', sizeof(bad) - 1);
	bad[sizeof(bad) - 1] = '\0';
	memcpy(bad, "sha256:", 7);
	CHECK_ERR(shl_digest_parse(bad, d2), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "sha256:qqq") != NULL);
	CHECK(strstr(shl_error_last(), "...") != NULL);
	{
		char q90[91];
		memset(q90, 'q', 90);
		q90[90] = '\0';
		CHECK(strstr(shl_error_last(), q90) == NULL); /* truncated */
	}

	free(buf);
	return check_result("test_hash");
}
