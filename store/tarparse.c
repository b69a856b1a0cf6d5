/*
 * store/tarparse.c - layer tar headers -> fstree, with libarchive.
 *
 * libarchive reads the already-decompressed stream straight out of the
 * instream's buffers (no copy) and only the tar format is enabled. The data
 * offset of a regular file is libarchive's consumed-byte counter right after
 * its header; data is skipped, not read (the bytes still flow through the
 * instream, which hashes and stores them). The only file that includes
 * <archive.h> for layer tars.
 *
 * libarchive is lenient where the layer consumers (Go's archive/tar in docker
 * and containerd) are strict, and some of its leniency would make the index
 * disagree with the tar. So the parser keeps the last stream bytes in reach
 * (the current instream buffer plus a 1 KiB tail of the ones before) and
 * checks every entry against its raw header block, which ends exactly at the
 * data offset:
 * - the block must be a valid header (else the data does not follow the
 *   header: GNU sparse 1.0 maps, old GNU sparse extension blocks);
 * - its type flag must be one we index ('0', NUL, '7', '1'..'6'): libarchive
 *   turns unknown types, GNU 'S' (sparse), 'M' and 'N' into regular files;
 * - a regular file's data must fill exactly its own record (pax
 *   SCHILY.realsize / GNU.sparse.realsize change the size but not the bytes);
 * - hardlinks and directories must carry no data (libarchive skips a pax
 *   hardlink's body and does not skip a '0'-typed "dir/" body; Go does the
 *   opposite in both cases, so the two would walk different headers).
 * A lone end-of-archive block followed by more data is rejected as Go does.
 *
 * Names: ustar/GNU names are copied raw (no hdrcharset option, so libarchive
 * has no conversion). pax strings are converted from UTF-8 to the current
 * locale, with NFC normalization; the parse runs under a thread-local "C"
 * locale, where every non-ASCII string fails that conversion and libarchive
 * keeps the raw bytes (an ARCHIVE_WARN with errno ARCHIVE_ERRNO_FILE_FORMAT,
 * the only warning accepted). Note: the "hdrcharset=BINARY" read option does not
 * exist for this purpose (it names an iconv charset and fails for BINARY).
 *
 * POSIX.1e ACLs (pax SCHILY.acl.access/default, GNU tar --acls, bsdtar)
 * become system.posix_acl_access/default xattrs; the group bits of the mode
 * are the ACL mask, as on Linux. NFSv4 ACLs (SCHILY.acl.ace) have no Linux
 * representation and are ignored, as docker and containerd ignore all of them.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/tarparse.h"
#include "util/err.h"

#define BLK 512u
#define TAIL_SZ 1024u           /* stream bytes kept from before the current buffer */
#define MAX_TAR (1ull << 41)    /* EROFS index mode: 2^32 blocks of 512 bytes */
#define MAX_ACL 512             /* entries of one ACL */
/* libarchive's ARCHIVE_ERRNO_FILE_FORMAT (private header): EFTYPE where it
 * exists, else EILSEQ; set with ARCHIVE_WARN by a failed name conversion */
#ifdef EFTYPE
#define CONV_ERRNO EFTYPE
#else
#define CONV_ERRNO EILSEQ
#endif
#define SHOWN 512               /* bytes of the previous entry's name kept for messages */

struct src {
	shl_instream *in;
	int err;                /* shale error code from the instream, if any */
	const uint8_t *cur;     /* the buffer libarchive holds now */
	size_t cur_len;
	uint64_t cur_start;     /* its stream offset */
	uint8_t tail[TAIL_SZ];  /* stream bytes [cur_start - tail_len, cur_start) */
	size_t tail_len;
};

static la_ssize_t read_cb(struct archive *a, void *ctx, const void **buf)
{
	struct src *s = ctx;
	size_t len = 0;
	int rc;

	(void)a;
	/* keep the end of the buffer being given up: a header that ends in the
	 * next buffer may have started in it */
	if (s->cur_len >= TAIL_SZ) {
		memcpy(s->tail, s->cur + s->cur_len - TAIL_SZ, TAIL_SZ);
		s->tail_len = TAIL_SZ;
	} else if (s->cur_len) {
		size_t keep = s->tail_len < TAIL_SZ - s->cur_len ? s->tail_len : TAIL_SZ - s->cur_len;
		memmove(s->tail, s->tail + s->tail_len - keep, keep);
		memcpy(s->tail + keep, s->cur, s->cur_len);
		s->tail_len = keep + s->cur_len;
	}
	s->cur_start += s->cur_len;
	s->cur = NULL;
	s->cur_len = 0;
	if ((rc = shl_instream_next(s->in, buf, &len))) {
		s->err = rc;
		return -1;
	}
	s->cur = *buf;
	s->cur_len = len;
	return (la_ssize_t)len;
}

