/*
 * tests/test_save_world.h - shared by tests/test_save.c and
 * tests/test_save_peers.c: a store populated through the store internals
 * (independent of `shale load`) with three images -
 *   A  docker-archive style: synthesized plain manifest, two tags
 *   B  registry style: gzip layers (one shared with A), OCI manifest over the
 *      gzip blobs, a tag and repo digests (an index digest, its own digest)
 *   C  Docker schema 2 manifest over a plain layer, untagged
 * - plus a reader for the archives shale writes and save helpers. Functions
 * are static inline: each test uses a subset.
 */
#ifndef SHL_TEST_SAVE_WORLD_H
#define SHL_TEST_SAVE_WORLD_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "testbuf.h"
#include "shale/save.h"
#include "shale/store.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/json.h"

static char g_tmp[256];
/* ---- byte buffers, tars -------------------------------------------------------- */

static inline void tar_add(struct buf *t, const char *name, char type, const void *data, size_t len, const char *link)
{
	tar_entry(t, name, type, data, len, link, 1000);
}

static inline void tar_end(struct buf *t)
{
	uint8_t end[1024] = { 0 };

	buf_add(t, end, sizeof(end));
}

/* A layer: a directory, a file of `big` pseudo-random bytes, a small file, a symlink. */
static inline struct buf make_layer(const char *seed, size_t big)
{
	struct buf t = { 0 };
	char name[64], body[128];
	uint8_t *data = malloc(big + 1);
	uint32_t x = 2166136261u;

	for (const char *c = seed; *c; c++)
		x = (x ^ (uint8_t)*c) * 16777619u;
	for (size_t i = 0; i < big; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		data[i] = (uint8_t)x;
	}
	snprintf(name, sizeof(name), "%s/", seed);
	tar_add(&t, name, '5', NULL, 0, NULL);
	snprintf(name, sizeof(name), "%s/blob.bin", seed);
	tar_add(&t, name, '0', data, big, NULL);
	snprintf(name, sizeof(name), "%s/hello.txt", seed);
	snprintf(body, sizeof(body), "hello from layer %s\n", seed);
	tar_add(&t, name, '0', body, strlen(body), NULL);
	snprintf(name, sizeof(name), "%s/link", seed);
	tar_add(&t, name, '2', NULL, 0, "hello.txt");
	tar_end(&t);
	free(data);
	return t;
}

/* ---- populating the store ------------------------------------------------------ */

struct src {
	const uint8_t *p;
	size_t n, off;
};

static inline ssize_t src_read(void *ctx, void *out, size_t len)
{
	struct src *s = ctx;
	size_t k = s->n - s->off < len ? s->n - s->off : len;

	memcpy(out, s->p + s->off, k);
	s->off += k;
	return (ssize_t)k;
}

/* Stage `blob` (plain or gzip) into the batch; returns the layer's info. */
static inline void stage(shl_store *s, shl_batch *b, const struct buf *blob, const char *media, shl_layer_info *info)
{
	struct src src = { blob->p, blob->n, 0 };
	shl_staged st;
	char key[72], known[72];

	digest_of(blob->p, blob->n, key);
	memset(&st, 0, sizeof(st));
	CHECK_OK(shl_store__stage_key(s, key, src_read, &src, &st, known));
	CHECK(!known[0]);
	*info = st.info;
	CHECK_OK(shl_batch_add_layer(b, &st, media));
}

struct lay {
	const char *diff_id, *digest, *media;
	int64_t size, tar_size;
};

struct img {
	char manifest[72], config[72];
	char cfg[2048];
};

static inline void make_config(struct img *im, const char *salt, const struct lay *ls, size_t n)
{
	char *p = im->cfg;

	p += sprintf(p,
		     "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-01-02T03:04:05Z\","
		     "\"config\":{\"Env\":[\"PATH=/bin\",\"SALT=%s\"],\"Cmd\":[\"/bin/sh\"]},"
		     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
		     salt);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s\"%s\"", i ? "," : "", ls[i].diff_id);
	strcpy(p, "]}}");
	digest_of(im->cfg, strlen(im->cfg), im->config);
}

