/*
 * fetch/pull.c - `shale pull`: reference -> manifest (following OCI indexes
 * and Docker manifest lists to the wanted platform, nested ones too) ->
 * config -> layers (fetch/pull_layers.c) -> one batch committed with the
 * same records a `shale load` of the image would write: the registry's
 * manifest and config verbatim, layer aliases from the compressed digests,
 * the name, and repo@<manifest digest> (and repo@<index digest> when the
 * name pointed at an index) as repo digests.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fetch/pull_int.h"
#include "load/load_int.h"
#include "shale/ref.h"
#include "util/err.h"
#include "util/hash.h"

#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define ACCEPT                                                                                              \
	"Accept: " MT_OCI_INDEX ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_DOCKER_MANIFEST
#define MAX_INDEX_DEPTH 4

static const char *const layer_types[] = {
	"application/vnd.oci.image.layer.v1.tar",
	"application/vnd.oci.image.layer.v1.tar+gzip",
	"application/vnd.oci.image.layer.v1.tar+zstd",
	"application/vnd.docker.image.rootfs.diff.tar.gzip",
	"application/vnd.docker.image.rootfs.diff.tar",
	"application/vnd.docker.image.rootfs.diff.tar.zstd",
	NULL,
};

struct puller {
	shl_store *s;
	const shl_pull_opts *o;
	shl_reg_fn fn;
	void *ctx;
	struct shl_reg *reg;
	shl_ref ref;
	char refstr[600];       /* what the user asked for (for messages) */
	char repo_full[600];    /* docker.io/library/alpine */
	char scope[600];
	char name[600];         /* full name to store (tag), "" for digest pulls without --name */
	shl_load_plat plat;
	char index_digest[72];  /* the top index, when the reference names one */
	char *index_bytes;
	size_t index_len;
	char index_media[128];
	char chosen[72];        /* manifest digest the name goes to */
	size_t ndescs;
	shl_batch *batch;
	struct pull_img **imgs;
	size_t nimgs;
	char (*added)[72];      /* diff_ids of the layers in the batch */
	size_t nadded;
};

static void emit(struct puller *P, int kind, const char *digest, const char *text)
{
	shl_reg_event ev = { kind, digest, text, 0, 0 };

	if (P->fn)
		P->fn(P->ctx, &ev);
}

/* ---- manifests ---------------------------------------------------------------- */

static int http_fail(struct puller *P, long status, const char *what, const char *body, size_t len)
{
	char msg[300], hint[1400];

	shl_http_error_text(status, body, len, msg, sizeof(msg));
	if (status == 401 || status == 403) {
		shl_reg_auth_hint(P->refstr, hint, sizeof(hint));
		return shl_err(SHL_EAUTH, "%s: %s: access denied (%s)%s", P->refstr, what, msg, hint);
	}
	if (status == 404)
		return shl_err(SHL_ENOTFOUND, "%s: %s not found (%s)", P->refstr, what, msg);
	return shl_err(SHL_ENET, "%s: %s: %s", P->refstr, what, msg);
}

/* GET a manifest by tag or digest; verified against `want` (a digest) if set. */
static int get_manifest(struct puller *P, const char *tag_or_digest, const char *want, char **body, size_t *len,
			char digest[72], char media[128])
{
	char path[1200];
	struct curl_slist *hdrs = curl_slist_append(NULL, ACCEPT);
	struct shl_http_hdrs h;
	struct shl_http_req rq = { .url = path, .hdrs = hdrs, .cap = SHL_MANIFEST_CAP };
	shl_json *j = NULL;
	uint8_t sha[32];
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", P->ref.path, tag_or_digest);
	rc = shl_reg_request(P->reg, P->scope, &rq, &status, &h, body, len);
	curl_slist_free_all(hdrs);
	if (rc)
		return shl_err_ctx(rc, "%s: manifest %s", P->refstr, tag_or_digest);
	if (status != 200) {
		rc = http_fail(P, status, "manifest", *body, *len);
		goto fail;
	}
	shl_sha256_buf(*body, *len, sha);
	shl_digest_str(sha, digest);
	if (want && strcmp(want, digest)) {
		rc = shl_err(SHL_EDIGEST, "%s: manifest %s: the registry sent bytes with digest %s", P->refstr, want,
			     digest);
		goto fail;
	}
	if ((rc = shl_json_parse(&j, *body, *len, SHL_MANIFEST_CAP, "manifest")))
		goto fail;
	const char *mt = shl_json_get_str(j, "mediaType");
	if (!mt || !*mt) {
		/* OCI manifests may omit it: the header says, or the shape does */
		mt = h.content_type[0] ? h.content_type : (shl_json_get(j, "manifests") ? MT_OCI_INDEX : MT_OCI_MANIFEST);
	}
	snprintf(media, 128, "%.*s", (int)strcspn(mt, ";"), mt);
	shl_json_put(j);
	return 0;
fail:
	free(*body);
	*body = NULL;
	return rc;
}

