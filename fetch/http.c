/*
 * fetch/http.c - libcurl easy handles configured once for the registry
 * client, one-shot requests into capped memory buffers, and the response
 * header parsers (fetch/http.h). The header parsers see hostile input: they
 * never read past the value and truncate instead of overflowing.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fetch/http.h"
#include "util/err.h"
#include "util/json.h"

#ifndef SHL_VERSION
#define SHL_VERSION "0"
#endif

/* ---- header capture ---------------------------------------------------------- */

static void copy_trim(char *dst, size_t cap, const char *v, size_t n)
{
	while (n && (*v == ' ' || *v == '\t')) {
		v++;
		n--;
	}
	while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t n, void *ud)
{
	struct shl_http_hdrs *h = ud;
	size_t len = size * n;
	static const struct {
		const char *name;
		size_t off, cap;
	} want[] = {
		{ "www-authenticate", offsetof(struct shl_http_hdrs, www_auth), sizeof(((struct shl_http_hdrs *)0)->www_auth) },
		{ "content-type", offsetof(struct shl_http_hdrs, content_type), sizeof(((struct shl_http_hdrs *)0)->content_type) },
		{ "docker-content-digest", offsetof(struct shl_http_hdrs, docker_digest), sizeof(((struct shl_http_hdrs *)0)->docker_digest) },
		{ "location", offsetof(struct shl_http_hdrs, location), sizeof(((struct shl_http_hdrs *)0)->location) },
		{ "content-range", offsetof(struct shl_http_hdrs, content_range), sizeof(((struct shl_http_hdrs *)0)->content_range) },
		{ "retry-after", offsetof(struct shl_http_hdrs, retry_after), sizeof(((struct shl_http_hdrs *)0)->retry_after) },
	};
	const char *colon;

	if (len >= 5 && !memcmp(buf, "HTTP/", 5)) {
		memset(h, 0, sizeof(*h));
		h->content_length = -1;
		const char *sp = memchr(buf, ' ', len);
		if (sp && (size_t)(sp - buf) + 4 <= len && isdigit((unsigned char)sp[1]))
			h->status = strtol(sp + 1, NULL, 10);
		return len;
	}
	if (!(colon = memchr(buf, ':', len)))
		return len;
	size_t nl = (size_t)(colon - buf);
	const char *v = colon + 1;
	size_t vl = len - nl - 1;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		if (strlen(want[i].name) == nl && !strncasecmp(buf, want[i].name, nl)) {
			char *dst = (char *)h + want[i].off;
			if (!dst[0]) /* the first of repeated headers (first challenge) */
				copy_trim(dst, want[i].cap, v, vl);
			return len;
		}
	}
	if (nl == 14 && !strncasecmp(buf, "content-length", 14)) {
		char tmp[32];
		copy_trim(tmp, sizeof(tmp), v, vl);
		char *end;
		long long x = strtoll(tmp, &end, 10);
		if (!*end && end != tmp && x >= 0)
			h->content_length = x;
	}
	return len;
}

CURL *shl_http_easy(const shl_reg_opts *o, struct shl_http_hdrs *h)
{
	CURL *c = curl_easy_init();

	if (!c)
		return NULL;
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "shale/" SHL_VERSION);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(o->connect_timeout > 0 ? o->connect_timeout : 30));
	/* a transfer times out when it moves < 1 byte/s for transfer_timeout seconds */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)(o->transfer_timeout > 0 ? o->transfer_timeout : 60));
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, o->tls_verify ? 1L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o->tls_verify ? 2L : 0L);
	if (o->ca_cert && *o->ca_cert)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_cert);
	curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, NULL);
	if (h) {
		memset(h, 0, sizeof(*h));
		h->content_length = -1;
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
	}
	return c;
}

/* ---- one-shot requests ------------------------------------------------------- */

struct membuf {
	char *p;
	size_t len, cap, limit;
	int over;
};

static size_t on_body(char *buf, size_t size, size_t n, void *ud)
{
	struct membuf *m = ud;
	size_t len = size * n;

	if (m->len + len > m->limit) {
		m->over = 1;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (m->len + len + 1 > m->cap) {
		size_t nc = m->cap ? m->cap : 4096;
		while (nc < m->len + len + 1)
			nc *= 2;
		char *np = realloc(m->p, nc);
		if (!np)
			return 0;
		m->p = np;
		m->cap = nc;
	}
	memcpy(m->p + m->len, buf, len);
	m->len += len;
	m->p[m->len] = '\0';
	return len;
}

struct bodysrc {
	const char *p;
	size_t len, off;
};

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
	struct bodysrc *b = ud;
	size_t k = size * n;

	if (k > b->len - b->off)
		k = b->len - b->off;
	memcpy(buf, b->p + b->off, k);
	b->off += k;
	return k;
}

