/*
 * run/squash_ext4.c - write a merged file tree as an ext4 image through
 * libext2fs (the only file that includes <ext2fs/ext2fs.h>): extents, 256-byte
 * inodes with nanosecond times, a journal, xattrs (POSIX ACLs are converted
 * to ext4's on-disk form by libext2fs), hardlinks, devices, symlinks.
 * File data is copied from the layer tars. The image is sized from the tree
 * with headroom unless a size is given.
 */
#include <errno.h>
#include <fcntl.h>
#include <ext2fs/ext2fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run/squash_int.h"
#include "util/dio.h"
#include "util/err.h"

#define BLK 4096u

struct ectx {
	ext2_filsys fs;
	shl_fstree *t;
	const int *fds;
	uint32_t nsrc;
	char *buf;          /* 1 MiB */
	int out_fd;
	int direct;         /* file data through util/dio.c */
	shl_dio *dio;       /* opened at the first data block */
	/* direct mode: file data is written after the tree, in tar order */
	struct deferred *dq;
	size_t ndq, capdq;
	/* a forward-moving window over one tar, read with O_DIRECT */
	int win_src, win_dfd;
	uint8_t *win;
	uint64_t win_off, win_len;
	ext2_ino_t lf;      /* lost+found, made like mke2fs does */
};

struct deferred {
	ext2_ino_t ino;
	uint32_t node;      /* fstree inode */
};

#define WIN_SZ (4u << 20)

/* Read `len` bytes at `off` of source tar `src` (offsets only grow within a
 * tar, so a window read ahead with O_DIRECT serves them: no page-cache fill
 * of the stored tars, which a direct-I/O load leaves cold). */