static int is_index(const char *mt)
{
	return !strcmp(mt, MT_OCI_INDEX) || !strcmp(mt, MT_DOCKER_LIST);
}

static int is_manifest(const char *mt)
{
	return !strcmp(mt, MT_OCI_MANIFEST) || !strcmp(mt, MT_DOCKER_MANIFEST);
}

/* ---- one image ----------------------------------------------------------------- */

static int get_config(struct puller *P, struct pull_img *p)
{
	char path[1200];
	struct shl_http_req rq = { .url = path, .cap = SHL_CONFIG_CAP };
	uint8_t sha[32];
	char got[72];
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", P->ref.path, p->config);
	if ((rc = shl_reg_request(P->reg, P->scope, &rq, &status, NULL, &p->cbytes, &p->clen)))
		return shl_err_ctx(rc, "%s: config %s", P->refstr, p->config);
	if (status != 200)
		return http_fail(P, status, "config blob", p->cbytes, p->clen);
	shl_sha256_buf(p->cbytes, p->clen, sha);
	shl_digest_str(sha, got);
	if (strcmp(got, p->config))
		return shl_err(SHL_EDIGEST, "%s: config %s: the registry sent bytes with digest %s", P->refstr, p->config,
			       got);
	return 0;
}

static int parse_desc(const shl_json *d, char digest[72], int64_t *size, const char *what)
{
	const char *dg = shl_json_get_str(d, "digest");
	uint8_t tmp[32];

	if (!dg || shl_digest_parse(dg, tmp) || shl_json_get_int(d, "size", size) || *size < 0)
		return shl_err(SHL_EFORMAT, "%s: bad descriptor (digest/size)", what);
	snprintf(digest, 72, "%s", dg);
	return 0;
}

/* The image record, as load/resolve.c writes it. */
static int put_image(struct puller *P, struct pull_img *p, const shl_json *cfg)
{
	shl_json *rec = shl_json_new_object(), *layers = shl_json_new_array();
	int64_t total = 0;
	const char *s;
	int rc = 0;

	if (!rec || !layers) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < p->nlayers && !rc; i++) {
		struct pull_layer *L = &p->layers[i];
		shl_json *e = shl_json_new_object(), *lr = NULL;
		int64_t ts = L->tar_size;
		if (!L->staged_ok) {
			/* stored already, or the same blob as an earlier layer */
			for (size_t k = 0; k < i; k++)
				if (!strcmp(p->layers[k].diff_id, L->diff_id) && p->layers[k].staged_ok)
					ts = p->layers[k].tar_size;
			if (!ts && shl_store__get_layer(P->s, L->diff_id, &lr) == 0)
				shl_json_get_int(lr, "tar_size", &ts);
			shl_json_put(lr);
			shl_error_clear();
		}
		total += ts;
		if (!e || (rc = shl_json_set_str(e, "diff_id", L->diff_id)) || (rc = shl_json_set_str(e, "digest", L->digest)) ||
		    (rc = shl_json_set_str(e, "media_type", L->media)) || (rc = shl_json_set_int(e, "size", L->size)) ||
		    (rc = shl_json_set_int(e, "tar_size", ts))) {
			shl_json_put(e);
			rc = rc ? rc : shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		rc = shl_json_push(layers, e);
	}
	if (rc || (rc = shl_batch_put_blob(P->batch, p->manifest, p->mmedia, p->mbytes, p->mlen)) ||
	    (rc = shl_batch_put_blob(P->batch, p->config, MT_OCI_CONFIG, p->cbytes, p->clen)) ||
	    (rc = shl_json_set_str(rec, "manifest", p->manifest)) || (rc = shl_json_set_str(rec, "media_type", p->mmedia)) ||
	    (rc = shl_json_set_str(rec, "config", p->config)) ||
	    (rc = shl_json_set_str(rec, "os", (s = shl_json_get_str(cfg, "os")) ? s : "")) ||
	    (rc = shl_json_set_str(rec, "architecture", (s = shl_json_get_str(cfg, "architecture")) ? s : "")) ||
	    ((s = shl_json_get_str(cfg, "variant")) && (rc = shl_json_set_str(rec, "variant", s))) ||
	    (rc = shl_json_set_int(rec, "created", shl_store__parse_created(shl_json_get_str(cfg, "created")))) ||
	    (rc = shl_json_set_int(rec, "size", total)) || (rc = shl_json_set(rec, "layers", shl_json_ref(layers))))
		goto out;
	if (P->index_bytes) {
		shl_json *extra = shl_json_new_array();
		if (!extra || (rc = shl_json_set(rec, "extra_blobs", extra)) ||
		    (rc = shl_json_push(extra, shl_json_new_string(P->index_digest))) ||
		    (rc = shl_batch_put_blob(P->batch, P->index_digest, P->index_media, P->index_bytes, P->index_len)))
			goto out;
	}
	rc = shl_batch_put_image(P->batch, p->manifest, rec);
	rec = NULL;
out:
	shl_json_put(rec);
	shl_json_put(layers);
	return rc;
}

