/*
 * store/index.c - LMDB behind store/index.h, the only file that sees
 * <lmdb.h>. LMDB errors become SHL_E* codes with a message.
 *
 * Map size: starts at shl_index__initial_mapsize (LMDB files are sparse, the
 * map is address space) and grows when full. A write transaction records its
 * puts and deletes; on MDB_MAP_FULL (from a put or from the commit) it is
 * rolled back, the map doubled with mdb_env_set_mapsize() and the recorded
 * operations replayed in a fresh transaction. mdb_env_set_mapsize() needs
 * every transaction of this process closed, so each transaction holds a
 * process-wide read lock (pthread rwlock) and growth takes it exclusively.
 * A map grown by another process shows up as MDB_MAP_RESIZED when a
 * transaction begins: the new size is adopted (size 0) and the begin retried.
 */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/index.h"
#include "util/err.h"

#define MAP_MAX (1ull << 40)
#define GROW_TRIES 24

size_t shl_index__initial_mapsize = (size_t)1 << 30;

static const char *const db_names[SHL_DB_COUNT] = { "blobs", "layers", "aliases", "images", "refs", "meta" };

struct shl_index {
	MDB_env *env;
	MDB_dbi dbi[SHL_DB_COUNT];
	pthread_rwlock_t rw; /* shared by every open transaction, exclusive to resize */
};

/* a put (val != NULL or vlen == 0 with put set) or a delete, kept for replay */
struct op {
	int db, put;
	char *key;
	char *val;
	size_t vlen;
};

struct shl_wtxn {
	shl_index *ix;
	MDB_txn *txn;   /* NULL after a failed regrow */
	struct op *ops;
	size_t nops, cap;
};

/* transactions this thread has open (on any index): growth is impossible
 * while the thread itself holds one */
static _Thread_local int tl_open;

static int lmdb_err(int rc, const char *what)
{
	if (rc == MDB_MAP_FULL)
		return shl_err(SHL_ENOSPC, "index: %s: map full", what);
	if (rc == ENOSPC)
		return shl_err(SHL_ENOSPC, "index: %s: no space left on device", what);
	if (rc == EACCES || rc == EPERM || rc == EROFS)
		return shl_err(SHL_EPERM, "index: %s: %s", what, mdb_strerror(rc));
	if (rc == ENOMEM)
		return shl_err(SHL_ENOMEM, "index: %s: out of memory", what);
	if (rc == MDB_READERS_FULL)
		return shl_err(SHL_EBUSY, "index: %s: too many concurrent readers", what);
	if (rc == MDB_BAD_VALSIZE)
		return shl_err(SHL_ELIMIT, "index: %s: key or value too large", what);
	return shl_err(SHL_EIO, "index: %s: %s", what, mdb_strerror(rc));
}

/* ---- map size ------------------------------------------------------------- */

size_t shl_index_mapsize(shl_index *ix)
{
	MDB_envinfo info;

	if (mdb_env_info(ix->env, &info) != 0)
		return 0;
	return info.me_mapsize;
}

/* Resize the map: `size` 0 adopts the size another process set. Requires
 * that this thread holds no transaction; waits for the other threads'. */
static int resize(shl_index *ix, size_t size)
{
	int rc;

	if (tl_open > 0)
		return shl_err(SHL_ENOSPC, "index: map full and cannot grow while this thread reads the index");
	if ((rc = pthread_rwlock_wrlock(&ix->rw)))
		return shl_err(SHL_EIO, "index: lock: %s", strerror(rc));
	rc = mdb_env_set_mapsize(ix->env, size);
	pthread_rwlock_unlock(&ix->rw);
	return rc ? lmdb_err(rc, "resize map") : 0;
}

static int grow(shl_index *ix)
{
	size_t cur = shl_index_mapsize(ix);

	if (cur >= MAP_MAX)
		return shl_err(SHL_ENOSPC, "index: map full at its %llu GiB maximum",
			       (unsigned long long)(MAP_MAX >> 30));
	return resize(ix, cur * 2 > MAP_MAX ? (size_t)MAP_MAX : cur * 2);
}

/* ---- transactions ----------------------------------------------------------- */

static void txn_release(shl_index *ix)
{
	tl_open--;
	pthread_rwlock_unlock(&ix->rw);
}

static void txn_abort(shl_index *ix, MDB_txn *txn)
{
	mdb_txn_abort(txn);
	txn_release(ix);
}

/* Begin a transaction holding the shared resize lock; adopts a map grown by
 * another process. Returns an LMDB code. */
