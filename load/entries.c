/*
 * load/entries.c - walk the outer archive (libarchive: tar, possibly gzip/
 * zstd/xz/bzip2-compressed; file or pipe) or an OCI layout directory, entry
 * by entry as it streams. Small JSON documents are kept in memory; anything
 * else that is referenced by path or digest later is converted right away
 * into a staged layer (so a pipe is never spooled); blobs whose digest the
 * store already knows are skipped without being read.
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
#include "util/hash.h"

#define PEEK 512

/* A byte source for one entry: a peeked prefix, then the rest. */
struct entry_src {
	const uint8_t *peek;
	size_t peek_len, peek_off;
	struct archive *a; /* or fd */
	int fd;
};

static ssize_t entry_read(void *ctx, void *buf, size_t len)
{
	struct entry_src *e = ctx;

	if (e->peek_off < e->peek_len) {
		size_t n = e->peek_len - e->peek_off;
		if (n > len)
			n = len;
		memcpy(buf, e->peek + e->peek_off, n);
		e->peek_off += n;
		return (ssize_t)n;
	}
	if (e->a) {
		la_ssize_t n = archive_read_data(e->a, buf, len);
		if (n < 0)
			return shl_err(SHL_EFORMAT, "archive: %s", archive_error_string(e->a));
		return n;
	}
	for (;;) {
		ssize_t n = read(e->fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return shl_err_sys(SHL_EIO, "read");
	}
}

/* Fill up to `len` bytes from the entry (short only at its end). */
static ssize_t entry_fill(struct entry_src *e, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = entry_read(e, buf + got, len - got);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int add_item(struct loader *L, struct item **out)
{
	if (L->nitems == L->capitems) {
		size_t cap = L->capitems ? L->capitems * 2 : 32;
		struct item *v = realloc(L->items, cap * sizeof(*v));
		if (!v)
			return shl_err(SHL_ENOMEM, "out of memory");
		L->items = v;
		L->capitems = cap;
	}
	*out = &L->items[L->nitems++];
	memset(*out, 0, sizeof(**out));
	return 0;
}

struct item *shl_load__find(struct loader *L, const char *name)
{
	for (size_t i = 0; i < L->nitems; i++)
		if (!strcmp(L->items[i].name, name))
			return &L->items[i];
	return NULL;
}

struct item *shl_load__find_blob(struct loader *L, const char *digest)
{
	char name[100];
	struct item *it;

	if (strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71)
		return NULL;
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	it = shl_load__find(L, name);
	/* containers/image "dir:" layouts (podman save --format docker-dir/oci-dir
	 * into a directory) name blobs by bare hex */
	return it ? it : shl_load__find(L, digest + 7);
}

/* "./a//b" -> "a/b"; absolute paths and ".." are refused. */
static int norm_name(const char *in, char *out, size_t cap)
{
	size_t w = 0;
	const char *p = in;

	if (in[0] == '/')
		return shl_err(SHL_EFORMAT, "archive entry '%s': absolute path", in);
	while (*p) {
		const char *s = p;
		size_t n;
		while (*p && *p != '/')
			p++;
		n = (size_t)(p - s);
		while (*p == '/')
			p++;
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return shl_err(SHL_EFORMAT, "archive entry '%s': path contains '..'", in);
		if (w + n + 2 > cap)
			return shl_err(SHL_ELIMIT, "archive entry '%.100s...': path too long", in);
		if (w)
			out[w++] = '/';
		memcpy(out + w, s, n);
		w += n;
	}
	out[w] = '\0';
	return 0;
}

/* blobs/sha256/<hex> -> "sha256:<hex>" (empty if not a blob path) */
static void blob_digest_of(const char *name, char out[72])
{
	const char *hex = !strncmp(name, "blobs/sha256/", 13) ? name + 13 : name;

	out[0] = '\0';
	if (strlen(hex) == 64) {
		uint8_t d[32];
		char tmp[80];
		snprintf(tmp, sizeof(tmp), "sha256:%s", hex);
		if (shl_digest_parse(tmp, d) == 0)
			memcpy(out, tmp, 72); /* "sha256:" + 64 hex + NUL */
	}
}

static int looks_json(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
			continue;
		return p[i] == '{' || p[i] == '[';
	}
	return 0;
}

/* tar ("ustar" magic, or an all-zero end-of-archive block) or a compressed
 * stream (gzip, zstd, xz, bzip2 magic) */
static int looks_layer(const uint8_t *p, size_t n)
{
	if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b)
		return 1;
	if (n >= 4 && !memcmp(p, "\x28\xb5\x2f\xfd", 4))
		return 1;
	if (n >= 6 && !memcmp(p, "\xfd" "7zXZ", 5))
		return 1;
	if (n >= 3 && !memcmp(p, "BZh", 3))
		return 1;
	if (n >= 262 && !memcmp(p + 257, "ustar", 5))
		return 1;
	if (n == PEEK) {
		for (size_t i = 0; i < n; i++)
			if (p[i])
				return 0;
		return 1;
	}
	return 0;
}

