/*
 * fetch/http.h - the libcurl layer of the registry client: easy handles set
 * up the same way everywhere (timeouts, TLS, redirects, user agent, header
 * capture), one-shot requests into a capped memory buffer, and parsers for
 * the headers the registry client reads (WWW-Authenticate, Content-Range,
 * Retry-After).
 */
#ifndef SHL_FETCH_HTTP_H
#define SHL_FETCH_HTTP_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

#include "shale/registry.h"

/* Response headers the client looks at (of the final response after
 * redirects; each reset when a new status line arrives). */
struct shl_http_hdrs {
	char www_auth[2048];
	char content_type[256];
	char docker_digest[80];
	char location[4096];
	char content_range[128];
	char retry_after[32];
	int64_t content_length;     /* -1 unknown */
	long status;                /* of the last status line */
};

/* An easy handle with shale's settings: timeouts and TLS from opts, HTTP/1.1
 * and 2, redirects followed (at most 10; curl drops Authorization on a
 * cross-host hop), headers parsed into *h (may be NULL). */
CURL *shl_http_easy(const shl_reg_opts *o, struct shl_http_hdrs *h);

/* One request into memory (at most cap bytes: beyond that SHL_ELIMIT).
 * method NULL: GET. body/body_len: request body (PUT/POST). hdrs: extra
 * request headers (may be NULL). *status gets the final status. Transport
 * failures are SHL_ENET with curl's message; HTTP statuses are not errors
 * here. *out is NUL-terminated and malloc'd (also for error statuses). */
struct shl_http_req {
	const char *method;
	const char *url;
	struct curl_slist *hdrs;
	const void *body;
	size_t body_len;
	size_t cap;
	int no_body;                /* HEAD */
};
int shl_http_do(const shl_reg_opts *o, const struct shl_http_req *rq, long *status, struct shl_http_hdrs *h,
		char **out, size_t *out_len);

/* WWW-Authenticate: scheme and the parameters a registry client needs.
 * Accepts RFC 7235 syntax (token68 or comma-separated auth-params with
 * token or quoted-string values); only the first challenge is read. */
struct shl_www_auth {
	char scheme[16];            /* "bearer" / "basic" (lowercased) */
	char realm[1024];
	char service[256];
	char scope[1024];
	char error[64];
};
int shl_http_parse_www_auth(const char *value, struct shl_www_auth *out);

/* "bytes START-END/TOTAL" -> start (and end/total, -1 for '*'); SHL_EFORMAT. */
int shl_http_parse_content_range(const char *v, int64_t *start, int64_t *end, int64_t *total);

/* Retry-After in seconds (delta form; HTTP dates count as `fallback`). */
int shl_http_retry_after(const char *v, int fallback);

/* The message of a registry error body ({"errors":[{"code":..,"message":..}]})
 * or of a status, into buf ("401 UNAUTHORIZED: authentication required"). */
void shl_http_error_text(long status, const char *body, size_t len, char *buf, size_t buflen);

#endif
