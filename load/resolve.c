/*
 * load/resolve.c - from the archive's index.json (OCI layout, Docker >= 25)
 * or manifest.json (docker-archive) to images: manifests and configs are
 * verified, layers are matched to config.rootfs.diff_ids, names come from
 * io.containerd.image.name / org.opencontainers.image.ref.name / RepoTags,
 * and everything goes into the loader's batch. A docker-archive image gets a
 * synthesized OCI manifest over its uncompressed layers around the verbatim
 * config, so the image ID is unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "load/load_int.h"
#include "shale/ref.h"
#include "util/err.h"
#include "util/hash.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MAX_INDEX_DEPTH 4

struct layer_desc {
	char digest[72];
	char media[128];
	int64_t size;
};

/* ---- helpers ---------------------------------------------------------------- */

static struct item *follow(struct loader *L, const char *name)
{
	struct item *it = shl_load__find(L, name);

	for (int hops = 0; it && it->kind == ITEM_LINK && hops < 16; hops++)
		it = shl_load__find(L, it->target);
	return it && it->kind != ITEM_LINK ? it : NULL;
}

static int meta_json(struct loader *L, struct item *it, const char *what, size_t cap, shl_json **out)
{
	(void)L;
	if (!it)
		return shl_err(SHL_ENOTFOUND, "%s is missing from the archive", what);
	if (it->kind != ITEM_META)
		return shl_err(SHL_EFORMAT, "%s is not a JSON document", what);
	return shl_json_parse(out, it->data, it->len, cap, what);
}

static void host_platform(char os[32], char arch[32], char variant[32])
{
	struct utsname u;

	snprintf(os, 32, "linux");
	variant[0] = '\0';
	if (uname(&u) != 0 || !strcmp(u.machine, "x86_64"))
		snprintf(arch, 32, "amd64");
	else if (!strcmp(u.machine, "aarch64"))
		snprintf(arch, 32, "arm64");
	else if (!strncmp(u.machine, "armv7", 5))
		snprintf(arch, 32, "arm"), snprintf(variant, 32, "v7");
	else
		snprintf(arch, 32, "%.31s", u.machine);
}

static int want_platform(struct loader *L, char os[32], char arch[32], char variant[32])
{
	const char *p = L->o->platform;
	char buf[100];
	char *a, *v;

	if (!p || !*p) {
		host_platform(os, arch, variant);
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", p);
	a = strchr(buf, '/');
	if (!a || !a[1])
		return shl_err(SHL_EINVAL, "bad platform '%s': want os/arch[/variant]", p);
	*a++ = '\0';
	v = strchr(a, '/');
	if (v)
		*v++ = '\0';
	snprintf(os, 32, "%.31s", buf);
	snprintf(arch, 32, "%.31s", !strcmp(a, "x86_64") ? "amd64" : !strcmp(a, "aarch64") ? "arm64" : a);
	snprintf(variant, 32, "%.31s", v ? v : "");
	return 0;
}

static int platform_matches(shl_json *plat, const char *os, const char *arch, const char *variant)
{
	const char *po = shl_json_get_str(plat, "os"), *pa = shl_json_get_str(plat, "architecture");
	const char *pv = shl_json_get_str(plat, "variant");

	if (!po || !pa || strcmp(po, os) || strcmp(pa, arch))
		return 0;
	if (!*variant)
		return 1;
	if (!pv || !*pv)
		return !strcmp(arch, "arm64") && !strcmp(variant, "v8");
	return !strcmp(pv, variant);
}

static int is_attestation(shl_json *desc)
{
	const char *t = shl_json_get_str(shl_json_get(desc, "annotations"), "vnd.docker.reference.type");
	const char *os = shl_json_get_str(shl_json_get(desc, "platform"), "os");
	return (t && !strcmp(t, "attestation-manifest")) || (os && !strcmp(os, "unknown"));
}

static int64_t parse_created(const char *s)
{
	struct tm tm;
	char *end;

	if (!s)
		return 0;
	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end)
		return 0;
	return (int64_t)timegm(&tm);
}

