/*
 * load/archive_in.c - the outer input: a tar archive read with libarchive
 * (possibly gzip/zstd/xz/bzip2-compressed; from a file or a pipe, never
 * spooled) or an OCI layout directory, handed entry by entry to the entry
 * table (load/entries.c). An uncompressed archive in a regular file is
 * "seekable": only its headers and JSON documents are read here (libarchive
 * seeks over the rest) and each entry's data offset is recorded, so layers
 * can be converted later, only if needed, in parallel, with pread.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "load/load_int.h"
#include "util/err.h"

#define DIR_DEPTH_MAX 8

/* ---- tar ------------------------------------------------------------------ */

struct ar_ctx {
	struct archive *a;
};

static ssize_t ar_read(void *ctx, void *buf, size_t len)
{
	struct ar_ctx *c = ctx;
	la_ssize_t n = archive_read_data(c->a, buf, len);

	if (n < 0)
		return shl_err(SHL_EFORMAT, "archive: %s", archive_error_string(c->a));
	return n;
}

/* Walk the archive. `seek`: fd is a regular file holding an uncompressed tar
 * that starts at offset `base`; entries are located, not read. */
static int read_tar(struct loader *L, int fd, int seek, uint64_t base)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	struct ar_ctx ac = { a };
	char name[4096];
	int rc = 0, r;

	name[0] = '\0';
	if (!a)
		return shl_err(SHL_ENOMEM, "out of memory");
	archive_read_support_format_tar(a);
	if (!seek)
		archive_read_support_filter_all(a);
	if (archive_read_open_fd(a, fd, 1 << 20) != ARCHIVE_OK) {
		rc = shl_err(SHL_EFORMAT, "archive: %s", archive_error_string(a));
		goto out;
	}
	for (;;) {
		struct entry_src src = { .rd = ar_read, .rd_ctx = &ac };
		struct entry_loc loc = { NULL, 0 };
		const char *raw;
		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			if (name[0])
				rc = shl_err(SHL_EFORMAT, "archive: after entry '%s': %s", name, archive_error_string(a));
			else
				rc = shl_err(SHL_EFORMAT, "archive: %s", archive_error_string(a));
			goto out;
		}
		if (!(raw = archive_entry_pathname(e))) {
			rc = shl_err(SHL_EFORMAT, "archive: entry without a name");
			goto out;
		}
		if ((rc = shl_load__norm_name(raw, name, sizeof(name))))
			goto out;
		if (!name[0])
			continue; /* "./" */
		switch (archive_entry_filetype(e)) {
		case AE_IFDIR:
			break;
		case AE_IFLNK:
			rc = shl_load__take_link(L, name, archive_entry_symlink(e) ? archive_entry_symlink(e) : "", 0);
			break;
		case AE_IFREG:
			if (archive_entry_hardlink(e)) {
				char target[4096];
				if (!(rc = shl_load__norm_name(archive_entry_hardlink(e), target, sizeof(target))))
					rc = shl_load__take_link(L, name, target, 1);
				break;
			}
			/* the data offset: bytes the tar reader consumed so far */
			loc.off = base + (uint64_t)archive_filter_bytes(a, 0);
			rc = shl_load__take_file(L, name, archive_entry_size_is_set(e) ? archive_entry_size(e) : -1,
						 &src, seek ? &loc : NULL);
			break;
		default:
			rc = shl_err(SHL_EFORMAT, "archive entry '%s': unexpected file type", name);
		}
		if (rc)
			goto out;
	}
out:
	archive_read_free(a);
	return rc;
}

/* ---- OCI layout directory ------------------------------------------------- */

struct fd_ctx {
	int fd;
	const char *path;
};

static ssize_t fd_read(void *ctx, void *buf, size_t len)
{
	struct fd_ctx *c = ctx;

	for (;;) {
		ssize_t n = read(c->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return shl_err_sys(SHL_EIO, "read %s", c->path);
	}
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Files of the directory in name order (deterministic errors). */
static int list_dir(const char *path, char ***out, size_t *n)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **v = NULL;
	size_t cap = 0;
	int rc = 0;

	*n = 0;
	if (!d)
		return shl_err_sys(SHL_EIO, "open %s", path);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (*n >= SHL_LOAD_MAX_ITEMS) {
			rc = shl_err(SHL_ELIMIT, "%s: more than %u files", path, SHL_LOAD_MAX_ITEMS);
			break;
		}
		if (*n == cap) {
			char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*nv));
			if (!nv) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				break;
			}
			v = nv;
		}
		if (!(v[*n] = strdup(de->d_name))) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		(*n)++;
	}
	closedir(d);
	if (v)
		qsort(v, *n, sizeof(*v), name_cmp);
	*out = v;
	return rc;
}

