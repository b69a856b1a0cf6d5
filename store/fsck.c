/*
 * store/fsck.c - check a store against its index (shale/store.h).
 *
 * Fast: every indexed layer's two files exist, have the recorded sizes and
 * XXH3-128 (memory speed); every blob's bytes have its digest; every image's
 * blobs and layers, every alias's layer and every ref's target are present;
 * files in layers/ the index does not name are reported.
 * Deep: also SHA-256 of each tar against its diff_id and a full walk of each
 * EROFS index with shale's reader. Repair: remove layer files the index does
 * not name, stale staging dirs and lock files; never anything the index names.
 *
 * Locking: the checks run under the shared store lock (no removal can unlink
 * files under them; loads go on), the orphan scan under the exclusive one (no
 * batch is between publishing its files and committing them); --repair holds
 * the exclusive lock throughout.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale/erofs.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

struct fsck {
	shl_store *s;
	int flags;
	shl_fsck_fn fn;
	void *ctx;
	shl_fsck_report *r;
};

static void problem(struct fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct fsck *f, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	f->r->problems++;
	if (f->fn)
		f->fn(f->ctx, buf);
}

static int hash_file(const char *path, uint64_t *size, uint8_t xxh[16], uint8_t sha[32])
{
	uint8_t *buf = malloc(1u << 20);
	shl_xxh3 *x = NULL;
	shl_sha256 *h = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	*size = 0;
	if (fd < 0 || !buf) {
		rc = fd < 0 ? shl_err_sys(SHL_EIO, "open %s", path) : shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shl_xxh3_new(&x)) || (sha && (rc = shl_sha256_new(&h))))
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf, 1u << 20);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = shl_err_sys(SHL_EIO, "read %s", path);
			goto out;
		}
		if (n == 0)
			break;
		shl_xxh3_update(x, buf, (size_t)n);
		if (h)
			shl_sha256_update(h, buf, (size_t)n);
		*size += (uint64_t)n;
	}
	shl_xxh3_final(x, xxh);
	if (h)
		shl_sha256_final(h, sha);
out:
	shl_xxh3_free(x);
	shl_sha256_free(h);
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

static int walk_noop(void *ctx, const char *path, const shl_erofs_stat *st)
{
	(void)ctx; (void)path; (void)st;
	return 0;
}

static int check_layer(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct fsck *f = ctx;
	char diff[80], tar[4200], erofs[4200], hex[33];
	shl_json *rec = NULL;
	int64_t tsize = 0, esize = 0;
	uint64_t got, before = f->r->problems;
	uint8_t x[16], sha[32];

	snprintf(diff, sizeof(diff), "%.*s", (int)kl, k);
	f->r->layers++;
	if (shl_json_parse(&rec, v, vl, 1 << 20, "layer record") != 0) {
		problem(f, "layer %s: corrupt index record", diff);
		return 0;
	}
	shl_json_get_int(rec, "tar_size", &tsize);
	shl_json_get_int(rec, "erofs_size", &esize);
	shl_store_layer_paths(f->s, diff, tar, sizeof(tar), erofs, sizeof(erofs));
	for (int which = 0; which < 2; which++) {
		const char *path = which ? erofs : tar;
		const char *want = shl_json_get_str(rec, which ? "erofs_xxh3" : "tar_xxh3");
		int deep = (f->flags & SHL_FSCK_DEEP) && !which;
		if (hash_file(path, &got, x, deep ? sha : NULL) != 0) {
			problem(f, "layer %s: %s", diff, shl_error_last());
			continue;
		}
		f->r->bytes += got;
		shl_hex(x, 16, hex);
		if ((int64_t)got != (which ? esize : tsize))
			problem(f, "layer %s: %s has %llu bytes, the index says %lld", diff, path,
				(unsigned long long)got, (long long)(which ? esize : tsize));
		else if (!want || strcmp(want, hex))
			problem(f, "layer %s: %s is corrupt (xxh3 %s, expected %s)", diff, path, hex, want ? want : "?");
		if (deep) {
			char d[72];
			shl_digest_str(sha, d);
			if (strcmp(d, diff))
				problem(f, "layer %s: tar content has digest %s", diff, d);
		}
	}
	/* walk the EROFS index only when its files are intact (one problem
	 * per cause) */
	if ((f->flags & SHL_FSCK_DEEP) && f->r->problems == before) {
		shl_erofs *e = NULL;
		if (shl_erofs_open(&e, erofs, tar) != 0 || shl_erofs_walk(e, walk_noop, NULL) != 0)
			problem(f, "layer %s: EROFS index unreadable: %s", diff, shl_error_last());
		shl_erofs_close(e);
	}
	shl_json_put(rec);
	return 0;
}