static int win_read(struct ectx *c, uint32_t src, uint8_t *dst, uint64_t len, uint64_t off)
{
	int fd = c->fds[src < c->nsrc ? src : 0];

	while (!c->win && len) {
		ssize_t n = pread(fd, dst, (size_t)len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? shl_err_sys(SHL_EIO, "read layer data") : shl_err(SHL_EFORMAT, "layer tar too short");
		dst += n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	while (len) {
		if (c->win_src != (int)src || off < c->win_off || off >= c->win_off + c->win_len) {
			uint64_t want = off & ~(uint64_t)4095;
			ssize_t n;
			if (c->win_src != (int)src) {
				if (c->win_dfd >= 0)
					close(c->win_dfd);
				c->win_dfd = shl_dio_reader(fd);
				c->win_src = (int)src;
			}
			n = shl_dio_pread(fd, c->win_dfd, c->win, WIN_SZ, want);
			if (n < 0)
				return shl_err_sys(SHL_EIO, "read layer data");
			c->win_off = want;
			c->win_len = (uint64_t)n;
			if (off >= c->win_off + c->win_len)
				return shl_err(SHL_EFORMAT, "layer tar too short");
		}
		uint64_t k = c->win_off + c->win_len - off;
		if (k > len)
			k = len;
		memcpy(dst, c->win + (off - c->win_off), (size_t)k);
		dst += k;
		off += k;
		len -= k;
	}
	return 0;
}

static int e2err(errcode_t e, const char *what)
{
	if (e == EXT2_ET_BLOCK_ALLOC_FAIL || e == EXT2_ET_INODE_ALLOC_FAIL || e == EXT2_ET_DIR_NO_SPACE)
		return shl_err(SHL_ENOSPC, "ext4: %s: %s (image too small; give a larger --size)", what,
			       error_message(e));
	return shl_err(SHL_EIO, "ext4: %s: %s", what, error_message(e));
}

static uint8_t ftype(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return EXT2_FT_REG_FILE;
	case S_IFDIR: return EXT2_FT_DIR;
	case S_IFLNK: return EXT2_FT_SYMLINK;
	case S_IFCHR: return EXT2_FT_CHRDEV;
	case S_IFBLK: return EXT2_FT_BLKDEV;
	case S_IFIFO: return EXT2_FT_FIFO;
	case S_IFSOCK: return EXT2_FT_SOCK;
	default: return EXT2_FT_UNKNOWN;
	}
}

static uint32_t time_extra(int64_t sec, uint32_t nsec)
{
	return (nsec << 2) | (uint32_t)(((uint64_t)(sec - (int32_t)sec) >> 32) & 3);
}

/* Owner, mode, times, link count and xattrs of an existing ext2 inode. */
static int set_attrs(struct ectx *c, ext2_ino_t ino, const shl_fsinode *in)
{
	struct ext2_inode_large li;
	errcode_t e;

	memset(&li, 0, sizeof(li));
	if ((e = ext2fs_read_inode_full(c->fs, ino, (struct ext2_inode *)&li, sizeof(li))))
		return e2err(e, "read inode");
	li.i_mode = (uint16_t)in->mode;
	li.i_uid = (uint16_t)in->uid;
	ext2fs_set_i_uid_high(li, in->uid >> 16);
	li.i_gid = (uint16_t)in->gid;
	ext2fs_set_i_gid_high(li, in->gid >> 16);
	li.i_atime = li.i_mtime = li.i_ctime = (uint32_t)in->mtime;
	if (li.i_extra_isize >= 24) {
		li.i_atime_extra = li.i_mtime_extra = li.i_ctime_extra = time_extra(in->mtime, in->mtime_ns);
	}
	if (!S_ISDIR(in->mode))
		li.i_links_count = (uint16_t)(in->nlink > 65000 ? 65000 : in->nlink);
	if ((e = ext2fs_write_inode_full(c->fs, ino, (struct ext2_inode *)&li, sizeof(li))))
		return e2err(e, "write inode");
	if (in->nxattrs) {
		struct ext2_xattr_handle *h = NULL;
		if ((e = ext2fs_xattrs_open(c->fs, ino, &h)) || (e = ext2fs_xattrs_read(h)))
			goto xerr;
		for (uint32_t i = 0; i < in->nxattrs; i++)
			if ((e = ext2fs_xattr_set(h, in->xattrs[i].name, in->xattrs[i].value, in->xattrs[i].len)))
				goto xerr;
		if ((e = ext2fs_xattrs_close(&h)))
			return e2err(e, "xattrs");
		return 0;
xerr:
		if (h)
			ext2fs_xattrs_close(&h);
		return e2err(e, "xattrs");
	}
	return 0;
}

static int new_inode(struct ectx *c, ext2_ino_t parent, const shl_fsinode *in, ext2_ino_t *out)
{
	struct ext2_inode_large li;
	errcode_t e = ext2fs_new_inode(c->fs, parent, (int)in->mode, 0, out);

	if (e)
		return e2err(e, "allocate inode");
	ext2fs_inode_alloc_stats2(c->fs, *out, +1, S_ISDIR(in->mode));
	memset(&li, 0, sizeof(li));
	li.i_mode = (uint16_t)in->mode;
	li.i_links_count = 1;
	li.i_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
	if (S_ISREG(in->mode))
		li.i_flags |= EXT4_EXTENTS_FL;
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode)) {
		if (in->rdev_major < 256 && in->rdev_minor < 256) {
			li.i_block[0] = in->rdev_major * 256 + in->rdev_minor;
		} else {
			li.i_block[1] = (in->rdev_minor & 0xff) | (in->rdev_major << 8) |
					((in->rdev_minor & ~0xffu) << 12);
		}
	}
	if (S_ISREG(in->mode)) {
		/* an empty extent tree: its header goes into i_block before the
		 * inode is written (an empty file keeps exactly this) */
		ext2_extent_handle_t eh;
		if ((e = ext2fs_extent_open2(c->fs, *out, (struct ext2_inode *)&li, &eh)))
			return e2err(e, "extents");
		ext2fs_extent_free(eh);
	}
	if ((e = ext2fs_write_new_inode(c->fs, *out, (struct ext2_inode *)&li)))
		return e2err(e, "write inode");
	return 0;
}

/* Queue `len` bytes (whole blocks) for image offset `at`: runs of
 * consecutive files become one stream of large writes (fewer I/O requests;
 * each costs a VM exit on virtio), written by util/dio.c's writer thread. */
