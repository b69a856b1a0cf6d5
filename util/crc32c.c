/*
 * util/crc32c.c - table-driven CRC32C (reflected polynomial 0x82F63B78).
 * Only the superblock is checksummed (at most 3 KiB), so a plain slice-by-1
 * table is fast enough and keeps this free of CPU-specific code.
 */
#include "util/crc32c.h"

static uint32_t table[256];
static int table_ready;

static void init_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
	__atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t shl_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE))
		init_table(); /* idempotent: racing threads compute the same table */
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}
