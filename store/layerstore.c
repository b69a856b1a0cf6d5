/*
 * store/layerstore.c - layers in the store: staging a layer stream into temp
 * files (converted by shl_layer_convert, fsync'd, verified), the per-layer
 * lock that keeps two processes from converting the same layer at once, and
 * the layer/alias/blob/image record getters.
 *
 * Staged files live in this process's staging dir (tmp/<pid>-XXXXXX); the
 * batch (store/batch.c) renames them into layers/ and records them in one
 * transaction. Nothing here writes the index.
 *
 * Per-layer lock: tmp/<hex>.lock, keyed by the digest the caller expects (the
 * blob digest or the diff_id). It is a POSIX record lock (fcntl F_SETLKW) so
 * that the kernel detects deadlocks: the holder keeps it until its batch is
 * committed or dropped (shl_store__unstage), so a process waiting for it can
 * find the layer in the index afterwards; two loads locking two layers in
 * opposite orders would otherwise wait for each other forever. On EDEADLK the
 * waiter goes on without the lock and converts the layer itself (wasted work,
 * never wrong: same content, same files). POSIX locks belong to the process,
 * so a registry of held lock files keeps threads of one process from sharing
 * (or, by closing a second fd, silently dropping) a lock; a thread asking for
 * a key its own process holds goes on without waiting. Released lock files are
 * unlinked while still locked; a waiter that then wins the lock on the
 * unlinked inode notices (inode check) and locks the new file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

/* ---- per-layer locks ------------------------------------------------------ */

struct shl_layer_lock {
	char path[4200];
	int fd;                        /* -1 while being acquired */
	unsigned gen;                  /* locks_gen when acquired */
	struct shl_layer_lock *next;
};

static pthread_mutex_t locks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shl_layer_lock *locks_held;
static unsigned locks_gen;
static pthread_once_t locks_once = PTHREAD_ONCE_INIT;

/* A forked child holds none of its parent's record locks: it forgets them
 * (a new generation). Handles it inherited stay valid; releasing one in the
 * child only closes its fd (that drops nothing: the parent owns the lock). */
static void locks_atfork_child(void)
{
	locks_held = NULL;
	locks_gen++;
	pthread_mutex_unlock(&locks_mu); /* taken in prepare */
}

static void locks_atfork_prepare(void)
{
	pthread_mutex_lock(&locks_mu);
}

static void locks_atfork_parent(void)
{
	pthread_mutex_unlock(&locks_mu);
}

static void locks_init(void)
{
	pthread_atfork(locks_atfork_prepare, locks_atfork_parent, locks_atfork_child);
}

static struct shl_layer_lock *registry_find(const char *path)
{
	for (struct shl_layer_lock *l = locks_held; l; l = l->next)
		if (!strcmp(l->path, path))
			return l;
	return NULL;
}

static void registry_remove(struct shl_layer_lock *lk)
{
	for (struct shl_layer_lock **p = &locks_held; *p; p = &(*p)->next) {
		if (*p == lk) {
			*p = lk->next;
			return;
		}
	}
}