static int wqueue(struct ectx *c, const char *p, uint64_t len, uint64_t at)
{
	int rc;

	if (!c->dio) {
		if ((rc = shl_dio_open(&c->dio, c->out_fd, at, "ext4 image")))
			return rc;
		if (!c->dio) {
			/* no direct I/O here after all: plain writes */
			c->direct = 0;
			return pwrite(c->out_fd, p, (size_t)len, (off_t)at) == (ssize_t)len
				       ? 0
				       : shl_err_sys(errno == ENOSPC ? SHL_ENOSPC : SHL_EIO, "ext4: write file data");
		}
	}
	if ((rc = shl_dio_seek(c->dio, at)))
		return rc;
	return shl_dio_write(c->dio, p, (size_t)len);
}

/* Direct data path: allocate the file's blocks (initialized extents, not
 * zeroed), set its size, then write the bytes straight to those blocks with
 * O_DIRECT in extent-sized runs. On this kind of VM buffered writes into
 * fresh page-cache pages cost most of an ext4 squash (perf:
 * copy_folio_from_iter_atomic ~36%); libext2fs never reads data blocks, so
 * its block cache cannot go stale. */
static int copy_data_direct(struct ectx *c, ext2_ino_t ino, const shl_fsinode *in)
{
	struct ext2_inode_large li;
	ext2_extent_handle_t eh = NULL;
	struct ext2fs_extent ex;
	uint64_t bs = c->fs->blocksize, nblk = (in->size + bs - 1) / bs;
	errcode_t e;
	int rc = 0, op = EXT2_EXTENT_ROOT;

	if ((e = ext2fs_read_inode_full(c->fs, ino, (struct ext2_inode *)&li, sizeof(li))))
		return e2err(e, "read inode");
	if ((e = ext2fs_fallocate(c->fs, EXT2_FALLOCATE_FORCE_INIT, ino, (struct ext2_inode *)&li, ~0ULL, 0, nblk)))
		return e2err(e, "allocate file blocks");
	if ((e = ext2fs_read_inode_full(c->fs, ino, (struct ext2_inode *)&li, sizeof(li))) ||
	    (e = ext2fs_inode_size_set(c->fs, (struct ext2_inode *)&li, in->size)) ||
	    (e = ext2fs_write_inode_full(c->fs, ino, (struct ext2_inode *)&li, sizeof(li))))
		return e2err(e, "file size");
	if ((e = ext2fs_extent_open2(c->fs, ino, (struct ext2_inode *)&li, &eh)))
		return e2err(e, "extents");
	for (;;) {
		e = ext2fs_extent_get(eh, op, &ex);
		op = EXT2_EXTENT_NEXT_LEAF;
		if (e == EXT2_ET_EXTENT_NO_NEXT || e == EXT2_ET_EXTENT_NO_DOWN)
			break;
		if (e) {
			rc = e2err(e, "walk extents");
			break;
		}
		if (!(ex.e_flags & EXT2_EXTENT_FLAGS_LEAF) || (ex.e_flags & EXT2_EXTENT_FLAGS_SECOND_VISIT))
			continue;
		if (ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT) {
			rc = shl_err(SHL_EIO, "ext4: allocated extent is uninitialized");
			break;
		}
		/* logical blocks [e_lblk, e_lblk+e_len) at physical e_pblk */
		for (uint64_t b = 0; b < ex.e_len && !rc;) {
			uint64_t lb = ex.e_lblk + b, off = lb * bs;
			if (off >= in->size)
				break;
			uint64_t run = ex.e_len - b, chunk_blks = (1u << 20) / bs;
			if (run > chunk_blks)
				run = chunk_blks;
			uint64_t want = run * bs, have = in->size - off < want ? in->size - off : want;
			if ((rc = win_read(c, in->src, (uint8_t *)c->buf, have, in->data_off + off)))
				break;
			uint64_t len = (have + bs - 1) / bs * bs;
			memset(c->buf + have, 0, (size_t)(len - have));
			rc = wqueue(c, c->buf, len, (ex.e_pblk + b) * bs);
			b += run;
		}
		if (rc)
			break;
	}
	ext2fs_extent_free(eh);
	return rc;
}

