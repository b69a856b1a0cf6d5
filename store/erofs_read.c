/*
 * store/erofs_read.c - read EROFS images (shale/erofs.h): superblock, inodes,
 * data mapping (plain, inline, chunk-based incl. the extra device), xattrs.
 * Directory walking lives in erofs_read_dir.c.
 *
 * Every on-disk number is checked against the image (or device) size before
 * it is used, and every read is a bounded pread(): a corrupt or hostile image
 * gives SHL_EFORMAT, never an out-of-bounds access or a huge allocation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "store/erofs_fmt.h"
#include "store/erofs_read_int.h"
#include "util/crc32c.h"
#include "util/err.h"

#define INCOMPAT_SUPPORTED (0x1u | 0x2u | EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | \
			    EROFS_FEATURE_INCOMPAT_DEVICE_TABLE)

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

int shl_erofs__read(shl_erofs *e, int dev, void *buf, size_t len, uint64_t off)
{
	int fd = e->fd;
	uint64_t limit = e->img_size;
	uint8_t *p = buf;

	if (dev == 1) {
		if (e->dev_fd >= 0) {
			fd = e->dev_fd;
			limit = e->dev_size;
		} else {
			/* flatdev: the device follows the metadata inside the image */
			off += (uint64_t)e->uniaddr << e->blkbits;
		}
	} else if (dev != 0) {
		return shl_err(SHL_EFORMAT, "erofs: bad device id %d", dev);
	}
	if (off > limit || len > limit - off)
		return shl_err(SHL_EFORMAT, "erofs: read of %zu bytes at %llu beyond the end of %s",
			       len, (unsigned long long)off, dev ? "the device" : "the image");
	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shl_err_sys(SHL_EIO, "erofs: read");
		if (n == 0)
			return shl_err(SHL_EFORMAT, "erofs: unexpected end of file");
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int load_super(shl_erofs *e)
{
	uint8_t sb[128];
	uint32_t incompat;
	int rc;

	if ((rc = shl_erofs__read(e, 0, sb, sizeof(sb), EROFS_SUPER_OFFSET)))
		return shl_err_ctx(SHL_EFORMAT, "erofs: not an EROFS image (too small)");
	if (le32(sb) != EROFS_SUPER_MAGIC_V1)
		return shl_err(SHL_EFORMAT, "erofs: bad magic (not an EROFS image)");
	e->blkbits = sb[12];
	if (e->blkbits < 9 || e->blkbits > 12)
		return shl_err(SHL_EFORMAT, "erofs: unsupported block size 2^%u", e->blkbits);
	e->blksz = 1u << e->blkbits;
	e->feature_compat = le32(sb + 8);
	incompat = e->feature_incompat = le32(sb + 80);
	if (incompat & ~INCOMPAT_SUPPORTED)
		return shl_err(SHL_EUNSUPPORTED, "erofs: unsupported incompatible features 0x%x",
			       incompat & ~INCOMPAT_SUPPORTED);
	if (sb[13] != 0)
		return shl_err(SHL_EUNSUPPORTED, "erofs: superblock extension slots not supported");
	if (sb[90] != 0)
		return shl_err(SHL_EFORMAT, "erofs: dirblkbits must be 0");
	if (e->feature_compat & EROFS_FEATURE_COMPAT_SB_CHKSUM) {
		uint32_t len = e->blksz > EROFS_SUPER_OFFSET ? e->blksz - EROFS_SUPER_OFFSET : e->blksz;
		uint8_t *blk = malloc(len);
		uint32_t want = le32(sb + 4), got;
		if (!blk)
			return shl_err(SHL_ENOMEM, "out of memory");
		if ((rc = shl_erofs__read(e, 0, blk, len, EROFS_SUPER_OFFSET))) {
			free(blk);
			return rc;
		}
		memset(blk + 4, 0, 4);
		got = shl_crc32c(0xFFFFFFFFu, blk, len);
		free(blk);
		if (got != want)
			return shl_err(SHL_EFORMAT, "erofs: superblock checksum 0x%08x, expected 0x%08x", want, got);
	}
	e->root_nid = le16(sb + 14);
	e->inos = le64(sb + 16);
	e->epoch = le64(sb + 24);
	e->fixed_nsec = le32(sb + 32);
	e->blocks = le32(sb + 36);
	e->meta_blkaddr = le32(sb + 40);
	e->xattr_blkaddr = le32(sb + 44);
	memcpy(e->uuid, sb + 48, 16);
	memcpy(e->volume, sb + 64, 16);
	e->volume[16] = '\0';
	if (incompat & EROFS_FEATURE_INCOMPAT_DEVICE_TABLE) {
		uint8_t ds[128];
		e->extra_devices = le16(sb + 86);
		if (e->extra_devices > 1)
			return shl_err(SHL_EUNSUPPORTED, "erofs: %u extra devices (at most 1 supported)",
				       e->extra_devices);
		if (e->extra_devices == 1) {
			if ((rc = shl_erofs__read(e, 0, ds, sizeof(ds), (uint64_t)le16(sb + 88) * 128)))
				return rc;
			e->dev_blocks = le32(ds + 64);
			e->uniaddr = le32(ds + 68);
		}
	}
	return 0;
}

