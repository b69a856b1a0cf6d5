/*
 * fetch/creds.h - registry credentials. First match wins: the --auth value;
 * docker's config.json ($DOCKER_CONFIG or ~/.docker: credHelpers[host],
 * auths[host], credsStore); the enroot-compatible netrc-style file
 * ($SHALE_CREDENTIALS, default $XDG_CONFIG_HOME/shale/credentials) whose
 * `$VAR` / `$(cmd)` passwords are expanded by running /bin/sh.
 */
#ifndef SHL_FETCH_CREDS_H
#define SHL_FETCH_CREDS_H

#include <stddef.h>

struct shl_creds {
	char user[256];
	char secret[4096];
	char source[64];    /* where they came from, for messages */
};

/* host: registry host as in references ("docker.io", "localhost:5000").
 * auth: "user:secret" or NULL. want_user: only entries for this user (or NULL).
 * Returns 1 found, 0 none, < 0 error (a helper or file that fails). */
int shl_creds_lookup(const char *host, const char *auth, const char *want_user, struct shl_creds *out);

/* "Basic base64(user:secret)" into buf. */
int shl_creds_basic(const struct shl_creds *c, char *buf, size_t len);

/* netrc-style parsing, exposed for tests: every `machine H login U password P`
 * entry of `text` (comments with '#') whose H equals host; the last wins as
 * in enroot. Passwords are returned unexpanded. */
int shl_creds_parse_netrc(const char *text, const char *host, const char *want_user, struct shl_creds *out);

#endif
