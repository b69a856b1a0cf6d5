/*
 * fetch/pull_int.h - one image being pulled: its manifest, config and the
 * layer jobs that download (fetch/blobs.c) and convert (store staging) in
 * parallel (fetch/pull_layers.c); fetch/pull.c resolves references and
 * indexes and commits.
 */
#ifndef SHL_FETCH_PULL_INT_H
#define SHL_FETCH_PULL_INT_H

#include "fetch/blobs.h"
#include "shale/registry.h"
#include "store/store_int.h"

#define SHL_PULL_MAX_LAYERS 1000
#define SHL_PULL_CONVERTERS 2

struct pull_layer {
	char digest[72];        /* blob digest (compressed) */
	char media[128];
	int64_t size;
	char diff_id[72];       /* from the config */
	int64_t tar_size;
	int known;              /* stored already (as layer or alias) */
	int dup;                /* same blob as an earlier layer: its job does the work */
	int taken;              /* a worker has it */
	struct shl_dl *dl;
	char partial[4200];     /* <root>/downloads/<hex> */
	shl_staged staged;
	int staged_ok;
	int rc;                 /* worker outcome */
	char msg[600];
	int reported;           /* last state reported */
};

struct pull_img {
	shl_store *s;
	struct shl_reg *reg;
	const shl_pull_opts *o;
	shl_reg_fn fn;
	void *ctx;
	const char *repo;       /* "library/alpine" */
	const char *scope;
	char manifest[72];
	char *mbytes;
	size_t mlen;
	char mmedia[128];
	char config[72];
	char *cbytes;
	size_t clen;
	struct pull_layer *layers;
	size_t nlayers;
	/* conversion workers */
	pthread_mutex_t mu;
	int failed;
	int first_rc;           /* the first layer error */
	char first_msg[600];
	int running;            /* workers not finished */
	pthread_cond_t cv;
};

/* Download and convert every layer the store lacks (events on the calling
 * thread); on success each such layer's staged files are in layers[i].staged. */
int shl_pull__layers(struct pull_img *p);
/* Remove the partial files of the layers (after commit, or of bad blobs). */
void shl_pull__discard(struct pull_img *p);

#endif
