/*
 * store/usage.c - disk usage (`df`), pruning and image history
 * (shale/store.h). Usage is computed from the image and layer records on
 * every call: which images use which layer is derived, never stored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "util/err.h"

struct lay {
	char diff[72];
	uint64_t tar, erofs;
	uint32_t users;
};

struct img {
	char manifest[72], id[72];
	int tagged;
	char **diffs;
	size_t ndiffs;
};

struct usage {
	shl_store *s;
	struct lay *lays;
	size_t nlays;
	struct img *imgs;
	size_t nimgs;
	char **tagged; /* manifest digests named by a tag */
	size_t ntagged;
};

static struct lay *find_lay(struct usage *u, const char *d)
{
	for (size_t i = 0; i < u->nlays; i++)
		if (!strcmp(u->lays[i].diff, d))
			return &u->lays[i];
	return NULL;
}

static int on_layer(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct usage *u = ctx;
	shl_json *j = NULL;
	int64_t t = 0, e = 0;
	struct lay *nl = realloc(u->lays, (u->nlays + 1) * sizeof(*nl));

	if (!nl)
		return shl_err(SHL_ENOMEM, "out of memory");
	u->lays = nl;
	nl = &u->lays[u->nlays++];
	memset(nl, 0, sizeof(*nl));
	snprintf(nl->diff, sizeof(nl->diff), "%.*s", (int)kl, k);
	if (shl_json_parse(&j, v, vl, 1 << 20, "layer record") == 0) {
		shl_json_get_int(j, "tar_size", &t);
		shl_json_get_int(j, "erofs_size", &e);
	}
	nl->tar = (uint64_t)t;
	nl->erofs = (uint64_t)e;
	shl_json_put(j);
	return 0;
}

static int on_ref(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct usage *u = ctx;
	char **nt;

	if (memchr(k, '@', kl))
		return 0; /* repo digests don't make an image tagged */
	nt = realloc(u->tagged, (u->ntagged + 1) * sizeof(*nt));
	if (!nt)
		return shl_err(SHL_ENOMEM, "out of memory");
	u->tagged = nt;
	nt[u->ntagged] = strndup(v, vl);
	return nt[u->ntagged++] ? 0 : shl_err(SHL_ENOMEM, "out of memory");
}

static int on_image(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct usage *u = ctx;
	shl_json *j = NULL, *layers;
	struct img *ni = realloc(u->imgs, (u->nimgs + 1) * sizeof(*ni));
	int rc;

	if (!ni)
		return shl_err(SHL_ENOMEM, "out of memory");
	u->imgs = ni;
	ni = &u->imgs[u->nimgs++];
	memset(ni, 0, sizeof(*ni));
	snprintf(ni->manifest, sizeof(ni->manifest), "%.*s", (int)kl, k);
	for (size_t i = 0; i < u->ntagged; i++)
		if (!strcmp(u->tagged[i], ni->manifest))
			ni->tagged = 1;
	if ((rc = shl_json_parse(&j, v, vl, SHL_CONFIG_CAP, "image record")))
		return rc;
	snprintf(ni->id, sizeof(ni->id), "%s", shl_json_get_str(j, "config") ? shl_json_get_str(j, "config") : "");
	layers = shl_json_get(j, "layers");
	ni->diffs = calloc(shl_json_len(layers) + 1, sizeof(char *));
	if (!ni->diffs) {
		shl_json_put(j);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < shl_json_len(layers); i++) {
		const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		int dup = 0;
		if (!d)
			continue;
		for (size_t k2 = 0; k2 < ni->ndiffs; k2++)
			dup |= !strcmp(ni->diffs[k2], d);
		if (dup)
			continue;
		ni->diffs[ni->ndiffs++] = strdup(d);
		struct lay *l = find_lay(u, d);
		if (l)
			l->users++;
	}
	shl_json_put(j);
	return 0;
}

static void usage_free(struct usage *u)
{
	for (size_t i = 0; i < u->nimgs; i++) {
		for (size_t k = 0; k < u->imgs[i].ndiffs; k++)
			free(u->imgs[i].diffs[k]);
		free(u->imgs[i].diffs);
	}
	for (size_t i = 0; i < u->ntagged; i++)
		free(u->tagged[i]);
	free(u->tagged);
	free(u->imgs);
	free(u->lays);
}