static int open_common(shl_erofs *e)
{
	struct stat st;

	if (fstat(e->fd, &st) != 0)
		return shl_err_sys(SHL_EIO, "erofs: stat image");
	e->img_size = (uint64_t)st.st_size;
	if (e->dev_fd >= 0) {
		if (fstat(e->dev_fd, &st) != 0)
			return shl_err_sys(SHL_EIO, "erofs: stat device");
		e->dev_size = (uint64_t)st.st_size;
	}
	return load_super(e);
}

int shl_erofs_open_fd(shl_erofs **out, int image_fd, int dev_fd)
{
	shl_erofs *e = calloc(1, sizeof(*e));
	int rc;

	*out = NULL;
	if (!e)
		return shl_err(SHL_ENOMEM, "out of memory");
	e->fd = image_fd;
	e->dev_fd = dev_fd;
	if ((rc = open_common(e))) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

int shl_erofs_open(shl_erofs **out, const char *image_path, const char *device_path)
{
	shl_erofs *e = calloc(1, sizeof(*e));
	int rc;

	*out = NULL;
	if (!e)
		return shl_err(SHL_ENOMEM, "out of memory");
	e->own_fds = 1;
	e->dev_fd = -1;
	e->fd = open(image_path, O_RDONLY | O_CLOEXEC);
	if (e->fd < 0) {
		rc = shl_err_sys(SHL_EIO, "open %s", image_path);
		free(e);
		return rc;
	}
	if (device_path && (e->dev_fd = open(device_path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = shl_err_sys(SHL_EIO, "open %s", device_path);
		shl_erofs_close(e);
		return rc;
	}
	if ((rc = open_common(e))) {
		shl_err_ctx(rc, "%s", image_path);
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
	if (e->own_fds) {
		if (e->fd >= 0)
			close(e->fd);
		if (e->dev_fd >= 0)
			close(e->dev_fd);
	}
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
	out->device_blocks = e->dev_blocks;
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

int shl_erofs__inode(shl_erofs *e, uint64_t nid, struct shl_erofs_inode *ino)
{
	uint8_t b[64];
	uint64_t base = (uint64_t)e->meta_blkaddr << e->blkbits;
	uint16_t fmt;
	int rc;

	memset(ino, 0, sizeof(*ino));
	if (nid > (e->img_size >> EROFS_ISLOTBITS))
		return shl_err(SHL_EFORMAT, "erofs nid %llu: beyond the image", (unsigned long long)nid);
	ino->nid = nid;
	ino->iloc = base + (nid << EROFS_ISLOTBITS);
	if ((rc = shl_erofs__read(e, 0, b, 32, ino->iloc)))
		return shl_err_ctx(rc, "erofs nid %llu", (unsigned long long)nid);
	fmt = le16(b);
	if (fmt & ~0x0Fu)
		return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: unsupported inode format 0x%x",
			       (unsigned long long)nid, fmt);
	ino->layout = (uint8_t)((fmt >> 1) & 7);
	ino->xattr_icount = le16(b + 2);
	ino->mode = le16(b + 4);
	if (fmt & 1) {
		if ((rc = shl_erofs__read(e, 0, b + 32, 32, ino->iloc + 32)))
			return shl_err_ctx(rc, "erofs nid %llu", (unsigned long long)nid);
		ino->isize = 64;
		ino->size = le64(b + 8);
		ino->i_u = le32(b + 16);
		ino->uid = le32(b + 24);
		ino->gid = le32(b + 28);
		ino->mtime = (int64_t)le64(b + 32);
		ino->mtime_nsec = le32(b + 40);
		ino->nlink = le32(b + 44);
	} else {
		ino->isize = 32;
		ino->nlink = le16(b + 6);
		ino->size = le32(b + 8);
		ino->mtime = (int64_t)(e->epoch + le32(b + 12));
		ino->mtime_nsec = e->fixed_nsec;
		ino->i_u = le32(b + 16);
		ino->uid = le16(b + 24);
		ino->gid = le16(b + 26);
	}
	ino->xattr_isize = ino->xattr_icount ? 12u + 4u * (ino->xattr_icount - 1u) : 0;
	switch (ino->mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK: case S_IFIFO: case S_IFSOCK:
		break;
	default:
		return shl_err(SHL_EFORMAT, "erofs nid %llu: bad file type in mode 0%o",
			       (unsigned long long)nid, ino->mode);
	}
	if (ino->layout != EROFS_INODE_FLAT_PLAIN && ino->layout != EROFS_INODE_FLAT_INLINE &&
	    ino->layout != EROFS_INODE_CHUNK_BASED)
		return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: data layout %u (compressed?) not supported",
			       (unsigned long long)nid, ino->layout);
	return 0;
}

int shl_erofs_getattr(shl_erofs *e, uint64_t nid, shl_erofs_stat *st)
{
	struct shl_erofs_inode ino;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc)
		return rc;
	memset(st, 0, sizeof(*st));
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
		uint32_t d = ino.i_u;
		st->rdev_major = (d & 0xfff00) >> 8;
		st->rdev_minor = (d & 0xff) | ((d >> 12) & 0xfff00);
	}
	return 0;
}

/* ---- data mapping --------------------------------------------------------- */

/* Map file offset `off` of `ino` to (device, physical offset, contiguous
 * length). dev = -1 means a hole of `len` bytes. */
int shl_erofs__map(shl_erofs *e, const struct shl_erofs_inode *ino, uint64_t off,
		   int *dev, uint64_t *pa, uint64_t *len)
{
	uint64_t bsz = e->blksz;

	if (off >= ino->size)
		return shl_err(SHL_EINVAL, "erofs nid %llu: map beyond the end", (unsigned long long)ino->nid);
	if (ino->layout == EROFS_INODE_FLAT_PLAIN || ino->layout == EROFS_INODE_FLAT_INLINE) {
		uint64_t nblocks = (ino->size + bsz - 1) / bsz;
		uint64_t full = ino->layout == EROFS_INODE_FLAT_INLINE ? nblocks - 1 : nblocks;
		if (off < full * bsz) {
			*len = full * bsz - off;
			if (off + *len > ino->size)
				*len = ino->size - off;
			if (ino->i_u == EROFS_NULL_ADDR) {
				*dev = -1;
				*pa = 0;
				return 0;
			}
			*dev = 0;
			*pa = (uint64_t)ino->i_u * bsz + off;
			return 0;
		}
		/* the inline tail, right after the inode and its xattrs */
		uint64_t tail = ino->iloc + ino->isize + ino->xattr_isize;
		uint64_t tlen = ino->size - full * bsz;
		if ((tail % bsz) + tlen > bsz)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: inline data crosses a block boundary",
				       (unsigned long long)ino->nid);
		*dev = 0;
		*pa = tail + (off - full * bsz);
		*len = ino->size - off;
		return 0;
	}
	/* chunk-based */
	{
		unsigned fmt = ino->i_u & 0xffff;
		unsigned cbits = e->blkbits + (fmt & 0x1f);
		unsigned unit = (fmt & EROFS_CHUNK_FORMAT_INDEXES) ? 8 : 4;
		uint64_t nr = off >> cbits, csize = (uint64_t)1 << cbits;
		uint64_t pos = EROFS_ALIGN(ino->iloc + ino->isize + ino->xattr_isize, unit) + unit * nr;
		uint64_t within = off & (csize - 1);
		uint8_t b[8];
		uint32_t blk;
		int rc;

		if (cbits > 63)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: bad chunk size", (unsigned long long)ino->nid);
		if ((rc = shl_erofs__read(e, 0, b, unit, pos)))
			return shl_err_ctx(rc, "erofs nid %llu: chunk %llu", (unsigned long long)ino->nid,
					   (unsigned long long)nr);
		*len = csize - within;
		if (off + *len > ino->size)
			*len = ino->size - off;
		if (unit == 8) {
			unsigned devid = le16(b + 2);
			blk = le32(b + 4);
			if (blk == EROFS_NULL_ADDR) {
				*dev = -1;
				*pa = 0;
				return 0;
			}
			if (devid > e->extra_devices)
				return shl_err(SHL_EFORMAT, "erofs nid %llu: chunk on device %u of %u",
					       (unsigned long long)ino->nid, devid, e->extra_devices);
			*dev = (int)devid;
			*pa = (uint64_t)blk * bsz + within;
			return 0;
		}
		blk = le32(b);
		if (blk == EROFS_NULL_ADDR) {
			*dev = -1;
			*pa = 0;
			return 0;
		}
		if (e->extra_devices && blk >= e->uniaddr && blk - e->uniaddr < e->dev_blocks) {
			*dev = 1;
			*pa = (uint64_t)(blk - e->uniaddr) * bsz + within;
		} else {
			*dev = 0;
			*pa = (uint64_t)blk * bsz + within;
		}
		return 0;
	}
}

