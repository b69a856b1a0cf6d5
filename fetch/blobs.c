/*
 * fetch/blobs.c - the download engine (fetch/blobs.h): one thread drives a
 * curl multi handle with up to max_connections transfers; every transfer
 * appends to its blob's partial file and wakes the readers. The partial file
 * is flock'ed so two processes never append to the same one.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fetch/blobs.h"
#include "util/clock.h"
#include "util/err.h"

#define ERRBODY_CAP 4096
#define MAX_NOTES 16

struct shl_dl {
	struct shl_dlq *q;
	char digest[72];
	int64_t size;
	char path[4096];
	int private_file;       /* path is our own path.<pid> */
	int fd;                 /* append fd (owned by the curl thread while active) */
	int rfd;                /* reader fd */
	uint64_t written;       /* bytes in the file */
	uint64_t roff;          /* reader offset */
	int resumed;
	int state;
	int attempts;
	double next_try;
	int refreshed;          /* token refreshed after a 401 */
	/* the current response */
	CURL *easy;
	struct curl_slist *hdrs;
	struct shl_http_hdrs h;
	int resp_started;
	long resp_code;
	uint64_t skip;          /* bytes to drop: the server ignored Range */
	uint64_t resp_start_written;
	int too_big;
	char errbody[ERRBODY_CAP];
	size_t errlen;
	char curl_err[CURL_ERROR_SIZE];
	/* the outcome */
	int err;
	char msg[512];
	struct shl_dl *next;
};

struct shl_dlq {
	struct shl_reg *r;
	char repo[300];
	char scope[600];
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	CURLM *multi;
	struct shl_dl *list;
	int stopping;
	int active;
	char notes[MAX_NOTES][300];
	int nnotes;
};

static int canceled(struct shl_dlq *q)
{
	return q->stopping || (q->r->o->cancel && *q->r->o->cancel);
}

static void note(struct shl_dlq *q, const char *why, int resumed)
{
	if (q->nnotes < MAX_NOTES)
		snprintf(q->notes[q->nnotes++], sizeof(q->notes[0]), "%.240s; retrying%s", why,
			 resumed ? " from where it stopped" : "");
}

int shl_dlq_take_note(struct shl_dlq *q, char *buf, size_t len)
{
	int got = 0;

	pthread_mutex_lock(&q->mu);
	if (q->nnotes) {
		snprintf(buf, len, "%s", q->notes[0]);
		memmove(q->notes[0], q->notes[1], (size_t)(q->nnotes - 1) * sizeof(q->notes[0]));
		q->nnotes--;
		got = 1;
	}
	pthread_mutex_unlock(&q->mu);
	return got;
}

/* ---- one transfer (curl thread) --------------------------------------------------- */

static size_t on_data(char *buf, size_t size, size_t n, void *ud)
{
	struct shl_dl *d = ud;
	size_t len = size * n, off = 0;

	if (!d->resp_started) {
		int64_t a, b, t;
		d->resp_started = 1;
		curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &d->resp_code);
		d->skip = 0;
		if (d->resp_code == 200) {
			d->skip = d->written; /* whole blob again: drop what we have */
		} else if (d->resp_code == 206) {
			if (shl_http_parse_content_range(d->h.content_range, &a, &b, &t) || (uint64_t)a > d->written)
				return 0; /* cannot line it up: error, retried from scratch */
			d->skip = d->written - (uint64_t)a;
		}
	}
	if (d->resp_code != 200 && d->resp_code != 206) {
		size_t k = len < sizeof(d->errbody) - 1 - d->errlen ? len : sizeof(d->errbody) - 1 - d->errlen;
		memcpy(d->errbody + d->errlen, buf, k);
		d->errlen += k;
		d->errbody[d->errlen] = '\0';
		return len;
	}
	if (d->skip) {
		off = d->skip < len ? (size_t)d->skip : len;
		d->skip -= off;
	}
	if (off == len)
		return len;
	if (d->size >= 0 && d->written + (len - off) > (uint64_t)d->size) {
		d->too_big = 1;
		return 0;
	}
	for (size_t done = off; done < len;) {
		ssize_t w = write(d->fd, buf + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(d->curl_err, sizeof(d->curl_err), "writing %.150s: %.80s", d->path, strerror(errno));
			return 0;
		}
		done += (size_t)w;
	}
	pthread_mutex_lock(&d->q->mu);
	d->written += len - off;
	pthread_cond_broadcast(&d->q->cv);
	pthread_mutex_unlock(&d->q->mu);
	return len;
}

/* Called with q->mu held. */
static void finish(struct shl_dl *d, int state, int err, const char *msg)
{
	d->state = state;
	d->err = err;
	if (msg)
		snprintf(d->msg, sizeof(d->msg), "%.500s", msg);
	pthread_cond_broadcast(&d->q->cv);
}

