/*
 * util/hash.h - SHA-256 (OpenSSL libcrypto) and XXH3-128 helpers; the API is
 * public in shale/digest.h. Only util/hash.c includes <openssl/...> and
 * <xxhash.h>.
 */
#ifndef SHL_UTIL_HASH_H
#define SHL_UTIL_HASH_H

#include "shale/digest.h"

#endif
