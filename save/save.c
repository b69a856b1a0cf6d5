/*
 * save/save.c - `shale save` (shale/save.h): stored images out as one archive
 * that docker (old and new), podman, skopeo and containerd load: the OCI image
 * layout plus docker's manifest.json and repositories (the shape of Docker
 * >= 25's `docker save`, save/layout.c), or a pure OCI archive.
 *
 * Steps:
 *  1. snapshot, under the shared store lock (so no removal runs meanwhile):
 *     resolve every reference, read the image records, manifests and configs
 *     (checked against their digests) and open every layer tar that will be
 *     written. Afterwards the lock is dropped: the open fds keep the tars
 *     readable even if an `rm` removes them while a slow pipe drains.
 *  2. --compress: every layer is compressed into an unlinked temp file in the
 *     store's staging dir (two threads), because a tar header needs the size
 *     and the sorted entry order needs the digest before the body is written.
 *     Compressing twice (once to count, once to stream) would double the CPU.
 *  3. manifests: an image whose stored manifest lists exactly the layer blobs
 *     written keeps its manifest bytes (same digest); otherwise a manifest is
 *     synthesized over them around the verbatim config (same image ID) and the
 *     original manifest rides along as an extra blob (docs/save-format.md).
 *  4. write: blobs sorted by digest (each once), then index.json,
 *     manifest.json, oci-layout, repositories. Layer bodies move in the kernel
 *     (save/tarout.c). Same images, same options: same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "save/save_int.h"
#include "save/tarout.h"
#include "shale/ref.h"
#include "store/store_int.h"
#include "util/compress.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

#define NOMEM() shl_err(SHL_ENOMEM, "out of memory")
#define SAVE_MAX_IMAGES 4096
#define SAVE_MAX_LAYERS 65536

/* ---- step 1: resolve and snapshot ------------------------------------------ */

static int str_add(char ***v, size_t *n, const char *s)
{
	char **nv;

	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i], s))
			return 0;
	if (!(nv = realloc(*v, (*n + 1) * sizeof(*nv))) || !(nv[*n] = strdup(s))) {
		if (nv)
			*v = nv;
		return NOMEM();
	}
	*v = nv;
	(*n)++;
	return 0;
}

static int check_digest(const char *want, const char *data, size_t len, const char *what)
{
	uint8_t d[32];
	char got[72];

	shl_sha256_buf(data, len, d);
	shl_digest_str(d, got);
	if (strcmp(got, want))
		return shl_err(SHL_EDIGEST, "stored %s %s: bytes hash to %s (run `shale fsck`)", what, want, got);
	return 0;
}

/* The image a reference names; the reference also names it in the archive
 * when it is a tag the store has for that image (not an ID or a digest). */
static int add_ref(shl_store *s, shl_saver *v, const char *ref)
{
	char manifest[72], full[600], *target = NULL;
	struct shl_save_image *im = NULL;
	shl_ref r;
	int rc;

	if ((rc = shl_store_resolve(s, ref, manifest)))
		return rc;
	for (size_t i = 0; i < v->nimages && !im; i++)
		if (!strcmp(v->images[i].manifest, manifest))
			im = &v->images[i];
	if (!im) {
		struct shl_save_image *ni;
		if (v->nimages >= SAVE_MAX_IMAGES)
			return shl_err(SHL_ELIMIT, "more than %d images in one archive", SAVE_MAX_IMAGES);
		if (!(ni = realloc(v->images, (v->nimages + 1) * sizeof(*ni))))
			return NOMEM();
		v->images = ni;
		im = &v->images[v->nimages++];
		memset(im, 0, sizeof(*im));
		snprintf(im->manifest, sizeof(im->manifest), "%s", manifest);
	}
	if (shl_ref_parse(ref, &r) != 0 || r.digest[0] || !r.tag[0])
		return 0;
	shl_ref_full(&r, full, sizeof(full));
	if (shl_index_get(s->ix, SHL_DB_REFS, full, &target, NULL) == 0 && !strcmp(target, manifest))
		rc = str_add(&im->names, &im->nnames, full);
	free(target);
	return rc;
}

