/*
 * store/erofs_read_xattr.c - extended attributes of EROFS images
 * (shl_erofs_xattrs): the inline ibody after each inode, shared entries in
 * the xattr area, short name indexes and the long-prefix table
 * (INCOMPAT_XATTR_PREFIXES). Entries are listed inline first, then shared,
 * as the kernel's listxattr does. Every length is checked against the area
 * it lives in; buffers are bounded by the u16 on-disk sizes.
 */
#include <stdlib.h>
#include <string.h>

#include "store/erofs_read_int.h"
#include "util/err.h"

#define NID(n) ((unsigned long long)(n))
#define COMPAT_PLAIN_XATTR_PFX 0x10u
#define ENTRY_MAX (4u + ERD_NAME_MAX + 65535u)

static const char *short_prefix(unsigned index)
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

/* Read `len` bytes of the long-prefix table at `pos`: from the packed inode
 * if the image has one (and doesn't say the table is plain), else from the
 * primary device. */
static int xpfx_read(shl_erofs *e, const struct erd_inode *packed, void *buf, size_t len, uint64_t pos)
{
	size_t got;
	int rc;

	if (!packed)
		return shl_erofs__read(e, 0, buf, len, pos);
	if ((rc = shl_erofs__pread_inode(e, packed, buf, len, pos, &got)))
		return rc;
	if (got != len)
		return shl_err(SHL_EFORMAT, "erofs: long xattr prefix table beyond the packed inode");
	return 0;
}

int shl_erofs__load_xprefixes(shl_erofs *e)
{
	struct erd_inode packed_ino, *packed = NULL;
	uint64_t pos = (uint64_t)e->xprefix_start * 4;
	uint8_t b[2 + 1 + ERD_NAME_MAX];
	int rc;

	if (!e->xprefix_count)
		return 0;
	if (e->packed_nid && !(e->feature_compat & COMPAT_PLAIN_XATTR_PFX)) {
		if ((rc = shl_erofs__inode(e, e->packed_nid, &packed_ino)))
			return shl_err_ctx(rc, "erofs: packed inode");
		/* usually compressed: then only entries using the table fail */
		if (packed_ino.layout != ERD_LAYOUT_FLAT_PLAIN && packed_ino.layout != ERD_LAYOUT_FLAT_INLINE &&
		    packed_ino.layout != ERD_LAYOUT_CHUNK_BASED)
			return 0;
		packed = &packed_ino;
	}
	e->xprefixes = calloc(e->xprefix_count, sizeof(*e->xprefixes));
	if (!e->xprefixes)
		return shl_err(SHL_ENOMEM, "out of memory");
	for (unsigned i = 0; i < e->xprefix_count; i++) {
		struct erd_xprefix *x = &e->xprefixes[i];
		unsigned len;
		pos = (pos + 3) & ~(uint64_t)3;
		if ((rc = xpfx_read(e, packed, b, 2, pos)))
			return shl_err_ctx(rc, "erofs: long xattr prefix %u", i);
		len = erd_le16(b);
		if (len < 1 || len > 1 + ERD_NAME_MAX)
			return shl_err(SHL_EFORMAT, "erofs: long xattr prefix %u has length %u", i, len);
		if ((rc = xpfx_read(e, packed, b + 2, len, pos + 2)))
			return shl_err_ctx(rc, "erofs: long xattr prefix %u", i);
		x->base_index = b[2];
		x->infix_len = (uint8_t)(len - 1);
		memcpy(x->infix, b + 3, len - 1);
		if (memchr(x->infix, '\0', x->infix_len))
			return shl_err(SHL_EFORMAT, "erofs: NUL byte in long xattr prefix %u", i);
		pos += 2 + len;
	}
	return 0;
}

/* Build the full name of entry `h` (4-byte header, then the name) and call
 * fn with its value. */
