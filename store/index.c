/*
 * store/index.c - LMDB behind store/index.h. The map is sized generously
 * (LMDB files are sparse) and grown when full; a failed commit still frees
 * its transaction.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "store/index.h"
#include "util/err.h"

#define MAP_SIZE (1ull << 34) /* 16 GiB of address space, sparse on disk */

static const char *const db_names[SHL_DB_COUNT] = { "blobs", "layers", "aliases", "images", "refs", "meta" };

struct shl_index {
	MDB_env *env;
	MDB_dbi dbi[SHL_DB_COUNT];
};

struct shl_wtxn {
	shl_index *ix;
	MDB_txn *txn;
};

static int lmdb_err(int rc, const char *what)
{
	if (rc == MDB_MAP_FULL)
		return shl_err(SHL_ENOSPC, "index: %s: map full", what);
	if (rc == ENOSPC)
		return shl_err(SHL_ENOSPC, "index: %s: no space left on device", what);
	if (rc == EACCES || rc == EPERM)
		return shl_err(SHL_EPERM, "index: %s: %s", what, mdb_strerror(rc));
	return shl_err(SHL_EIO, "index: %s: %s", what, mdb_strerror(rc));
}

int shl_index_open(shl_index **out, const char *dir)
{
	shl_index *ix = calloc(1, sizeof(*ix));
	MDB_txn *txn = NULL;
	int rc;

	*out = NULL;
	if (!ix)
		return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = mdb_env_create(&ix->env)) || (rc = mdb_env_set_maxdbs(ix->env, SHL_DB_COUNT + 2)) ||
	    (rc = mdb_env_set_mapsize(ix->env, MAP_SIZE)) || (rc = mdb_env_set_maxreaders(ix->env, 256)) ||
	    (rc = mdb_env_open(ix->env, dir, MDB_NOTLS, 0644))) {
		rc = lmdb_err(rc, dir);
		goto fail;
	}
	if ((rc = mdb_txn_begin(ix->env, NULL, 0, &txn))) {
		rc = lmdb_err(rc, "begin");
		goto fail;
	}
	for (int i = 0; i < SHL_DB_COUNT; i++) {
		if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &ix->dbi[i]))) {
			mdb_txn_abort(txn);
			rc = lmdb_err(rc, db_names[i]);
			goto fail;
		}
	}
	if ((rc = mdb_txn_commit(txn))) {
		rc = lmdb_err(rc, "commit");
		goto fail;
	}
	*out = ix;
	return 0;
fail:
	shl_index_close(ix);
	return rc;
}

void shl_index_close(shl_index *ix)
{
	if (!ix)
		return;
	if (ix->env)
		mdb_env_close(ix->env);
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
	int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn);

	if (rc)
		return lmdb_err(rc, "read");
	rc = get_in(txn, ix->dbi[db], key, val, len);
	mdb_txn_abort(txn);
	return rc;
}

int shl_index_foreach(shl_index *ix, int db, shl_index_fn fn, void *ctx)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn), r;

	if (rc)
		return lmdb_err(rc, "read");
	if ((rc = mdb_cursor_open(txn, ix->dbi[db], &cur))) {
		mdb_txn_abort(txn);
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
	mdb_txn_abort(txn);
	return rc;
}

int shl_index_wbegin(shl_index *ix, shl_wtxn **out)
{
	shl_wtxn *w = calloc(1, sizeof(*w));
	int rc;

	*out = NULL;
	if (!w)
		return shl_err(SHL_ENOMEM, "out of memory");
	w->ix = ix;
	if ((rc = mdb_txn_begin(ix->env, NULL, 0, &w->txn))) {
		free(w);
		return lmdb_err(rc, "begin write");
	}
	*out = w;
	return 0;
}

int shl_index_wput(shl_wtxn *w, int db, const char *key, const void *val, size_t len)
{
	MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)val };
	int rc = mdb_put(w->txn, w->ix->dbi[db], &k, &v, 0);

	return rc ? lmdb_err(rc, "put") : 0;
}

int shl_index_wdel(shl_wtxn *w, int db, const char *key)
{
	MDB_val k = { strlen(key), (void *)key };
	int rc = mdb_del(w->txn, w->ix->dbi[db], &k, NULL);

	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? lmdb_err(rc, "delete") : 0;
}

int shl_index_wget(shl_wtxn *w, int db, const char *key, char **val, size_t *len)
{
	return get_in(w->txn, w->ix->dbi[db], key, val, len);
}

int shl_index_wcommit(shl_wtxn *w)
{
	int rc = mdb_txn_commit(w->txn);

	free(w);
	return rc ? lmdb_err(rc, "commit") : 0;
}

void shl_index_wabort(shl_wtxn *w)
{
	if (!w)
		return;
	mdb_txn_abort(w->txn);
	free(w);
}