static int begin(struct shl_dlq *q, struct shl_dl *d)
{
	char url[1024], range[64];
	int rc;

	d->hdrs = NULL;
	if ((rc = shl_reg_auth(q->r, q->scope, d->refreshed == 1, &d->hdrs))) {
		if (d->refreshed == 1)
			d->refreshed = 2;
		return rc;
	}
	if (d->refreshed == 1)
		d->refreshed = 2;
	if (!(d->easy = shl_http_easy(q->r->o, &d->h)))
		return shl_err(SHL_ENOMEM, "out of memory");
	snprintf(url, sizeof(url), "%s/v2/%s/blobs/%s", q->r->base, q->repo, d->digest);
	curl_easy_setopt(d->easy, CURLOPT_URL, url);
	curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->hdrs);
	curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
	curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
	d->curl_err[0] = '\0';
	curl_easy_setopt(d->easy, CURLOPT_ERRORBUFFER, d->curl_err);
	if (d->written) {
		snprintf(range, sizeof(range), "%llu-", (unsigned long long)d->written);
		curl_easy_setopt(d->easy, CURLOPT_RANGE, range);
	}
	d->resp_started = 0;
	d->resp_code = 0;
	d->too_big = 0;
	d->errlen = 0;
	d->errbody[0] = '\0';
	d->resp_start_written = d->written;
	if (curl_multi_add_handle(q->multi, d->easy) != CURLM_OK)
		return shl_err(SHL_ENET, "curl_multi_add_handle failed");
	return 0;
}

static void end_easy(struct shl_dlq *q, struct shl_dl *d)
{
	if (d->easy) {
		curl_multi_remove_handle(q->multi, d->easy);
		curl_easy_cleanup(d->easy);
		d->easy = NULL;
	}
	curl_slist_free_all(d->hdrs);
	d->hdrs = NULL;
}

/* A transfer ended: done, retry later, or failed. q->mu held. */
static void ended(struct shl_dlq *q, struct shl_dl *d, CURLcode cc)
{
	char why[600], http[300];
	long code = d->resp_code;
	int retry = 0;

	if (!code)
		curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &code);
	end_easy(q, d);
	q->active--;
	if (d->too_big) {
		snprintf(why, sizeof(why), "blob %s: the registry sends more than the %lld bytes its descriptor says",
			 d->digest, (long long)d->size);
		finish(d, SHL_DL_FAILED, SHL_ELIMIT, why);
		return;
	}
	if (cc == CURLE_OK && (code == 200 || code == 206)) {
		if (d->size < 0 || d->written == (uint64_t)d->size) {
			finish(d, SHL_DL_DONE, 0, NULL);
			return;
		}
		snprintf(why, sizeof(why), "blob %s: connection ended after %llu of %lld bytes", d->digest,
			 (unsigned long long)d->written, (long long)d->size);
		retry = 1;
	} else if (cc == CURLE_OK && code == 416 && d->size >= 0 && d->written == (uint64_t)d->size) {
		finish(d, SHL_DL_DONE, 0, NULL);
		return;
	} else if (cc == CURLE_OK && code == 416) {
		/* our partial file is not a prefix the registry agrees with: start over */
		if (ftruncate(d->fd, 0) == 0) {
			d->written = 0;
			d->roff = 0;
		}
		snprintf(why, sizeof(why), "blob %s: range not satisfiable, starting over", d->digest);
		retry = 1;
	} else if (cc == CURLE_OK && code == 401 && d->refreshed == 0) {
		d->refreshed = 1;
		d->state = SHL_DL_QUEUED;
		d->next_try = 0;
		return;
	} else if (cc == CURLE_OK) {
		shl_http_error_text(code, d->errbody, d->errlen, http, sizeof(http));
		snprintf(why, sizeof(why), "blob %s: %s", d->digest, http);
		retry = code >= 500 || code == 429 || code == 408;
	} else if (cc == CURLE_WRITE_ERROR && d->curl_err[0] && !strncmp(d->curl_err, "writing ", 8)) {
		finish(d, SHL_DL_FAILED, SHL_EIO, d->curl_err);
		return;
	} else {
		snprintf(why, sizeof(why), "blob %s: %s", d->digest, d->curl_err[0] ? d->curl_err : curl_easy_strerror(cc));
		retry = cc != CURLE_SSL_CACERT && cc != CURLE_PEER_FAILED_VERIFICATION && cc != CURLE_TOO_MANY_REDIRECTS &&
			cc != CURLE_UNSUPPORTED_PROTOCOL;
	}
	if (d->written > d->resp_start_written)
		d->attempts = 0; /* it made progress: the budget is per stall, not per blob */
	if (retry && d->attempts < q->r->o->retries && !canceled(q)) {
		double wait = code == 429 || code == 503 ? (double)shl_http_retry_after(d->h.retry_after, 0) : 0;
		if (wait <= 0)
			wait = shl_reg_backoff(d->attempts);
		d->attempts++;
		d->state = SHL_DL_QUEUED;
		d->next_try = shl_clock_now() + wait;
		note(q, why, d->written != 0);
		return;
	}
	finish(d, SHL_DL_FAILED, retry ? SHL_ENET : (code == 401 || code == 403 ? SHL_EAUTH : SHL_ENET), why);
}

