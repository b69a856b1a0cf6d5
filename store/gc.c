/*
 * store/gc.c - garbage collection by mark and sweep (shale/store.h
 * shl_store_gc) and the computed layer -> images relation.
 *
 * Mark: every stored image keeps its manifest blob, config blob, extra blobs
 * (indexes, original manifests), layers (diff_ids) and the blob digests its
 * layers arrived as; a ref keeps its target (an image or an index blob).
 * Sweep, in one write transaction under the exclusive store lock: layer
 * records, blobs and aliases nobody marked (an alias lives as long as its
 * layer). After the commit the files of swept layers are unlinked, and so is
 * every file in layers/ the index does not name (left by a crash between
 * publishing and committing). Nothing is reference-counted.
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/err.h"

/* ---- a sorted set of strings ---------------------------------------------- */

struct set {
	char **v;
	size_t n, cap;
	int sorted;
};

static int set_add(struct set *s, const char *str, size_t len)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return shl_err(SHL_ENOMEM, "out of memory");
		s->v = v;
		s->cap = cap;
	}
	if (!(s->v[s->n] = strndup(str, len)))
		return shl_err(SHL_ENOMEM, "out of memory");
	s->n++;
	s->sorted = 0;
	return 0;
}

static int add_str(struct set *s, const char *str)
{
	return str ? set_add(s, str, strlen(str)) : 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int set_has(struct set *s, const char *str)
{
	if (!s->sorted) {
		if (s->n)
			qsort(s->v, s->n, sizeof(*s->v), cmp);
		s->sorted = 1;
	}
	return s->n && bsearch(&str, s->v, s->n, sizeof(*s->v), cmp) != NULL;
}

static void set_free(struct set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- mark ----------------------------------------------------------------- */

struct mark {
	struct set blobs;   /* manifest, config, extra and layer blob digests */
	struct set layers;  /* diff_ids */
};

static int mark_image(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct mark *m = ctx;
	shl_json *j = NULL, *layers, *extra;
	int rc;

	if ((rc = set_add(&m->blobs, k, kl)))
		return rc;
	if ((rc = shl_json_parse(&j, v, vl, SHL_CONFIG_CAP, "image record")))
		return shl_err_ctx(rc, "image %.*s", (int)kl, k);
	rc = add_str(&m->blobs, shl_json_get_str(j, "config"));
	layers = shl_json_get(j, "layers");
	for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
		shl_json *l = shl_json_at(layers, i);
		rc = add_str(&m->layers, shl_json_get_str(l, "diff_id"));
		if (!rc)
			rc = add_str(&m->blobs, shl_json_get_str(l, "digest"));
	}
	extra = shl_json_get(j, "extra_blobs");
	for (size_t i = 0; i < shl_json_len(extra) && !rc; i++)
		rc = add_str(&m->blobs, shl_json_str(shl_json_at(extra, i)));
	shl_json_put(j);
	return rc;
}

static int mark_ref(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	(void)k;
	(void)kl;
	return set_add(&((struct mark *)ctx)->blobs, v, vl);
}

/* ---- sweep ---------------------------------------------------------------- */

struct keys {
	struct set layers, blobs, aliases, alias_targets; /* aliases[i] -> alias_targets[i]: unsorted pairs */
};

static int key_layer(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	(void)v;
	(void)vl;
	return set_add(&((struct keys *)ctx)->layers, k, kl);
}

static int key_blob(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	(void)v;
	(void)vl;
	return set_add(&((struct keys *)ctx)->blobs, k, kl);
}

static int key_alias(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct keys *ks = ctx;
	shl_json *j = NULL;
	const char *d;
	int rc;

	/* a corrupt alias record names nothing: it is swept */
	d = shl_json_parse(&j, v, vl, 1 << 20, "alias record") == 0 ? shl_json_get_str(j, "diff_id") : NULL;
	rc = set_add(&ks->aliases, k, kl);
	if (!rc)
		rc = set_add(&ks->alias_targets, d ? d : "", d ? strlen(d) : 0);
	shl_json_put(j);
	return rc;
}

static void say(shl_rm_fn fn, void *ctx, const char *kind, const char *what)
{
	if (fn)
		fn(ctx, kind, what);
}

static uint64_t unlink_size(const char *path)
{
	struct stat st;
	uint64_t n = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;

	return unlink(path) == 0 ? n : UINT64_MAX;
}

/* Files in layers/ the index does not name. */
static void sweep_orphans(shl_store *s, shl_gc_report *r, shl_rm_fn fn, void *ctx)
{
	DIR *d = opendir(s->layers_dir);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char diff[80], path[4400];
		const char *dot = strchr(e->d_name, '.');
		uint64_t n;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(diff, sizeof(diff), "sha256:%.*s", dot ? (int)(dot - e->d_name) : 64, e->d_name);
		if (dot && (!strcmp(dot, ".tar") || !strcmp(dot, ".erofs")) && strlen(diff) == 71 &&
		    shl_store__has_layer(s, diff))
			continue;
		snprintf(path, sizeof(path), "%s/%s", s->layers_dir, e->d_name);
		if ((n = unlink_size(path)) != UINT64_MAX) {
			r->files++;
			r->bytes += n;
			say(fn, ctx, "Removed file", path);
		}
	}
	closedir(d);
}

