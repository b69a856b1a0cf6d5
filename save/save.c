/*
 * save/save.c - `shale save` (shale/save.h): stored images out as one
 * archive that docker (old and new), podman, skopeo and containerd load:
 * the OCI image layout plus docker's manifest.json and repositories (the shape
 * of Docker >= 25's `docker save`), or a pure OCI archive.
 *
 * Layers are the stored tars, bit-exact, named by diff_id. An image whose
 * stored manifest already lists exactly those uncompressed layers keeps its
 * manifest bytes (same digest); otherwise a manifest over the uncompressed
 * layers is synthesized around the verbatim config (same image ID) and the
 * original manifest rides along as an extra blob named in the index entry's
 * "io.shale.original-manifest" annotation. Shared blobs are written once;
 * entries are sorted and timestamps zero, so saving twice gives identical bytes.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "save/tarout.h"
#include "shale/ref.h"
#include "shale/save.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/compress.h"
#include "util/hash.h"
#include "util/instream.h"

struct blob {
	char digest[72];
	char *data;          /* in memory, or NULL for a layer file */
	size_t len;
	char layer[72];      /* diff_id of a stored layer */
	char *file;          /* or a compressed copy in the staging dir */
	uint64_t size;
};

/* a compressed layer made for this save (shared layers compressed once) */
struct comp {
	char diff[72], digest[72], path[4200];
	uint64_t size;
};

struct saver {
	shl_store *s;
	const shl_save_opts *o;
	struct blob *blobs;
	size_t nblobs;
	shl_json *index_manifests, *docker, *repos;
	char **exclude;
	size_t nexclude;
	struct comp *comps;
	size_t ncomps;
};

