/*
 * shale/registry.h - the OCI registry client: `pull` images into a store,
 * `push` stored images, and `import` from a local Docker or Podman.
 *
 * Pull speaks the OCI distribution API over libcurl: manifests with every
 * Accept type (OCI index/manifest, Docker list/v2), nested indexes, platform
 * selection, blobs downloaded in parallel on one curl multi handle into
 * resumable partial files (<root>/downloads) while they are converted, each
 * blob's digest and each layer's diff_id verified before the one-transaction
 * commit. Auth: WWW-Authenticate Bearer tokens (anonymous or with
 * credentials, cached per scope) and Basic. Credentials, first match wins:
 * opts.auth, ~/.docker/config.json (auths, credHelpers, credsStore), the
 * netrc-style file $SHALE_CREDENTIALS (docs/registry.md).
 */
#ifndef SHALE_REGISTRY_H
#define SHALE_REGISTRY_H

#include <stdint.h>
#include "shale/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Connection settings; every field has an environment default (docs/registry.md). */
typedef struct shl_reg_opts {
	const char *auth;        /* "user:secret" for every registry, or NULL */
	const char *ca_cert;     /* PEM bundle to verify TLS with ($SHALE_CA_CERT) */
	int tls_verify;          /* 1 (default); 0 skips verification */
	int allow_http;          /* plain HTTP for every registry ($SHALE_ALLOW_HTTP);
	                            loopback registries fall back to it anyway */
	int max_connections;     /* parallel blob downloads ($SHALE_MAX_CONNECTIONS, 4) */
	int connect_timeout;     /* seconds ($SHALE_CONNECT_TIMEOUT, 30) */
	int transfer_timeout;    /* seconds without progress ($SHALE_TRANSFER_TIMEOUT, 60) */
	int retries;             /* per request ($SHALE_TRANSFER_RETRIES, 5) */
	volatile int *cancel;    /* set non-zero (e.g. from a signal handler) to stop */
} shl_reg_opts;

/* Fill o with the environment's settings (the defaults when unset). */
void shl_reg_opts_default(shl_reg_opts *o);

/* Progress of a pull or push, always on the calling thread. */
enum shl_reg_event_kind {
	SHL_REG_RESOLVED,   /* text: the manifest digest the reference resolved to */
	SHL_REG_LAYER,      /* a layer: status text ("Waiting", "Already exists",
	                       "Downloading", "Verifying", "Pull complete", "Pushed",
	                       "Layer already exists", "Mounted from ..."); current/total bytes */
	SHL_REG_PROGRESS,   /* bytes moved for a layer (current/total) */
	SHL_REG_RETRY,      /* text: why a request is retried */
	SHL_REG_DONE,       /* text: the name stored / pushed */
};
typedef struct shl_reg_event {
	int kind;
	const char *digest;     /* the blob (layers), else NULL */
	const char *text;
	uint64_t current, total;
} shl_reg_event;
typedef void (*shl_reg_fn)(void *ctx, const shl_reg_event *ev);

typedef struct shl_pull_opts {
	shl_reg_opts reg;
	const char *platform;    /* "os/arch[/variant]"; NULL: the host's */
	int all_platforms;       /* store every platform (the name goes to the chosen one) */
	const char *name;        /* store under this name instead of the reference */
} shl_pull_opts;

/* Pull `ref` (docker reference or docker://[USER@][REGISTRY#]IMAGE[:TAG]).
 * The manifest digest the registry served is recorded as a repo digest
 * (repo@sha256:...). out_manifest (may be NULL) gets the stored image's
 * manifest digest. On error nothing is committed; partial blobs stay in
 * <root>/downloads to be resumed by the next pull. */
int shl_pull(shl_store *s, const char *ref, const shl_pull_opts *o, shl_reg_fn fn, void *ctx,
	     char out_manifest[72]);

/* Parse a pull reference into a normalized docker reference (into buf) and an
 * optional user name (enroot's USER@), e.g. "docker://alice@ghcr.io#org/x:1"
 * -> "ghcr.io/org/x:1", user "alice". */
int shl_pull_ref(const char *in, char *ref, size_t ref_len, char *user, size_t user_len);

/* bhatti's local name for a reference: "python:3.12" -> "python-3.12",
 * "ghcr.io/org/base:latest" -> "base-latest". */
int shl_pull_local_name(const char *ref, char *buf, size_t len);

typedef struct shl_push_opts {
	shl_reg_opts reg;
	const char *compress;    /* "gzip" (default) or "zstd" */
} shl_push_opts;

/* Push stored image `ref` to `dest` (a reference; NULL: ref itself). */
int shl_push(shl_store *s, const char *ref, const char *dest, const shl_push_opts *o, shl_reg_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
