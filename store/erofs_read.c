/*
 * store/erofs_read.c - read EROFS images (shale/erofs.h): superblock and
 * device table, inodes, and file data (FLAT_PLAIN, FLAT_INLINE, CHUNK_BASED
 * with 4-byte block maps or 8-byte chunk indexes, extra devices either as a
 * separate file or "flatdev" inside the primary). Directories live in
 * erofs_read_dir.c, xattrs in erofs_read_xattr.c.
 *
 * Every on-disk number is checked before use and every read is a bounded
 * pread() against the image (or device) size: a corrupt or hostile image gives
 * SHL_EFORMAT (or SHL_EUNSUPPORTED for valid features we don't read, such as
 * compressed data), never an out-of-bounds access or a huge allocation.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/erofs_read_int.h"
#include "util/crc32c.h"
#include "util/err.h"

/* Incompat features we can read. The compression-only ones change nothing for
 * uncompressed inodes: their metadata stays readable and reading data of a
 * compressed inode gives SHL_EUNSUPPORTED. 48BIT and METABOX change the
 * metadata itself and are refused. */
#define INCOMPAT_SUPPORTED (ERD_INCOMPAT_ZERO_PADDING | ERD_INCOMPAT_COMPR_CFGS | \
			    ERD_INCOMPAT_CHUNKED_FILE | ERD_INCOMPAT_DEVICE_TABLE | \
			    ERD_INCOMPAT_ZTAILPACKING | ERD_INCOMPAT_FRAGMENTS |   \
			    ERD_INCOMPAT_XATTR_PREFIXES)

#define NID(n) ((unsigned long long)(n))

/* A mapped piece of file data: dev -1 is a hole. */
struct erd_map {
	int dev;
	uint64_t pa, len;
};

int shl_erofs__read(shl_erofs *e, int dev, void *buf, size_t len, uint64_t off)
{
	int fd = e->fd;
	uint64_t limit = e->img_size;
	uint8_t *p = buf;

	if (dev < 0 || dev > (int)e->extra_devices)
		return shl_err(SHL_EFORMAT, "erofs: no device %d", dev);
	if (dev > 0) {
		if (e->dev_fd >= 0) {
			if (dev != 1)
				return shl_err(SHL_EUNSUPPORTED,
					       "erofs: data on device %d, but only one device file was given", dev);
			fd = e->dev_fd;
			limit = e->dev_size;
		} else {
			/* flatdev: the extra device sits inside the primary at uniaddr */
			uint64_t base = e->devs[dev - 1].uniaddr << e->blkbits;
			if (off > UINT64_MAX - base)
				return shl_err(SHL_EFORMAT, "erofs: device %d offset out of range", dev);
			off += base;
		}
	}
	if (off > limit || len > limit - off)
		return shl_err(SHL_EFORMAT, "erofs: %zu bytes at offset %llu lie beyond the end of the %s (%llu bytes)",
			       len, (unsigned long long)off,
			       fd == e->fd ? "image" : "device file", (unsigned long long)limit);
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shl_err_sys(SHL_EIO, "erofs: read at %llu", (unsigned long long)off);
		if (n == 0)
			return shl_err(SHL_EIO, "erofs: unexpected end of file at %llu (file shrank?)",
				       (unsigned long long)off);
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* ---- superblock ----------------------------------------------------------- */

static int check_sb_csum(shl_erofs *e, const uint8_t *sb)
{
	uint32_t len = e->blksz > ERD_SB_OFFSET ? e->blksz - ERD_SB_OFFSET : e->blksz;
	uint32_t want = erd_le32(sb + 4), got;
	uint8_t *blk = malloc(len);
	int rc;

	if (!blk)
		return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = shl_erofs__read(e, 0, blk, len, ERD_SB_OFFSET))) {
		free(blk);
		return shl_err_ctx(rc, "erofs: superblock checksum");
	}
	memset(blk + 4, 0, 4);
	got = shl_crc32c(0xFFFFFFFFu, blk, len);
	free(blk);
	if (got != want)
		return shl_err(SHL_EFORMAT, "erofs: superblock checksum 0x%08x, computed 0x%08x", want, got);
	return 0;
}

