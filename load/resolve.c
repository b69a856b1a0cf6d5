/*
 * load/resolve.c - from the archive's index.json (OCI layout, Docker >= 25)
 * or manifest.json (docker-archive) to images: manifests and configs are
 * verified, layers are matched to config.rootfs.diff_ids, names come from
 * io.containerd.image.name / org.opencontainers.image.ref.name / RepoTags /
 * --tag (load/names.c), and everything goes into the loader's batch. A
 * docker-archive image gets a synthesized OCI manifest over its uncompressed
 * layers around the verbatim config, so the image ID is unchanged.
 *
 * Run twice for a seekable input: the planning pass only marks the layers
 * images need (ITEM_PENDING -> need) and fails early on anything missing;
 * after they are converted the real pass checks diff_ids and fills the batch.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "load/load_int.h"
#include "load/names.h"
#include "shale/ref.h"
#include "util/err.h"
#include "util/hash.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"

static const char *const layer_types[] = {
	"application/vnd.oci.image.layer.v1.tar",
	"application/vnd.oci.image.layer.v1.tar+gzip",
	"application/vnd.oci.image.layer.v1.tar+zstd",
	"application/vnd.oci.image.layer.nondistributable.v1.tar",
	"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
	"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
	"application/vnd.docker.image.rootfs.diff.tar",
	"application/vnd.docker.image.rootfs.diff.tar.gzip",
	"application/vnd.docker.image.rootfs.diff.tar.zstd",
	"application/vnd.docker.image.rootfs.foreign.diff.tar",
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
	NULL,
};

struct layer_desc {
	char digest[72];
	char media[128];
	int64_t size;
};

/* ---- helpers ---------------------------------------------------------------- */

static int is_index_type(const char *mt)
{
	return mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST));
}

static int is_manifest_type(const char *mt)
{
	return mt && (!strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST));
}

static int known_layer_type(const char *mt)
{
	for (size_t i = 0; layer_types[i]; i++)
		if (!strcmp(mt, layer_types[i]))
			return 1;
	return 0;
}

static int meta_json(struct item *it, const char *what, size_t cap, shl_json **out)
{
	if (!it)
		return shl_err(SHL_ENOTFOUND, "%s is missing from the archive", what);
	if (it->kind != ITEM_META)
		return shl_err(SHL_EFORMAT, "%s is not a JSON document", what);
	return shl_json_parse(out, it->data, it->len, cap, what);
}

static int add_loaded(struct loader *L, const char *what)
{
	char **v;

	for (size_t i = 0; i < L->nloaded; i++)
		if (!strcmp(L->loaded[i], what))
			return 0;
	if (!(v = realloc(L->loaded, (L->nloaded + 1) * sizeof(*v))))
		return shl_err(SHL_ENOMEM, "out of memory");
	L->loaded = v;
	if (!(v[L->nloaded] = strdup(what)))
		return shl_err(SHL_ENOMEM, "out of memory");
	L->nloaded++;
	return 0;
}

/* ---- one image -------------------------------------------------------------- */

static int config_loaded(struct loader *L, const char *digest)
{
	for (size_t i = 0; i < L->nconfigs; i++)
		if (!strcmp(L->configs[i], digest))
			return 1;
	return 0;
}

/* The layer with this diff_id that the batch adds, if any. */
static struct item *batch_layer(struct loader *L, const char *diff)
{
	for (size_t i = 0; i < L->ninbatch; i++)
		if (!strcmp(L->items[L->inbatch[i]].diff_id, diff))
			return &L->items[L->inbatch[i]];
	return NULL;
}

