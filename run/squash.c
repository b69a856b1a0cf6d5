/*
 * run/squash.c - `squash`: merge layers (squash_merge.c) and write the result
 * as a full-mode EROFS image (store/erofs_write.c, data copied from the
 * layer tars), ext4 (squash_ext4.c) or a flat tar (squash_tar.c).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/squash_int.h"
#include "store/erofs_write.h"
#include "util/err.h"
#include "util/hash.h"

int shl_squash(const shl_squash_layer *layers, size_t n, const shl_squash_opts *o, int out_fd)
{
	shl_fstree *t = NULL;
	shl_erofs_wopts wo;
	int *fds = NULL;
	uint8_t h[32];
	int rc;

	if (!o || o->version != SHL_SQUASH_OPTS_VERSION || n == 0)
		return shl_err(SHL_EINVAL, "squash: bad options");
	if (o->format != SHL_SQUASH_EROFS && o->format != SHL_SQUASH_EXT4 && o->format != SHL_SQUASH_TAR)
		return shl_err(SHL_EINVAL, "squash: unknown format %d", o->format);
	fds = malloc(n * sizeof(*fds));
	if (!fds)
		return shl_err(SHL_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++)
		fds[i] = -1;
	for (size_t i = 0; i < n; i++) {
		fds[i] = open(layers[i].tar_path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0) {
			rc = shl_err_sys(SHL_EIO, "squash: open %s", layers[i].tar_path);
			goto out;
		}
		/* the stored tars may be cold (written with O_DIRECT): start reading
		 * them now, while the layer indexes are merged */
		posix_fadvise(fds[i], 0, 0, POSIX_FADV_WILLNEED);
	}
	if ((rc = shl_squash__merge(layers, n, &t)))
		goto out;
	if (o->format == SHL_SQUASH_EXT4) {
		rc = shl_squash__ext4(t, fds, (uint32_t)n, o->size, out_fd);
		goto out;
	}
	if (o->format == SHL_SQUASH_TAR) {
		rc = shl_squash__tar(t, fds, (uint32_t)n, out_fd);
		goto out;
	}
	memset(&wo, 0, sizeof(wo));
	wo.mode = SHL_EROFS_FULL;
	wo.tar_fd = fds[0];
	wo.src_fds = fds;
	wo.nsrc = (uint32_t)n;
	/* deterministic UUID from the layer list (file names: the store names
	 * layer images by diff_id, so this does not depend on where it lives) */
	{
		shl_sha256 *s;
		if ((rc = shl_sha256_new(&s)))
			goto out;
		for (size_t i = 0; i < n; i++) {
			const char *base = strrchr(layers[i].erofs_path, '/');
			base = base ? base + 1 : layers[i].erofs_path;
			shl_sha256_update(s, base, strlen(base) + 1);
		}
		shl_sha256_final(s, h);
		shl_sha256_free(s);
		memcpy(wo.uuid, h, 16);
	}
	rc = shl_erofs_write(t, &wo, out_fd, NULL);
out:
	for (size_t i = 0; fds && i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	shl_fstree_free(t);
	return rc;
}
