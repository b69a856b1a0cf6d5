/*
 * shale/save.h - export stored images as one archive (`shale save`): the OCI
 * image layout plus docker's manifest.json and repositories (loads in docker
 * old and new, podman, skopeo, containerd), or a pure OCI archive. Layers are
 * the stored tars, bit-exact (or compressed on request); image IDs and
 * diff_ids survive the round trip; the same images and options always give
 * the same bytes. docs/save-format.md describes the archive.
 */
#ifndef SHALE_SAVE_H
#define SHALE_SAVE_H

#include <stddef.h>
#include "shale/store.h"

#ifdef __cplusplus
extern "C" {
#endif

enum shl_save_format { SHL_SAVE_DOCKER = 0, SHL_SAVE_OCI = 1 };
enum shl_save_compress { SHL_SAVE_COMPRESS_NONE = 0, SHL_SAVE_COMPRESS_GZIP = 1, SHL_SAVE_COMPRESS_ZSTD = 2 };

#define SHL_SAVE_OPTS_VERSION 1
typedef struct shl_save_opts {
	unsigned version;
	int format;                 /* enum shl_save_format */
	int compress;               /* enum shl_save_compress: layers written compressed */
	const char *exclude_layers; /* file of diff_ids the target has already (one
	                               "sha256:..." per line, '#' comments, or the JSON
	                               of `shale df --layers --json`): not written */
} shl_save_opts;
#define SHL_SAVE_OPTS_INIT { SHL_SAVE_OPTS_VERSION, SHL_SAVE_DOCKER, SHL_SAVE_COMPRESS_NONE, NULL }

/* Write the images `refs` resolve to (tags, IDs, digests; an image named
 * twice is written once, with every tag given) into out_fd: a regular file
 * (layers move with copy_file_range), a pipe or socket (sendfile). Nothing is
 * written until every reference has resolved (SHL_ENOTFOUND "no such image:
 * X") and every layer is open; a failure after that leaves a partial archive
 * in out_fd (the CLI writes through a temp file). */
int shl_save(shl_store *s, const char *const *refs, size_t nrefs, const shl_save_opts *o, int out_fd);

#ifdef __cplusplus
}
#endif
#endif
