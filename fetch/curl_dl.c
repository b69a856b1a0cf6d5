/*
 * fetch/curl_dl.c - libcurl, loaded on first use.
 *
 * libcurl and the ~26 libraries it pulls in (TLS, Kerberos, LDAP, IDN, ...)
 * cost every shale process their dynamic loading: `shale --help` took
 * 21 ms, ~9 ms of it for libcurl, although only pull, push and the registry
 * tests speak HTTP, while mount and run are called once per container start.
 * So shale does not link libcurl: the curl functions the fetch modules call
 * are defined here and forward to libcurl.so.4, opened by shl_curl_load()
 * (once, thread-safe) before any registry work. The variadic setopt/getinfo
 * pass their one argument on by its type class, as libcurl reads it.
 */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "fetch/curl_dl.h"
#include "util/err.h"

static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	CURLcode (*easy_perform)(CURL *);
	void (*easy_cleanup)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free_)(void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
	CURLMcode (*multi_add_handle)(CURLM *, CURL *);
	CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
	CURLMcode (*multi_perform)(CURLM *, int *);
	CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd[], unsigned int, int, int *);
	CURLMcode (*multi_wakeup)(CURLM *);
	CURLMsg *(*multi_info_read)(CURLM *, int *);
	CURLMcode (*multi_cleanup)(CURLM *);
} F;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static char why[300];
static void *lib; /* open for the life of the process */

#define SYM(field, name) \
	do { \
		*(void **)&F.field = dlsym(h, name); \
		if (!F.field) { \
			snprintf(why, sizeof(why), "libcurl.so.4 has no %s", name); \
			dlclose(h); \
			return; \
		} \
	} while (0)

static void load(void)
{
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		const char *e = dlerror();
		snprintf(why, sizeof(why), "%s", e ? e : "libcurl.so.4 not found");
		return;
	}
	SYM(global_init, "curl_global_init");
	SYM(easy_init, "curl_easy_init");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(easy_perform, "curl_easy_perform");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_strerror, "curl_easy_strerror");
	SYM(easy_escape, "curl_easy_escape");
	SYM(free_, "curl_free");
	SYM(slist_append, "curl_slist_append");
	SYM(slist_free_all, "curl_slist_free_all");
	SYM(multi_init, "curl_multi_init");
	SYM(multi_setopt, "curl_multi_setopt");
	SYM(multi_add_handle, "curl_multi_add_handle");
	SYM(multi_remove_handle, "curl_multi_remove_handle");
	SYM(multi_perform, "curl_multi_perform");
	SYM(multi_poll, "curl_multi_poll");
	SYM(multi_wakeup, "curl_multi_wakeup");
	SYM(multi_info_read, "curl_multi_info_read");
	SYM(multi_cleanup, "curl_multi_cleanup");
	if (F.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(why, sizeof(why), "curl_global_init failed");
		dlclose(h);
		return;
	}
	lib = h;
	loaded = 1;
}

int shl_curl_load(void)
{
	pthread_once(&once, load);
	return loaded ? 0
		      : shl_err(SHL_EUNSUPPORTED, "registry access needs libcurl (Debian: libcurl4): %s", why);
}

/* ---- the API the fetch modules use (valid once shl_curl_load() succeeded) -- */

CURL *curl_easy_init(void)
{
	return shl_curl_load() ? NULL : F.easy_init();
}

/* Pass setopt's one variadic argument on as the type its option number says
 * (libcurl's own rule: long, object pointer, function pointer, curl_off_t,
 * blob pointer by ranges of 10000). */
#define FORWARD_OPT(rc, fn, h, opt, ap) \
	do { \
		if ((opt) < CURLOPTTYPE_OBJECTPOINT) \
			rc = fn(h, opt, va_arg(ap, long)); \
		else if ((opt) < CURLOPTTYPE_FUNCTIONPOINT) \
			rc = fn(h, opt, va_arg(ap, void *)); \
		else if ((opt) < CURLOPTTYPE_OFF_T) \
			rc = fn(h, opt, va_arg(ap, void (*)(void))); \
		else if ((opt) < CURLOPTTYPE_BLOB) \
			rc = fn(h, opt, va_arg(ap, curl_off_t)); \
		else \
			rc = fn(h, opt, va_arg(ap, void *)); \
	} while (0)

CURLcode curl_easy_setopt(CURL *c, CURLoption opt, ...)
{
	va_list ap;
	CURLcode rc;

	va_start(ap, opt);
	FORWARD_OPT(rc, F.easy_setopt, c, opt, ap);
	va_end(ap);
	return rc;
}

CURLcode curl_easy_getinfo(CURL *c, CURLINFO info, ...)
{
	va_list ap;
	CURLcode rc;

	va_start(ap, info); /* every kind of info is returned through a pointer */
	rc = F.easy_getinfo(c, info, va_arg(ap, void *));
	va_end(ap);
	return rc;
}

CURLcode curl_easy_perform(CURL *c)
{
	return F.easy_perform(c);
}

void curl_easy_cleanup(CURL *c)
{
	if (c)
		F.easy_cleanup(c);
}

const char *curl_easy_strerror(CURLcode code)
{
	return loaded ? F.easy_strerror(code) : "libcurl not loaded";
}

char *curl_easy_escape(CURL *c, const char *s, int len)
{
	return F.easy_escape(c, s, len);
}

void curl_free(void *p)
{
	if (p)
		F.free_(p);
}

/* slists are built before any transfer: they may load libcurl */
struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s)
{
	return shl_curl_load() ? NULL : F.slist_append(l, s);
}

void curl_slist_free_all(struct curl_slist *l)
{
	if (l)
		F.slist_free_all(l);
}

CURLM *curl_multi_init(void)
{
	return shl_curl_load() ? NULL : F.multi_init();
}

CURLMcode curl_multi_setopt(CURLM *m, CURLMoption opt, ...)
{
	va_list ap;
	CURLMcode rc;

	va_start(ap, opt);
	FORWARD_OPT(rc, F.multi_setopt, m, opt, ap);
	va_end(ap);
	return rc;
}

CURLMcode curl_multi_add_handle(CURLM *m, CURL *c)
{
	return F.multi_add_handle(m, c);
}

CURLMcode curl_multi_remove_handle(CURLM *m, CURL *c)
{
	return F.multi_remove_handle(m, c);
}

CURLMcode curl_multi_perform(CURLM *m, int *running)
{
	return F.multi_perform(m, running);
}

CURLMcode curl_multi_poll(CURLM *m, struct curl_waitfd extra[], unsigned int n, int timeout_ms, int *numfds)
{
	return F.multi_poll(m, extra, n, timeout_ms, numfds);
}

CURLMcode curl_multi_wakeup(CURLM *m)
{
	return F.multi_wakeup(m);
}

CURLMsg *curl_multi_info_read(CURLM *m, int *left)
{
	return F.multi_info_read(m, left);
}

CURLMcode curl_multi_cleanup(CURLM *m)
{
	return m ? F.multi_cleanup(m) : CURLM_OK;
}
