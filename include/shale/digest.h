/*
 * shale/digest.h - SHA-256 (OpenSSL libcrypto, SHA-NI where available),
 * XXH3-128 and "sha256:<hex>" digest strings.
 */
#ifndef SHALE_DIGEST_H
#define SHALE_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shl_sha256 shl_sha256;   /* opaque streaming SHA-256 */
typedef struct shl_xxh3 shl_xxh3;       /* opaque streaming XXH3-128 */

int shl_sha256_new(shl_sha256 **out);
void shl_sha256_update(shl_sha256 *h, const void *buf, size_t len);
void shl_sha256_final(shl_sha256 *h, uint8_t out[32]); /* h may be reused after reset */
void shl_sha256_reset(shl_sha256 *h);
void shl_sha256_free(shl_sha256 *h);
void shl_sha256_buf(const void *buf, size_t len, uint8_t out[32]);

int shl_xxh3_new(shl_xxh3 **out);
void shl_xxh3_update(shl_xxh3 *h, const void *buf, size_t len);
void shl_xxh3_final(shl_xxh3 *h, uint8_t out[16]);  /* canonical big-endian bytes */
void shl_xxh3_free(shl_xxh3 *h);

/* "sha256:" + 64 lowercase hex + NUL */
#define SHL_DIGEST_STRLEN 72
void shl_hex(const uint8_t *bytes, size_t n, char *out /* 2n+1 */);
void shl_digest_str(const uint8_t sha[32], char out[SHL_DIGEST_STRLEN]);
/* Parse "sha256:<64 lowercase hex>" strictly; SHL_EFORMAT otherwise. */
int shl_digest_parse(const char *s, uint8_t out[32]);

#ifdef __cplusplus
}
#endif
#endif