/* Layer i: the archive item by digest (OCI) or path (docker), or the store. */
static int layer_for(struct loader *L, const struct layer_desc *d, const char *path, const char *want_diff,
		     shl_json *layers_out)
{
	struct item *it = path ? shl_load__follow(L, path) : shl_load__find_blob(L, d->digest);
	const char *what = path ? path : d->digest;
	char diff[72] = "";
	int64_t tar_size = 0;
	shl_json *rec = NULL, *e;
	int rc, planned = 0;

	if (path && !it && shl_load__find(L, path))
		return shl_err(SHL_EFORMAT, "layer %s: dangling or looping link", path);
	if (it && (it->kind == ITEM_META || it->kind == ITEM_OTHER))
		return shl_err(SHL_EFORMAT, "layer %s is not a tar", what);
	if (it && it->kind == ITEM_BAD)
		return shl_err(it->err_code, "layer %s: %s", what, it->err_msg ? it->err_msg : "conversion failed");
	if (it && it->kind == ITEM_PENDING) {
		if (shl_store__has_layer(L->s, want_diff)) {
			it = NULL; /* stored already: the archive's copy is not even read */
		} else if (L->planning) {
			if (!it->need)
				snprintf(it->want, sizeof(it->want), "%s", want_diff);
			it->need = 1;
			planned = 1;
			snprintf(diff, sizeof(diff), "%s", want_diff);
		} else {
			return shl_err(SHL_EINVAL, "layer %s was not converted", what);
		}
	}
	if (planned) {
		/* placeholder until the planning pass is over */
	} else if (it) {
		snprintf(diff, sizeof(diff), "%s", it->diff_id);
	} else if (shl_store__has_layer(L->s, want_diff)) {
		snprintf(diff, sizeof(diff), "%s", want_diff); /* incremental archive: stored already */
	} else if (!path && shl_store__alias(L->s, d->digest, diff) == 0) {
		/* known compressed blob */
	} else {
		return shl_err(SHL_ENOTFOUND, "layer %s (diff_id %s) is missing from the archive and not in the store",
			       what, want_diff);
	}
	shl_error_clear();
	if (strcmp(diff, want_diff))
		return shl_err(SHL_EDIGEST, "layer %s: content has diff_id %s, the config says %s", what, diff, want_diff);
	if (it && it->kind == ITEM_LAYER && !it->existed && !it->in_batch) {
		struct item *twin = batch_layer(L, diff);
		if (twin) {
			/* the same layer under another name is in the batch already */
			shl_store__unstage(&it->staged);
			it->existed = 1;
		} else {
			const char *alias = it->compression ? (d->media[0] ? d->media : "application/octet-stream") : NULL;
			size_t *v = realloc(L->inbatch, (L->ninbatch + 1) * sizeof(*v));
			if (!v)
				return shl_err(SHL_ENOMEM, "out of memory");
			L->inbatch = v;
			if ((rc = shl_batch_add_layer(L->batch, &it->staged, alias)))
				return rc;
			it->in_batch = 1;
			L->inbatch[L->ninbatch++] = (size_t)(it - L->items);
		}
	}
	if (!planned) {
		struct item *b = batch_layer(L, diff);
		if (b) {
			tar_size = (int64_t)b->staged.info.tar_size;
		} else if (shl_store__get_layer(L->s, diff, &rec) == 0) {
			shl_json_get_int(rec, "tar_size", &tar_size);
			shl_json_put(rec);
		}
		shl_error_clear();
	}
	e = shl_json_new_object();
	if (!e || (rc = shl_json_set_str(e, "diff_id", diff)) ||
	    (rc = shl_json_set_str(e, "digest", d->digest[0] ? d->digest : diff)) ||
	    (rc = shl_json_set_str(e, "media_type", d->media[0] ? d->media : MT_OCI_LAYER)) ||
	    (rc = shl_json_set_int(e, "size", d->size >= 0 ? d->size : tar_size)) ||
	    (rc = shl_json_set_int(e, "tar_size", tar_size))) {
		shl_json_put(e);
		return rc ? rc : shl_err(SHL_ENOMEM, "out of memory");
	}
	return shl_json_push(layers_out, e);
}