static int load_devices(shl_erofs *e, const uint8_t *sb)
{
	uint64_t slotoff = (uint64_t)erd_le16(sb + 88) * 128;
	uint8_t *slots;
	size_t n = erd_le16(sb + 86);
	unsigned p2 = 1;
	int rc;

	if (!n)
		return 0;
	if (n > ERD_MAX_DEVICES)
		return shl_err(SHL_EUNSUPPORTED, "erofs: %zu extra devices (at most %u supported)",
			       n, ERD_MAX_DEVICES);
	slots = malloc(n * 128);
	e->devs = calloc(n, sizeof(*e->devs));
	if (!slots || !e->devs) {
		free(slots);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	if ((rc = shl_erofs__read(e, 0, slots, n * 128, slotoff))) {
		free(slots);
		return shl_err_ctx(rc, "erofs: device table");
	}
	for (size_t i = 0; i < n; i++) {
		/* the _hi halves only count with 48BIT, which we refuse */
		e->devs[i].blocks = erd_le32(slots + i * 128 + 64);
		e->devs[i].uniaddr = erd_le32(slots + i * 128 + 68);
	}
	free(slots);
	e->extra_devices = (uint16_t)n;
	/* the kernel masks chunk-index device ids with this */
	while (p2 < n + 1)
		p2 <<= 1;
	e->devid_mask = (uint16_t)(p2 - 1);
	return 0;
}

static int load_super(shl_erofs *e)
{
	uint8_t sb[128];
	struct erd_inode root;
	uint32_t bad;
	int rc;

	if (e->img_size < ERD_SB_OFFSET + sizeof(sb))
		return shl_err(SHL_EFORMAT, "erofs: not an EROFS image (%llu bytes, too small)",
			       (unsigned long long)e->img_size);
	if ((rc = shl_erofs__read(e, 0, sb, sizeof(sb), ERD_SB_OFFSET)))
		return rc;
	if (erd_le32(sb) != ERD_MAGIC)
		return shl_err(SHL_EFORMAT, "erofs: bad magic 0x%08x (not an EROFS image)", erd_le32(sb));
	e->blkbits = sb[12];
	if (e->blkbits < 9 || e->blkbits > 12)
		return shl_err(SHL_EUNSUPPORTED, "erofs: block size 2^%u not supported (512..4096)", e->blkbits);
	e->blksz = 1u << e->blkbits;
	e->feature_compat = erd_le32(sb + 8);
	e->feature_incompat = erd_le32(sb + 80);
	bad = e->feature_incompat & ~INCOMPAT_SUPPORTED;
	if (bad)
		return shl_err(SHL_EUNSUPPORTED, "erofs: unsupported incompatible features 0x%x", bad);
	if (sb[90] != 0)
		return shl_err(SHL_EFORMAT, "erofs: dirblkbits %u (must be 0)", sb[90]);
	/* extension slots hold 48BIT/METABOX fields only; the kernel caps them */
	if (128u + 16u * sb[13] > 4096u - ERD_SB_OFFSET)
		return shl_err(SHL_EFORMAT, "erofs: %u superblock extension slots", sb[13]);
	if ((e->feature_compat & ERD_COMPAT_SB_CHKSUM) && (rc = check_sb_csum(e, sb)))
		return rc;
	e->root_nid = erd_le16(sb + 14);
	e->inos = erd_le64(sb + 16);
	e->epoch = erd_le64(sb + 24);
	e->fixed_nsec = erd_le32(sb + 32);
	e->blocks = erd_le32(sb + 36);
	e->meta_blkaddr = erd_le32(sb + 40);
	e->xattr_blkaddr = erd_le32(sb + 44);
	memcpy(e->uuid, sb + 48, 16);
	memcpy(e->volume, sb + 64, 16);
	e->volume[16] = '\0';
	e->packed_nid = erd_le64(sb + 96);
	if ((e->feature_incompat & ERD_INCOMPAT_DEVICE_TABLE) && (rc = load_devices(e, sb)))
		return rc;
	if (e->feature_incompat & ERD_INCOMPAT_XATTR_PREFIXES) {
		e->xprefix_count = sb[91];
		e->xprefix_start = erd_le32(sb + 92);
	}
	if ((rc = shl_erofs__inode(e, e->root_nid, &root)))
		return shl_err_ctx(rc, "erofs: root directory");
	if (!S_ISDIR(root.mode))
		return shl_err(SHL_EFORMAT, "erofs: root nid %llu is not a directory (mode 0%o)",
			       NID(e->root_nid), root.mode);
	return shl_erofs__load_xprefixes(e);
}

static int fd_size(int fd, uint64_t *out, const char *what)
{
	struct stat st;
	off_t end;

	if (fstat(fd, &st) != 0)
		return shl_err_sys(SHL_EIO, "erofs: stat %s", what);
	if (S_ISREG(st.st_mode)) {
		*out = (uint64_t)st.st_size;
		return 0;
	}
	if (!S_ISBLK(st.st_mode))
		return shl_err(SHL_EINVAL, "erofs: %s is neither a regular file nor a block device", what);
	end = lseek(fd, 0, SEEK_END);
	if (end < 0)
		return shl_err_sys(SHL_EIO, "erofs: size of %s", what);
	*out = (uint64_t)end;
	return 0;
}

static int open_common(shl_erofs *e)
{
	int rc;

	if ((rc = fd_size(e->fd, &e->img_size, "the image")))
		return rc;
	if (e->dev_fd >= 0 && (rc = fd_size(e->dev_fd, &e->dev_size, "the device file")))
		return rc;
	return load_super(e);
}

static shl_erofs *alloc_handle(void)
{
	shl_erofs *e = calloc(1, sizeof(*e));

	if (e) {
		e->fd = -1;
		e->dev_fd = -1;
	}
	return e;
}

int shl_erofs_open_fd(shl_erofs **out, int image_fd, int dev_fd)
{
	shl_erofs *e;
	int rc;

	*out = NULL;
	if (image_fd < 0)
		return shl_err(SHL_EINVAL, "erofs: bad image fd");
	if (!(e = alloc_handle()))
		return shl_err(SHL_ENOMEM, "out of memory");
	e->fd = image_fd;
	e->dev_fd = dev_fd < 0 ? -1 : dev_fd;
	if ((rc = open_common(e))) {
		shl_erofs_close(e);
		return rc;
	}
	*out = e;
	return 0;
}

int shl_erofs_open(shl_erofs **out, const char *image_path, const char *device_path)
{
	shl_erofs *e;
	int rc;

	*out = NULL;
	if (!(e = alloc_handle()))
		return shl_err(SHL_ENOMEM, "out of memory");
	e->fd = open(image_path, O_RDONLY | O_CLOEXEC);
	if (e->fd < 0) {
		rc = shl_err_sys(SHL_EIO, "open %s", image_path);
		goto out;
	}
	e->own_fd = 1;
	if (device_path) {
		e->dev_fd = open(device_path, O_RDONLY | O_CLOEXEC);
		if (e->dev_fd < 0) {
			rc = shl_err_sys(SHL_EIO, "open %s", device_path);
			goto out;
		}
		e->own_dev = 1;
	}
	if ((rc = open_common(e)))
		shl_err_ctx(rc, "%s", image_path);
out:
	if (rc) {
		shl_erofs_close(e);
		return rc;
	}
	*out = e;
	return 0;
}

void shl_erofs_close(shl_erofs *e)
{
	if (!e)
		return;
	if (e->own_fd && e->fd >= 0)
		close(e->fd);
	if (e->own_dev && e->dev_fd >= 0)
		close(e->dev_fd);
	free(e->devs);
	free(e->xprefixes);
	free(e);
}

void shl_erofs_get_info(const shl_erofs *e, shl_erofs_info *out)
{
	memset(out, 0, sizeof(*out));
	out->block_size = e->blksz;
	out->root_nid = e->root_nid;
	out->inodes = e->inos;
	out->blocks = e->blocks;
	out->extra_devices = e->extra_devices;
	out->device_blocks = e->extra_devices ? e->devs[0].blocks : 0;
	out->feature_compat = e->feature_compat;
	out->feature_incompat = e->feature_incompat;
	memcpy(out->uuid, e->uuid, 16);
	memcpy(out->volume, e->volume, sizeof(out->volume));
}

uint64_t shl_erofs_root(const shl_erofs *e)
{
	return e->root_nid;
}

/* ---- inodes --------------------------------------------------------------- */

int shl_erofs__inode(shl_erofs *e, uint64_t nid, struct erd_inode *ino)
{
	uint8_t b[64];
	uint64_t base = (uint64_t)e->meta_blkaddr << e->blkbits;
	unsigned cfmt;
	int rc;

	memset(ino, 0, sizeof(*ino));
	ino->nid = nid;
	if (base > e->img_size || nid > (e->img_size - base) >> ERD_ISLOTBITS)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: beyond the end of the image", NID(nid));
	ino->iloc = base + (nid << ERD_ISLOTBITS);
	/* one read for both inode sizes where the image allows */
	if ((rc = shl_erofs__read(e, 0, b, e->img_size - ino->iloc >= 64 ? 64 : 32, ino->iloc)))
		return shl_err_ctx(rc, "erofs nid %llu", NID(nid));
	ino->format = erd_le16(b);
	if (ino->format & ~0x1Fu)
		return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: unsupported inode format 0x%x",
			       NID(nid), ino->format);
	ino->layout = (uint8_t)((ino->format >> 1) & 7);
	ino->mode = erd_le16(b + 4);
	ino->i_u = erd_le32(b + 16);
	if (ino->format & 1) {
		if (e->img_size - ino->iloc < 64)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: inode beyond the end of the image", NID(nid));
		ino->isize = 64;
		ino->size = erd_le64(b + 8);
		ino->uid = erd_le32(b + 24);
		ino->gid = erd_le32(b + 28);
		ino->mtime = (int64_t)erd_le64(b + 32);
		ino->mtime_nsec = erd_le32(b + 40);
		ino->nlink = erd_le32(b + 44);
	} else {
		ino->isize = 32;
		/* bit 4 (NLINK_1): i_nb isn't a link count */
		ino->nlink = (ino->format & 0x10) ? 1 : erd_le16(b + 6);
		ino->size = erd_le32(b + 8);
		/* 6.15+ semantics: seconds relative to the epoch (0 from older mkfs) */
		ino->mtime = (int64_t)(e->epoch + erd_le32(b + 12));
		ino->mtime_nsec = e->fixed_nsec;
		ino->uid = erd_le16(b + 24);
		ino->gid = erd_le16(b + 26);
	}
	{
		uint16_t icount = erd_le16(b + 2);
		ino->xattr_isize = icount ? 12u + 4u * (icount - 1u) : 0;
	}
	if (ino->mtime_nsec >= 1000000000u)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: mtime nanoseconds %u out of range",
			       NID(nid), ino->mtime_nsec);
	switch (ino->mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		break;
	default:
		return shl_err(SHL_EFORMAT, "erofs nid %llu: bad file type in mode 0%o", NID(nid), ino->mode);
	}
	if (ino->layout > ERD_LAYOUT_CHUNK_BASED)
		return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: unknown data layout %u", NID(nid), ino->layout);
	if (ino->layout == ERD_LAYOUT_CHUNK_BASED) {
		cfmt = ino->i_u & 0xffffu;
		if (cfmt & ERD_CHUNK_48BIT)
			return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: 48-bit chunk format not supported", NID(nid));
		if (cfmt & ~(ERD_CHUNK_BLKBITS_MASK | ERD_CHUNK_INDEXES))
			return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: unknown chunk format 0x%x", NID(nid), cfmt);
	}
	return 0;
}

