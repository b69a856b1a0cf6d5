/*
 * fetch/push.c - `shale push`: upload a stored image. For every layer, the
 * compressed blob the image came with is used when the target registry has
 * it already (HEAD) or can mount it from another repository of the same
 * registry; otherwise the stored tar is compressed on the fly (gzip, or zstd)
 * by a thread writing into a pipe that curl streams as one chunked PATCH,
 * hashed as it goes, and committed with PUT ?digest=. Two layers upload at
 * once (compression is CPU-bound: one per core); their progress reaches the
 * caller's callback on its own thread. Then the config, then
 * an OCI manifest, or the image's own manifest verbatim when every layer
 * kept its original blob (the manifest digest survives pull -> push).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetch/registry.h"
#include "shale/ref.h"
#include "store/store_int.h"
#include "util/clock.h"
#include "util/compress.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"

struct pusher {
	shl_store *s;
	const shl_push_opts *o;
	shl_reg_fn fn;
	void *ctx;
	struct shl_reg *reg;
	shl_ref dest;
	char scope[1400];
	char from_repo[600];    /* same-registry repository the image came from, for mounts */
	int comp;
	/* parallel uploads */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct up_slot *slots;
	size_t nslots, next;    /* next slot to take */
	size_t running;         /* workers not yet finished */
	int stop;               /* a worker failed: the others stop (atomic) */
};

static int stopped(struct pusher *P)
{
	return __atomic_load_n(&P->stop, __ATOMIC_RELAXED);
}

static void emit(struct pusher *P, int kind, const char *digest, const char *text, uint64_t cur, uint64_t total)
{
	shl_reg_event ev = { kind, digest, text, cur, total };

	if (P->fn)
		P->fn(P->ctx, &ev);
}

static int fail_status(struct pusher *P, const char *what, long status, const char *body, size_t len)
{
	char msg[300];

	shl_http_error_text(status, body, len, msg, sizeof(msg));
	/* only what may pass is retried: 5xx, 429, no answer; a 4xx is final */
	return shl_err(status == 401 || status == 403 ? SHL_EAUTH
		       : status >= 400 && status < 500 && status != 429 ? SHL_EINVAL
									 : SHL_ENET,
		       "push %s/%s: %s: %s", P->dest.domain, P->dest.path, what, msg);
}

/* 1 if the registry has the blob, 0 if not. */
static int has_blob(struct pusher *P, const char *digest)
{
	char path[800];
	struct shl_http_req rq = { .url = path, .no_body = 1, .cap = 1 << 16 };
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/v2/%s/blobs/%s", P->dest.path, digest);
	if ((rc = shl_reg_request(P->reg, P->scope, &rq, &status, NULL, NULL, NULL)))
		return rc;
	return status == 200;
}

/* Try a cross-repository mount; 1 mounted, 0 not (then *location may hold an
 * upload session the registry opened instead). */
static int try_mount(struct pusher *P, const char *digest, char *location, size_t loclen)
{
	char path[1600];
	struct shl_http_req rq = { .method = "POST", .url = path, .body = "", .body_len = 0, .cap = 1 << 16 };
	struct shl_http_hdrs h;
	char *body = NULL;
	long status = 0;
	int rc;

	location[0] = '\0';
	if (!P->from_repo[0])
		return 0;
	snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?mount=%s&from=%s", P->dest.path, digest, P->from_repo);
	rc = shl_reg_request(P->reg, P->scope, &rq, &status, &h, &body, NULL);
	free(body);
	if (rc)
		return rc;
	if (status == 201)
		return 1;
	if (status == 202)
		snprintf(location, loclen, "%s", h.location);
	return 0;
}

static int start_upload(struct pusher *P, char *location, size_t loclen)
{
	char path[800];
	struct shl_http_req rq = { .method = "POST", .url = path, .body = "", .body_len = 0, .cap = 1 << 16 };
	struct shl_http_hdrs h;
	char *body = NULL;
	size_t len = 0;
	long status = 0;
	int rc;

	snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", P->dest.path);
	if ((rc = shl_reg_request(P->reg, P->scope, &rq, &status, &h, &body, &len)))
		return rc;
	if (status != 202 || !h.location[0]) {
		rc = fail_status(P, "starting an upload", status, body, len);
		free(body);
		return rc;
	}
	free(body);
	snprintf(location, loclen, "%s", h.location);
	return 0;
}