struct image_in {
	const char *manifest_digest;    /* NULL: synthesize */
	const char *manifest_media;
	const char *manifest_bytes;
	size_t manifest_len;
	struct item *config;
	const char *config_name;        /* for messages */
	struct layer_desc *layers;
	const char **paths;             /* docker-archive layer paths, or NULL */
	size_t nlayers;
	shl_load_names names;
	const char *index_digest;       /* nested index it came from (kept as extra blob) */
	const char *original;           /* "io.shale.original-manifest": the registry's manifest */
	const char *repo_digests;       /* "io.shale.repo-digests": "repo@sha256:..,..." */
};

/* The extra blobs an image record keeps: its index and the original manifest. */
static int add_extra(struct loader *L, const struct image_in *in, shl_json *rec)
{
	shl_json *extra = shl_json_new_array();
	int rc;

	if (!extra || (rc = shl_json_set(rec, "extra_blobs", extra)))
		return shl_err(SHL_ENOMEM, "out of memory");
	for (int k = 0; k < 2; k++) {
		const char *bd = k ? in->original : in->index_digest;
		struct item *bi = bd ? shl_load__find_blob(L, bd) : NULL;
		shl_json *bj = NULL;
		const char *bm;
		if (!bi || bi->kind != ITEM_META)
			continue; /* not carried along: nothing to keep */
		if ((rc = shl_json_parse(&bj, bi->data, bi->len, SHL_MANIFEST_CAP, bd)))
			return rc;
		bm = shl_json_get_str(bj, "mediaType");
		if (!bm)
			bm = k ? MT_OCI_MANIFEST : MT_OCI_INDEX;
		rc = shl_batch_put_blob(L->batch, bd, bm, bi->data, bi->len);
		shl_json_put(bj);
		if (!rc)
			rc = shl_json_push(extra, shl_json_new_string(bd));
		if (!rc && k)
			rc = shl_json_set_str(rec, "original_manifest", bd);
		if (rc)
			return rc;
	}
	return 0;
}

static int set_names(struct loader *L, const struct image_in *in, const char *digest, shl_json *rec)
{
	const char *orig = shl_json_get_str(rec, "original_manifest");
	int rc = 0;

	if (!L->first_image[0])
		snprintf(L->first_image, sizeof(L->first_image), "%s", digest);
	else if (strcmp(L->first_image, digest))
		L->many_images = 1;
	if (in->names.from_tag) {
		if (L->tag_manifest[0] && strcmp(L->tag_manifest, digest))
			L->tag_conflict = 1;
		snprintf(L->tag_manifest, sizeof(L->tag_manifest), "%s", digest);
	}
	for (size_t i = 0; i < in->names.n && !rc; i++) {
		shl_ref r;
		char full[600], fam[600];
		if ((rc = shl_ref_parse(in->names.v[i], &r)))
			break;
		if (r.digest[0] && !r.tag[0]) {
			rc = shl_err(SHL_EINVAL, "'%s': an image is named by a tag, not a digest", in->names.v[i]);
			break;
		}
		r.digest[0] = '\0';
		shl_ref_full(&r, full, sizeof(full));
		shl_ref_familiar(&r, fam, sizeof(fam));
		if (!(rc = shl_batch_set_ref(L->batch, full, digest)))
			rc = add_loaded(L, fam);
		if (!rc && orig) {
			/* name@<registry digest> keeps resolving on this side */
			char repo[600], rd[700];
			shl_ref_repo(&r, 0, repo, sizeof(repo));
			snprintf(rd, sizeof(rd), "%s@%s", repo, orig);
			rc = shl_batch_set_ref(L->batch, rd, digest);
		}
	}
	/* repo digests saved by `shale save` (e.g. a registry index's digest) */
	for (const char *p = in->repo_digests; !rc && p && *p;) {
		size_t n = strcspn(p, ",");
		char one[700], full[700];
		shl_ref r;
		if (n && n < sizeof(one)) {
			snprintf(one, sizeof(one), "%.*s", (int)n, p);
			if (shl_ref_parse(one, &r) == 0 && r.digest[0] && !r.tag[0]) {
				shl_ref_full(&r, full, sizeof(full));
				rc = shl_batch_set_ref(L->batch, full, digest);
			} else {
				shl_error_clear(); /* a bad entry is skipped, not fatal */
			}
		}
		p += n;
		if (*p)
			p++;
	}
	if (!rc && !in->names.n) {
		char line[100];
		snprintf(line, sizeof(line), "ID %s", in->config->digest);
		rc = add_loaded(L, line);
	}
	return rc;
}

