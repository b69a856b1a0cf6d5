/*
 * store/tarparse.c - layer tar headers -> fstree, with libarchive.
 *
 * libarchive reads the already-decompressed stream straight out of the
 * instream's buffers (no copy). The data offset of a regular file is
 * libarchive's consumed-byte counter right after its header, which equals the
 * position in the tar for ustar, pax and GNU long-name headers; it must be
 * 512-aligned or the EROFS index could not point at it. Data is skipped, not
 * read (the bytes still flow through the instream, which hashes and stores
 * them). The only file that includes <archive.h> for layer tars.
 */
#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/tarparse.h"
#include "util/err.h"

struct src {
	shl_instream *in;
	int err;           /* shale error code from the instream, if any */
};

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **buf)
{
	struct src *s = ctx;
	size_t len = 0;
	int rc = shl_instream_next(s->in, buf, &len);

	(void)a;
	if (rc) {
		s->err = rc;
		return -1;
	}
	return (la_ssize_t)len;
}

/* POSIX.1e ACLs (SCHILY.acl.*) -> the system.posix_acl_* xattr value:
 * le32 version 2, then {le16 tag, le16 perm, le32 id} sorted by tag, id. */
struct acl_ent {
	uint16_t tag, perm;
	uint32_t id;
};

static int cmp_acl(const void *pa, const void *pb)
{
	const struct acl_ent *a = pa, *b = pb;
	if (a->tag != b->tag)
		return a->tag < b->tag ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

static int acl_to_xattr(shl_fstree *t, uint32_t ino, struct archive_entry *e, int type,
			const char *xname, const char *path)
{
	struct acl_ent ents[256];
	int n = 0, etype, perm, tag, id, rc = 0;
	const char *name;
	uint8_t buf[4 + 256 * 8];

	if (archive_entry_acl_reset(e, type) <= 0)
		return 0;
	while (archive_entry_acl_next(e, type, &etype, &perm, &tag, &id, &name) == ARCHIVE_OK) {
		uint16_t t16;
		switch (tag) {
		case ARCHIVE_ENTRY_ACL_USER_OBJ: t16 = 0x01; id = -1; break;
		case ARCHIVE_ENTRY_ACL_USER: t16 = 0x02; break;
		case ARCHIVE_ENTRY_ACL_GROUP_OBJ: t16 = 0x04; id = -1; break;
		case ARCHIVE_ENTRY_ACL_GROUP: t16 = 0x08; break;
		case ARCHIVE_ENTRY_ACL_MASK: t16 = 0x10; id = -1; break;
		case ARCHIVE_ENTRY_ACL_OTHER: t16 = 0x20; id = -1; break;
		default:
			return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': unsupported ACL entry", path);
		}
		if (n == 256)
			return shl_err(SHL_ELIMIT, "tar entry '%s': more than 256 ACL entries", path);
		ents[n].tag = t16;
		ents[n].perm = (uint16_t)(((perm & ARCHIVE_ENTRY_ACL_READ) ? 4 : 0) |
					  ((perm & ARCHIVE_ENTRY_ACL_WRITE) ? 2 : 0) |
					  ((perm & ARCHIVE_ENTRY_ACL_EXECUTE) ? 1 : 0));
		ents[n].id = (uint32_t)id;
		n++;
	}
	if (n == 0)
		return 0;
	qsort(ents, (size_t)n, sizeof(ents[0]), cmp_acl);
	buf[0] = 2;
	buf[1] = buf[2] = buf[3] = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *p = buf + 4 + 8 * i;
		p[0] = (uint8_t)ents[i].tag;
		p[1] = (uint8_t)(ents[i].tag >> 8);
		p[2] = (uint8_t)ents[i].perm;
		p[3] = (uint8_t)(ents[i].perm >> 8);
		for (int k = 0; k < 4; k++)
			p[4 + k] = (uint8_t)(ents[i].id >> (8 * k));
	}
	rc = shl_fstree_add_xattr(t, ino, xname, buf, 4 + 8 * (size_t)n);
	return rc;
}