static int txn_begin(shl_index *ix, unsigned flags, MDB_txn **txn)
{
	int rc;

	for (int tries = 0;; tries++) {
		if ((rc = pthread_rwlock_rdlock(&ix->rw)))
			return rc;
		tl_open++;
		rc = mdb_txn_begin(ix->env, NULL, flags, txn);
		if (rc == 0)
			return 0;
		tl_open--;
		pthread_rwlock_unlock(&ix->rw);
		if (rc != MDB_MAP_RESIZED || tries >= GROW_TRIES)
			return rc;
		if (resize(ix, 0) != 0)
			return MDB_MAP_RESIZED;
	}
}

int shl_index_open(shl_index **out, const char *dir)
{
	shl_index *ix = calloc(1, sizeof(*ix));
	MDB_txn *txn = NULL;
	int rc, rw = 0;

	*out = NULL;
	if (!ix)
		return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = pthread_rwlock_init(&ix->rw, NULL))) {
		free(ix);
		return shl_err(SHL_EIO, "index: lock init: %s", strerror(rc));
	}
	rw = 1;
	if ((rc = mdb_env_create(&ix->env)) || (rc = mdb_env_set_maxdbs(ix->env, SHL_DB_COUNT + 2)) ||
	    (rc = mdb_env_set_mapsize(ix->env, shl_index__initial_mapsize)) ||
	    (rc = mdb_env_set_maxreaders(ix->env, 256)) || (rc = mdb_env_open(ix->env, dir, MDB_NOTLS, 0644))) {
		rc = lmdb_err(rc, dir);
		goto fail;
	}
	if ((rc = txn_begin(ix, 0, &txn))) {
		rc = lmdb_err(rc, "begin");
		goto fail;
	}
	for (int i = 0; i < SHL_DB_COUNT; i++) {
		if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &ix->dbi[i]))) {
			txn_abort(ix, txn);
			rc = lmdb_err(rc, db_names[i]);
			goto fail;
		}
	}
	rc = mdb_txn_commit(txn); /* frees txn, also on failure */
	txn_release(ix);
	if (rc) {
		rc = lmdb_err(rc, "create databases");
		goto fail;
	}
	*out = ix;
	return 0;
fail:
	if (ix->env)
		mdb_env_close(ix->env);
	if (rw)
		pthread_rwlock_destroy(&ix->rw);
	free(ix);
	return rc;
}

void shl_index_close(shl_index *ix)
{
	if (!ix)
		return;
	if (ix->env)
		mdb_env_close(ix->env);
	pthread_rwlock_destroy(&ix->rw);
	free(ix);
}

static int copy_out(MDB_val *v, char **val, size_t *len)
{
	char *p = malloc(v->mv_size + 1);

	if (!p)
		return shl_err(SHL_ENOMEM, "out of memory");
	memcpy(p, v->mv_data, v->mv_size);
	p[v->mv_size] = '\0';
	*val = p;
	if (len)
		*len = v->mv_size;
	return 0;
}

static int get_in(MDB_txn *txn, MDB_dbi dbi, const char *key, char **val, size_t *len)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	int rc = mdb_get(txn, dbi, &k, &v);

	if (rc == MDB_NOTFOUND)
		return SHL_ENOTFOUND;
	if (rc)
		return lmdb_err(rc, "get");
	return copy_out(&v, val, len);
}

int shl_index_get(shl_index *ix, int db, const char *key, char **val, size_t *len)
{
	MDB_txn *txn;
	int rc = txn_begin(ix, MDB_RDONLY, &txn);

	if (rc)
		return lmdb_err(rc, "read");
	rc = get_in(txn, ix->dbi[db], key, val, len);
	txn_abort(ix, txn);
	return rc;
}

int shl_index_foreach(shl_index *ix, int db, shl_index_fn fn, void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = txn_begin(ix, MDB_RDONLY, &txn), r;

	if (rc)
		return lmdb_err(rc, "read");
	if ((rc = mdb_cursor_open(txn, ix->dbi[db], &cur))) {
		txn_abort(ix, txn);
		return lmdb_err(rc, "cursor");
	}
	rc = 0;
	for (r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if ((rc = fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size)))
			break;
	}
	if (!rc && r != MDB_NOTFOUND)
		rc = lmdb_err(r, "iterate");
	mdb_cursor_close(cur);
	txn_abort(ix, txn);
	return rc;
}

int shl_index_count(shl_index *ix, int db, size_t *n)
{
	MDB_txn *txn;
	MDB_stat st;
	int rc = txn_begin(ix, MDB_RDONLY, &txn);

	*n = 0;
	if (rc)
		return lmdb_err(rc, "read");
	rc = mdb_stat(txn, ix->dbi[db], &st);
	txn_abort(ix, txn);
	if (rc)
		return lmdb_err(rc, "stat");
	*n = st.ms_entries;
	return 0;
}

/* ---- write transactions --------------------------------------------------- */

