/*
 * run/squash_int.h - internals shared by the squash merge and its writers.
 */
#ifndef SHL_RUN_SQUASH_INT_H
#define SHL_RUN_SQUASH_INT_H

#include "shale/squash.h"
#include "store/fstree.h"

/* Merge the layers (bottom first) into one finalized tree whose regular
 * files point into layer `src`'s tar at data_off. */
int shl_squash__merge(const shl_squash_layer *layers, size_t n, shl_fstree **out);

/* Write the merged tree as ext4 into out_fd (size 0: automatic). */
int shl_squash__ext4(shl_fstree *t, const int *fds, uint32_t nsrc, uint64_t size, int out_fd);

/* Write the merged tree as one flat tar into out_fd. */
int shl_squash__tar(shl_fstree *t, const int *fds, uint32_t nsrc, int out_fd);

#endif