int shl_erofs__pread_inode(shl_erofs *e, const struct shl_erofs_inode *ino, void *buf, size_t len,
			   uint64_t off, size_t *got)
{
	uint8_t *p = buf;
	size_t done = 0;
	int rc;

	if (off >= ino->size) {
		*got = 0;
		return 0;
	}
	if (len > ino->size - off)
		len = (size_t)(ino->size - off);
	while (done < len) {
		int dev;
		uint64_t pa, run;
		if ((rc = shl_erofs__map(e, ino, off + done, &dev, &pa, &run)))
			return rc;
		if (run > len - done)
			run = len - done;
		if (dev < 0)
			memset(p + done, 0, run);
		else if ((rc = shl_erofs__read(e, dev, p + done, run, pa)))
			return shl_err_ctx(rc, "erofs nid %llu", (unsigned long long)ino->nid);
		done += run;
	}
	*got = done;
	return 0;
}

int shl_erofs_pread(shl_erofs *e, uint64_t nid, void *buf, size_t len, uint64_t off, size_t *got)
{
	struct shl_erofs_inode ino;
	int rc = shl_erofs__inode(e, nid, &ino);

	*got = 0;
	if (rc)
		return rc;
	if (!S_ISREG(ino.mode) && !S_ISLNK(ino.mode) && !S_ISDIR(ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: no data", (unsigned long long)nid);
	return shl_erofs__pread_inode(e, &ino, buf, len, off, got);
}

int shl_erofs_readlink(shl_erofs *e, uint64_t nid, char *buf, size_t bufsize)
{
	struct shl_erofs_inode ino;
	size_t got;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc)
		return rc;
	if (!S_ISLNK(ino.mode))
		return shl_err(SHL_EINVAL, "erofs nid %llu: not a symlink", (unsigned long long)nid);
	if (ino.size >= bufsize)
		return shl_err(SHL_ELIMIT, "erofs nid %llu: symlink target of %llu bytes too long",
			       (unsigned long long)nid, (unsigned long long)ino.size);
	if ((rc = shl_erofs__pread_inode(e, &ino, buf, (size_t)ino.size, 0, &got)))
		return rc;
	buf[got] = '\0';
	return 0;
}

int shl_erofs_extents(shl_erofs *e, uint64_t nid, shl_erofs_extent_fn fn, void *ctx)
{
	struct shl_erofs_inode ino;
	uint64_t off = 0;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc)
		return rc;
	while (off < ino.size) {
		int dev;
		uint64_t pa, run;
		if ((rc = shl_erofs__map(e, &ino, off, &dev, &pa, &run)))
			return rc;
		if ((rc = fn(ctx, off, dev, pa, run)))
			return rc;
		off += run;
	}
	return 0;
}