static int copy_data(struct ectx *c, ext2_ino_t ino, const shl_fsinode *in)
{
	ext2_file_t f;
	uint64_t off = 0;
	int fd = c->nsrc ? c->fds[in->src < c->nsrc ? in->src : 0] : -1;
	errcode_t e;
	int rc = 0;

	if (!in->size)
		return 0;
	if (c->direct)
		return copy_data_direct(c, ino, in);
	if ((e = ext2fs_file_open(c->fs, ino, EXT2_FILE_WRITE, &f)))
		return e2err(e, "open file");
	while (off < in->size) {
		size_t want = in->size - off > (1u << 20) ? (1u << 20) : (size_t)(in->size - off);
		ssize_t n = pread(fd, c->buf, want, (off_t)(in->data_off + off));
		unsigned int wrote;
		if (n <= 0) {
			rc = n < 0 ? shl_err_sys(SHL_EIO, "read layer data") : shl_err(SHL_EFORMAT, "layer tar too short");
			break;
		}
		if ((e = ext2fs_file_write(f, c->buf, (unsigned int)n, &wrote)) || wrote != (unsigned int)n) {
			rc = e2err(e ? e : EXT2_ET_SHORT_WRITE, "write file");
			break;
		}
		off += (uint64_t)n;
	}
	if ((e = ext2fs_file_close(f)) && !rc)
		rc = e2err(e, "close file");
	return rc;
}

/* One name in a directory being filled. */
struct dent {
	const char *name;
	unsigned len;
	ext2_ino_t ino;
	uint8_t ft;
};

/* Write directory `dino` whole: ".", ".." and `v`, packed into as many
 * blocks as they need (a linear directory). libext2fs's ext2fs_link() scans
 * the whole directory for room on every call, so a directory of n names cost
 * O(n^2) block reads; the names are all known here, so each block is written
 * once, into the blocks it has (ext2fs_mkdir() gives one), more added as
 * needed. */
static int write_dir(struct ectx *c, ext2_ino_t dino, ext2_ino_t pino, const struct dent *v, size_t n)
{
	const unsigned bs = c->fs->blocksize;
	char blk[BLK];
	unsigned off = 0, last = 0;
	blk64_t lblk = 0, have;
	struct ext2_inode di;
	errcode_t e;

	/* blocks it has: 1 from mkdir, more for mke2fs's lost+found */
	if ((e = ext2fs_read_inode(c->fs, dino, &di)))
		return e2err(e, "read directory inode");
	have = EXT2_I_SIZE(&di) / bs;
	memset(blk, 0, sizeof(blk));
	for (size_t i = 0; i < n + 2; i++) {
		struct dent dot = { i ? ".." : ".", i ? 2u : 1u, i ? pino : dino, EXT2_FT_DIR };
		const struct dent *d = i < 2 ? &dot : &v[i - 2];
		unsigned rec = (8 + d->len + 3) & ~3u;
		struct ext2_dir_entry *de;
		if (d->len > 255)
			return shl_err(SHL_EINVAL, "ext4: name longer than 255 bytes: '%.40s...'", d->name);
		if (off + rec > bs) {
			/* the block is full: its last entry takes the rest */
			blk64_t pblk;
			de = (struct ext2_dir_entry *)(blk + last);
			if ((e = ext2fs_set_rec_len(c->fs, bs - last, de)))
				return e2err(e, "directory entry");
			if (lblk >= have) {
				if ((e = ext2fs_expand_dir(c->fs, dino)))
					return e2err(e, "expand directory");
				have++;
			}
			if ((e = ext2fs_bmap2(c->fs, dino, NULL, NULL, 0, lblk, NULL, &pblk)) ||
			    (e = ext2fs_write_dir_block4(c->fs, pblk, blk, 0, dino)))
				return e2err(e, "write directory");
			lblk++;
			off = 0;
			memset(blk, 0, sizeof(blk));
		}
		de = (struct ext2_dir_entry *)(blk + off);
		de->inode = d->ino;
		ext2fs_dirent_set_name_len(de, (int)d->len);
		ext2fs_dirent_set_file_type(de, d->ft);
		memcpy(de->name, d->name, d->len);
		if ((e = ext2fs_set_rec_len(c->fs, rec, de)))
			return e2err(e, "directory entry");
		last = off;
		off += rec;
	}
	{
		/* the last block */
		blk64_t pblk;
		struct ext2_dir_entry *de = (struct ext2_dir_entry *)(blk + last);
		if ((e = ext2fs_set_rec_len(c->fs, bs - last, de)))
			return e2err(e, "directory entry");
		if (lblk >= have && (e = ext2fs_expand_dir(c->fs, dino)))
			return e2err(e, "expand directory");
		if ((e = ext2fs_bmap2(c->fs, dino, NULL, NULL, 0, lblk, NULL, &pblk)) ||
		    (e = ext2fs_write_dir_block4(c->fs, pblk, blk, 0, dino)))
			return e2err(e, "write directory");
	}
	return 0;
}

