/*
 * load/names.h - the names an archive gives an image (load/names.c).
 */
#ifndef SHL_LOAD_NAMES_H
#define SHL_LOAD_NAMES_H

#include "load/load_int.h"

typedef struct shl_load_names {
	char **v;       /* references as written in the archive (owned) */
	size_t n;
	int from_tag;   /* the name is --tag's */
} shl_load_names;

/* docker manifest.json entry: RepoTags, else --tag */
int shl_load__names_repotags(struct loader *L, const shl_json *entry, shl_load_names *out);
/* index.json descriptor: io.containerd.image.name, a full ref.name, or a
 * tag-only ref.name paired with manifest.json's RepoTags; else --tag */
int shl_load__names_oci(struct loader *L, const shl_json *desc, shl_load_names *out);
/* --tag (if given) */
int shl_load__names_tag(struct loader *L, shl_load_names *out);
void shl_load__names_free(shl_load_names *n);

#endif
