/*
 * load/load_int.h - the loader's working state: every archive entry it kept
 * (small JSON documents in memory, layers converted into staged temp files or
 * - from a seekable input - located but not yet read, blobs known to the
 * store, symlinks), shared by the entry table (load/entries.c), the archive
 * and directory readers (load/archive_in.c), the layer converter
 * (load/convert.c) and the manifest resolver (load/resolve.c, platform.c).
 */
#ifndef SHL_LOAD_INT_H
#define SHL_LOAD_INT_H

#include <stddef.h>
#include <stdint.h>
#include "shale/load.h"
#include "store/store_int.h"

#define SHL_LOAD_META_CAP (16u << 20)    /* per JSON document */
#define SHL_LOAD_META_TOTAL (256u << 20) /* all buffered documents */
#define SHL_LOAD_MAX_ITEMS (1u << 20)    /* archive entries kept */
#define SHL_LOAD_MAX_DESCS 4096          /* index descriptors visited */
#define SHL_LOAD_MAX_DEPTH 4             /* nested indexes below index.json */
#define SHL_LOAD_MAX_LAYERS 1000        /* per image (overlayfs stacks at most 500) */
#define SHL_LOAD_THREADS 2               /* parallel layer conversions (seekable input) */

enum item_kind {
	ITEM_META,    /* small JSON document, bytes in memory */
	ITEM_LAYER,   /* converted: staged temp files (or existed already) */
	ITEM_PENDING, /* layer-looking entry of a seekable input, not read yet */
	ITEM_KNOWN,   /* blob named by a digest the store holds: never read */
	ITEM_LINK,    /* symlink or hardlink to another entry */
	ITEM_OTHER,   /* anything else (VERSION files, legacy v1 json, ...) */
	ITEM_BAD,     /* layer-looking entry that failed to convert */
};

struct item {
	char *name;             /* normalized archive path */
	int kind;
	char claimed[72];       /* digest its name claims (blobs/sha256/<hex>), or "" */
	char digest[72];        /* sha256 of the bytes (META, LAYER raw, OTHER if hashed) */
	/* META */
	char *data;
	size_t len;
	/* LAYER */
	shl_staged staged;
	int in_batch;
	int existed;            /* diff_id was already stored: files unstaged */
	/* LAYER and KNOWN */
	char diff_id[72];
	int compression;
	uint64_t raw_size;
	/* PENDING and OTHER of a seekable input: where the bytes are */
	char *path;             /* file of an OCI layout dir; NULL: the archive at off */
	uint64_t off, size;
	int need;               /* an image refers to it (set by the planning pass) */
	char want[72];          /* the diff_id that image's config expects */
	/* BAD: the conversion error, raised only if an image needs the entry */
	int err_code;
	char *err_msg;
	/* LINK */
	char *target;
};

struct loader {
	shl_store *s;
	const shl_load_opts *o;
	shl_load_fn fn;
	void *ctx;
	struct item *items;
	size_t nitems, capitems;
	size_t *hash;           /* open addressing on names: item index + 1, 0 free */
	size_t hashcap;
	size_t meta_total;
	int seekable;           /* items may be PENDING */
	int fd;                 /* the seekable archive file, or -1 */
	int own_fd;             /* fd was opened here */
	int planning;           /* resolve pass that only marks the layers images need */
	shl_batch *batch;
	size_t *inbatch;        /* indexes of the ITEM_LAYERs the batch adds */
	size_t ninbatch;
	char **loaded;          /* "name" or "ID sha256:..." reported after commit */
	size_t nloaded;
	size_t ndescs;          /* index descriptors visited */
	char (*configs)[72];    /* config digests of the images added */
	size_t nconfigs;
	char tag_manifest[72];  /* the image --tag named, "" if none */
	int tag_conflict;       /* --tag would name two different images */
	char first_image[72];   /* manifest digest of the first image added */
	int many_images;        /* a second, different image was added */
};

/* A byte source for one entry: a peeked prefix, then the underlying reader. */
struct entry_src {
	const uint8_t *peek;
	size_t peek_len, peek_off;
	shl_layer_read_fn rd;
	void *rd_ctx;
	int failed;             /* the underlying read failed (truncated input, I/O) */
	/* progress of a layer converted from the stream (L set: report) */
	struct loader *L;
	const char *name;
	uint64_t done, total;
	double last;
};
/* Where an entry's bytes are in a seekable input (NULL for a stream). */
struct entry_loc {
	const char *path;       /* file in an OCI layout dir, or NULL: archive fd */
	uint64_t off;
};

/* entries.c: the entry table */
ssize_t shl_load__src_read(void *ctx, void *buf, size_t len);

struct item *shl_load__find(struct loader *L, const char *name);
struct item *shl_load__find_blob(struct loader *L, const char *digest);
/* follow links to the entry holding the bytes (NULL: absent, dangling, loop) */
struct item *shl_load__follow(struct loader *L, const char *name);
int shl_load__norm_name(const char *in, char *out, size_t cap);
int shl_load__take_file(struct loader *L, const char *name, int64_t size, struct entry_src *src,
			const struct entry_loc *loc);
int shl_load__take_link(struct loader *L, const char *name, const char *target, int from_root);
void shl_load__items_free(struct loader *L);

/* archive_in.c: read the input (file, pipe or OCI directory) into items */
int shl_load__read_input(struct loader *L);

/* convert.c: convert the PENDING items an image needs (in parallel), and
 * hash an entry of a seekable input */
int shl_load__convert_needed(struct loader *L);
int shl_load__hash_item(struct loader *L, struct item *it, char digest[72]);

/* resolve.c: turn index.json / manifest.json into images in the batch */
int shl_load__resolve(struct loader *L);

/* platform.c: --platform / host platform, matching, attestations */
typedef struct shl_load_plat {
	char os[32], arch[32], variant[32];
} shl_load_plat;
int shl_load__want_platform(const char *spec, shl_load_plat *out);
int shl_load__platform_matches(const shl_json *platform, const shl_load_plat *want);
int shl_load__is_attestation(const shl_json *desc);

#endif
