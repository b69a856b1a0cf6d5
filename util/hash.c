/*
 * util/hash.c - SHA-256 through OpenSSL 3's EVP (uses SHA-NI where the CPU has
 * it: coreutils-speed SHA-256 would be the layer pipeline's bottleneck),
 * XXH3-128 through libxxhash, and "sha256:<hex>" digest strings
 * (shale/digest.h). The SHA-256 implementation is fetched from the default
 * provider once per process, not looked up again on every init.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "util/err.h"
#include "util/hash.h"

struct shl_sha256 {
	EVP_MD_CTX *ctx;
};

struct shl_xxh3 {
	XXH3_state_t *st;
};

static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_fetched;      /* kept for the life of the process */

static void md_init(void)
{
	md_fetched = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256_md(void)
{
	pthread_once(&md_once, md_init);
	return md_fetched ? md_fetched : EVP_sha256();
}

int shl_sha256_new(shl_sha256 **out)
{
	shl_sha256 *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h || !(h->ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex2(h->ctx, sha256_md(), NULL) != 1) {
		shl_sha256_free(h);
		return shl_err(SHL_ENOMEM, "sha256: cannot create a digest context");
	}
	*out = h;
	return 0;
}

void shl_sha256_update(shl_sha256 *h, const void *buf, size_t len)
{
	if (len)
		EVP_DigestUpdate(h->ctx, buf, len);
}

void shl_sha256_final(shl_sha256 *h, uint8_t out[32])
{
	unsigned int n = 32;

	EVP_DigestFinal_ex(h->ctx, out, &n);
}

void shl_sha256_reset(shl_sha256 *h)
{
	EVP_DigestInit_ex2(h->ctx, sha256_md(), NULL);
}

void shl_sha256_free(shl_sha256 *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void shl_sha256_buf(const void *buf, size_t len, uint8_t out[32])
{
	unsigned int n = 32;

	EVP_Digest(buf, len, out, &n, sha256_md(), NULL);
}

int shl_xxh3_new(shl_xxh3 **out)
{
	shl_xxh3 *h = calloc(1, sizeof(*h));

	*out = NULL;
	if (!h || !(h->st = XXH3_createState())) {
		free(h);
		return shl_err(SHL_ENOMEM, "xxh3: out of memory");
	}
	XXH3_128bits_reset(h->st);
	*out = h;
	return 0;
}

void shl_xxh3_update(shl_xxh3 *h, const void *buf, size_t len)
{
	XXH3_128bits_update(h->st, buf, len);
}

void shl_xxh3_final(shl_xxh3 *h, uint8_t out[16])
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->st));
	memcpy(out, c.digest, 16);
}

void shl_xxh3_free(shl_xxh3 *h)
{
	if (!h)
		return;
	XXH3_freeState(h->st);
	free(h);
}

void shl_hex(const uint8_t *bytes, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 15];
	}
	out[2 * n] = '\0';
}

void shl_digest_str(const uint8_t sha[32], char out[SHL_DIGEST_STRLEN])
{
	memcpy(out, "sha256:", 7);
	shl_hex(sha, 32, out + 7);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int shl_digest_parse(const char *s, uint8_t out[32])
{
	uint8_t d[32];

	if (!s)
		return shl_err(SHL_EFORMAT, "invalid digest (null): want sha256:<64 lowercase hex>");
	/* strnlen: a huge bad string is not scanned to its end */
	if (strncmp(s, "sha256:", 7) != 0 || strnlen(s, 7 + 64 + 1) != 7 + 64)
		goto bad;
	for (int i = 0; i < 32; i++) {
		int hi = hexval(s[7 + 2 * i]), lo = hexval(s[8 + 2 * i]);
		if (hi < 0 || lo < 0)
			goto bad;
		d[i] = (uint8_t)(hi << 4 | lo);
	}
	memcpy(out, d, 32);
	return 0;
bad:
	return shl_err(SHL_EFORMAT, "invalid digest '%.80s%s': want sha256:<64 lowercase hex>", s,
		       strnlen(s, 81) > 80 ? "..." : "");
}
