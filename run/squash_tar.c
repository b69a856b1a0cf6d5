/*
 * run/squash_tar.c - write a merged file tree as one flat tar (pax where
 * needed: long names, xattrs, large ids, nanosecond mtimes) with libarchive's
 * writer; a hardlinked inode's second and later names become hardlink
 * entries. Entries come in tree order (parents first, names sorted), so the
 * same image always gives the same bytes.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "run/squash_int.h"
#include "util/err.h"

struct tctx {
	struct archive *a;
	shl_fstree *t;
	const int *fds;
	uint32_t nsrc;
	char *buf;
	char **first;   /* per inode: the path of its first name (hardlinks) */
};

static int aerr(struct tctx *c, const char *what)
{
	int saved = errno; /* libarchive's fd writer may not record the write's errno */
	int e = archive_errno(c->a) ? archive_errno(c->a) : saved;
	const char *msg = archive_error_string(c->a);

	if (e == ENOSPC || e == EDQUOT)
		return shl_err(SHL_ENOSPC, "tar: %s: no space left on the output's filesystem", what);
	return shl_err(SHL_EIO, "tar: %s: %s", what, msg ? msg : e ? strerror(e) : "write failed");
}

static int emit(struct tctx *c, uint32_t ino, const char *path)
{
	shl_fsinode *in = shl_fstree_inode(c->t, ino);
	struct archive_entry *e = archive_entry_new();
	int rc = 0;

	if (!e)
		return shl_err(SHL_ENOMEM, "out of memory");
	archive_entry_set_pathname(e, path);
	archive_entry_set_uid(e, in->uid);
	archive_entry_set_gid(e, in->gid);
	archive_entry_set_mtime(e, (time_t)in->mtime, in->mtime_ns);
	if (!S_ISDIR(in->mode) && c->first[ino]) {
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, in->mode & 07777);
		archive_entry_set_hardlink(e, c->first[ino]);
		archive_entry_set_size(e, 0);
		if (archive_write_header(c->a, e) != ARCHIVE_OK)
			rc = aerr(c, path);
		archive_entry_free(e);
		return rc;
	}
	if (!S_ISDIR(in->mode) && in->nlink > 1 && !(c->first[ino] = strdup(path))) {
		archive_entry_free(e);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	archive_entry_set_mode(e, in->mode);
	if (S_ISREG(in->mode))
		archive_entry_set_size(e, (la_int64_t)in->size);
	if (S_ISLNK(in->mode))
		archive_entry_set_symlink(e, in->symlink);
	if (S_ISCHR(in->mode) || S_ISBLK(in->mode))
		archive_entry_set_rdev(e, makedev(in->rdev_major, in->rdev_minor));
	for (uint32_t i = 0; i < in->nxattrs; i++)
		archive_entry_xattr_add_entry(e, in->xattrs[i].name, in->xattrs[i].value, in->xattrs[i].len);
	if (archive_write_header(c->a, e) != ARCHIVE_OK)
		rc = aerr(c, path);
	archive_entry_free(e);
	if (!rc && S_ISREG(in->mode)) {
		int fd = c->fds[in->src < c->nsrc ? in->src : 0];
		uint64_t off = 0;
		while (off < in->size && !rc) {
			size_t want = in->size - off > (1u << 20) ? (1u << 20) : (size_t)(in->size - off);
			ssize_t n = pread(fd, c->buf, want, (off_t)(in->data_off + off));
			if (n <= 0)
				rc = n < 0 ? shl_err_sys(SHL_EIO, "read layer data") : shl_err(SHL_EFORMAT, "layer tar too short");
			else if (archive_write_data(c->a, c->buf, (size_t)n) != n)
				rc = aerr(c, path);
			off += n > 0 ? (uint64_t)n : 0;
		}
	}
	return rc;
}

static int walk(struct tctx *c, uint32_t di, char *path, size_t len, int depth)
{
	shl_fsinode *d = shl_fstree_inode(c->t, di);
	int rc = 0;

	if (depth > 4096)
		return shl_err(SHL_ELIMIT, "tar: directories nested too deep");
	for (uint32_t k = 0; k < d->nchildren && !rc; k++) {
		const shl_fsdentry *de = shl_fstree_dentry(c->t, d->children[k]);
		size_t nl = len + (len ? 1 : 0) + de->name_len;
		if (nl + 2 > 65536)
			return shl_err(SHL_ELIMIT, "tar: path too long");
		if (len)
			path[len] = '/';
		memcpy(path + len + (len ? 1 : 0), de->name, de->name_len + 1);
		if (!(rc = emit(c, de->inode, path)) && S_ISDIR(shl_fstree_inode(c->t, de->inode)->mode))
			rc = walk(c, de->inode, path, nl, depth + 1);
		path[len] = '\0';
	}
	return rc;
}

static la_ssize_t write_cb(struct archive *a, void *ctx, const void *buf, size_t len)
{
	int fd = *(int *)ctx;
	const char *p = buf;
	size_t left = len;

	(void)a;
	while (left) {
		ssize_t n = write(fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		left -= (size_t)n;
	}
	return (la_ssize_t)len;
}

int shl_squash__tar(shl_fstree *t, const int *fds, uint32_t nsrc, int out_fd)
{
	struct tctx c = { archive_write_new(), t, fds, nsrc, malloc(1u << 20), NULL };
	char *path = malloc(65536);
	int rc = 0, fd = out_fd;

	c.first = calloc(shl_fstree_ninodes(t) + 1, sizeof(char *));
	if (!c.a || !c.buf || !path || !c.first) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if (ftruncate(out_fd, 0) != 0 || lseek(out_fd, 0, SEEK_SET) != 0) {
		rc = shl_err_sys(SHL_EIO, "tar: truncate output");
		goto out;
	}
	archive_write_set_format_pax_restricted(c.a);
	archive_write_set_bytes_per_block(c.a, 10240);
	if (archive_write_open(c.a, &fd, NULL, write_cb, NULL) != ARCHIVE_OK) {
		rc = aerr(&c, "open");
		goto out;
	}
	path[0] = '\0';
	if (!(rc = emit(&c, shl_fstree_root(t), "./")))
		rc = walk(&c, shl_fstree_root(t), path, 0, 0);
	if (!rc && archive_write_close(c.a) != ARCHIVE_OK)
		rc = aerr(&c, "close");
out:
	for (uint32_t i = 0; c.first && i < shl_fstree_ninodes(t); i++)
		free(c.first[i]);
	free(c.first);
	if (c.a)
		archive_write_free(c.a);
	free(c.buf);
	free(path);
	return rc;
}
