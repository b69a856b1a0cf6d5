/*
 * store/tarparse.h - parse a layer tar stream (libarchive) into an fstree.
 *
 * Only store/tarparse.c includes <archive.h>. Handles ustar, pax (incl.
 * SCHILY.xattr.* and LIBARCHIVE.xattr.*), GNU long names/links. Regular file
 * data offsets are taken from libarchive's consumed-byte counter right after
 * each header and must be 512-aligned. GNU sparse entries and other types that
 * cannot be indexed in place are rejected with a clear error.
 */
#ifndef SHL_STORE_TARPARSE_H
#define SHL_STORE_TARPARSE_H

#include "store/fstree.h"
#include "util/instream.h"

/* Parse the whole tar from `in` into `t` (not finalized). Stops after the
 * tar's end marker; the caller drains the rest with shl_instream_finish().
 * Errors: "tar entry 'path': why" or "tar: why at offset N". */
int shl_tarparse(shl_fstree *t, shl_instream *in);

#endif