int shl_erofs_getattr(shl_erofs *e, uint64_t nid, shl_erofs_stat *st)
{
	struct erd_inode ino;
	int rc = shl_erofs__inode(e, nid, &ino);

	memset(st, 0, sizeof(*st));
	if (rc)
		return rc;
	st->nid = nid;
	st->mode = ino.mode;
	st->uid = ino.uid;
	st->gid = ino.gid;
	st->nlink = ino.nlink;
	st->size = ino.size;
	st->mtime = ino.mtime;
	st->mtime_nsec = ino.mtime_nsec;
	st->layout = ino.layout;
	if (S_ISCHR(ino.mode) || S_ISBLK(ino.mode)) {
		/* new_encode_dev() */
		uint32_t d = ino.i_u;
		st->rdev_major = (d & 0xfff00u) >> 8;
		st->rdev_minor = (d & 0xffu) | ((d >> 12) & 0xfff00u);
	}
	return 0;
}

/* ---- data mapping --------------------------------------------------------- */

static int map_flat(shl_erofs *e, const struct erd_inode *ino, uint64_t off, struct erd_map *m)
{
	uint64_t bsz = e->blksz;
	uint64_t nblocks = ino->size / bsz + (ino->size % bsz != 0);
	uint64_t full = ino->layout == ERD_LAYOUT_FLAT_INLINE ? nblocks - 1 : nblocks;
	uint64_t tail_start, pos;

	if (off / bsz < full) {
		/* full blocks; for FLAT_PLAIN that is the whole file */
		uint64_t end = full < nblocks ? full * bsz : ino->size;
		uint64_t base = (uint64_t)ino->i_u << e->blkbits;
		m->len = end - off;
		if (ino->i_u == ERD_NULL_ADDR) {
			m->dev = -1;
			m->pa = 0;
			return 0;
		}
		if (off > UINT64_MAX - base)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: data address out of range", NID(ino->nid));
		m->dev = 0;
		m->pa = base + off;
		return 0;
	}
	/* the FLAT_INLINE tail, right after the inode and its xattrs, and
	 * entirely inside that block */
	tail_start = full * bsz;
	pos = ino->iloc + ino->isize + ino->xattr_isize;
	if ((pos & (bsz - 1)) + (ino->size - tail_start) > bsz)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: inline data crosses block boundary", NID(ino->nid));
	m->dev = 0;
	m->pa = pos + (off - tail_start);
	m->len = ino->size - off;
	return 0;
}

