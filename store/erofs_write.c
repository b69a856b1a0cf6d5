/*
 * store/erofs_write.c - write a layer's file tree as an EROFS image.
 *
 * Written by hand: Debian 12 ships no liberofs and its erofs-utils (1.5) has
 * no tar-index mode, so there is no library to call. The on-disk facts are in
 * docs/erofs.md (from shared/erofs-format.md, checked on the kernel).
 *
 * Image layout (both modes):
 *   [0,1024) zero | superblock @1024 | device slot @1152 (index mode)
 *   | inode records (32-byte aligned; root first; a record that fits in a block
 *     never straddles one) | directory / symlink blocks | file data (full mode)
 * Every inode is extended (64 bytes): pre-6.15 kernels take compact inodes'
 * mtime from the superblock, so compact ones would lose per-file mtimes.
 * Records: inode, inline xattrs, then chunk indexes (regular files, index
 * mode) or the inline tail (small dirs and symlinks). The output depends only
 * on the tree and the options: same tar -> same bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/erofs_write.h"
#include "store/erofs_fmt.h"
#include "util/crc32c.h"
#include "util/dio.h"
#include "util/err.h"

struct winode {
	uint64_t pos;        /* byte offset of the inode record */
	uint32_t xsize;      /* inline xattr ibody bytes */
	uint32_t rec;        /* record bytes: inode + xattrs + indexes/tail */
	uint8_t layout;
	uint64_t dsize;      /* dir: i_size of the dirent blocks */
	uint32_t blkaddr;    /* first data block (plain/inline full blocks) */
	uint64_t nblocks;    /* data blocks outside the record */
	uint32_t ino;        /* i_ino */
	int visited;
};

struct wctx {
	shl_fstree *t;
	const shl_erofs_wopts *o;
	unsigned blkbits;
	uint32_t blksz;
	struct winode *w;
	uint32_t *order;     /* inodes in record order */
	uint32_t norder;
	uint8_t *meta;       /* the metadata image (everything but full-mode file data) */
	uint64_t meta_size;
};

/* ---- xattrs ------------------------------------------------------------- */

struct xent {
	uint8_t index;
	const char *suffix;
	const void *value;
	uint32_t len;
	const char *full;
};

static uint8_t xattr_index(const char *name, const char **suffix)
{
	static const struct { const char *prefix; uint8_t index; int exact; } map[] = {
		{ "system.posix_acl_access", EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, 1 },
		{ "system.posix_acl_default", EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, 1 },
		{ "user.", EROFS_XATTR_INDEX_USER, 0 },
		{ "trusted.", EROFS_XATTR_INDEX_TRUSTED, 0 },
		{ "security.", EROFS_XATTR_INDEX_SECURITY, 0 },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		size_t n = strlen(map[i].prefix);
		if (map[i].exact ? !strcmp(name, map[i].prefix) : !strncmp(name, map[i].prefix, n)) {
			*suffix = name + n;
			return map[i].index;
		}
	}
	return 0;
}

/* The xattrs an inode gets: its own (sorted by fstree) plus the overlay ones
 * derived from whiteouts, merged by name. Returns the count (<= own + 2). */
static uint32_t collect_xattrs(const shl_fsinode *in, struct xent *out)
{
	static const char *const opq = "trusted.overlay.opaque", *const origin = "trusted.overlay.origin";
	const char *extra[2];
	const char *evals[2];
	uint32_t nextra = 0, n = 0, i = 0, k = 0;

	if (in->flags & SHL_FSI_OPAQUE) {
		extra[nextra] = opq;
		evals[nextra++] = "y";
	}
	if (in->flags & SHL_FSI_HAS_WH) {
		extra[nextra] = origin;
		evals[nextra++] = "";
	}
	if (nextra == 2 && strcmp(extra[0], extra[1]) > 0) { /* keep them sorted */
		const char *s = extra[0], *v = evals[0];
		extra[0] = extra[1]; evals[0] = evals[1];
		extra[1] = s; evals[1] = v;
	}
	/* merge two sorted lists; on a tie the tar's own value wins */
	while (i < in->nxattrs || k < nextra) {
		int c;
		if (i == in->nxattrs)
			c = 1;
		else if (k == nextra)
			c = -1;
		else
			c = strcmp(in->xattrs[i].name, extra[k]);
		if (c <= 0) {
			out[n].full = in->xattrs[i].name;
			out[n].value = in->xattrs[i].value;
			out[n].len = in->xattrs[i].len;
			i++;
			if (c == 0)
				k++;
		} else {
			out[n].full = extra[k];
			out[n].value = evals[k];
			out[n].len = (uint32_t)strlen(evals[k]);
			k++;
		}
		out[n].index = xattr_index(out[n].full, &out[n].suffix);
		n++;
	}
	return n;
}

