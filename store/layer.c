/*
 * store/layer.c - convert one layer stream into a stored tar + EROFS image
 * (shale/layer.h): instream (decompress, tee, hash) -> tarparse -> fstree ->
 * erofs_write. This is the orchestration point where errors get the layer
 * context added.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shale/layer.h"
#include "store/erofs_write.h"
#include "store/fstree.h"
#include "store/tarparse.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

/* RFC 4122 name-based UUID from the diff_id, so an image's bytes depend only
 * on its tar (containerd derives its EROFS UUIDs from the digest likewise). */
static void uuid_from_digest(const char *diff_id, uint8_t uuid[16])
{
	uint8_t h[32];
	char buf[96];
	int n = snprintf(buf, sizeof(buf), "shale-erofs:%s", diff_id);

	shl_sha256_buf(buf, (size_t)n, h);
	memcpy(uuid, h, 16);
	uuid[6] = (uint8_t)((uuid[6] & 0x0f) | 0x50);
	uuid[8] = (uint8_t)((uuid[8] & 0x3f) | 0x80);
}

/* XXH3-128 of a whole file, read back through the page cache. */
static int xxh3_fd(int fd, uint8_t out[16])
{
	shl_xxh3 *h = NULL;
	uint8_t *buf = NULL;
	off_t off = 0;
	int rc = 0;

	if ((rc = shl_xxh3_new(&h)))
		return rc;
	buf = malloc(1u << 20);
	if (!buf) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = pread(fd, buf, 1u << 20, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = shl_err_sys(SHL_EIO, "read back EROFS image");
			goto out;
		}
		if (n == 0)
			break;
		shl_xxh3_update(h, buf, (size_t)n);
		off += n;
	}
	shl_xxh3_final(h, out);
out:
	free(buf);
	shl_xxh3_free(h);
	return rc;
}

static int convert(shl_layer_read_fn fn, void *ctx, int in_fd, const shl_layer_opts *o,
		   shl_layer_info *info)
{
	shl_fstree_limits lim = SHL_FSTREE_LIMITS_DEFAULT;
	shl_instream *in = NULL;
	shl_fstree *t = NULL;
	shl_instream_result res;
	shl_erofs_wopts wo;
	int rc;

	memset(info, 0, sizeof(*info));
	if (!o || o->version != SHL_LAYER_OPTS_VERSION || o->tar_fd < 0 || o->erofs_fd < 0 ||
	    (o->mode != SHL_LAYER_INDEX && o->mode != SHL_LAYER_FULL))
		return shl_err(SHL_EINVAL, "layer convert: bad options");
	if (o->max_entries)
		lim.max_entries = o->max_entries;
	rc = fn ? shl_instream_new(&in, (shl_read_fn)fn, ctx, o->tar_fd)
		: shl_instream_new_fd(&in, in_fd, o->tar_fd);
	if (rc || (rc = shl_fstree_new(&t, &lim)))
		goto out;
	if ((rc = shl_tarparse(t, in)))
		goto out;
	if ((rc = shl_instream_finish(in, &res)))
		goto out;
	if ((rc = shl_fstree_finalize(t)))
		goto out;

	shl_digest_str(res.plain_sha256, info->diff_id);
	memcpy(info->tar_sha256, res.plain_sha256, 32);
	memcpy(info->tar_xxh3, res.plain_xxh3, 16);
	info->tar_size = res.plain_size;
	info->compression = res.compression;
	shl_digest_str(res.raw_sha256, info->raw_digest);
	info->raw_size = res.raw_size;
	info->entries = shl_fstree_nentries(t);

	memset(&wo, 0, sizeof(wo));
	wo.mode = o->mode == SHL_LAYER_FULL ? SHL_EROFS_FULL : SHL_EROFS_INDEX;
	wo.tar_fd = o->tar_fd;
	wo.tar_size = res.plain_size;
	uuid_from_digest(info->diff_id, wo.uuid);
	if ((rc = shl_erofs_write(t, &wo, o->erofs_fd, &info->erofs_size)))
		goto out;
	rc = xxh3_fd(o->erofs_fd, info->erofs_xxh3);
out:
	shl_instream_free(in);
	shl_fstree_free(t);
	return rc;
}

int shl_layer_convert(shl_layer_read_fn fn, void *ctx, const shl_layer_opts *o,
		      shl_layer_info *info)
{
	if (!fn)
		return shl_err(SHL_EINVAL, "layer convert: no source");
	return convert(fn, ctx, -1, o, info);
}

int shl_layer_convert_fd(int in_fd, const shl_layer_opts *o, shl_layer_info *info)
{
	return convert(NULL, NULL, in_fd, o, info);
}