static int layer_slot(shl_saver *v, const char *diff_id, uint64_t tar_size, size_t *out)
{
	struct shl_save_layer *nl, *l;

	for (size_t i = 0; i < v->nlayers; i++) {
		if (!strcmp(v->layers[i].diff_id, diff_id)) {
			*out = i;
			return 0;
		}
	}
	if (v->nlayers >= SAVE_MAX_LAYERS)
		return shl_err(SHL_ELIMIT, "more than %d layers in one archive", SAVE_MAX_LAYERS);
	if (!(nl = realloc(v->layers, (v->nlayers + 1) * sizeof(*nl))))
		return NOMEM();
	v->layers = nl;
	l = &v->layers[v->nlayers];
	memset(l, 0, sizeof(*l));
	snprintf(l->diff_id, sizeof(l->diff_id), "%s", diff_id);
	l->tar_size = tar_size;
	l->fd = l->cfd = -1;
	l->excluded = shl_save__excluded(v, diff_id);
	*out = v->nlayers++;
	return 0;
}

static int read_image(shl_store *s, shl_saver *v, struct shl_save_image *im)
{
	shl_json *rec = NULL, *ls;
	const char *cfg, *orig;
	uint8_t tmp[32];
	int rc;

	if ((rc = shl_store__get_image(s, im->manifest, &rec)))
		return shl_err_ctx(rc, "image %s", im->manifest);
	cfg = shl_json_get_str(rec, "config");
	ls = shl_json_get(rec, "layers");
	if (!cfg || shl_digest_parse(cfg, tmp) != 0 || (ls && !shl_json_is_array(ls))) {
		rc = shl_err(SHL_EFORMAT, "image record %s: bad config or layers", im->manifest);
		goto out;
	}
	snprintf(im->config, sizeof(im->config), "%s", cfg);
	if ((rc = shl_store__get_blob(s, im->manifest, &im->stored_bytes, &im->stored_len, &im->stored_media)) ||
	    (rc = check_digest(im->manifest, im->stored_bytes, im->stored_len, "manifest")) ||
	    (rc = shl_store__get_blob(s, cfg, &im->config_bytes, &im->config_len, NULL)) ||
	    (rc = check_digest(cfg, im->config_bytes, im->config_len, "config")))
		goto out;
	/* a registry manifest carried along by an earlier shale-to-shale transfer */
	orig = shl_json_get_str(rec, "original_manifest");
	if (orig && strcmp(orig, im->manifest) && shl_digest_parse(orig, tmp) == 0 &&
	    shl_store__get_blob(s, orig, &im->orig_bytes, &im->orig_len, NULL) == 0) {
		if ((rc = check_digest(orig, im->orig_bytes, im->orig_len, "manifest")))
			goto out;
		snprintf(im->orig, sizeof(im->orig), "%s", orig);
	}
	if (!(im->layers = calloc(shl_json_len(ls) + 1, sizeof(*im->layers)))) {
		rc = NOMEM();
		goto out;
	}
	for (size_t i = 0; i < shl_json_len(ls); i++) {
		const char *d = shl_json_get_str(shl_json_at(ls, i), "diff_id");
		int64_t ts = -1;
		shl_json_get_int(shl_json_at(ls, i), "tar_size", &ts);
		if (!d || shl_digest_parse(d, tmp) != 0 || ts < 0) {
			rc = shl_err(SHL_EFORMAT, "image record %s: bad layer %zu", im->manifest, i);
			goto out;
		}
		if ((rc = layer_slot(v, d, (uint64_t)ts, &im->layers[im->nlayers])))
			goto out;
		im->nlayers++;
	}
out:
	shl_json_put(rec);
	return rc;
}

struct rd_ctx {
	shl_saver *v;
	int rc;
};

/* refs db: "name@sha256:..." -> manifest are an image's repo digests */
static int collect_rd(void *ctx, const char *k, size_t kl, const char *val, size_t vl)
{
	struct rd_ctx *c = ctx;
	char key[700];

	if (!memchr(k, '@', kl) || kl >= sizeof(key))
		return 0;
	for (size_t i = 0; i < c->v->nimages; i++) {
		struct shl_save_image *im = &c->v->images[i];
		if (vl != strlen(im->manifest) || memcmp(val, im->manifest, vl))
			continue;
		snprintf(key, sizeof(key), "%.*s", (int)kl, k);
		if ((c->rc = str_add(&im->repo_digests, &im->nrepo_digests, key)))
			return 1;
	}
	return 0;
}