static int add_image(struct loader *L, const struct image_in *in)
{
	shl_json *cfg = NULL, *diffs, *layers = NULL, *rec = NULL;
	char *synth = NULL, digest[72];
	const char *mbytes = in->manifest_bytes, *mmedia = in->manifest_media, *s;
	size_t mlen = in->manifest_len;
	int64_t total = 0;
	int rc;

	if ((rc = meta_json(in->config, in->config_name, SHL_CONFIG_CAP, &cfg)))
		return rc;
	diffs = shl_json_get(shl_json_get(cfg, "rootfs"), "diff_ids");
	if (!shl_json_is_array(diffs)) {
		rc = shl_err(SHL_EFORMAT, "image config %s: no rootfs.diff_ids", in->config->digest);
		goto out;
	}
	if (in->nlayers > SHL_LOAD_MAX_LAYERS) {
		rc = shl_err(SHL_ELIMIT, "image config %s: more than %d layers", in->config->digest, SHL_LOAD_MAX_LAYERS);
		goto out;
	}
	if (shl_json_len(diffs) != in->nlayers) {
		rc = shl_err(SHL_EFORMAT, "image config %s: %zu diff_ids for %zu layers", in->config->digest,
			     shl_json_len(diffs), in->nlayers);
		goto out;
	}
	if (!(layers = shl_json_new_array())) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < in->nlayers && !rc; i++) {
		const char *want = shl_json_str(shl_json_at(diffs, i));
		uint8_t tmp[32];
		if (!want || shl_digest_parse(want, tmp) != 0) {
			rc = shl_err(SHL_EFORMAT, "image config %s: bad diff_id %zu", in->config->digest, i);
			break;
		}
		rc = layer_for(L, &in->layers[i], in->paths ? in->paths[i] : NULL, want, layers);
	}
	if (rc)
		goto out;
	for (size_t i = 0; i < shl_json_len(layers); i++) {
		int64_t ts = 0;
		shl_json_get_int(shl_json_at(layers, i), "tar_size", &ts);
		total += ts;
	}
	if (in->manifest_digest) {
		snprintf(digest, sizeof(digest), "%s", in->manifest_digest);
	} else {
		if ((rc = shl_store__synth_manifest(layers, in->config->digest, in->config->len, &synth, &mlen, digest)))
			goto out;
		mbytes = synth;
		mmedia = MT_OCI_MANIFEST;
	}
	if (!(rec = shl_json_new_object())) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shl_batch_put_blob(L->batch, digest, mmedia, mbytes, mlen)) ||
	    (rc = shl_batch_put_blob(L->batch, in->config->digest, MT_OCI_CONFIG, in->config->data, in->config->len)) ||
	    (rc = shl_json_set_str(rec, "manifest", digest)) || (rc = shl_json_set_str(rec, "media_type", mmedia)) ||
	    (rc = shl_json_set_str(rec, "config", in->config->digest)) ||
	    (rc = shl_json_set_str(rec, "os", (s = shl_json_get_str(cfg, "os")) ? s : "")) ||
	    (rc = shl_json_set_str(rec, "architecture", (s = shl_json_get_str(cfg, "architecture")) ? s : "")) ||
	    ((s = shl_json_get_str(cfg, "variant")) && (rc = shl_json_set_str(rec, "variant", s))) ||
	    (rc = shl_json_set_int(rec, "created", shl_store__parse_created(shl_json_get_str(cfg, "created")))) ||
	    (rc = shl_json_set_int(rec, "size", total)) || (rc = shl_json_set(rec, "layers", shl_json_ref(layers))))
		goto out;
	if ((in->index_digest || in->original) && (rc = add_extra(L, in, rec)))
		goto out;
	if ((rc = set_names(L, in, digest, rec)))
		goto out;
	if (!config_loaded(L, in->config->digest)) {
		char (*v)[72] = realloc(L->configs, (L->nconfigs + 1) * sizeof(*v));
		if (!v) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		L->configs = v;
		memcpy(v[L->nconfigs++], in->config->digest, 72);
	}
	rc = shl_batch_put_image(L->batch, digest, rec);
	rec = NULL;