/* Copy stream bytes [pos, pos + len) if still in reach; -1 if not. */
static int stream_bytes(const struct src *s, uint64_t pos, uint8_t *out, size_t len)
{
	uint64_t lo = s->cur_start - s->tail_len, hi = s->cur_start + s->cur_len;

	if (pos < lo || pos > hi || len > hi - pos)
		return -1;
	while (len) {
		size_t n;
		if (pos < s->cur_start) {
			size_t back = (size_t)(s->cur_start - pos);
			n = len < back ? len : back;
			memcpy(out, s->tail + s->tail_len - back, n);
		} else {
			n = len;
			memcpy(out, s->cur + (pos - s->cur_start), n);
		}
		out += n;
		pos += n;
		len -= n;
	}
	return 0;
}

/* Is this 512-byte block a tar header with a valid checksum? The checksum
 * field is octal after optional spaces; POSIX sums unsigned bytes, some old
 * tars summed signed ones (libarchive accepts both, so do we). */
static int is_header(const uint8_t *h)
{
	int64_t want = 0, usum = 0, ssum = 0;
	unsigned i = 148;
	int digits = 0;

	for (unsigned k = 148; k < 156; k++)
		if (h[k] != ' ' && h[k] != '\0' && (h[k] < '0' || h[k] > '7'))
			return 0;
	while (i < 156 && h[i] == ' ')
		i++;
	for (; i < 156 && h[i] >= '0' && h[i] <= '7'; i++, digits++)
		want = want * 8 + (h[i] - '0');
	if (!digits)
		return 0;
	for (i = 0; i < BLK; i++) {
		uint8_t c = (i >= 148 && i < 156) ? ' ' : h[i];
		usum += c;
		ssum += (int8_t)c;
	}
	return want == usum || want == ssum;
}

/* POSIX.1e ACL -> system.posix_acl_* xattr value: le32 version 2, then
 * {le16 tag, le16 perm, le32 id} sorted by tag, then id. */
struct acl_ent {
	uint16_t tag, perm;
	uint32_t id;
};

struct acl_val {
	size_t len;             /* 0: no ACL of this type */
	int mask;               /* perm of the MASK entry, -1 if none */
	uint8_t buf[4 + MAX_ACL * 8];
};

static int cmp_acl(const void *pa, const void *pb)
{
	const struct acl_ent *a = pa, *b = pb;

	if (a->tag != b->tag)
		return a->tag < b->tag ? -1 : 1;
	return (a->id > b->id) - (a->id < b->id);
}

