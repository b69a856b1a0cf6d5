/*
 * save/layout.c - the JSON documents of a `shale save` archive, in the shape
 * Docker >= 25's `docker save` writes (shared/formats.md A.2):
 *   index.json     OCI index; per image one descriptor per tag, annotated with
 *                  io.containerd.image.name (full name) and
 *                  org.opencontainers.image.ref.name (the tag only, as Docker
 *                  and containerd write it); an untagged image gets one
 *                  descriptor without names. shale's own annotations carry the
 *                  original manifest and the repo digests (docs/save-format.md).
 *   manifest.json  docker compat: one entry per image with Config, RepoTags
 *                  (familiar), Layers (blob paths) and LayerSources (plain layers).
 *   repositories   {"<familiar repo>": {"<tag>": "<top layer diff_id hex>"}}.
 * Same input, same bytes: everything follows the argument order of the images
 * and their names; json-c keeps insertion order.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "save/save_int.h"
#include "shale/ref.h"
#include "util/err.h"

#define NOMEM() shl_err(SHL_ENOMEM, "out of memory")

static int descriptor(shl_json **out, const char *media, const char *digest, uint64_t size)
{
	shl_json *d = shl_json_new_object();
	int rc;

	if (!d)
		return NOMEM();
	if ((rc = shl_json_set_str(d, "mediaType", media)) || (rc = shl_json_set_str(d, "digest", digest)) ||
	    (rc = shl_json_set_int(d, "size", (int64_t)size))) {
		shl_json_put(d);
		return rc;
	}
	*out = d;
	return 0;
}

/* shale's annotations of one image (NULL when there are none). */
static int shale_annotations(const struct shl_save_image *im, shl_json *ann)
{
	int rc = 0;

	if (im->orig[0])
		rc = shl_json_set_str(ann, SHL_ANN_ORIGINAL, im->orig);
	if (!rc && im->nrepo_digests) {
		size_t n = 0;
		char *s, *p;
		for (size_t i = 0; i < im->nrepo_digests; i++)
			n += strlen(im->repo_digests[i]) + 1;
		if (!(s = malloc(n)))
			return NOMEM();
		p = s;
		for (size_t i = 0; i < im->nrepo_digests; i++)
			p += sprintf(p, "%s%s", i ? "," : "", im->repo_digests[i]);
		rc = shl_json_set_str(ann, SHL_ANN_REPO_DIGESTS, s);
		free(s);
	}
	return rc;
}

static int index_entry(const struct shl_save_image *im, const char *name, shl_json *manifests)
{
	shl_json *d = NULL, *ann = shl_json_new_object();
	int rc;

	if (!ann)
		return NOMEM();
	if ((rc = descriptor(&d, im->out_media, im->out_digest, im->out_len)))
		goto out;
	if (name) {
		shl_ref r;
		if ((rc = shl_ref_parse(name, &r)))
			goto out;
		if ((rc = shl_json_set_str(ann, SHL_ANN_IMAGE_NAME, name)) ||
		    (rc = shl_json_set_str(ann, SHL_ANN_REF_NAME, r.tag)))
			goto out;
	}
	if ((rc = shale_annotations(im, ann)))
		goto out;
	if (name || im->orig[0] || im->nrepo_digests) {
		rc = shl_json_set(d, "annotations", ann);
		ann = NULL;
		if (rc)
			goto out;
	}
	rc = shl_json_push(manifests, d);
	d = NULL;
out:
	shl_json_put(ann);
	shl_json_put(d);
	return rc;
}

int shl_save__index_json(const shl_saver *v, shl_json **out)
{
	shl_json *ix = shl_json_new_object(), *ms = shl_json_new_array();
	int rc;

	*out = NULL;
	if (!ix || !ms) {
		shl_json_put(ix);
		shl_json_put(ms);
		return NOMEM();
	}
	if ((rc = shl_json_set_int(ix, "schemaVersion", 2)) || (rc = shl_json_set_str(ix, "mediaType", SHL_MT_OCI_INDEX)) ||
	    (rc = shl_json_set(ix, "manifests", shl_json_ref(ms))))
		goto out;
	for (size_t i = 0; i < v->nimages && !rc; i++) {
		const struct shl_save_image *im = &v->images[i];
		if (!im->nnames)
			rc = index_entry(im, NULL, ms);
		for (size_t k = 0; k < im->nnames && !rc; k++)
			rc = index_entry(im, im->names[k], ms);
	}
out:
	shl_json_put(ms);
	if (rc)
		shl_json_put(ix);
	else
		*out = ix;
	return rc;
}

