/*
 * fetch/registry.h - one registry host: its base URL (https, or http when
 * allowed / as the loopback fallback), its auth challenge, credentials and
 * tokens cached per scope, and requests that authenticate and retry
 * (5xx/429/transport errors with backoff; 401 refreshes the token once).
 * Used by the pull and push engines; thread-safe.
 */
#ifndef SHL_FETCH_REGISTRY_H
#define SHL_FETCH_REGISTRY_H

#include <pthread.h>
#include "fetch/creds.h"
#include "fetch/http.h"

#define SHL_REG_MAX_TOKENS 8

struct shl_reg_token {
	char scope[512];
	char *header;       /* "Authorization: Bearer ..." */
	double expires;     /* monotonic seconds */
};

struct shl_reg {
	const shl_reg_opts *o;
	char host[256];     /* as in references ("docker.io", "127.0.0.1:5000") */
	char base[300];     /* "https://registry-1.docker.io" */
	char want_user[256];
	pthread_mutex_t mu;
	int pinged;
	struct shl_www_auth chal;  /* scheme "" when the registry wants no auth */
	int creds_state;           /* 0 not looked up, 1 found, 2 none */
	struct shl_creds creds;
	struct shl_reg_token tokens[SHL_REG_MAX_TOKENS];
	size_t ntokens;
};

/* Open a session (no network until the first request). user: enroot's
 * USER@ (only that user's credentials are used), or NULL. */
int shl_reg_open(struct shl_reg **out, const char *host, const char *user, const shl_reg_opts *o);
void shl_reg_close(struct shl_reg *r);

/* Ping /v2/ once: decides http/https, reads the auth challenge. */
int shl_reg_ping(struct shl_reg *r);

/* Append the Authorization header for `scope` ("repository:lib/x:pull";
 * several separated by spaces) to *hdrs; fetches a token when needed (or
 * anew with refresh). No header when the registry wants no auth. */
int shl_reg_auth(struct shl_reg *r, const char *scope, int refresh, struct curl_slist **hdrs);

/* A request to base + rq->url (a path), authenticated for scope, retried.
 * Returns 0 with *status set (any HTTP status), or an error (transport
 * failure after retries, auth failure, body over cap). */
int shl_reg_request(struct shl_reg *r, const char *scope, const struct shl_http_req *rq, long *status,
		    struct shl_http_hdrs *h, char **out, size_t *out_len);

/* Backoff before retry `attempt` (0-based), in seconds: 0.25 * 2^n, max 8. */
double shl_reg_backoff(int attempt);

/* The hint printed on 401/403 (fills buf): pull with docker, then import. */
void shl_reg_auth_hint(const char *ref, char *buf, size_t len);

#endif
