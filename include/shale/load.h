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

#include <stdint.h>
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
	const char *tag;        /* name for the untagged image (an error if the
	                           archive holds several untagged images); if
	                           every image is named and there is one, one
	                           more name for it (several: an error) */
	int threads;            /* parallel layer conversions from a seekable
	                           input; 0: default (2) */
	/* Bytes of a layer entry read so far (of `total`, its size in the
	 * archive), on the calling thread with fn's ctx: about five times a
	 * second while it converts, and once with done == total at its end.
	 * NULL: no progress. */
	void (*progress)(void *ctx, const char *entry, uint64_t done, uint64_t total);
} shl_load_opts;
#define SHL_LOAD_OPTS_INIT { SHL_LOAD_OPTS_VERSION, NULL, 0, NULL, 0, NULL, 0, NULL }

/* Events, always on the calling thread: ("Loading layer", "<archive entry>")
 * while converting, then after the commit one ("Loaded image",
 * "alpine:latest") per name, or ("Loaded image ID", "sha256:...") for an
 * image without a name. */
typedef void (*shl_load_fn)(void *ctx, const char *event, const char *what);

/* Load every image of the archive (the platform chosen from multi-platform
 * indexes). An uncompressed archive in a regular file (or an OCI layout
 * directory) is read in two passes: headers and JSON first, then only the
 * layers an image needs and the store lacks, in parallel. Anything else is
 * streamed once. On error nothing is committed and temp files are removed. */
int shl_load(shl_store *s, const shl_load_opts *o, shl_load_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