out:
	shl_json_put(rec);
	shl_json_put(layers);
	shl_json_put(cfg);
	free(synth);
	return rc;
}

/* ---- docker-archive: manifest.json ------------------------------------------ */

/* `leftovers`: index.json was loaded; add only the images of Docker >= 25
 * (entries with LayerSources) that index.json omits - moby #51389 drops
 * untagged images from it - and ignore whatever else manifest.json says. */
static int load_docker(struct loader *L, struct item *mj, int leftovers)
{
	shl_json *m = NULL;
	int rc = meta_json(mj, "manifest.json", SHL_LOAD_META_CAP, &m);

	if (rc || !shl_json_is_array(m)) {
		shl_json_put(m);
		if (leftovers) {
			shl_error_clear();
			return 0;
		}
		return rc ? rc : shl_err(SHL_EFORMAT, "manifest.json: not an array");
	}
	if (shl_json_len(m) == 0 && !leftovers)
		rc = shl_err(SHL_EFORMAT, "manifest.json: no images");
	for (size_t i = 0; i < shl_json_len(m) && !rc; i++) {
		shl_json *e = shl_json_at(m, i), *ls = shl_json_get(e, "Layers");
		const char *cfgp = shl_json_get_str(e, "Config");
		size_t nl = shl_json_len(ls);
		struct layer_desc *descs;
		const char **paths;
		struct image_in in;
		if (leftovers) {
			struct item *c = cfgp ? shl_load__follow(L, cfgp) : NULL;
			if (!shl_json_is_object(shl_json_get(e, "LayerSources")) || !c || c->kind != ITEM_META ||
			    config_loaded(L, c->digest))
				continue;
		}
		descs = calloc(nl + 1, sizeof(*descs));
		paths = calloc(nl + 1, sizeof(char *));
		memset(&in, 0, sizeof(in));
		if (!descs || !paths)
			rc = shl_err(SHL_ENOMEM, "out of memory");
		else if (!shl_json_is_object(e) || !cfgp || !shl_json_is_array(ls))
			rc = shl_err(SHL_EFORMAT, "manifest.json entry %zu: no Config or Layers", i);
		if (!rc && !(in.config = shl_load__follow(L, cfgp)))
			rc = shl_err(SHL_ENOTFOUND, "manifest.json: config '%s' is missing from the archive", cfgp);
		for (size_t k = 0; k < nl && !rc; k++) {
			paths[k] = shl_json_str(shl_json_at(ls, k));
			descs[k].size = -1;
			if (!paths[k])
				rc = shl_err(SHL_EFORMAT, "manifest.json entry %zu: bad layer %zu", i, k);
		}
		if (!rc)
			rc = shl_load__names_repotags(L, e, &in.names);
		in.config_name = cfgp;
		in.layers = descs;
		in.paths = paths;
		in.nlayers = nl;
		if (!rc)
			rc = add_image(L, &in);
		shl_load__names_free(&in.names);
		free(descs);
		free(paths);
	}
	shl_json_put(m);
	return rc;
}

/* ---- OCI: index.json ------------------------------------------------------------ */