int shl_store_gc(shl_store *s, shl_gc_report *report, shl_rm_fn fn, void *ctx)
{
	struct mark m = { { 0 }, { 0 } };
	struct keys ks = { { 0 }, { 0 }, { 0 }, { 0 } };
	struct set gone_layers = { 0 }, gone_blobs = { 0 }, gone_aliases = { 0 };
	shl_wtxn *w = NULL;
	int rc, lockfd;

	memset(report, 0, sizeof(*report));
	if ((lockfd = shl_store__lock(s, 1)) < 0)
		return lockfd;
	/* nothing can commit while we hold the exclusive lock: the snapshot
	 * read here is what the transaction below sweeps */
	if ((rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, mark_image, &m)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_REFS, mark_ref, &m)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_LAYERS, key_layer, &ks)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_BLOBS, key_blob, &ks)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_ALIASES, key_alias, &ks)))
		goto out;
	for (size_t i = 0; i < ks.layers.n && !rc; i++)
		if (!set_has(&m.layers, ks.layers.v[i]))
			rc = add_str(&gone_layers, ks.layers.v[i]);
	for (size_t i = 0; i < ks.blobs.n && !rc; i++)
		if (!set_has(&m.blobs, ks.blobs.v[i]))
			rc = add_str(&gone_blobs, ks.blobs.v[i]);
	/* an alias lives as long as its layer does */
	for (size_t i = 0; i < ks.aliases.n && !rc; i++) {
		const char *t = ks.alias_targets.v[i];
		if (!t[0] || set_has(&gone_layers, t) || !set_has(&ks.layers, t))
			rc = add_str(&gone_aliases, ks.aliases.v[i]);
	}
	if (rc)
		goto out;
	if (gone_layers.n + gone_blobs.n + gone_aliases.n) {
		if ((rc = shl_index_wbegin(s->ix, &w)))
			goto out;
		for (size_t i = 0; i < gone_layers.n && !rc; i++)
			rc = shl_index_wdel(w, SHL_DB_LAYERS, gone_layers.v[i]);
		for (size_t i = 0; i < gone_blobs.n && !rc; i++)
			rc = shl_index_wdel(w, SHL_DB_BLOBS, gone_blobs.v[i]);
		for (size_t i = 0; i < gone_aliases.n && !rc; i++)
			rc = shl_index_wdel(w, SHL_DB_ALIASES, gone_aliases.v[i]);
		if (rc) {
			shl_index_wabort(w);
			goto out;
		}
		if ((rc = shl_index_wcommit(w)))
			goto out;
	}
	/* after the commit: files */
	report->layers = gone_layers.n;
	report->blobs = gone_blobs.n;
	report->aliases = gone_aliases.n;
	for (size_t i = 0; i < gone_layers.n; i++) {
		char p[2][4200];
		shl_store_layer_paths(s, gone_layers.v[i], p[0], sizeof(p[0]), p[1], sizeof(p[1]));
		for (int k = 0; k < 2; k++) {
			uint64_t n = unlink_size(p[k]);
			if (n != UINT64_MAX) {
				report->files++;
				report->bytes += n;
			}
		}
		say(fn, ctx, "Deleted layer", gone_layers.v[i]);
	}
	for (size_t i = 0; i < gone_blobs.n; i++)
		say(fn, ctx, "Deleted blob", gone_blobs.v[i]);
	for (size_t i = 0; i < gone_aliases.n; i++)
		say(fn, ctx, "Deleted alias", gone_aliases.v[i]);
	sweep_orphans(s, report, fn, ctx);
