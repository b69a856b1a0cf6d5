/*
 * store/batch.c - everything one operation adds to the store, committed at
 * once (see the publish protocol in store/store.c). Until commit nothing is
 * visible; freeing an uncommitted batch removes its temp files, so a failed
 * load leaves the store as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

struct blob {
	char digest[72];
	char *val; /* "<media>\n<bytes>" */
	size_t len;
};

struct kv {
	char *key;
	char *val;
	size_t len;
};

struct shl_batch {
	shl_staged *layers;
	char **alias_media;
	size_t nlayers, caplayers;
	struct blob *blobs;
	size_t nblobs, capblobs;
	struct kv *images;
	size_t nimages, capimages;
	struct kv *refs;
	size_t nrefs, caprefs;
	struct kv *aliases;     /* blob digest -> alias record, for stored layers */
	size_t naliases, capaliases;
};

#define GROW(arr, n, cap) do { \
	if ((n) == (cap)) { \
		size_t nc_ = (cap) ? (cap) * 2 : 8; \
		void *np_ = realloc((arr), nc_ * sizeof(*(arr))); \
		if (!np_) \
			return shl_err(SHL_ENOMEM, "out of memory"); \
		(arr) = np_; \
		(cap) = nc_; \
	} \
} while (0)

int shl_batch_new(shl_batch **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : shl_err(SHL_ENOMEM, "out of memory");
}

void shl_batch_free(shl_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->nlayers; i++) {
		shl_store__unstage(&b->layers[i]);
		free(b->alias_media[i]);
	}
	for (size_t i = 0; i < b->nblobs; i++)
		free(b->blobs[i].val);
	for (size_t i = 0; i < b->nimages; i++) {
		free(b->images[i].key);
		free(b->images[i].val);
	}
	for (size_t i = 0; i < b->nrefs; i++) {
		free(b->refs[i].key);
		free(b->refs[i].val);
	}
	for (size_t i = 0; i < b->naliases; i++) {
		free(b->aliases[i].key);
		free(b->aliases[i].val);
	}
	free(b->aliases);
	free(b->layers);
	free(b->alias_media);
	free(b->blobs);
	free(b->images);
	free(b->refs);
	free(b);
}

int shl_batch_add_layer(shl_batch *b, const shl_staged *st, const char *alias_media)
{
	size_t cap = b->caplayers;

	GROW(b->layers, b->nlayers, b->caplayers);
	if (cap != b->caplayers) {
		char **nm = realloc(b->alias_media, b->caplayers * sizeof(*nm));
		if (!nm)
			return shl_err(SHL_ENOMEM, "out of memory");
		b->alias_media = nm;
	}
	b->layers[b->nlayers] = *st;
	b->alias_media[b->nlayers] = alias_media ? strdup(alias_media) : NULL;
	b->nlayers++;
	return 0;
}

int shl_batch_put_alias(shl_batch *b, const char *blob, const char *diff_id, const char *media, uint64_t size)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "{\"diff_id\":\"%s\",\"media_type\":\"%s\",\"size\":%llu}", diff_id, media,
			 (unsigned long long)size);

	if (n < 0 || (size_t)n >= sizeof(buf) || strlen(blob) >= 72)
		return shl_err(SHL_EINVAL, "alias %s: record too long", blob);
	GROW(b->aliases, b->naliases, b->capaliases);
	b->aliases[b->naliases].key = strdup(blob);
	b->aliases[b->naliases].val = strdup(buf);
	b->aliases[b->naliases].len = (size_t)n;
	if (!b->aliases[b->naliases].key || !b->aliases[b->naliases].val) {
		free(b->aliases[b->naliases].key);
		free(b->aliases[b->naliases].val);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	b->naliases++;
	return 0;
}

int shl_batch_put_blob(shl_batch *b, const char *digest, const char *media, const void *data, size_t len)
{
	size_t ml = strlen(media);
	/* manifests and indexes (and manifest lists) 4 MiB, anything else (configs) 16 MiB */
	size_t cap = strstr(media, "manifest") || strstr(media, "index") ? SHL_MANIFEST_CAP : SHL_CONFIG_CAP;

	if (len > cap)
		return shl_err(SHL_ELIMIT, "blob %s (%s): %zu bytes exceed the %zu MiB cap", digest, media, len,
			       cap >> 20);
	if (strlen(digest) != 71 || strncmp(digest, "sha256:", 7) || ml == 0 || memchr(media, '\n', ml))
		return shl_err(SHL_EINVAL, "blob %s: bad digest or media type", digest);
	{
		uint8_t d[32];
		char got[72];
		shl_sha256_buf(data, len, d);
		shl_digest_str(d, got);
		if (strcmp(got, digest))
			return shl_err(SHL_EDIGEST, "blob %s: content has digest %s", digest, got);
	}

	for (size_t i = 0; i < b->nblobs; i++)
		if (!strcmp(b->blobs[i].digest, digest))
			return 0;
	GROW(b->blobs, b->nblobs, b->capblobs);
	struct blob *bl = &b->blobs[b->nblobs];
	bl->val = malloc(ml + 1 + len);
	if (!bl->val)
		return shl_err(SHL_ENOMEM, "out of memory");
	memcpy(bl->val, media, ml);
	bl->val[ml] = '\n';
	memcpy(bl->val + ml + 1, data, len);
	bl->len = ml + 1 + len;
	snprintf(bl->digest, sizeof(bl->digest), "%s", digest);
	b->nblobs++;
	return 0;
}

