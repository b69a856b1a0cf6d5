/*
 * load/names.c - the names an archive gives an image: RepoTags of a docker
 * manifest.json entry; io.containerd.image.name of an index.json descriptor;
 * org.opencontainers.image.ref.name, either a full reference (podman,
 * skopeo) or a tag only (Docker, containerd), which is paired with the
 * RepoTags that manifest.json lists for the same config (Docker >= 25
 * writes both); --tag names what has no name. References are validated
 * (and normalized) where the image record is written (load/resolve.c);
 * tag-only names that cannot form a valid reference are dropped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load/load_int.h"
#include "load/names.h"
#include "shale/ref.h"
#include "util/err.h"

void shl_load__names_free(shl_load_names *n)
{
	for (size_t i = 0; i < n->n; i++)
		free(n->v[i]);
	free(n->v);
	memset(n, 0, sizeof(*n));
}

static int push(shl_load_names *n, const char *s)
{
	char **v;

	for (size_t i = 0; i < n->n; i++)
		if (!strcmp(n->v[i], s))
			return 0;
	if (n->n >= 1024)
		return shl_err(SHL_ELIMIT, "image: more than 1024 names");
	if (!(v = realloc(n->v, (n->n + 1) * sizeof(*v))))
		return shl_err(SHL_ENOMEM, "out of memory");
	n->v = v;
	if (!(v[n->n] = strdup(s)))
		return shl_err(SHL_ENOMEM, "out of memory");
	n->n++;
	return 0;
}

int shl_load__names_tag(struct loader *L, shl_load_names *out)
{
	int rc;

	if (!L->o->tag || !*L->o->tag)
		return 0;
	if ((rc = push(out, L->o->tag)))
		return rc;
	out->from_tag = 1;
	return 0;
}

int shl_load__names_repotags(struct loader *L, const shl_json *entry, shl_load_names *out)
{
	shl_json *tags = shl_json_get(entry, "RepoTags");
	int rc = 0;

	for (size_t k = 0; k < shl_json_len(tags) && !rc; k++) {
		const char *t = shl_json_str(shl_json_at(tags, k));
		if (!t)
			return shl_err(SHL_EFORMAT, "manifest.json: RepoTags holds a non-string");
		rc = push(out, t);
	}
	if (!rc && !out->n)
		rc = shl_load__names_tag(L, out);
	return rc;
}

/* The config digest of the manifest a descriptor points to ("" if unknown). */
static void config_of(struct loader *L, const shl_json *desc, char out[72])
{
	struct item *mi = shl_load__find_blob(L, shl_json_get_str(desc, "digest"));
	shl_json *m = NULL;
	const char *c;

	out[0] = '\0';
	if (!mi || mi->kind != ITEM_META || shl_json_parse(&m, mi->data, mi->len, SHL_MANIFEST_CAP, "manifest"))
		return;
	c = shl_json_get_str(shl_json_get(m, "config"), "digest");
	if (c && strlen(c) < 72)
		snprintf(out, 72, "%s", c);
	shl_json_put(m);
}

/* "repo:tag" when it parses as a reference */
static int push_valid(shl_load_names *out, const char *repo, const char *tag)
{
	char buf[1200];
	shl_ref r;

	snprintf(buf, sizeof(buf), "%s:%s", repo, tag);
	if (shl_ref_parse(buf, &r) != 0 || r.digest[0]) {
		shl_error_clear();
		return 0;
	}
	return push(out, buf);
}

/* Docker >= 25: ref.name is the tag; manifest.json has the repository. */
static int pair_tag(struct loader *L, const shl_json *desc, const char *tag, shl_load_names *out)
{
	struct item *mj = shl_load__find(L, "manifest.json");
	shl_json *m = NULL;
	char cfg[72];
	int rc = 0;

	config_of(L, desc, cfg);
	if (!cfg[0] || !mj || mj->kind != ITEM_META || mj->len == 0 || mj->data[0] != '[')
		return 0;
	if (shl_json_parse(&m, mj->data, mj->len, SHL_LOAD_META_CAP, "manifest.json") != 0) {
		shl_error_clear(); /* index.json decides; manifest.json only helps naming */
		return 0;
	}
	for (size_t i = 0; i < shl_json_len(m) && !rc && !out->n; i++) {
		shl_json *e = shl_json_at(m, i), *tags = shl_json_get(e, "RepoTags");
		const char *cp = shl_json_get_str(e, "Config");
		struct item *ci = cp ? shl_load__follow(L, cp) : NULL;
		char first[600] = "";
		if (!ci || ci->kind != ITEM_META || strcmp(ci->digest, cfg))
			continue;
		for (size_t k = 0; k < shl_json_len(tags) && !rc; k++) {
			const char *t = shl_json_str(shl_json_at(tags, k));
			shl_ref r;
			if (!t || shl_ref_parse(t, &r) != 0) {
				shl_error_clear();
				continue;
			}
			if (!first[0])
				shl_ref_repo(&r, 1, first, sizeof(first));
			if (!strcmp(r.tag, tag))
				rc = push(out, t);
		}
		if (!rc && !out->n && first[0])
			rc = push_valid(out, first, tag);
	}
	shl_json_put(m);
	return rc;
}

int shl_load__names_oci(struct loader *L, const shl_json *desc, shl_load_names *out)
{
	shl_json *ann = shl_json_get(desc, "annotations");
	const char *full = shl_json_get_str(ann, "io.containerd.image.name");
	const char *rn = shl_json_get_str(ann, "org.opencontainers.image.ref.name");
	int rc;

	if (full && *full)
		return push(out, full);
	if (rn && (strchr(rn, '/') || strchr(rn, ':'))) {
		shl_ref r;
		/* a full reference (podman, skopeo); "name@digest" names nothing */
		if (shl_ref_parse(rn, &r) == 0 && !(r.digest[0] && !r.tag[0]))
			return push(out, rn);
		shl_error_clear();
	} else if (rn && *rn) {
		if ((rc = pair_tag(L, desc, rn, out)))
			return rc;
	}
	return out->n ? 0 : shl_load__names_tag(L, out);
}