/* Enough fds for every layer tar at once (raises the soft limit if needed). */
static void fd_room(size_t need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need + 64) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need + 256 ? need + 256 : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static int open_layers(shl_store *s, shl_saver *v)
{
	fd_room(v->nlayers);
	for (size_t i = 0; i < v->nlayers; i++) {
		struct shl_save_layer *l = &v->layers[i];
		char tar[4200];
		struct stat st;
		int rc;
		if (l->excluded)
			continue;
		if ((rc = shl_store_layer_paths(s, l->diff_id, tar, sizeof(tar), NULL, 0)))
			return shl_err_ctx(rc, "layer %s", l->diff_id);
		if ((l->fd = open(tar, O_RDONLY | O_CLOEXEC)) < 0)
			return shl_err_sys(SHL_EIO, "layer %s: open %s", l->diff_id, tar);
		if (fstat(l->fd, &st) != 0)
			return shl_err_sys(SHL_EIO, "layer %s: stat", l->diff_id);
		if ((uint64_t)st.st_size != l->tar_size)
			return shl_err(SHL_EFORMAT, "layer %s: stored tar is %lld bytes, the index says %llu (run `shale fsck`)",
				       l->diff_id, (long long)st.st_size, (unsigned long long)l->tar_size);
	}
	return 0;
}

static int snapshot(shl_store *s, shl_saver *v, const char *const *refs, size_t nrefs)
{
	struct rd_ctx c = { v, 0 };
	int lock = shl_store__lock(s, 0), rc = 0;

	if (lock < 0)
		return lock;
	for (size_t i = 0; i < nrefs && !rc; i++)
		rc = add_ref(s, v, refs[i]);
	for (size_t i = 0; i < v->nimages && !rc; i++)
		rc = read_image(s, v, &v->images[i]);
	if (!rc && (rc = shl_index_foreach(s->ix, SHL_DB_REFS, collect_rd, &c)) > 0)
		rc = c.rc;
	if (!rc)
		rc = open_layers(s, v);
	close(lock);
	return rc;
}

/* ---- step 2: --compress ------------------------------------------------------ */

struct comp_job {
	shl_saver *v;
	const char *tmp_dir;
	pthread_mutex_t mu;
	size_t next;
	int rc;              /* first failure */
	char msg[1024];
};

static int tmp_file(const char *dir)
{
	char path[4200];
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return shl_err_sys(SHL_EIO, "temp file in %s", dir);
	/* a filesystem without O_TMPFILE: a named temp file, unlinked at once */
	snprintf(path, sizeof(path), "%s/save-XXXXXX", dir);
	if ((fd = mkostemp(path, O_CLOEXEC)) < 0)
		return shl_err_sys(SHL_EIO, "temp file in %s", dir);
	unlink(path); /* nothing is left behind, whatever happens */
	return fd;
}

static int compress_one(shl_saver *v, struct shl_save_layer *l, const char *tmp_dir)
{
	int gz = v->o->compress == SHL_SAVE_COMPRESS_GZIP, rc;
	uint8_t sha[32];

	if ((l->cfd = tmp_file(tmp_dir)) < 0)
		return l->cfd;
	if (lseek(l->fd, 0, SEEK_SET) != 0)
		return shl_err_sys(SHL_EIO, "layer %s: seek", l->diff_id);
	if ((rc = shl_compress_fd(l->fd, l->cfd, gz ? SHL_COMP_GZIP : SHL_COMP_ZSTD, sha, &l->size)))
		return shl_err_ctx(rc, "compress layer %s", l->diff_id);
	shl_digest_str(sha, l->digest);
	l->media = gz ? SHL_MT_OCI_LAYER_GZIP : SHL_MT_OCI_LAYER_ZSTD;
	return 0;
}

static void *comp_worker(void *arg)
{
	struct comp_job *j = arg;

	for (;;) {
		size_t i;
		int rc;
		pthread_mutex_lock(&j->mu);
		while (j->next < j->v->nlayers && j->v->layers[j->next].excluded)
			j->next++;
		i = j->next++;
		if (j->rc || i >= j->v->nlayers) {
			pthread_mutex_unlock(&j->mu);
			return NULL;
		}
		pthread_mutex_unlock(&j->mu);
		if ((rc = compress_one(j->v, &j->v->layers[i], j->tmp_dir))) {
			pthread_mutex_lock(&j->mu);
			if (!j->rc) {
				j->rc = rc;
				snprintf(j->msg, sizeof(j->msg), "%s", shl_error_last());
			}
			pthread_mutex_unlock(&j->mu);
		}
	}
}