static uint32_t xattr_ibody_size(const struct xent *x, uint32_t n)
{
	uint64_t size;

	if (!n)
		return 0;
	size = sizeof(struct erofs_xattr_ibody_header);
	for (uint32_t i = 0; i < n; i++)
		size += EROFS_ALIGN(sizeof(struct erofs_xattr_entry) + strlen(x[i].suffix) + x[i].len, 4);
	return size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
}

static void xattr_emit(uint8_t *p, const struct xent *x, uint32_t n)
{
	struct erofs_xattr_ibody_header h = { 0 };

	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	for (uint32_t i = 0; i < n; i++) {
		struct erofs_xattr_entry e;
		size_t sl = strlen(x[i].suffix);
		e.e_name_len = (uint8_t)sl;
		e.e_name_index = x[i].index;
		e.e_value_size = htole16((uint16_t)x[i].len);
		memcpy(p, &e, sizeof(e));
		memcpy(p + sizeof(e), x[i].suffix, sl);
		if (x[i].len)
			memcpy(p + sizeof(e) + sl, x[i].value, x[i].len);
		p += EROFS_ALIGN(sizeof(e) + sl + x[i].len, 4);
	}
}

/* ---- directories -------------------------------------------------------- */

static uint8_t file_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return EROFS_FT_REG_FILE;
	case S_IFDIR: return EROFS_FT_DIR;
	case S_IFCHR: return EROFS_FT_CHRDEV;
	case S_IFBLK: return EROFS_FT_BLKDEV;
	case S_IFIFO: return EROFS_FT_FIFO;
	case S_IFSOCK: return EROFS_FT_SOCK;
	case S_IFLNK: return EROFS_FT_SYMLINK;
	default: return EROFS_FT_UNKNOWN;
	}
}

/* One directory entry in emit order: "." and ".." merged into the sorted
 * children (bytewise order, as the kernel's binary search needs). */
struct dent {
	const char *name;
	uint16_t len;
	uint32_t ino;
};

static int cmp_name(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : (al > bl) - (al < bl);
}

/* Fill `out` (nchildren + 2 entries) for directory inode `di`. */
static uint32_t dir_entries(struct wctx *c, uint32_t di, uint32_t parent_ino, struct dent *out)
{
	const shl_fsinode *in = shl_fstree_inode(c->t, di);
	struct dent dots[2] = { { ".", 1, di }, { "..", 2, parent_ino } };
	uint32_t n = 0, k = 0;

	for (uint32_t i = 0; i < in->nchildren || k < 2;) {
		const shl_fsdentry *d = i < in->nchildren ? shl_fstree_dentry(c->t, in->children[i]) : NULL;
		if (k < 2 && (!d || cmp_name(dots[k].name, dots[k].len, d->name, d->name_len) < 0)) {
			out[n++] = dots[k++];
		} else {
			out[n].name = d->name;
			out[n].len = d->name_len;
			out[n].ino = d->inode;
			n++;
			i++;
		}
	}
	return n;
}

/* Bytes of the packed dirent blocks: full blocks + used bytes of the last. */
static uint64_t dir_size(const struct dent *e, uint32_t n, uint32_t blksz)
{
	uint64_t size = 0;
	uint32_t used = 0;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t need = (uint32_t)sizeof(struct erofs_dirent) + e[i].len;
		if (used + need > blksz) {
			size += blksz;
			used = 0;
		}
		used += need;
	}
	return size + used;
}

/* Write the dirent blocks of a directory into `dst` (dsize bytes). The tail
 * block (if inline) is written at `tail`, the full blocks at `full`. */