static void *engine(void *arg)
{
	struct shl_dlq *q = arg;
	int maxc = q->r->o->max_connections > 0 ? q->r->o->max_connections : 4;

	pthread_mutex_lock(&q->mu);
	for (;;) {
		double now = shl_clock_now(), soonest = 1e18;
		int pending = 0, running;
		if (canceled(q)) {
			for (struct shl_dl *d = q->list; d; d = d->next) {
				if (d->state == SHL_DL_ACTIVE) {
					end_easy(q, d);
					q->active--;
				}
				if (d->state == SHL_DL_ACTIVE || d->state == SHL_DL_QUEUED)
					finish(d, SHL_DL_FAILED, SHL_ECANCELED, "interrupted");
			}
			if (q->stopping)
				break;
		}
		for (struct shl_dl *d = q->list; d; d = d->next) {
			if (d->state != SHL_DL_QUEUED)
				continue;
			pending = 1;
			if (d->next_try > now) {
				if (d->next_try < soonest)
					soonest = d->next_try;
				continue;
			}
			if (q->active >= maxc)
				continue;
			int rc = begin(q, d);
			if (rc) {
				end_easy(q, d);
				finish(d, SHL_DL_FAILED, rc, shl_error_last());
				continue;
			}
			d->state = SHL_DL_ACTIVE;
			q->active++;
		}
		if (!q->active && !pending && q->stopping)
			break;
		pthread_mutex_unlock(&q->mu);
		curl_multi_perform(q->multi, &running);
		pthread_mutex_lock(&q->mu);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(q->multi, &left))) {
			struct shl_dl *d = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&d);
			if (d)
				ended(q, d, m->data.result);
		}
		int timeout = 200;
		if (soonest < 1e17) {
			double ms = (soonest - shl_clock_now()) * 1000;
			if (ms < timeout)
				timeout = ms < 1 ? 1 : (int)ms;
		}
		pthread_mutex_unlock(&q->mu);
		curl_multi_poll(q->multi, NULL, 0, timeout, NULL);
		pthread_mutex_lock(&q->mu);
	}
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

/* ---- API ---------------------------------------------------------------------------- */