static int load_manifest(struct loader *L, const shl_json *desc, const shl_load_names *names,
			 const char *index_digest)
{
	const char *digest = shl_json_get_str(desc, "digest");
	struct item *it = shl_load__find_blob(L, digest);
	shl_json *m = NULL, *ls;
	struct layer_desc *descs = NULL;
	struct image_in in;
	const char *cfgd, *cfgm, *mt;
	int rc;

	if (!digest)
		return shl_err(SHL_EFORMAT, "index: descriptor without a digest");
	if ((rc = meta_json(it, digest, SHL_MANIFEST_CAP, &m)))
		return shl_err_ctx(rc, "manifest");
	mt = shl_json_get_str(m, "mediaType") ? shl_json_get_str(m, "mediaType") : shl_json_get_str(desc, "mediaType");
	if (!mt)
		mt = MT_OCI_MANIFEST;
	if (!is_manifest_type(mt)) {
		rc = shl_err(SHL_EUNSUPPORTED, "manifest %s: unsupported media type %s", digest, mt);
		goto out;
	}
	cfgd = shl_json_get_str(shl_json_get(m, "config"), "digest");
	cfgm = shl_json_get_str(shl_json_get(m, "config"), "mediaType");
	ls = shl_json_get(m, "layers");
	if (cfgm && strcmp(cfgm, MT_OCI_CONFIG) && strcmp(cfgm, MT_DOCKER_CONFIG)) {
		rc = shl_err(SHL_EUNSUPPORTED, "manifest %s: unsupported config media type %s (not a container image)",
			     digest, cfgm);
		goto out;
	}
	if (!shl_json_is_array(ls)) {
		rc = shl_err(SHL_EFORMAT, "manifest %s: no layers array", digest);
		goto out;
	}
	memset(&in, 0, sizeof(in));
	in.config = shl_load__find_blob(L, cfgd);
	in.config_name = cfgd;
	if (!in.config) {
		rc = shl_err(SHL_ENOTFOUND, "manifest %s: config %s is missing from the archive", digest,
			     cfgd ? cfgd : "(none)");
		goto out;
	}
	if (!(descs = calloc(shl_json_len(ls) + 1, sizeof(*descs)))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < shl_json_len(ls); k++) {
		shl_json *l = shl_json_at(ls, k);
		const char *ld = shl_json_get_str(l, "digest"), *lm = shl_json_get_str(l, "mediaType");
		int64_t sz = -1;
		uint8_t tmp[32];
		if (!ld || shl_digest_parse(ld, tmp) != 0) {
			rc = shl_err(SHL_EFORMAT, "manifest %s: bad digest of layer %zu", digest, k);
			goto out;
		}
		if (lm && !known_layer_type(lm)) {
			rc = shl_err(SHL_EUNSUPPORTED, "manifest %s: unsupported layer media type %s", digest, lm);
			goto out;
		}
		shl_json_get_int(l, "size", &sz);
		snprintf(descs[k].digest, sizeof(descs[k].digest), "%s", ld);
		snprintf(descs[k].media, sizeof(descs[k].media), "%s", lm ? lm : "");
		descs[k].size = sz;
	}
	in.manifest_digest = digest;
	in.manifest_media = mt;
	in.manifest_bytes = it->data;
	in.manifest_len = it->len;
	in.layers = descs;
	in.nlayers = shl_json_len(ls);
	in.names = *names;
	in.index_digest = index_digest;
	in.original = shl_json_get_str(shl_json_get(desc, "annotations"), "io.shale.original-manifest");
	in.repo_digests = shl_json_get_str(shl_json_get(desc, "annotations"), "io.shale.repo-digests");
	rc = add_image(L, &in);
out:
	free(descs);
	shl_json_put(m);
	return rc;
}

static int load_index(struct loader *L, shl_json *index, const char *index_digest, int depth,
		      const shl_load_names *names);