static void dir_emit(struct wctx *c, const struct dent *e, uint32_t n, uint8_t *full, uint8_t *tail,
		     uint64_t dsize)
{
	uint64_t nfull = dsize / c->blksz;
	uint32_t i = 0, blk = 0;

	while (i < n) {
		uint32_t j = i, used = 0, nameoff;
		uint8_t *b;
		while (j < n && used + sizeof(struct erofs_dirent) + e[j].len <= c->blksz) {
			used += (uint32_t)sizeof(struct erofs_dirent) + e[j].len;
			j++;
		}
		b = (blk < nfull || !tail) ? full + (uint64_t)blk * c->blksz : tail;
		nameoff = (j - i) * (uint32_t)sizeof(struct erofs_dirent);
		for (uint32_t k = i; k < j; k++) {
			struct erofs_dirent de;
			const shl_fsinode *ci = shl_fstree_inode(c->t, e[k].ino);
			de.nid = htole64(ci->nid);
			de.nameoff = htole16((uint16_t)nameoff);
			de.file_type = file_type(ci->mode);
			de.reserved = 0;
			memcpy(b + (k - i) * sizeof(de), &de, sizeof(de));
			memcpy(b + nameoff, e[k].name, e[k].len);
			nameoff += e[k].len;
		}
		i = j;
		blk++;
	}
}

/* ---- layout ------------------------------------------------------------- */

static unsigned chunk_bits(uint64_t size, unsigned blkbits)
{
	unsigned bits = blkbits;

	while (bits < blkbits + 31 && ((uint64_t)1 << bits) < size)
		bits++;
	return bits;
}

/* Decide layout and record size of every live inode, in DFS pre-order. */
static int plan(struct wctx *c)
{
	shl_fstree *t = c->t;
	uint32_t ni = shl_fstree_ninodes(t);
	uint32_t *stack = NULL, sp = 0;
	struct xent *xs = NULL;
	uint32_t xcap = 0;
	int rc = 0;

	c->w = calloc(ni, sizeof(*c->w));
	c->order = malloc((size_t)ni * sizeof(*c->order));
	stack = malloc((size_t)(shl_fstree_nentries(t) + 1) * sizeof(*stack));
	if (!c->w || !c->order || !stack) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	stack[sp++] = shl_fstree_root(t);
	while (sp) {
		uint32_t i = stack[--sp];
		shl_fsinode *in = shl_fstree_inode(t, i);
		struct winode *w = &c->w[i];
		uint32_t nx, body = 0;

		if (w->visited)
			continue; /* another name of a hardlinked inode */
		w->visited = 1;
		c->order[c->norder++] = i;
		w->ino = c->norder;
		if (in->nxattrs + 2 > xcap) {
			xcap = in->nxattrs + 2;
			free(xs);
			xs = malloc(xcap * sizeof(*xs));
			if (!xs) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				goto out;
			}
		}
		nx = collect_xattrs(in, xs);
		w->xsize = xattr_ibody_size(xs, nx);
		if (w->xsize > sizeof(struct erofs_xattr_ibody_header) + 4u * 65534u) {
			rc = shl_err(SHL_ELIMIT, "inode %u: xattrs too large for EROFS", i);
			goto out;
		}
		body = (uint32_t)sizeof(struct erofs_inode_extended) + w->xsize;
		w->layout = EROFS_INODE_FLAT_PLAIN;
		if (S_ISREG(in->mode) && in->size > 0 && c->o->mode == SHL_EROFS_INDEX) {
			unsigned cb = chunk_bits(in->size, c->blkbits);
			uint64_t nchunks = (in->size + ((uint64_t)1 << cb) - 1) >> cb;
			w->layout = EROFS_INODE_CHUNK_BASED;
			w->rec = EROFS_ALIGN(body, 8) + (uint32_t)(nchunks * sizeof(struct erofs_inode_chunk_index));
		} else if (S_ISREG(in->mode)) {
			w->nblocks = (in->size + c->blksz - 1) >> c->blkbits;
			w->rec = body;
		} else if (S_ISDIR(in->mode) || S_ISLNK(in->mode)) {
			uint64_t size;
			if (S_ISDIR(in->mode)) {
				/* names only: sizes don't depend on nids */
				struct dent *e = malloc(((size_t)in->nchildren + 2) * sizeof(*e));
				if (!e) {
					rc = shl_err(SHL_ENOMEM, "out of memory");
					goto out;
				}
				w->dsize = dir_size(e, dir_entries(c, i, i, e), c->blksz);
				free(e);
				size = w->dsize;
			} else {
				size = in->size;
			}
			uint32_t tailsz = (uint32_t)(size % c->blksz);
			if (tailsz && body + tailsz <= c->blksz) {
				w->layout = EROFS_INODE_FLAT_INLINE;
				w->rec = body + tailsz;
				w->nblocks = size >> c->blkbits;
			} else {
				w->rec = body;
				w->nblocks = (size + c->blksz - 1) >> c->blkbits;
			}
		} else {
			w->rec = body;
		}
		if (S_ISDIR(in->mode)) {
			for (uint32_t k = in->nchildren; k-- > 0;)
				stack[sp++] = shl_fstree_dentry(t, in->children[k])->inode;
		}
	}
