/*
 * shale/run.h - run a command in a stored image: new mount, pid, uts and ipc
 * namespaces (net too with net_none), the image mounted writable on a
 * throwaway upper, /proc, a minimal /dev, the config's Env, WorkingDir, User,
 * Entrypoint and Cmd. Needs root. Everything is unmounted when it exits.
 */
#ifndef SHALE_RUN_H
#define SHALE_RUN_H

#include <stddef.h>
#include "shale/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shl_run_opts {
	const char *const *argv;   /* replaces the image's Cmd when argc > 0 */
	size_t argc;
	const char *const *env;    /* "K=V", added to / overriding the image's Env */
	size_t nenv;
	const char *workdir;       /* NULL: the image's WorkingDir */
	const char *user;          /* "uid[:gid]" or a name; NULL: the image's User */
	int net_none;              /* own empty network namespace (else the host's) */
} shl_run_opts;

/* *exit_status: the command's exit code, 128+signal, or 125/127 when it
 * could not be started (then an error is returned too). */
int shl_run(shl_store *s, const char *ref, const shl_run_opts *o, int *exit_status);

#ifdef __cplusplus
}
#endif
#endif