/* ---- xattrs --------------------------------------------------------------- */

static const char *xattr_prefix(unsigned index)
{
	switch (index) {
	case 1: return "user.";
	case 2: return "system.posix_acl_access";
	case 3: return "system.posix_acl_default";
	case 4: return "trusted.";
	case 5: return "lustre.";
	case 6: return "security.";
	default: return NULL;
	}
}

/* One xattr entry at `pos`; returns its padded size in *adv. */
static int xattr_entry(shl_erofs *e, uint64_t pos, uint64_t end, shl_erofs_xattr_fn fn, void *ctx,
		       uint64_t *adv, uint64_t nid)
{
	uint8_t h[4];
	char name[300];
	uint8_t *val;
	const char *pfx;
	size_t pl;
	uint32_t nl, vl;
	int rc;

	if (pos + 4 > end)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: xattr header beyond its area", (unsigned long long)nid);
	if ((rc = shl_erofs__read(e, 0, h, 4, pos)))
		return rc;
	nl = h[0];
	vl = le16(h + 2);
	if (pos + 4 + nl + vl > end)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: xattr beyond its area", (unsigned long long)nid);
	pfx = xattr_prefix(h[1]);
	if (!pfx)
		return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: xattr name index %u not supported",
			       (unsigned long long)nid, h[1]);
	pl = strlen(pfx);
	memcpy(name, pfx, pl);
	if ((rc = shl_erofs__read(e, 0, name + pl, nl, pos + 4)))
		return rc;
	name[pl + nl] = '\0';
	val = malloc(vl ? vl : 1);
	if (!val)
		return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = shl_erofs__read(e, 0, val, vl, pos + 4 + nl)) == 0)
		rc = fn(ctx, name, val, vl);
	free(val);
	*adv = EROFS_ALIGN(4 + nl + vl, 4);
	return rc;
}