static int compress_layers(shl_store *s, shl_saver *v)
{
	struct comp_job j;
	pthread_t th[2];
	size_t todo = 0, nth = 0;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	for (size_t i = 0; i < v->nlayers; i++)
		todo += !v->layers[i].excluded;
	if (!todo)
		return 0;
	memset(&j, 0, sizeof(j));
	j.v = v;
	j.tmp_dir = s->tmp_dir;
	pthread_mutex_init(&j.mu, NULL);
	/* the calling thread is one worker; a second one when there are 2+ cores */
	if (cpus > 1 && todo > 1 && pthread_create(&th[0], NULL, comp_worker, &j) == 0)
		nth = 1;
	comp_worker(&j);
	for (size_t i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&j.mu);
	return j.rc ? shl_err(j.rc, "%s", j.msg) : 0;
}

/* ---- step 3: the manifest of each image -------------------------------------- */

static int plain_media(const char *mt)
{
	return !mt || !strcmp(mt, SHL_MT_OCI_LAYER) || !strcmp(mt, "application/vnd.docker.image.rootfs.diff.tar");
}

/* Does the stored manifest describe exactly the blobs written (same config,
 * same layer digests in order, all plain tars)? */
static int stored_fits(const shl_saver *v, const struct shl_save_image *im)
{
	shl_json *m = NULL, *ml;
	int ok;

	if (shl_json_parse(&m, im->stored_bytes, im->stored_len, SHL_MANIFEST_CAP, "manifest") != 0)
		return 0;
	ml = shl_json_get(m, "layers");
	ok = shl_json_is_array(ml) && shl_json_len(ml) == im->nlayers &&
	     !strcmp(shl_json_get_str(shl_json_get(m, "config"), "digest") ?: "", im->config);
	for (size_t i = 0; ok && i < im->nlayers; i++) {
		const struct shl_save_layer *l = &v->layers[im->layers[i]];
		const char *d = shl_json_get_str(shl_json_at(ml, i), "digest");
		ok = d && !strcmp(d, l->digest) && plain_media(shl_json_get_str(shl_json_at(ml, i), "mediaType")) &&
		     !strcmp(l->digest, l->diff_id);
	}
	shl_json_put(m);
	return ok;
}

static int build_manifest(shl_saver *v, struct shl_save_image *im)
{
	shl_json *ls;
	int rc = 0;

	if (stored_fits(v, im)) {
		im->verbatim = 1;
		im->out_bytes = im->stored_bytes;
		im->out_len = im->stored_len;
		snprintf(im->out_digest, sizeof(im->out_digest), "%s", im->manifest);
		im->out_media = im->stored_media && im->stored_media[0] ? im->stored_media : SHL_MT_OCI_MANIFEST;
		return 0;
	}
	if (!(ls = shl_json_new_array()))
		return NOMEM();
	for (size_t i = 0; i < im->nlayers && !rc; i++) {
		const struct shl_save_layer *l = &v->layers[im->layers[i]];
		shl_json *e = shl_json_new_object();
		if (!e) {
			rc = NOMEM();
			break;
		}
		if ((rc = shl_json_push(ls, e)) || (rc = shl_json_set_str(e, "diff_id", l->diff_id)) ||
		    (rc = shl_json_set_int(e, "tar_size", (int64_t)l->tar_size)))
			break;
		if (strcmp(l->digest, l->diff_id) &&
		    ((rc = shl_json_set_str(e, "out_media", l->media)) || (rc = shl_json_set_str(e, "out_digest", l->digest)) ||
		     (rc = shl_json_set_int(e, "out_size", (int64_t)l->size))))
			break;
	}
	if (!rc)
		rc = shl_store__synth_manifest(ls, im->config, im->config_len, &im->out_bytes, &im->out_len, im->out_digest);
	shl_json_put(ls);
	if (rc)
		return rc;
	im->out_media = SHL_MT_OCI_MANIFEST;
	/* carry the manifest the image came with (unless one is carried already) */
	if (!im->orig[0]) {
		if (!(im->orig_bytes = malloc(im->stored_len + 1)))
			return NOMEM();
		memcpy(im->orig_bytes, im->stored_bytes, im->stored_len);
		im->orig_len = im->stored_len;
		snprintf(im->orig, sizeof(im->orig), "%s", im->manifest);
	}
	return 0;
}