static int add_entry(shl_fstree *t, struct archive *a, struct archive_entry *e, const char *path)
{
	shl_fsattr at;
	uint32_t ino = SHL_FS_NONE;
	const char *hl = archive_entry_hardlink(e);
	unsigned ftype = archive_entry_filetype(e);
	int rc;

	memset(&at, 0, sizeof(at));
	if (archive_entry_sparse_count(e) > 0)
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': sparse files are not supported", path);
	at.mode = (uint32_t)archive_entry_mode(e);
	at.uid = (uint32_t)archive_entry_uid(e);
	at.gid = (uint32_t)archive_entry_gid(e);
	if (archive_entry_uid(e) < 0 || archive_entry_uid(e) > UINT32_MAX ||
	    archive_entry_gid(e) < 0 || archive_entry_gid(e) > UINT32_MAX)
		return shl_err(SHL_EFORMAT, "tar entry '%s': uid/gid out of range", path);
	if (archive_entry_mtime_is_set(e)) {
		at.mtime = (int64_t)archive_entry_mtime(e);
		at.mtime_ns = (uint32_t)archive_entry_mtime_nsec(e);
	}
	if (hl) {
		at.hardlink = hl;
	} else if (ftype == AE_IFREG) {
		la_int64_t size = archive_entry_size(e);
		la_int64_t off = archive_filter_bytes(a, 0);
		if (size < 0 || off < 0)
			return shl_err(SHL_EFORMAT, "tar entry '%s': bad size", path);
		at.size = (uint64_t)size;
		at.data_off = (uint64_t)off;
	} else if (ftype == AE_IFLNK) {
		at.symlink = archive_entry_symlink(e);
		if (!at.symlink)
			at.symlink = archive_entry_symlink_utf8(e);
	} else if (ftype == AE_IFCHR || ftype == AE_IFBLK) {
		at.rdev_major = (uint32_t)archive_entry_rdevmajor(e);
		at.rdev_minor = (uint32_t)archive_entry_rdevminor(e);
	} else if (ftype != AE_IFDIR && ftype != AE_IFIFO && ftype != AE_IFSOCK) {
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': unsupported entry type 0%o", path, ftype);
	}
	if ((rc = shl_fstree_add(t, path, &at, &ino)))
		return rc;
	if (ino == SHL_FS_NONE)
		return 0;
	if (archive_entry_xattr_reset(e) > 0) {
		const char *name;
		const void *value;
		size_t size;
		while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
			if ((rc = shl_fstree_add_xattr(t, ino, name, value, size)))
				return shl_err_ctx(rc, "tar entry '%s'", path);
		}
	}
	if ((rc = acl_to_xattr(t, ino, e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, "system.posix_acl_access", path)) ||
	    (rc = acl_to_xattr(t, ino, e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, "system.posix_acl_default", path)))
		return rc;
	return 0;
}

int shl_tarparse(shl_fstree *t, shl_instream *in)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	struct src s = { in, 0 };
	char last[256] = "";
	int rc = 0, r, n = 0;

	if (!a)
		return shl_err(SHL_ENOMEM, "out of memory");
	archive_read_support_format_tar(a);
	archive_read_support_filter_none(a);
	if (archive_read_open(a, &s, NULL, read_cb, NULL) != ARCHIVE_OK) {
		if (s.err)
			rc = s.err;
		else
			rc = shl_err(SHL_EFORMAT, "not a tar archive: %s", archive_error_string(a));
		goto out;
	}
	for (;;) {
		const char *path;
		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (s.err) {
			rc = s.err;
			goto out;
		}
		if (r < ARCHIVE_WARN) {
			const char *msg = archive_error_string(a);
			if (n == 0)
				rc = shl_err(SHL_EFORMAT, "not a tar archive: %s", msg ? msg : "unrecognized");
			else
				rc = shl_err(SHL_EFORMAT, "tar: %s (after entry '%s', offset %lld)",
					     msg ? msg : "read error", last,
					     (long long)archive_filter_bytes(a, 0));
			goto out;
		}
		path = archive_entry_pathname(e);
		if (!path)
			path = archive_entry_pathname_utf8(e);
		if (!path) {
			rc = shl_err(SHL_EFORMAT, "tar entry without a name after '%s'", last);
			goto out;
		}
		snprintf(last, sizeof(last), "%s", path);
		if ((rc = add_entry(t, a, e, path)))
			goto out;
		n++;
		r = archive_read_data_skip(a);
		if (s.err) {
			rc = s.err;
			goto out;
		}
		if (r < ARCHIVE_WARN) {
			const char *msg = archive_error_string(a);
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': %s", last, msg ? msg : "truncated data");
			goto out;
		}
	}
out:
	archive_read_free(a);
	return rc;
}