static int usage_load(shl_store *s, struct usage *u)
{
	int rc;

	memset(u, 0, sizeof(*u));
	u->s = s;
	if ((rc = shl_index_foreach(s->ix, SHL_DB_LAYERS, on_layer, u)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_REFS, on_ref, u)) ||
	    (rc = shl_index_foreach(s->ix, SHL_DB_IMAGES, on_image, u)))
		usage_free(u);
	return rc;
}

int shl_store_df(shl_store *s, shl_df_total *total, shl_df_layer_fn lfn, shl_df_image_fn ifn, void *ctx)
{
	struct usage u;
	int rc = usage_load(s, &u);

	if (rc)
		return rc;
	memset(total, 0, sizeof(*total));
	total->images = u.nimgs;
	total->layers = u.nlays;
	for (size_t i = 0; i < u.nlays && !rc; i++) {
		shl_df_layer l = { u.lays[i].diff, u.lays[i].tar, u.lays[i].erofs, u.lays[i].users };
		total->bytes += u.lays[i].tar + u.lays[i].erofs;
		if (!u.lays[i].users)
			total->reclaimable += u.lays[i].tar + u.lays[i].erofs;
		if (lfn)
			rc = lfn(ctx, &l);
	}
	for (size_t i = 0; i < u.nimgs && !rc; i++) {
		shl_df_image im = { u.imgs[i].manifest, u.imgs[i].id, u.imgs[i].tagged, 0, 0, 0 };
		for (size_t k = 0; k < u.imgs[i].ndiffs; k++) {
			struct lay *l = find_lay(&u, u.imgs[i].diffs[k]);
			if (!l)
				continue;
			im.size += l->tar + l->erofs;
			if (l->users > 1)
				im.shared += l->tar + l->erofs;
		}
		im.unique = im.size - im.shared;
		if (!im.tagged)
			total->reclaimable += im.unique;
		if (ifn)
			rc = ifn(ctx, &im);
	}
	usage_free(&u);
	return rc;
}

int shl_store_prune(shl_store *s, int all, shl_rm_fn fn, void *ctx)
{
	struct usage u;
	int rc = usage_load(s, &u);

	if (rc)
		return rc;
	for (size_t i = 0; i < u.nimgs && !rc; i++)
		if (all || !u.imgs[i].tagged)
			rc = shl_store_remove(s, u.imgs[i].manifest, 1, fn, ctx);
	usage_free(&u);
	if (!rc)
		shl_store__sweep_cache(s, fn, ctx);
	return rc;
}

int shl_store_history(shl_store *s, const char *ref, shl_history_fn fn, void *ctx)
{
	char manifest[72], *cfg = NULL;
	size_t len;
	shl_json *img = NULL, *c = NULL, *hist, *layers;
	int rc;

	if ((rc = shl_store_resolve(s, ref, manifest)) || (rc = shl_store__get_image(s, manifest, &img)))
		return rc;
	if ((rc = shl_store__get_blob(s, shl_json_get_str(img, "config") ? shl_json_get_str(img, "config") : "",
				      &cfg, &len, NULL)) ||
	    (rc = shl_json_parse(&c, cfg, len, SHL_CONFIG_CAP, "config")))
		goto out;
	hist = shl_json_get(c, "history");
	layers = shl_json_get(img, "layers");
	{
		/* map history entries to layers: non-empty entries consume layers in order */
		size_t n = shl_json_len(hist), li = 0;
		uint64_t *sizes = calloc(n + 1, sizeof(*sizes));
		if (!sizes) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			shl_json *h = shl_json_at(hist, i), *el = shl_json_get(h, "empty_layer");
			int empty = el && !strcmp(shl_json_dump(el, 0, NULL), "true");
			if (!empty && li < shl_json_len(layers)) {
				int64_t ts = 0;
				shl_json_get_int(shl_json_at(layers, li++), "tar_size", &ts);
				sizes[i] = (uint64_t)ts;
			}
		}
		for (size_t i = n; i-- > 0 && !rc;) {
			shl_json *h = shl_json_at(hist, i), *el = shl_json_get(h, "empty_layer");
			int empty = el && !strcmp(shl_json_dump(el, 0, NULL), "true");
			rc = fn(ctx, shl_json_get_str(h, "created"), shl_json_get_str(h, "created_by"), sizes[i],
				shl_json_get_str(h, "comment"), empty);
		}
		free(sizes);
	}
out:
	shl_json_put(c);
	shl_json_put(img);
	free(cfg);
	return rc;
}
