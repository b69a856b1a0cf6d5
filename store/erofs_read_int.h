/*
 * store/erofs_read_int.h - internals shared by the EROFS reader's files
 * (erofs_read.c: superblock, inodes, data; erofs_read_dir.c: directories and
 * the walk; erofs_read_xattr.c: xattrs). Constants are spelled out here, from
 * shared/erofs-format.md, so the reader doesn't depend on the writer's header.
 */
#ifndef SHL_STORE_EROFS_READ_INT_H
#define SHL_STORE_EROFS_READ_INT_H

#include <stddef.h>
#include <stdint.h>
#include "shale/erofs.h"

#define ERD_SB_OFFSET 1024u
#define ERD_MAGIC 0xE0F5E1E2u
#define ERD_ISLOTBITS 5
#define ERD_NULL_ADDR 0xFFFFFFFFu
#define ERD_NAME_MAX 255u
#define ERD_DIRENT_SIZE 12u

#define ERD_COMPAT_SB_CHKSUM 0x1u
#define ERD_INCOMPAT_ZERO_PADDING 0x1u   /* compression only */
#define ERD_INCOMPAT_COMPR_CFGS 0x2u     /* compression only */
#define ERD_INCOMPAT_CHUNKED_FILE 0x4u
#define ERD_INCOMPAT_DEVICE_TABLE 0x8u
#define ERD_INCOMPAT_ZTAILPACKING 0x10u  /* compression only */
#define ERD_INCOMPAT_FRAGMENTS 0x20u     /* compression only (also DEDUPE) */
#define ERD_INCOMPAT_XATTR_PREFIXES 0x40u

#define ERD_LAYOUT_FLAT_PLAIN 0u
#define ERD_LAYOUT_COMPRESSED_FULL 1u
#define ERD_LAYOUT_FLAT_INLINE 2u
#define ERD_LAYOUT_COMPRESSED_COMPACT 3u
#define ERD_LAYOUT_CHUNK_BASED 4u
#define ERD_CHUNK_BLKBITS_MASK 0x1fu
#define ERD_CHUNK_INDEXES 0x20u
#define ERD_CHUNK_48BIT 0x40u

/* Caps on what an image may make us model. */
#define ERD_MAX_DEVICES 4096u

struct erd_device {
	uint64_t blocks, uniaddr;
};

/* A long xattr name prefix (INCOMPAT_XATTR_PREFIXES). */
struct erd_xprefix {
	uint8_t base_index;
	uint8_t infix_len;
	char infix[ERD_NAME_MAX + 1];
};

struct shl_erofs {
	int fd, dev_fd;
	int own_fd, own_dev;
	uint64_t img_size, dev_size;
	unsigned blkbits;
	uint32_t blksz;
	uint64_t root_nid, inos, epoch, blocks, packed_nid;
	uint32_t fixed_nsec, meta_blkaddr, xattr_blkaddr;
	uint32_t feature_compat, feature_incompat;
	uint16_t extra_devices, devid_mask;
	struct erd_device *devs;        /* extra_devices entries: devs[k-1] is device k */
	uint8_t xprefix_count;
	uint32_t xprefix_start;
	struct erd_xprefix *xprefixes;  /* loaded at open when xprefix_count > 0 */
	uint8_t uuid[16];
	char volume[17];
};

struct erd_inode {
	uint64_t nid, iloc, size;
	uint32_t mode, uid, gid, nlink, i_u, mtime_nsec;
	int64_t mtime;
	uint32_t isize, xattr_isize;
	uint16_t format;
	uint8_t layout;
};

static inline uint16_t erd_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t erd_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t erd_le64(const uint8_t *p)
{
	return (uint64_t)erd_le32(p) | (uint64_t)erd_le32(p + 4) << 32;
}

/* Bounded pread of exactly `len` bytes from device `dev` (0 primary, k >= 1
 * extra device k: the device fd, or flatdev inside the primary). */
int shl_erofs__read(shl_erofs *e, int dev, void *buf, size_t len, uint64_t off);
/* Load and check inode `nid`. */
int shl_erofs__inode(shl_erofs *e, uint64_t nid, struct erd_inode *ino);
/* Read file data of a loaded inode; *got < len only at end of file. */
int shl_erofs__pread_inode(shl_erofs *e, const struct erd_inode *ino, void *buf, size_t len,
			   uint64_t off, size_t *got);
/* Load the long xattr prefix table (erofs_read_xattr.c), called by open. */
int shl_erofs__load_xprefixes(shl_erofs *e);

#endif
