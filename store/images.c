/*
 * store/images.c - finding, listing, inspecting, tagging and removing
 * images (shale/store.h). Removal is mark-and-sweep: after the refs and
 * image record go, whatever no remaining image uses (layers, aliases,
 * manifest/config blobs) is deleted in the same transaction; layer files are
 * unlinked only after the commit. No reference counts are stored.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shale/ref.h"
#include "store/store_int.h"
#include "util/err.h"

/* ---- a simple string list ------------------------------------------------ */

struct strs {
	char **v;
	size_t n, cap;
};

static int strs_add(struct strs *l, const char *s, size_t n)
{
	if (l->n + 1 >= l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return shl_err(SHL_ENOMEM, "out of memory");
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = strndup(s, n);
	if (!l->v[l->n])
		return shl_err(SHL_ENOMEM, "out of memory");
	l->v[++l->n] = NULL;
	return 0;
}

static void strs_free(struct strs *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* all refs: key list and value list in the same order */
struct refs {
	struct strs names, targets;
};

static int collect_ref(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct refs *r = ctx;
	int rc = strs_add(&r->names, k, kl);
	return rc ? rc : strs_add(&r->targets, v, vl);
}

static int load_refs(shl_store *s, struct refs *r)
{
	memset(r, 0, sizeof(*r));
	return shl_index_foreach(s->ix, SHL_DB_REFS, collect_ref, r);
}

static void free_refs(struct refs *r)
{
	strs_free(&r->names);
	strs_free(&r->targets);
}

/* ---- resolve ------------------------------------------------------------- */

struct idsearch {
	const char *prefix; /* hex */
	size_t plen;
	char found[72];
	int matches;
};

static int match_id(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct idsearch *q = ctx;
	shl_json *j = NULL;
	const char *cfg;

	if (kl > 7 + 64)
		return 0;
	if (shl_json_parse(&j, v, vl, SHL_CONFIG_CAP, "image record") != 0)
		return 0;
	cfg = shl_json_get_str(j, "config");
	if ((cfg && strlen(cfg) > 7 && !strncmp(cfg + 7, q->prefix, q->plen)) ||
	    (kl > 7 && !strncmp(k + 7, q->prefix, q->plen))) {
		if (!q->matches || strncmp(q->found, k, kl) != 0)
			q->matches++;
		snprintf(q->found, sizeof(q->found), "%.*s", (int)kl, k);
	}
	shl_json_put(j);
	return 0;
}

static int is_hex(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isxdigit((unsigned char)*s) || isupper((unsigned char)*s))
			return 0;
	return 1;
}

int shl_store_resolve(shl_store *s, const char *ref, char manifest[72])
{
	shl_ref r;
	char full[600], *v = NULL;
	const char *hex = !strncmp(ref, "sha256:", 7) ? ref + 7 : ref;
	int rc;

	/* an image ID or manifest digest (prefix) */
	if (is_hex(hex) && strlen(hex) <= 64 && (hex != ref || strlen(hex) >= 4)) {
		struct idsearch q = { hex, strlen(hex), "", 0 };
		if ((rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, match_id, &q)))
			return rc;
		if (q.matches == 1) {
			snprintf(manifest, 72, "%s", q.found);
			return 0;
		}
		if (q.matches > 1)
			return shl_err(SHL_EINVAL, "ambiguous image ID prefix '%s'", ref);
		if (hex != ref)
			return shl_err(SHL_ENOTFOUND, "no such image: %s", ref);
	}
	if ((rc = shl_ref_parse(ref, &r)))
		return rc;
	shl_ref_full(&r, full, sizeof(full));
	rc = shl_index_get(s->ix, SHL_DB_REFS, full, &v, NULL);
	if (rc == SHL_ENOTFOUND && r.digest[0]) {
		/* name@digest where the digest is the manifest itself */
		char *img = NULL;
		if (shl_index_get(s->ix, SHL_DB_IMAGES, r.digest, &img, NULL) == 0) {
			free(img);
			snprintf(manifest, 72, "%s", r.digest);
			return 0;
		}
	}
	if (rc == SHL_ENOTFOUND)
		return shl_err(SHL_ENOTFOUND, "no such image: %s", ref);
	if (rc)
		return rc;
	snprintf(manifest, 72, "%s", v);
	free(v);
	return 0;
}

/* ---- list ---------------------------------------------------------------- */

struct list_ctx {
	shl_store *s;
	struct refs refs;
	shl_image_fn fn;
	void *ctx;
};

