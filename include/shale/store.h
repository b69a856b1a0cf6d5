/*
 * shale/store.h - the content-addressed image store: open a store root, find
 * images by reference or ID, list, inspect, tag and remove them; disk usage,
 * garbage collection and integrity checks.
 *
 * Layout (docs/format.md): <root>/index (LMDB), <root>/layers/<hex>.tar and
 * <hex>.erofs per diff_id, <root>/tmp (per-process staging, stale dirs
 * removed on open). Loading is in shale/load.h, saving in shale/save.h.
 * Several processes may use one store at once. References given to these
 * functions are normalized with shale/ref.h rules ("alpine" is
 * docker.io/library/alpine:latest).
 */
#ifndef SHALE_STORE_H
#define SHALE_STORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shl_store shl_store;

/* Open (creating if needed) the store at `root`; NULL: $SHALE_ROOT, else
 * /var/lib/shale for root, else $XDG_DATA_HOME/shale (~/.local/share/shale). */
int shl_store_open(shl_store **out, const char *root);
void shl_store_close(shl_store *s);
const char *shl_store_root(const shl_store *s);

/* Resolve "alpine", "alpine:3", "name@sha256:...", a full or short image ID
 * ("sha256:abc...", "abc123") or a manifest digest to the manifest digest of
 * a stored image ("sha256:..."). SHL_ENOTFOUND: "no such image: X". */
int shl_store_resolve(shl_store *s, const char *ref, char manifest[72]);

typedef struct shl_image_summary {
	const char *manifest;      /* manifest digest */
	const char *id;            /* config digest = image ID */
	const char *const *tags;   /* full normalized refs naming it (NULL-terminated) */
	const char *const *repo_digests;
	int64_t created;           /* unix seconds from the config (0 if unknown) */
	uint64_t size;             /* sum of the layers' tar sizes */
	uint64_t layers;
} shl_image_summary;

/* Every stored image, tagged or not, in manifest-digest order. */
typedef int (*shl_image_fn)(void *ctx, const shl_image_summary *img);
int shl_store_list(shl_store *s, shl_image_fn fn, void *ctx);

/* docker-compatible `image inspect` JSON of one image (malloc'd string). */
int shl_store_inspect(shl_store *s, const char *ref, char **json);

/* Name an image: `target` gets the image `source` resolves to. */
int shl_store_tag(shl_store *s, const char *source, const char *target);

/* Remove a reference; when the image has no reference left (or it was given
 * by ID and force is set) the image record goes too. Layers and blobs no
 * image uses any more are deleted (index first, then files). The callback
 * (may be NULL) hears "Untagged: X" / "Deleted: sha256:..." events. */
typedef void (*shl_rm_fn)(void *ctx, const char *kind, const char *what);
int shl_store_remove(shl_store *s, const char *ref, int force, shl_rm_fn fn, void *ctx);

/* Per-layer history of an image, from its config (docker `history`), newest
 * first. size is the layer's tar size (0 for empty_layer steps). */
typedef int (*shl_history_fn)(void *ctx, const char *created, const char *created_by, uint64_t size,
			      const char *comment, int empty_layer);
int shl_store_history(shl_store *s, const char *ref, shl_history_fn fn, void *ctx);

/* Disk usage. Sizes count both stored files of a layer (tar + EROFS). An
 * image's `shared` part is in layers other images use too; `unique` the rest;
 * reclaimable = what removing the untagged (dangling) images would free. */
typedef struct shl_df_layer {
	const char *diff_id;
	uint64_t tar_size, erofs_size;
	uint32_t images;            /* how many images use it */
} shl_df_layer;
typedef struct shl_df_image {
	const char *manifest, *id;
	int tagged;
	uint64_t size, shared, unique;
} shl_df_image;
typedef struct shl_df_total {
	uint64_t images, layers, bytes, reclaimable;
} shl_df_total;
typedef int (*shl_df_layer_fn)(void *ctx, const shl_df_layer *l);
typedef int (*shl_df_image_fn)(void *ctx, const shl_df_image *i);
int shl_store_df(shl_store *s, shl_df_total *total, shl_df_layer_fn lfn, shl_df_image_fn ifn, void *ctx);

/* Integrity check (see docs/format.md). */
#define SHL_FSCK_DEEP 0x1    /* also sha256 of tars vs diff_ids, walk every EROFS index */
#define SHL_FSCK_REPAIR 0x2  /* remove orphan layer files and stale temp files */
typedef struct shl_fsck_report {
	uint64_t layers, images, problems, repaired, bytes;
	uint64_t blobs, aliases, refs; /* records checked */
} shl_fsck_report;
/* fn hears one line per problem ("layer sha256:..: .. is corrupt ..") and per
 * repair ("removed orphan ..."); problems counts the former. Returns 0 when
 * the check ran (look at report->problems), an error when it could not. */
typedef void (*shl_fsck_fn)(void *ctx, const char *message);
int shl_store_fsck(shl_store *s, int flags, shl_fsck_report *report, shl_fsck_fn fn, void *ctx);

/* Remove untagged images (all images with `all`), then unused layers. */
int shl_store_prune(shl_store *s, int all, shl_rm_fn fn, void *ctx);

/* Garbage collection (mark and sweep, no stored reference counts): under the
 * exclusive store lock, one transaction deletes every layer record, alias and
 * blob that no stored image uses; then the files of those layers and any file
 * in layers/ the index does not name are unlinked. Images are kept, tagged or
 * not. fn (may be NULL) hears ("Deleted layer", diff_id), ("Deleted blob",
 * digest), ("Deleted alias", digest), ("Removed file", path). */
typedef struct shl_gc_report {
	uint64_t layers, blobs, aliases, files, bytes; /* bytes: of unlinked files */
} shl_gc_report;
int shl_store_gc(shl_store *s, shl_gc_report *report, shl_rm_fn fn, void *ctx);

/* The diff_ids of an image's layers, bottom first. */
typedef int (*shl_layer_fn)(void *ctx, const char *diff_id);
int shl_store_image_layers(shl_store *s, const char *ref, shl_layer_fn fn, void *ctx);

/* The stored files of a layer (by diff_id): <root>/layers/<hex>.tar and
 * .erofs written into the buffers (either may be NULL). */
int shl_store_layer_paths(shl_store *s, const char *diff_id, char *tar, size_t tar_len,
			  char *erofs, size_t erofs_len);

/* 1 if the layer (by diff_id) is stored, else 0. */
int shl_store_layer_has(shl_store *s, const char *diff_id);

/* The manifest digests of the images that use a layer (computed from the
 * image records; nothing is reference-counted). */
int shl_store_layer_users(shl_store *s, const char *diff_id, shl_layer_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