static int map_chunk(shl_erofs *e, const struct erd_inode *ino, uint64_t off, struct erd_map *m)
{
	unsigned cfmt = ino->i_u & 0xffffu;
	unsigned cbits = e->blkbits + (cfmt & ERD_CHUNK_BLKBITS_MASK);
	unsigned unit = (cfmt & ERD_CHUNK_INDEXES) ? 8 : 4;
	uint64_t nr = off >> cbits, within = off & (((uint64_t)1 << cbits) - 1);
	uint64_t start = ino->iloc + ino->isize + ino->xattr_isize;
	uint64_t pos = (start + unit - 1) / unit * unit + unit * nr;
	uint64_t blk;
	uint8_t b[8];
	int rc;

	if ((rc = shl_erofs__read(e, 0, b, unit, pos)))
		return shl_err_ctx(rc, "erofs nid %llu: chunk %llu", NID(ino->nid), (unsigned long long)nr);
	m->len = ((uint64_t)1 << cbits) - within;
	if (m->len > ino->size - off)
		m->len = ino->size - off;
	m->pa = 0;
	if (unit == 8) {
		/* startblk_hi (b[0..1]) only counts with 48BIT */
		unsigned devid = erd_le16(b + 2) & e->devid_mask;
		blk = erd_le32(b + 4);
		if (blk == ERD_NULL_ADDR) {
			m->dev = -1;
			return 0;
		}
		if (devid > e->extra_devices)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: chunk %llu on device %u of %u",
				       NID(ino->nid), (unsigned long long)nr, devid, e->extra_devices);
		m->dev = (int)devid;
		m->pa = (blk << e->blkbits) + within;
		return 0;
	}
	blk = erd_le32(b);
	if (blk == ERD_NULL_ADDR) {
		m->dev = -1;
		return 0;
	}
	/* unified address space: a range [uniaddr, uniaddr+blocks) is device k */
	m->dev = 0;
	for (unsigned k = 0; k < e->extra_devices; k++) {
		const struct erd_device *d = &e->devs[k];
		if (d->uniaddr && blk >= d->uniaddr && blk - d->uniaddr < d->blocks) {
			m->dev = (int)k + 1;
			blk -= d->uniaddr;
			break;
		}
	}
	m->pa = (blk << e->blkbits) + within;
	return 0;
}

