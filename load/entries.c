/*
 * load/entries.c - the loader's entry table: what each archive entry (or
 * file of an OCI layout directory) is, decided from its name and its first
 * bytes as it streams past. Small JSON documents are kept in memory; layers
 * are converted right away from a stream, or only located in a seekable
 * input (converted later if an image needs them, load/convert.c); blobs the
 * store already has are skipped without being read. Duplicate names are
 * accepted only with identical content.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load/load_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hash.h"

#define PEEK 512

/* ---- the entry source ------------------------------------------------------ */

static void src_progress(struct entry_src *e, size_t n)
{
	double now;

	e->done += n;
	if (!e->L || !e->L->o->progress || e->done >= e->total || (now = shl_clock_now()) - e->last < 0.2)
		return;
	e->last = now;
	e->L->o->progress(e->L->ctx, e->name, e->done, e->total);
}

ssize_t shl_load__src_read(void *ctx, void *buf, size_t len)
{
	struct entry_src *e = ctx;
	ssize_t n;

	if (e->peek_off < e->peek_len) {
		size_t k = e->peek_len - e->peek_off;
		if (k > len)
			k = len;
		memcpy(buf, e->peek + e->peek_off, k);
		e->peek_off += k;
		src_progress(e, k);
		return (ssize_t)k;
	}
	n = e->rd(e->rd_ctx, buf, len);
	if (n < 0)
		e->failed = 1;
	else
		src_progress(e, (size_t)n);
	return n;
}

