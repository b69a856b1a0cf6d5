/*
 * load/load.c - `shale load` (shale/load.h): read the archive into items
 * (entries.c), resolve its images into one batch (resolve.c), commit, report.
 * On any error the batch is dropped: staged temp files go, the index is
 * untouched.
 */
#include <stdlib.h>
#include <string.h>

#include "load/load_int.h"
#include "util/err.h"

int shl_load(shl_store *s, const shl_load_opts *o, shl_load_fn fn, void *ctx)
{
	struct loader L;
	int rc;

	if (!o || o->version != SHL_LOAD_OPTS_VERSION)
		return shl_err(SHL_EINVAL, "load: bad options");
	memset(&L, 0, sizeof(L));
	L.s = s;
	L.o = o;
	L.fn = fn;
	L.ctx = ctx;
	if ((rc = shl_batch_new(&L.batch)))
		return rc;
	if ((rc = shl_load__read_input(&L)) || (rc = shl_load__resolve(&L)) || (rc = shl_store_commit(s, L.batch)))
		goto out;
	for (size_t i = 0; fn && i < L.nloaded; i++) {
		if (!strncmp(L.loaded[i], "ID ", 3))
			fn(ctx, "Loaded image ID", L.loaded[i] + 3);
		else
			fn(ctx, "Loaded image", L.loaded[i]);
	}
out:
	shl_batch_free(L.batch);
	for (size_t i = 0; i < L.nitems; i++) {
		struct item *it = &L.items[i];
		if (it->kind == ITEM_LAYER && !it->in_batch)
			shl_store__unstage(&it->staged);
		free(it->name);
		free(it->data);
		free(it->target);
	}
	free(L.items);
	for (size_t i = 0; i < L.nloaded; i++)
		free(L.loaded[i]);
	free(L.loaded);
	for (size_t i = 0; i < L.nskip; i++) {
		free(L.skip_name[i]);
		free(L.skip_diff[i]);
	}
	free(L.skip_name);
	free(L.skip_diff);
	return rc;
}