static inline void put_image(shl_batch *b, struct img *im, const char *mmedia, const char *man, size_t mlen,
		      const struct lay *ls, size_t n)
{
	shl_json *rec = shl_json_new_object(), *layers = shl_json_new_array();

	digest_of(man, mlen, im->manifest);
	for (size_t i = 0; i < n; i++) {
		shl_json *l = shl_json_new_object();
		shl_json_set_str(l, "diff_id", ls[i].diff_id);
		shl_json_set_str(l, "digest", ls[i].digest);
		shl_json_set_str(l, "media_type", ls[i].media);
		shl_json_set_int(l, "size", ls[i].size);
		shl_json_set_int(l, "tar_size", ls[i].tar_size);
		shl_json_push(layers, l);
	}
	shl_json_set_str(rec, "manifest", im->manifest);
	shl_json_set_str(rec, "media_type", mmedia);
	shl_json_set_str(rec, "config", im->config);
	shl_json_set_str(rec, "os", "linux");
	shl_json_set_str(rec, "architecture", "amd64");
	shl_json_set_int(rec, "created", 1704164645);
	shl_json_set_int(rec, "size", 0);
	shl_json_set(rec, "layers", layers);
	CHECK_OK(shl_batch_put_blob(b, im->manifest, mmedia, man, mlen));
	CHECK_OK(shl_batch_put_blob(b, im->config, "application/vnd.oci.image.config.v1+json", im->cfg, strlen(im->cfg)));
	CHECK_OK(shl_batch_put_image(b, im->manifest, rec));
}

/* A manifest over `ls` by hand (registry or docker schema 2 shapes). */
static inline size_t hand_manifest(char *out, const char *mmedia, const char *cmedia, const struct img *im,
			    const struct lay *ls, size_t n)
{
	char *p = out;

	p += sprintf(p, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\","
		     "\"size\":%zu},\"layers\":[",
		     mmedia, cmedia, im->config, strlen(im->cfg));
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%lld}", i ? "," : "", ls[i].media,
			     ls[i].digest, (long long)ls[i].size);
	p += sprintf(p, "]}");
	return (size_t)(p - out);
}

#define MT_TAR "application/vnd.oci.image.layer.v1.tar"
#define MT_GZ "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_OCI_M "application/vnd.oci.image.manifest.v1+json"
#define MT_D2_M "application/vnd.docker.distribution.manifest.v2+json"

struct world {
	char root[300];
	shl_layer_info l1, l2, l3, l4;
	struct buf t1, t2, t3, t4;
	struct img a, b, c;
	char b_index[72];       /* a registry index digest recorded as B's repo digest */
};

static inline void populate(struct world *w)
{
	shl_store *s = NULL;
	shl_batch *b = NULL;
	struct buf g1, g3;
	char man[8192], *synth = NULL;
	size_t slen;
	shl_json *sl;

	snprintf(w->root, sizeof(w->root), "%s/store", g_tmp);
	w->t1 = make_layer("one", 300000);
	w->t2 = make_layer("two", 5000);
	w->t3 = make_layer("three", 70000);
	w->t4 = make_layer("four", 1);
	g1 = gzip_buf(&w->t1);
	g3 = gzip_buf(&w->t3);
	CHECK_OK(shl_store_open(&s, w->root));

	/* batch 1: A (docker-archive style, synthesized manifest) and C (docker schema 2, plain) */
	CHECK_OK(shl_batch_new(&b));
	stage(s, b, &w->t1, NULL, &w->l1);
	stage(s, b, &w->t2, NULL, &w->l2);
	stage(s, b, &w->t4, NULL, &w->l4);
	{
		struct lay ls[2] = { { w->l1.diff_id, w->l1.diff_id, MT_TAR, (int64_t)w->l1.tar_size, (int64_t)w->l1.tar_size },
				     { w->l2.diff_id, w->l2.diff_id, MT_TAR, (int64_t)w->l2.tar_size, (int64_t)w->l2.tar_size } };
		make_config(&w->a, "a", ls, 2);
		sl = shl_json_new_array();
		for (int i = 0; i < 2; i++) {
			shl_json *e = shl_json_new_object();
			shl_json_set_str(e, "diff_id", ls[i].diff_id);
			shl_json_set_int(e, "tar_size", ls[i].tar_size);
			shl_json_push(sl, e);
		}
		CHECK_OK(shl_store__synth_manifest(sl, w->a.config, strlen(w->a.cfg), &synth, &slen, w->a.manifest));
		shl_json_put(sl);
		put_image(b, &w->a, MT_OCI_M, synth, slen, ls, 2);
		CHECK_OK(shl_batch_set_ref(b, "docker.io/library/alpha:1", w->a.manifest));
		CHECK_OK(shl_batch_set_ref(b, "docker.io/library/alpha:latest", w->a.manifest));
		free(synth);
	}
	{
		struct lay ls[1] = { { w->l4.diff_id, w->l4.diff_id, "application/vnd.docker.image.rootfs.diff.tar",
				       (int64_t)w->l4.tar_size, (int64_t)w->l4.tar_size } };
		make_config(&w->c, "c", ls, 1);
		slen = hand_manifest(man, MT_D2_M, "application/vnd.docker.container.image.v1+json", &w->c, ls, 1);
		put_image(b, &w->c, MT_D2_M, man, slen, ls, 1);
	}
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);

	/* batch 2: B from a "registry": gzip layers, one of them A's base */
	CHECK_OK(shl_batch_new(&b));
	stage(s, b, &g1, MT_GZ, &w->l1);
	stage(s, b, &g3, MT_GZ, &w->l3);
	{
		struct lay ls[2] = { { w->l1.diff_id, w->l1.raw_digest, MT_GZ, (int64_t)g1.n, (int64_t)w->l1.tar_size },
				     { w->l3.diff_id, w->l3.raw_digest, MT_GZ, (int64_t)g3.n, (int64_t)w->l3.tar_size } };
		char rd[300];
		make_config(&w->b, "b", ls, 2);
		slen = hand_manifest(man, MT_OCI_M, "application/vnd.oci.image.config.v1+json", &w->b, ls, 2);
		put_image(b, &w->b, MT_OCI_M, man, slen, ls, 2);
		CHECK_OK(shl_batch_set_ref(b, "registry.example:5000/team/beta:v1", w->b.manifest));
		digest_of("an index", 8, w->b_index);
		snprintf(rd, sizeof(rd), "registry.example:5000/team/beta@%s", w->b_index);
		CHECK_OK(shl_batch_set_ref(b, rd, w->b.manifest));
		snprintf(rd, sizeof(rd), "registry.example:5000/team/beta@%s", w->b.manifest);
		CHECK_OK(shl_batch_set_ref(b, rd, w->b.manifest));
	}
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	shl_store_close(s);
	free(g1.p);
	free(g3.p);
}

