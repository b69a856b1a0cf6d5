/*
 * load/load.c - `shale load` (shale/load.h): read the input into items
 * (archive_in.c, entries.c); for a seekable input, plan (resolve.c marks the
 * layers images need), convert those in parallel (convert.c) and resolve
 * again for real; commit the batch in one transaction; report. On any error
 * the batch is dropped: staged temp files go, the index is untouched.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "load/load_int.h"
#include "util/err.h"

static void loaded_free(struct loader *L)
{
	for (size_t i = 0; i < L->nloaded; i++)
		free(L->loaded[i]);
	free(L->loaded);
	L->loaded = NULL;
	L->nloaded = 0;
}

/* Planning pass: which PENDING layers do the images need? Its batch only
 * holds JSON records and is thrown away. */
static int plan(struct loader *L)
{
	int rc;

	L->planning = 1;
	rc = shl_load__resolve(L);
	L->planning = 0;
	shl_batch_free(L->batch);
	L->batch = NULL;
	L->ninbatch = 0;
	loaded_free(L);
	if (rc)
		return rc;
	return shl_batch_new(&L->batch);
}

int shl_load(shl_store *s, const shl_load_opts *o, shl_load_fn fn, void *ctx)
{
	struct loader L;
	shl_load_plat plat;
	int rc;

	if (!s || !o || o->version != SHL_LOAD_OPTS_VERSION)
		return shl_err(SHL_EINVAL, "load: bad options");
	if ((rc = shl_load__want_platform(o->platform, &plat)))
		return rc;
	memset(&L, 0, sizeof(L));
	L.s = s;
	L.o = o;
	L.fn = fn;
	L.ctx = ctx;
	L.fd = -1;
	if ((rc = shl_batch_new(&L.batch)))
		return rc;
	if ((rc = shl_load__read_input(&L)))
		goto out;
	if (L.seekable && ((rc = plan(&L)) || (rc = shl_load__convert_needed(&L))))
		goto out;
	if ((rc = shl_load__resolve(&L)) || (rc = shl_store_commit(s, L.batch)))
		goto out;
	for (size_t i = 0; fn && i < L.nloaded; i++) {
		if (!strncmp(L.loaded[i], "ID ", 3))
			fn(ctx, "Loaded image ID", L.loaded[i] + 3);
		else
			fn(ctx, "Loaded image", L.loaded[i]);
	}
out:
	shl_batch_free(L.batch);
	shl_load__items_free(&L);
	free(L.inbatch);
	free(L.configs);
	loaded_free(&L);
	if (L.own_fd && L.fd >= 0)
		close(L.fd);
	return rc;
}