int shl_save__manifest_json(const shl_saver *v, shl_json **out)
{
	shl_json *arr = shl_json_new_array();
	int rc = arr ? 0 : NOMEM();

	for (size_t i = 0; i < v->nimages && !rc; i++) {
		const struct shl_save_image *im = &v->images[i];
		shl_json *e = shl_json_new_object(), *tags = shl_json_new_array(), *paths = shl_json_new_array();
		shl_json *src = shl_json_new_object();
		int nsrc = 0;
		char p[100];
		if (!e || !tags || !paths || !src) {
			rc = NOMEM();
		} else {
			snprintf(p, sizeof(p), "blobs/sha256/%s", im->config + 7);
			rc = shl_json_set_str(e, "Config", p);
		}
		for (size_t k = 0; k < im->nnames && !rc; k++) {
			shl_ref r;
			char fam[600];
			if (!(rc = shl_ref_parse(im->names[k], &r))) {
				shl_ref_familiar(&r, fam, sizeof(fam));
				rc = shl_json_push(tags, shl_json_new_string(fam));
			}
		}
		for (size_t k = 0; k < im->nlayers && !rc; k++) {
			const struct shl_save_layer *l = &v->layers[im->layers[k]];
			shl_json *ld = NULL;
			snprintf(p, sizeof(p), "blobs/sha256/%s", l->digest + 7);
			rc = shl_json_push(paths, shl_json_new_string(p));
			/* LayerSources (Docker >= 25) describe the plain tars, keyed by diff_id */
			if (!rc && !strcmp(l->digest, l->diff_id) && !shl_json_get(src, l->diff_id) &&
			    !(rc = descriptor(&ld, SHL_MT_OCI_LAYER, l->diff_id, l->tar_size))) {
				rc = shl_json_set(src, l->diff_id, ld);
				nsrc++;
			}
		}
		if (!rc) {
			rc = shl_json_set(e, "RepoTags", tags);
			tags = NULL;
		}
		if (!rc) {
			rc = shl_json_set(e, "Layers", paths);
			paths = NULL;
		}
		if (!rc && nsrc) {
			rc = shl_json_set(e, "LayerSources", src);
			src = NULL;
		}
		if (!rc) {
			rc = shl_json_push(arr, e);
			e = NULL;
		}
		shl_json_put(e);
		shl_json_put(tags);
		shl_json_put(paths);
		shl_json_put(src);
	}
	if (rc)
		shl_json_put(arr);
	*out = rc ? NULL : arr;
	return rc;
}

int shl_save__repositories(const shl_saver *v, shl_json **out)
{
	shl_json *repos = shl_json_new_object();
	int rc = repos ? 0 : NOMEM();

	for (size_t i = 0; i < v->nimages && !rc; i++) {
		const struct shl_save_image *im = &v->images[i];
		const char *top;
		if (!im->nlayers)
			continue; /* nothing to point at */
		top = v->layers[im->layers[im->nlayers - 1]].diff_id + 7;
		for (size_t k = 0; k < im->nnames && !rc; k++) {
			shl_ref r;
			char repo[600];
			shl_json *tags;
			if ((rc = shl_ref_parse(im->names[k], &r)))
				break;
			shl_ref_repo(&r, 1, repo, sizeof(repo));
			if (!(tags = shl_json_get(repos, repo))) {
				if (!(tags = shl_json_new_object())) {
					rc = NOMEM();
					break;
				}
				if ((rc = shl_json_set(repos, repo, tags)))
					break;
			}
			rc = shl_json_set_str(tags, r.tag, top);
		}
	}
	if (rc)
		shl_json_put(repos);
	*out = rc ? NULL : repos;
	return rc;
}