int shl_erofs_xattrs(shl_erofs *e, uint64_t nid, shl_erofs_xattr_fn fn, void *ctx)
{
	struct shl_erofs_inode ino;
	uint8_t hdr[12];
	uint64_t pos, end;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc || !ino.xattr_isize)
		return rc;
	pos = ino.iloc + ino.isize;
	end = pos + ino.xattr_isize;
	if ((rc = shl_erofs__read(e, 0, hdr, 12, pos)))
		return rc;
	if (12u + 4u * hdr[4] > ino.xattr_isize)
		return shl_err(SHL_EFORMAT, "erofs nid %llu: too many shared xattrs", (unsigned long long)nid);
	for (unsigned i = 0; i < hdr[4]; i++) {
		uint8_t idb[4];
		uint64_t adv, spos;
		if ((rc = shl_erofs__read(e, 0, idb, 4, pos + 12 + 4 * i)))
			return rc;
		spos = ((uint64_t)e->xattr_blkaddr << e->blkbits) + (uint64_t)le32(idb) * 4;
		if ((rc = xattr_entry(e, spos, e->img_size, fn, ctx, &adv, nid)))
			return rc;
	}
	pos += 12 + 4u * hdr[4];
	while (pos < end) {
		uint64_t adv;
		if ((rc = xattr_entry(e, pos, end, fn, ctx, &adv, nid)))
			return rc;
		pos += adv;
	}
	return 0;
}