/* Map file offset `off` (< size) of `ino`. */
static int map_at(shl_erofs *e, const struct erd_inode *ino, uint64_t off, struct erd_map *m)
{
	switch (ino->layout) {
	case ERD_LAYOUT_FLAT_PLAIN:
	case ERD_LAYOUT_FLAT_INLINE:
		return map_flat(e, ino, off, m);
	case ERD_LAYOUT_CHUNK_BASED:
		return map_chunk(e, ino, off, m);
	default:
		return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: compressed data (layout %u) is not supported",
			       NID(ino->nid), ino->layout);
	}
}

int shl_erofs__pread_inode(shl_erofs *e, const struct erd_inode *ino, void *buf, size_t len,
			   uint64_t off, size_t *got)
{
	uint8_t *p = buf;
	size_t done = 0;
	int rc;

	*got = 0;
	if (off >= ino->size || !len)
		return 0;
	if (len > ino->size - off)
		len = (size_t)(ino->size - off);
	while (done < len) {
		struct erd_map m;
		uint64_t run;
		if ((rc = map_at(e, ino, off + done, &m)))
			return rc;
		run = m.len < len - done ? m.len : len - done;
		if (m.dev < 0)
			memset(p + done, 0, run);
		else if ((rc = shl_erofs__read(e, m.dev, p + done, run, m.pa)))
			return shl_err_ctx(rc, "erofs nid %llu: data at %llu", NID(ino->nid),
					   (unsigned long long)(off + done));
		done += run;
	}
	*got = done;
	return 0;
}