out:
	set_free(&m.blobs);
	set_free(&m.layers);
	set_free(&ks.layers);
	set_free(&ks.blobs);
	set_free(&ks.aliases);
	set_free(&ks.alias_targets);
	set_free(&gone_layers);
	set_free(&gone_blobs);
	set_free(&gone_aliases);
	close(lockfd);
	return rc;
}

/* ---- layer users ---------------------------------------------------------- */

struct users {
	const char *diff_id;
	struct set found;
};

static int find_users(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct users *u = ctx;
	shl_json *j = NULL, *layers;
	int rc = 0;

	if (shl_json_parse(&j, v, vl, SHL_CONFIG_CAP, "image record") != 0)
		return 0; /* fsck reports corrupt records */
	layers = shl_json_get(j, "layers");
	for (size_t i = 0; i < shl_json_len(layers); i++) {
		const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		if (d && !strcmp(d, u->diff_id)) {
			rc = set_add(&u->found, k, kl);
			break;
		}
	}
	shl_json_put(j);
	return rc;
}

int shl_store_layer_users(shl_store *s, const char *diff_id, shl_layer_fn fn, void *ctx)
{
	struct users u = { diff_id, { 0 } };
	int rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, find_users, &u);

	/* callbacks run outside the read transaction */
	for (size_t i = 0; i < u.found.n && !rc; i++)
		rc = fn(ctx, u.found.v[i]);
	set_free(&u.found);
	return rc;
}

/* ---- derived caches ---------------------------------------------------------------
 * <root>/cache/squash/<manifest hex>.<format>[-<size>][.stamp] (run/squash_cache.c):
 * entries of images the store no longer has are removed; so are the partial
 * blobs in <root>/downloads that no running pull holds (fetch/blobs.c). */
int shl_store__sweep_cache(shl_store *s, shl_rm_fn fn, void *ctx)
{
	char dir[4200], path[4500], digest[80];
	struct dirent *e;
	DIR *d;
	int removed = 0;

	snprintf(dir, sizeof(dir), "%s/cache/squash", s->root);
	d = opendir(dir);
	while (d && (e = readdir(d))) {
		char *img = NULL;
		size_t hl = strspn(e->d_name, "0123456789abcdef");
		if (e->d_name[0] == '.' && strncmp(e->d_name, ".entry-", 7) && strncmp(e->d_name, ".stamp-", 7))
			continue;
		if (hl == 64 && e->d_name[64] == '.') {
			snprintf(digest, sizeof(digest), "sha256:%.64s", e->d_name);
			if (shl_index_get(s->ix, SHL_DB_IMAGES, digest, &img, NULL) == 0) {
				free(img);
				continue;
			}
			shl_error_clear();
		} else if (e->d_name[0] == '.') {
			/* a temp file of a squash that died: its pid is gone */
			int pid = atoi(e->d_name + 7);
			if (pid > 0 && kill(pid, 0) == 0)
				continue;
		} else {
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (unlink(path) == 0) {
			removed++;
			if (fn)
				fn(ctx, "Removed file", path);
		}
	}
	if (d)
		closedir(d);
	/* partial blobs of pulls that did not finish (no pull holds them now) */
	snprintf(dir, sizeof(dir), "%s/downloads", s->root);
	if ((d = opendir(dir))) {
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				continue;
			if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(path) == 0) {
				removed++;
				if (fn)
					fn(ctx, "Removed file", path);
			}
			close(fd);
		}
		closedir(d);
	}
	return removed;
}
