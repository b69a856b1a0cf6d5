/*
 * fetch/registry.c - a registry session (fetch/registry.h): scheme choice,
 * the /v2/ ping, WWW-Authenticate Bearer token flow (Docker token protocol,
 * anonymous or with credentials, tokens cached per scope) and Basic auth,
 * and authenticated requests with retries.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fetch/registry.h"
#include "fetch/curl_dl.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/json.h"

#define TOKEN_CAP (1u << 20)

double shl_reg_backoff(int attempt)
{
	double d = 0.25;

	for (int i = 0; i < attempt && d < 8; i++)
		d *= 2;
	return d > 8 ? 8 : d;
}

static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) != 0) {
	}
}

void shl_reg_auth_hint(const char *ref, char *buf, size_t len)
{
	snprintf(buf, len,
		 "; if docker or podman on this host can pull it, try: docker pull %s && shale import dockerd://%s", ref,
		 ref);
}

static int is_loopback(const char *host)
{
	return !strncmp(host, "localhost", 9) || !strncmp(host, "127.", 4) || !strncmp(host, "[::1]", 5);
}

int shl_reg_open(struct shl_reg **out, const char *host, const char *user, const shl_reg_opts *o)
{
	struct shl_reg *r;
	int rc;

	*out = NULL;
	if ((rc = shl_curl_load()))
		return rc;
	r = calloc(1, sizeof(*r));
	if (!r)
		return shl_err(SHL_ENOMEM, "out of memory");
	r->o = o;
	snprintf(r->host, sizeof(r->host), "%s", host);
	if (user)
		snprintf(r->want_user, sizeof(r->want_user), "%s", user);
	snprintf(r->base, sizeof(r->base), "%s://%s", o->allow_http ? "http" : "https",
		 !strcmp(host, "docker.io") ? "registry-1.docker.io" : host);
	pthread_mutex_init(&r->mu, NULL);
	*out = r;
	return 0;
}

void shl_reg_close(struct shl_reg *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->ntokens; i++) {
		if (r->tokens[i].header)
			explicit_bzero(r->tokens[i].header, strlen(r->tokens[i].header));
		free(r->tokens[i].header);
	}
	explicit_bzero(&r->creds, sizeof(r->creds));
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* ---- ping ---------------------------------------------------------------------- */

static int ping_once(struct shl_reg *r, long *status, struct shl_http_hdrs *h)
{
	char url[400];
	struct shl_http_req rq = { .url = url, .cap = 1u << 16 };
	char *body = NULL;
	int rc;

	snprintf(url, sizeof(url), "%s/v2/", r->base);
	rc = shl_http_do(r->o, &rq, status, h, &body, NULL);
	free(body);
	return rc;
}

static int ping_locked(struct shl_reg *r)
{
	struct shl_http_hdrs h;
	long status = 0;
	int rc = 0, attempt = 0;

	if (r->pinged)
		return 0;
	for (;;) {
		rc = ping_once(r, &status, &h);
		if (rc == SHL_ENET && !strncmp(r->base, "https:", 6) && is_loopback(r->host)) {
			/* loopback registries may speak plain HTTP (docker does the same) */
			char https_err[300];
			snprintf(https_err, sizeof(https_err), "%s", shl_error_last());
			snprintf(r->base, sizeof(r->base), "http://%s", r->host);
			rc = ping_once(r, &status, &h);
			if (rc) {
				snprintf(r->base, sizeof(r->base), "https://%s", r->host);
				rc = shl_err(SHL_ENET, "registry %s: %s (over http: %s)", r->host, https_err, shl_error_last());
			}
		}
		if ((rc == SHL_ENET || status >= 500 || status == 429) && attempt < r->o->retries &&
		    !(r->o->cancel && *r->o->cancel)) {
			nap(rc ? shl_reg_backoff(attempt) : shl_http_retry_after(h.retry_after, 1));
			attempt++;
			continue;
		}
		break;
	}
	if (rc)
		return shl_err_ctx(rc, "registry %s", r->host);
	if (status == 401) {
		if ((rc = shl_http_parse_www_auth(h.www_auth, &r->chal)))
			return shl_err_ctx(rc, "registry %s", r->host);
		if (strcmp(r->chal.scheme, "bearer") && strcmp(r->chal.scheme, "basic"))
			return shl_err(SHL_EUNSUPPORTED, "registry %s: unsupported auth scheme '%s'", r->host, r->chal.scheme);
		if (!strcmp(r->chal.scheme, "bearer") && !r->chal.realm[0])
			return shl_err(SHL_EFORMAT, "registry %s: Bearer challenge without a realm", r->host);
	} else if (status != 200 && status != 404) {
		/* 404: not a v2 registry at this root, but some proxies answer so; go on */
		return shl_err(SHL_ENET, "registry %s: GET /v2/ answered %ld", r->host, status);
	}
	r->pinged = 1;
	return 0;
}