static void img_free(struct pull_img *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->nlayers; i++)
		if (!p->layers[i].staged_ok)
			shl_store__unstage(&p->layers[i].staged);
	free(p->layers);
	free(p->mbytes);
	free(p->cbytes);
	free(p);
}

static int image_stored(shl_store *s, const char *manifest)
{
	shl_json *rec = NULL;
	int rc = shl_store__get_image(s, manifest, &rec);

	shl_json_put(rec);
	shl_error_clear();
	return rc == 0;
}

/* diff_ids of the layers this pull added to its batch */
static int batch_has(struct puller *P, const char *diff_id)
{
	for (size_t i = 0; i < P->nadded; i++)
		if (!strcmp(P->added[i], diff_id))
			return 1;
	return 0;
}

static int batch_note(struct puller *P, const char *diff_id)
{
	char (*v)[72] = realloc(P->added, (P->nadded + 1) * sizeof(*v));

	if (!v)
		return shl_err(SHL_ENOMEM, "out of memory");
	P->added = v;
	snprintf(v[P->nadded++], 72, "%s", diff_id);
	return 0;
}

/* A platform manifest: fetch config, download and convert layers, add to the batch. */
static int pull_image(struct puller *P, char *mbytes, size_t mlen, const char *digest, const char *media)
{
	struct pull_img *p = calloc(1, sizeof(*p));
	shl_json *m = NULL, *cfg = NULL, *ls, *diffs;
	struct pull_img **v;
	int rc;

	if (!p) {
		free(mbytes);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	p->s = P->s;
	p->reg = P->reg;
	p->o = P->o;
	p->fn = P->fn;
	p->ctx = P->ctx;
	p->repo = P->ref.path;
	p->scope = P->scope;
	p->mbytes = mbytes;
	p->mlen = mlen;
	snprintf(p->manifest, sizeof(p->manifest), "%s", digest);
	snprintf(p->mmedia, sizeof(p->mmedia), "%s", media);
	if (!(v = realloc(P->imgs, (P->nimgs + 1) * sizeof(*v)))) {
		img_free(p);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	P->imgs = v;
	v[P->nimgs++] = p;
	emit(P, SHL_REG_RESOLVED, NULL, digest);
	if (image_stored(P->s, digest))
		return 0; /* stored already: only the names are (re)set */
	if ((rc = shl_json_parse(&m, mbytes, mlen, SHL_MANIFEST_CAP, digest)))
		goto out;
	if ((rc = parse_desc(shl_json_get(m, "config"), p->config, &(int64_t){ 0 }, "manifest config")))
		goto out;
	ls = shl_json_get(m, "layers");
	if (!shl_json_is_array(ls) || shl_json_len(ls) > SHL_PULL_MAX_LAYERS) {
		rc = shl_err(SHL_EFORMAT, "manifest %s: no layers array (or more than %d layers)", digest,
			     SHL_PULL_MAX_LAYERS);
		goto out;
	}
	if ((rc = get_config(P, p)) || (rc = shl_json_parse(&cfg, p->cbytes, p->clen, SHL_CONFIG_CAP, p->config)))
		goto out;
	diffs = shl_json_get(shl_json_get(cfg, "rootfs"), "diff_ids");
	if (!shl_json_is_array(diffs) || shl_json_len(diffs) != shl_json_len(ls)) {
		rc = shl_err(SHL_EFORMAT, "image config %s: %zu diff_ids for %zu layers", p->config, shl_json_len(diffs),
			     shl_json_len(ls));
		goto out;
	}
	p->nlayers = shl_json_len(ls);
	if (p->nlayers && !(p->layers = calloc(p->nlayers, sizeof(*p->layers)))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < p->nlayers; i++) {
		struct pull_layer *L = &p->layers[i];
		const shl_json *d = shl_json_at(ls, i);
		const char *mt = shl_json_get_str(d, "mediaType"), *dd = shl_json_str(shl_json_at(diffs, i));
		uint8_t tmp[32];
		int ok = 0;
		if ((rc = parse_desc(d, L->digest, &L->size, "manifest layer")))
			goto out;
		for (int k = 0; mt && layer_types[k]; k++)
			ok |= !strcmp(mt, layer_types[k]);
		if (!ok) {
			rc = shl_err(SHL_EUNSUPPORTED, "manifest %s: layer %s has media type '%s'", digest, L->digest,
				     mt ? mt : "(none)");
			goto out;
		}
		if (!dd || shl_digest_parse(dd, tmp)) {
			rc = shl_err(SHL_EFORMAT, "image config %s: bad diff_id %zu", p->config, i);
			goto out;
		}
		snprintf(L->media, sizeof(L->media), "%s", mt);
		snprintf(L->diff_id, sizeof(L->diff_id), "%s", dd);
	}
	if ((rc = shl_pull__layers(p)))
		goto out;
	for (size_t i = 0; i < p->nlayers && !rc; i++) {
		struct pull_layer *L = &p->layers[i];
		if (L->staged_ok) {
			int plain = !strcmp(L->staged.info.raw_digest, L->staged.info.diff_id);
			if (batch_has(P, L->diff_id)) {
				/* the same tar from another blob (gzip and zstd of one layer, or a
				 * layer two platforms share): stored once */
				shl_store__unstage(&L->staged);
			} else if (!(rc = shl_batch_add_layer(P->batch, &L->staged, plain ? NULL : L->media))) {
				rc = batch_note(P, L->diff_id);
			}
			L->staged.lock = NULL; /* the batch holds it now (or it is gone) */
			L->staged.tar_tmp[0] = L->staged.erofs_tmp[0] = '\0';
		}
	}
	if (!rc)
		rc = put_image(P, p, cfg);
out:
	shl_json_put(m);
	shl_json_put(cfg);
	return rc;
}

/* ---- indexes -------------------------------------------------------------------- */

static int pull_desc_list(struct puller *P, const char *ibytes, size_t ilen, const char *idigest, int depth);

static int pull_by_digest(struct puller *P, const char *digest, int depth, int top)
{
	char *body = NULL, got[72], media[128];
	size_t len = 0;
	int rc;

	if (!top && image_stored(P->s, digest)) {
		emit(P, SHL_REG_RESOLVED, NULL, digest);
		return 0;
	}
	if ((rc = get_manifest(P, digest, digest, &body, &len, got, media)))
		return rc;
	if (is_index(media)) {
		rc = pull_desc_list(P, body, len, got, depth + 1);
		free(body);
		return rc;
	}
	if (!is_manifest(media)) {
		free(body);
		return shl_err(SHL_EUNSUPPORTED, "%s: manifest %s has media type '%s'", P->refstr, digest, media);
	}
	if (top)
		snprintf(P->chosen, sizeof(P->chosen), "%s", got);
	return pull_image(P, body, len, got, media);
}

static int pull_desc_list(struct puller *P, const char *ibytes, size_t ilen, const char *idigest, int depth)
{
	shl_json *ix = NULL, *ms;
	int rc, found = 0;

	if (depth > MAX_INDEX_DEPTH)
		return shl_err(SHL_ELIMIT, "%s: indexes nested deeper than %d", P->refstr, MAX_INDEX_DEPTH);
	if ((rc = shl_json_parse(&ix, ibytes, ilen, SHL_MANIFEST_CAP, idigest)))
		return rc;
	ms = shl_json_get(ix, "manifests");
	if (!shl_json_is_array(ms)) {
		rc = shl_err(SHL_EFORMAT, "index %s: no manifests array", idigest);
		goto out;
	}
	for (size_t i = 0; i < shl_json_len(ms) && !rc; i++) {
		const shl_json *d = shl_json_at(ms, i);
		const char *mt = shl_json_get_str(d, "mediaType");
		char dg[72];
		int64_t sz;
		if (++P->ndescs > SHL_LOAD_MAX_DESCS) {
			rc = shl_err(SHL_ELIMIT, "%s: more than %d index entries", P->refstr, SHL_LOAD_MAX_DESCS);
			break;
		}
		if ((rc = parse_desc(d, dg, &sz, "index entry")))
			break;
		if (shl_load__is_attestation(d))
			continue;
		if (mt && !is_index(mt) && !is_manifest(mt))
			continue;
		if (mt && is_index(mt)) {
			/* nested index: follow it (its platforms decide) */
			rc = pull_by_digest(P, dg, depth, 0);
			found |= !rc;
			continue;
		}
		int match = shl_load__platform_matches(shl_json_get(d, "platform"), &P->plat);
		if (!P->o->all_platforms && !match)
			continue;
		if (match && !P->chosen[0])
			snprintf(P->chosen, sizeof(P->chosen), "%s", dg);
		rc = pull_by_digest(P, dg, depth, 0);
		found = 1;
		if (!P->o->all_platforms)
			break;
	}
	if (!rc && !found && depth == 1) {
		char want[100];
		snprintf(want, sizeof(want), "%s/%s%s%s", P->plat.os, P->plat.arch, P->plat.variant[0] ? "/" : "",
			 P->plat.variant);
		rc = shl_err(SHL_ENOTFOUND, "%s: no manifest for platform %s in index %s", P->refstr, want, idigest);
	}
out:
	shl_json_put(ix);
	return rc;
}

/* ---- references ------------------------------------------------------------------ */

int shl_pull_ref(const char *in, char *ref, size_t ref_len, char *user, size_t user_len)
{
	const char *p = in, *hash, *at;
	shl_ref r;
	char tmp[1200];
	int rc;

	if (user_len)
		user[0] = '\0';
	if (!strncmp(p, "docker://", 9)) {
		/* enroot: docker://[USER@][REGISTRY#]IMAGE[:TAG] */
		p += 9;
		at = strchr(p, '@');
		if (at && at < p + strcspn(p, "#/") && strncmp(at + 1, "sha256:", 7)) {
			if ((size_t)(at - p) >= user_len || at == p)
				return shl_err(SHL_EFORMAT, "invalid reference format: '%.200s': bad user", in);
			snprintf(user, user_len, "%.*s", (int)(at - p), p);
			p = at + 1;
		}
		if ((hash = strchr(p, '#'))) {
			if (hash == p || !hash[1])
				return shl_err(SHL_EFORMAT, "invalid reference format: '%.200s': empty registry or image", in);
			snprintf(tmp, sizeof(tmp), "%.*s/%s", (int)(hash - p), p, hash + 1);
			if (!memchr(p, '.', (size_t)(hash - p)) && !memchr(p, ':', (size_t)(hash - p)) &&
			    strncmp(p, "localhost", 9))
				return shl_err(SHL_EFORMAT, "invalid reference format: '%.200s': registry '%.*s' is not a host",
					       in, (int)(hash - p), p);
			p = tmp;
		}
	}
	if ((rc = shl_ref_parse(p, &r)))
		return rc;
	shl_ref_full(&r, ref, ref_len);
	return 0;
}

int shl_pull_local_name(const char *in, char *buf, size_t len)
{
	shl_ref r;
	char full[1200], user[256];
	const char *last;
	int rc;

	if ((rc = shl_pull_ref(in, full, sizeof(full), user, sizeof(user))) || (rc = shl_ref_parse(full, &r)))
		return rc;
	last = strrchr(r.path, '/');
	last = last ? last + 1 : r.path;
	if (r.tag[0])
		snprintf(buf, len, "%s-%s", last, r.tag);
	else
		snprintf(buf, len, "%s-%.12s", last, r.digest + 7);
	return 0;
}

static int env_int(const char *name, int def, int lo, int hi)
{
	const char *v = getenv(name);
	char *e;
	long x;

	if (!v || !*v)
		return def;
	x = strtol(v, &e, 10);
	if (*e || x < lo || x > hi)
		return def;
	return (int)x;
}

void shl_reg_opts_default(shl_reg_opts *o)
{
	const char *v = getenv("SHALE_ALLOW_HTTP");

	memset(o, 0, sizeof(*o));
	o->tls_verify = 1;
	o->allow_http = v && *v && strcmp(v, "0") && strcmp(v, "false") && strcmp(v, "no");
	o->ca_cert = getenv("SHALE_CA_CERT");
	o->max_connections = env_int("SHALE_MAX_CONNECTIONS", 4, 1, 64);
	o->connect_timeout = env_int("SHALE_CONNECT_TIMEOUT", 30, 1, 3600);
	o->transfer_timeout = env_int("SHALE_TRANSFER_TIMEOUT", 60, 1, 86400);
	o->retries = env_int("SHALE_TRANSFER_RETRIES", 5, 0, 100);
}

/* ---- pull ---------------------------------------------------------------------------- */

/* repo@digest is recorded already (pulled from this repository before). */
static int repo_digest_known(shl_store *s, const shl_ref *r)
{
	char repo[600], full[700], *v = NULL;
	int rc;

	shl_ref_repo(r, 0, repo, sizeof(repo));
	snprintf(full, sizeof(full), "%s@%s", repo, r->digest);
	rc = shl_index_get(s->ix, SHL_DB_REFS, full, &v, NULL);
	free(v);
	shl_error_clear();
	return rc == 0 && image_stored(s, r->digest);
}

static int set_refs(struct puller *P)
{
	char repo[600], rd[700];
	int rc = 0;

	shl_ref_repo(&P->ref, 0, repo, sizeof(repo));
	if (P->name[0] && (rc = shl_batch_set_ref(P->batch, P->name, P->chosen)))
		return rc;
	for (size_t i = 0; i < P->nimgs && !rc; i++) {
		snprintf(rd, sizeof(rd), "%s@%s", repo, P->imgs[i]->manifest);
		rc = shl_batch_set_ref(P->batch, rd, P->imgs[i]->manifest);
	}
	if (!rc && P->index_digest[0]) {
		snprintf(rd, sizeof(rd), "%s@%s", repo, P->index_digest);
		rc = shl_batch_set_ref(P->batch, rd, P->chosen);
	}
	return rc;
}

static int pull_main(struct puller *P)
{
	char *body = NULL, got[72], media[128];
	size_t len = 0;
	int rc;

	if ((rc = shl_batch_new(&P->batch)))
		return rc;
	if ((rc = get_manifest(P, P->ref.digest[0] ? P->ref.digest : P->ref.tag, P->ref.digest[0] ? P->ref.digest : NULL,
			       &body, &len, got, media)))
		return rc;
	if (is_index(media)) {
		snprintf(P->index_digest, sizeof(P->index_digest), "%s", got);
		snprintf(P->index_media, sizeof(P->index_media), "%s", media);
		P->index_bytes = body;
		P->index_len = len;
		if ((rc = pull_desc_list(P, body, len, got, 1)))
			return rc;
		if (!P->chosen[0] && P->nimgs)
			snprintf(P->chosen, sizeof(P->chosen), "%s", P->imgs[0]->manifest);
	} else if (is_manifest(media)) {
		snprintf(P->chosen, sizeof(P->chosen), "%s", got);
		if ((rc = pull_image(P, body, len, got, media)))
			return rc;
	} else {
		free(body);
		return shl_err(SHL_EUNSUPPORTED, "%s: the registry sent a manifest of type '%s'", P->refstr, media);
	}
	if (!P->chosen[0])
		return shl_err(SHL_ENOTFOUND, "%s: nothing to pull", P->refstr);
	if ((rc = set_refs(P)) || (rc = shl_store_commit(P->s, P->batch)))
		return rc;
	for (size_t i = 0; i < P->nimgs; i++)
		shl_pull__discard(P->imgs[i]);
	return 0;
}

int shl_pull(shl_store *s, const char *ref_in, const shl_pull_opts *o, shl_reg_fn fn, void *ctx, char out_manifest[72])
{
	struct puller P;
	char full[1200], user[256];
	int rc;

	memset(&P, 0, sizeof(P));
	P.s = s;
	P.o = o;
	P.fn = fn;
	P.ctx = ctx;
	snprintf(P.refstr, sizeof(P.refstr), "%s", ref_in);
	if ((rc = shl_pull_ref(ref_in, full, sizeof(full), user, sizeof(user))) || (rc = shl_ref_parse(full, &P.ref)))
		return rc;
	if ((rc = shl_load__want_platform(o->platform, &P.plat)))
		return rc;
	if (o->name) {
		shl_ref nr;
		if ((rc = shl_ref_parse(o->name, &nr)))
			return rc;
		if (!nr.tag[0])
			return shl_err(SHL_EINVAL, "--name '%s': a name wants a tag, not a digest", o->name);
		shl_ref_full(&nr, P.name, sizeof(P.name));
	} else if (P.ref.tag[0]) {
		shl_ref nr = P.ref;
		nr.digest[0] = '\0';
		shl_ref_full(&nr, P.name, sizeof(P.name));
	}
	snprintf(P.scope, sizeof(P.scope), "repository:%s:pull", P.ref.path);
	if (P.ref.digest[0] && repo_digest_known(s, &P.ref) && !o->all_platforms) {
		/* pinned and stored: no network */
		snprintf(P.chosen, sizeof(P.chosen), "%s", P.ref.digest);
		char repo[600], rd[700];
		shl_ref_repo(&P.ref, 0, repo, sizeof(repo));
		snprintf(rd, sizeof(rd), "%s@%s", repo, P.ref.digest);
		if (!(rc = shl_batch_new(&P.batch)) && !(rc = shl_batch_set_ref(P.batch, rd, P.chosen)) &&
		    !(P.name[0] && (rc = shl_batch_set_ref(P.batch, P.name, P.chosen))))
			rc = shl_store_commit(s, P.batch);
		emit(&P, SHL_REG_RESOLVED, NULL, P.chosen);
		goto out;
	}
	if ((rc = shl_reg_open(&P.reg, P.ref.domain, user[0] ? user : NULL, &o->reg)))
		goto out;
	rc = pull_main(&P);
	if (rc == SHL_EAUTH && !strstr(shl_error_last(), "shale import")) {
		char msg[1200], hint[1400];
		snprintf(msg, sizeof(msg), "%s", shl_error_last());
		shl_reg_auth_hint(P.refstr, hint, sizeof(hint));
		rc = shl_err(SHL_EAUTH, "%s%s", msg, hint);
	}
out:
	if (!rc) {
		if (out_manifest)
			snprintf(out_manifest, 72, "%s", P.chosen);
		char shown[700], repo[600];
		shl_ref nr;
		if (P.name[0] && shl_ref_parse(P.name, &nr) == 0) {
			shl_ref_familiar(&nr, shown, sizeof(shown));
		} else {
			shl_ref_repo(&P.ref, 1, repo, sizeof(repo));
			snprintf(shown, sizeof(shown), "%s@%s", repo, P.chosen);
		}
		emit(&P, SHL_REG_DONE, NULL, shown);
	}
	shl_batch_free(P.batch);
	for (size_t i = 0; i < P.nimgs; i++)
		img_free(P.imgs[i]);
	free(P.imgs);
	free(P.added);
	free(P.index_bytes);
	shl_reg_close(P.reg);
	if (rc && strncmp(shl_error_last(), ref_in, strlen(ref_in)))
		return shl_err_ctx(rc, "%s", ref_in);
	return rc;
}