static int add_blob(struct saver *v, const char *digest, char *data, size_t len, const char *layer, uint64_t size,
		    const char *file)
{
	struct blob *nb;

	for (size_t i = 0; i < v->nblobs; i++) {
		if (!strcmp(v->blobs[i].digest, digest)) {
			free(data);
			return 0;
		}
	}
	nb = realloc(v->blobs, (v->nblobs + 1) * sizeof(*nb));
	if (!nb) {
		free(data);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	v->blobs = nb;
	nb = &v->blobs[v->nblobs++];
	memset(nb, 0, sizeof(*nb));
	snprintf(nb->digest, sizeof(nb->digest), "%s", digest);
	nb->data = data;
	nb->len = len;
	nb->size = data ? len : size;
	if (layer)
		snprintf(nb->layer, sizeof(nb->layer), "%s", layer);
	if (file && !(nb->file = strdup(file)))
		return shl_err(SHL_ENOMEM, "out of memory");
	return 0;
}

/* Compress a stored layer (once per save) into the store's staging dir. */
static int compressed(struct saver *v, const char *diff, struct comp **out)
{
	char tar[4200];
	uint8_t sha[32];
	struct comp *c;
	int in, fd, rc;

	for (size_t i = 0; i < v->ncomps; i++) {
		if (!strcmp(v->comps[i].diff, diff)) {
			*out = &v->comps[i];
			return 0;
		}
	}
	c = realloc(v->comps, (v->ncomps + 1) * sizeof(*c));
	if (!c)
		return shl_err(SHL_ENOMEM, "out of memory");
	v->comps = c;
	c = &v->comps[v->ncomps];
	memset(c, 0, sizeof(*c));
	snprintf(c->diff, sizeof(c->diff), "%s", diff);
	snprintf(c->path, sizeof(c->path), "%s/save-%.16s.%s", v->s->tmp_dir, diff + 7,
		 v->o->compress == SHL_SAVE_COMPRESS_GZIP ? "gz" : "zst");
	shl_store_layer_paths(v->s, diff, tar, sizeof(tar), NULL, 0);
	in = open(tar, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return shl_err_sys(SHL_EIO, "layer %s", diff);
	fd = open(c->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		close(in);
		return shl_err_sys(SHL_EIO, "create %s", c->path);
	}
	rc = shl_compress_fd(in, fd, v->o->compress == SHL_SAVE_COMPRESS_GZIP ? SHL_COMP_GZIP : SHL_COMP_ZSTD,
			     sha, &c->size);
	close(in);
	close(fd);
	if (rc) {
		unlink(c->path);
		return shl_err_ctx(rc, "compress layer %s", diff);
	}
	shl_digest_str(sha, c->digest);
	v->ncomps++;
	*out = c;
	return 0;
}

static int excluded(struct saver *v, const char *diff_id)
{
	for (size_t i = 0; i < v->nexclude; i++)
		if (!strcmp(v->exclude[i], diff_id))
			return 1;
	return 0;
}

/* --exclude-layers FILE: "sha256:..." per line ('#' comments) or JSON
 * (an array of objects with "diff_id", as `shale df --layers --json` prints) */
static int read_exclude(struct saver *v, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];

	if (!f)
		return shl_err_sys(SHL_EIO, "open %s", path);
	while (fgets(line, sizeof(line), f)) {
		char *p = line;
		while ((p = strstr(p, "sha256:"))) {
			char d[72];
			uint8_t raw[32];
			if (strlen(p) >= 71) {
				memcpy(d, p, 71);
				d[71] = '\0';
				if (shl_digest_parse(d, raw) == 0) {
					char **ne = realloc(v->exclude, (v->nexclude + 1) * sizeof(*ne));
					if (!ne) {
						fclose(f);
						return shl_err(SHL_ENOMEM, "out of memory");
					}
					v->exclude = ne;
					ne[v->nexclude++] = strdup(d);
				}
			}
			p += 7;
		}
	}
	fclose(f);
	return 0;
}

/* Does the stored manifest list exactly the plain layers we will write? */
static int manifest_is_plain(const char *bytes, size_t len, shl_json *layers)
{
	shl_json *m = NULL, *ml;
	int ok = 1;

	if (shl_json_parse(&m, bytes, len, SHL_MANIFEST_CAP, "manifest") != 0)
		return 0;
	ml = shl_json_get(m, "layers");
	if (shl_json_len(ml) != shl_json_len(layers))
		ok = 0;
	for (size_t i = 0; ok && i < shl_json_len(ml); i++) {
		const char *d = shl_json_get_str(shl_json_at(ml, i), "digest");
		const char *want = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		const char *mt = shl_json_get_str(shl_json_at(ml, i), "mediaType");
		if (!d || !want || strcmp(d, want) || (mt && (strstr(mt, "gzip") || strstr(mt, "zstd"))))
			ok = 0;
	}
	shl_json_put(m);
	return ok;
}

static int descriptor(shl_json **out, const char *media, const char *digest, int64_t size)
{
	shl_json *d = shl_json_new_object();
	int rc;

	if (!d)
		return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = shl_json_set_str(d, "mediaType", media)) || (rc = shl_json_set_str(d, "digest", digest)) ||
	    (rc = shl_json_set_int(d, "size", size))) {
		shl_json_put(d);
		return rc;
	}
	*out = d;
	return 0;
}