static int check_image(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct fsck *f = ctx;
	char manifest[80], *data = NULL;
	size_t len;
	shl_json *rec = NULL, *layers;
	const char *cfg;

	snprintf(manifest, sizeof(manifest), "%.*s", (int)kl, k);
	f->r->images++;
	if (shl_json_parse(&rec, v, vl, SHL_CONFIG_CAP, "image record") != 0) {
		problem(f, "image %s: corrupt index record", manifest);
		return 0;
	}
	if (shl_store__get_blob(f->s, manifest, &data, &len, NULL) != 0)
		problem(f, "image %s: manifest blob missing", manifest);
	free(data);
	data = NULL;
	cfg = shl_json_get_str(rec, "config");
	if (!cfg || shl_store__get_blob(f->s, cfg, &data, &len, NULL) != 0)
		problem(f, "image %s: config blob %s missing", manifest, cfg ? cfg : "?");
	free(data);
	layers = shl_json_get(rec, "layers");
	for (size_t i = 0; i < shl_json_len(layers); i++) {
		const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		if (!d || !shl_store__has_layer(f->s, d))
			problem(f, "image %s: layer %s not in the index", manifest, d ? d : "?");
	}
	shl_json_put(rec);
	return 0;
}

static int check_blob(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct fsck *f = ctx;
	const char *nl = memchr(v, '\n', vl);
	uint8_t d[32];
	char got[72];

	f->r->blobs++;
	if (!nl) {
		problem(f, "blob %.*s: corrupt index record (no media type)", (int)kl, k);
		return 0;
	}
	shl_sha256_buf(nl + 1, vl - (size_t)(nl + 1 - v), d);
	shl_digest_str(d, got);
	if (kl != 71 || memcmp(got, k, kl))
		problem(f, "blob %.*s: content has digest %s", (int)kl, k, got);
	return 0;
}

static int check_alias(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct fsck *f = ctx;
	shl_json *j = NULL;
	const char *d;

	f->r->aliases++;
	if (shl_json_parse(&j, v, vl, 1 << 20, "alias record") != 0 || !(d = shl_json_get_str(j, "diff_id")))
		problem(f, "alias %.*s: corrupt index record", (int)kl, k);
	else if (!shl_store__has_layer(f->s, d))
		problem(f, "alias %.*s: layer %s not in the index", (int)kl, k, d);
	shl_json_put(j);
	return 0;
}

static int check_ref(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct fsck *f = ctx;
	char target[80], *x = NULL;

	f->r->refs++;
	snprintf(target, sizeof(target), "%.*s", (int)(vl < 79 ? vl : 79), v);
	if (shl_index_get(f->s->ix, SHL_DB_IMAGES, target, &x, NULL) != 0 &&
	    shl_index_get(f->s->ix, SHL_DB_BLOBS, target, &x, NULL) != 0)
		problem(f, "ref %.*s: target %s not in the index", (int)kl, k, target);
	free(x);
	return 0;
}

static void orphans(struct fsck *f)
{
	DIR *d = opendir(f->s->layers_dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char diff[80], path[4200];
		const char *dot;
		if (e->d_name[0] == '.')
			continue;
		dot = strchr(e->d_name, '.');
		snprintf(diff, sizeof(diff), "sha256:%.*s", dot ? (int)(dot - e->d_name) : 64, e->d_name);
		if (dot && (!strcmp(dot, ".tar") || !strcmp(dot, ".erofs")) && strlen(diff) == 71 &&
		    shl_store__has_layer(f->s, diff))
			continue;
		snprintf(path, sizeof(path), "%s/%s", f->s->layers_dir, e->d_name);
		if (f->flags & SHL_FSCK_REPAIR) {
			if (unlink(path) == 0) {
				f->r->repaired++;
				if (f->fn) {
					char msg[4300];
					snprintf(msg, sizeof(msg), "removed orphan %s", path);
					f->fn(f->ctx, msg);
				}
			}
		} else {
			problem(f, "orphan file %s (not in the index; `fsck --repair` removes it)", path);
		}
	}
	closedir(d);
}

int shl_store_fsck(shl_store *s, int flags, shl_fsck_report *report, shl_fsck_fn fn, void *ctx)
{
	struct fsck f = { s, flags, fn, ctx, report };
	int rc, lockfd;

	memset(report, 0, sizeof(*report));
	if ((lockfd = shl_store__lock(s, (flags & SHL_FSCK_REPAIR) != 0)) < 0)
		return lockfd;
	if ((rc = shl_index_foreach(s->ix, SHL_DB_LAYERS, check_layer, &f)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, check_image, &f)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_BLOBS, check_blob, &f)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_ALIASES, check_alias, &f)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_REFS, check_ref, &f)))
		goto out;
	if (!(flags & SHL_FSCK_REPAIR)) {
		close(lockfd);
		if ((lockfd = shl_store__lock(s, 1)) < 0)
			return lockfd;
	}
	orphans(&f);
	if (flags & SHL_FSCK_REPAIR) {
		int n = shl_store__clean_tmp(s);
		if (n > 0) {
			report->repaired += (uint64_t)n;
			if (fn) {
				char msg[4300];
				snprintf(msg, sizeof(msg), "removed %d stale temp entr%s in %s/tmp", n, n == 1 ? "y" : "ies",
					 s->root);
				fn(ctx, msg);
			}
		}
	}
out:
	close(lockfd);
	return rc;
}