/* One regular-file entry. */
static int take_file(struct loader *L, const char *name, int64_t size, struct entry_src *src)
{
	uint8_t peek[PEEK];
	char blob[72];
	struct item *it, *dup = shl_load__find(L, name);
	ssize_t n;
	int rc;

	if (dup)
		return shl_err(SHL_EFORMAT, "archive entry '%s' appears twice", name);
	blob_digest_of(name, blob);
	for (size_t i = 0; !blob[0] && i < L->nskip; i++)
		if (!strcmp(L->skip_name[i], name))
			memcpy(blob, L->skip_diff[i], 72);
	/* skopeo/podman docker-archives name layers "<diff_id hex>.tar" */
	if (!blob[0] && strlen(name) == 68 && !strcmp(name + 64, ".tar")) {
		char tmp[80];
		uint8_t d[32];
		snprintf(tmp, sizeof(tmp), "sha256:%.64s", name);
		if (shl_digest_parse(tmp, d) == 0 && shl_store__has_layer(L->s, tmp))
			memcpy(blob, tmp, 72);
	}
	/* a blob the store already holds (by diff_id or compressed digest): its
	 * bytes are not read; the image still refers to the verified stored layer
	 * by diff_id, so a lying name cannot smuggle content in */
	if (blob[0]) {
		char diff[72];
		if (shl_store__has_layer(L->s, blob) || shl_store__alias(L->s, blob, diff) == 0) {
			if ((rc = add_item(L, &it)))
				return rc;
			it->name = strdup(name);
			it->kind = ITEM_KNOWN;
			snprintf(it->digest, sizeof(it->digest), "%s", blob);
			if (shl_store__has_layer(L->s, blob))
				snprintf(it->diff_id, sizeof(it->diff_id), "%s", blob);
			else
				snprintf(it->diff_id, sizeof(it->diff_id), "%s", diff);
			return it->name ? 0 : shl_err(SHL_ENOMEM, "out of memory");
		}
	}
	n = entry_fill(src, peek, sizeof(peek));
	if (n < 0)
		return shl_err_ctx((int)n, "archive entry '%s'", name);
	src->peek = peek;
	src->peek_len = (size_t)n;
	src->peek_off = 0;
	if ((rc = add_item(L, &it)))
		return rc;
	it->name = strdup(name);
	if (!it->name)
		return shl_err(SHL_ENOMEM, "out of memory");
	if (looks_json(peek, (size_t)n) && size > (int64_t)SHL_LOAD_META_CAP)
		return shl_err(SHL_ELIMIT, "archive entry '%s': JSON document of %lld bytes exceeds the %u MiB cap",
			       name, (long long)size, SHL_LOAD_META_CAP >> 20);
	if (looks_json(peek, (size_t)n) && size >= 0) {
		ssize_t got;
		if (L->meta_total + (size_t)size > SHL_LOAD_META_TOTAL)
			return shl_err(SHL_ELIMIT, "archive: more than %u MiB of JSON documents",
				       SHL_LOAD_META_TOTAL >> 20);
		it->kind = ITEM_META;
		it->data = malloc((size_t)size + 1);
		if (!it->data)
			return shl_err(SHL_ENOMEM, "out of memory");
		got = entry_fill(src, (uint8_t *)it->data, (size_t)size);
		if (got < 0)
			return shl_err_ctx((int)got, "archive entry '%s'", name);
		if (got != size)
			return shl_err(SHL_EFORMAT, "archive entry '%s': truncated", name);
		it->len = (size_t)got;
		it->data[it->len] = '\0';
		L->meta_total += it->len;
		{
			uint8_t d[32];
			shl_sha256_buf(it->data, it->len, d);
			shl_digest_str(d, it->digest);
		}
		if (blob[0] && strcmp(blob, it->digest))
			return shl_err(SHL_EDIGEST, "blob %s: content has digest %s", blob, it->digest);
		return 0;
	}
	if (!looks_layer(peek, (size_t)n)) {
		/* VERSION files and the like: remembered by name, content ignored */
		it->kind = ITEM_OTHER;
		return 0;
	}
	/* a layer: convert it as it streams */
	it->kind = ITEM_LAYER;
	if (L->fn)
		L->fn(L->ctx, "Loading layer", name);
	if ((rc = shl_store__stage(L->s, entry_read, src, &it->staged)))
		return shl_err_ctx(rc, "archive entry '%s'", name);
	snprintf(it->digest, sizeof(it->digest), "%s", it->staged.info.raw_digest);
	snprintf(it->diff_id, sizeof(it->diff_id), "%s", it->staged.info.diff_id);
	it->compression = it->staged.info.compression;
	it->raw_size = it->staged.info.raw_size;
	if (blob[0] && strcmp(blob, it->digest))
		return shl_err(SHL_EDIGEST, "blob %s: content has digest %s", blob, it->digest);
	if (shl_store__has_layer(L->s, it->diff_id)) {
		shl_store__unstage(&it->staged); /* stored already: keep nothing */
		it->existed = 1;
	}
	return 0;
}

