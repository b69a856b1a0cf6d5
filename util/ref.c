/*
 * util/ref.c - docker-style image references (shale/ref.h), following the
 * distribution reference grammar: domain detection ('.', ':' or
 * "localhost"), lowercase path components with [._-] separators, tags of
 * [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}, sha256 digests.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "shale/ref.h"
#include "util/err.h"
#include "util/hash.h"

static int bad(const char *s, const char *why)
{
	return shl_err(SHL_EFORMAT, "invalid reference format: '%.200s': %s", s, why);
}

/* Copy src into dst (size cap); 0 if it fit. */
static int put(char *dst, size_t cap, const char *prefix, const char *src)
{
	size_t pl = strlen(prefix), sl = strlen(src);

	if (pl + sl + 1 > cap)
		return -1;
	memcpy(dst, prefix, pl);
	memcpy(dst + pl, src, sl + 1);
	return 0;
}

static int valid_component(const char *c, size_t n)
{
	/* [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
	size_t i = 0;
	if (!n || !(islower((unsigned char)c[0]) || isdigit((unsigned char)c[0])))
		return 0;
	while (i < n) {
		if (islower((unsigned char)c[i]) || isdigit((unsigned char)c[i])) {
			i++;
			continue;
		}
		size_t j = i;
		if (c[i] == '.') {
			j++;
		} else if (c[i] == '_') {
			j++;
			if (j < n && c[j] == '_')
				j++;
		} else if (c[i] == '-') {
			while (j < n && c[j] == '-')
				j++;
		} else {
			return 0;
		}
		if (j >= n || !(islower((unsigned char)c[j]) || isdigit((unsigned char)c[j])))
			return 0;
		i = j;
	}
	return 1;
}

static int valid_domain(const char *d)
{
	if (!*d)
		return 0;
	if (d[0] == '[') /* [ipv6]:port */
		return strchr(d, ']') != NULL;
	for (const char *p = d; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == ':'))
			return 0;
	return d[0] != '-' && d[0] != '.';
}

int shl_ref_parse(const char *s, shl_ref *out)
{
	char buf[512], *name, *at, *colon, *slash;
	size_t n = strlen(s);

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return bad(s, "empty");
	if (n >= sizeof(buf))
		return bad(s, "too long");
	memcpy(buf, s, n + 1);
	name = buf;
	at = strchr(name, '@');
	if (at) {
		uint8_t d[32];
		*at = '\0';
		if (shl_digest_parse(at + 1, d) != 0)
			return bad(s, "bad digest");
		put(out->digest, sizeof(out->digest), "", at + 1);
	}
	slash = strrchr(name, '/');
	colon = strrchr(name, ':');
	if (colon && (!slash || colon > slash)) {
		const char *t = colon + 1;
		size_t tl = strlen(t);
		*colon = '\0';
		if (tl == 0 || tl > 128 || !(isalnum((unsigned char)t[0]) || t[0] == '_'))
			return bad(s, "bad tag");
		for (size_t i = 0; i < tl; i++)
			if (!(isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
				return bad(s, "bad tag");
		memcpy(out->tag, t, tl + 1);
	}
	/* domain? */
	slash = strchr(name, '/');
	if (slash) {
		*slash = '\0';
		if (strchr(name, '.') || strchr(name, ':') || !strcmp(name, "localhost") || name[0] == '[') {
			if (!valid_domain(name))
				return bad(s, "bad registry host");
			if (put(out->domain, sizeof(out->domain), "", name))
				return bad(s, "registry host too long");
			name = slash + 1;
		} else {
			*slash = '/';
		}
	}
	if (!out->domain[0] || !strcmp(out->domain, "index.docker.io") || !strcmp(out->domain, "registry-1.docker.io")) {
		memset(out->domain, 0, sizeof(out->domain)); /* equal references compare equal byte for byte */
		put(out->domain, sizeof(out->domain), "", "docker.io");
	}
	/* path components */
	if (!*name)
		return bad(s, "empty repository name");
	for (const char *c = name;;) {
		const char *e = strchr(c, '/');
		size_t cl = e ? (size_t)(e - c) : strlen(c);
		if (!valid_component(c, cl)) {
			for (size_t i = 0; i < cl; i++)
				if (isupper((unsigned char)c[i]))
					return bad(s, "repository name must be lowercase");
			return bad(s, "bad repository name");
		}
		if (!e)
			break;
		c = e + 1;
	}
	if (put(out->path, sizeof(out->path),
		!strcmp(out->domain, "docker.io") && !strchr(name, '/') ? "library/" : "", name))
		return bad(s, "repository name too long");
	if (strlen(out->domain) + 1 + strlen(out->path) > 255)
		return bad(s, "repository name too long");
	if (!out->tag[0] && !out->digest[0])
		put(out->tag, sizeof(out->tag), "", "latest");
	return 0;
}

void shl_ref_repo(const shl_ref *r, int familiar, char *buf, size_t len)
{
	if (familiar && !strcmp(r->domain, "docker.io")) {
		/* docker's familiar form, except where it would not parse back to
		 * the same reference: "library/" goes only from a one-component
		 * remainder, and "docker.io/" stays when the first component would
		 * be taken for a registry host ("docker.io/a.b/c") */
		const char *p = r->path, *slash;
		if (!strncmp(p, "library/", 8) && !strchr(p + 8, '/'))
			p += 8;
		slash = strchr(p, '/');
		if (!slash || (!memchr(p, '.', (size_t)(slash - p)) && !memchr(p, ':', (size_t)(slash - p)) &&
			       !((size_t)(slash - p) == 9 && !strncmp(p, "localhost", 9)))) {
			snprintf(buf, len, "%s", p);
			return;
		}
	}
	snprintf(buf, len, "%s/%s", r->domain, r->path);
}

static void with_suffix(const shl_ref *r, int familiar, char *buf, size_t len)
{
	size_t n;

	shl_ref_repo(r, familiar, buf, len);
	n = strlen(buf);
	if (r->tag[0] && n < len)
		n += (size_t)snprintf(buf + n, len - n, ":%s", r->tag);
	if (r->digest[0] && n < len)
		snprintf(buf + n, len - n, "@%s", r->digest);
}

void shl_ref_full(const shl_ref *r, char *buf, size_t len) { with_suffix(r, 0, buf, len); }
void shl_ref_familiar(const shl_ref *r, char *buf, size_t len) { with_suffix(r, 1, buf, len); }