/* Location may be relative ("/v2/..."): make it a path or absolute URL for
 * shl_reg_request, with `extra` query appended. */
static void upload_url(const char *loc, const char *extra, char *out, size_t len)
{
	snprintf(out, len, "%s%s%s", loc, extra[0] ? (strchr(loc, '?') ? "&" : "?") : "", extra);
}

/* Finish an upload with PUT ?digest= (body: the whole blob for monolithic uploads). */
static int put_digest(struct pusher *P, const char *location, const char *digest, const void *body, size_t len)
{
	char extra[100], url[4400];
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	struct shl_http_req rq = { .method = "PUT", .url = url, .hdrs = hdrs, .body = body ? body : "", .body_len = len,
				   .cap = 1 << 16 };
	char *resp = NULL;
	size_t rlen = 0;
	long status = 0;
	int rc;

	snprintf(extra, sizeof(extra), "digest=%s", digest);
	upload_url(location, extra, url, sizeof(url));
	rc = shl_reg_request(P->reg, P->scope, &rq, &status, NULL, &resp, &rlen);
	curl_slist_free_all(hdrs);
	if (!rc && status != 201)
		rc = fail_status(P, digest, status, resp, rlen);
	free(resp);
	return rc;
}

/* ---- streaming a compressed layer --------------------------------------------------- */

struct comp_job {
	int in_fd, out_fd, comp, rc;
	uint8_t sha[32];
	uint64_t size;
	char msg[300];
};

static void *compress_thread(void *arg)
{
	struct comp_job *j = arg;

	j->rc = shl_compress_fd(j->in_fd, j->out_fd, j->comp, j->sha, &j->size);
	if (j->rc)
		snprintf(j->msg, sizeof(j->msg), "%s", shl_error_last());
	close(j->out_fd);
	return NULL;
}

/* One layer to upload: written by its worker, read by the calling thread,
 * which turns changes into events (events stay on the calling thread). */
struct up_slot {
	const char *diff_id;
	int phase;              /* 0 waiting, 1 pushing, 2 pushed, 3 failed */
	uint64_t sent;          /* compressed bytes handed to curl so far */
	int nretry;             /* retries so far; retry_msg: the last one's reason */
	char retry_msg[300];
	char digest[72];
	int64_t size;
	int rc;
	char msg[600];          /* the worker's error message */
};

struct pipe_src {
	int fd;
	struct pusher *P;
	struct up_slot *slot;
};

static size_t read_pipe(char *buf, size_t size, size_t n, void *ud)
{
	struct pipe_src *ps = ud;
	ssize_t k;

	if (stopped(ps->P) || (ps->P->o->reg.cancel && *ps->P->o->reg.cancel))
		return CURL_READFUNC_ABORT;
	do
		k = read(ps->fd, buf, size * n);
	while (k < 0 && errno == EINTR);
	if (k < 0)
		return CURL_READFUNC_ABORT;
	__atomic_add_fetch(&ps->slot->sent, (uint64_t)k, __ATOMIC_RELAXED);
	return (size_t)k;
}

