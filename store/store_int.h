/*
 * store/store_int.h - store internals shared by store/, load/ and save/:
 * staging layers into temp files, the commit batch, record access.
 */
#ifndef SHL_STORE_INT_H
#define SHL_STORE_INT_H

#include <stddef.h>
#include <stdint.h>
#include "shale/layer.h"
#include "shale/store.h"
#include "store/index.h"
#include "util/json.h"

#define SHL_MANIFEST_CAP (4u << 20)
#define SHL_CONFIG_CAP (16u << 20)

struct shl_store {
	char *root;
	char *layers_dir;
	char *tmp_dir;      /* this process's staging dir */
	int tmp_lock_fd;
	shl_index *ix;
};

/* The store-wide lock: shared for commits, exclusive for removal/GC.
 * Returns the fd to close (unlocks) or a negative code. */
int shl_store__lock(shl_store *s, int exclusive);

/* Crash-safety testing: when $SHALE_FAULT equals `point`, the process kills
 * itself with SIGKILL right there (points: "staged", "published", "committed"). */
void shl_store__fault(const char *point);

/* A layer converted into temp files, not yet in the store. */
typedef struct shl_staged {
	shl_layer_info info;
	char tar_tmp[4096];
	char erofs_tmp[4096];
	int published;
} shl_staged;

/* Convert a layer stream into staged temp files (fsync'd). */
int shl_store__stage(shl_store *s, shl_layer_read_fn fn, void *ctx, shl_staged *out);
/* Remove a staged layer's temp files (if not published). */
void shl_store__unstage(shl_staged *st);

int shl_store__has_layer(shl_store *s, const char *diff_id);
/* compressed blob digest -> diff_id (SHL_ENOTFOUND if unknown) */
int shl_store__alias(shl_store *s, const char *blob_digest, char diff_id[72]);
/* blob bytes (manifest/config/index); *media may be NULL */
int shl_store__get_blob(shl_store *s, const char *digest, char **data, size_t *len, char **media);
/* image record (parsed JSON, caller puts) by manifest digest */
int shl_store__get_image(shl_store *s, const char *manifest, shl_json **rec);
/* layer record (parsed JSON) */
int shl_store__get_layer(shl_store *s, const char *diff_id, shl_json **rec);

/* The OCI manifest shale writes for an image whose layers it stores as
 * plain tars: config descriptor + one application/vnd.oci.image.layer.v1.tar
 * descriptor per layer (digest = diff_id, size = tar size). `layers` holds
 * objects with "diff_id" and "tar_size" (image-record shape); an object with
 * "out_media"/"out_digest"/"out_size" describes a compressed form instead.
 * Deterministic bytes; *bytes is malloc'd. */
int shl_store__synth_manifest(shl_json *layers, const char *config_digest, size_t config_len,
			      char **bytes, size_t *len, char digest[72]);

/* A batch of additions committed in one LMDB transaction. */
typedef struct shl_batch shl_batch;
int shl_batch_new(shl_batch **out);
void shl_batch_free(shl_batch *b); /* unstages what was not published */
/* The batch takes over the staged layer (temp files). alias_media: media type
 * of the compressed blob (NULL when the blob was the plain tar). */
int shl_batch_add_layer(shl_batch *b, const shl_staged *st, const char *alias_media);
int shl_batch_put_blob(shl_batch *b, const char *digest, const char *media, const void *data, size_t len);
/* image record JSON (the batch takes the reference) keyed by manifest digest */
int shl_batch_put_image(shl_batch *b, const char *manifest, shl_json *rec);
int shl_batch_set_ref(shl_batch *b, const char *name, const char *manifest);
/* Publish staged files (rename, fsync dir) then write everything in one
 * transaction; every layer an image names must be stored or in the batch. */
int shl_store_commit(shl_store *s, shl_batch *b);

#endif