/* Fill up to `len` bytes (short only at the entry's end). */
static ssize_t src_fill(struct entry_src *e, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = shl_load__src_read(e, buf + got, len - got);
		if (n < 0)
			return n;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* sha256 of the rest of the entry */
static int src_hash(struct entry_src *e, char digest[72])
{
	shl_sha256 *h = NULL;
	uint8_t *buf = malloc(1 << 16), d[32];
	ssize_t n;
	int rc;

	if (!buf || (rc = shl_sha256_new(&h)) != 0) {
		free(buf);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	while ((n = shl_load__src_read(e, buf, 1 << 16)) > 0)
		shl_sha256_update(h, buf, (size_t)n);
	rc = n < 0 ? (int)n : 0;
	shl_sha256_final(h, d);
	shl_digest_str(d, digest);
	shl_sha256_free(h);
	free(buf);
	return rc;
}

/* ---- the table ------------------------------------------------------------- */

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

/* Index items [0, n) in a fresh table of `cap` slots (a power of two). */
static int rehash(struct loader *L, size_t n, size_t cap)
{
	size_t *h = calloc(cap, sizeof(*h));

	if (!h)
		return shl_err(SHL_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		size_t k = name_hash(L->items[i].name) & (cap - 1);
		while (h[k])
			k = (k + 1) & (cap - 1);
		h[k] = i + 1;
	}
	free(L->hash);
	L->hash = h;
	L->hashcap = cap;
	return 0;
}

/* Index the last item (L->nitems - 1). */
static int hash_insert(struct loader *L)
{
	size_t k;

	if (L->nitems * 2 > L->hashcap)
		return rehash(L, L->nitems, L->hashcap ? L->hashcap * 2 : 256);
	k = name_hash(L->items[L->nitems - 1].name) & (L->hashcap - 1);
	while (L->hash[k])
		k = (k + 1) & (L->hashcap - 1);
	L->hash[k] = L->nitems;
	return 0;
}

/* A new item named `name` (the table owns a copy). */
static int add_item(struct loader *L, const char *name, int kind, struct item **out)
{
	struct item *it;
	int rc;

	if (L->nitems >= SHL_LOAD_MAX_ITEMS)
		return shl_err(SHL_ELIMIT, "archive: more than %u entries", SHL_LOAD_MAX_ITEMS);
	if (L->nitems == L->capitems) {
		size_t cap = L->capitems ? L->capitems * 2 : 32;
		struct item *v = realloc(L->items, cap * sizeof(*v));
		if (!v)
			return shl_err(SHL_ENOMEM, "out of memory");
		L->items = v;
		L->capitems = cap;
	}
	it = &L->items[L->nitems];
	memset(it, 0, sizeof(*it));
	it->kind = kind;
	if (!(it->name = strdup(name)))
		return shl_err(SHL_ENOMEM, "out of memory");
	L->nitems++;
	if ((rc = hash_insert(L)))
		return rc;
	*out = it;
	return 0;
}

struct item *shl_load__find(struct loader *L, const char *name)
{
	if (!L->hashcap || !name)
		return NULL;
	for (size_t k = name_hash(name) & (L->hashcap - 1); L->hash[k]; k = (k + 1) & (L->hashcap - 1))
		if (!strcmp(L->items[L->hash[k] - 1].name, name))
			return &L->items[L->hash[k] - 1];
	return NULL;
}

struct item *shl_load__follow(struct loader *L, const char *name)
{
	struct item *it = shl_load__find(L, name);

	for (int hops = 0; it && it->kind == ITEM_LINK && hops < 16; hops++)
		it = shl_load__find(L, it->target);
	return it && it->kind != ITEM_LINK ? it : NULL;
}

struct item *shl_load__find_blob(struct loader *L, const char *digest)
{
	char name[100];
	struct item *it;
	uint8_t d[32];

	if (!digest || shl_digest_parse(digest, d) != 0)
		return NULL;
	snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	it = shl_load__follow(L, name);
	/* containers/image "dir:" layouts (podman save --format docker-dir/oci-dir
	 * into a directory) name blobs by bare hex */
	return it ? it : shl_load__follow(L, digest + 7);
}

void shl_load__items_free(struct loader *L)
{
	for (size_t i = 0; i < L->nitems; i++) {
		struct item *it = &L->items[i];
		if (it->kind == ITEM_LAYER && !it->in_batch)
			shl_store__unstage(&it->staged);
		free(it->name);
		free(it->data);
		free(it->target);
		free(it->path);
		free(it->err_msg);
	}
	free(L->items);
	free(L->hash);
	L->items = NULL;
	L->hash = NULL;
	L->nitems = L->capitems = L->hashcap = 0;
}

/* ---- names ----------------------------------------------------------------- */

/* "./a//b" -> "a/b"; absolute paths and ".." are refused. */
int shl_load__norm_name(const char *in, char *out, size_t cap)
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

/* blobs/sha256/<hex> (or a bare <hex>, "dir:" layouts) -> "sha256:<hex>", else "" */
static void blob_digest_of(const char *name, char out[72])
{
	const char *hex = !strncmp(name, "blobs/sha256/", 13) ? name + 13 : name;
	uint8_t d[32];
	char tmp[80];

	out[0] = '\0';
	if (strlen(hex) != 64)
		return;
	snprintf(tmp, sizeof(tmp), "sha256:%s", hex);
	if (shl_digest_parse(tmp, d) == 0)
		memcpy(out, tmp, 72); /* "sha256:" + 64 hex + NUL */
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

/* ---- duplicates -------------------------------------------------------------- */

static int differ(const char *name)
{
	return shl_err(SHL_EFORMAT, "archive entry '%s' appears twice with different content", name);
}

/* A second regular file named like an earlier entry: fine if the bytes are
 * the same (tar -r appends, concatenated layouts), an error otherwise. */
static int dup_file(struct loader *L, struct item *old, const char *name, struct entry_src *src)
{
	char now[72], before[72];
	int rc;

	if (old->kind == ITEM_LINK || old->kind == ITEM_BAD)
		return differ(name);
	if ((rc = src_hash(src, now)))
		return shl_err_ctx(rc, "archive entry '%s'", name);
	if (old->kind == ITEM_KNOWN) {
		snprintf(before, sizeof(before), "%s", old->claimed);
	} else if (old->digest[0]) {
		snprintf(before, sizeof(before), "%s", old->digest);
	} else if ((rc = shl_load__hash_item(L, old, before))) {
		return shl_err_ctx(rc, "archive entry '%s'", name);
	}
	return strcmp(now, before) ? differ(name) : 0;
}

/* ---- one regular file ---------------------------------------------------------- */

static int take_meta(struct loader *L, struct item *it, int64_t size, struct entry_src *src)
{
	uint8_t d[32];
	ssize_t got;

	if (size > (int64_t)SHL_LOAD_META_CAP)
		return shl_err(SHL_ELIMIT, "archive entry '%s': JSON document of %lld bytes exceeds the %u MiB cap",
			       it->name, (long long)size, SHL_LOAD_META_CAP >> 20);
	if (L->meta_total + (size_t)size > SHL_LOAD_META_TOTAL)
		return shl_err(SHL_ELIMIT, "archive: more than %u MiB of JSON documents", SHL_LOAD_META_TOTAL >> 20);
	it->kind = ITEM_META;
	if (!(it->data = malloc((size_t)size + 1)))
		return shl_err(SHL_ENOMEM, "out of memory");
	got = src_fill(src, (uint8_t *)it->data, (size_t)size);
	if (got < 0)
		return shl_err_ctx((int)got, "archive entry '%s'", it->name);
	if (got != size)
		return shl_err(SHL_EFORMAT, "archive entry '%s': truncated", it->name);
	{
		/* the entry must end where its header said */
		uint8_t extra;
		ssize_t more = src_fill(src, &extra, 1);
		if (more < 0)
			return shl_err_ctx((int)more, "archive entry '%s'", it->name);
		if (more > 0)
			return shl_err(SHL_EFORMAT, "archive entry '%s': longer than its size", it->name);
	}
	it->len = (size_t)got;
	it->data[it->len] = '\0';
	L->meta_total += it->len;
	shl_sha256_buf(it->data, it->len, d);
	shl_digest_str(d, it->digest);
	if (it->claimed[0] && strcmp(it->claimed, it->digest))
		return shl_err(SHL_EDIGEST, "blob %s: content has digest %s", it->claimed, it->digest);
	return 0;
}

/* Convert a layer from the stream now. A conversion that fails on the
 * content is remembered (the entry may be unreferenced: any file that merely
 * looks like a tar); a failing source (truncated archive, I/O) is fatal. */
static int take_layer_now(struct loader *L, struct item *it, struct entry_src *src)
{
	char known[72];
	int rc;

	it->kind = ITEM_LAYER;
	if (L->fn)
		L->fn(L->ctx, "Loading layer", it->name);
	src->L = L;
	src->name = it->name;
	src->done = 0;
	src->total = (uint64_t)it->size;
	src->last = shl_clock_now();
	/* keyed by the blob digest its name claims: the per-layer lock makes a
	 * concurrent load of the same blob wait, then find it stored */
	rc = shl_store__stage_key(L->s, it->claimed[0] ? it->claimed : NULL, shl_load__src_read, src, &it->staged,
				  known);
	src->L = NULL;
	if (!rc && L->o->progress)
		L->o->progress(L->ctx, it->name, (uint64_t)it->size, (uint64_t)it->size);
	if (rc && (src->failed || rc == SHL_ENOMEM || rc == SHL_ENOSPC || rc == SHL_EIO || rc == SHL_EDIGEST))
		return shl_err_ctx(rc, "archive entry '%s'", it->name);
	if (rc) {
		it->kind = ITEM_BAD;
		it->err_code = rc;
		it->err_msg = strdup(shl_error_last());
		shl_error_clear();
		return 0; /* the archive reader skips the rest of the entry */
	}
	if (known[0]) {
		/* stored meanwhile by another process: not read */
		it->kind = ITEM_KNOWN;
		snprintf(it->diff_id, sizeof(it->diff_id), "%s", known);
		return 0;
	}
	snprintf(it->digest, sizeof(it->digest), "%s", it->staged.info.raw_digest);
	snprintf(it->diff_id, sizeof(it->diff_id), "%s", it->staged.info.diff_id);
	it->compression = it->staged.info.compression;
	it->raw_size = it->staged.info.raw_size;
	if (it->claimed[0] && strcmp(it->claimed, it->digest))
		return shl_err(SHL_EDIGEST, "blob %s: content has digest %s", it->claimed, it->digest);
	if (shl_store__has_layer(L->s, it->diff_id)) {
		shl_store__unstage(&it->staged); /* stored already: keep nothing */
		it->existed = 1;
	}
	return 0;
}

int shl_load__take_file(struct loader *L, const char *name, int64_t size, struct entry_src *src,
			const struct entry_loc *loc)
{
	uint8_t peek[PEEK];
	char claimed[72], diff[72];
	struct item *it, *dup = shl_load__find(L, name);
	ssize_t n;
	int rc;

	if (dup)
		return dup_file(L, dup, name, src);
	if (size < 0)
		return shl_err(SHL_EFORMAT, "archive entry '%s': no size", name);
	blob_digest_of(name, claimed);
	/* skopeo/podman docker-archives name layers "<diff_id hex>.tar" */
	if (!claimed[0] && strlen(name) == 68 && !strcmp(name + 64, ".tar")) {
		char tmp[80];
		snprintf(tmp, sizeof(tmp), "%.64s", name);
		blob_digest_of(tmp, diff);
		if (diff[0] && shl_store__has_layer(L->s, diff)) {
			if ((rc = add_item(L, name, ITEM_KNOWN, &it)))
				return rc;
			snprintf(it->claimed, sizeof(it->claimed), "%s", diff);
			snprintf(it->diff_id, sizeof(it->diff_id), "%s", diff);
			return 0;
		}
	}
	/* a blob the store already holds (by diff_id or compressed digest): its
	 * bytes are not read; the image refers to the verified stored layer by
	 * diff_id, so a lying name cannot smuggle content in */
	if (claimed[0] && (shl_store__has_layer(L->s, claimed) || shl_store__alias(L->s, claimed, diff) == 0)) {
		if ((rc = add_item(L, name, ITEM_KNOWN, &it)))
			return rc;
		snprintf(it->claimed, sizeof(it->claimed), "%s", claimed);
		snprintf(it->diff_id, sizeof(it->diff_id), "%s", shl_store__has_layer(L->s, claimed) ? claimed : diff);
		return 0;
	}
	shl_error_clear();
	n = src_fill(src, peek, sizeof(peek));
	if (n < 0)
		return shl_err_ctx((int)n, "archive entry '%s'", name);
	src->peek = peek;
	src->peek_len = (size_t)n;
	src->peek_off = 0;
	if ((rc = add_item(L, name, ITEM_OTHER, &it)))
		return rc;
	snprintf(it->claimed, sizeof(it->claimed), "%s", claimed);
	it->size = (uint64_t)size;
	if (looks_json(peek, (size_t)n))
		return take_meta(L, it, size, src);
	if (loc) {
		/* seekable: remember where it is; read it only if needed */
		it->off = loc->off;
		if (loc->path && !(it->path = strdup(loc->path)))
			return shl_err(SHL_ENOMEM, "out of memory");
		if (looks_layer(peek, (size_t)n))
			it->kind = ITEM_PENDING;
		return 0;
	}
	if (!looks_layer(peek, (size_t)n)) {
		/* VERSION files and the like: content unused, hashed for duplicates */
		if ((rc = src_hash(src, it->digest)))
			return shl_err_ctx(rc, "archive entry '%s'", name);
		return 0;
	}
	return take_layer_now(L, it, src);
}

/* ---- links ------------------------------------------------------------------- */

/* A symlink (target relative to the entry's dir) or hardlink (from the root).
 * The target is resolved lexically; climbing out of the archive is refused. */
int shl_load__take_link(struct loader *L, const char *name, const char *target, int from_root)
{
	struct item *it, *dup;
	char joined[8200], norm[4096];
	const char *slash = from_root ? NULL : strrchr(name, '/');
	const char *p = joined;
	size_t w = 0;
	int rc;

	if (!*target)
		return shl_err(SHL_EFORMAT, "archive entry '%s': link with an empty target", name);
	if (target[0] == '/')
		return shl_err(SHL_EFORMAT, "archive entry '%s': link to absolute path '%s'", name, target);
	if (strlen(name) + strlen(target) + 2 > sizeof(joined))
		return shl_err(SHL_ELIMIT, "archive entry '%s': link target too long", name);
	{
		size_t dl = slash ? (size_t)(slash - name) + 1 : 0, tl = strlen(target);
		memcpy(joined, name, dl);
		memcpy(joined + dl, target, tl + 1);
	}
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
				return shl_err(SHL_EFORMAT, "archive entry '%s': link '%s' escapes the archive", name,
					       target);
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
	if (!strcmp(norm, name) || !norm[0])
		return shl_err(SHL_EFORMAT, "archive entry '%s': link to itself", name);
	if ((dup = shl_load__find(L, name))) {
		if (dup->kind == ITEM_LINK && !strcmp(dup->target, norm))
			return 0;
		return differ(name);
	}
	if ((rc = add_item(L, name, ITEM_LINK, &it)))
		return rc;
	return (it->target = strdup(norm)) ? 0 : shl_err(SHL_ENOMEM, "out of memory");
}
