/*
 * fetch/blobs.h - parallel blob downloads on one curl multi handle (one
 * thread), each into a partial file that persists across runs so a later
 * pull resumes it with `Range`. Readers consume a blob while it downloads:
 * shl_dl_read blocks until bytes arrive, so conversion overlaps the
 * transfer. Retries with backoff (or Retry-After) on transport errors, 5xx
 * and 429; a server that ignores Range is handled by skipping what the file
 * has; a body longer than the descriptor's size is cut off as an error.
 */
#ifndef SHL_FETCH_BLOBS_H
#define SHL_FETCH_BLOBS_H

#include <stdint.h>
#include <sys/types.h>

#include "fetch/registry.h"

struct shl_dlq;
struct shl_dl;

enum { SHL_DL_QUEUED, SHL_DL_ACTIVE, SHL_DL_DONE, SHL_DL_FAILED };

/* Start the engine for blobs of repository `repo` ("library/alpine") with
 * auth scope `scope`. */
int shl_dlq_start(struct shl_dlq **out, struct shl_reg *r, const char *repo, const char *scope);
/* Fail every download not finished ("interrupted"); readers wake up. */
void shl_dlq_cancel(struct shl_dlq *q);
/* Cancel what is running, join the thread, free every download. */
void shl_dlq_stop(struct shl_dlq *q);

/* Queue blob `digest` of `size` bytes (-1: unknown) into the partial file
 * `path` (created; resumed from its length). If another process holds that
 * file, a private one (path.<pid>, removed at the end) is used instead. */
int shl_dlq_add(struct shl_dlq *q, const char *digest, int64_t size, const char *path, struct shl_dl **out);

/* Read the next bytes of the blob (a shl_layer_read_fn): waits for the
 * download; 0 at its end; an error (message set) if it failed. */
ssize_t shl_dl_read(void *dl, void *buf, size_t len);
/* Start over from byte 0 (truncates the file; the reader rewinds). */
int shl_dl_restart(struct shl_dl *d);
/* Wait until the download finished: 0 or its error. */
int shl_dl_wait(struct shl_dl *d);
/* State, bytes written, and whether the file had bytes from an earlier run. */
void shl_dl_status(struct shl_dl *d, int *state, uint64_t *written, int *resumed);
/* The retry messages not yet taken (one per call, copied into buf); 0 if none. */
int shl_dlq_take_note(struct shl_dlq *q, char *buf, size_t len);
/* The file the blob goes to (path, or the private path.<pid>). */
const char *shl_dl_path(struct shl_dl *d);
/* Remove the partial file (after the blob is committed or found bad). */
void shl_dl_discard(struct shl_dl *d);

#endif