/* Create the children of directory inode `di` (ext2 inode `dino`, whose
 * parent is `pino`), then write its entries. */
static int fill_dir(struct ectx *c, uint32_t di, ext2_ino_t dino, ext2_ino_t pino, int depth)
{
	shl_fsinode *d = shl_fstree_inode(c->t, di);
	struct dent *v = calloc((size_t)d->nchildren + 1, sizeof(*v));
	size_t n = 0;
	int rc = 0, own_lf = 0;

	if (!v)
		return shl_err(SHL_ENOMEM, "out of memory");
	if (depth > 4096) {
		free(v);
		return shl_err(SHL_ELIMIT, "ext4: directories nested too deep");
	}
	for (uint32_t k = 0; k < d->nchildren && !rc; k++) {
		const shl_fsdentry *de = shl_fstree_dentry(c->t, d->children[k]);
		shl_fsinode *in = shl_fstree_inode(c->t, de->inode);
		ext2_ino_t ino = (ext2_ino_t)in->aux;
		errcode_t e;

		v[n] = (struct dent){ de->name, de->name_len, 0, ftype(in->mode) };
		if (!strcmp(de->name, "lost+found") && dino == EXT2_ROOT_INO && S_ISDIR(in->mode)) {
			/* keep mke2fs's lost+found, with the image's attributes */
			own_lf = 1;
			in->aux = ino = c->lf;
			v[n++].ino = ino;
			if (!(rc = set_attrs(c, ino, in)))
				rc = fill_dir(c, de->inode, ino, dino, depth + 1);
			continue;
		}
		if (ino) { /* another name of a hardlinked inode */
			v[n++].ino = ino;
			continue;
		}
		if (S_ISDIR(in->mode)) {
			/* made without a name: the entry goes in with the others */
			if ((e = ext2fs_new_inode(c->fs, dino, LINUX_S_IFDIR | 0755, 0, &ino)) ||
			    (e = ext2fs_mkdir(c->fs, dino, ino, NULL))) {
				rc = e2err(e, de->name);
				break;
			}
			in->aux = ino;
			v[n++].ino = ino;
			if (!(rc = set_attrs(c, ino, in)))
				rc = fill_dir(c, de->inode, ino, dino, depth + 1);
		} else if (S_ISLNK(in->mode)) {
			if ((e = ext2fs_new_inode(c->fs, dino, LINUX_S_IFLNK | 0777, 0, &ino)) ||
			    (e = ext2fs_symlink(c->fs, dino, ino, NULL, in->symlink))) {
				rc = e2err(e, de->name);
				break;
			}
			in->aux = ino;
			v[n++].ino = ino;
			rc = set_attrs(c, ino, in);
		} else {
			if ((rc = new_inode(c, dino, in, &ino)))
				break;
			in->aux = ino;
			v[n++].ino = ino;
			if (S_ISREG(in->mode) && in->size && c->direct) {
				/* later, in tar order (sequential reads and writes) */
				if (c->ndq == c->capdq) {
					size_t nc = c->capdq ? c->capdq * 2 : 1024;
					struct deferred *nv = realloc(c->dq, nc * sizeof(*nv));
					if (!nv) {
						rc = shl_err(SHL_ENOMEM, "out of memory");
						break;
					}
					c->dq = nv;
					c->capdq = nc;
				}
				c->dq[c->ndq++] = (struct deferred){ ino, de->inode };
			} else if (S_ISREG(in->mode) && (rc = copy_data(c, ino, in))) {
				break;
			}
			if (!rc)
				rc = set_attrs(c, ino, in);
		}
	}
	if (!rc && dino == EXT2_ROOT_INO && !own_lf)
		v[n++] = (struct dent){ "lost+found", 10, c->lf, EXT2_FT_DIR };
	if (!rc)
		rc = write_dir(c, dino, pino, v, n);
	free(v);
	return rc;
}