static int add_loaded(struct loader *L, const char *what)
{
	char **v = realloc(L->loaded, (L->nloaded + 1) * sizeof(*v));

	if (!v)
		return shl_err(SHL_ENOMEM, "out of memory");
	L->loaded = v;
	v[L->nloaded] = strdup(what);
	if (!v[L->nloaded])
		return shl_err(SHL_ENOMEM, "out of memory");
	L->nloaded++;
	return 0;
}

/* ---- one image -------------------------------------------------------------- */

/* Layer i: the archive item by digest (OCI) or path (docker), or the store. */
static int layer_for(struct loader *L, const struct layer_desc *d, const char *path, const char *want_diff,
		     shl_json *layers_out)
{
	struct item *it = path ? follow(L, path) : shl_load__find_blob(L, d->digest);
	char diff[72] = "";
	int64_t tar_size = 0;
	shl_json *rec = NULL, *e;
	int rc;

	if (it && (it->kind == ITEM_META || it->kind == ITEM_OTHER))
		return shl_err(SHL_EFORMAT, "layer %s is not a tar", path ? path : d->digest);
	if (it) {
		snprintf(diff, sizeof(diff), "%s", it->diff_id);
	} else if (shl_store__has_layer(L->s, want_diff)) {
		snprintf(diff, sizeof(diff), "%s", want_diff); /* incremental archive: stored already */
	} else if (!path && shl_store__alias(L->s, d->digest, diff) == 0) {
		/* known compressed blob */
	} else {
		return shl_err(SHL_ENOTFOUND, "layer %s (diff_id %s) is missing from the archive and not in the store",
			       path ? path : d->digest, want_diff);
	}
	if (strcmp(diff, want_diff))
		return shl_err(SHL_EDIGEST, "layer %s: content has diff_id %s, the config says %s",
			       path ? path : d->digest, diff, want_diff);
	if (it && it->kind == ITEM_LAYER && !it->existed) {
		tar_size = (int64_t)it->staged.info.tar_size;
		if (!it->in_batch) {
			const char *alias = it->compression ? (d->media[0] ? d->media : "application/octet-stream") : NULL;
			if ((rc = shl_batch_add_layer(L->batch, &it->staged, alias)))
				return rc;
			it->in_batch = 1;
		}
	} else if (shl_store__get_layer(L->s, diff, &rec) == 0) {
		shl_json_get_int(rec, "tar_size", &tar_size);
		shl_json_put(rec);
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
	struct layer_desc *layers;
	const char **paths;             /* docker-archive layer paths, or NULL */
	size_t nlayers;
	const char *const *names;       /* refs to set */
	size_t nnames;
	const char *index_digest;       /* nested index it came from (kept as extra blob) */
	const char *original;           /* "io.shale.original-manifest": the registry's manifest */
};

static int add_image(struct loader *L, const struct image_in *in)
{
	shl_json *cfg = NULL, *diffs, *layers = NULL, *rec = NULL;
	char *synth = NULL, digest[72];
	const char *mbytes = in->manifest_bytes, *mmedia = in->manifest_media;
	size_t mlen = in->manifest_len;
	int64_t total = 0;
	int rc;

	if ((rc = meta_json(L, in->config, "image config", SHL_CONFIG_CAP, &cfg)))
		return rc;
	diffs = shl_json_get(shl_json_get(cfg, "rootfs"), "diff_ids");
	if (shl_json_len(diffs) != in->nlayers) {
		rc = shl_err(SHL_EFORMAT, "image config %s: %zu diff_ids for %zu layers", in->config->digest,
			     shl_json_len(diffs), in->nlayers);
		goto out;
	}
	layers = shl_json_new_array();
	if (!layers) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < in->nlayers && !rc; i++) {
		const char *want = shl_json_str(shl_json_at(diffs, i));
		if (!want) {
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
	rec = shl_json_new_object();
	if (!rec) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = shl_batch_put_blob(L->batch, digest, mmedia, mbytes, mlen)) ||
	    (rc = shl_batch_put_blob(L->batch, in->config->digest, MT_OCI_CONFIG, in->config->data, in->config->len)) ||
	    (rc = shl_json_set_str(rec, "manifest", digest)) || (rc = shl_json_set_str(rec, "media_type", mmedia)) ||
	    (rc = shl_json_set_str(rec, "config", in->config->digest)) ||
	    (rc = shl_json_set_str(rec, "os", shl_json_get_str(cfg, "os") ? shl_json_get_str(cfg, "os") : "")) ||
	    (rc = shl_json_set_str(rec, "architecture", shl_json_get_str(cfg, "architecture") ? shl_json_get_str(cfg, "architecture") : "")) ||
	    (shl_json_get_str(cfg, "variant") && (rc = shl_json_set_str(rec, "variant", shl_json_get_str(cfg, "variant")))) ||
	    (rc = shl_json_set_int(rec, "created", parse_created(shl_json_get_str(cfg, "created")))) ||
	    (rc = shl_json_set_int(rec, "size", total)) || (rc = shl_json_set(rec, "layers", shl_json_ref(layers))))
		goto out;
	if (in->index_digest || in->original) {
		shl_json *extra = shl_json_new_array();
		if (!extra || (rc = shl_json_set(rec, "extra_blobs", extra))) {
			rc = rc ? rc : shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		for (int k = 0; k < 2 && !rc; k++) {
			const char *bd = k ? in->original : in->index_digest;
			struct item *bi = bd ? shl_load__find_blob(L, bd) : NULL;
			shl_json *bj = NULL;
			const char *bm;
			if (!bi || bi->kind != ITEM_META)
				continue; /* not carried along: nothing to keep */
			if ((rc = shl_json_parse(&bj, bi->data, bi->len, SHL_MANIFEST_CAP, bd)))
				break;
			bm = shl_json_get_str(bj, "mediaType");
			if (!bm)
				bm = k ? MT_OCI_MANIFEST : MT_OCI_INDEX;
			rc = shl_batch_put_blob(L->batch, bd, bm, bi->data, bi->len);
			shl_json_put(bj);
			if (!rc)
				rc = shl_json_push(extra, shl_json_new_string(bd));
			if (!rc && k)
				rc = shl_json_set_str(rec, "original_manifest", bd);
		}
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < in->nnames && !rc; i++) {
		shl_ref r;
		char full[600], fam[600];
		if ((rc = shl_ref_parse(in->names[i], &r)))
			break;
		shl_ref_full(&r, full, sizeof(full));
		shl_ref_familiar(&r, fam, sizeof(fam));
		if (!(rc = shl_batch_set_ref(L->batch, full, digest)))
			rc = add_loaded(L, fam);
		if (!rc && shl_json_get_str(rec, "original_manifest")) {
			/* name@<registry digest> keeps resolving on this side */
			char repo[600], rd[700];
			shl_ref_repo(&r, 0, repo, sizeof(repo));
			snprintf(rd, sizeof(rd), "%s@%s", repo, shl_json_get_str(rec, "original_manifest"));
			rc = shl_batch_set_ref(L->batch, rd, digest);
		}
	}
	if (!rc && in->nnames == 0) {
		char line[100];
		snprintf(line, sizeof(line), "ID %s", in->config->digest);
		rc = add_loaded(L, line);
	}
	if (!rc) {
		rc = shl_batch_put_image(L->batch, digest, rec);
		rec = NULL;
	}
out:
	shl_json_put(rec);
	shl_json_put(layers);
	shl_json_put(cfg);
	free(synth);
	return rc;
}

/* ---- docker-archive: manifest.json ------------------------------------------ */

static int repo_tags_for(struct loader *L, const char *config_digest, const char ***names, size_t *n)
{
	struct item *mj = shl_load__find(L, "manifest.json");
	shl_json *m = NULL;
	int rc = 0;

	*names = NULL;
	*n = 0;
	if (!mj || mj->kind != ITEM_META || shl_json_parse(&m, mj->data, mj->len, SHL_LOAD_META_CAP, "manifest.json"))
		return 0;
	for (size_t i = 0; i < shl_json_len(m); i++) {
		shl_json *e = shl_json_at(m, i), *tags = shl_json_get(e, "RepoTags");
		struct item *cfg = follow(L, shl_json_get_str(e, "Config") ? shl_json_get_str(e, "Config") : "");
		if (!cfg || strcmp(cfg->digest, config_digest))
			continue;
		*names = calloc(shl_json_len(tags) + 1, sizeof(char *));
		if (!*names) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		for (size_t k = 0; k < shl_json_len(tags); k++)
			if (shl_json_str(shl_json_at(tags, k)))
				(*names)[(*n)++] = strdup(shl_json_str(shl_json_at(tags, k)));
		break;
	}
	shl_json_put(m);
	return rc;
}

static void free_names(const char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free((char *)names[i]);
	free(names);
}

static int load_docker(struct loader *L, struct item *mj)
{
	shl_json *m = NULL;
	int rc = meta_json(L, mj, "manifest.json", SHL_LOAD_META_CAP, &m);

	if (rc)
		return rc;
	if (!shl_json_is_array(m)) {
		shl_json_put(m);
		return shl_err(SHL_EFORMAT, "manifest.json: not an array");
	}
	for (size_t i = 0; i < shl_json_len(m) && !rc; i++) {
		shl_json *e = shl_json_at(m, i), *ls = shl_json_get(e, "Layers"), *tags = shl_json_get(e, "RepoTags");
		const char *cfgp = shl_json_get_str(e, "Config");
		size_t nl = shl_json_len(ls), nt = shl_json_len(tags);
		struct layer_desc *descs = calloc(nl + 1, sizeof(*descs));
		const char **paths = calloc(nl + 1, sizeof(char *)), **names = calloc(nt + 2, sizeof(char *));
		struct image_in in;
		if (!descs || !paths || !names) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
		} else if (!cfgp) {
			rc = shl_err(SHL_EFORMAT, "manifest.json entry %zu: no Config", i);
		}
		memset(&in, 0, sizeof(in));
		in.config = cfgp ? follow(L, cfgp) : NULL;
		if (!rc && !in.config)
			rc = shl_err(SHL_ENOTFOUND, "manifest.json: config '%s' is missing from the archive", cfgp);
		for (size_t k = 0; k < nl && !rc; k++) {
			paths[k] = shl_json_str(shl_json_at(ls, k));
			descs[k].size = -1;
			if (!paths[k])
				rc = shl_err(SHL_EFORMAT, "manifest.json entry %zu: bad layer %zu", i, k);
		}
		for (size_t k = 0; k < nt; k++)
			if (shl_json_str(shl_json_at(tags, k)))
				names[in.nnames++] = shl_json_str(shl_json_at(tags, k));
		if (!in.nnames && L->o->tag)
			names[in.nnames++] = L->o->tag;
		in.layers = descs;
		in.paths = paths;
		in.nlayers = nl;
		in.names = names;
		if (!rc)
			rc = add_image(L, &in);
		free(descs);
		free(paths);
		free(names);
	}
	shl_json_put(m);
	return rc;
}

