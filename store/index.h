/*
 * store/index.h - the LMDB index of a store: named databases of byte keys
 * and values, short read transactions, one write transaction per batch.
 * Only store/index.c includes <lmdb.h>; LMDB errors become SHL_E* codes.
 */
#ifndef SHL_STORE_INDEX_H
#define SHL_STORE_INDEX_H

#include <stddef.h>

enum shl_db { SHL_DB_BLOBS, SHL_DB_LAYERS, SHL_DB_ALIASES, SHL_DB_IMAGES, SHL_DB_REFS, SHL_DB_META, SHL_DB_COUNT };

typedef struct shl_index shl_index;
typedef struct shl_wtxn shl_wtxn;

int shl_index_open(shl_index **out, const char *dir);
void shl_index_close(shl_index *ix);

/* Copy of the value of `key` (malloc'd, NUL-terminated for convenience);
 * SHL_ENOTFOUND if absent. */
int shl_index_get(shl_index *ix, int db, const char *key, char **val, size_t *len);

/* Iterate a db in key order (a snapshot); fn returns non-zero to stop. */
typedef int (*shl_index_fn)(void *ctx, const char *key, size_t klen, const char *val, size_t vlen);
int shl_index_foreach(shl_index *ix, int db, shl_index_fn fn, void *ctx);

/* One write transaction. */
int shl_index_wbegin(shl_index *ix, shl_wtxn **out);
int shl_index_wput(shl_wtxn *w, int db, const char *key, const void *val, size_t len);
int shl_index_wdel(shl_wtxn *w, int db, const char *key); /* absent is fine */
int shl_index_wget(shl_wtxn *w, int db, const char *key, char **val, size_t *len);
int shl_index_wcommit(shl_wtxn *w);  /* frees w, also on failure */
void shl_index_wabort(shl_wtxn *w);  /* NULL ok */

#endif