static int save_one(struct saver *v, const char *ref)
{
	char manifest[72], *mbytes = NULL, *cbytes = NULL, *mmedia = NULL, *synth = NULL, digest[72];
	char orig_digest[72] = "";
	shl_json *out_layers = NULL;
	size_t mlen, clen, slen;
	shl_json *img = NULL, *layers, *desc = NULL, *ann = NULL, *dentry = NULL, *dl = NULL, *src = NULL;
	const char *cfg, *use_bytes;
	size_t use_len;
	shl_ref r;
	int named, rc;

	if ((rc = shl_store_resolve(v->s, ref, manifest)) || (rc = shl_store__get_image(v->s, manifest, &img)))
		return rc;
	cfg = shl_json_get_str(img, "config");
	layers = shl_json_get(img, "layers");
	if (!cfg) {
		rc = shl_err(SHL_EFORMAT, "image %s: record without config", manifest);
		goto out;
	}
	if ((rc = shl_store__get_blob(v->s, manifest, &mbytes, &mlen, &mmedia)) ||
	    (rc = shl_store__get_blob(v->s, cfg, &cbytes, &clen, NULL)))
		goto out;
	/* with --compress the layers written are compressed copies */
	if (v->o->compress != SHL_SAVE_COMPRESS_NONE) {
		shl_json *cl = shl_json_new_array();
		const char *media = v->o->compress == SHL_SAVE_COMPRESS_GZIP ? "application/vnd.oci.image.layer.v1.tar+gzip"
									      : "application/vnd.oci.image.layer.v1.tar+zstd";
		if (!cl) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
			shl_json *o2 = shl_json_new_object();
			const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
			struct comp *c;
			if (!o2 || !d) {
				shl_json_put(o2);
				rc = shl_err(SHL_EFORMAT, "image %s: bad layer record", manifest);
				break;
			}
			if ((rc = shl_json_push(cl, o2)) || (rc = shl_json_set_str(o2, "diff_id", d)))
				break;
			if (excluded(v, d))
				continue; /* never compressed; referenced by its plain digest */
			if ((rc = compressed(v, d, &c)) || (rc = shl_json_set_str(o2, "out_media", media)) ||
			    (rc = shl_json_set_str(o2, "out_digest", c->digest)) ||
			    (rc = shl_json_set_int(o2, "out_size", (int64_t)c->size)))
				break;
		}
		if (rc) {
			shl_json_put(cl);
			goto out;
		}
		out_layers = cl;
	}
	/* the manifest to write */
	if (!out_layers && manifest_is_plain(mbytes, mlen, layers)) {
		const char *orig = shl_json_get_str(img, "original_manifest");
		snprintf(digest, sizeof(digest), "%s", manifest);
		use_bytes = mbytes;
		use_len = mlen;
		if (orig) {
			/* keep carrying the registry's manifest (loaded from a save) */
			char *ob = NULL;
			size_t ol;
			if (shl_store__get_blob(v->s, orig, &ob, &ol, NULL) == 0 &&
			    (rc = add_blob(v, orig, ob, ol, NULL, 0, NULL)))
				goto out;
			snprintf(orig_digest, sizeof(orig_digest), "%s", orig);
		}
	} else {
		if ((rc = shl_store__synth_manifest(out_layers ? out_layers : layers, cfg, clen, &synth, &slen, digest)))
			goto out;
		use_bytes = synth;
		use_len = slen;
		char *orig = malloc(mlen);
		if (!orig) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		memcpy(orig, mbytes, mlen);
		if ((rc = add_blob(v, manifest, orig, mlen, NULL, 0, NULL)))
			goto out;
		snprintf(orig_digest, sizeof(orig_digest), "%s", manifest);
	}
	{
		char *copy = malloc(use_len ? use_len : 1);
		if (!copy) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		memcpy(copy, use_bytes, use_len);
		if ((rc = add_blob(v, digest, copy, use_len, NULL, 0, NULL)))
			goto out;
		if ((rc = add_blob(v, cfg, cbytes, clen, NULL, 0, NULL)))
			goto out;
		cbytes = NULL;
	}
	/* layers */
	dl = shl_json_new_array();
	src = shl_json_new_object();
	if (!dl || !src) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < shl_json_len(layers) && !rc; i++) {
		const char *d = shl_json_get_str(shl_json_at(layers, i), "diff_id");
		int64_t ts = 0;
		char path[100];
		shl_json *ld;
		shl_json_get_int(shl_json_at(layers, i), "tar_size", &ts);
		if (!d) {
			rc = shl_err(SHL_EFORMAT, "image %s: bad layer record", manifest);
			break;
		}
		const char *od = shl_json_get_str(shl_json_at(out_layers, i), "out_digest");
		if (od) {
			struct comp *c;
			if ((rc = compressed(v, d, &c)) || (rc = add_blob(v, od, NULL, 0, NULL, c->size, c->path)))
				break;
			snprintf(path, sizeof(path), "blobs/sha256/%s", od + 7);
			if ((rc = shl_json_push(dl, shl_json_new_string(path))))
				break;
			continue; /* LayerSources describe plain layers only */
		}
		if (!excluded(v, d) && (rc = add_blob(v, d, NULL, 0, d, (uint64_t)ts, NULL)))
			break;
		snprintf(path, sizeof(path), "blobs/sha256/%s", d + 7);
		if ((rc = shl_json_push(dl, shl_json_new_string(path))))
			break;
		if ((rc = descriptor(&ld, "application/vnd.oci.image.layer.v1.tar", d, ts)) ||
		    (rc = shl_json_set(src, d, ld)))
			break;
	}
	if (rc)
		goto out;
	/* index.json entry (one per name) and manifest.json entry */
	/* a name (not an ID) that is tagged in the store names the saved image */
	named = 0;
	if (shl_ref_parse(ref, &r) == 0 && !r.digest[0]) {
		char full[600], *x = NULL;
		shl_ref_full(&r, full, sizeof(full));
		named = shl_index_get(v->s->ix, SHL_DB_REFS, full, &x, NULL) == 0 && !strcmp(x, manifest);
		free(x);
	}
	if ((rc = descriptor(&desc, "application/vnd.oci.image.manifest.v1+json", digest, (int64_t)use_len)))
		goto out;
	ann = shl_json_new_object();
	if (!ann) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if (named) {
		char full[600];
		shl_ref_full(&r, full, sizeof(full));
		if ((rc = shl_json_set_str(ann, "io.containerd.image.name", full)) ||
		    (rc = shl_json_set_str(ann, "org.opencontainers.image.ref.name", r.tag)))
			goto out;
	}
	if (orig_digest[0] && (rc = shl_json_set_str(ann, "io.shale.original-manifest", orig_digest)))
		goto out;
	if (named || orig_digest[0])
		rc = shl_json_set(desc, "annotations", shl_json_ref(ann));
	if (rc || (rc = shl_json_push(v->index_manifests, desc)))
		goto out;
	desc = NULL;
	dentry = shl_json_new_object();
	if (!dentry) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	{
		char cpath[100], fam[600], repo[600];
		shl_json *tags = shl_json_new_array();
		snprintf(cpath, sizeof(cpath), "blobs/sha256/%s", cfg + 7);
		if (!tags) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		if (named) {
			shl_ref_familiar(&r, fam, sizeof(fam));
			shl_ref_repo(&r, 1, repo, sizeof(repo));
			if ((rc = shl_json_push(tags, shl_json_new_string(fam))))
				goto out;
			if (shl_json_len(layers)) {
				shl_json *tagmap = shl_json_get(v->repos, repo);
				const char *top = shl_json_get_str(shl_json_at(layers, shl_json_len(layers) - 1), "diff_id");
				if (!tagmap) {
					tagmap = shl_json_new_object();
					if (!tagmap || (rc = shl_json_set(v->repos, repo, tagmap)))
						goto out;
				}
				if (top && (rc = shl_json_set_str(tagmap, r.tag, top + 7)))
					goto out;
			}
		}
		if ((rc = shl_json_set_str(dentry, "Config", cpath)) || (rc = shl_json_set(dentry, "RepoTags", tags)) ||
		    (rc = shl_json_set(dentry, "Layers", shl_json_ref(dl))) ||
		    (rc = shl_json_set(dentry, "LayerSources", shl_json_ref(src))))
			goto out;
	}
	rc = shl_json_push(v->docker, dentry);
	dentry = NULL;
