/*
 * shale/layer.h - convert one layer (a tar stream, plain/gzip/zstd) into an
 * EROFS image in one streaming pass, as `mkfs.erofs --tar` does.
 *
 * The pipeline: source -> decompress -> tee {SHA-256 + XXH3 on a second
 * thread, the uncompressed tar file} -> libarchive header parser -> file tree
 * -> EROFS writer. Memory grows with the number of entries, never with data.
 */
#ifndef SHALE_LAYER_H
#define SHALE_LAYER_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

enum shl_layer_mode {
	SHL_LAYER_INDEX = 0, /* 512-byte metadata image whose extra device is the tar */
	SHL_LAYER_FULL = 1,  /* 4 KiB image with the file data copied in */
};

/* Source of layer bytes: return bytes read, 0 at EOF, negative SHL_E* code. */
typedef ssize_t (*shl_layer_read_fn)(void *ctx, void *buf, size_t len);

#define SHL_LAYER_OPTS_VERSION 1
typedef struct shl_layer_opts {
	unsigned version;       /* SHL_LAYER_OPTS_VERSION */
	int mode;               /* enum shl_layer_mode */
	int tar_fd;             /* receives the uncompressed tar; required in
	                           INDEX mode (the image points into it) and in FULL
	                           mode (data is copied from it); a temp file is fine */
	int erofs_fd;           /* receives the EROFS image */
	uint32_t max_entries;   /* 0: default cap (4M) */
} shl_layer_opts;
#define SHL_LAYER_OPTS_INIT { SHL_LAYER_OPTS_VERSION, SHL_LAYER_INDEX, -1, -1, 0 }

typedef struct shl_layer_info {
	char diff_id[72];       /* "sha256:<hex>" of the uncompressed tar */
	uint8_t tar_sha256[32];
	uint8_t tar_xxh3[16];   /* XXH3-128 of the tar file */
	uint64_t tar_size;
	int compression;        /* 0 none, 1 gzip, 2 zstd (sniffed) */
	char raw_digest[72];    /* "sha256:<hex>" of the bytes as read (the blob) */
	uint64_t raw_size;
	uint64_t erofs_size;
	uint8_t erofs_xxh3[16]; /* XXH3-128 of the EROFS image */
	uint64_t entries;       /* paths in the layer (incl. root and implicit dirs) */
} shl_layer_info;

/* Convert a layer read from `fn`. On error nothing is rolled back in the fds:
 * the caller owns them (and their temp files). */
int shl_layer_convert(shl_layer_read_fn fn, void *ctx, const shl_layer_opts *o,
		      shl_layer_info *info);
/* Same, reading a file descriptor (file or pipe). */
int shl_layer_convert_fd(int in_fd, const shl_layer_opts *o, shl_layer_info *info);

#ifdef __cplusplus
}
#endif
#endif
