/*
 * save/save_int.h - what save/save.c (orchestration: resolve, snapshot,
 * compress, write) hands to save/layout.c (index.json, manifest.json,
 * repositories) and save/exclude.c (--exclude-layers lists).
 */
#ifndef SHL_SAVE_INT_H
#define SHL_SAVE_INT_H

#include <stddef.h>
#include <stdint.h>
#include "shale/save.h"
#include "util/json.h"

#define SHL_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define SHL_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define SHL_MT_OCI_LAYER "application/vnd.oci.image.layer.v1.tar"
#define SHL_MT_OCI_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"
#define SHL_MT_OCI_LAYER_ZSTD "application/vnd.oci.image.layer.v1.tar+zstd"

/* Annotations on index.json descriptors (docs/save-format.md). */
#define SHL_ANN_IMAGE_NAME "io.containerd.image.name"
#define SHL_ANN_REF_NAME "org.opencontainers.image.ref.name"
#define SHL_ANN_ORIGINAL "io.shale.original-manifest"
#define SHL_ANN_REPO_DIGESTS "io.shale.repo-digests"

/* One distinct layer of the archive. */
struct shl_save_layer {
	char diff_id[72];
	uint64_t tar_size;
	int fd;              /* the stored tar, opened under the store lock; -1 if excluded */
	int excluded;        /* --exclude-layers: referenced, not written */
	/* what the archive carries: the plain tar, or a compressed copy (--compress) */
	int cfd;             /* unlinked temp file holding the compressed copy, or -1 */
	char digest[72];     /* blob digest written (diff_id when plain) */
	const char *media;
	uint64_t size;
};

/* One distinct image (stored manifest) of the archive. */
struct shl_save_image {
	char manifest[72];   /* stored manifest digest */
	char config[72];     /* image ID */
	char *config_bytes;  /* verbatim */
	size_t config_len;
	size_t *layers;      /* indexes into shl_saver.layers, bottom first */
	size_t nlayers;
	char **names;        /* full normalized tags ("docker.io/library/alpine:3"), argument order */
	size_t nnames;
	char **repo_digests; /* stored "name@sha256:..." refs of this image, sorted */
	size_t nrepo_digests;
	char *stored_bytes;  /* the stored manifest */
	size_t stored_len;
	char *stored_media;
	char *orig_bytes;    /* manifest carried along as an extra blob, or NULL */
	size_t orig_len;
	char orig[72];
	/* the manifest written */
	char *out_bytes;     /* == stored_bytes when verbatim (not separately owned) */
	size_t out_len;
	char out_digest[72];
	const char *out_media;
	int verbatim;
};

typedef struct shl_saver {
	const shl_save_opts *o;
	struct shl_save_image *images;
	size_t nimages;
	struct shl_save_layer *layers;
	size_t nlayers;
	char (*exclude)[72]; /* sorted diff_ids */
	size_t nexclude, exclude_cap;
} shl_saver;

/* --exclude-layers FILE: diff_ids one per line ('#' comments, blank lines) or
 * JSON (`shale df --layers --json`: an array of objects with "diff_id"; also
 * an array of strings, or an object with such an array under "layers"). */
int shl_save__read_exclude(shl_saver *v, const char *path);
int shl_save__excluded(const shl_saver *v, const char *diff_id);

/* The archive's JSON documents (save/layout.c), members in a fixed order so
 * the compact dump is deterministic. Only the docker format writes
 * manifest.json and repositories. */
int shl_save__index_json(const shl_saver *v, shl_json **out);
int shl_save__manifest_json(const shl_saver *v, shl_json **out);
int shl_save__repositories(const shl_saver *v, shl_json **out);

#endif