static int upload_layer(struct pusher *P, struct up_slot *sl)
{
	const char *diff_id = sl->diff_id;
	char tar[4096], location[4096], url[4400];
	struct comp_job job = { -1, -1, P->comp, 0, { 0 }, 0, "" };
	struct pipe_src ps = { -1, P, sl };
	struct shl_http_hdrs h;
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	pthread_t th;
	int pfd[2] = { -1, -1 }, started = 0, rc;
	long status = 0;
	CURL *c = NULL;

	if ((rc = shl_store_layer_paths(P->s, diff_id, tar, sizeof(tar), NULL, 0)))
		return rc;
	if ((rc = start_upload(P, location, sizeof(location))))
		return rc;
	if ((job.in_fd = open(tar, O_RDONLY | O_CLOEXEC)) < 0)
		return shl_err_sys(SHL_EIO, "open %s", tar);
	if (pipe2(pfd, O_CLOEXEC)) {
		rc = shl_err_sys(SHL_EIO, "pipe");
		goto out;
	}
	job.out_fd = pfd[1];
	ps.fd = pfd[0];
	if (pthread_create(&th, NULL, compress_thread, &job)) {
		rc = shl_err(SHL_ENOMEM, "cannot start the compression thread");
		goto out;
	}
	started = 1;
	pfd[1] = -1; /* the thread closes it */
	/* one streamed PATCH (chunked): the size is unknown until the end */
	if ((rc = shl_reg_auth(P->reg, P->scope, 0, &hdrs)))
		goto out;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
	hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
	if (!strncmp(location, "http://", 7) || !strncmp(location, "https://", 8))
		snprintf(url, sizeof(url), "%s", location);
	else
		snprintf(url, sizeof(url), "%s%s", P->reg->base, location);
	if (!(c = shl_http_easy(P->reg->o, &h))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
	curl_easy_setopt(c, CURLOPT_READFUNCTION, read_pipe);
	curl_easy_setopt(c, CURLOPT_READDATA, &ps);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	close(ps.fd);
	ps.fd = -1;
	pthread_join(th, NULL);
	started = 0;
	/* the transfer's failure first: the compressor then fails too (EPIPE) */
	if (cc == CURLE_ABORTED_BY_CALLBACK) {
		/* ^C, or another layer failed for good (its error is the one reported) */
		rc = shl_err(SHL_ECANCELED, stopped(P) ? "stopped: another layer failed" : "interrupted");
		goto out;
	}
	if (cc != CURLE_OK) {
		rc = shl_err(SHL_ENET, "push %s: uploading layer %s: %s", P->dest.path, diff_id,
			     errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	if (status != 202 && status != 204 && status != 201) {
		rc = fail_status(P, "uploading a layer", status, NULL, 0);
		goto out;
	}
	if (job.rc) {
		rc = shl_err(job.rc, "compressing layer %s: %s", diff_id, job.msg);
		goto out;
	}
	shl_digest_str(job.sha, sl->digest);
	sl->size = (int64_t)job.size;
	rc = put_digest(P, h.location[0] ? h.location : location, sl->digest, NULL, 0);
out:
	if (c)
		curl_easy_cleanup(c);
	curl_slist_free_all(hdrs);
	if (ps.fd >= 0)
		close(ps.fd);
	if (started)
		pthread_join(th, NULL);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (job.in_fd >= 0)
		close(job.in_fd);
	return rc;
}

static int upload_small(struct pusher *P, const char *digest, const void *data, size_t len)
{
	char location[4096];
	int rc = has_blob(P, digest);

	if (rc != 0)
		return rc < 0 ? rc : 0;
	if ((rc = start_upload(P, location, sizeof(location))))
		return rc;
	return put_digest(P, location, digest, data, len);
}

/* ---- the image ---------------------------------------------------------------------- */

static const char *oci_media(const char *mt)
{
	if (!strcmp(mt, "application/vnd.docker.image.rootfs.diff.tar.gzip"))
		return "application/vnd.oci.image.layer.v1.tar+gzip";
	if (!strcmp(mt, "application/vnd.docker.image.rootfs.diff.tar.zstd"))
		return "application/vnd.oci.image.layer.v1.tar+zstd";
	if (!strcmp(mt, "application/vnd.docker.image.rootfs.diff.tar"))
		return "application/vnd.oci.image.layer.v1.tar";
	return mt;
}

/* A repository of the destination registry (other than the destination) that
 * names this image: a blob source for cross-repository mounts. */
static void find_from_repo(struct pusher *P, const char *ref)
{
	char *js = NULL;
	shl_json *j = NULL;

	if (shl_store_inspect(P->s, ref, &js) || shl_json_parse(&j, js, strlen(js), 64u << 20, "inspect")) {
		shl_error_clear();
		free(js);
		return;
	}
	shl_json *img = shl_json_is_array(j) ? shl_json_at(j, 0) : j;
	for (int k = 0; k < 2 && !P->from_repo[0]; k++) {
		shl_json *arr = shl_json_get(img, k ? "RepoDigests" : "RepoTags");
		for (size_t i = 0; i < shl_json_len(arr); i++) {
			shl_ref r;
			const char *s = shl_json_str(shl_json_at(arr, i));
			if (!s || shl_ref_parse(s, &r) || strcmp(r.domain, P->dest.domain) || !strcmp(r.path, P->dest.path))
				continue;
			snprintf(P->from_repo, sizeof(P->from_repo), "%s", r.path);
			break;
		}
	}
	shl_error_clear();
	shl_json_put(j);
	free(js);
}

static void slot_set(struct pusher *P, struct up_slot *sl, int phase)
{
	pthread_mutex_lock(&P->mu);
	sl->phase = phase;
	pthread_cond_signal(&P->cv);
	pthread_mutex_unlock(&P->mu);
}

/* Take layers off the list and upload them; an upload that broke starts over
 * (a new session, compressed anew). */
static void *upload_worker(void *arg)
{
	struct pusher *P = arg;

	for (;;) {
		struct up_slot *sl;
		int rc;

		pthread_mutex_lock(&P->mu);
		sl = P->next < P->nslots && !stopped(P) ? &P->slots[P->next++] : NULL;
		pthread_mutex_unlock(&P->mu);
		if (!sl)
			break;
		slot_set(P, sl, 1);
		for (int attempt = 0;; attempt++) {
			__atomic_store_n(&sl->sent, 0, __ATOMIC_RELAXED);
			rc = upload_layer(P, sl);
			if (rc != SHL_ENET || attempt >= P->o->reg.retries || stopped(P) ||
			    (P->o->reg.cancel && *P->o->reg.cancel))
				break;
			pthread_mutex_lock(&P->mu);
			snprintf(sl->retry_msg, sizeof(sl->retry_msg), "%s", shl_error_last());
			sl->nretry++;
			pthread_cond_signal(&P->cv);
			pthread_mutex_unlock(&P->mu);
			shl_error_clear();
			struct timespec ts = { 0, (long)(shl_reg_backoff(attempt) * 1e9) % 1000000000L };
			ts.tv_sec = (time_t)shl_reg_backoff(attempt);
			nanosleep(&ts, NULL);
		}
		if (rc) {
			snprintf(sl->msg, sizeof(sl->msg), "%s", shl_error_last());
			sl->rc = rc;
			__atomic_store_n(&P->stop, 1, __ATOMIC_RELAXED);
		}
		slot_set(P, sl, rc ? 3 : 2);
	}
	pthread_mutex_lock(&P->mu);
	P->running--;
	pthread_cond_signal(&P->cv);
	pthread_mutex_unlock(&P->mu);
	return NULL;
}

/* Upload P->slots on up to two workers (compression is the cost: one per
 * core), turning their progress into events on this thread. */
static int upload_all(struct pusher *P)
{
	struct { int phase, nretry; uint64_t sent; } *seen = calloc(P->nslots, sizeof(*seen));
	pthread_t th[2];
	size_t nth = 0, want = P->nslots < 2 ? P->nslots : 2;
	int rc = 0;

	if (!seen)
		return shl_err(SHL_ENOMEM, "out of memory");
	if (P->o->reg.max_connections > 0 && want > (size_t)P->o->reg.max_connections)
		want = (size_t)P->o->reg.max_connections;
	pthread_mutex_lock(&P->mu);
	for (; nth < want; nth++) {
		if (pthread_create(&th[nth], NULL, upload_worker, P))
			break;
		P->running++;
	}
	if (!nth) {
		pthread_mutex_unlock(&P->mu);
		free(seen);
		return shl_err(SHL_ENOMEM, "cannot start an upload thread");
	}
	for (;;) {
		int finished = P->running == 0;
		struct timespec dl;
		shl_clock_deadline(&dl, 200);
		for (size_t i = 0; i < P->nslots; i++) {
			struct up_slot *sl = &P->slots[i];
			uint64_t sent = __atomic_load_n(&sl->sent, __ATOMIC_RELAXED);
			char msg[300];
			int phase = sl->phase, nretry = sl->nretry;
			snprintf(msg, sizeof(msg), "%s", sl->retry_msg);
			pthread_mutex_unlock(&P->mu);
			if (phase >= 1 && seen[i].phase < 1)
				emit(P, SHL_REG_LAYER, sl->diff_id, "Pushing", 0, 0);
			if (nretry != seen[i].nretry)
				emit(P, SHL_REG_RETRY, sl->diff_id, msg, 0, 0);
			if (phase == 1 && sent != seen[i].sent)
				emit(P, SHL_REG_PROGRESS, sl->diff_id, "Pushing", sent, 0);
			if (phase == 2 && seen[i].phase != 2)
				emit(P, SHL_REG_LAYER, sl->diff_id, "Pushed", (uint64_t)sl->size, (uint64_t)sl->size);
			seen[i].phase = phase;
			seen[i].nretry = nretry;
			seen[i].sent = sent;
			pthread_mutex_lock(&P->mu);
		}
		if (finished)
			break;
		pthread_cond_timedwait(&P->cv, &P->mu, &dl);
	}
	pthread_mutex_unlock(&P->mu);
	for (size_t i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	/* the first real failure in layer order, not an upload it stopped */
	for (int pass = 0; pass < 2 && !rc; pass++)
		for (size_t i = 0; i < P->nslots && !rc; i++)
			if (P->slots[i].rc && (pass || P->slots[i].rc != SHL_ECANCELED))
				rc = shl_err(P->slots[i].rc, "%s", P->slots[i].msg);
	if (!rc && P->next < P->nslots)
		rc = shl_err(SHL_EIO, "push: layers left unpushed");
	free(seen);
	return rc;
}

static const char *push_media(const struct pusher *P)
{
	return P->comp == SHL_COMP_ZSTD ? "application/vnd.oci.image.layer.v1.tar+zstd"
					: "application/vnd.oci.image.layer.v1.tar+gzip";
}

/* Remember what the uploads produced (blob -> diff_id), so the next push of
 * these layers asks the registry (HEAD) before compressing, and a pull of
 * them finds them stored. Best effort: the push has succeeded either way. */
static void record_aliases(struct pusher *P)
{
	shl_batch *b = NULL;
	int rc = shl_batch_new(&b);

	for (size_t i = 0; i < P->nslots && !rc; i++)
		rc = shl_batch_put_alias(b, P->slots[i].digest, P->slots[i].diff_id, push_media(P),
					 (uint64_t)P->slots[i].size);
	if (!rc)
		shl_store_commit(P->s, b);
	shl_batch_free(b);
	shl_error_clear();
}

struct reuse {
	char digest[72];        /* a blob shale made before (alias), on the registry */
	int64_t size;
};

static int push_layers(struct pusher *P, shl_json *layers, shl_json *out, int *verbatim)
{
	size_t n = shl_json_len(layers);
	struct up_slot **of = calloc(n ? n : 1, sizeof(*of)); /* the layer's upload, NULL if it has its blob */
	struct reuse *ru = calloc(n ? n : 1, sizeof(*ru));
	int rc = 0;

	*verbatim = 1;
	P->slots = calloc(n ? n : 1, sizeof(*P->slots));
	if (!of || !ru || !P->slots) {
		free(of);
		free(ru);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	/* what the registry has, or can mount: asked one by one (small requests) */
	for (size_t i = 0; i < n && !rc; i++) {
		shl_json *l = shl_json_at(layers, i);
		const char *diff = shl_json_get_str(l, "diff_id"), *dg = shl_json_get_str(l, "digest"),
			   *mt = shl_json_get_str(l, "media_type");
		char location[4096];
		int64_t tar_size = 0;
		int have = 0;
		shl_json_get_int(l, "tar_size", &tar_size);
		if (!diff || !dg || !mt) {
			rc = shl_err(SHL_EFORMAT, "image record: layer %zu incomplete", i);
			break;
		}
		emit(P, SHL_REG_LAYER, diff, "Preparing", 0, (uint64_t)tar_size);
		if (strcmp(dg, diff)) {
			/* the compressed blob the image came with: present, or mountable? */
			if ((have = has_blob(P, dg)) < 0) {
				rc = have;
			} else if (have) {
				emit(P, SHL_REG_LAYER, diff, "Layer already exists", 0, 0);
			} else if ((have = try_mount(P, dg, location, sizeof(location))) < 0) {
				rc = have;
			} else if (have) {
				char txt[700];
				snprintf(txt, sizeof(txt), "Mounted from %s", P->from_repo);
				emit(P, SHL_REG_LAYER, diff, txt, 0, 0);
			}
		}
		if (!rc && !have) {
			/* compressed by an earlier push: the registry may have that */
			int64_t asz = 0;
			int r = shl_store__find_alias(P->s, diff, push_media(P), ru[i].digest, &asz);
			if (r > 0 && strcmp(ru[i].digest, dg) && (have = has_blob(P, ru[i].digest)) > 0) {
				ru[i].size = asz;
				*verbatim = 0;
				emit(P, SHL_REG_LAYER, diff, "Layer already exists", 0, 0);
			} else {
				ru[i].digest[0] = '\0';
				if (have < 0)
					rc = have;
				have = 0;
				shl_error_clear();
			}
		}
		if (!rc && !have) {
			size_t k;
			for (k = 0; k < P->nslots && strcmp(P->slots[k].diff_id, diff); k++)
				; /* a tar used twice in one image is uploaded once */
			if (k == P->nslots)
				P->slots[P->nslots++].diff_id = diff;
			of[i] = &P->slots[k];
			*verbatim = 0;
		}
	}
	if (!rc && P->nslots && !(rc = upload_all(P)))
		record_aliases(P);
	for (size_t i = 0; i < n && !rc; i++) {
		shl_json *l = shl_json_at(layers, i), *e;
		const char *mt = shl_json_get_str(l, "media_type"), *digest = shl_json_get_str(l, "digest"), *media;
		int64_t size = 0;
		shl_json_get_int(l, "size", &size);
		if (of[i]) {
			digest = of[i]->digest;
			size = of[i]->size;
			media = push_media(P);
		} else if (ru[i].digest[0]) {
			digest = ru[i].digest;
			size = ru[i].size;
			media = push_media(P);
		} else {
			media = oci_media(mt);
		}
		if (!(e = shl_json_new_object()) || (rc = shl_json_set_str(e, "mediaType", media)) ||
		    (rc = shl_json_set_str(e, "digest", digest)) || (rc = shl_json_set_int(e, "size", size))) {
			shl_json_put(e);
			rc = rc ? rc : shl_err(SHL_ENOMEM, "out of memory");
			break;
		}
		rc = shl_json_push(out, e);
	}
	free(of);
	free(ru);
	return rc;
}

static int put_manifest(struct pusher *P, const char *bytes, size_t len, const char *media, char digest[72])
{
	char path[800], ct[200];
	struct curl_slist *hdrs;
	struct shl_http_req rq = { .method = "PUT", .url = path, .body = bytes, .body_len = len, .cap = 1 << 16 };
	uint8_t sha[32];
	char *resp = NULL;
	size_t rlen = 0;
	long status = 0;
	int rc;

	snprintf(ct, sizeof(ct), "Content-Type: %s", media);
	hdrs = curl_slist_append(NULL, ct);
	rq.hdrs = hdrs;
	snprintf(path, sizeof(path), "/v2/%s/manifests/%s", P->dest.path, P->dest.tag[0] ? P->dest.tag : "latest");
	rc = shl_reg_request(P->reg, P->scope, &rq, &status, NULL, &resp, &rlen);
	curl_slist_free_all(hdrs);
	if (!rc && status != 201 && status != 200)
		rc = fail_status(P, "manifest", status, resp, rlen);
	free(resp);
	shl_sha256_buf(bytes, len, sha);
	shl_digest_str(sha, digest);
	return rc;
}

int shl_push(shl_store *s, const char *ref, const char *dest, const shl_push_opts *o, shl_reg_fn fn, void *ctx)
{
	struct pusher P;
	char manifest[72], digest[72], *mbytes = NULL, *mmedia = NULL, *cbytes = NULL, done[800];
	size_t mlen = 0, clen = 0;
	shl_json *rec = NULL, *man = NULL, *layers_out = NULL, *cfgd = NULL;
	const char *config, *media, *outb;
	int rc, verbatim = 0;
	size_t outlen = 0;

	memset(&P, 0, sizeof(P));
	pthread_mutex_init(&P.mu, NULL);
	pthread_cond_init(&P.cv, NULL);
	P.s = s;
	P.o = o;
	P.fn = fn;
	P.ctx = ctx;
	P.comp = o->compress && !strcmp(o->compress, "zstd") ? SHL_COMP_ZSTD : SHL_COMP_GZIP;
	if (o->compress && strcmp(o->compress, "zstd") && strcmp(o->compress, "gzip")) {
		rc = shl_err(SHL_EINVAL, "--compress wants gzip or zstd, not '%s'", o->compress);
		goto out;
	}
	if ((rc = shl_store_resolve(s, ref, manifest)) || (rc = shl_ref_parse(dest ? dest : ref, &P.dest)))
		goto out;
	if (!P.dest.tag[0])
		snprintf(P.dest.tag, sizeof(P.dest.tag), "latest");
	find_from_repo(&P, ref);
	if (P.from_repo[0])
		snprintf(P.scope, sizeof(P.scope), "repository:%s:pull,push repository:%s:pull", P.dest.path, P.from_repo);
	else
		snprintf(P.scope, sizeof(P.scope), "repository:%s:pull,push", P.dest.path);
	if ((rc = shl_store__get_image(s, manifest, &rec)) ||
	    (rc = shl_store__get_blob(s, manifest, &mbytes, &mlen, &mmedia)))
		goto out;
	config = shl_json_get_str(rec, "config");
	if (!config || (rc = shl_store__get_blob(s, config, &cbytes, &clen, NULL)))
		goto out;
	if ((rc = shl_reg_open(&P.reg, P.dest.domain, NULL, &o->reg)))
		goto out;
	if (!(layers_out = shl_json_new_array())) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = push_layers(&P, shl_json_get(rec, "layers"), layers_out, &verbatim)))
		goto out;
	if ((rc = upload_small(&P, config, cbytes, clen)))
		goto out;
	media = mmedia && *mmedia ? mmedia : MT_OCI_MANIFEST;
	if (verbatim && (!strcmp(media, MT_OCI_MANIFEST) ||
			 !strcmp(media, "application/vnd.docker.distribution.manifest.v2+json"))) {
		outb = mbytes;
		outlen = mlen;
	} else {
		media = MT_OCI_MANIFEST;
		if (!(man = shl_json_new_object()) || !(cfgd = shl_json_new_object()) ||
		    (rc = shl_json_set(man, "schemaVersion", shl_json_new_int(2))) ||
		    (rc = shl_json_set_str(man, "mediaType", MT_OCI_MANIFEST)) ||
		    (rc = shl_json_set_str(cfgd, "mediaType", MT_OCI_CONFIG)) ||
		    (rc = shl_json_set_str(cfgd, "digest", config)) || (rc = shl_json_set_int(cfgd, "size", (int64_t)clen)) ||
		    (rc = shl_json_set(man, "config", shl_json_ref(cfgd))) ||
		    (rc = shl_json_set(man, "layers", shl_json_ref(layers_out)))) {
			rc = rc ? rc : shl_err(SHL_ENOMEM, "out of memory");
			goto out;
		}
		outb = shl_json_dump(man, 0, &outlen);
	}
	if ((rc = put_manifest(&P, outb, outlen, media, digest)))
		goto out;
	snprintf(done, sizeof(done), "%s/%s:%s@%s", P.dest.domain, P.dest.path, P.dest.tag, digest);
	emit(&P, SHL_REG_DONE, NULL, done, 0, 0);
out:
	shl_json_put(rec);
	shl_json_put(man);
	shl_json_put(cfgd);
	shl_json_put(layers_out);
	free(mbytes);
	free(mmedia);
	free(cbytes);
	free(P.slots);
	shl_reg_close(P.reg);
	pthread_mutex_destroy(&P.mu);
	pthread_cond_destroy(&P.cv);
	return rc;
}