static int load_desc(struct loader *L, const shl_json *d, int depth, const shl_load_names *names,
		     const char *index_digest)
{
	const char *mt = shl_json_get_str(d, "mediaType"), *digest = shl_json_get_str(d, "digest");

	if (++L->ndescs > SHL_LOAD_MAX_DESCS)
		return shl_err(SHL_ELIMIT, "index: more than %d descriptors", SHL_LOAD_MAX_DESCS);
	if (is_index_type(mt)) {
		struct item *it = shl_load__find_blob(L, digest);
		shl_json *ix = NULL;
		int rc;
		if (depth >= SHL_LOAD_MAX_DEPTH)
			return shl_err(SHL_ELIMIT, "index %s: nested deeper than %d", digest, SHL_LOAD_MAX_DEPTH);
		if ((rc = meta_json(it, digest ? digest : "index", SHL_MANIFEST_CAP, &ix)))
			return shl_err_ctx(rc, "index");
		rc = load_index(L, ix, digest, depth + 1, names);
		shl_json_put(ix);
		return rc;
	}
	return load_manifest(L, d, names, index_digest);
}

/* Would load_desc find this descriptor's document? (--all-platforms skips
 * platforms whose manifests the archive does not carry, as exporters with
 * "skip missing" produce.) */
static int present(struct loader *L, const shl_json *d)
{
	struct item *it = shl_load__find_blob(L, shl_json_get_str(d, "digest"));
	return it && it->kind == ITEM_META;
}

/* A descriptor an index lists that shale can load (an image or an index). */
static int loadable(const shl_json *d)
{
	const char *mt = shl_json_get_str(d, "mediaType");

	if (shl_load__is_attestation(d) || shl_json_get(d, "artifactType"))
		return 0;
	/* unknown media types in an index are skipped (OCI layout spec) */
	return !mt || is_index_type(mt) || is_manifest_type(mt);
}

/* A multi-platform index: pick the platform(s). The names go to the wanted
 * platform's image (with --all-platforms the others are loaded untagged). */
static int load_index(struct loader *L, shl_json *index, const char *index_digest, int depth,
		      const shl_load_names *names)
{
	shl_json *ms = shl_json_get(index, "manifests");
	shl_load_plat want;
	shl_load_names none = { 0 };
	size_t n = shl_json_len(ms), best = (size_t)-1;
	int rc, picked = 0;

	if (!shl_json_is_array(ms))
		return shl_err(SHL_EFORMAT, "index %s: no manifests array", index_digest ? index_digest : "");
	if ((rc = shl_load__want_platform(L->o->platform, &want)))
		return rc;
	for (size_t i = 0; i < n && best == (size_t)-1; i++) {
		shl_json *d = shl_json_at(ms, i), *p = shl_json_get(d, "platform");
		if (loadable(d) && (!p || shl_load__platform_matches(p, &want)) &&
		    (!L->o->all_platforms || present(L, d)))
			best = i;
	}
	if (best == (size_t)-1 && !L->o->all_platforms)
		return shl_err(SHL_ENOTFOUND, "index %s: no image for platform %s/%s%s%s",
			       index_digest ? index_digest : "", want.os, want.arch, want.variant[0] ? "/" : "",
			       want.variant);
	for (size_t i = 0; i < n && !rc; i++) {
		shl_json *d = shl_json_at(ms, i);
		if (!L->o->all_platforms && i != best)
			continue;
		if (!loadable(d) || (L->o->all_platforms && !present(L, d)))
			continue;
		if (best == (size_t)-1)
			best = i; /* --all-platforms, none matches: the first one gets the names */
		rc = load_desc(L, d, depth, i == best ? names : &none, index_digest);
		picked++;
	}
	if (!rc && !picked)
		rc = shl_err(SHL_ENOTFOUND, "index %s: no image in the archive", index_digest ? index_digest : "");
	return rc;
}

/* index.json: every entry is an image (or a multi-platform index) of its own.
 * *any: it listed something loadable. */
static int load_top_index(struct loader *L, struct item *ij, int *any)
{
	shl_json *ix = NULL, *ms;
	int rc = meta_json(ij, "index.json", SHL_MANIFEST_CAP, &ix);

	if (rc)
		return rc;
	ms = shl_json_get(ix, "manifests");
	if (!shl_json_is_array(ms) && !shl_json_is_object(ix))
		rc = shl_err(SHL_EFORMAT, "index.json: not an object");
	for (size_t i = 0; i < shl_json_len(ms) && !rc; i++) {
		shl_json *d = shl_json_at(ms, i);
		shl_load_names nm = { 0 };
		if (!loadable(d))
			continue;
		*any = 1;
		if (!(rc = shl_load__names_oci(L, d, &nm)))
			rc = load_desc(L, d, 0, &nm, NULL);
		shl_load__names_free(&nm);
	}
	shl_json_put(ix);
	return rc;
}

