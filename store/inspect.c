/*
 * store/inspect.c - docker-compatible `image inspect` JSON for a stored image
 * (Id, RepoTags, RepoDigests, Created, Size, Config, RootFS, ...) plus a
 * "Shale" section with the manifest and per-layer tar/EROFS sizes.
 */
#include <stdlib.h>
#include <string.h>

#include "shale/ref.h"
#include "store/store_int.h"
#include "util/err.h"

struct names_ctx {
	const char *manifest;
	shl_json *tags, *digests;
	int rc;
};

static int add_name(void *ctx, const char *k, size_t kl, const char *v, size_t vl)
{
	struct names_ctx *c = ctx;
	char key[600], fam[600];
	shl_ref r;

	if (vl != strlen(c->manifest) || memcmp(v, c->manifest, vl) || kl >= sizeof(key))
		return 0;
	memcpy(key, k, kl);
	key[kl] = '\0';
	if (shl_ref_parse(key, &r) != 0)
		return 0;
	shl_ref_familiar(&r, fam, sizeof(fam));
	return shl_json_push(r.digest[0] ? c->digests : c->tags, shl_json_new_string(fam));
}

static shl_json *copy_member(shl_json *obj, const char *key)
{
	shl_json *v = shl_json_get(obj, key);
	return v ? shl_json_ref(v) : NULL;
}

static int set_or_empty(shl_json *out, const char *key, shl_json *from, const char *fkey)
{
	const char *v = shl_json_get_str(from, fkey);
	return shl_json_set_str(out, key, v ? v : "");
}

int shl_store_inspect(shl_store *s, const char *ref, char **json)
{
	char manifest[72], *cfgbytes = NULL;
	size_t cfglen;
	shl_json *img = NULL, *cfg = NULL, *out = NULL, *layers, *rootfs = NULL, *diff = NULL, *sh = NULL,
		 *shl = NULL, *gd = NULL;
	struct names_ctx names = { manifest, NULL, NULL, 0 };
	const char *cfgd;
	int64_t size = 0;
	int rc;

	*json = NULL;
	if ((rc = shl_store_resolve(s, ref, manifest)) || (rc = shl_store__get_image(s, manifest, &img)))
		return rc;
	cfgd = shl_json_get_str(img, "config");
	if (!cfgd) {
		rc = shl_err(SHL_EFORMAT, "image %s: record without config", manifest);
		goto out;
	}
	if ((rc = shl_store__get_blob(s, cfgd, &cfgbytes, &cfglen, NULL)) ||
	    (rc = shl_json_parse(&cfg, cfgbytes, cfglen, SHL_CONFIG_CAP, "config")))
		goto out;
	out = shl_json_new_object();
	names.tags = shl_json_new_array();
	names.digests = shl_json_new_array();
	rootfs = shl_json_new_object();
	diff = shl_json_new_array();
	sh = shl_json_new_object();
	shl = shl_json_new_array();
	gd = shl_json_new_object();
	if (!out || !names.tags || !names.digests || !rootfs || !diff || !sh || !shl || !gd) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shl_index_foreach(s->ix, SHL_DB_REFS, add_name, &names)))
		goto out;
	layers = shl_json_get(img, "layers");
	for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
		shl_json *l = shl_json_at(layers, i), *lr = NULL, *e;
		const char *d = shl_json_get_str(l, "diff_id");
		int64_t ts = 0, es = 0;
		if (!d)
			continue;
		if ((rc = shl_json_push(diff, shl_json_new_string(d))))
			break;
		if (shl_store__get_layer(s, d, &lr) == 0) {
			shl_json_get_int(lr, "tar_size", &ts);
			shl_json_get_int(lr, "erofs_size", &es);
		}
		shl_json_put(lr);
		size += ts;
		e = shl_json_new_object();
		if (!e || (rc = shl_json_set_str(e, "DiffID", d)) ||
		    (rc = shl_json_set_str(e, "Digest", shl_json_get_str(l, "digest") ? shl_json_get_str(l, "digest") : d)) ||
		    (rc = shl_json_set_str(e, "MediaType", shl_json_get_str(l, "media_type") ? shl_json_get_str(l, "media_type") : "")) ||
		    (rc = shl_json_set_int(e, "TarSize", ts)) || (rc = shl_json_set_int(e, "ErofsSize", es))) {
			shl_json_put(e);
			rc = rc ? rc : shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		rc = shl_json_push(shl, e);
	}
	if (rc)
		goto out;
	shl_json *ccfg = copy_member(cfg, "config");
	if ((rc = shl_json_set_str(out, "Id", cfgd)) || (rc = shl_json_set(out, "RepoTags", shl_json_ref(names.tags))) ||
	    (rc = shl_json_set(out, "RepoDigests", shl_json_ref(names.digests))) ||
	    (rc = shl_json_set_str(out, "Parent", "")) || (rc = set_or_empty(out, "Comment", cfg, "comment")) ||
	    (rc = set_or_empty(out, "Created", cfg, "created")) ||
	    (rc = set_or_empty(out, "DockerVersion", cfg, "docker_version")) ||
	    (rc = set_or_empty(out, "Author", cfg, "author")) ||
	    (rc = shl_json_set(out, "Config", ccfg ? ccfg : shl_json_new_object())) ||
	    (rc = set_or_empty(out, "Architecture", cfg, "architecture")) ||
	    (shl_json_get_str(cfg, "variant") && (rc = set_or_empty(out, "Variant", cfg, "variant"))) ||
	    (rc = set_or_empty(out, "Os", cfg, "os")) || (rc = shl_json_set_int(out, "Size", size)) ||
	    (rc = shl_json_set_str(gd, "Name", "erofs")) || (rc = shl_json_set(gd, "Data", shl_json_new_object())) ||
	    (rc = shl_json_set(out, "GraphDriver", shl_json_ref(gd))) ||
	    (rc = shl_json_set_str(rootfs, "Type", "layers")) || (rc = shl_json_set(rootfs, "Layers", shl_json_ref(diff))) ||
	    (rc = shl_json_set(out, "RootFS", shl_json_ref(rootfs))) ||
	    (rc = shl_json_set_str(sh, "Manifest", manifest)) ||
	    (rc = shl_json_set_str(sh, "ManifestMediaType", shl_json_get_str(img, "media_type") ? shl_json_get_str(img, "media_type") : "")) ||
	    (rc = shl_json_set(sh, "Layers", shl_json_ref(shl))) || (rc = shl_json_set(out, "Shale", shl_json_ref(sh))))
		goto out;
	*json = strdup(shl_json_dump(out, 1, NULL));
	if (!*json)
		rc = shl_err(SHL_ENOMEM, "out of memory");
out:
	shl_json_put(names.tags);
	shl_json_put(names.digests);
	shl_json_put(rootfs);
	shl_json_put(diff);
	shl_json_put(sh);
	shl_json_put(shl);
	shl_json_put(gd);
	shl_json_put(out);
	shl_json_put(cfg);
	shl_json_put(img);
	free(cfgbytes);
	return rc;
}