out:
	shl_json_put(out_layers);
	shl_json_put(dentry);
	shl_json_put(desc);
	shl_json_put(ann);
	shl_json_put(dl);
	shl_json_put(src);
	shl_json_put(img);
	free(mbytes);
	free(mmedia);
	free(cbytes);
	free(synth);
	return rc;
}

static int cmp_blob(const void *a, const void *b)
{
	return strcmp(((const struct blob *)a)->digest, ((const struct blob *)b)->digest);
}

static int write_archive(struct saver *v, int out_fd)
{
	shl_tarout t = { out_fd, 0 };
	shl_json *index = shl_json_new_object();
	const char *s;
	size_t len;
	int rc;

	if (!index)
		return shl_err(SHL_ENOMEM, "out of memory");
	qsort(v->blobs, v->nblobs, sizeof(*v->blobs), cmp_blob);
	if ((rc = shl_tarout_dir(&t, "blobs/")) || (rc = shl_tarout_dir(&t, "blobs/sha256/")))
		goto out;
	for (size_t i = 0; i < v->nblobs && !rc; i++) {
		char name[100];
		snprintf(name, sizeof(name), "blobs/sha256/%s", v->blobs[i].digest + 7);
		if (v->blobs[i].data) {
			rc = shl_tarout_mem(&t, name, v->blobs[i].data, v->blobs[i].len);
		} else if (v->blobs[i].file) {
			int fd = open(v->blobs[i].file, O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				rc = shl_err_sys(SHL_EIO, "open %s", v->blobs[i].file);
				break;
			}
			rc = shl_tarout_file(&t, name, fd, v->blobs[i].size);
			close(fd);
		} else {
			char tar[4200];
			int fd;
			shl_store_layer_paths(v->s, v->blobs[i].layer, tar, sizeof(tar), NULL, 0);
			fd = open(tar, O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				rc = shl_err_sys(SHL_EIO, "layer %s", v->blobs[i].layer);
				break;
			}
			rc = shl_tarout_file(&t, name, fd, v->blobs[i].size);
			close(fd);
		}
	}
	if (rc)
		goto out;
	if ((rc = shl_json_set_int(index, "schemaVersion", 2)) ||
	    (rc = shl_json_set_str(index, "mediaType", "application/vnd.oci.image.index.v1+json")) ||
	    (rc = shl_json_set(index, "manifests", shl_json_ref(v->index_manifests))))
		goto out;
	s = shl_json_dump(index, 0, &len);
	if ((rc = shl_tarout_mem(&t, "index.json", s, len)))
		goto out;
	if (v->o->format == SHL_SAVE_DOCKER) {
		s = shl_json_dump(v->docker, 0, &len);
		if ((rc = shl_tarout_mem(&t, "manifest.json", s, len)))
			goto out;
	}
	if ((rc = shl_tarout_mem(&t, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30)))
		goto out;
	if (v->o->format == SHL_SAVE_DOCKER) {
		s = shl_json_dump(v->repos, 0, &len);
		if ((rc = shl_tarout_mem(&t, "repositories", s, len)))
			goto out;
	}
	rc = shl_tarout_finish(&t);
out:
	shl_json_put(index);
	return rc;
}