static int build_acl(struct archive_entry *e, int type, struct acl_val *v, const char *path)
{
	struct acl_ent *ents = NULL;
	int n = 0, etype, perm, tag, id, rc = 0;
	const char *name;

	v->len = 0;
	v->mask = -1;
	if (archive_entry_acl_reset(e, type) <= 0)
		return 0;
	if (!(ents = malloc(MAX_ACL * sizeof(*ents))))
		return shl_err(SHL_ENOMEM, "out of memory");
	while (archive_entry_acl_next(e, type, &etype, &perm, &tag, &id, &name) == ARCHIVE_OK) {
		uint16_t t16;
		int named = 0;
		switch (tag) {
		case ARCHIVE_ENTRY_ACL_USER_OBJ: t16 = 0x01; break;
		case ARCHIVE_ENTRY_ACL_USER: t16 = 0x02; named = 1; break;
		case ARCHIVE_ENTRY_ACL_GROUP_OBJ: t16 = 0x04; break;
		case ARCHIVE_ENTRY_ACL_GROUP: t16 = 0x08; named = 1; break;
		case ARCHIVE_ENTRY_ACL_MASK: t16 = 0x10; break;
		case ARCHIVE_ENTRY_ACL_OTHER: t16 = 0x20; break;
		default:
			rc = shl_err(SHL_EUNSUPPORTED, "tar entry '%s': unsupported ACL entry tag %d",
				     path, tag);
			goto out;
		}
		if (named && id < 0) {
			/* GNU tar writes "user:name:rw-" without the id; we must
			 * not resolve names against this host's passwd */
			rc = shl_err(SHL_EUNSUPPORTED, "tar entry '%s': ACL entry for %s '%s' has no numeric id",
				     path, t16 == 0x02 ? "user" : "group", name ? name : "?");
			goto out;
		}
		if (n == MAX_ACL) {
			rc = shl_err(SHL_ELIMIT, "tar entry '%s': more than %d ACL entries", path, MAX_ACL);
			goto out;
		}
		ents[n].tag = t16;
		ents[n].perm = (uint16_t)(((perm & ARCHIVE_ENTRY_ACL_READ) ? 4 : 0) |
					  ((perm & ARCHIVE_ENTRY_ACL_WRITE) ? 2 : 0) |
					  ((perm & ARCHIVE_ENTRY_ACL_EXECUTE) ? 1 : 0));
		ents[n].id = named ? (uint32_t)id : UINT32_MAX; /* ACL_UNDEFINED_ID */
		if (t16 == 0x10)
			v->mask = ents[n].perm;
		n++;
	}
	if (n == 0)
		goto out;
	qsort(ents, (size_t)n, sizeof(ents[0]), cmp_acl);
	for (int i = 1; i < n; i++) {
		if (ents[i].tag == ents[i - 1].tag && ents[i].id == ents[i - 1].id) {
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': duplicate ACL entry", path);
			goto out;
		}
	}
	v->buf[0] = 2;
	v->buf[1] = v->buf[2] = v->buf[3] = 0;
	for (int i = 0; i < n; i++) {
		uint8_t *p = v->buf + 4 + 8 * i;
		p[0] = (uint8_t)ents[i].tag;
		p[1] = (uint8_t)(ents[i].tag >> 8);
		p[2] = (uint8_t)ents[i].perm;
		p[3] = (uint8_t)(ents[i].perm >> 8);
		for (int k = 0; k < 4; k++)
			p[4 + k] = (uint8_t)(ents[i].id >> (8 * k));
	}
	v->len = 4 + 8 * (size_t)n;
out:
	free(ents);
	return rc;
}

struct ctx {
	shl_fstree *t;
	struct archive *a;
	struct src s;
	struct acl_val acl[2];  /* access, default */
};

/* Index one entry whose header ends at `off`; *skip receives the number of
 * data bytes Go's reader would step over (checked after libarchive's skip). */
