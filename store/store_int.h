/*
 * store/store_int.h - store internals shared by store/, load/ and save/:
 * staging layers into temp files, per-layer locks, the commit batch, record
 * access, sweeping. docs/format.md describes the records.
 */
#ifndef SHL_STORE_INT_H
#define SHL_STORE_INT_H

#include <stddef.h>
#include <stdint.h>
#include "shale/layer.h"
#include "shale/store.h"
#include "store/index.h"
#include "util/json.h"

#define SHL_MANIFEST_CAP (4u << 20)   /* manifests and indexes */
#define SHL_CONFIG_CAP (16u << 20)    /* configs (and image records) */

struct shl_store {
	char *root;
	char *layers_dir;
	char *tmp_dir;      /* this process's staging dir: <root>/tmp/<pid>-XXXXXX */
	int tmp_lock_fd;
	shl_index *ix;
};

/* The store-wide lock <root>/lock: shared while a batch publishes and
 * commits, exclusive for removal, GC and fsck --repair. Returns the fd to
 * close (unlocks) or a negative code. */
int shl_store__lock(shl_store *s, int exclusive);

/* Crash-safety testing: when $SHALE_FAULT equals `point`, the process kills
 * itself with SIGKILL right there (points: "staged", "published", "committed"). */
void shl_store__fault(const char *point);

/* Remove what dead processes left in <root>/tmp: staging dirs whose lock is
 * free and layer lock files nobody holds. Returns how many were removed.
 * Called by shl_store_open; fsck --repair calls it again. */
int shl_store__clean_tmp(shl_store *s);

/* Remove squash cache entries of images no longer stored, temp files of
 * dead squashes, and partial downloads no pull holds (store/gc.c). Returns
 * how many files went. */
int shl_store__sweep_cache(shl_store *s, shl_rm_fn fn, void *ctx);

/* ---- per-layer locks (store/layerstore.c) ----------------------------------
 * tmp/<hex>.lock for a digest `key` (blob digest or diff_id): waits while
 * another process holds it. *out is NULL (and 0 returned) when waiting would
 * deadlock or this process already holds the key: go on without. */
typedef struct shl_layer_lock shl_layer_lock;
int shl_store__layer_lock(shl_store *s, const char *key, shl_layer_lock **out);
void shl_store__layer_unlock(shl_layer_lock *lk); /* NULL ok; unlinks the file */
/* Remove the lock file `path` if no process holds it; 1 if removed. */
int shl_store__clean_layer_lock(const char *path);

/* A layer converted into temp files, not yet in the store. Exactly one owner
 * (a loader item or a batch: the struct may be copied to hand it over). */
typedef struct shl_staged {
	shl_layer_info info;
	char tar_tmp[4096];
	char erofs_tmp[4096];
	int published;
	shl_layer_lock *lock; /* held until unstaged (the batch: after commit) */
} shl_staged;

/* Convert a layer stream into staged temp files (fsync'd, mode 0644). */
int shl_store__stage(shl_store *s, shl_layer_read_fn fn, void *ctx, shl_staged *out);
/* Same, for a layer the caller expects to have digest `key` (its blob digest
 * or diff_id; NULL: unknown, like shl_store__stage). Takes the per-layer lock
 * first, so a concurrent load of the same layer waits here until the other
 * one's batch is committed or dropped. If `key` is then stored (as a layer or
 * an alias) nothing is read: `known` receives its diff_id, *out is empty and
 * 0 is returned. Otherwise known[0] == '\0', the layer is staged and must
 * have digest `key` (as raw blob or as diff_id; SHL_EDIGEST otherwise), and
 * *out holds the lock until shl_store__unstage. */
int shl_store__stage_key(shl_store *s, const char *key, shl_layer_read_fn fn, void *ctx, shl_staged *out,
			 char known[72]);
/* Remove a staged layer's temp files (unless published) and release its
 * per-layer lock. Idempotent. */
void shl_store__unstage(shl_staged *st);

int shl_store__has_layer(shl_store *s, const char *diff_id);
/* compressed blob digest -> diff_id (SHL_ENOTFOUND if unknown) */
int shl_store__alias(shl_store *s, const char *blob_digest, char diff_id[72]);
/* A recorded blob of layer `diff_id` with media type `media` (a scan of the
 * aliases): 1 and blob/size set, 0 if none, or an error. */
int shl_store__find_alias(shl_store *s, const char *diff_id, const char *media, char blob[72], int64_t *size);
/* blob bytes (manifest/config/index), NUL-terminated; *media may be NULL */
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

/* An image config's "created" (RFC 3339) as unix seconds; 0 if absent or
 * unparsable (the image record's "created"). */
int64_t shl_store__parse_created(const char *s);

/* ---- the commit batch (store/batch.c) --------------------------------------
 * Everything one operation adds, committed in one LMDB transaction. */
typedef struct shl_batch shl_batch;
int shl_batch_new(shl_batch **out);
void shl_batch_free(shl_batch *b); /* unstages what was not published, releases layer locks */
/* The batch takes over the staged layer (temp files and lock). alias_media:
 * media type of the compressed blob (NULL when the blob was the plain tar). */
int shl_batch_add_layer(shl_batch *b, const shl_staged *st, const char *alias_media);
/* Record that `blob` (media type `media`, `size` bytes) decompresses to the
 * layer `diff_id`, which must be stored (or in the batch) at commit. */
int shl_batch_put_alias(shl_batch *b, const char *blob, const char *diff_id, const char *media, uint64_t size);
int shl_batch_put_blob(shl_batch *b, const char *digest, const char *media, const void *data, size_t len);
/* image record JSON (the batch takes the reference) keyed by manifest digest */
int shl_batch_put_image(shl_batch *b, const char *manifest, shl_json *rec);
int shl_batch_set_ref(shl_batch *b, const char *name, const char *manifest);
/* Check that every layer an image names is in the batch or stored (index
 * record and both files), then publish staged files (rename, fsync dir) and
 * write everything in one transaction. A check failure changes nothing. */
int shl_store_commit(shl_store *s, shl_batch *b);

#endif
