/*
 * fuzz/fuzz_tarparse.c - the layer front end on arbitrary bytes: instream
 * (compression sniffing, gzip/zstd) -> tar parser -> fstree -> finalize ->
 * EROFS writer (index mode, into a memfd). Must never crash or leak.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store/erofs_write.h"
#include "store/fstree.h"
#include "store/tarparse.h"
#include "util/instream.h"

struct mem {
	const uint8_t *p;
	size_t left;
};

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
	struct mem *m = ctx;
	size_t n = len < m->left ? len : m->left;

	if (n > 4099)
		n = 4099; /* odd chunking exercises buffer boundaries */
	memcpy(buf, m->p, n);
	m->p += n;
	m->left -= n;
	return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	shl_fstree_limits lim = SHL_FSTREE_LIMITS_DEFAULT;
	struct mem m = { data, size };
	shl_instream *in = NULL;
	shl_fstree *t = NULL;
	shl_instream_result res;
	int fd = memfd_create("fuzz", 0);

	lim.max_entries = 10000;
	if (fd < 0)
		return 0;
	if (shl_instream_new(&in, mem_read, &m, -1) == 0 && shl_fstree_new(&t, &lim) == 0 &&
	    shl_tarparse(t, in) == 0 && shl_instream_finish(in, &res) == 0 &&
	    shl_fstree_finalize(t) == 0) {
		shl_erofs_wopts o;
		memset(&o, 0, sizeof(o));
		o.mode = SHL_EROFS_INDEX;
		o.tar_size = res.plain_size;
		shl_erofs_write(t, &o, fd, NULL);
	}
	shl_instream_free(in);
	shl_fstree_free(t);
	close(fd);
	return 0;
}