/* ---- OCI: index.json ------------------------------------------------------------ */

static int load_manifest(struct loader *L, shl_json *desc, const char *const *names, size_t nnames,
			 const char *index_digest)
{
	const char *digest = shl_json_get_str(desc, "digest");
	struct item *it = digest ? shl_load__find_blob(L, digest) : NULL;
	shl_json *m = NULL, *ls;
	struct layer_desc *descs = NULL;
	struct image_in in;
	const char *cfgd, *mt;
	int rc;

	if (!digest)
		return shl_err(SHL_EFORMAT, "index: descriptor without a digest");
	if ((rc = meta_json(L, it, digest, SHL_MANIFEST_CAP, &m)))
		return shl_err_ctx(rc, "manifest");
	mt = shl_json_get_str(m, "mediaType") ? shl_json_get_str(m, "mediaType") : shl_json_get_str(desc, "mediaType");
	if (!mt)
		mt = MT_OCI_MANIFEST;
	if (strcmp(mt, MT_OCI_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST)) {
		rc = shl_err(SHL_EUNSUPPORTED, "manifest %s: unsupported media type %s", digest, mt);
		goto out;
	}
	cfgd = shl_json_get_str(shl_json_get(m, "config"), "digest");
	ls = shl_json_get(m, "layers");
	memset(&in, 0, sizeof(in));
	in.config = cfgd ? shl_load__find_blob(L, cfgd) : NULL;
	if (!in.config) {
		rc = shl_err(SHL_ENOTFOUND, "manifest %s: config %s is missing from the archive", digest,
			     cfgd ? cfgd : "(none)");
		goto out;
	}
	descs = calloc(shl_json_len(ls) + 1, sizeof(*descs));
	if (!descs) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < shl_json_len(ls); k++) {
		shl_json *l = shl_json_at(ls, k);
		const char *ld = shl_json_get_str(l, "digest"), *lm = shl_json_get_str(l, "mediaType");
		int64_t sz = -1;
		uint8_t tmp[32];
		if (!ld || shl_digest_parse(ld, tmp) != 0) {
			rc = shl_err(SHL_EFORMAT, "manifest %s: bad layer digest", digest);
			goto out;
		}
		if (lm && !strstr(lm, "tar") && !strstr(lm, "rootfs.diff")) {
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
	in.names = names;
	in.nnames = nnames;
	in.index_digest = index_digest;
	in.original = shl_json_get_str(shl_json_get(desc, "annotations"), "io.shale.original-manifest");
	rc = add_image(L, &in);
out:
	free(descs);
	shl_json_put(m);
	return rc;
}

static int load_index(struct loader *L, shl_json *index, int depth, const char *const *names, size_t nnames,
		      const char *index_digest);

static int names_of(struct loader *L, shl_json *desc, const char ***out, size_t *n, int *owned)
{
	shl_json *ann = shl_json_get(desc, "annotations");
	const char *full = shl_json_get_str(ann, "io.containerd.image.name");
	const char *rn = shl_json_get_str(ann, "org.opencontainers.image.ref.name");
	static const char *one[2];

	*owned = 0;
	*n = 0;
	*out = one;
	if (full) {
		one[0] = full;
		*n = 1;
		return 0;
	}
	if (rn && (strchr(rn, '/') || strchr(rn, ':'))) {
		one[0] = rn; /* a full reference (podman, skopeo) */
		*n = 1;
		return 0;
	}
	if (rn) {
		/* a tag only: Docker pairs it with manifest.json's RepoTags */
		struct item *mi = shl_load__find_blob(L, shl_json_get_str(desc, "digest") ? shl_json_get_str(desc, "digest") : "");
		shl_json *m = NULL;
		if (mi && mi->kind == ITEM_META && shl_json_parse(&m, mi->data, mi->len, SHL_MANIFEST_CAP, "manifest") == 0) {
			const char *cfg = shl_json_get_str(shl_json_get(m, "config"), "digest");
			int rc = cfg ? repo_tags_for(L, cfg, out, n) : 0;
			shl_json_put(m);
			if (rc)
				return rc;
			if (*n) {
				*owned = 1;
				return 0;
			}
			if (*out && !*n)
				free(*out);
		}
		*out = one;
	}
	if (L->o->tag) {
		one[0] = L->o->tag;
		*n = 1;
	}
	return 0;
}

static int load_desc(struct loader *L, shl_json *d, int depth, const char *const *names, size_t nnames,
		     const char *index_digest)
{
	const char *mt = shl_json_get_str(d, "mediaType"), *digest = shl_json_get_str(d, "digest");

	if (mt && (!strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST))) {
		struct item *it = digest ? shl_load__find_blob(L, digest) : NULL;
		shl_json *ix = NULL;
		int rc;
		if (depth >= MAX_INDEX_DEPTH)
			return shl_err(SHL_ELIMIT, "index %s: nested deeper than %d", digest, MAX_INDEX_DEPTH);
		if ((rc = meta_json(L, it, digest ? digest : "index", SHL_MANIFEST_CAP, &ix)))
			return rc;
		rc = load_index(L, ix, depth + 1, names, nnames, digest);
		shl_json_put(ix);
		return rc;
	}
	if (mt && strcmp(mt, MT_OCI_MANIFEST) && strcmp(mt, MT_DOCKER_MANIFEST))
		return 0; /* unknown media types in an index are skipped (OCI layout spec) */
	return load_manifest(L, d, names, nnames, index_digest);
}

