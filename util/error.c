/*
 * util/error.c - the thread-local last error (see shale/error.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

#define MSG_MAX 1024

static _Thread_local int last_code;
static _Thread_local int last_errno;
static _Thread_local char last_msg[MSG_MAX];

int shl_error_code(void) { return last_code; }
int shl_error_errno(void) { return last_errno; }
const char *shl_error_last(void) { return last_msg; }

void shl_error_clear(void)
{
	last_code = 0;
	last_errno = 0;
	last_msg[0] = '\0';
}

const char *shl_error_name(int code)
{
	static const char *const names[] = {
		"OK", "EINVAL", "ENOMEM", "EIO", "EFORMAT", "ENOTFOUND", "EEXISTS",
		"EDIGEST", "ELIMIT", "EUNSUPPORTED", "ENOSPC", "EAUTH", "ENET",
		"EBUSY", "EPERM", "ECANCELED",
	};
	if (code > 0 || -code >= (int)(sizeof(names) / sizeof(names[0])))
		return "EUNKNOWN";
	return names[-code];
}

/* Replace control characters so a hostile name can't forge extra lines. */
static void sanitize(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

__attribute__((format(printf, 3, 0)))
static void vset(int code, int err, const char *fmt, va_list ap)
{
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	sanitize(last_msg);
	last_code = code;
	last_errno = err;
}

int shl_err(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vset(code, 0, fmt, ap);
	va_end(ap);
	return code;
}

static int map_errno(int code, int err)
{
	if (code != SHL_EIO)
		return code;
	switch (err) {
	case ENOSPC: case EDQUOT: return SHL_ENOSPC;
	case ENOENT: return SHL_ENOTFOUND;
	case EEXIST: return SHL_EEXISTS;
	case ENOMEM: return SHL_ENOMEM;
	case EPERM: case EACCES: case EROFS: return SHL_EPERM;
	case EBUSY: return SHL_EBUSY;
	default: return SHL_EIO;
	}
}

int shl_err_sys(int code, const char *fmt, ...)
{
	int err = errno;
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vset(map_errno(code, err), err, fmt, ap);
	va_end(ap);
	n = strlen(last_msg);
	if (n < sizeof(last_msg) - 3)
		snprintf(last_msg + n, sizeof(last_msg) - n, ": %s", strerror(err));
	errno = err;
	return last_code;
}

int shl_err_ctx(int code, const char *fmt, ...)
{
	char prefix[MSG_MAX], old[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	sanitize(prefix);
	memcpy(old, last_msg, sizeof(old));
	{
		/* prefix + ": " + old, truncated to the buffer */
		size_t pl = strnlen(prefix, MSG_MAX - 1), ol = strnlen(old, MSG_MAX - 1), w = 0;
		memcpy(last_msg, prefix, pl);
		w = pl;
		if (ol && w + 2 < MSG_MAX) {
			memcpy(last_msg + w, ": ", 2);
			w += 2;
			if (ol > MSG_MAX - 1 - w)
				ol = MSG_MAX - 1 - w;
			memcpy(last_msg + w, old, ol);
			w += ol;
		}
		last_msg[w] = '\0';
	}
	if (!last_code)
		last_code = code;
	return last_code;
}