static int put_kv(struct kv **arr, size_t *n, size_t *cap, const char *key, const char *val, size_t len)
{
	for (size_t i = 0; i < *n; i++) {
		if (!strcmp((*arr)[i].key, key)) {
			char *v = malloc(len + 1);
			if (!v)
				return shl_err(SHL_ENOMEM, "out of memory");
			memcpy(v, val, len);
			free((*arr)[i].val);
			(*arr)[i].val = v;
			(*arr)[i].len = len;
			return 0;
		}
	}
	GROW(*arr, *n, *cap);
	struct kv *e = &(*arr)[*n];
	e->key = strdup(key);
	e->val = malloc(len + 1);
	if (!e->key || !e->val) {
		free(e->key);
		free(e->val);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	memcpy(e->val, val, len);
	e->len = len;
	(*n)++;
	return 0;
}

int shl_batch_put_image(shl_batch *b, const char *manifest, shl_json *rec)
{
	size_t len;
	const char *s = shl_json_dump(rec, 0, &len);
	int rc = put_kv(&b->images, &b->nimages, &b->capimages, manifest, s, len);

	shl_json_put(rec);
	return rc;
}

int shl_batch_set_ref(shl_batch *b, const char *name, const char *manifest)
{
	return put_kv(&b->refs, &b->nrefs, &b->caprefs, name, manifest, strlen(manifest));
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return shl_err_sys(SHL_EIO, "open %s", dir);
	if (fsync(fd) != 0)
		rc = shl_err_sys(SHL_EIO, "fsync %s", dir);
	close(fd);
	return rc;
}

static int layer_record(const shl_staged *st, char **out, size_t *len)
{
	shl_json *j = shl_json_new_object();
	char x1[33], x2[33];
	const char *s;
	int rc;

	if (!j)
		return shl_err(SHL_ENOMEM, "out of memory");
	shl_hex(st->info.tar_xxh3, 16, x1);
	shl_hex(st->info.erofs_xxh3, 16, x2);
	if ((rc = shl_json_set_int(j, "tar_size", (int64_t)st->info.tar_size)) ||
	    (rc = shl_json_set_int(j, "erofs_size", (int64_t)st->info.erofs_size)) ||
	    (rc = shl_json_set_str(j, "tar_xxh3", x1)) || (rc = shl_json_set_str(j, "erofs_xxh3", x2)) ||
	    (rc = shl_json_set_int(j, "entries", (int64_t)st->info.entries))) {
		shl_json_put(j);
		return rc;
	}
	s = shl_json_dump(j, 0, len);
	*out = strdup(s);
	shl_json_put(j);
	return *out ? 0 : shl_err(SHL_ENOMEM, "out of memory");
}

static int in_batch(const shl_batch *b, const char *diff_id)
{
	for (size_t i = 0; i < b->nlayers; i++)
		if (!strcmp(b->layers[i].info.diff_id, diff_id))
			return 1;
	return 0;
}

/* Before anything is published: every layer an image names is in the batch,
 * or recorded in the index with both files present. */
static int check_layers(shl_store *s, const shl_batch *b)
{
	int rc = 0;

	for (size_t i = 0; i < b->nimages && !rc; i++) {
		shl_json *j = NULL, *layers;
		if ((rc = shl_json_parse(&j, b->images[i].val, b->images[i].len, SHL_CONFIG_CAP, "image record")))
			break;
		layers = shl_json_get(j, "layers");
		for (size_t k = 0; k < shl_json_len(layers) && !rc; k++) {
			const char *d = shl_json_get_str(shl_json_at(layers, k), "diff_id");
			char tar[4200], erofs[4200];
			struct stat st;
			if (!d || shl_store_layer_paths(s, d, tar, sizeof(tar), erofs, sizeof(erofs)) != 0) {
				rc = shl_err(SHL_EFORMAT, "image %s: bad layer record", b->images[i].key);
				break;
			}
			if (in_batch(b, d))
				continue;
			if (!shl_store__has_layer(s, d))
				rc = shl_err(SHL_ENOTFOUND, "image %s: layer %s is not stored", b->images[i].key, d);
			else if (stat(tar, &st) != 0 || stat(erofs, &st) != 0)
				rc = shl_err_sys(SHL_ENOTFOUND, "image %s: layer %s: stored file missing", b->images[i].key, d);
		}
		shl_json_put(j);
	}
	return rc;
}

int shl_store_commit(shl_store *s, shl_batch *b)
{
	shl_wtxn *w = NULL;
	int rc = 0, lockfd;

	/* the shared store lock covers check + publish + transaction, so a
	 * removal's sweep can't unlink a file this batch is about to record */
	if ((lockfd = shl_store__lock(s, 0)) < 0)
		return lockfd;
	/* 0. a batch that cannot commit changes nothing */
	if ((rc = check_layers(s, b))) {
		close(lockfd);
		return rc;
	}
	/* 1. publish layer files */
	for (size_t i = 0; i < b->nlayers && !rc; i++) {
		shl_staged *st = &b->layers[i];
		char tar[4200], erofs[4200];
		struct stat sb;
		if (st->published)
			continue;
		shl_store_layer_paths(s, st->info.diff_id, tar, sizeof(tar), erofs, sizeof(erofs));
		/* stored meanwhile (e.g. by a concurrent load): keep those files
		 * (maybe mounted) and drop the temps, same content */
		if (shl_store__has_layer(s, st->info.diff_id) && stat(tar, &sb) == 0 && stat(erofs, &sb) == 0)
			continue;
		if (rename(st->tar_tmp, tar) != 0 || rename(st->erofs_tmp, erofs) != 0)
			rc = shl_err_sys(SHL_EIO, "publish layer %s", st->info.diff_id);
		else
			st->published = 1;
	}
	if (!rc && b->nlayers)
		rc = fsync_dir(s->layers_dir);
	if (!rc)
		shl_store__fault("published");
	/* 2. one transaction */
	if (rc || (rc = shl_index_wbegin(s->ix, &w))) {
		close(lockfd);
		return rc;
	}
	for (size_t i = 0; i < b->nlayers && !rc; i++) {
		shl_staged *st = &b->layers[i];
		char *rec = NULL;
		size_t len;
		if ((rc = layer_record(st, &rec, &len)) == 0)
			rc = shl_index_wput(w, SHL_DB_LAYERS, st->info.diff_id, rec, len);
		free(rec);
		if (!rc && b->alias_media[i] && st->info.compression) {
			char buf[512];
			int n = snprintf(buf, sizeof(buf), "{\"diff_id\":\"%s\",\"media_type\":\"%s\",\"size\":%llu}",
					 st->info.diff_id, b->alias_media[i], (unsigned long long)st->info.raw_size);
			rc = shl_index_wput(w, SHL_DB_ALIASES, st->info.raw_digest, buf, (size_t)n);
		}
	}
	for (size_t i = 0; i < b->nblobs && !rc; i++)
		rc = shl_index_wput(w, SHL_DB_BLOBS, b->blobs[i].digest, b->blobs[i].val, b->blobs[i].len);
	for (size_t i = 0; i < b->nimages && !rc; i++) {
		/* every layer the image names must be stored (or in this batch) */
		shl_json *j = NULL, *layers;
		if ((rc = shl_json_parse(&j, b->images[i].val, b->images[i].len, SHL_CONFIG_CAP, "image record")))
			break;
		layers = shl_json_get(j, "layers");
		for (size_t k = 0; k < shl_json_len(layers) && !rc; k++) {
			const char *d = shl_json_get_str(shl_json_at(layers, k), "diff_id");
			char *v = NULL;
			if (!d || shl_index_wget(w, SHL_DB_LAYERS, d, &v, NULL) != 0)
				rc = shl_err(SHL_ENOTFOUND, "image %s: layer %s is not stored", b->images[i].key,
					     d ? d : "?");
			free(v);
		}
		shl_json_put(j);
		if (!rc)
			rc = shl_index_wput(w, SHL_DB_IMAGES, b->images[i].key, b->images[i].val, b->images[i].len);
	}
	for (size_t i = 0; i < b->nrefs && !rc; i++)
		rc = shl_index_wput(w, SHL_DB_REFS, b->refs[i].key, b->refs[i].val, b->refs[i].len);
	for (size_t i = 0; i < b->naliases && !rc; i++) {
		/* an alias names a stored layer, like an image does */
		shl_json *j = NULL;
		char *v = NULL;
		const char *d;
		if (!(rc = shl_json_parse(&j, b->aliases[i].val, b->aliases[i].len, 4096, "alias record"))) {
			d = shl_json_get_str(j, "diff_id");
			if (!d || shl_index_wget(w, SHL_DB_LAYERS, d, &v, NULL) != 0)
				rc = shl_err(SHL_ENOTFOUND, "alias %s: layer %s is not stored", b->aliases[i].key, d ? d : "?");
			free(v);
		}
		shl_json_put(j);
		if (!rc)
			rc = shl_index_wput(w, SHL_DB_ALIASES, b->aliases[i].key, b->aliases[i].val, b->aliases[i].len);
	}
	if (rc)
		shl_index_wabort(w);
	else if (!(rc = shl_index_wcommit(w)))
		shl_store__fault("committed");
	close(lockfd);
	return rc;
}
