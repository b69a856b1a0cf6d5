/*
 * store/erofs_fmt.h - EROFS on-disk structures and constants used by shale's
 * writer, written from the format facts in docs/erofs.md (all little-endian).
 * Only the uncompressed subset shale writes is described here.
 */
#ifndef SHL_STORE_EROFS_FMT_H
#define SHL_STORE_EROFS_FMT_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>

#define EROFS_SUPER_MAGIC_V1 0xE0F5E1E2u
#define EROFS_SUPER_OFFSET 1024u
#define EROFS_DEVT_SLOT_OFF 1152u   /* device slot right after the superblock */
#define EROFS_ISLOTBITS 5
#define EROFS_ISLOT (1u << EROFS_ISLOTBITS)
#define EROFS_NULL_ADDR 0xFFFFFFFFu
#define EROFS_ALIGN(x, a) ((((uint64_t)(x)) + (a) - 1) / (a) * (a))

#define EROFS_FEATURE_COMPAT_SB_CHKSUM 0x1u
#define EROFS_FEATURE_COMPAT_MTIME 0x2u
#define EROFS_FEATURE_INCOMPAT_CHUNKED_FILE 0x4u
#define EROFS_FEATURE_INCOMPAT_DEVICE_TABLE 0x8u

#define EROFS_INODE_LAYOUT_EXTENDED 1u
#define EROFS_I_DATALAYOUT_BIT 1
#define EROFS_INODE_FLAT_PLAIN 0u
#define EROFS_INODE_FLAT_INLINE 2u
#define EROFS_INODE_CHUNK_BASED 4u
#define EROFS_CHUNK_FORMAT_INDEXES 0x20u

#define EROFS_FT_UNKNOWN 0
#define EROFS_FT_REG_FILE 1
#define EROFS_FT_DIR 2
#define EROFS_FT_CHRDEV 3
#define EROFS_FT_BLKDEV 4
#define EROFS_FT_FIFO 5
#define EROFS_FT_SOCK 6
#define EROFS_FT_SYMLINK 7

#define EROFS_XATTR_INDEX_USER 1
#define EROFS_XATTR_INDEX_POSIX_ACL_ACCESS 2
#define EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT 3
#define EROFS_XATTR_INDEX_TRUSTED 4
#define EROFS_XATTR_INDEX_SECURITY 6

struct erofs_super_block {            /* at byte 1024, 128 bytes */
	uint32_t magic;
	uint32_t checksum;                /* crc32c, see docs/erofs.md */
	uint32_t feature_compat;
	uint8_t blkszbits;
	uint8_t sb_extslots;
	uint16_t root_nid;
	uint64_t inos;
	uint64_t epoch;
	uint32_t fixed_nsec;
	uint32_t blocks;                  /* primary device */
	uint32_t meta_blkaddr;
	uint32_t xattr_blkaddr;
	uint8_t uuid[16];
	uint8_t volume_name[16];
	uint32_t feature_incompat;
	uint16_t u1;
	uint16_t extra_devices;
	uint16_t devt_slotoff;            /* in units of 128 bytes */
	uint8_t dirblkbits;
	uint8_t xattr_prefix_count;
	uint32_t xattr_prefix_start;
	uint64_t packed_nid;
	uint8_t xattr_filter_reserved;
	uint8_t reserved[23];
} __attribute__((packed));

struct erofs_deviceslot {             /* 128 bytes */
	uint8_t tag[64];
	uint32_t blocks;
	uint32_t mapped_blkaddr;          /* uniaddr */
	uint8_t reserved[56];
} __attribute__((packed));

struct erofs_inode_extended {         /* 64 bytes */
	uint16_t i_format;
	uint16_t i_xattr_icount;
	uint16_t i_mode;
	uint16_t i_nb;
	uint64_t i_size;
	uint32_t i_u;
	uint32_t i_ino;
	uint32_t i_uid;
	uint32_t i_gid;
	uint64_t i_mtime;
	uint32_t i_mtime_nsec;
	uint32_t i_nlink;
	uint8_t i_reserved2[16];
} __attribute__((packed));

struct erofs_inode_chunk_index {      /* 8 bytes */
	uint16_t startblk_hi;
	uint16_t device_id;
	uint32_t startblk_lo;
} __attribute__((packed));

struct erofs_xattr_ibody_header {     /* 12 bytes */
	uint32_t h_name_filter;
	uint8_t h_shared_count;
	uint8_t h_reserved2[7];
} __attribute__((packed));

struct erofs_xattr_entry {            /* 4 bytes + name + value */
	uint8_t e_name_len;
	uint8_t e_name_index;
	uint16_t e_value_size;
} __attribute__((packed));

struct erofs_dirent {                 /* 12 bytes */
	uint64_t nid;
	uint16_t nameoff;
	uint8_t file_type;
	uint8_t reserved;
} __attribute__((packed));

_Static_assert(sizeof(struct erofs_super_block) == 128, "superblock size");
_Static_assert(sizeof(struct erofs_deviceslot) == 128, "device slot size");
_Static_assert(sizeof(struct erofs_inode_extended) == 64, "inode size");
_Static_assert(sizeof(struct erofs_dirent) == 12, "dirent size");

#endif