/* A symlink (target relative to the entry's dir) or hardlink (from the root). */
static int take_link(struct loader *L, const char *name, const char *target, int from_root)
{
	struct item *it;
	char joined[4096], norm[4096];
	const char *slash = from_root ? NULL : strrchr(name, '/');
	int rc;

	if (target[0] == '/')
		return shl_err(SHL_EFORMAT, "archive entry '%s': link to absolute path '%s'", name, target);
	snprintf(joined, sizeof(joined), "%.*s%s%s", slash ? (int)(slash - name) : 0, name, slash ? "/" : "", target);
	/* resolve "." and ".." lexically; climbing above the root is refused */
	{
		size_t w = 0;
		const char *p = joined;
		norm[0] = '\0';
		while (*p) {
			const char *c = p;
			size_t n;
			while (*p && *p != '/')
				p++;
			n = (size_t)(p - c);
			while (*p == '/')
				p++;
			if (n == 0 || (n == 1 && c[0] == '.'))
				continue;
			if (n == 2 && c[0] == '.' && c[1] == '.') {
				char *up;
				if (w == 0)
					return shl_err(SHL_EFORMAT, "archive entry '%s': link '%s' escapes the archive",
						       name, target);
				up = strrchr(norm, '/');
				w = up ? (size_t)(up - norm) : 0;
				norm[w] = '\0';
				continue;
			}
			if (w + n + 2 > sizeof(norm))
				return shl_err(SHL_ELIMIT, "archive entry '%s': link target too long", name);
			if (w)
				norm[w++] = '/';
			memcpy(norm + w, c, n);
			w += n;
			norm[w] = '\0';
		}
	}
	(void)rc;
	if ((rc = add_item(L, &it)))
		return rc;
	it->kind = ITEM_LINK;
	it->name = strdup(name);
	it->target = strdup(norm);
	return it->name && it->target ? 0 : shl_err(SHL_ENOMEM, "out of memory");
}

/* ---- tar input ------------------------------------------------------------ */