static int setlk(int fd, int type, int wait)
{
	struct flock fl = { .l_type = (short)type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	int rc;

	do
		rc = fcntl(fd, wait ? F_SETLKW : F_SETLK, &fl);
	while (rc != 0 && errno == EINTR);
	return rc;
}

int shl_store__layer_lock(shl_store *s, const char *key, shl_layer_lock **out)
{
	struct shl_layer_lock *lk;
	uint8_t bin[32];
	int rc = 0;

	*out = NULL;
	if (shl_digest_parse(key, bin) != 0)
		return shl_err(SHL_EINVAL, "layer lock: bad digest '%s'", key);
	pthread_once(&locks_once, locks_init);
	lk = calloc(1, sizeof(*lk));
	if (!lk)
		return shl_err(SHL_ENOMEM, "out of memory");
	lk->fd = -1;
	snprintf(lk->path, sizeof(lk->path), "%s/tmp/%s.lock", s->root, key + 7);
	pthread_mutex_lock(&locks_mu);
	lk->gen = locks_gen;
	if (registry_find(lk->path)) {
		/* this process holds it (or is acquiring it): go on without */
		pthread_mutex_unlock(&locks_mu);
		free(lk);
		return 0;
	}
	lk->next = locks_held;
	locks_held = lk;
	pthread_mutex_unlock(&locks_mu);

	for (;;) {
		struct stat a, b;
		int fd = open(lk->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = shl_err_sys(SHL_EIO, "open %s", lk->path);
			break;
		}
		if (setlk(fd, F_WRLCK, 1) != 0) {
			int e = errno;
			close(fd);
			if (e != EDEADLK) {
				errno = e;
				rc = shl_err_sys(SHL_EIO, "lock %s", lk->path);
			}
			break; /* deadlock: go on without the lock */
		}
		/* the holder may have unlinked the file before we got it */
		if (fstat(fd, &a) == 0 && stat(lk->path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
			lk->fd = fd;
			*out = lk;
			return 0;
		}
		close(fd);
	}
	pthread_mutex_lock(&locks_mu);
	registry_remove(lk);
	pthread_mutex_unlock(&locks_mu);
	free(lk);
	return rc;
}

void shl_store__layer_unlock(shl_layer_lock *lk)
{
	int mine;

	if (!lk)
		return;
	pthread_mutex_lock(&locks_mu);
	mine = lk->gen == locks_gen;
	if (mine)
		registry_remove(lk);
	pthread_mutex_unlock(&locks_mu);
	if (mine)
		unlink(lk->path); /* while still locked: see the file comment */
	close(lk->fd);
	free(lk);
}

int shl_store__clean_layer_lock(const char *path)
{
	int fd, removed = 0;

	pthread_once(&locks_once, locks_init);
	pthread_mutex_lock(&locks_mu);
	if (!registry_find(path) && (fd = open(path, O_RDWR | O_CLOEXEC)) >= 0) {
		/* a lock nobody holds is stale; this process holds none on it, so
		 * taking and dropping it here releases nothing of anyone's */
		if (setlk(fd, F_WRLCK, 0) == 0 && unlink(path) == 0)
			removed = 1;
		close(fd);
	}
	pthread_mutex_unlock(&locks_mu);
	return removed;
}

/* ---- staging ---------------------------------------------------------------- */

static int stage(shl_store *s, shl_layer_read_fn fn, void *ctx, shl_staged *st)
{
	shl_layer_opts o = SHL_LAYER_OPTS_INIT;
	int tfd = -1, efd = -1, rc;

	snprintf(st->tar_tmp, sizeof(st->tar_tmp), "%s/layer-XXXXXX", s->tmp_dir);
	snprintf(st->erofs_tmp, sizeof(st->erofs_tmp), "%s/erofs-XXXXXX", s->tmp_dir);
	tfd = mkstemp(st->tar_tmp);
	if (tfd < 0) {
		st->tar_tmp[0] = '\0';
		st->erofs_tmp[0] = '\0';
		return shl_err_sys(SHL_EIO, "create temp file in %s", s->tmp_dir);
	}
	efd = mkstemp(st->erofs_tmp);
	if (efd < 0) {
		st->erofs_tmp[0] = '\0';
		rc = shl_err_sys(SHL_EIO, "create temp file in %s", s->tmp_dir);
		goto out;
	}
	o.tar_fd = tfd;
	o.erofs_fd = efd;
	if ((rc = shl_layer_convert(fn, ctx, &o, &st->info)))
		goto out;
	if (fsync(tfd) != 0 || fsync(efd) != 0) {
		rc = shl_err_sys(SHL_EIO, "fsync staged layer");
		goto out;
	}
	if (fchmod(tfd, 0644) != 0 || fchmod(efd, 0644) != 0)
		rc = shl_err_sys(SHL_EIO, "chmod staged layer");
	shl_store__fault("staged");
out:
	if (tfd >= 0)
		close(tfd);
	if (efd >= 0)
		close(efd);
	return rc;
}

int shl_store__stage(shl_store *s, shl_layer_read_fn fn, void *ctx, shl_staged *st)
{
	char known[72];

	return shl_store__stage_key(s, NULL, fn, ctx, st, known);
}

int shl_store__stage_key(shl_store *s, const char *key, shl_layer_read_fn fn, void *ctx, shl_staged *st,
			 char known[72])
{
	shl_layer_lock *lk = NULL;
	int rc;

	memset(st, 0, sizeof(*st));
	known[0] = '\0';
	if (key) {
		if ((rc = shl_store__layer_lock(s, key, &lk)))
			return rc;
		/* stored already (maybe by the process we waited for) */
		if (shl_store__has_layer(s, key))
			snprintf(known, 72, "%s", key);
		else if (shl_store__alias(s, key, known) != 0)
			known[0] = '\0';
		if (known[0]) {
			shl_store__layer_unlock(lk);
			return 0;
		}
	}
	st->lock = lk;
	if ((rc = stage(s, fn, ctx, st)))
		goto fail;
	if (key && strcmp(key, st->info.raw_digest) && strcmp(key, st->info.diff_id)) {
		rc = shl_err(SHL_EDIGEST, "layer %s: content has digest %s (diff_id %s)", key, st->info.raw_digest,
			     st->info.diff_id);
		goto fail;
	}
	return 0;
fail:
	shl_store__unstage(st);
	return rc;
}

void shl_store__unstage(shl_staged *st)
{
	if (!st->published) {
		if (st->tar_tmp[0])
			unlink(st->tar_tmp);
		if (st->erofs_tmp[0])
			unlink(st->erofs_tmp);
		st->tar_tmp[0] = st->erofs_tmp[0] = '\0';
	}
	shl_store__layer_unlock(st->lock);
	st->lock = NULL;
}

/* ---- queries ---------------------------------------------------------------- */

int shl_store__has_layer(shl_store *s, const char *diff_id)
{
	char *v = NULL;
	int rc = shl_index_get(s->ix, SHL_DB_LAYERS, diff_id, &v, NULL);

	free(v);
	return rc == 0;
}

int shl_store__alias(shl_store *s, const char *blob_digest, char diff_id[72])
{
	char *v = NULL;
	size_t n;
	shl_json *j = NULL;
	const char *d;
	int rc = shl_index_get(s->ix, SHL_DB_ALIASES, blob_digest, &v, &n);

	if (rc)
		return rc;
	if ((rc = shl_json_parse(&j, v, n, 1 << 20, "alias record")) == 0) {
		d = shl_json_get_str(j, "diff_id");
		if (d && strlen(d) < 72)
			snprintf(diff_id, 72, "%s", d);
		else
			rc = shl_err(SHL_EFORMAT, "alias %s: corrupt record", blob_digest);
	}
	shl_json_put(j);
	free(v);
	return rc;
}

struct find_alias {
	const char *diff_id, *media;
	char *blob;
	int64_t *size;
	int found;
};

static int find_alias_one(void *ctx, const char *key, size_t klen, const char *val, size_t vlen)
{
	struct find_alias *f = ctx;
	shl_json *j = NULL;
	const char *d, *m;

	if (klen >= 72 || shl_json_parse(&j, val, vlen, 4096, "alias record") != 0) {
		shl_error_clear(); /* a bad record is fsck's business */
		return 0;
	}
	d = shl_json_get_str(j, "diff_id");
	m = shl_json_get_str(j, "media_type");
	if (d && m && !strcmp(d, f->diff_id) && !strcmp(m, f->media)) {
		memcpy(f->blob, key, klen);
		f->blob[klen] = '\0';
		shl_json_get_int(j, "size", f->size);
		f->found = 1;
	}
	shl_json_put(j);
	return f->found; /* non-zero stops the scan */
}

int shl_store__find_alias(shl_store *s, const char *diff_id, const char *media, char blob[72], int64_t *size)
{
	struct find_alias f = { diff_id, media, blob, size, 0 };
	int rc = shl_index_foreach(s->ix, SHL_DB_ALIASES, find_alias_one, &f);

	return rc < 0 ? rc : f.found;
}

int shl_store__get_blob(shl_store *s, const char *digest, char **data, size_t *len, char **media)
{
	char *v = NULL, *nl;
	size_t n;
	int rc = shl_index_get(s->ix, SHL_DB_BLOBS, digest, &v, &n);

	*data = NULL;
	if (media)
		*media = NULL;
	if (rc)
		return rc == SHL_ENOTFOUND ? shl_err(SHL_ENOTFOUND, "blob %s not in the store", digest) : rc;
	/* value: "<media type>\n<bytes>" */
	nl = memchr(v, '\n', n);
	if (!nl) {
		free(v);
		return shl_err(SHL_EFORMAT, "blob %s: corrupt record", digest);
	}
	*len = n - (size_t)(nl + 1 - v);
	*data = malloc(*len + 1);
	if (!*data) {
		free(v);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	memcpy(*data, nl + 1, *len);
	(*data)[*len] = '\0';
	if (media) {
		*nl = '\0';
		*media = strdup(v);
		if (!*media) {
			free(*data);
			*data = NULL;
			free(v);
			return shl_err(SHL_ENOMEM, "out of memory");
		}
	}
	free(v);
	return 0;
}

static int get_json(shl_store *s, int db, const char *key, shl_json **rec, const char *what)
{
	char *v = NULL;
	size_t n;
	int rc = shl_index_get(s->ix, db, key, &v, &n);

	*rec = NULL;
	if (rc)
		return rc == SHL_ENOTFOUND ? shl_err(SHL_ENOTFOUND, "%s %s not in the store", what, key) : rc;
	rc = shl_json_parse(rec, v, n, SHL_CONFIG_CAP, what);
	free(v);
	return rc;
}

int shl_store__get_image(shl_store *s, const char *manifest, shl_json **rec)
{
	return get_json(s, SHL_DB_IMAGES, manifest, rec, "image");
}

int shl_store__get_layer(shl_store *s, const char *diff_id, shl_json **rec)
{
	return get_json(s, SHL_DB_LAYERS, diff_id, rec, "layer");
}

int shl_store_layer_paths(shl_store *s, const char *diff_id, char *tar, size_t tar_len,
			  char *erofs, size_t erofs_len)
{
	if (strncmp(diff_id, "sha256:", 7) != 0 || strlen(diff_id) != 71)
		return shl_err(SHL_EINVAL, "bad diff_id %s", diff_id);
	if (tar)
		snprintf(tar, tar_len, "%s/%s.tar", s->layers_dir, diff_id + 7);
	if (erofs)
		snprintf(erofs, erofs_len, "%s/%s.erofs", s->layers_dir, diff_id + 7);
	return 0;
}

int shl_store_layer_has(shl_store *s, const char *diff_id)
{
	return shl_store__has_layer(s, diff_id);
}