int shl_reg_ping(struct shl_reg *r)
{
	pthread_mutex_lock(&r->mu);
	int rc = ping_locked(r);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* ---- auth ---------------------------------------------------------------------- */

static int creds(struct shl_reg *r)
{
	if (!r->creds_state) {
		int rc = shl_creds_lookup(r->host, r->o->auth, r->want_user[0] ? r->want_user : NULL, &r->creds);
		if (rc < 0)
			return shl_err_ctx(rc, "credentials for %s", r->host);
		r->creds_state = rc == 1 ? 1 : 2;
	}
	return r->creds_state == 1;
}

static int fetch_token(struct shl_reg *r, const char *scope, struct shl_reg_token *t)
{
	char url[4096], auth[4400], msg[300];
	struct curl_slist *hdrs = NULL;
	struct shl_http_req rq = { .url = url, .cap = TOKEN_CAP };
	CURL *esc = curl_easy_init();
	shl_json *j = NULL;
	char *body = NULL;
	size_t len = 0, n;
	long status = 0;
	int rc, have;
	const char *tok;

	if (!esc)
		return shl_err(SHL_ENOMEM, "out of memory");
	n = (size_t)snprintf(url, sizeof(url), "%s%s", r->chal.realm, strchr(r->chal.realm, '?') ? "&" : "?");
	if (r->chal.service[0]) {
		char *e = curl_easy_escape(esc, r->chal.service, 0);
		n += (size_t)snprintf(url + n, sizeof(url) - n, "service=%s", e ? e : "");
		curl_free(e);
	}
	for (const char *p = scope; *p && n < sizeof(url);) {
		size_t k = strcspn(p, " ");
		char one[512];
		snprintf(one, sizeof(one), "%.*s", (int)k, p);
		char *e = curl_easy_escape(esc, one, 0);
		n += (size_t)snprintf(url + n, sizeof(url) - n, "&scope=%s", e ? e : "");
		curl_free(e);
		p += k;
		while (*p == ' ')
			p++;
	}
	curl_easy_cleanup(esc);
	if (n >= sizeof(url))
		return shl_err(SHL_ELIMIT, "registry %s: token URL too long", r->host);
	if ((have = creds(r)) < 0)
		return have;
	if (have) {
		if ((rc = shl_creds_basic(&r->creds, auth + 15, sizeof(auth) - 15)))
			return rc;
		memcpy(auth, "Authorization: ", 15);
		hdrs = curl_slist_append(hdrs, auth);
		explicit_bzero(auth, sizeof(auth));
	}
	rq.hdrs = hdrs;
	for (int attempt = 0;; attempt++) {
		rc = shl_http_do(r->o, &rq, &status, NULL, &body, &len);
		if ((rc == SHL_ENET || status >= 500 || status == 429) && attempt < r->o->retries &&
		    !(r->o->cancel && *r->o->cancel)) {
			free(body);
			body = NULL;
			nap(shl_reg_backoff(attempt));
			continue;
		}
		break;
	}
	curl_slist_free_all(hdrs);
	if (rc) {
		rc = shl_err_ctx(rc, "token for %s", r->host);
		goto out;
	}
	if (status == 401 || status == 403) {
		shl_http_error_text(status, body, len, msg, sizeof(msg));
		rc = have ? shl_err(SHL_EAUTH, "registry %s: token server refused user '%s' (%s): %s", r->host,
				    r->creds.user, r->creds.source, msg)
			  : shl_err(SHL_EAUTH, "registry %s: token server refused anonymous access: %s", r->host, msg);
		goto out;
	}
	if (status != 200) {
		shl_http_error_text(status, body, len, msg, sizeof(msg));
		rc = shl_err(SHL_ENET, "registry %s: token server answered %s", r->host, msg);
		goto out;
	}
	if ((rc = shl_json_parse(&j, body, len, TOKEN_CAP, "token response")))
		goto out;
	tok = shl_json_get_str(j, "token");
	if (!tok || !*tok)
		tok = shl_json_get_str(j, "access_token");
	if (!tok || !*tok || strlen(tok) > 64 * 1024 || strpbrk(tok, "\r\n")) {
		rc = shl_err(SHL_EFORMAT, "registry %s: token response has no usable token", r->host);
		goto out;
	}
	int64_t exp = 60;
	shl_json_get_int(j, "expires_in", &exp);
	if (exp < 60)
		exp = 60; /* the spec's minimum */
	free(t->header);
	if (!(t->header = malloc(strlen(tok) + 32))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	sprintf(t->header, "Authorization: Bearer %s", tok);
	t->expires = shl_clock_now() + (double)exp - 10;
	snprintf(t->scope, sizeof(t->scope), "%s", scope);
out:
	shl_json_put(j);
	if (body)
		explicit_bzero(body, len);
	free(body);
	return rc;
}

static int auth_locked(struct shl_reg *r, const char *scope, int refresh, struct curl_slist **hdrs)
{
	char hdr[4400];
	struct shl_reg_token *t = NULL;
	struct curl_slist *n;
	int rc, have;

	if ((rc = ping_locked(r)))
		return rc;
	if (!r->chal.scheme[0])
		return 0;
	if (!strcmp(r->chal.scheme, "basic")) {
		if ((have = creds(r)) < 0)
			return have;
		if (!have)
			return shl_err(SHL_EAUTH, "registry %s wants a user name and password (none in --auth, docker "
					       "config.json or the credentials file)", r->host);
		memcpy(hdr, "Authorization: ", 15);
		if ((rc = shl_creds_basic(&r->creds, hdr + 15, sizeof(hdr) - 15)))
			return rc;
		n = curl_slist_append(*hdrs, hdr);
		explicit_bzero(hdr, sizeof(hdr));
		if (!n)
			return shl_err(SHL_ENOMEM, "out of memory");
		*hdrs = n;
		return 0;
	}
	for (size_t i = 0; i < r->ntokens; i++)
		if (!strcmp(r->tokens[i].scope, scope))
			t = &r->tokens[i];
	if (!t) {
		if (r->ntokens == SHL_REG_MAX_TOKENS) {
			/* forget the oldest */
			free(r->tokens[0].header);
			memmove(&r->tokens[0], &r->tokens[1], (SHL_REG_MAX_TOKENS - 1) * sizeof(r->tokens[0]));
			r->ntokens--;
		}
		t = &r->tokens[r->ntokens];
		memset(t, 0, sizeof(*t));
		if ((rc = fetch_token(r, scope, t))) {
			free(t->header);
			memset(t, 0, sizeof(*t));
			return rc;
		}
		r->ntokens++;
	} else if (refresh || shl_clock_now() > t->expires) {
		if ((rc = fetch_token(r, scope, t)))
			return rc;
	}
	if (!(n = curl_slist_append(*hdrs, t->header)))
		return shl_err(SHL_ENOMEM, "out of memory");
	*hdrs = n;
	return 0;
}

int shl_reg_auth(struct shl_reg *r, const char *scope, int refresh, struct curl_slist **hdrs)
{
	pthread_mutex_lock(&r->mu);
	int rc = auth_locked(r, scope, refresh, hdrs);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/* ---- requests ------------------------------------------------------------------ */

int shl_reg_request(struct shl_reg *r, const char *scope, const struct shl_http_req *rq0, long *status,
		    struct shl_http_hdrs *h, char **out, size_t *out_len)
{
	struct shl_http_req rq = *rq0;
	struct shl_http_hdrs lh;
	char url[4200];
	int rc, refreshed = 0;

	if (!h)
		h = &lh;

	if (!strncmp(rq0->url, "http://", 7) || !strncmp(rq0->url, "https://", 8))
		snprintf(url, sizeof(url), "%s", rq0->url); /* an absolute Location */
	else
		snprintf(url, sizeof(url), "%s%s", r->base, rq0->url);
	rq.url = url;
	for (int attempt = 0;; attempt++) {
		struct curl_slist *hdrs = NULL;
		for (struct curl_slist *x = rq0->hdrs; x; x = x->next)
			hdrs = curl_slist_append(hdrs, x->data);
		if ((rc = shl_reg_auth(r, scope, 0, &hdrs))) {
			curl_slist_free_all(hdrs);
			return rc;
		}
		if (!strncmp(rq0->url, "/", 1))
			snprintf(url, sizeof(url), "%s%s", r->base, rq0->url); /* base may have changed in the ping */
		rq.hdrs = hdrs;
		if (out)
			*out = NULL;
		rc = shl_http_do(r->o, &rq, status, h, out, out_len);
		curl_slist_free_all(hdrs);
		if (r->o->cancel && *r->o->cancel) {
			if (out) {
				free(*out);
				*out = NULL;
			}
			return shl_err(SHL_ECANCELED, "interrupted");
		}
		if (!rc && *status == 401 && !refreshed && r->chal.scheme[0]) {
			/* the token expired or needs a wider scope: once more with a fresh one */
			refreshed = 1;
			pthread_mutex_lock(&r->mu);
			for (size_t i = 0; i < r->ntokens; i++)
				if (!strcmp(r->tokens[i].scope, scope))
					r->tokens[i].expires = 0;
			pthread_mutex_unlock(&r->mu);
			if (out) {
				free(*out);
				*out = NULL;
			}
			attempt--;
			continue;
		}
		if ((rc == SHL_ENET || (!rc && (*status >= 500 || *status == 429))) && attempt < r->o->retries) {
			double d = rc ? shl_reg_backoff(attempt)
				      : (double)shl_http_retry_after(h->retry_after, 0);
			if (!rc && d == 0)
				d = shl_reg_backoff(attempt);
			if (out) {
				free(*out);
				*out = NULL;
			}
			nap(d);
			continue;
		}
		return rc;
	}
}