static int read_archive(struct loader *L)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	int rc = 0, r;
	char name[4096];
	const char *what = L->o->input ? L->o->input : "stdin";

	if (!a)
		return shl_err(SHL_ENOMEM, "out of memory");
	archive_read_support_format_tar(a);
	archive_read_support_filter_all(a);
	r = L->o->input ? archive_read_open_filename(a, L->o->input, 1 << 20)
			: archive_read_open_fd(a, L->o->fd, 1 << 20);
	if (r != ARCHIVE_OK) {
		rc = shl_err(SHL_EFORMAT, "%s: %s", what, archive_error_string(a));
		goto out;
	}
	for (;;) {
		struct entry_src src = { NULL, 0, 0, a, -1 };
		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			rc = shl_err(SHL_EFORMAT, "%s: %s", what, archive_error_string(a));
			goto out;
		}
		const char *raw = archive_entry_pathname(e);
		if (!raw) {
			rc = shl_err(SHL_EFORMAT, "%s: entry without a name", what);
			goto out;
		}
		if ((rc = norm_name(raw, name, sizeof(name))))
			goto out;
		switch (archive_entry_filetype(e)) {
		case AE_IFDIR:
			break;
		case AE_IFLNK:
			rc = take_link(L, name, archive_entry_symlink(e) ? archive_entry_symlink(e) : "", 0);
			break;
		case AE_IFREG:
			if (archive_entry_hardlink(e)) {
				rc = take_link(L, name, archive_entry_hardlink(e), 1);
				break;
			}
			rc = take_file(L, name, archive_entry_size_is_set(e) ? archive_entry_size(e) : -1, &src);
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

static int read_dir_rec(struct loader *L, const char *root, const char *rel, int depth)
{
	char path[4200];
	DIR *d;
	struct dirent *de;
	int rc = 0;

	if (depth > 8)
		return shl_err(SHL_ELIMIT, "%s: directories nested too deep", root);
	snprintf(path, sizeof(path), "%s%s%s", root, *rel ? "/" : "", rel);
	d = opendir(path);
	if (!d)
		return shl_err_sys(SHL_EIO, "open %s", path);
	while (!rc && (de = readdir(d))) {
		char sub[4096], full[4200];
		struct stat st;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name);
		snprintf(full, sizeof(full), "%s/%s", root, sub);
		if (lstat(full, &st) != 0) {
			rc = shl_err_sys(SHL_EIO, "stat %s", full);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			rc = read_dir_rec(L, root, sub, depth + 1);
		} else if (S_ISLNK(st.st_mode)) {
			rc = shl_err(SHL_EFORMAT, "%s: symlinks are not allowed in an OCI layout", full);
		} else if (S_ISREG(st.st_mode)) {
			struct entry_src src = { NULL, 0, 0, NULL, -1 };
			src.fd = open(full, O_RDONLY | O_CLOEXEC);
			if (src.fd < 0) {
				rc = shl_err_sys(SHL_EIO, "open %s", full);
				break;
			}
			rc = take_file(L, sub, st.st_size, &src);
			close(src.fd);
		}
	}
	closedir(d);
	return rc;
}

/* ---- first pass over a seekable docker-archive -------------------------- */

struct doc {
	char *name, *data;
	size_t len;
	char *link;
};

static struct doc *find_doc(struct doc *d, size_t n, const char *name)
{
	for (int hops = 0; hops < 16; hops++) {
		struct doc *hit = NULL;
		for (size_t i = 0; i < n; i++)
			if (!strcmp(d[i].name, name))
				hit = &d[i];
		if (!hit || !hit->link)
			return hit;
		name = hit->link;
	}
	return NULL;
}

/*
 * With an uncompressed archive in a regular file, read only its headers and
 * JSON documents first (libarchive seeks over the rest): layers whose
 * diff_id the config names and the store holds are then skipped in the real
 * pass without being read. Only an optimization: any trouble here is ignored
 * and the real pass decides.
 */