static int load_index(struct loader *L, shl_json *index, int depth, const char *const *names, size_t nnames,
		      const char *index_digest)
{
	shl_json *ms = shl_json_get(index, "manifests");
	char os[32], arch[32], variant[32];
	int rc = 0, picked = 0;

	if (!shl_json_is_array(ms))
		return shl_err(SHL_EFORMAT, "index %s: no manifests array", index_digest ? index_digest : "index.json");
	if (depth == 0) {
		/* index.json: every entry is an image of its own */
		for (size_t i = 0; i < shl_json_len(ms) && !rc; i++) {
			shl_json *d = shl_json_at(ms, i);
			const char **nm;
			size_t nn;
			int owned;
			if (is_attestation(d))
				continue;
			if ((rc = names_of(L, d, &nm, &nn, &owned)))
				break;
			rc = load_desc(L, d, depth, nm, nn, NULL);
			if (owned)
				free_names(nm, nn);
		}
		return rc;
	}
	/* a multi-platform image: pick the platform(s) */
	if ((rc = want_platform(L, os, arch, variant)))
		return rc;
	for (size_t i = 0; i < shl_json_len(ms) && !rc; i++) {
		shl_json *d = shl_json_at(ms, i);
		if (is_attestation(d))
			continue;
		if (!L->o->all_platforms && shl_json_get(d, "platform") &&
		    !platform_matches(shl_json_get(d, "platform"), os, arch, variant))
			continue;
		rc = load_desc(L, d, depth, picked && !L->o->all_platforms ? NULL : names,
			       picked && !L->o->all_platforms ? 0 : nnames, index_digest);
		picked++;
		if (!L->o->all_platforms)
			break;
	}
	if (!rc && !picked)
		rc = shl_err(SHL_ENOTFOUND, "index %s: no image for platform %s/%s%s%s", index_digest ? index_digest : "",
			     os, arch, *variant ? "/" : "", variant);
	return rc;
}