static uint64_t auto_size(shl_fstree *t, uint64_t *inodes)
{
	uint64_t bytes = 0, n = 0;

	for (uint32_t i = 0; i < shl_fstree_ninodes(t); i++) {
		const shl_fsinode *in = shl_fstree_inode(t, i);
		if (!in->nlink)
			continue;
		n++;
		if (S_ISREG(in->mode) || S_ISLNK(in->mode))
			bytes += (in->size + BLK - 1) / BLK * BLK + (in->size > 48 * BLK ? BLK : 0);
		else if (S_ISDIR(in->mode))
			bytes += (uint64_t)(in->nchildren / 64 + 1) * BLK;
		if (in->nxattrs)
			bytes += BLK;
	}
	*inodes = n;
	/* metadata (inode tables at 256 B, bitmaps, journal) + 25 % headroom */
	bytes += n * 256 + (64u << 20);
	bytes += bytes / 4;
	return (bytes + (1u << 20) - 1) / (1u << 20) * (1u << 20);
}

static int by_tar_offset(const void *a, const void *b, void *arg)
{
	shl_fstree *t = arg;
	const shl_fsinode *x = shl_fstree_inode(t, ((const struct deferred *)a)->node);
	const shl_fsinode *y = shl_fstree_inode(t, ((const struct deferred *)b)->node);

	if (x->src != y->src)
		return x->src < y->src ? -1 : 1;
	return x->data_off < y->data_off ? -1 : x->data_off > y->data_off;
}