int shl_dlq_start(struct shl_dlq **out, struct shl_reg *r, const char *repo, const char *scope)
{
	struct shl_dlq *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (!q || !(q->multi = curl_multi_init())) {
		free(q);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	q->r = r;
	snprintf(q->repo, sizeof(q->repo), "%s", repo);
	snprintf(q->scope, sizeof(q->scope), "%s", scope);
	curl_multi_setopt(q->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			  (long)(r->o->max_connections > 0 ? r->o->max_connections : 4));
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	if (pthread_create(&q->th, NULL, engine, q)) {
		curl_multi_cleanup(q->multi);
		free(q);
		return shl_err(SHL_ENOMEM, "cannot start the download thread");
	}
	q->started = 1;
	*out = q;
	return 0;
}

void shl_dlq_cancel(struct shl_dlq *q)
{
	pthread_mutex_lock(&q->mu);
	q->stopping = 1;
	pthread_mutex_unlock(&q->mu);
	curl_multi_wakeup(q->multi);
}

void shl_dlq_stop(struct shl_dlq *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = 1;
	pthread_mutex_unlock(&q->mu);
	curl_multi_wakeup(q->multi);
	if (q->started)
		pthread_join(q->th, NULL);
	while (q->list) {
		struct shl_dl *d = q->list;
		q->list = d->next;
		end_easy(q, d);
		if (d->fd >= 0)
			close(d->fd);
		if (d->rfd >= 0)
			close(d->rfd);
		if (d->private_file)
			unlink(d->path);
		free(d);
	}
	curl_multi_cleanup(q->multi);
	pthread_cond_destroy(&q->cv);
	pthread_mutex_destroy(&q->mu);
	free(q);
}

static int open_partial(struct shl_dl *d, const char *path)
{
	struct stat st;

	snprintf(d->path, sizeof(d->path), "%s", path);
	d->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (d->fd >= 0 && flock(d->fd, LOCK_EX | LOCK_NB) != 0) {
		/* another pull appends to it: download our own copy */
		close(d->fd);
		snprintf(d->path, sizeof(d->path), "%s.%d", path, (int)getpid());
		d->private_file = 1;
		d->fd = open(d->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	}
	if (d->fd < 0)
		return shl_err_sys(SHL_EIO, "cannot create %s", d->path);
	if (fstat(d->fd, &st))
		return shl_err_sys(SHL_EIO, "stat %s", d->path);
	if (d->size >= 0 && st.st_size > d->size) {
		if (ftruncate(d->fd, 0))
			return shl_err_sys(SHL_EIO, "truncate %s", d->path);
		st.st_size = 0;
	}
	d->written = (uint64_t)st.st_size;
	d->resumed = st.st_size > 0;
	if ((d->rfd = open(d->path, O_RDONLY | O_CLOEXEC)) < 0)
		return shl_err_sys(SHL_EIO, "open %s", d->path);
	return 0;
}

int shl_dlq_add(struct shl_dlq *q, const char *digest, int64_t size, const char *path, struct shl_dl **out)
{
	struct shl_dl *d = calloc(1, sizeof(*d));
	int rc;

	*out = NULL;
	if (!d)
		return shl_err(SHL_ENOMEM, "out of memory");
	d->q = q;
	d->fd = d->rfd = -1;
	d->size = size;
	snprintf(d->digest, sizeof(d->digest), "%s", digest);
	if ((rc = open_partial(d, path))) {
		if (d->fd >= 0)
			close(d->fd);
		free(d);
		return rc;
	}
	pthread_mutex_lock(&q->mu);
	d->state = d->size >= 0 && d->written == (uint64_t)d->size ? SHL_DL_DONE : SHL_DL_QUEUED;
	d->next = q->list;
	q->list = d;
	pthread_mutex_unlock(&q->mu);
	curl_multi_wakeup(q->multi);
	*out = d;
	return 0;
}

ssize_t shl_dl_read(void *arg, void *buf, size_t len)
{
	struct shl_dl *d = arg;
	struct shl_dlq *q = d->q;
	uint64_t avail;
	ssize_t n;

	pthread_mutex_lock(&q->mu);
	while (d->written <= d->roff && d->state != SHL_DL_DONE && d->state != SHL_DL_FAILED)
		pthread_cond_wait(&q->cv, &q->mu);
	avail = d->written > d->roff ? d->written - d->roff : 0;
	if (!avail) {
		int st = d->state, err = d->err;
		char msg[512];
		snprintf(msg, sizeof(msg), "%s", d->msg);
		pthread_mutex_unlock(&q->mu);
		if (st == SHL_DL_FAILED)
			return shl_err(err ? err : SHL_ENET, "%s", msg);
		return 0;
	}
	pthread_mutex_unlock(&q->mu);
	if (len > avail)
		len = (size_t)avail;
	do
		n = pread(d->rfd, buf, len, (off_t)d->roff);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return shl_err_sys(SHL_EIO, "read %s", d->path);
	if (n == 0)
		return shl_err(SHL_EIO, "%s shrank while reading it", d->path);
	d->roff += (uint64_t)n;
	return n;
}

int shl_dl_restart(struct shl_dl *d)
{
	struct shl_dlq *q = d->q;
	int rc = 0;

	pthread_mutex_lock(&q->mu);
	if (d->state == SHL_DL_QUEUED || d->state == SHL_DL_ACTIVE) {
		rc = shl_err(SHL_EBUSY, "blob %s: still downloading", d->digest);
	} else if (ftruncate(d->fd, 0)) {
		rc = shl_err_sys(SHL_EIO, "truncate %s", d->path);
	} else {
		d->written = d->roff = 0;
		d->resumed = 0;
		d->attempts = 0;
		d->err = 0;
		d->msg[0] = '\0';
		d->state = SHL_DL_QUEUED;
		d->next_try = 0;
	}
	pthread_mutex_unlock(&q->mu);
	curl_multi_wakeup(q->multi);
	return rc;
}

int shl_dl_wait(struct shl_dl *d)
{
	struct shl_dlq *q = d->q;
	int rc = 0;

	pthread_mutex_lock(&q->mu);
	while (d->state != SHL_DL_DONE && d->state != SHL_DL_FAILED)
		pthread_cond_wait(&q->cv, &q->mu);
	if (d->state == SHL_DL_FAILED)
		rc = shl_err(d->err ? d->err : SHL_ENET, "%s", d->msg);
	pthread_mutex_unlock(&q->mu);
	return rc;
}

void shl_dl_status(struct shl_dl *d, int *state, uint64_t *written, int *resumed)
{
	pthread_mutex_lock(&d->q->mu);
	*state = d->state;
	*written = d->written;
	if (resumed)
		*resumed = d->resumed;
	pthread_mutex_unlock(&d->q->mu);
}

const char *shl_dl_path(struct shl_dl *d)
{
	return d->path;
}

void shl_dl_discard(struct shl_dl *d)
{
	unlink(d->path);
}