/* ---- reading an archive back ---------------------------------------------------- */

struct entry {
	char name[101];
	char type;
	uint64_t size;
	const uint8_t *data;
};

struct archive {
	struct buf raw;
	struct entry e[64];
	size_t n;
	int ok;          /* headers all well-formed and deterministic */
};

static inline uint64_t oct(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++)
		v = v * 8 + (uint64_t)(p[i] - '0');
	return v;
}

static inline struct buf read_file(const char *path)
{
	struct buf b = { 0 };
	uint8_t tmp[65536];
	ssize_t k;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return b;
	while ((k = read(fd, tmp, sizeof(tmp))) > 0)
		buf_add(&b, tmp, (size_t)k);
	close(fd);
	return b;
}

static inline void parse_archive(struct archive *a)
{
	size_t off = 0;

	a->ok = 1;
	a->n = 0;
	while (off + 512 <= a->raw.n) {
		const uint8_t *h = a->raw.p + off;
		struct entry *e;
		unsigned sum = 0;
		int zero = 1;
		for (int i = 0; i < 512; i++)
			zero &= h[i] == 0;
		if (zero) {
			/* two zero blocks end it, and nothing follows */
			a->ok &= off + 1024 == a->raw.n;
			return;
		}
		for (int i = 0; i < 512; i++)
			sum += (i >= 148 && i < 156) ? ' ' : h[i];
		if (a->n >= 64 || sum != oct(h + 148, 8) || memcmp(h + 257, "ustar\0" "00", 8)) {
			a->ok = 0;
			return;
		}
		e = &a->e[a->n++];
		memcpy(e->name, h, 100);
		e->name[100] = '\0';
		e->type = (char)h[156];
		e->size = oct(h + 124, 12);
		e->data = h + 512;
		/* deterministic fields: mtime 0, root, no names, fixed modes */
		a->ok &= oct(h + 136, 12) == 0 && oct(h + 108, 8) == 0 && oct(h + 116, 8) == 0;
		a->ok &= h[265] == 0 && h[297] == 0;
		a->ok &= oct(h + 100, 8) == (e->type == '5' ? 0755u : 0644u);
		off += 512 + (e->size + 511) / 512 * 512;
		if (off > a->raw.n)
			a->ok = 0;
	}
	a->ok = 0; /* no end marker */
}

static inline const struct entry *find(const struct archive *a, const char *name)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->e[i].name, name))
			return &a->e[i];
	return NULL;
}