int shl_index_wbegin(shl_index *ix, shl_wtxn **out)
{
	shl_wtxn *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (!w)
		return shl_err(SHL_ENOMEM, "out of memory");
	w->ix = ix;
	if ((rc = txn_begin(ix, 0, &w->txn))) {
		free(w);
		return lmdb_err(rc, "begin write");
	}
	*out = w;
	return 0;
}

static int apply(shl_wtxn *w, const struct op *o)
{
	MDB_val k = { strlen(o->key), o->key }, v = { o->vlen, o->val };
	int rc;

	if (o->put)
		return mdb_put(w->txn, w->ix->dbi[o->db], &k, &v, 0);
	rc = mdb_del(w->txn, w->ix->dbi[o->db], &k, NULL);
	return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The map is full: roll back, grow, begin again and replay every recorded
 * operation. `txn_gone`: the transaction was already freed (failed commit).
 * Returns an SHL code; on failure w->txn is NULL. */
static int regrow(shl_wtxn *w, int txn_gone)
{
	shl_index *ix = w->ix;
	int rc = MDB_MAP_FULL;

	if (!txn_gone)
		mdb_txn_abort(w->txn);
	txn_release(ix);
	w->txn = NULL;
	for (int tries = 0; rc == MDB_MAP_FULL && tries < GROW_TRIES; tries++) {
		int e;
		if ((e = grow(ix)))
			return e;
		if ((rc = txn_begin(ix, 0, &w->txn)))
			return lmdb_err(rc, "begin write");
		rc = 0;
		for (size_t i = 0; i < w->nops && !rc; i++)
			rc = apply(w, &w->ops[i]);
		if (rc) {
			txn_abort(ix, w->txn);
			w->txn = NULL;
		}
	}
	return rc ? lmdb_err(rc, "replay after growing the map") : 0;
}

static int record(shl_wtxn *w, int db, int put, const char *key, const void *val, size_t len)
{
	struct op *o;

	if (!w->txn)
		return shl_err(SHL_EINVAL, "index: write transaction already failed");
	if (w->nops == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct op *n = realloc(w->ops, cap * sizeof(*n));
		if (!n)
			return shl_err(SHL_ENOMEM, "out of memory");
		w->ops = n;
		w->cap = cap;
	}
	o = &w->ops[w->nops];
	memset(o, 0, sizeof(*o));
	o->db = db;
	o->put = put;
	o->key = strdup(key);
	o->vlen = len;
	if (put)
		o->val = malloc(len ? len : 1);
	if (!o->key || (put && !o->val)) {
		free(o->key);
		free(o->val);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	if (put && len)
		memcpy(o->val, val, len);
	w->nops++;
	return 0;
}

static int write_op(shl_wtxn *w, int db, int put, const char *key, const void *val, size_t len)
{
	int rc = record(w, db, put, key, val, len);

	if (rc)
		return rc;
	rc = apply(w, &w->ops[w->nops - 1]);
	if (rc == MDB_MAP_FULL)
		return regrow(w, 0);
	return rc ? lmdb_err(rc, put ? "put" : "delete") : 0;
}

int shl_index_wput(shl_wtxn *w, int db, const char *key, const void *val, size_t len)
{
	return write_op(w, db, 1, key, val, len);
}

int shl_index_wdel(shl_wtxn *w, int db, const char *key)
{
	return write_op(w, db, 0, key, NULL, 0);
}

int shl_index_wget(shl_wtxn *w, int db, const char *key, char **val, size_t *len)
{
	if (!w->txn)
		return shl_err(SHL_EINVAL, "index: write transaction already failed");
	return get_in(w->txn, w->ix->dbi[db], key, val, len);
}

static void wfree(shl_wtxn *w)
{
	for (size_t i = 0; i < w->nops; i++) {
		free(w->ops[i].key);
		free(w->ops[i].val);
	}
	free(w->ops);
	free(w);
}

int shl_index_wcommit(shl_wtxn *w)
{
	int rc = 0, mrc;

	if (!w->txn) {
		rc = shl_err(SHL_EINVAL, "index: write transaction already failed");
		goto out;
	}
	for (int tries = 0;; tries++) {
		mrc = mdb_txn_commit(w->txn); /* frees the transaction, also on failure */
		if (mrc != MDB_MAP_FULL || tries >= GROW_TRIES) {
			txn_release(w->ix);
			w->txn = NULL;
			rc = mrc ? lmdb_err(mrc, "commit") : 0;
			break;
		}
		/* the shared lock is still held: regrow releases it, grows the
		 * map and hands back a fresh transaction with the operations */
		if ((rc = regrow(w, 1)))
			break;
	}
out:
	wfree(w);
	return rc;
}

void shl_index_wabort(shl_wtxn *w)
{
	if (!w)
		return;
	if (w->txn)
		txn_abort(w->ix, w->txn);
	wfree(w);
}
