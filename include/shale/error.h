/*
 * shale/error.h - error codes and the thread-local last error.
 *
 * Every libshale function that can fail returns 0 or a negative SHL_E* code and
 * leaves a one-line message with context in a thread-local slot, read with
 * shl_error_last(). Codes are never renumbered.
 */
#ifndef SHALE_ERROR_H
#define SHALE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum shl_error_code {
	SHL_OK = 0,
	SHL_EINVAL = -1,     /* bad argument or usage */
	SHL_ENOMEM = -2,     /* out of memory */
	SHL_EIO = -3,        /* read/write/system call failed (errno kept) */
	SHL_EFORMAT = -4,    /* malformed input: tar, json, erofs, archive */
	SHL_ENOTFOUND = -5,  /* no such image/ref/layer/path */
	SHL_EEXISTS = -6,    /* already exists */
	SHL_EDIGEST = -7,    /* content does not match its digest */
	SHL_ELIMIT = -8,     /* a cap was exceeded (entries, sizes, depth) */
	SHL_EUNSUPPORTED = -9, /* valid but not supported (e.g. sparse tar entry) */
	SHL_ENOSPC = -10,    /* no space left */
	SHL_EAUTH = -11,     /* authentication failed */
	SHL_ENET = -12,      /* network failure */
	SHL_EBUSY = -13,     /* in use / locked */
	SHL_EPERM = -14,     /* not permitted */
	SHL_ECANCELED = -15, /* interrupted by the caller */
};

/** Code of the last error on this thread (0 if none). */
int shl_error_code(void);

/** errno saved with the last error (0 if none). */
int shl_error_errno(void);

/** One-line message of the last error on this thread ("" if none). Borrowed. */
const char *shl_error_last(void);

/** Symbolic name of a code, e.g. "EFORMAT". */
const char *shl_error_name(int code);

/** Forget the last error. */
void shl_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif
