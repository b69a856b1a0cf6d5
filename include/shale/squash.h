/*
 * shale/squash.h - flatten a stack of stored layers into one filesystem
 * image, in-process: whiteouts and opaque dirs applied, no mount, no root.
 * Data is copied straight from the layers' stored tars.
 */
#ifndef SHALE_SQUASH_H
#define SHALE_SQUASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shl_squash_layer {
	const char *erofs_path;   /* the layer's index-mode EROFS image */
	const char *tar_path;     /* the layer's uncompressed tar */
} shl_squash_layer;

enum shl_squash_format {
	SHL_SQUASH_EROFS = 0,     /* full-mode EROFS, 4 KiB blocks, data copied in */
	SHL_SQUASH_TAR = 1,       /* a flat tar (pax where needed) */
	SHL_SQUASH_EXT4 = 2,      /* ext4 via libext2fs */
};

#define SHL_SQUASH_OPTS_VERSION 1
typedef struct shl_squash_opts {
	unsigned version;
	int format;               /* enum shl_squash_format */
	uint64_t size;            /* ext4: image size in bytes; 0 = automatic */
} shl_squash_opts;
#define SHL_SQUASH_OPTS_INIT { SHL_SQUASH_OPTS_VERSION, SHL_SQUASH_EROFS, 0 }

/* Squash layers[0] (bottom) .. layers[n-1] (top) into out_fd (a regular
 * file, written from offset 0). */
int shl_squash(const shl_squash_layer *layers, size_t n, const shl_squash_opts *o, int out_fd);

/* Squash a stored image (any reference shl_store_resolve takes) into out_fd
 * (an empty regular file; the caller renames it into place). Results are
 * cached by manifest digest, format and --size under
 * <root>/cache/squash/<hex>.<format>[-<size>]: a later squash of the same
 * image copies the cached file (a reflink where the filesystem has them, else
 * an in-kernel copy of its data extents only). no_cache: neither read nor
 * write the cache. *cached (may be NULL) tells whether the cache served it. */
struct shl_store;
int shl_squash_image(struct shl_store *s, const char *ref, const shl_squash_opts *o, int out_fd, int no_cache,
		     int *cached);

#ifdef __cplusplus
}
#endif
#endif
