/*
 * fetch/pull_layers.c - the layers of one pulled image: every blob the
 * store lacks is downloaded (fetch/blobs.c, all of them at once up to the
 * connection limit) and converted while it arrives by SHL_PULL_CONVERTERS
 * worker threads into staged temp files, each under its per-layer lock. A
 * layer is accepted only if its bytes hash to the blob digest and its tar to
 * the config's diff_id. The calling thread reports progress.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fetch/pull_int.h"
#include "util/err.h"
#include "util/hash.h"

static int known_now(struct pull_img *p, struct pull_layer *L)
{
	char diff[72];

	if (shl_store__has_layer(p->s, L->diff_id))
		return 1;
	if (shl_store__alias(p->s, L->digest, diff) == 0 && !strcmp(diff, L->diff_id))
		return 1;
	shl_error_clear();
	return 0;
}

/* sha256 of a downloaded blob file */
static int blob_digest(const char *path, char out[72])
{
	uint8_t buf[1 << 16], sha[32];
	shl_sha256 *h = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	ssize_t n;

	if (fd < 0)
		return shl_err_sys(SHL_EIO, "open %s", path);
	if ((rc = shl_sha256_new(&h))) {
		close(fd);
		return rc;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		shl_sha256_update(h, buf, (size_t)n);
	if (n < 0)
		rc = shl_err_sys(SHL_EIO, "read %s", path);
	shl_sha256_final(h, sha);
	shl_sha256_free(h);
	close(fd);
	shl_digest_str(sha, out);
	return rc;
}

static int convert_one(struct pull_img *p, struct pull_layer *L)
{
	shl_layer_lock *lk = NULL;
	int rc, resumed = 0, state;
	uint64_t written;

	if ((rc = shl_store__layer_lock(p->s, L->digest, &lk)))
		return rc;
	if (known_now(p, L)) {
		/* another process stored it while we waited for the lock */
		L->known = 2;
		shl_store__layer_unlock(lk);
		return 0;
	}
	for (int attempt = 0;; attempt++) {
		rc = shl_store__stage(p->s, shl_dl_read, L->dl, &L->staged);
		if (!rc && strcmp(L->staged.info.raw_digest, L->digest) && strcmp(L->staged.info.diff_id, L->digest))
			rc = shl_err(SHL_EDIGEST, "blob %s: the registry sent bytes with digest %s", L->digest,
				     L->staged.info.raw_digest);
		if (!rc && strcmp(L->staged.info.diff_id, L->diff_id))
			rc = shl_err(SHL_EDIGEST, "layer %s: its tar has diff_id %s, the config says %s", L->digest,
				     L->staged.info.diff_id, L->diff_id);
		if (!rc)
			break;
		shl_store__unstage(&L->staged);
		L->staged.lock = NULL;
		char why[600];
		int why_rc = rc;
		snprintf(why, sizeof(why), "%s", shl_error_last());
		/* a failed download explains a failed conversion best */
		if ((rc = shl_dl_wait(L->dl)))
			break;
		shl_dl_status(L->dl, &state, &written, &resumed);
		if (resumed && attempt == 0 && shl_dl_restart(L->dl) == 0)
			continue; /* bytes from an earlier run may be bad: once more from scratch */
		/* bad bytes or a bad layer? hash the blob before blaming its content */
		char got[72];
		if (why_rc != SHL_EDIGEST && blob_digest(shl_dl_path(L->dl), got) == 0 && strcmp(got, L->digest))
			rc = shl_err(SHL_EDIGEST, "blob %s: the registry sent bytes with digest %s", L->digest, got);
		else if (!strstr(why, L->digest))
			rc = shl_err(why_rc, "layer %s: %s", L->digest, why);
		else
			rc = shl_err(why_rc, "%s", why);
		shl_dl_discard(L->dl);
		break;
	}
	if (rc) {
		shl_store__layer_unlock(lk);
		return rc;
	}
	L->staged.lock = lk;
	L->tar_size = (int64_t)L->staged.info.tar_size;
	L->staged_ok = 1;
	return 0;
}

static void *worker(void *arg)
{
	struct pull_img *p = arg;

	for (;;) {
		struct pull_layer *L = NULL;
		pthread_mutex_lock(&p->mu);
		/* largest first: two workers end at about the same time */
		for (size_t i = 0; !p->failed && i < p->nlayers; i++) {
			struct pull_layer *c = &p->layers[i];
			if (!c->known && !c->dup && !c->taken && (!L || c->size > L->size))
				L = c;
		}
		if (L)
			L->taken = 1;
		pthread_mutex_unlock(&p->mu);
		if (!L)
			break;
		int rc = convert_one(p, L);
		pthread_mutex_lock(&p->mu);
		L->rc = rc;
		if (rc) {
			snprintf(L->msg, sizeof(L->msg), "%s", shl_error_last());
			if (!p->failed) {
				p->first_rc = rc;
				snprintf(p->first_msg, sizeof(p->first_msg), "%s", L->msg);
			}
			p->failed = 1;
		}
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
	pthread_mutex_lock(&p->mu);
	p->running--;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void emit(struct pull_img *p, int kind, const char *digest, const char *text, uint64_t cur, uint64_t total)
{
	shl_reg_event ev = { kind, digest, text, cur, total };

	if (p->fn)
		p->fn(p->ctx, &ev);
}

/* Report what changed since the last call (calling thread). */
static void report(struct pull_img *p, struct shl_dlq *q, int final)
{
	char note[300];

	while (q && shl_dlq_take_note(q, note, sizeof(note)))
		emit(p, SHL_REG_RETRY, NULL, note, 0, 0);
	for (size_t i = 0; i < p->nlayers; i++) {
		struct pull_layer *L = &p->layers[i];
		int state = SHL_DL_QUEUED, rep;
		uint64_t written = 0;
		if (L->dup || !L->dl)
			continue;
		shl_dl_status(L->dl, &state, &written, NULL);
		pthread_mutex_lock(&p->mu);
		int ok = L->staged_ok, known = L->known, rc = L->rc;
		pthread_mutex_unlock(&p->mu);
		if (known == 2)
			rep = 5;
		else if (ok)
			rep = 4;
		else if (rc)
			rep = 6;
		else if (state == SHL_DL_DONE)
			rep = 3;
		else if (state == SHL_DL_ACTIVE || written)
			rep = 2;
		else
			rep = 1;
		if (rep == 2)
			emit(p, SHL_REG_PROGRESS, L->digest, "Downloading", written, (uint64_t)L->size);
		if (rep == L->reported)
			continue;
		L->reported = rep;
		static const char *const text[] = { "", "Waiting", "Downloading", "Download complete",
						    "Pull complete", "Already exists", "Failed" };
		if (rep != 2 && (rep != 6 || final))
			emit(p, SHL_REG_LAYER, L->digest, text[rep], written, (uint64_t)L->size);
	}
}

int shl_pull__layers(struct pull_img *p)
{
	struct shl_dlq *q = NULL;
	pthread_t th[SHL_PULL_CONVERTERS];
	int nth = 0, rc = 0, jobs = 0;
	char dir[4200];

	for (size_t i = 0; i < p->nlayers; i++) {
		struct pull_layer *L = &p->layers[i];
		for (size_t k = 0; k < i; k++)
			if (!strcmp(p->layers[k].digest, L->digest))
				L->dup = 1;
		if (!L->dup && known_now(p, L))
			L->known = 1;
		if (L->known || L->dup) {
			if (L->known)
				emit(p, SHL_REG_LAYER, L->digest, "Already exists", 0, (uint64_t)L->size);
			continue;
		}
		jobs++;
	}
	if (!jobs)
		return 0;
	snprintf(dir, sizeof(dir), "%s/downloads", shl_store_root(p->s));
	if (mkdir(dir, 0700) && errno != EEXIST)
		return shl_err_sys(SHL_EIO, "mkdir %s", dir);
	if ((rc = shl_dlq_start(&q, p->reg, p->repo, p->scope)))
		return rc;
	for (size_t i = 0; i < p->nlayers && !rc; i++) {
		struct pull_layer *L = &p->layers[i];
		if (L->known || L->dup)
			continue;
		snprintf(L->partial, sizeof(L->partial), "%.4000s/%.64s", dir, L->digest + 7);
		rc = shl_dlq_add(q, L->digest, L->size, L->partial, &L->dl);
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	if (!rc) {
		for (; nth < SHL_PULL_CONVERTERS && nth < jobs; nth++) {
			p->running++;
			if (pthread_create(&th[nth], NULL, worker, p)) {
				p->running--;
				break;
			}
		}
		if (!nth)
			rc = shl_err(SHL_ENOMEM, "cannot start a conversion thread");
	}
	int stopped = 0;
	pthread_mutex_lock(&p->mu);
	while (p->running > 0) {
		if (p->failed && !stopped) {
			stopped = 1; /* the pull fails: stop the other downloads */
			shl_dlq_cancel(q);
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cv, &p->mu, &ts);
		pthread_mutex_unlock(&p->mu);
		report(p, q, 0);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	report(p, q, 1);
	if (!rc && p->failed)
		rc = shl_err(p->first_rc, "%s", p->first_msg);
	if (!rc && p->o->reg.cancel && *p->o->reg.cancel)
		rc = shl_err(SHL_ECANCELED, "interrupted");
	shl_dlq_stop(q);
	for (size_t i = 0; i < p->nlayers; i++)
		p->layers[i].dl = NULL;
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	return rc;
}

void shl_pull__discard(struct pull_img *p)
{
	for (size_t i = 0; i < p->nlayers; i++)
		if (p->layers[i].partial[0])
			unlink(p->layers[i].partial);
}