static int add_entry(struct ctx *c, struct archive_entry *e, const char *path, uint64_t off,
		     uint64_t *skip)
{
	shl_fsattr at;
	uint32_t ino = SHL_FS_NONE;
	const char *hl = archive_entry_hardlink(e);
	unsigned ftype = archive_entry_filetype(e);
	la_int64_t size = archive_entry_size(e);
	uint8_t h[BLK];
	int rc;

	memset(&at, 0, sizeof(at));
	*skip = 0;
	if (archive_entry_sparse_count(e) > 0)
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': sparse files are not supported", path);
	if (off % BLK)
		return shl_err(SHL_EFORMAT, "tar entry '%s': header ends at offset %llu, not 512-aligned",
			       path, (unsigned long long)off);
	if (off < BLK || stream_bytes(&c->s, off - BLK, h, BLK))
		return shl_err(SHL_EFORMAT, "tar entry '%s': header at offset %llu out of reach (internal)",
			       path, (unsigned long long)off);
	if (!is_header(h))
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': data does not follow the header "
			       "(GNU sparse file?)", path);
	switch (h[156]) {
	case '0': case '\0': case '7':
	case '1': case '2': case '3': case '4': case '5': case '6':
		break;
	case 'S':
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': sparse files are not supported", path);
	default:
		if (h[156] > 0x20 && h[156] < 0x7f)
			return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': unsupported entry type '%c'",
				       path, h[156]);
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': unsupported entry type 0x%02x",
			       path, h[156]);
	}
	if (h[156] == '1' && !hl)
		return shl_err(SHL_EFORMAT, "tar entry '%s': hardlink without a target", path);
	if (size < 0)
		return shl_err(SHL_EFORMAT, "tar entry '%s': negative size", path);
	if (hl && size > 0)
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': hardlink with data", path);
	if (ftype == AE_IFDIR && size > 0 && h[156] != '5')
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': directory with data", path);
	/* '1'..'6' are header-only in Go whatever their size says */
	if ((h[156] < '1' || h[156] > '6') && (uint64_t)size <= MAX_TAR)
		*skip = ((uint64_t)size + BLK - 1) & ~(uint64_t)(BLK - 1);

	if (archive_entry_uid(e) < 0 || archive_entry_uid(e) > UINT32_MAX ||
	    archive_entry_gid(e) < 0 || archive_entry_gid(e) > UINT32_MAX)
		return shl_err(SHL_EFORMAT, "tar entry '%s': uid/gid out of range", path);
	at.uid = (uint32_t)archive_entry_uid(e);
	at.gid = (uint32_t)archive_entry_gid(e);
	if (archive_entry_mtime_is_set(e)) {
		long ns = archive_entry_mtime_nsec(e);
		at.mtime = (int64_t)archive_entry_mtime(e);
		at.mtime_ns = ns >= 0 && ns < 1000000000L ? (uint32_t)ns : 0;
	}
	if ((rc = build_acl(e, ARCHIVE_ENTRY_ACL_TYPE_ACCESS, &c->acl[0], path)) ||
	    (rc = build_acl(e, ARCHIVE_ENTRY_ACL_TYPE_DEFAULT, &c->acl[1], path)))
		return rc;
	at.mode = (uint32_t)archive_entry_mode(e) & 07777;
	if (c->acl[0].len && c->acl[0].mask >= 0) /* libarchive put group:: there */
		at.mode = (at.mode & ~070u) | ((uint32_t)c->acl[0].mask << 3);
	at.mode |= ftype;

	if (hl) {
		at.hardlink = hl;
	} else if (ftype == AE_IFREG) {
		if ((uint64_t)size > MAX_TAR || off > MAX_TAR - (uint64_t)size)
			return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': data of %lld bytes would end "
				       "beyond the 2 TiB limit of indexed layers", path, (long long)size);
		at.size = (uint64_t)size;
		at.data_off = off;
	} else if (ftype == AE_IFLNK) {
		at.symlink = archive_entry_symlink(e);
		if (!at.symlink)
			at.symlink = archive_entry_symlink_utf8(e);
	} else if (ftype == AE_IFCHR || ftype == AE_IFBLK) {
		/* the kernel's 32-bit encoding: 12-bit major, 20-bit minor */
		if (archive_entry_rdevmajor(e) >= (1u << 12) || archive_entry_rdevminor(e) >= (1u << 20))
			return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': device number %llu:%llu out of range",
				       path, (unsigned long long)archive_entry_rdevmajor(e),
				       (unsigned long long)archive_entry_rdevminor(e));
		at.rdev_major = (uint32_t)archive_entry_rdevmajor(e);
		at.rdev_minor = (uint32_t)archive_entry_rdevminor(e);
	} else if (ftype != AE_IFDIR && ftype != AE_IFIFO && ftype != AE_IFSOCK) {
		return shl_err(SHL_EUNSUPPORTED, "tar entry '%s': unsupported entry type 0%o", path, ftype);
	}
	if ((rc = shl_fstree_add(c->t, path, &at, &ino)))
		return rc;
	if (ino == SHL_FS_NONE)
		return 0;
	if (archive_entry_xattr_reset(e) > 0) {
		const char *name;
		const void *value;
		size_t vlen;
		while (archive_entry_xattr_next(e, &name, &value, &vlen) == ARCHIVE_OK) {
			if ((rc = shl_fstree_add_xattr(c->t, ino, name, value, vlen)))
				return shl_err_ctx(rc, "tar entry '%s'", path);
		}
	}
	if (c->acl[0].len &&
	    (rc = shl_fstree_add_xattr(c->t, ino, "system.posix_acl_access", c->acl[0].buf, c->acl[0].len)))
		return shl_err_ctx(rc, "tar entry '%s'", path);
	if (c->acl[1].len &&
	    (rc = shl_fstree_add_xattr(c->t, ino, "system.posix_acl_default", c->acl[1].buf, c->acl[1].len)))
		return shl_err_ctx(rc, "tar entry '%s'", path);
	return 0;
}

/* Does the stream start with a tar header or an end-of-archive block? (Only
 * for the wording of an error on the first entry.) */
static int looks_like_tar(const struct src *s)
{
	uint8_t h[BLK];

	if (stream_bytes(s, 0, h, BLK)) /* shorter than a block, or long gone */
		return s->cur_start + s->cur_len >= BLK;
	for (unsigned i = 0; i < BLK; i++)
		if (h[i])
			return is_header(h);
	return 1;
}

/* libarchive's message for the current failure, or the instream's error. */
static int lib_err(struct ctx *c, const char *last, int n)
{
	const char *msg = archive_error_string(c->a);
	long long pos = (long long)archive_filter_bytes(c->a, 0);

	if (c->s.err)
		return c->s.err;
	if (!msg)
		msg = "read error";
	if (n == 0 && c->s.cur_start + c->s.cur_len == 0)
		return shl_err(SHL_EFORMAT, "tar: empty input");
	if (n == 0 && !looks_like_tar(&c->s))
		return shl_err(SHL_EFORMAT, "not a tar archive (%s)", msg);
	if (n == 0)
		return shl_err(SHL_EFORMAT, "tar: %s (first entry, offset %lld)", msg, pos);
	return shl_err(SHL_EFORMAT, "tar: %s (after entry '%s', offset %lld)", msg, last, pos);
}

