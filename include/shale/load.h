/*
 * shale/load.h - import docker-archive and OCI archives/layouts into a store
 * (`shale load`). Formats are detected from the content: legacy
 * docker-archive (manifest.json + <id>/layer.tar), Docker >= 25 (OCI layout +
 * manifest.json), OCI archive or OCI layout directory; the archive itself may
 * be gzip/zstd/xz/bzip2-compressed and layers plain, gzip or zstd. Everything
 * an archive adds is committed in one transaction, or nothing is.
 */
#ifndef SHALE_LOAD_H
#define SHALE_LOAD_H

#include "shale/store.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SHL_LOAD_OPTS_VERSION 1
typedef struct shl_load_opts {
	unsigned version;
	const char *input;      /* archive file or OCI layout dir; NULL: read fd */
	int fd;                 /* used when input is NULL (a pipe is fine) */
	const char *platform;   /* "os/arch[/variant]"; NULL: the host's */
	int all_platforms;
	const char *tag;        /* name for an untagged image */
} shl_load_opts;
#define SHL_LOAD_OPTS_INIT { SHL_LOAD_OPTS_VERSION, NULL, 0, NULL, 0, NULL }

/* Events: ("Loaded image", "alpine:latest"), ("Loaded image ID", "sha256:..."),
 * ("Loading layer", "<12-hex>") while converting. */
typedef void (*shl_load_fn)(void *ctx, const char *event, const char *what);

int shl_load(shl_store *s, const shl_load_opts *o, shl_load_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