static inline const struct entry *blob(const struct archive *a, const char *digest)
{
	char name[100];

	snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	return find(a, name);
}

static inline shl_json *json_of(const struct archive *a, const char *name)
{
	const struct entry *e = find(a, name);
	shl_json *j = NULL;

	if (!e || shl_json_parse(&j, e->data, e->size, 1u << 24, name) != 0)
		return NULL;
	return j;
}

static inline int load_archive(struct archive *a, const char *path)
{
	free(a->raw.p);
	memset(a, 0, sizeof(*a));
	a->raw = read_file(path);
	parse_archive(a);
	return a->ok;
}

static inline int same_bytes(const struct entry *e, const struct buf *b)
{
	return e && e->size == b->n && !memcmp(e->data, b->p, b->n);
}

/* ---- saving ------------------------------------------------------------------------ */

static inline int save_to(const char *root, const char *path, const char *const *refs, size_t n, int format, int compress,
		   const char *exclude)
{
	shl_save_opts o = SHL_SAVE_OPTS_INIT;
	shl_store *s = NULL;
	int fd, rc;

	o.format = format;
	o.compress = compress;
	o.exclude_layers = exclude;
	if ((rc = shl_store_open(&s, root)))
		return rc;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	rc = fd < 0 ? SHL_EIO : shl_save(s, refs, n, &o, fd);
	if (fd >= 0)
		close(fd);
	shl_store_close(s);
	return rc;
}

/* Save through a pipe (sendfile path) into `path`. */
static inline int save_pipe(const char *root, const char *path, const char *const *refs, size_t n)
{
	shl_save_opts o = SHL_SAVE_OPTS_INIT;
	shl_store *s = NULL;
	int p[2], rc, st;
	pid_t pid;

	if (pipe(p) != 0)
		return SHL_EIO;
	pid = fork();
	if (pid == 0) {
		int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		char b[65536];
		ssize_t k;
		close(p[1]);
		while ((k = read(p[0], b, sizeof(b))) > 0)
			if (write(out, b, (size_t)k) != k)
				_exit(1);
		_exit(k == 0 ? 0 : 1);
	}
	close(p[0]);
	if ((rc = shl_store_open(&s, root)) == 0)
		rc = shl_save(s, refs, n, &o, p[1]);
	close(p[1]);
	shl_store_close(s);
	waitpid(pid, &st, 0);
	return rc ? rc : (WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : SHL_EIO);
}

static inline const char *ann(shl_json *desc, const char *key)
{
	return shl_json_get_str(shl_json_get(desc, "annotations"), key);
}

static inline struct buf inflate_entry(const struct entry *e, int zstd)
{
	struct buf out = { 0 };
	uint8_t tmp[65536];

	if (!e)
		return out;
	if (zstd) {
		ZSTD_DStream *z = ZSTD_createDStream();
		ZSTD_inBuffer in = { e->data, e->size, 0 };
		ZSTD_initDStream(z);
		while (in.pos < in.size) {
			ZSTD_outBuffer o = { tmp, sizeof(tmp), 0 };
			if (ZSTD_isError(ZSTD_decompressStream(z, &o, &in)))
				break;
			buf_add(&out, tmp, o.pos);
		}
		ZSTD_freeDStream(z);
	} else {
		z_stream z;
		int r = Z_OK;
		memset(&z, 0, sizeof(z));
		inflateInit2(&z, 15 + 16);
		z.next_in = (uint8_t *)e->data;
		z.avail_in = (uInt)e->size;
		while (r == Z_OK) {
			z.next_out = tmp;
			z.avail_out = sizeof(tmp);
			r = inflate(&z, Z_NO_FLUSH);
			buf_add(&out, tmp, sizeof(tmp) - z.avail_out);
		}
		inflateEnd(&z);
	}
	return out;
}

static inline void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Make the temp dir and the store; 0 when usable. */
static inline int world_setup(struct world *w)
{
	snprintf(g_tmp, sizeof(g_tmp), "/tmp/shl-save-XXXXXX");
	if (!mkdtemp(g_tmp))
		return -1;
	memset(w, 0, sizeof(*w));
	populate(w);
	return check_failures ? -1 : 0;
}

static inline void world_teardown(struct world *w)
{
	/* podman's vfs storage may hold read-only dirs; nftw removal handles the rest */
	if (!getenv("KEEP"))
		nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(w->t1.p);
	free(w->t2.p);
	free(w->t3.p);
	free(w->t4.p);
}

#endif