int shl_squash__ext4(shl_fstree *t, const int *fds, uint32_t nsrc, uint64_t size, int out_fd)
{
	struct ext2_super_block param;
	struct ectx c = { .t = t, .fds = fds, .nsrc = nsrc, .out_fd = -1, .win_src = -1, .win_dfd = -1 };
	char name[64];
	uint64_t inodes = 0, autosz = auto_size(t, &inodes);
	errcode_t e;
	ext2_ino_t lf;
	int rc = 0;

	if (size && size < (8u << 20))
		return shl_err(SHL_EINVAL, "ext4: --size %llu is below the 8 MiB minimum", (unsigned long long)size);
	if (!size)
		size = autosz;
	if (size < (8u << 20))
		size = 8u << 20;
	if (ftruncate(out_fd, 0) != 0 || ftruncate(out_fd, (off_t)size) != 0)
		return shl_err_sys(SHL_EIO, "ext4: size the image");
	snprintf(name, sizeof(name), "/proc/self/fd/%d", out_fd);
	memset(&param, 0, sizeof(param));
	ext2fs_blocks_count_set(&param, size / BLK);
	param.s_log_block_size = 2; /* 4 KiB */
	param.s_rev_level = EXT2_DYNAMIC_REV;
	param.s_inode_size = 256;
	param.s_inodes_count = (uint32_t)((inodes + 1024) * 5 / 4);
	ext2fs_set_feature_filetype(&param);
	ext2fs_set_feature_extents(&param);
	ext2fs_set_feature_sparse_super(&param);
	ext2fs_set_feature_large_file(&param);
	ext2fs_set_feature_huge_file(&param);
	ext2fs_set_feature_dir_nlink(&param);
	ext2fs_set_feature_extra_isize(&param);
	ext2fs_set_feature_xattr(&param);
	ext2fs_set_feature_64bit(&param);
	param.s_min_extra_isize = param.s_want_extra_isize = sizeof(struct ext2_inode_large) - EXT2_GOOD_OLD_INODE_SIZE;
	initialize_ext2_error_table();
	if ((e = ext2fs_initialize(name, EXT2_FLAG_RW | EXT2_FLAG_64BITS, &param, unix_io_manager, &c.fs)))
		return e2err(e, "initialize");
	{
		/* deterministic bytes: the filesystem's own times (mkfs, last write,
		 * lost+found) are the image root's mtime, not the clock */
		int64_t when = shl_fstree_inode(t, shl_fstree_root(t))->mtime;
		c.fs->now = when > 0 ? (time_t)when : 1;
		c.fs->super->s_mkfs_time = c.fs->super->s_wtime = c.fs->super->s_lastcheck = (uint32_t)c.fs->now;
	}
	c.out_fd = out_fd;
	c.buf = malloc(1u << 20);
	{
		const char *no = getenv("SHALE_NO_DIRECT");
		c.direct = !(no && *no && strcmp(no, "0"));
	}
	if (c.direct && posix_memalign((void **)&c.win, 4096, WIN_SZ))
		c.win = NULL; /* reads through the page cache then */
	if (!c.buf) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((e = ext2fs_allocate_tables(c.fs))) {
		rc = e2err(e, "allocate tables");
		goto out;
	}
	/* what mke2fs creates before any file: root, reserved inodes, lost+found */
	if ((e = ext2fs_mkdir(c.fs, EXT2_ROOT_INO, EXT2_ROOT_INO, 0))) {
		rc = e2err(e, "root directory");
		goto out;
	}
	for (ext2_ino_t i = EXT2_ROOT_INO + 1; i < EXT2_FIRST_INODE(c.fs->super); i++)
		ext2fs_inode_alloc_stats2(c.fs, i, +1, 0);
	ext2fs_mark_inode_bitmap2(c.fs->inode_map, EXT2_BAD_INO);
	ext2fs_inode_alloc_stats2(c.fs, EXT2_BAD_INO, +1, 0);
	if ((e = ext2fs_update_bb_inode(c.fs, NULL)) || (e = ext2fs_mkdir(c.fs, EXT2_ROOT_INO, 0, "lost+found")) ||
	    (e = ext2fs_lookup(c.fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &lf))) {
		rc = e2err(e, "lost+found");
		goto out;
	}
	for (int i = 0; i < 3; i++) /* room for e2fsck, as mke2fs leaves it */
		if ((e = ext2fs_expand_dir(c.fs, lf))) {
			rc = e2err(e, "lost+found");
			goto out;
		}
	{
		struct ext2fs_journal_params jp;
		if ((e = ext2fs_get_journal_params(&jp, c.fs)) ||
		    (e = ext2fs_add_journal_inode3(c.fs, &jp, ~0ULL, 0))) {
			rc = e2err(e, "journal");
			goto out;
		}
	}
	c.lf = lf;
	for (uint32_t i = 0; i < shl_fstree_ninodes(t); i++)
		shl_fstree_inode(t, i)->aux = 0;
	shl_fstree_inode(t, shl_fstree_root(t))->aux = EXT2_ROOT_INO;
	if ((rc = set_attrs(&c, EXT2_ROOT_INO, shl_fstree_inode(t, shl_fstree_root(t)))) ||
	    (rc = fill_dir(&c, shl_fstree_root(t), EXT2_ROOT_INO, EXT2_ROOT_INO, 0)))
		goto out;
	/* file data in tar order: each stored tar read front to back, blocks
	 * allocated (and written) in the same order */
	qsort_r(c.dq, c.ndq, sizeof(*c.dq), by_tar_offset, t);
	for (size_t i = 0; i < c.ndq && !rc; i++)
		rc = copy_data_direct(&c, c.dq[i].ino, shl_fstree_inode(t, c.dq[i].node));
	if (!rc && c.dio)
		rc = shl_dio_finish(c.dio);
out:
	free(c.buf);
	free(c.dq);
	free(c.win);
	if (c.win_dfd >= 0)
		close(c.win_dfd);
	shl_dio_free(c.dio);
	if (c.fs) {
		if (rc)
			ext2fs_free(c.fs);
		else if ((e = ext2fs_close_free(&c.fs)))
			rc = e2err(e, "write the image");
	}
	return rc;
}