out:
	free(xs);
	free(stack);
	return rc;
}

/* Assign record positions (nids) and data blocks; size the metadata. */
static int place_all(struct wctx *c, uint64_t start, uint64_t *data_end_blk)
{
	uint64_t pos = start, blk;

	for (uint32_t k = 0; k < c->norder; k++) {
		struct winode *w = &c->w[c->order[k]];
		pos = EROFS_ALIGN(pos, EROFS_ISLOT);
		if (w->rec <= c->blksz && (pos % c->blksz) + w->rec > c->blksz)
			pos = EROFS_ALIGN(pos, c->blksz);
		w->pos = pos;
		shl_fstree_inode(c->t, c->order[k])->nid = pos >> EROFS_ISLOTBITS;
		pos += w->rec;
	}
	if (shl_fstree_inode(c->t, shl_fstree_root(c->t))->nid > UINT16_MAX)
		return shl_err(SHL_ELIMIT, "erofs: root inode beyond the 16-bit nid range");
	blk = EROFS_ALIGN(pos, c->blksz) >> c->blkbits;
	/* directory and symlink blocks live in the metadata; file data after */
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t k = 0; k < c->norder; k++) {
			struct winode *w = &c->w[c->order[k]];
			const shl_fsinode *in = shl_fstree_inode(c->t, c->order[k]);
			if ((pass == 0) != !S_ISREG(in->mode))
				continue;
			w->blkaddr = w->nblocks ? (uint32_t)blk : EROFS_NULL_ADDR;
			blk += w->nblocks;
			if (blk > UINT32_MAX)
				return shl_err(SHL_ELIMIT, "erofs: image larger than 2^32 blocks");
		}
		if (pass == 0)
			c->meta_size = blk << c->blkbits;
	}
	*data_end_blk = blk;
	return 0;
}

/* ---- emit --------------------------------------------------------------- */

