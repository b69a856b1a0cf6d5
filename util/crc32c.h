/*
 * util/crc32c.h - CRC32C (Castagnoli), as the Linux kernel's crc32c(): the
 * caller passes the seed and no final inversion is applied. EROFS superblock
 * checksums use seed 0xFFFFFFFF over the block after byte 1024.
 */
#ifndef SHL_UTIL_CRC32C_H
#define SHL_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t shl_crc32c(uint32_t seed, const void *buf, size_t len);

#endif