/* The end marker: Go's reader, like POSIX, wants two zero blocks; a single
 * one followed by more data is an error there, so it is here too. */
static int check_end(struct ctx *c, uint64_t entry_end, const char *last)
{
	uint64_t pos = (uint64_t)archive_filter_bytes(c->a, 0);

	if (pos - entry_end == BLK && c->s.cur_start + c->s.cur_len > pos)
		return shl_err(SHL_EFORMAT, "tar: data after a single end-of-archive block at offset %llu "
			       "(after entry '%s')", (unsigned long long)pos, last);
	return 0;
}

int shl_tarparse(shl_fstree *t, shl_instream *in)
{
	struct ctx *c = calloc(1, sizeof(*c));
	struct archive_entry *e;
	locale_t cloc = (locale_t)0, old = (locale_t)0;
	char last[SHOWN] = "";
	uint64_t entry_end = 0;
	int rc = 0, r, n = 0;

	if (!c)
		return shl_err(SHL_ENOMEM, "out of memory");
	c->t = t;
	c->s.in = in;
	/* libarchive picks its pax string conversion from the locale: make it
	 * "C" for this thread whatever the application set (see the top) */
	if (!(cloc = newlocale(LC_ALL_MASK, "C", (locale_t)0))) {
		rc = shl_err_sys(SHL_ENOMEM, "newlocale");
		goto out;
	}
	old = uselocale(cloc);
	if (!(c->a = archive_read_new())) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if (archive_read_support_format_tar(c->a) != ARCHIVE_OK ||
	    archive_read_support_filter_none(c->a) != ARCHIVE_OK) {
		rc = shl_err(SHL_EFORMAT, "libarchive: %s", archive_error_string(c->a));
		goto out;
	}
	if (archive_read_open(c->a, &c->s, NULL, read_cb, NULL) != ARCHIVE_OK) {
		rc = lib_err(c, last, 0);
		goto out;
	}
	for (;;) {
		const char *path;
		uint64_t off, skip;

		r = archive_read_next_header(c->a, &e);
		if (c->s.err) {
			rc = c->s.err;
			goto out;
		}
		if (r == ARCHIVE_EOF) {
			rc = check_end(c, entry_end, last);
			break;
		}
		/* accept only the "kept the raw bytes" warning of a failed charset
		 * conversion; other warnings mean attributes were dropped */
		if (r != ARCHIVE_OK && !(r == ARCHIVE_WARN && archive_errno(c->a) == CONV_ERRNO)) {
			rc = lib_err(c, last, n);
			goto out;
		}
		path = archive_entry_pathname(e);
		if (!path)
			path = archive_entry_pathname_utf8(e);
		if (!path) {
			rc = n ? shl_err(SHL_EFORMAT, "tar: entry without a name after '%s'", last)
			       : shl_err(SHL_EFORMAT, "tar: first entry has no name");
			goto out;
		}
		off = (uint64_t)archive_filter_bytes(c->a, 0);
		if ((rc = add_entry(c, e, path, off, &skip)))
			goto out;
		snprintf(last, sizeof(last), "%s", path);
		n++;
		r = archive_read_data_skip(c->a);
		if (c->s.err) {
			rc = c->s.err;
			goto out;
		}
		if (r != ARCHIVE_OK) {
			const char *msg = archive_error_string(c->a);
			rc = shl_err(SHL_EFORMAT, "tar entry '%s': %s", last, msg ? msg : "truncated data");
			goto out;
		}
		entry_end = (uint64_t)archive_filter_bytes(c->a, 0);
		if (entry_end - off != skip) {
			/* e.g. pax "size" on a symlink, SCHILY.realsize, a sparse map */
			rc = shl_err(SHL_EUNSUPPORTED, "tar entry '%s': %llu bytes of data stored where "
				     "its header implies %llu (sparse or size extension?)", last,
				     (unsigned long long)(entry_end - off), (unsigned long long)skip);
			goto out;
		}
	}
out:
	if (c->a)
		archive_read_free(c->a);
	if (cloc) {
		uselocale(old);
		freelocale(cloc);
	}
	free(c);
	return rc;
}