static uint32_t encode_dev(uint32_t major, uint32_t minor)
{
	return (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
}

static int emit_inode(struct wctx *c, uint32_t i, uint32_t parent_ino, struct xent **xs, uint32_t *xcap)
{
	shl_fsinode *in = shl_fstree_inode(c->t, i);
	struct winode *w = &c->w[i];
	struct erofs_inode_extended ie;
	uint8_t *rec = c->meta + w->pos;
	uint32_t body = (uint32_t)sizeof(ie) + w->xsize, nx;
	uint32_t i_u = 0;

	memset(&ie, 0, sizeof(ie));
	ie.i_format = htole16((uint16_t)(EROFS_INODE_LAYOUT_EXTENDED | (w->layout << EROFS_I_DATALAYOUT_BIT)));
	ie.i_xattr_icount = htole16(w->xsize ? (uint16_t)((w->xsize - sizeof(struct erofs_xattr_ibody_header)) / 4 + 1) : 0);
	ie.i_mode = htole16((uint16_t)in->mode);
	ie.i_ino = htole32(w->ino);
	ie.i_uid = htole32(in->uid);
	ie.i_gid = htole32(in->gid);
	ie.i_mtime = htole64((uint64_t)in->mtime);
	ie.i_mtime_nsec = htole32(in->mtime_ns);
	ie.i_nlink = htole32(in->nlink);

	if (S_ISREG(in->mode)) {
		ie.i_size = htole64(in->size);
		if (w->layout == EROFS_INODE_CHUNK_BASED) {
			unsigned cb = chunk_bits(in->size, c->blkbits);
			uint64_t nchunks = (in->size + ((uint64_t)1 << cb) - 1) >> cb;
			uint8_t *idx = rec + EROFS_ALIGN(body, 8);
			i_u = (cb - c->blkbits) | EROFS_CHUNK_FORMAT_INDEXES;
			for (uint64_t k = 0; k < nchunks; k++) {
				struct erofs_inode_chunk_index ci;
				uint64_t blkaddr = (in->data_off + (k << cb)) >> c->blkbits;
				ci.startblk_hi = 0;
				ci.device_id = htole16(1);
				ci.startblk_lo = htole32((uint32_t)blkaddr);
				memcpy(idx + k * sizeof(ci), &ci, sizeof(ci));
			}
		} else {
			i_u = in->size ? w->blkaddr : 0;
		}
	} else if (S_ISDIR(in->mode) || S_ISLNK(in->mode)) {
		uint64_t size = S_ISDIR(in->mode) ? w->dsize : in->size;
		uint8_t *full = w->nblocks ? c->meta + ((uint64_t)w->blkaddr << c->blkbits) : NULL;
		uint8_t *tail = w->layout == EROFS_INODE_FLAT_INLINE ? rec + body : NULL;
		ie.i_size = htole64(size);
		i_u = w->blkaddr;
		if (S_ISDIR(in->mode)) {
			struct dent *e = malloc(((size_t)in->nchildren + 2) * sizeof(*e));
			if (!e)
				return shl_err(SHL_ENOMEM, "out of memory");
			dir_emit(c, e, dir_entries(c, i, parent_ino, e), full, tail, size);
			free(e);
		} else {
			uint64_t nfull = (uint64_t)w->nblocks << c->blkbits;
			if (w->layout == EROFS_INODE_FLAT_INLINE) {
				if (nfull)
					memcpy(full, in->symlink, nfull);
				memcpy(tail, in->symlink + nfull, size - nfull);
			} else {
				memcpy(full, in->symlink, size);
			}
		}
	} else if (S_ISCHR(in->mode) || S_ISBLK(in->mode)) {
		i_u = encode_dev(in->rdev_major, in->rdev_minor);
	}
	ie.i_u = htole32(i_u);
	memcpy(rec, &ie, sizeof(ie));
	if (w->xsize) {
		if (in->nxattrs + 2 > *xcap) {
			struct xent *nxs = realloc(*xs, (in->nxattrs + 2) * sizeof(**xs));
			if (!nxs)
				return shl_err(SHL_ENOMEM, "out of memory");
			*xs = nxs;
			*xcap = in->nxattrs + 2;
		}
		nx = collect_xattrs(in, *xs);
		xattr_emit(rec + sizeof(ie), *xs, nx);
	}
	return 0;
}

static int emit_all(struct wctx *c)
{
	shl_fstree *t = c->t;
	uint32_t ni = shl_fstree_ninodes(t);
	uint32_t *parent = NULL;
	struct xent *xs = NULL;
	uint32_t xcap = 0;
	int rc = 0;

	/* parent inode of each directory (for ".."); root is its own parent */
	parent = malloc((size_t)ni * sizeof(*parent));
	if (!parent)
		return shl_err(SHL_ENOMEM, "out of memory");
	parent[shl_fstree_root(t)] = shl_fstree_root(t);
	for (uint32_t k = 0; k < c->norder; k++) {
		const shl_fsinode *in = shl_fstree_inode(t, c->order[k]);
		for (uint32_t j = 0; S_ISDIR(in->mode) && j < in->nchildren; j++)
			parent[shl_fstree_dentry(t, in->children[j])->inode] = c->order[k];
	}
	for (uint32_t k = 0; k < c->norder && !rc; k++)
		rc = emit_inode(c, c->order[k], parent[c->order[k]], &xs, &xcap);
	free(xs);
	free(parent);
	return rc;
}

static void emit_super(struct wctx *c, uint64_t blocks, uint32_t inodes)
{
	struct erofs_super_block sb;
	uint32_t len, crc;

	memset(&sb, 0, sizeof(sb));
	sb.magic = htole32(EROFS_SUPER_MAGIC_V1);
	sb.feature_compat = htole32(EROFS_FEATURE_COMPAT_SB_CHKSUM | EROFS_FEATURE_COMPAT_MTIME);
	sb.blkszbits = (uint8_t)c->blkbits;
	sb.root_nid = htole16((uint16_t)shl_fstree_inode(c->t, shl_fstree_root(c->t))->nid);
	sb.inos = htole64(inodes);
	sb.blocks = htole32((uint32_t)blocks);
	memcpy(sb.uuid, c->o->uuid, 16);
	if (c->o->volume)
		strncpy((char *)sb.volume_name, c->o->volume, sizeof(sb.volume_name) - 1);
	if (c->o->mode == SHL_EROFS_INDEX) {
		struct erofs_deviceslot ds;
		sb.feature_incompat = htole32(EROFS_FEATURE_INCOMPAT_CHUNKED_FILE |
					      EROFS_FEATURE_INCOMPAT_DEVICE_TABLE);
		sb.extra_devices = htole16(1);
		sb.devt_slotoff = htole16(EROFS_DEVT_SLOT_OFF / sizeof(ds));
		memset(&ds, 0, sizeof(ds));
		ds.blocks = htole32((uint32_t)((c->o->tar_size + c->blksz - 1) >> c->blkbits));
		ds.mapped_blkaddr = htole32((uint32_t)blocks);
		memcpy(c->meta + EROFS_DEVT_SLOT_OFF, &ds, sizeof(ds));
	}
	memcpy(c->meta + EROFS_SUPER_OFFSET, &sb, sizeof(sb));
	/* the checksum covers the rest of the superblock's block: compute last */
	len = c->blksz > EROFS_SUPER_OFFSET ? c->blksz - EROFS_SUPER_OFFSET : c->blksz;
	crc = shl_crc32c(0xFFFFFFFFu, c->meta + EROFS_SUPER_OFFSET, len);
	crc = htole32(crc);
	memcpy(c->meta + EROFS_SUPER_OFFSET + offsetof(struct erofs_super_block, checksum), &crc, 4);
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return shl_err_sys(SHL_EIO, "erofs: write image");
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Append one file's bytes through the direct writer, after zeros up to its
 * first block (the previous file's tail padding). */
static int dio_file(shl_dio *d, uint64_t *dpos, int sfd, uint64_t src, uint64_t dst, uint64_t size, uint8_t *buf)
{
	static const uint8_t zero[4096];
	int rc;

	while (*dpos < dst) {
		size_t k = dst - *dpos > sizeof(zero) ? sizeof(zero) : (size_t)(dst - *dpos);
		if ((rc = shl_dio_write(d, zero, k)))
			return rc;
		*dpos += k;
	}
	while (size) {
		size_t chunk = size > (1u << 20) ? (1u << 20) : (size_t)size;
		ssize_t r = pread(sfd, buf, chunk, (off_t)src);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? shl_err_sys(SHL_EIO, "erofs: read tar data")
				     : shl_err(SHL_EFORMAT, "erofs: tar shorter than its entries");
		if ((rc = shl_dio_write(d, buf, (size_t)r)))
			return rc;
		src += (uint64_t)r;
		size -= (uint64_t)r;
		*dpos += (uint64_t)r;
	}
	return 0;
}

/* Full mode: copy each regular file's bytes from the tar into its blocks.
 * Files are laid out in ascending block order, so a regular-file output gets
 * one sequential stream of direct writes (util/dio.h: in-kernel copies into
 * fresh page-cache pages cost most of a squash on VMs); anything else, or a
 * block that would go backwards, is copied in the kernel. */
static int copy_data(struct wctx *c, int out_fd)
{
	uint8_t *buf = NULL;
	shl_dio *dio = NULL;
	uint64_t dpos = 0;
	int rc = 0, dio_tried = 0;

	for (uint32_t k = 0; k < c->norder && !rc; k++) {
		const shl_fsinode *in = shl_fstree_inode(c->t, c->order[k]);
		const struct winode *w = &c->w[c->order[k]];
		loff_t src = (loff_t)in->data_off, dst = (loff_t)w->blkaddr << c->blkbits;
		uint64_t left = in->size;
		int sfd = c->o->tar_fd;

		if (!S_ISREG(in->mode) || !in->size)
			continue;
		if (c->o->src_fds) {
			if (in->src >= c->o->nsrc) {
				rc = shl_err(SHL_EINVAL, "erofs: file data source %u out of range", in->src);
				break;
			}
			sfd = c->o->src_fds[in->src];
		}
		if (!dio_tried && c->o->mode == SHL_EROFS_FULL) {
			struct stat st;
			dio_tried = 1;
			if (fstat(out_fd, &st) == 0 && S_ISREG(st.st_mode) && (rc = shl_dio_open(&dio, out_fd, (uint64_t)dst, "EROFS image")))
				break;
			dpos = (uint64_t)dst;
		}
		if (dio && (uint64_t)dst >= dpos) {
			if (!buf && !(buf = malloc(1u << 20))) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				break;
			}
			rc = dio_file(dio, &dpos, sfd, (uint64_t)src, (uint64_t)dst, left, buf);
			continue;
		}
		while (left) {
			ssize_t n = copy_file_range(sfd, &src, out_fd, &dst,
						    left > (1u << 30) ? (1u << 30) : left, 0);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
				      errno == EOPNOTSUPP || errno == EBADF)) {
				/* fall back to pread/pwrite (pipes, old kernels) */
				size_t chunk = left > (1u << 20) ? (1u << 20) : left;
				ssize_t r;
				if (!buf && !(buf = malloc(1u << 20))) {
					rc = shl_err(SHL_ENOMEM, "out of memory");
					break;
				}
				r = pread(sfd, buf, chunk, src);
				if (r <= 0) {
					rc = r < 0 ? shl_err_sys(SHL_EIO, "erofs: read tar data")
						   : shl_err(SHL_EFORMAT, "erofs: tar shorter than its entries");
					break;
				}
				if ((rc = write_all(out_fd, buf, (size_t)r, (uint64_t)dst)))
					break;
				src += r;
				dst += r;
				left -= (uint64_t)r;
				continue;
			}
			if (n < 0) {
				rc = shl_err_sys(SHL_EIO, "erofs: copy file data");
				break;
			}
			if (n == 0) {
				rc = shl_err(SHL_EFORMAT, "erofs: tar shorter than its entries");
				break;
			}
			left -= (uint64_t)n;
		}
	}
	if (!rc && dio)
		rc = shl_dio_finish(dio);
	shl_dio_free(dio);
	free(buf);
	return rc;
}