int shl_erofs_pread(shl_erofs *e, uint64_t nid, void *buf, size_t len, uint64_t off, size_t *got)
{
	struct erd_inode ino;
	int rc = shl_erofs__inode(e, nid, &ino);

	*got = 0;
	if (rc)
		return rc;
	if (!S_ISREG(ino.mode) && !S_ISLNK(ino.mode) && !S_ISDIR(ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: not a file (mode 0%o)", NID(nid), ino.mode);
	return shl_erofs__pread_inode(e, &ino, buf, len, off, got);
}

int shl_erofs_readlink(shl_erofs *e, uint64_t nid, char *buf, size_t bufsize)
{
	struct erd_inode ino;
	size_t got;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc)
		return rc;
	if (!S_ISLNK(ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: not a symlink", NID(nid));
	if (ino.size >= bufsize)
		return shl_err(SHL_ELIMIT, "erofs nid %llu: symlink target of %llu bytes too long",
			       NID(nid), (unsigned long long)ino.size);
	if ((rc = shl_erofs__pread_inode(e, &ino, buf, (size_t)ino.size, 0, &got)))
		return rc;
	buf[got] = '\0';
	if (memchr(buf, '\0', got))
		return shl_err(SHL_EFORMAT, "erofs nid %llu: NUL byte in symlink target", NID(nid));
	return 0;
}

int shl_erofs_extents(shl_erofs *e, uint64_t nid, shl_erofs_extent_fn fn, void *ctx)
{
	struct erd_inode ino;
	struct erd_map cur = { -1, 0, 0 };
	uint64_t off = 0, cur_off = 0;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc)
		return rc;
	if (!S_ISREG(ino.mode) && !S_ISLNK(ino.mode) && !S_ISDIR(ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: not a file (mode 0%o)", NID(nid), ino.mode);
	/* report maximal runs: neighbouring pieces that continue each other
	 * on the same device (or are both holes) are merged */
	while (off < ino.size) {
		struct erd_map m;
		if ((rc = map_at(e, &ino, off, &m)))
			return rc;
		if (cur.len && m.dev == cur.dev && (m.dev < 0 || m.pa == cur.pa + cur.len)) {
			cur.len += m.len;
		} else {
			if (cur.len && (rc = fn(ctx, cur_off, cur.dev, cur.pa, cur.len)))
				return rc;
			cur = m;
			cur_off = off;
		}
		off += m.len;
	}
	if (cur.len)
		rc = fn(ctx, cur_off, cur.dev, cur.pa, cur.len);
	return rc;
}
