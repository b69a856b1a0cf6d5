/*
 * load/convert.c - convert the layers of a seekable input that images need
 * (ITEM_PENDING with `need` set by the planning pass), each worker reading
 * its entry's region of the archive file (or its file of an OCI layout) with
 * pread: independent layers convert in parallel. Largest first, so two
 * workers finish close together. Progress events are delivered on the
 * calling thread. Also: hashing an entry of a seekable input on demand.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "load/load_int.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hash.h"

struct region {
	int fd;
	uint64_t off, left;
	const char *name;
	const int *cancel;
	uint64_t *done;         /* bytes read, for progress (atomic), or NULL */
};

static ssize_t region_read(void *ctx, void *buf, size_t len)
{
	struct region *r = ctx;

	if (r->cancel && __atomic_load_n(r->cancel, __ATOMIC_RELAXED))
		return shl_err(SHL_ECANCELED, "canceled");
	if (r->left == 0)
		return 0;
	if (len > r->left)
		len = (size_t)r->left;
	for (;;) {
		ssize_t n = pread(r->fd, buf, len, (off_t)r->off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shl_err_sys(SHL_EIO, "read archive entry '%s'", r->name);
		if (n == 0)
			return shl_err(SHL_EFORMAT, "archive entry '%s': truncated", r->name);
		r->off += (uint64_t)n;
		r->left -= (uint64_t)n;
		if (r->done)
			__atomic_add_fetch(r->done, (uint64_t)n, __ATOMIC_RELAXED);
		return n;
	}
}

static int open_region(struct loader *L, const struct item *it, struct region *r)
{
	memset(r, 0, sizeof(*r));
	r->off = it->off;
	r->left = it->size;
	r->name = it->name;
	if (!it->path) {
		r->fd = L->fd;
		return 0;
	}
	r->fd = open(it->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	return r->fd < 0 ? shl_err_sys(SHL_EIO, "open %s", it->path) : 0;
}

static void close_region(const struct item *it, struct region *r)
{
	if (it->path && r->fd >= 0)
		close(r->fd);
}

int shl_load__hash_item(struct loader *L, struct item *it, char digest[72])
{
	struct region r;
	shl_sha256 *h = NULL;
	uint8_t *buf = NULL, d[32];
	ssize_t n;
	int rc;

	if (it->kind != ITEM_PENDING && it->kind != ITEM_OTHER)
		return shl_err(SHL_EINVAL, "archive entry '%s': not hashable", it->name);
	if ((rc = open_region(L, it, &r)))
		return rc;
	if (!(buf = malloc(1 << 16)) || shl_sha256_new(&h) != 0) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	while ((n = region_read(&r, buf, 1 << 16)) > 0)
		shl_sha256_update(h, buf, (size_t)n);
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	shl_sha256_final(h, d);
	shl_digest_str(d, digest);
out:
	shl_sha256_free(h);
	free(buf);
	close_region(it, &r);
	return rc;
}

/* ---- the worker pool ----------------------------------------------------- */

struct job {
	struct item *it;
	shl_staged st;
	char known[72];         /* stored meanwhile (by another process): its diff_id */
	int rc;
	char *msg;
	int started, done;
	int announced;
	uint64_t read;          /* bytes of the entry read so far (atomic) */
	int reported_end;
};

struct pool {
	struct loader *L;
	struct job **jobs;
	size_t n, next, finished;
	uint64_t events;        /* starts + finishes, to wake the announcer */
	int cancel;
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

static void run_job(struct pool *p, struct job *j)
{
	struct region r;
	int rc = open_region(p->L, j->it, &r);

	r.cancel = &p->cancel;
	r.done = &j->read;
	if (!rc) {
		/* keyed by the blob digest the name claims, else by the diff_id the
		 * config expects: a concurrent load of the same layer waits for
		 * this one (per-layer lock), the store verifies the digest */
		const char *key = j->it->claimed[0] ? j->it->claimed : j->it->want[0] ? j->it->want : NULL;
		posix_fadvise(r.fd, (off_t)r.off, (off_t)r.left, POSIX_FADV_SEQUENTIAL);
		rc = shl_store__stage_key(p->L->s, key, region_read, &r, &j->st, j->known);
		close_region(j->it, &r);
	}
	if (rc) {
		j->msg = strdup(shl_error_last());
		__atomic_store_n(&p->cancel, 1, __ATOMIC_RELAXED);
	}
	j->rc = rc;
}

static void *worker(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		struct job *j;
		pthread_mutex_lock(&p->mu);
		if (p->next >= p->n) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		j = p->jobs[p->next++];
		j->started = 1;
		p->events++;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		if (__atomic_load_n(&p->cancel, __ATOMIC_RELAXED))
			j->rc = SHL_ECANCELED;
		else
			run_job(p, j);
		pthread_mutex_lock(&p->mu);
		j->done = 1;
		p->finished++;
		p->events++;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

static int by_size_desc(const void *a, const void *b)
{
	const struct job *x = *(struct job *const *)a, *y = *(struct job *const *)b;

	return x->it->size < y->it->size ? 1 : x->it->size > y->it->size ? -1 : 0;
}

/* Emit "Loading layer" for jobs that started and the progress of those
 * running or just done, on this thread. */
static void announce(struct pool *p)
{
	const shl_load_opts *o = p->L->o;

	for (size_t i = 0; i < p->n; i++) {
		struct job *j = p->jobs[i];
		int now, running, end;
		pthread_mutex_lock(&p->mu);
		now = j->started && !j->announced;
		j->announced |= now;
		running = j->started && !j->done;
		end = j->done && !j->reported_end && !j->rc;
		j->reported_end |= end;
		pthread_mutex_unlock(&p->mu);
		if (now && p->L->fn)
			p->L->fn(p->L->ctx, "Loading layer", j->it->name);
		if (o->progress && (running || end))
			o->progress(p->L->ctx, j->it->name, end ? j->it->size : __atomic_load_n(&j->read, __ATOMIC_RELAXED),
				    j->it->size);
	}
}

/* The results, in the order the jobs were sorted; the first real failure
 * wins over cancellations it caused. */
static int collect(struct pool *p)
{
	int rc = 0;

	for (size_t i = 0; i < p->n; i++) {
		struct job *j = p->jobs[i];
		struct item *it = j->it;
		if (j->rc) {
			if (!rc && j->rc != SHL_ECANCELED)
				rc = shl_err(j->rc, "archive entry '%s': %s", it->name, j->msg ? j->msg : "failed");
			continue;
		}
		if (j->known[0]) {
			it->kind = ITEM_KNOWN;
			snprintf(it->diff_id, sizeof(it->diff_id), "%s", j->known);
			continue;
		}
		it->kind = ITEM_LAYER;
		it->staged = j->st;
		snprintf(it->digest, sizeof(it->digest), "%s", j->st.info.raw_digest);
		snprintf(it->diff_id, sizeof(it->diff_id), "%s", j->st.info.diff_id);
		it->compression = j->st.info.compression;
		it->raw_size = j->st.info.raw_size;
		if (!rc && it->claimed[0] && strcmp(it->claimed, it->digest))
			rc = shl_err(SHL_EDIGEST, "blob %s: content has digest %s", it->claimed, it->digest);
		if (shl_store__has_layer(p->L->s, it->diff_id)) {
			shl_store__unstage(&it->staged);
			it->existed = 1;
		}
	}
	if (!rc)
		shl_error_clear();
	return rc;
}

int shl_load__convert_needed(struct loader *L)
{
	struct pool p;
	struct job *jobs = NULL;
	pthread_t thr[SHL_LOAD_THREADS];
	size_t nthr = 0, want;
	int rc = 0;

	memset(&p, 0, sizeof(p));
	p.L = L;
	for (size_t i = 0; i < L->nitems; i++)
		p.n += L->items[i].kind == ITEM_PENDING && L->items[i].need;
	if (!p.n)
		return 0;
	jobs = calloc(p.n, sizeof(*jobs));
	p.jobs = calloc(p.n, sizeof(*p.jobs));
	if (!jobs || !p.jobs) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0, k = 0; i < L->nitems; i++) {
		if (L->items[i].kind == ITEM_PENDING && L->items[i].need) {
			jobs[k].it = &L->items[i];
			jobs[k].rc = SHL_ECANCELED; /* until it runs */
			p.jobs[k] = &jobs[k];
			k++;
		}
	}
	qsort(p.jobs, p.n, sizeof(*p.jobs), by_size_desc);
	want = L->o->threads > 0 ? (size_t)L->o->threads : SHL_LOAD_THREADS;
	if (want > SHL_LOAD_THREADS)
		want = SHL_LOAD_THREADS;
	if (want > p.n)
		want = p.n;
	if (want <= 1) {
		/* one at a time, on this thread */
		for (size_t i = 0; i < p.n; i++) {
			if (L->fn)
				L->fn(L->ctx, "Loading layer", p.jobs[i]->it->name);
			run_job(&p, p.jobs[i]);
			if (p.jobs[i]->rc)
				break;
			if (L->o->progress)
				L->o->progress(L->ctx, p.jobs[i]->it->name, p.jobs[i]->it->size, p.jobs[i]->it->size);
		}
		rc = collect(&p);
		goto out;
	}
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	for (; nthr < want; nthr++)
		if (pthread_create(&thr[nthr], NULL, worker, &p) != 0)
			break;
	if (!nthr) {
		rc = shl_err(SHL_ENOMEM, "cannot start a conversion thread");
	} else {
		uint64_t seen = 0;
		pthread_mutex_lock(&p.mu);
		while (p.finished < p.n) {
			/* woken by starts and finishes; with progress wanted, also
			 * five times a second */
			while (p.events == seen) {
				if (!L->o->progress) {
					pthread_cond_wait(&p.cv, &p.mu);
					continue;
				}
				struct timespec dl;
				shl_clock_deadline(&dl, 200);
				if (pthread_cond_timedwait(&p.cv, &p.mu, &dl) == ETIMEDOUT)
					break;
			}
			seen = p.events;
			pthread_mutex_unlock(&p.mu);
			announce(&p);
			pthread_mutex_lock(&p.mu);
		}
		pthread_mutex_unlock(&p.mu);
		announce(&p); /* the last one's end */
	}
	for (size_t i = 0; i < nthr; i++)
		pthread_join(thr[i], NULL);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	if (!rc)
		rc = collect(&p);
out:
	for (size_t i = 0; jobs && i < p.n; i++)
		free(jobs[i].msg);
	free(jobs);
	free(p.jobs);
	return rc;
}
