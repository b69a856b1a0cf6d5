/*
 * util/err.h - internal helpers to set and extend the thread-local error.
 *
 * shl_err() sets a fresh message and returns the code so call sites read
 *     return shl_err(SHL_EFORMAT, "tar entry '%s': bad mode", name);
 * shl_err_ctx() prefixes context to the current message ("layer sha256:..: " + msg)
 * without losing the more specific text underneath.
 */
#ifndef SHL_UTIL_ERR_H
#define SHL_UTIL_ERR_H

#include "shale/error.h"

int shl_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like shl_err() and appends ": strerror(errno)"; the code is mapped from errno
 * when code is SHL_EIO (ENOSPC -> SHL_ENOSPC, ENOENT -> SHL_ENOTFOUND, ...). */
int shl_err_sys(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix context to the current message; returns the current code (or `code`
 * if no error is set). */
int shl_err_ctx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
