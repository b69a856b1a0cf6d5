/*
 * store/index.h - the LMDB index of a store: named databases of byte keys
 * and values, short read transactions, one write transaction per batch.
 * Only store/index.c includes <lmdb.h>; LMDB errors become SHL_E* codes.
 *
 * The memory map starts at shl_index__initial_mapsize and grows on demand:
 * a write transaction that fills the map is rolled back, the map doubled and
 * the transaction's puts/deletes replayed, invisibly to the caller. A map
 * grown by another process is adopted when a transaction begins.
 */
#ifndef SHL_STORE_INDEX_H
#define SHL_STORE_INDEX_H

#include <stddef.h>

enum shl_db { SHL_DB_BLOBS, SHL_DB_LAYERS, SHL_DB_ALIASES, SHL_DB_IMAGES, SHL_DB_REFS, SHL_DB_META, SHL_DB_COUNT };

typedef struct shl_index shl_index;
typedef struct shl_wtxn shl_wtxn;

/* Map size a newly opened index starts with (default 1 GiB; tests lower it
 * to exercise growth). The map never exceeds 1 TiB (then SHL_ENOSPC). */
extern size_t shl_index__initial_mapsize;

int shl_index_open(shl_index **out, const char *dir);
void shl_index_close(shl_index *ix);

/* Copy of the value of `key` (malloc'd, NUL-terminated for convenience);
 * SHL_ENOTFOUND if absent. */
int shl_index_get(shl_index *ix, int db, const char *key, char **val, size_t *len);

/* Iterate a db in key order (a snapshot); fn returns non-zero to stop (that
 * value is returned). Keys and values are borrowed for the call only. Do not
 * begin a write transaction from fn (it could not grow the map). */
typedef int (*shl_index_fn)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen);
int shl_index_foreach(shl_index *ix, int db, shl_index_fn fn, void *ctx);

/* Number of entries in a db. */
int shl_index_count(shl_index *ix, int db, size_t *n);

/* Current size of the memory map in bytes (for tests and `df`). */
size_t shl_index_mapsize(shl_index *ix);

/* One write transaction (LMDB allows one writer per environment at a time,
 * across processes: wbegin waits for the current one). Keep it short: no
 * file I/O between wbegin and wcommit. */
int shl_index_wbegin(shl_index *ix, shl_wtxn **out);
int shl_index_wput(shl_wtxn *w, int db, const char *key, const void *val, size_t len);
int shl_index_wdel(shl_wtxn *w, int db, const char *key); /* absent is fine */
int shl_index_wget(shl_wtxn *w, int db, const char *key, char **val, size_t *len);
int shl_index_wcommit(shl_wtxn *w);  /* frees w, also on failure */
void shl_index_wabort(shl_wtxn *w);  /* NULL ok */

#endif