static int emit(shl_erofs *e, uint64_t nid, const uint8_t *ent, shl_erofs_xattr_fn fn, void *ctx)
{
	char name[32 + 2 * ERD_NAME_MAX + 1];
	unsigned nl = ent[0], index = ent[1];
	size_t vl = erd_le16(ent + 2), n = 0;
	const char *pfx;

	if (index & 0x80) {
		const struct erd_xprefix *x;
		if ((index & 0x7f) >= e->xprefix_count)
			return shl_err(SHL_EFORMAT, "erofs nid %llu: xattr uses long prefix %u of %u",
				       NID(nid), index & 0x7f, e->xprefix_count);
		if (!e->xprefixes)
			return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: long xattr prefixes in a compressed "
				       "packed inode are not supported", NID(nid));
		x = &e->xprefixes[index & 0x7f];
		if (!(pfx = short_prefix(x->base_index)))
			return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: xattr name index %u not supported",
				       NID(nid), x->base_index);
		n = strlen(pfx);
		memcpy(name, pfx, n);
		memcpy(name + n, x->infix, x->infix_len);
		n += x->infix_len;
	} else {
		if (!(pfx = short_prefix(index)))
			return shl_err(SHL_EUNSUPPORTED, "erofs nid %llu: xattr name index %u not supported",
				       NID(nid), index);
		n = strlen(pfx);
		memcpy(name, pfx, n);
	}
	memcpy(name + n, ent + 4, nl);
	n += nl;
	name[n] = '\0';
	if (memchr(ent + 4, '\0', nl))
		return shl_err(SHL_EFORMAT, "erofs nid %llu: NUL byte in an xattr name", NID(nid));
	return fn(ctx, name, ent + 4 + nl, vl);
}

int shl_erofs_xattrs(shl_erofs *e, uint64_t nid, shl_erofs_xattr_fn fn, void *ctx)
{
	struct erd_inode ino;
	uint8_t *body = NULL, *ent = NULL;
	uint32_t shared, pos;
	int rc = shl_erofs__inode(e, nid, &ino);

	if (rc || !ino.xattr_isize)
		return rc;
	/* at most 12 + 4 * 65534 bytes (u16 i_xattr_icount) */
	body = malloc(ino.xattr_isize);
	if (!body) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shl_erofs__read(e, 0, body, ino.xattr_isize, ino.iloc + ino.isize))) {
		shl_err_ctx(rc, "erofs nid %llu: xattrs", NID(nid));
		goto out;
	}
	shared = body[4];
	if (12u + 4u * shared > ino.xattr_isize) {
		rc = shl_err(SHL_EFORMAT, "erofs nid %llu: %u shared xattrs don't fit in %u bytes",
			     NID(nid), shared, ino.xattr_isize);
		goto out;
	}
	for (pos = 12u + 4u * shared; pos < ino.xattr_isize;) {
		uint32_t left = ino.xattr_isize - pos, need;
		if (left < 4) {
			rc = shl_err(SHL_EFORMAT, "erofs nid %llu: truncated inline xattr", NID(nid));
			goto out;
		}
		need = 4u + body[pos] + erd_le16(body + pos + 2);
		if (need > left) {
			rc = shl_err(SHL_EFORMAT, "erofs nid %llu: inline xattr of %u bytes overruns the %u left",
				     NID(nid), need, left);
			goto out;
		}
		if ((rc = emit(e, nid, body + pos, fn, ctx)))
			goto out;
		pos += (need + 3) & ~3u;
	}
	if (shared && !(ent = malloc(ENTRY_MAX))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (uint32_t i = 0; i < shared; i++) {
		uint32_t id = erd_le32(body + 12 + 4 * i);
		uint64_t at = ((uint64_t)e->xattr_blkaddr << e->blkbits) + (uint64_t)id * 4;
		if ((rc = shl_erofs__read(e, 0, ent, 4, at)) ||
		    (rc = shl_erofs__read(e, 0, ent + 4, (size_t)ent[0] + erd_le16(ent + 2), at + 4))) {
			shl_err_ctx(rc, "erofs nid %llu: shared xattr %u", NID(nid), id);
			goto out;
		}
		if ((rc = emit(e, nid, ent, fn, ctx)))
			goto out;
	}
out:
	free(body);
	free(ent);
	return rc;
}