static int list_one(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct list_ctx *c = ctx;
	shl_image_summary sum;
	struct strs tags = { 0 }, rds = { 0 };
	shl_json *j = NULL, *layers;
	char manifest[80];
	int64_t created = 0, size = 0;
	int rc;

	snprintf(manifest, sizeof(manifest), "%.*s", (int)kl, k);
	if ((rc = shl_json_parse(&j, v, vl, SHL_CONFIG_CAP, "image record")))
		return rc;
	for (size_t i = 0; i < c->refs.names.n && !rc; i++) {
		if (strcmp(c->refs.targets.v[i], manifest))
			continue;
		const char *name = c->refs.names.v[i];
		rc = strs_add(strchr(name, '@') ? &rds : &tags, name, strlen(name));
	}
	shl_json_get_int(j, "created", &created);
	shl_json_get_int(j, "size", &size);
	layers = shl_json_get(j, "layers");
	memset(&sum, 0, sizeof(sum));
	sum.manifest = manifest;
	sum.id = shl_json_get_str(j, "config");
	sum.tags = (const char *const *)(tags.v ? tags.v : (char *[]){ NULL });
	sum.repo_digests = (const char *const *)(rds.v ? rds.v : (char *[]){ NULL });
	sum.created = created;
	sum.size = (uint64_t)size;
	sum.layers = shl_json_len(layers);
	if (!rc && sum.id)
		rc = c->fn(c->ctx, &sum);
	strs_free(&tags);
	strs_free(&rds);
	shl_json_put(j);
	return rc;
}

int shl_store_list(shl_store *s, shl_image_fn fn, void *ctx)
{
	struct list_ctx c = { s, { { 0 }, { 0 } }, fn, ctx };
	int rc = load_refs(s, &c.refs);

	if (!rc)
		rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, list_one, &c);
	free_refs(&c.refs);
	return rc;
}

/* ---- tag ----------------------------------------------------------------- */

int shl_store_tag(shl_store *s, const char *source, const char *target)
{
	char manifest[72], full[600];
	shl_ref r;
	shl_wtxn *w;
	int rc;

	if ((rc = shl_store_resolve(s, source, manifest)))
		return rc;
	if ((rc = shl_ref_parse(target, &r)))
		return rc;
	if (r.digest[0])
		return shl_err(SHL_EINVAL, "refusing to create a tag with a digest reference: %s", target);
	shl_ref_full(&r, full, sizeof(full));
	if ((rc = shl_index_wbegin(s->ix, &w)))
		return rc;
	if ((rc = shl_index_wput(w, SHL_DB_REFS, full, manifest, strlen(manifest)))) {
		shl_index_wabort(w);
		return rc;
	}
	return shl_index_wcommit(w);
}

/* ---- remove -------------------------------------------------------------- */

/* Things still used by images other than `gone`. */
struct used {
	const char *gone;
	struct strs digests; /* layers' diff_ids and blob digests, manifests, configs */
};

static int mark_used(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct used *u = ctx;
	shl_json *j = NULL, *layers;
	int rc;

	if (strlen(u->gone) == kl && !strncmp(k, u->gone, kl))
		return 0;
	if ((rc = shl_json_parse(&j, v, vl, SHL_CONFIG_CAP, "image record")))
		return rc;
	rc = strs_add(&u->digests, k, kl);
	if (!rc && shl_json_get_str(j, "config"))
		rc = strs_add(&u->digests, shl_json_get_str(j, "config"), strlen(shl_json_get_str(j, "config")));
	layers = shl_json_get(j, "layers");
	for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
		const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		const char *b = shl_json_get_str(shl_json_at(layers, i), "digest");
		if (d)
			rc = strs_add(&u->digests, d, strlen(d));
		if (!rc && b)
			rc = strs_add(&u->digests, b, strlen(b));
	}
	for (size_t i = 0; i < shl_json_len(shl_json_get(j, "extra_blobs")) && !rc; i++) {
		const char *b = shl_json_str(shl_json_at(shl_json_get(j, "extra_blobs"), i));
		if (b)
			rc = strs_add(&u->digests, b, strlen(b));
	}
	shl_json_put(j);
	return rc;
}

static int used_has(const struct used *u, const char *d)
{
	for (size_t i = 0; i < u->digests.n; i++)
		if (!strcmp(u->digests.v[i], d))
			return 1;
	return 0;
}