int shl_save(shl_store *s, const char *const *refs, size_t nrefs, const shl_save_opts *o, int out_fd)
{
	struct saver v;
	int rc = 0;

	if (!o || o->version != SHL_SAVE_OPTS_VERSION || nrefs == 0)
		return shl_err(SHL_EINVAL, "save: bad options");
	memset(&v, 0, sizeof(v));
	v.s = s;
	v.o = o;
	v.index_manifests = shl_json_new_array();
	v.docker = shl_json_new_array();
	v.repos = shl_json_new_object();
	if (!v.index_manifests || !v.docker || !v.repos)
		rc = shl_err(SHL_ENOMEM, "out of memory");
	if (!rc && o->exclude_layers)
		rc = read_exclude(&v, o->exclude_layers);
	for (size_t i = 0; i < nrefs && !rc; i++)
		rc = save_one(&v, refs[i]);
	if (!rc)
		rc = write_archive(&v, out_fd);
	for (size_t i = 0; i < v.nblobs; i++) {
		free(v.blobs[i].data);
		free(v.blobs[i].file);
	}
	for (size_t i = 0; i < v.ncomps; i++)
		unlink(v.comps[i].path);
	free(v.comps);
	free(v.blobs);
	for (size_t i = 0; i < v.nexclude; i++)
		free(v.exclude[i]);
	free(v.exclude);
	shl_json_put(v.index_manifests);
	shl_json_put(v.docker);
	shl_json_put(v.repos);
	return rc;
}