int shl_load__resolve(struct loader *L)
{
	struct item *ij = shl_load__find(L, "index.json"), *mj = shl_load__find(L, "manifest.json");
	shl_json *ix = NULL;
	int rc;

	if (ij) {
		if ((rc = meta_json(L, ij, "index.json", SHL_MANIFEST_CAP, &ix)))
			return rc;
		rc = load_index(L, ix, 0, NULL, 0, NULL);
		shl_json_put(ix);
		return rc;
	}
	if (mj && mj->kind == ITEM_META && mj->len && mj->data[0] == '{') {
		/* a "dir:" layout: manifest.json is one registry manifest, blobs by hex */
		shl_json *d = NULL;
		const char *names[1];
		uint8_t sha[32];
		char digest[72];
		shl_sha256_buf(mj->data, mj->len, sha);
		shl_digest_str(sha, digest);
		if ((rc = shl_json_parse(&d, mj->data, mj->len, SHL_MANIFEST_CAP, "manifest.json")))
			return rc;
		rc = shl_json_set_str(d, "digest", digest);
		/* the bytes are not in a blob of their own: register them as one */
		if (!rc && !shl_load__find_blob(L, digest)) {
			free(mj->name);
			mj->name = strdup(digest + 7);
			snprintf(mj->digest, sizeof(mj->digest), "%s", digest);
			if (!mj->name)
				rc = shl_err(SHL_ENOMEM, "out of memory");
		}
		names[0] = L->o->tag;
		if (!rc)
			rc = load_manifest(L, d, names, L->o->tag ? 1 : 0, NULL);
		shl_json_put(d);
		return rc;
	}
	if (mj)
		return load_docker(L, mj);
	return shl_err(SHL_EFORMAT, "not a docker or OCI image archive (no index.json or manifest.json)");
}