static int read_dir_rec(struct loader *L, const char *root, const char *rel, int depth)
{
	char *path = NULL, **names = NULL;
	size_t n = 0;
	int rc;

	if (depth > DIR_DEPTH_MAX)
		return shl_err(SHL_ELIMIT, "%s: directories nested too deep", root);
	if (asprintf(&path, "%s%s%s", root, *rel ? "/" : "", rel) < 0)
		return shl_err(SHL_ENOMEM, "out of memory");
	rc = list_dir(path, &names, &n);
	for (size_t i = 0; i < n && !rc; i++) {
		char *sub = NULL, *full = NULL;
		struct stat st;
		if (strlen(rel) + strlen(names[i]) + 2 > 4096) {
			rc = shl_err(SHL_ELIMIT, "%s/%s: path too long", path, names[i]);
			break;
		}
		if (asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", names[i]) < 0 ||
		    asprintf(&full, "%s/%s", root, sub) < 0) {
			free(sub);
			rc = shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		if (lstat(full, &st) != 0) {
			rc = shl_err_sys(SHL_EIO, "stat %s", full);
		} else if (S_ISDIR(st.st_mode)) {
			rc = read_dir_rec(L, root, sub, depth + 1);
		} else if (S_ISLNK(st.st_mode)) {
			rc = shl_err(SHL_EFORMAT, "%s: symlinks are not allowed in an OCI layout", full);
		} else if (S_ISREG(st.st_mode)) {
			struct fd_ctx fc = { open(full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), full };
			struct entry_src src = { .rd = fd_read, .rd_ctx = &fc };
			struct entry_loc loc = { full, 0 };
			if (fc.fd < 0) {
				rc = shl_err_sys(SHL_EIO, "open %s", full);
			} else {
				rc = shl_load__take_file(L, sub, st.st_size, &src, &loc);
				close(fc.fd);
			}
		} else {
			rc = shl_err(SHL_EFORMAT, "%s: not a regular file or directory", full);
		}
		free(sub);
		free(full);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(path);
	return rc;
}

/* ---- the input -------------------------------------------------------------- */

/* An uncompressed tar: "ustar" magic in the first header (or an empty
 * archive's zero block). Anything else goes through libarchive's filters. */
static int is_plain_tar(int fd, uint64_t base)
{
	uint8_t b[512];
	ssize_t n = pread(fd, b, sizeof(b), (off_t)base);

	if (n != (ssize_t)sizeof(b))
		return 0;
	return !memcmp(b + 257, "ustar", 5);
}

int shl_load__read_input(struct loader *L)
{
	struct stat st;
	int fd = L->o->fd;
	uint64_t base = 0;

	if (L->o->input) {
		if (stat(L->o->input, &st) != 0)
			return shl_err_sys(SHL_EIO, "open %s", L->o->input);
		if (S_ISDIR(st.st_mode)) {
			L->seekable = 1;
			return read_dir_rec(L, L->o->input, "", 0);
		}
		fd = open(L->o->input, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return shl_err_sys(SHL_EIO, "open %s", L->o->input);
		L->fd = fd;
		L->own_fd = 1;
	}
	if (fstat(fd, &st) != 0)
		return shl_err_sys(SHL_EIO, "stat %s", L->o->input ? L->o->input : "stdin");
	if (S_ISREG(st.st_mode)) {
		off_t cur = lseek(fd, 0, SEEK_CUR);
		base = cur > 0 ? (uint64_t)cur : 0;
		if (is_plain_tar(fd, base)) {
			L->fd = fd;
			L->seekable = 1;
			return read_tar(L, fd, 1, base);
		}
	}
	return read_tar(L, fd, 0, 0);
}