int shl_erofs_write(shl_fstree *t, const shl_erofs_wopts *o, int out_fd, uint64_t *size_out)
{
	struct wctx c;
	uint64_t start, end_blk = 0, total;
	int rc;

	memset(&c, 0, sizeof(c));
	c.t = t;
	c.o = o;
	c.blkbits = o->mode == SHL_EROFS_INDEX ? 9 : 12;
	c.blksz = 1u << c.blkbits;
	if (o->mode == SHL_EROFS_INDEX && ((o->tar_size + c.blksz - 1) >> c.blkbits) > UINT32_MAX) {
		rc = shl_err(SHL_EUNSUPPORTED, "erofs: tar of %llu bytes exceeds the 2 TiB index limit",
			     (unsigned long long)o->tar_size);
		goto out;
	}
	if ((rc = plan(&c)))
		goto out;
	start = EROFS_SUPER_OFFSET + sizeof(struct erofs_super_block);
	if (o->mode == SHL_EROFS_INDEX)
		start = EROFS_DEVT_SLOT_OFF + sizeof(struct erofs_deviceslot);
	if ((rc = place_all(&c, start, &end_blk)))
		goto out;
	c.meta = calloc(1, c.meta_size);
	if (!c.meta) {
		rc = shl_err(SHL_ENOMEM, "out of memory for %llu bytes of EROFS metadata",
			     (unsigned long long)c.meta_size);
		goto out;
	}
	if ((rc = emit_all(&c)))
		goto out;
	emit_super(&c, end_blk, c.norder);
	total = end_blk << c.blkbits;
	if (ftruncate(out_fd, 0) != 0 || ftruncate(out_fd, (off_t)total) != 0) {
		rc = shl_err_sys(SHL_EIO, "erofs: size image");
		goto out;
	}
	if ((rc = write_all(out_fd, c.meta, c.meta_size, 0)))
		goto out;
	if (o->mode == SHL_EROFS_FULL && (rc = copy_data(&c, out_fd)))
		goto out;
	if (size_out)
		*size_out = total;
out:
	free(c.meta);
	free(c.w);
	free(c.order);
	return rc;
}
