/*
 * shale/ref.h - image references, normalized as docker does:
 * "alpine" -> docker.io/library/alpine:latest, shown familiar ("alpine:latest").
 */
#ifndef SHALE_REF_H
#define SHALE_REF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shl_ref {
	char domain[256];   /* "docker.io", "ghcr.io", "localhost:5000" */
	char path[256];     /* "library/alpine" */
	char tag[129];      /* "" when none (then digest is set) */
	char digest[72];    /* "sha256:..." or "" */
} shl_ref;

/* Parse and normalize; SHL_EFORMAT with "invalid reference format: '...': why". */
int shl_ref_parse(const char *s, shl_ref *out);
/* "docker.io/library/alpine:latest" (":tag" and/or "@digest" as present). */
void shl_ref_full(const shl_ref *r, char *buf, size_t len);
/* "alpine:latest", "user/app:1", "ghcr.io/x/y:tag" (docker's familiar form). */
void shl_ref_familiar(const shl_ref *r, char *buf, size_t len);
/* Repository without tag/digest, full ("docker.io/library/alpine") or familiar ("alpine"). */
void shl_ref_repo(const shl_ref *r, int familiar, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