int shl_store_remove(shl_store *s, const char *ref, int force, shl_rm_fn fn, void *ctx)
{
	char manifest[72], full[600];
	struct refs refs = { { 0 }, { 0 } };
	struct used used = { manifest, { 0 } };
	struct strs untag = { 0 }, unlink_layers = { 0 };
	shl_json *img = NULL, *layers;
	shl_wtxn *w = NULL;
	shl_ref r;
	int rc, by_name, lockfd, ntags = 0, delete_image;

	if ((lockfd = shl_store__lock(s, 1)) < 0)
		return lockfd;
	if ((rc = shl_store_resolve(s, ref, manifest)) || (rc = load_refs(s, &refs)))
		goto out;
	by_name = shl_ref_parse(ref, &r) == 0 && (shl_ref_full(&r, full, sizeof(full)), 1);
	by_name = by_name && !r.digest[0];
	for (size_t i = 0; i < refs.names.n; i++)
		if (!strcmp(refs.targets.v[i], manifest) && !strchr(refs.names.v[i], '@'))
			ntags++;
	if (by_name) {
		int found = 0;
		for (size_t i = 0; i < refs.names.n; i++)
			if (!strcmp(refs.names.v[i], full))
				found = 1;
		if (!found) {
			by_name = 0; /* it resolved as an ID */
		} else if ((rc = strs_add(&untag, full, strlen(full)))) {
			goto out;
		}
	}
	if (!by_name) {
		if (ntags > 1 && !force) {
			rc = shl_err(SHL_EBUSY, "unable to delete %s (must be forced): image is referenced in multiple repositories", ref);
			goto out;
		}
		for (size_t i = 0; i < refs.names.n && !rc; i++)
			if (!strcmp(refs.targets.v[i], manifest))
				rc = strs_add(&untag, refs.names.v[i], strlen(refs.names.v[i]));
	}
	delete_image = !by_name || ntags <= 1;
	if ((rc = shl_store__get_image(s, manifest, &img)))
		goto out;
	if (delete_image && (rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, mark_used, &used)))
		goto out;
	if ((rc = shl_index_wbegin(s->ix, &w)))
		goto out;
	for (size_t i = 0; i < untag.n && !rc; i++)
		rc = shl_index_wdel(w, SHL_DB_REFS, untag.v[i]);
	if (delete_image) {
		/* repo digests pointing at it go too */
		for (size_t i = 0; i < refs.names.n && !rc; i++)
			if (!strcmp(refs.targets.v[i], manifest))
				rc = shl_index_wdel(w, SHL_DB_REFS, refs.names.v[i]);
		if (!rc)
			rc = shl_index_wdel(w, SHL_DB_IMAGES, manifest);
		if (!rc && !used_has(&used, manifest))
			rc = shl_index_wdel(w, SHL_DB_BLOBS, manifest);
		const char *cfg = shl_json_get_str(img, "config");
		if (!rc && cfg && !used_has(&used, cfg))
			rc = shl_index_wdel(w, SHL_DB_BLOBS, cfg);
		for (size_t i = 0; i < shl_json_len(shl_json_get(img, "extra_blobs")) && !rc; i++) {
			const char *b = shl_json_str(shl_json_at(shl_json_get(img, "extra_blobs"), i));
			if (b && !used_has(&used, b))
				rc = shl_index_wdel(w, SHL_DB_BLOBS, b);
		}
		layers = shl_json_get(img, "layers");
		for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
			const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
			const char *b = shl_json_get_str(shl_json_at(layers, i), "digest");
			if (b && strcmp(b, d ? d : "") && !used_has(&used, b))
				rc = shl_index_wdel(w, SHL_DB_ALIASES, b);
			if (!rc && d && !used_has(&used, d)) {
				rc = shl_index_wdel(w, SHL_DB_LAYERS, d);
				if (!rc)
					rc = strs_add(&unlink_layers, d, strlen(d));
			}
		}
	}
	if (rc) {
		shl_index_wabort(w);
		goto out;
	}
	if ((rc = shl_index_wcommit(w)))
		goto out;
	/* after the commit: files, then report */
	for (size_t i = 0; i < unlink_layers.n; i++) {
		char tar[4200], erofs[4200];
		shl_store_layer_paths(s, unlink_layers.v[i], tar, sizeof(tar), erofs, sizeof(erofs));
		unlink(erofs);
		unlink(tar);
	}
	for (size_t i = 0; fn && i < untag.n; i++) {
		shl_ref rr;
		char fam[600];
		if (!strchr(untag.v[i], '@') && shl_ref_parse(untag.v[i], &rr) == 0) {
			shl_ref_familiar(&rr, fam, sizeof(fam));
			fn(ctx, "Untagged", fam);
		} else {
			fn(ctx, "Untagged", untag.v[i]);
		}
	}
	if (fn && delete_image)
		fn(ctx, "Deleted", shl_json_get_str(img, "config") ? shl_json_get_str(img, "config") : manifest);
out:
	shl_json_put(img);
	strs_free(&untag);
	strs_free(&unlink_layers);
	strs_free(&used.digests);
	free_refs(&refs);
	close(lockfd);
	return rc;
}

int shl_store_image_layers(shl_store *s, const char *ref, shl_layer_fn fn, void *ctx)
{
	char manifest[72];
	shl_json *img = NULL, *layers;
	int rc;

	if ((rc = shl_store_resolve(s, ref, manifest)) || (rc = shl_store__get_image(s, manifest, &img)))
		return rc;
	layers = shl_json_get(img, "layers");
	for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
		const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		rc = d ? fn(ctx, d) : shl_err(SHL_EFORMAT, "image %s: bad layer record", manifest);
	}
	shl_json_put(img);
	return rc;
}