static void prepass(struct loader *L)
{
	struct archive *a;
	struct archive_entry *e;
	struct doc *docs = NULL;
	size_t ndocs = 0, total = 0;
	uint8_t magic[6] = { 0 };
	shl_json *m = NULL;
	int fd = open(L->o->input, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (read(fd, magic, sizeof(magic)) != (ssize_t)sizeof(magic) || (magic[0] == 0x1f && magic[1] == 0x8b) ||
	    !memcmp(magic, "\x28\xb5\x2f\xfd", 4) || !memcmp(magic, "\xfd" "7zXZ", 5) || !memcmp(magic, "BZh", 3)) {
		close(fd);
		return;
	}
	close(fd);
	if (!(a = archive_read_new()))
		return;
	archive_read_support_format_tar(a);
	if (archive_read_open_filename(a, L->o->input, 1 << 16) != ARCHIVE_OK)
		goto out;
	while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
		char name[4096];
		const char *raw = archive_entry_pathname(e);
		la_int64_t size = archive_entry_size(e);
		struct doc *nd;
		if (!raw || norm_name(raw, name, sizeof(name)) != 0)
			goto out;
		int is_link = archive_entry_filetype(e) == AE_IFLNK;
		int is_json = archive_entry_filetype(e) == AE_IFREG && size <= (la_int64_t)SHL_LOAD_META_CAP &&
			      strlen(name) > 5 && !strcmp(name + strlen(name) - 5, ".json");
		if (!is_link && !is_json)
			continue;
		if (is_json && (total += (size_t)size) > SHL_LOAD_META_TOTAL)
			goto out;
		nd = realloc(docs, (ndocs + 1) * sizeof(*nd));
		if (!nd)
			goto out;
		docs = nd;
		nd = &docs[ndocs++];
		memset(nd, 0, sizeof(*nd));
		nd->name = strdup(name);
		if (is_link) {
			const char *t = archive_entry_symlink(e);
			const char *slash = strrchr(name, '/');
			char joined[4200], norm[4096];
			snprintf(joined, sizeof(joined), "%.*s%s%s", slash ? (int)(slash - name) : 0, name,
				 slash ? "/" : "", t ? t : "");
			/* "dir/../x.tar" -> "x.tar" (one level is what docker writes) */
			char *dd = strstr(joined, "/../");
			if (dd && !strchr(dd + 4, '/') && !memchr(joined, '/', (size_t)(dd - joined)))
				memmove(joined, dd + 4, strlen(dd + 4) + 1);
			if (norm_name(joined, norm, sizeof(norm)) == 0)
				nd->link = strdup(norm);
		} else {
			nd->data = malloc((size_t)size + 1);
			if (!nd->data || archive_read_data(a, nd->data, (size_t)size) != size)
				goto out;
			nd->len = (size_t)size;
		}
	}
	{
		struct doc *mj = find_doc(docs, ndocs, "manifest.json");
		if (!mj || !mj->data || shl_json_parse(&m, mj->data, mj->len, SHL_LOAD_META_CAP, "manifest.json"))
			goto out;
	}
	for (size_t i = 0; i < shl_json_len(m); i++) {
		shl_json *it = shl_json_at(m, i), *ls = shl_json_get(it, "Layers"), *cfg = NULL, *diffs;
		const char *cp = shl_json_get_str(it, "Config");
		struct doc *cd = cp ? find_doc(docs, ndocs, cp) : NULL;
		if (!cd || !cd->data || shl_json_parse(&cfg, cd->data, cd->len, SHL_CONFIG_CAP, "config"))
			continue;
		diffs = shl_json_get(shl_json_get(cfg, "rootfs"), "diff_ids");
		for (size_t k = 0; k < shl_json_len(ls) && k < shl_json_len(diffs); k++) {
			const char *lp = shl_json_str(shl_json_at(ls, k)), *d = shl_json_str(shl_json_at(diffs, k));
			struct doc *ld = lp ? find_doc(docs, ndocs, lp) : NULL;
			char **nn, **nd2;
			if (!lp || !d || strlen(d) != 71 || !shl_store__has_layer(L->s, d))
				continue;
			if (ld && ld->name)
				lp = ld->name; /* the symlink's final target holds the bytes */
			nn = realloc(L->skip_name, (L->nskip + 1) * sizeof(*nn));
			if (nn)
				L->skip_name = nn;
			nd2 = realloc(L->skip_diff, (L->nskip + 1) * sizeof(*nd2));
			if (nd2)
				L->skip_diff = nd2;
			if (!nn || !nd2)
				break;
			L->skip_name[L->nskip] = strdup(lp);
			L->skip_diff[L->nskip] = strdup(d);
			if (L->skip_name[L->nskip] && L->skip_diff[L->nskip])
				L->nskip++;
		}
		shl_json_put(cfg);
	}
out:
	shl_json_put(m);
	for (size_t i = 0; i < ndocs; i++) {
		free(docs[i].name);
		free(docs[i].data);
		free(docs[i].link);
	}
	free(docs);
	archive_read_free(a);
}

int shl_load__read_input(struct loader *L)
{
	struct stat st;

	if (L->o->input && stat(L->o->input, &st) == 0 && S_ISDIR(st.st_mode))
		return read_dir_rec(L, L->o->input, "", 0);
	if (L->o->input && access(L->o->input, R_OK) != 0)
		return shl_err_sys(SHL_EIO, "open %s", L->o->input);
	if (L->o->input && S_ISREG(st.st_mode))
		prepass(L);
	return read_archive(L);
}