/* A containers/image "dir:" layout: manifest.json is one registry manifest,
 * blobs are named by bare hex. */
static int load_dir_layout(struct loader *L, struct item *mj)
{
	shl_json *d = NULL;
	shl_load_names nm = { 0 };
	uint8_t sha[32];
	char digest[72];
	int rc;

	shl_sha256_buf(mj->data, mj->len, sha);
	shl_digest_str(sha, digest);
	if ((rc = shl_json_parse(&d, mj->data, mj->len, SHL_MANIFEST_CAP, "manifest.json")))
		return rc;
	rc = shl_json_set_str(d, "digest", digest);
	/* the bytes are not in a blob of their own: name them as one */
	if (!rc && !shl_load__find_blob(L, digest))
		rc = shl_load__take_link(L, digest + 7, "manifest.json", 1);
	if (!rc)
		rc = shl_load__names_tag(L, &nm);
	if (!rc)
		rc = load_manifest(L, d, &nm, NULL);
	shl_load__names_free(&nm);
	shl_json_put(d);
	return rc;
}

/* --tag when every image the archive holds has a name of its own: one more
 * name for the one image; with several, which one is meant is unclear. */
static int tag_named(struct loader *L)
{
	char full[600], fam[600];
	shl_ref r;
	int rc;

	if (L->many_images)
		return shl_err(SHL_EINVAL, "--tag %s: the archive holds several images, each named; load it without "
			       "--tag and add names with `shale tag`", L->o->tag);
	if ((rc = shl_ref_parse(L->o->tag, &r)))
		return shl_err_ctx(rc, "--tag");
	if (r.digest[0])
		return shl_err(SHL_EINVAL, "--tag %s: an image is named by a tag, not a digest", L->o->tag);
	shl_ref_full(&r, full, sizeof(full));
	shl_ref_familiar(&r, fam, sizeof(fam));
	if ((rc = shl_batch_set_ref(L->batch, full, L->first_image)))
		return rc;
	return add_loaded(L, fam);
}

int shl_load__resolve(struct loader *L)
{
	struct item *ij = shl_load__find(L, "index.json"), *mj = shl_load__find(L, "manifest.json");
	int rc;

	L->ndescs = 0;
	L->tag_manifest[0] = '\0';
	L->tag_conflict = 0;
	L->first_image[0] = '\0';
	L->many_images = 0;
	L->nconfigs = 0;
	if (ij) {
		int any = 0;
		rc = load_top_index(L, ij, &any);
		/* Docker >= 25 quirks: images index.json lacks (moby #51389), or
		 * "manifests": null (moby #47210) - manifest.json has them */
		if (!rc && mj && mj->kind == ITEM_META)
			rc = load_docker(L, mj, any);
		else if (!rc && !any)
			rc = shl_err(SHL_ENOTFOUND, "index.json: no images");
	} else if (mj && mj->kind == ITEM_META && mj->len && mj->data[0] == '{')
		rc = load_dir_layout(L, mj);
	else if (mj)
		rc = load_docker(L, mj, 0);
	else
		rc = shl_err(SHL_EFORMAT, "not a docker or OCI image archive (no index.json or manifest.json)");
	if (!rc && L->tag_conflict)
		rc = shl_err(SHL_EINVAL, "--tag %s: the archive holds several untagged images; load it without --tag "
			     "and name them with `shale tag`", L->o->tag);
	if (!rc && L->o->tag && *L->o->tag && !L->tag_manifest[0] && L->first_image[0])
		rc = tag_named(L);
	return rc;
}