/* Drop the repo digests a loader derives by itself: "R@<written manifest>"
 * (any name resolves with the manifest's own digest) and "R@<original>" for
 * the repository R of one of the archive's names (`shale load` records those
 * from the io.shale.original-manifest annotation). What is left (e.g. the
 * digest of a registry index, or a repository not named in the archive) goes
 * into the io.shale.repo-digests annotation. Keeping only these makes a
 * transfer A -> B -> re-save on B give the same bytes as the save on A. */
static int keep_repo_digest(const struct shl_save_image *im, const char *rd)
{
	const char *at = strrchr(rd, '@');
	shl_ref r;
	char repo[600];

	if (!at || !strcmp(at + 1, im->out_digest))
		return 0;
	if (!im->orig[0] || strcmp(at + 1, im->orig))
		return 1;
	for (size_t k = 0; k < im->nnames; k++) {
		if (shl_ref_parse(im->names[k], &r) != 0)
			continue;
		shl_ref_repo(&r, 0, repo, sizeof(repo));
		if ((size_t)(at - rd) == strlen(repo) && !strncmp(rd, repo, (size_t)(at - rd)))
			return 0;
	}
	return 1;
}

static void filter_repo_digests(struct shl_save_image *im)
{
	size_t k = 0;

	for (size_t i = 0; i < im->nrepo_digests; i++) {
		if (keep_repo_digest(im, im->repo_digests[i]))
			im->repo_digests[k++] = im->repo_digests[i];
		else
			free(im->repo_digests[i]);
	}
	im->nrepo_digests = k;
}

/* ---- step 4: write -------------------------------------------------------------- */

struct blob {
	const char *digest;
	const char *data;    /* in memory, or NULL: fd */
	int fd;
	uint64_t size;
};

static int add_blob(struct blob **bs, size_t *n, size_t *cap, struct blob b)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct blob *nb = realloc(*bs, nc * sizeof(*nb));
		if (!nb)
			return NOMEM();
		*bs = nb;
		*cap = nc;
	}
	(*bs)[(*n)++] = b;
	return 0;
}

static int cmp_blob(const void *a, const void *b)
{
	return strcmp(((const struct blob *)a)->digest, ((const struct blob *)b)->digest);
}

static int write_json(shl_tarout *t, const char *name, int (*make)(const shl_saver *, shl_json **),
		      const shl_saver *v)
{
	shl_json *j = NULL;
	const char *s;
	size_t len;
	int rc;

	if ((rc = make(v, &j)))
		return rc;
	s = shl_json_dump(j, 0, &len);
	rc = s ? shl_tarout_mem(t, name, s, len) : NOMEM();
	shl_json_put(j);
	return rc;
}

