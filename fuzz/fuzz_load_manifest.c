/*
 * fuzz/fuzz_load_manifest.c - the loader's entry table and manifest resolver
 * (load/entries.c, resolve.c, names.c, platform.c) on arbitrary archives of
 * JSON documents: index.json / manifest.json, nested indexes, manifests,
 * configs, with platform selection, names, --tag. Must never crash or leak.
 *
 * Input: one option byte (bit 0 --all-platforms, bit 1 --tag, bits 2-3 the
 * --platform), then documents separated by NUL bytes. Document 0 is
 * "manifest.json" if it starts with '[' (docker-archive) or '{' with
 * "schemaVersion" but no "manifests" ("dir:" layout), else "index.json";
 * document i > 0 is the blob "blobs/sha256/<its sha256>"; a document
 * "#NAME\n..." is the entry NAME holding the rest. So that a fuzzer
 * can write references, "@k" (k = 1..9) in document i < k is replaced by the
 * hex sha256 of document k (documents are processed last to first). The
 * documents lie in a memfd like a seekable archive; layer-looking ones
 * (gzip/zstd magic, ustar) become pending layers which, when an image needs
 * them, are "converted" to a layer whose diff_id is their sha256.
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "load/load_int.h"
#include "shale/error.h"
#include "util/hash.h"

#define MAX_DOCS 16

static shl_store *store;
static char store_dir[] = "/tmp/shl-fuzz-load-XXXXXX";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	shl_store_close(store);
	store = NULL;
	nftw(store_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

struct mem {
	const uint8_t *p;
	size_t left;
};

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
	struct mem *m = ctx;
	size_t n = len < m->left ? len : m->left;

	memcpy(buf, m->p, n);
	m->p += n;
	m->left -= n;
	return (ssize_t)n;
}

/* Replace "@k" (k > i) by the hex digest of document k. */
static char *expand(const char *s, size_t len, size_t i, char hex[][65], size_t ndocs, size_t *out_len)
{
	char *o = malloc(len * 33 + 1);
	size_t w = 0;

	if (!o)
		return NULL;
	for (size_t r = 0; r < len; r++) {
		if (s[r] == '@' && r + 1 < len && s[r + 1] >= '1' && s[r + 1] <= '9') {
			size_t k = (size_t)(s[r + 1] - '0');
			if (k > i && k < ndocs) {
				memcpy(o + w, hex[k], 64);
				w += 64;
				r++;
				continue;
			}
		}
		o[w++] = s[r];
	}
	*out_len = w;
	return o;
}

static void run(const uint8_t *data, size_t size, int fd)
{
	static const char *const plats[] = { NULL, "linux/arm64", "linux/amd64/v2", "windows/amd64" };
	shl_load_opts o = SHL_LOAD_OPTS_INIT;
	struct loader L;
	const char *doc[MAX_DOCS];
	size_t dlen[MAX_DOCS], ndocs = 0, off = 0;
	char *exp[MAX_DOCS] = { 0 }, hex[MAX_DOCS][65];
	size_t elen[MAX_DOCS];
	uint8_t flags = data[0];
	const uint8_t *p = data + 1, *end = data + size;

	o.all_platforms = flags & 1;
	o.tag = flags & 2 ? "fuzz/tagged:1" : NULL;
	o.platform = plats[(flags >> 2) & 3];
	while (p <= end && ndocs < MAX_DOCS) {
		const uint8_t *z = memchr(p, 0, (size_t)(end - p));
		doc[ndocs] = (const char *)p;
		dlen[ndocs++] = z ? (size_t)(z - p) : (size_t)(end - p);
		if (!z)
			break;
		p = z + 1;
	}
	for (size_t i = ndocs; i-- > 0;) {
		uint8_t d[32];
		const char *nl;
		size_t skip = 0;
		if (!(exp[i] = expand(doc[i], dlen[i], i, hex, ndocs, &elen[i])))
			goto out;
		/* "@k" is the digest of the bytes, without a "#NAME\n" line */
		if (elen[i] && exp[i][0] == '#' && (nl = memchr(exp[i], '\n', elen[i])))
			skip = (size_t)(nl + 1 - exp[i]);
		shl_sha256_buf(exp[i] + skip, elen[i] - skip, d);
		shl_hex(d, 32, hex[i]);
	}
	memset(&L, 0, sizeof(L));
	L.s = store;
	L.o = &o;
	L.fd = fd;
	L.seekable = 1;
	if (ftruncate(fd, 0) != 0 || shl_batch_new(&L.batch) != 0)
		goto out;
	for (size_t i = 0; i < ndocs; i++) {
		char name[100], norm[100];
		const char *body = exp[i];
		size_t blen = elen[i];
		const char *nl = blen && body[0] == '#' ? memchr(body, '\n', blen) : NULL;
		struct mem m;
		struct entry_src src = { .rd = mem_read, .rd_ctx = &m };
		struct entry_loc loc = { NULL, off };
		if (nl) {
			snprintf(name, sizeof(name), "%.*s", (int)(nl - body - 1), body + 1);
			blen -= (size_t)(nl + 1 - body);
			body = nl + 1;
		}
		m.p = (const uint8_t *)body;
		m.left = blen;
		if (pwrite(fd, body, blen, (off_t)off) != (ssize_t)blen)
			goto done;
		off += blen;
		if (nl) {
			if (shl_load__norm_name(name, norm, sizeof(norm)) != 0 || !norm[0])
				continue;
			memcpy(name, norm, sizeof(name));
		} else if (i == 0 && elen[0] && exp[0][0] == '[')
			snprintf(name, sizeof(name), "manifest.json");
		else if (i == 0 && memmem(exp[0], elen[0], "schemaVersion", 13) && !memmem(exp[0], elen[0], "manifests", 9))
			snprintf(name, sizeof(name), "manifest.json");
		else if (i == 0)
			snprintf(name, sizeof(name), "index.json");
		else
			snprintf(name, sizeof(name), "blobs/sha256/%.64s", hex[i]);
		if (shl_load__take_file(&L, name, (int64_t)blen, &src, &loc) != 0)
			goto done;
	}
	L.planning = 1;
	if (shl_load__resolve(&L) != 0)
		goto done;
	L.planning = 0;
	/* "convert" what the images need: diff_id = sha256 of the bytes */
	for (size_t i = 0; i < L.nitems; i++) {
		struct item *it = &L.items[i];
		if (it->kind == ITEM_PENDING && it->need && shl_load__hash_item(&L, it, it->diff_id) == 0)
			it->kind = ITEM_KNOWN;
	}
	shl_batch_free(L.batch);
	L.batch = NULL;
	L.ninbatch = 0;
	for (size_t i = 0; i < L.nloaded; i++)
		free(L.loaded[i]);
	free(L.loaded);
	L.loaded = NULL;
	L.nloaded = 0;
	if (shl_batch_new(&L.batch) == 0)
		shl_load__resolve(&L);
done:
	shl_batch_free(L.batch);
	shl_load__items_free(&L);
	free(L.inbatch);
	free(L.configs);
	for (size_t i = 0; i < L.nloaded; i++)
		free(L.loaded[i]);
	free(L.loaded);
out:
	for (size_t i = 0; i < ndocs; i++)
		free(exp[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;

	if (size < 1 || size > (1 << 16))
		return 0;
	if (!store) {
		if (!mkdtemp(store_dir) || shl_store_open(&store, store_dir) != 0)
			abort();
		atexit(cleanup);
		fd = memfd_create("fuzz-load", 0);
		if (fd < 0)
			abort();
	}
	run(data, size, fd);
	shl_error_clear();
	return 0;
}
