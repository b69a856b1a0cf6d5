/*
 * load/load_int.h - the loader's working state: every archive entry it kept
 * (small JSON documents in memory, layers converted into staged temp files,
 * blobs known to the store, symlinks), shared by the entry reader
 * (load/entries.c) and the manifest resolver (load/resolve.c).
 */
#ifndef SHL_LOAD_INT_H
#define SHL_LOAD_INT_H

#include <stddef.h>
#include <stdint.h>
#include "shale/load.h"
#include "store/store_int.h"

#define SHL_LOAD_META_CAP (16u << 20)   /* per JSON document */
#define SHL_LOAD_META_TOTAL (256u << 20) /* all buffered documents */

enum item_kind { ITEM_META, ITEM_LAYER, ITEM_KNOWN, ITEM_LINK, ITEM_OTHER };

struct item {
	char *name;             /* normalized archive path */
	int kind;
	char digest[72];        /* sha256 of the entry's bytes (meta, layer raw) */
	/* META */
	char *data;
	size_t len;
	/* LAYER */
	shl_staged staged;
	int in_batch;
	int existed;            /* diff_id was already stored: files unstaged */
	/* LAYER and KNOWN */
	char diff_id[72];
	int compression;
	uint64_t raw_size;
	/* LINK */
	char *target;
};

struct loader {
	shl_store *s;
	const shl_load_opts *o;
	shl_load_fn fn;
	void *ctx;
	struct item *items;
	size_t nitems, capitems;
	size_t meta_total;
	shl_batch *batch;
	char **loaded;          /* names or IDs reported after commit */
	size_t nloaded;
	/* archive paths of layers known (from a first pass over a seekable
	 * docker-archive) to be stored already: name -> diff_id */
	char **skip_name, **skip_diff;
	size_t nskip;
};

/* entries.c: read the archive (file, pipe or OCI directory) into items */
int shl_load__read_input(struct loader *L);
struct item *shl_load__find(struct loader *L, const char *name);
struct item *shl_load__find_blob(struct loader *L, const char *digest);

/* resolve.c: turn index.json / manifest.json into images in the batch */
int shl_load__resolve(struct loader *L);

#endif