static int write_archive(shl_saver *v, int out_fd)
{
	shl_tarout t = SHL_TAROUT_INIT(out_fd);
	struct blob *bs = NULL;
	size_t n = 0, cap = 0, named = 0;
	int rc = 0;

	for (size_t i = 0; i < v->nimages && !rc; i++) {
		struct shl_save_image *im = &v->images[i];
		named += im->nnames;
		rc = add_blob(&bs, &n, &cap, (struct blob){ im->config, im->config_bytes, -1, im->config_len });
		if (!rc)
			rc = add_blob(&bs, &n, &cap, (struct blob){ im->out_digest, im->out_bytes, -1, im->out_len });
		if (!rc && im->orig[0])
			rc = add_blob(&bs, &n, &cap, (struct blob){ im->orig, im->orig_bytes, -1, im->orig_len });
	}
	for (size_t i = 0; i < v->nlayers && !rc; i++) {
		struct shl_save_layer *l = &v->layers[i];
		if (!l->excluded)
			rc = add_blob(&bs, &n, &cap, (struct blob){ l->digest, NULL, l->cfd >= 0 ? l->cfd : l->fd, l->size });
	}
	if (rc)
		goto out;
	qsort(bs, n, sizeof(*bs), cmp_blob);
	if ((rc = shl_tarout_dir(&t, "blobs/")) || (rc = shl_tarout_dir(&t, "blobs/sha256/")))
		goto out;
	for (size_t i = 0; i < n && !rc; i++) {
		char name[100];
		if (i && !strcmp(bs[i].digest, bs[i - 1].digest))
			continue; /* shared config, or a manifest that is also another's original */
		snprintf(name, sizeof(name), "blobs/sha256/%s", bs[i].digest + 7);
		rc = bs[i].data ? shl_tarout_mem(&t, name, bs[i].data, (size_t)bs[i].size)
				: shl_tarout_file(&t, name, bs[i].fd, bs[i].size);
	}
	if (rc || (rc = write_json(&t, "index.json", shl_save__index_json, v)))
		goto out;
	if (v->o->format == SHL_SAVE_DOCKER && (rc = write_json(&t, "manifest.json", shl_save__manifest_json, v)))
		goto out;
	if ((rc = shl_tarout_mem(&t, "oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}", 30)))
		goto out;
	/* like docker: a repositories file only when the archive names something */
	if (v->o->format == SHL_SAVE_DOCKER && named &&
	    (rc = write_json(&t, "repositories", shl_save__repositories, v)))
		goto out;
	rc = shl_tarout_finish(&t);
out:
	shl_tarout_release(&t);
	free(bs);
	return rc;
}

/* ---- entry point ------------------------------------------------------------------ */

static void saver_free(shl_saver *v)
{
	for (size_t i = 0; i < v->nimages; i++) {
		struct shl_save_image *im = &v->images[i];
		for (size_t k = 0; k < im->nnames; k++)
			free(im->names[k]);
		for (size_t k = 0; k < im->nrepo_digests; k++)
			free(im->repo_digests[k]);
		free(im->names);
		free(im->repo_digests);
		free(im->layers);
		free(im->config_bytes);
		if (im->out_bytes != im->stored_bytes)
			free(im->out_bytes);
		free(im->stored_bytes);
		free(im->stored_media);
		free(im->orig_bytes);
	}
	for (size_t i = 0; i < v->nlayers; i++) {
		if (v->layers[i].fd >= 0)
			close(v->layers[i].fd);
		if (v->layers[i].cfd >= 0)
			close(v->layers[i].cfd);
	}
	free(v->images);
	free(v->layers);
	free(v->exclude);
}

int shl_save(shl_store *s, const char *const *refs, size_t nrefs, const shl_save_opts *o, int out_fd)
{
	shl_saver v;
	int rc = 0;

	if (!s || !o || o->version != SHL_SAVE_OPTS_VERSION || !refs || nrefs == 0 || out_fd < 0)
		return shl_err(SHL_EINVAL, "save: bad arguments");
	if ((o->format != SHL_SAVE_DOCKER && o->format != SHL_SAVE_OCI) ||
	    (o->compress != SHL_SAVE_COMPRESS_NONE && o->compress != SHL_SAVE_COMPRESS_GZIP &&
	     o->compress != SHL_SAVE_COMPRESS_ZSTD))
		return shl_err(SHL_EINVAL, "save: bad format or compression");
	memset(&v, 0, sizeof(v));
	v.o = o;
	if (o->exclude_layers)
		rc = shl_save__read_exclude(&v, o->exclude_layers);
	if (!rc)
		rc = snapshot(s, &v, refs, nrefs);
	for (size_t i = 0; i < v.nlayers; i++) {
		struct shl_save_layer *l = &v.layers[i];
		snprintf(l->digest, sizeof(l->digest), "%s", l->diff_id);
		l->media = SHL_MT_OCI_LAYER;
		l->size = l->tar_size;
	}
	if (!rc && o->compress != SHL_SAVE_COMPRESS_NONE)
		rc = compress_layers(s, &v);
	for (size_t i = 0; i < v.nimages && !rc; i++) {
		rc = build_manifest(&v, &v.images[i]);
		filter_repo_digests(&v.images[i]);
	}
	if (!rc)
		rc = write_archive(&v, out_fd);
	saver_free(&v);
	return rc;
}