int shl_http_do(const shl_reg_opts *o, const struct shl_http_req *rq, long *status, struct shl_http_hdrs *h,
		char **out, size_t *out_len)
{
	struct shl_http_hdrs local;
	struct membuf m = { NULL, 0, 0, rq->cap ? rq->cap : (1u << 20), 0 };
	struct bodysrc src = { rq->body, rq->body_len, 0 };
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *c = shl_http_easy(o, h ? h : &local);
	CURLcode cc;
	int rc = 0;

	*status = 0;
	if (out)
		*out = NULL;
	if (out_len)
		*out_len = 0;
	if (!c)
		return shl_err(SHL_ENOMEM, "curl_easy_init failed");
	curl_easy_setopt(c, CURLOPT_URL, rq->url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
	if (rq->hdrs)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, rq->hdrs);
	if (rq->no_body)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	if (rq->body || (rq->method && (!strcmp(rq->method, "PUT") || !strcmp(rq->method, "POST") ||
					  !strcmp(rq->method, "PATCH")))) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &src);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
	}
	if (rq->method && !rq->no_body)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	if (m.over) {
		rc = shl_err(SHL_ELIMIT, "%s: response body larger than %zu bytes", rq->url, m.limit);
	} else if (cc != CURLE_OK) {
		rc = shl_err(SHL_ENET, "%s: %s", rq->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
	}
	curl_easy_cleanup(c);
	if (rc) {
		free(m.p);
		return rc;
	}
	if (!m.p && !(m.p = calloc(1, 1)))
		return shl_err(SHL_ENOMEM, "out of memory");
	if (out) {
		*out = m.p;
		if (out_len)
			*out_len = m.len;
	} else {
		free(m.p);
	}
	return 0;
}

/* ---- header parsers ---------------------------------------------------------- */

static int tchar(int c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

int shl_http_parse_www_auth(const char *v, struct shl_www_auth *out)
{
	const char *p = v;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	while (*p == ' ' || *p == '\t')
		p++;
	while (tchar((unsigned char)*p)) {
		if (n + 1 < sizeof(out->scheme))
			out->scheme[n++] = (char)tolower((unsigned char)*p);
		p++;
	}
	out->scheme[n] = '\0';
	if (!n)
		return shl_err(SHL_EFORMAT, "WWW-Authenticate: no auth scheme in '%.100s'", v);
	for (;;) {
		char key[32], val[1024];
		size_t kl = 0, vl = 0;
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		while (tchar((unsigned char)*p)) {
			if (kl + 1 < sizeof(key))
				key[kl++] = (char)tolower((unsigned char)*p);
			p++;
		}
		key[kl] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (!kl || *p != '=') {
			/* token68 or a second challenge: nothing more for us */
			break;
		}
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				if (vl + 1 < sizeof(val))
					val[vl++] = *p;
				p++;
			}
			if (*p != '"')
				return shl_err(SHL_EFORMAT, "WWW-Authenticate: unterminated quoted value in '%.100s'", v);
			p++;
		} else {
			while (tchar((unsigned char)*p) || *p == '/' || *p == ':') {
				if (vl + 1 < sizeof(val))
					val[vl++] = *p;
				p++;
			}
		}
		val[vl] = '\0';
		if (!strcmp(key, "realm"))
			snprintf(out->realm, sizeof(out->realm), "%.1023s", val);
		else if (!strcmp(key, "service"))
			snprintf(out->service, sizeof(out->service), "%.255s", val);
		else if (!strcmp(key, "scope"))
			snprintf(out->scope, sizeof(out->scope), "%.1023s", val);
		else if (!strcmp(key, "error"))
			snprintf(out->error, sizeof(out->error), "%.63s", val);
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != ',')
			break; /* junk or the next challenge */
	}
	return 0;
}

int shl_http_parse_content_range(const char *v, int64_t *start, int64_t *end, int64_t *total)
{
	long long a, b;
	char tot[32];
	int k = 0;

	if (sscanf(v, "bytes %lld-%lld/%31s%n", &a, &b, tot, &k) != 3 || a < 0 || b < a)
		return shl_err(SHL_EFORMAT, "Content-Range: cannot parse '%.60s'", v);
	*start = a;
	*end = b;
	if (!strcmp(tot, "*")) {
		*total = -1;
	} else {
		char *e;
		long long t = strtoll(tot, &e, 10);
		if (*e || t <= b)
			return shl_err(SHL_EFORMAT, "Content-Range: bad total in '%.60s'", v);
		*total = t;
	}
	return 0;
}

int shl_http_retry_after(const char *v, int fallback)
{
	char *e;
	long x;

	if (!v || !*v)
		return fallback;
	x = strtol(v, &e, 10);
	if (*e || x < 0)
		return fallback;
	return x > 60 ? 60 : (int)x;
}

void shl_http_error_text(long status, const char *body, size_t len, char *buf, size_t buflen)
{
	shl_json *j = NULL;
	const char *code = NULL, *msg = NULL;

	if (body && len && len < (1u << 20) && shl_json_parse(&j, body, len, 1u << 20, "error body") == 0) {
		shl_json *e0 = shl_json_at(shl_json_get(j, "errors"), 0);
		code = shl_json_get_str(e0, "code");
		msg = shl_json_get_str(e0, "message");
	}
	shl_error_clear();
	if (code || msg)
		snprintf(buf, buflen, "%ld %s%s%.200s", status, code ? code : "", code && msg ? ": " : "", msg ? msg : "");
	else
		snprintf(buf, buflen, "HTTP %ld", status);
	shl_json_put(j);
}
