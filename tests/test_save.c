/*
 * tests/test_save.c - `shale save` (shl_save) on a store populated through the
 * store internals (staged layers, one batch per group of images), independent
 * of `shale load`:
 *   A  docker-archive style: synthesized plain manifest, two tags
 *   B  registry style: gzip layers (one shared with A), OCI manifest over the
 *      gzip blobs, a tag and repo digests (an index digest, its own digest)
 *   C  Docker schema 2 manifest over a plain layer, untagged
 * Checks: archive structure (entry order, ustar fields, mtime/uid/gid 0, no
 * user names), every blob matches its name, layers are the stored tars
 * bit-exact and shared ones written once, A's manifest is verbatim, B gets a
 * synthesized manifest plus its original (annotation) and its repo digests,
 * C keeps its Docker media type; index.json / manifest.json / repositories
 * contents; saving twice, to a file and to a pipe, gives the same bytes;
 * --format oci; --compress gzip|zstd (layers decompress to the diff_ids,
 * deterministic); --exclude-layers in text and JSON form and bad lists; an
 * unknown reference. Then real peers where installed: skopeo inspect/copy
 * (docker-archive:, oci-archive:), podman load (vfs storage) and umoci unpack,
 * comparing image IDs and diff_ids.
 */
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
#include "save/tarout.h"
#include "shale/save.h"
#include "shale/store.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/json.h"

static char g_tmp[256];

/* ---- byte buffers, tars -------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (!n)
		return;
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 4096;
		if (!(b->p = realloc(b->p, b->cap)))
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void tar_add(struct buf *t, const char *name, char type, const void *data, size_t len, const char *link)
{
	uint8_t h[512] = { 0 }, pad[512] = { 0 };
	unsigned sum = 0;

	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", type == '5' ? 0755 : 0644);
	snprintf((char *)h + 108, 8, "%07o", 1000);
	snprintf((char *)h + 116, 8, "%07o", 1000);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)len);
	snprintf((char *)h + 136, 12, "%011o", 1700000000);
	memset(h + 148, ' ', 8);
	h[156] = (uint8_t)type;
	if (link)
		snprintf((char *)h + 157, 100, "%s", link);
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	buf_add(t, h, 512);
	if (len) {
		buf_add(t, data, len);
		buf_add(t, pad, (512 - len % 512) % 512);
	}
}

static void tar_end(struct buf *t)
{
	uint8_t end[1024] = { 0 };

	buf_add(t, end, sizeof(end));
}

/* A layer: a directory, a file of `big` pseudo-random bytes, a small file, a symlink. */
static struct buf make_layer(const char *seed, size_t big)
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

static struct buf gzip_buf(const struct buf *in)
{
	struct buf out = { 0 };
	z_stream z;

	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		abort();
	out.cap = deflateBound(&z, in->n) + 64;
	out.p = malloc(out.cap);
	z.next_in = in->p;
	z.avail_in = (uInt)in->n;
	z.next_out = out.p;
	z.avail_out = (uInt)out.cap;
	if (deflate(&z, Z_FINISH) != Z_STREAM_END)
		abort();
	out.n = z.total_out;
	deflateEnd(&z);
	return out;
}

static void digest_of(const void *p, size_t n, char out[72])
{
	uint8_t d[32];

	shl_sha256_buf(p, n, d);
	shl_digest_str(d, out);
}

/* ---- populating the store ------------------------------------------------------ */

struct src {
	const uint8_t *p;
	size_t n, off;
};

static ssize_t src_read(void *ctx, void *out, size_t len)
{
	struct src *s = ctx;
	size_t k = s->n - s->off < len ? s->n - s->off : len;

	memcpy(out, s->p + s->off, k);
	s->off += k;
	return (ssize_t)k;
}

/* Stage `blob` (plain or gzip) into the batch; returns the layer's info. */
static void stage(shl_store *s, shl_batch *b, const struct buf *blob, const char *media, shl_layer_info *info)
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

static void make_config(struct img *im, const char *salt, const struct lay *ls, size_t n)
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

static void put_image(shl_batch *b, struct img *im, const char *mmedia, const char *man, size_t mlen,
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
static size_t hand_manifest(char *out, const char *mmedia, const char *cmedia, const struct img *im,
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

static void populate(struct world *w)
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

static uint64_t oct(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '7'; i++)
		v = v * 8 + (uint64_t)(p[i] - '0');
	return v;
}

static struct buf read_file(const char *path)
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

static void parse_archive(struct archive *a)
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

static const struct entry *find(const struct archive *a, const char *name)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->e[i].name, name))
			return &a->e[i];
	return NULL;
}

static const struct entry *blob(const struct archive *a, const char *digest)
{
	char name[100];

	snprintf(name, sizeof(name), "blobs/sha256/%s", digest + 7);
	return find(a, name);
}

static shl_json *json_of(const struct archive *a, const char *name)
{
	const struct entry *e = find(a, name);
	shl_json *j = NULL;

	if (!e || shl_json_parse(&j, e->data, e->size, 1u << 24, name) != 0)
		return NULL;
	return j;
}

static int load_archive(struct archive *a, const char *path)
{
	free(a->raw.p);
	memset(a, 0, sizeof(*a));
	a->raw = read_file(path);
	parse_archive(a);
	return a->ok;
}

static int same_bytes(const struct entry *e, const struct buf *b)
{
	return e && e->size == b->n && !memcmp(e->data, b->p, b->n);
}

/* ---- saving ------------------------------------------------------------------------ */

static int save_to(const char *root, const char *path, const char *const *refs, size_t n, int format, int compress,
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
static int save_pipe(const char *root, const char *path, const char *const *refs, size_t n)
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

static const char *ann(shl_json *desc, const char *key)
{
	return shl_json_get_str(shl_json_get(desc, "annotations"), key);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_docker_format(struct world *w)
{
	char p1[400], p2[400], p3[400];
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1", "alpha:latest", "alpha:1" };
	struct archive a = { 0 }, b = { 0 };
	shl_json *ix, *mj, *repos, *ms, *d;
	const struct entry *e;
	char bsynth[72];

	snprintf(p1, sizeof(p1), "%s/ab1.tar", g_tmp);
	snprintf(p2, sizeof(p2), "%s/ab2.tar", g_tmp);
	snprintf(p3, sizeof(p3), "%s/ab3.tar", g_tmp);
	CHECK_OK(save_to(w->root, p1, refs, 4, SHL_SAVE_DOCKER, 0, NULL));
	CHECK_OK(save_to(w->root, p2, refs, 4, SHL_SAVE_DOCKER, 0, NULL));
	CHECK_OK(save_pipe(w->root, p3, refs, 4));
	CHECK(load_archive(&a, p1));
	CHECK(load_archive(&b, p2));
	CHECK(a.raw.n == b.raw.n && !memcmp(a.raw.p, b.raw.p, a.raw.n));
	CHECK(load_archive(&b, p3));
	CHECK(a.raw.n == b.raw.n && !memcmp(a.raw.p, b.raw.p, a.raw.n));

	/* order: blobs/ dirs, blobs sorted, then the JSON files */
	CHECK(a.n >= 6 && !strcmp(a.e[0].name, "blobs/") && a.e[0].type == '5');
	CHECK(!strcmp(a.e[1].name, "blobs/sha256/") && a.e[1].type == '5');
	for (size_t i = 3; i + 4 < a.n; i++)
		CHECK(strcmp(a.e[i - 1].name, a.e[i].name) < 0);
	CHECK(a.n >= 4 && !strcmp(a.e[a.n - 4].name, "index.json") && !strcmp(a.e[a.n - 3].name, "manifest.json") &&
	      !strcmp(a.e[a.n - 2].name, "oci-layout") && !strcmp(a.e[a.n - 1].name, "repositories"));
	/* every blob matches its name */
	for (size_t i = 2; i < a.n; i++) {
		char d2[72];
		if (strncmp(a.e[i].name, "blobs/sha256/", 13))
			continue;
		digest_of(a.e[i].data, a.e[i].size, d2);
		CHECK(!strcmp(d2 + 7, a.e[i].name + 13));
	}
	/* layers bit-exact, each once; configs; A's manifest verbatim; B's original kept */
	CHECK(same_bytes(blob(&a, w->l1.diff_id), &w->t1));
	CHECK(same_bytes(blob(&a, w->l2.diff_id), &w->t2));
	CHECK(same_bytes(blob(&a, w->l3.diff_id), &w->t3));
	CHECK(!blob(&a, w->l1.raw_digest) && !blob(&a, w->l3.raw_digest)); /* no gzip blobs */
	CHECK((e = blob(&a, w->a.config)) && e->size == strlen(w->a.cfg) && !memcmp(e->data, w->a.cfg, e->size));
	CHECK(blob(&a, w->b.config) != NULL);
	CHECK(blob(&a, w->a.manifest) != NULL);
	CHECK(blob(&a, w->b.manifest) != NULL);
	CHECK(a.n == 2 + 3 + 2 + 3 + 4); /* dirs, layers, configs, manifests (A, B synth, B orig), JSON */

	/* index.json: alpha:1, alpha:latest (A), beta:v1 (B); argument order, duplicates once */
	ix = json_of(&a, "index.json");
	ms = shl_json_get(ix, "manifests");
	CHECK(shl_json_len(ms) == 3);
	CHECK(!strcmp(shl_json_get_str(ix, "mediaType") ?: "", "application/vnd.oci.image.index.v1+json"));
	d = shl_json_at(ms, 0);
	CHECK(!strcmp(shl_json_get_str(d, "digest") ?: "", w->a.manifest));
	CHECK(!strcmp(ann(d, "io.containerd.image.name") ?: "", "docker.io/library/alpha:1"));
	CHECK(!strcmp(ann(d, "org.opencontainers.image.ref.name") ?: "", "1"));
	CHECK(!ann(d, "io.shale.original-manifest") && !ann(d, "io.shale.repo-digests"));
	d = shl_json_at(ms, 1);
	CHECK(!strcmp(ann(d, "io.containerd.image.name") ?: "", "docker.io/library/alpha:latest"));
	d = shl_json_at(ms, 2);
	snprintf(bsynth, sizeof(bsynth), "%s", shl_json_get_str(d, "digest") ?: "");
	CHECK(strcmp(bsynth, w->b.manifest) != 0 && blob(&a, bsynth));
	CHECK(!strcmp(shl_json_get_str(d, "mediaType") ?: "", MT_OCI_M));
	CHECK(!strcmp(ann(d, "io.containerd.image.name") ?: "", "registry.example:5000/team/beta:v1"));
	CHECK(!strcmp(ann(d, "org.opencontainers.image.ref.name") ?: "", "v1"));
	CHECK(!strcmp(ann(d, "io.shale.original-manifest") ?: "", w->b.manifest));
	{
		/* the index digest is kept; "beta@<its own manifest>" is implied and left out */
		char want[300];
		snprintf(want, sizeof(want), "registry.example:5000/team/beta@%s", w->b_index);
		CHECK(!strcmp(ann(d, "io.shale.repo-digests") ?: "", want));
	}
	{
		/* B's synthesized manifest: plain layers, verbatim config */
		shl_json *m = NULL, *ls;
		e = blob(&a, bsynth);
		CHECK(e && shl_json_parse(&m, e->data, e->size, 1 << 20, "m") == 0);
		ls = shl_json_get(m, "layers");
		CHECK(shl_json_len(ls) == 2);
		CHECK(!strcmp(shl_json_get_str(shl_json_at(ls, 0), "digest") ?: "", w->l1.diff_id));
		CHECK(!strcmp(shl_json_get_str(shl_json_at(ls, 1), "mediaType") ?: "", MT_TAR));
		CHECK(!strcmp(shl_json_get_str(shl_json_get(m, "config"), "digest") ?: "", w->b.config));
		shl_json_put(m);
	}
	shl_json_put(ix);

	/* manifest.json: one entry per image, familiar RepoTags, blob paths, LayerSources */
	mj = json_of(&a, "manifest.json");
	CHECK(shl_json_len(mj) == 2);
	d = shl_json_at(mj, 0);
	{
		char cp[100], lp[100];
		shl_json *tags = shl_json_get(d, "RepoTags"), *ls = shl_json_get(d, "Layers");
		snprintf(cp, sizeof(cp), "blobs/sha256/%s", w->a.config + 7);
		snprintf(lp, sizeof(lp), "blobs/sha256/%s", w->l2.diff_id + 7);
		CHECK(!strcmp(shl_json_get_str(d, "Config") ?: "", cp));
		CHECK(shl_json_len(tags) == 2 && !strcmp(shl_json_str(shl_json_at(tags, 0)) ?: "", "alpha:1") &&
		      !strcmp(shl_json_str(shl_json_at(tags, 1)) ?: "", "alpha:latest"));
		CHECK(shl_json_len(ls) == 2 && !strcmp(shl_json_str(shl_json_at(ls, 1)) ?: "", lp));
		CHECK(shl_json_get(shl_json_get(d, "LayerSources"), w->l2.diff_id) != NULL);
	}
	d = shl_json_at(mj, 1);
	CHECK(!strcmp(shl_json_str(shl_json_at(shl_json_get(d, "RepoTags"), 0)) ?: "", "registry.example:5000/team/beta:v1"));
	shl_json_put(mj);

	/* repositories: familiar repo -> tag -> top layer */
	repos = json_of(&a, "repositories");
	CHECK(!strcmp(shl_json_get_str(shl_json_get(repos, "alpha"), "latest") ?: "", w->l2.diff_id + 7));
	CHECK(!strcmp(shl_json_get_str(shl_json_get(repos, "registry.example:5000/team/beta"), "v1") ?: "",
		      w->l3.diff_id + 7));
	shl_json_put(repos);
	free(a.raw.p);
	free(b.raw.p);
}

static void test_oci_format(struct world *w)
{
	char path[400], id[80];
	const char *refs[1] = { id };
	struct archive a = { 0 };
	shl_json *ix, *d;

	/* C by image ID: untagged, Docker schema 2 manifest kept verbatim */
	snprintf(id, sizeof(id), "%.19s", w->c.config + 7);
	snprintf(path, sizeof(path), "%s/c.tar", g_tmp);
	CHECK_OK(save_to(w->root, path, refs, 1, SHL_SAVE_OCI, 0, NULL));
	CHECK(load_archive(&a, path));
	CHECK(!find(&a, "manifest.json") && !find(&a, "repositories") && find(&a, "oci-layout"));
	CHECK(!strcmp(a.e[a.n - 1].name, "oci-layout") && !strcmp(a.e[a.n - 2].name, "index.json"));
	ix = json_of(&a, "index.json");
	CHECK(shl_json_len(shl_json_get(ix, "manifests")) == 1);
	d = shl_json_at(shl_json_get(ix, "manifests"), 0);
	CHECK(!strcmp(shl_json_get_str(d, "digest") ?: "", w->c.manifest));
	CHECK(!strcmp(shl_json_get_str(d, "mediaType") ?: "", MT_D2_M));
	CHECK(!shl_json_get(d, "annotations"));
	CHECK(same_bytes(blob(&a, w->l4.diff_id), &w->t4));
	shl_json_put(ix);
	free(a.raw.p);
}

static struct buf inflate_entry(const struct entry *e, int zstd)
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

static void test_compress(struct world *w)
{
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1" };
	for (int zstd = 0; zstd <= 1; zstd++) {
		char p1[400], p2[400];
		struct archive a = { 0 }, b = { 0 };
		shl_json *ix, *mj, *m = NULL, *ls;
		const struct entry *e;
		snprintf(p1, sizeof(p1), "%s/z1.tar", g_tmp);
		snprintf(p2, sizeof(p2), "%s/z2.tar", g_tmp);
		CHECK_OK(save_to(w->root, p1, refs, 2, SHL_SAVE_DOCKER, zstd ? SHL_SAVE_COMPRESS_ZSTD : SHL_SAVE_COMPRESS_GZIP,
				 NULL));
		CHECK_OK(save_to(w->root, p2, refs, 2, SHL_SAVE_DOCKER, zstd ? SHL_SAVE_COMPRESS_ZSTD : SHL_SAVE_COMPRESS_GZIP,
				 NULL));
		CHECK(load_archive(&a, p1) && load_archive(&b, p2));
		CHECK(a.raw.n == b.raw.n && !memcmp(a.raw.p, b.raw.p, a.raw.n));
		CHECK(!blob(&a, w->l1.diff_id)); /* no plain layers */
		ix = json_of(&a, "index.json");
		/* A's manifest is synthesized now (its layers are compressed); the original rides along */
		e = blob(&a, shl_json_get_str(shl_json_at(shl_json_get(ix, "manifests"), 0), "digest") ?: "sha256:x");
		CHECK(e && shl_json_parse(&m, e->data, e->size, 1 << 20, "m") == 0);
		CHECK(!strcmp(ann(shl_json_at(shl_json_get(ix, "manifests"), 0), "io.shale.original-manifest") ?: "",
			      w->a.manifest));
		CHECK(blob(&a, w->a.manifest) != NULL);
		ls = shl_json_get(m, "layers");
		CHECK(shl_json_len(ls) == 2);
		for (size_t i = 0; i < shl_json_len(ls); i++) {
			const char *dg = shl_json_get_str(shl_json_at(ls, i), "digest") ?: "sha256:x";
			const char *mt = shl_json_get_str(shl_json_at(ls, i), "mediaType") ?: "";
			struct buf plain = inflate_entry(blob(&a, dg), zstd);
			char pd[72];
			int64_t sz = -1;
			shl_json_get_int(shl_json_at(ls, i), "size", &sz);
			digest_of(plain.p, plain.n, pd);
			CHECK(!strcmp(pd, i ? w->l2.diff_id : w->l1.diff_id));
			CHECK(!strcmp(mt, zstd ? "application/vnd.oci.image.layer.v1.tar+zstd" : MT_GZ));
			CHECK(blob(&a, dg) && (int64_t)blob(&a, dg)->size == sz);
			free(plain.p);
		}
		/* manifest.json points at the compressed blobs, no LayerSources */
		mj = json_of(&a, "manifest.json");
		CHECK(shl_json_len(shl_json_get(shl_json_at(mj, 0), "Layers")) == 2);
		CHECK(!shl_json_get(shl_json_at(mj, 0), "LayerSources"));
		shl_json_put(mj);
		shl_json_put(m);
		shl_json_put(ix);
		free(a.raw.p);
		free(b.raw.p);
	}
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static void test_exclude(struct world *w)
{
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1" };
	char list[400], out[400], text[2048];
	struct archive a = { 0 };
	shl_json *mj;

	snprintf(list, sizeof(list), "%s/have.txt", g_tmp);
	snprintf(out, sizeof(out), "%s/inc.tar", g_tmp);
	/* text form: comments, blanks, CRLF, a layer no image uses */
	snprintf(text, sizeof(text), "# what the target has\n\n  %s  # base\r\n%s\n",
		 w->l1.diff_id, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
	write_text(list, text);
	CHECK_OK(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list));
	CHECK(load_archive(&a, out));
	CHECK(!blob(&a, w->l1.diff_id) && same_bytes(blob(&a, w->l2.diff_id), &w->t2) && blob(&a, w->l3.diff_id));
	CHECK(blob(&a, w->a.manifest) != NULL); /* A's manifest still verbatim, naming the excluded layer */
	mj = json_of(&a, "manifest.json");
	CHECK(shl_json_len(shl_json_get(shl_json_at(mj, 0), "Layers")) == 2);
	CHECK(shl_json_get(shl_json_get(shl_json_at(mj, 0), "LayerSources"), w->l1.diff_id) != NULL);
	shl_json_put(mj);

	/* JSON form, as `shale df --layers --json` prints it (one line, long) */
	snprintf(text, sizeof(text),
		 "[{\"diff_id\":\"%s\",\"tar_size\":1,\"erofs_size\":2,\"images\":2},\n{\"diff_id\":\"%s\",\"tar_size\":1,"
		 "\"erofs_size\":2,\"images\":1}]\n",
		 w->l1.diff_id, w->l3.diff_id);
	write_text(list, text);
	CHECK_OK(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list));
	CHECK(load_archive(&a, out));
	CHECK(!blob(&a, w->l1.diff_id) && !blob(&a, w->l3.diff_id) && blob(&a, w->l2.diff_id));

	/* compressed + excluded: the excluded layer is named by its plain digest */
	CHECK_OK(save_to(w->root, out, refs, 1, SHL_SAVE_DOCKER, SHL_SAVE_COMPRESS_GZIP, list));
	CHECK(load_archive(&a, out));
	CHECK(!blob(&a, w->l1.diff_id));
	mj = json_of(&a, "manifest.json");
	{
		char lp[100];
		snprintf(lp, sizeof(lp), "blobs/sha256/%s", w->l1.diff_id + 7);
		CHECK(!strcmp(shl_json_str(shl_json_at(shl_json_get(shl_json_at(mj, 0), "Layers"), 0)) ?: "", lp));
	}
	shl_json_put(mj);

	/* bad lists fail clearly and write nothing */
	write_text(list, "sha256:1234\n");
	CHECK_ERR(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "line 1") != NULL);
	write_text(list, "[{\"id\":\"x\"}]");
	CHECK_ERR(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list), SHL_EFORMAT);
	snprintf(list, sizeof(list), "%s/does-not-exist", g_tmp);
	CHECK(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list) != 0);
	free(a.raw.p);
}

static void test_errors(struct world *w)
{
	const char *refs[] = { "alpha:1", "nope:1" };
	char out[400];
	struct stat st;

	snprintf(out, sizeof(out), "%s/err.tar", g_tmp);
	unlink(out);
	CHECK_ERR(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, NULL), SHL_ENOTFOUND);
	CHECK(!strcmp(shl_error_last(), "no such image: nope:1"));
	CHECK(stat(out, &st) == 0 && st.st_size == 0); /* nothing written before the snapshot */
	/* an unknown tag of a known repository */
	CHECK_ERR(save_to(w->root, out, (const char *[]){ "alpha:2" }, 1, SHL_SAVE_DOCKER, 0, NULL), SHL_ENOTFOUND);
}

/* ---- tarout: a body of 8 GiB or more -------------------------------------------------- */

static int read_n(int fd, uint8_t *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, b + got, n - got);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* child: check what tarout wrote for an 8 GiB + 5 byte member, skipping the
 * zeros in the kernel. Exit status says what was wrong. */
static int check_big_stream(int in, uint64_t size)
{
	uint8_t h[1536], t[5 + 507 + 1024], extra;
	uint64_t skip = size - 5, v = 0;
	int null = open("/dev/null", O_WRONLY);
	const char rec[] = "19 size=8589934597\n";

	if (read_n(in, h, sizeof(h)))
		return 1;
	if (h[156] != 'x' || memcmp(h, "PaxHeaders/big", 15) || oct(h + 124, 12) != strlen(rec) ||
	    memcmp(h + 512, rec, strlen(rec)))
		return 2;
	if (h[1024 + 156] != '0' || strcmp((char *)h + 1024, "blobs/sha256/big") || h[1024 + 124] != 0x80)
		return 3;
	for (int i = 1; i < 12; i++)
		v = v << 8 | h[1024 + 124 + i];
	if (v != size)
		return 4;
	while (skip) {
		ssize_t k = splice(in, NULL, null, NULL, skip > (1u << 30) ? (1u << 30) : (size_t)skip, 0);
		if (k <= 0)
			return 5;
		skip -= (uint64_t)k;
	}
	/* "hello", padding to 512, two zero blocks, then EOF */
	if (read_n(in, t, sizeof(t)) || memcmp(t, "hello", 5) || read(in, &extra, 1) != 0)
		return 6;
	for (size_t i = 5; i < sizeof(t); i++)
		if (t[i])
			return 7;
	return 0;
}

/* The headers of an 8 GiB + 5 byte member, cheaply: the source holds only
 * "hello", so tarout writes the headers and 5 bytes, then reports the source
 * as short. With SHALE_TEST_BIG=1 the whole member also streams from a sparse
 * file through a pipe (about 30 s of kernel time here: the page cache fills
 * with zeros). */
static void test_tarout_large(void)
{
	uint64_t size = (8ull << 30) + 5;
	char path[400], out[400];
	int fd, ofd, p[2], st = -1;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/hello", g_tmp);
	snprintf(out, sizeof(out), "%s/big-head.tar", g_tmp);
	write_text(path, "hello");
	fd = open(path, O_RDONLY);
	ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ofd >= 0);
	{
		shl_tarout t = SHL_TAROUT_INIT(ofd);
		CHECK_ERR(shl_tarout_file(&t, "blobs/sha256/big", fd, size), SHL_EIO);
		CHECK(strstr(shl_error_last(), "shorter than recorded") != NULL);
		CHECK(t.off == 1536 + 5);
	}
	close(fd);
	close(ofd);
	{
		/* the same checks the streaming child makes, on the file */
		int in = open(out, O_RDONLY);
		uint8_t h[1536];
		const char rec[] = "19 size=8589934597\n";
		uint64_t v = 0;
		CHECK(in >= 0 && read_n(in, h, sizeof(h)) == 0);
		CHECK(h[156] == 'x' && !memcmp(h, "PaxHeaders/big", 15) && oct(h + 124, 12) == strlen(rec));
		CHECK(!memcmp(h + 512, rec, strlen(rec)));
		CHECK(h[1024 + 156] == '0' && !strcmp((char *)h + 1024, "blobs/sha256/big") && h[1024 + 124] == 0x80);
		for (int i = 1; i < 12; i++)
			v = v << 8 | h[1024 + 124 + i];
		CHECK(v == size);
		close(in);
	}
	if (!getenv("SHALE_TEST_BIG"))
		return;
	snprintf(path, sizeof(path), "%s/sparse", g_tmp);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size - 5) != 0 || pwrite(fd, "hello", 5, (off_t)size - 5) != 5 || pipe(p)) {
		CHECK(!"sparse file");
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		_exit(check_big_stream(p[0], size));
	}
	close(p[0]);
	{
		shl_tarout t = SHL_TAROUT_INIT(p[1]);
		CHECK_OK(shl_tarout_file(&t, "blobs/sha256/big", fd, size));
		CHECK_OK(shl_tarout_finish(&t));
		CHECK(t.copied == size); /* all of it in the kernel (sendfile into the pipe) */
		CHECK(t.off == 1536 + (size + 511) / 512 * 512 + 1024);
	}
	close(p[1]);
	close(fd);
	unlink(path);
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "big member stream: check %d failed\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* ---- real peers ------------------------------------------------------------------------ */

static int have(const char *tool)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

/* Run a shell command; its stdout (up to cap) into out. Returns the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	FILE *f;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (!(f = popen(cmd, "r")))
		return -1;
	if (out) {
		n = fread(out, 1, cap - 1, f);
		out[n] = '\0';
	} else {
		char sink[4096];
		while (fread(sink, 1, sizeof(sink), f) > 0)
			;
	}
	st = pclose(f);
	if (st != 0)
		fprintf(stderr, "command failed (%d): %s\n", st, cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Does a skopeo copy (an oci: layout, or a dir: with manifest.json and blobs
 * named by hex) hold the image: config digest and the diff_ids of its layers? */
static int copy_matches(const char *dir, const struct img *im, const char *const *diffs, size_t n)
{
	char path[1200], bdir[600];
	struct buf ix = { 0 }, man = { 0 };
	shl_json *j = NULL, *m = NULL, *ls;
	const char *md;
	int ok = 0;

	snprintf(path, sizeof(path), "%s/index.json", dir);
	if (access(path, F_OK) == 0) {
		ix = read_file(path);
		if (!ix.p || shl_json_parse(&j, ix.p, ix.n, 1 << 20, "index") != 0)
			goto out;
		md = shl_json_get_str(shl_json_at(shl_json_get(j, "manifests"), 0), "digest");
		if (!md)
			goto out;
		snprintf(bdir, sizeof(bdir), "%s/blobs/sha256", dir);
		snprintf(path, sizeof(path), "%s/%s", bdir, md + 7);
	} else {
		snprintf(bdir, sizeof(bdir), "%s", dir);
		snprintf(path, sizeof(path), "%s/manifest.json", dir);
	}
	man = read_file(path);
	if (!man.p || shl_json_parse(&m, man.p, man.n, 1 << 20, "manifest") != 0)
		goto out;
	ok = !strcmp(shl_json_get_str(shl_json_get(m, "config"), "digest") ?: "", im->config);
	snprintf(path, sizeof(path), "%s/%s", bdir, im->config + 7);
	ok &= access(path, F_OK) == 0;
	ls = shl_json_get(m, "layers");
	ok &= shl_json_len(ls) == n;
	for (size_t i = 0; ok && i < n; i++) {
		/* gzip'd or not (sniffed: skopeo's docker-archive source calls plain
		 * tars .tar.gzip), the plain bytes hash to the diff_id */
		const char *d = shl_json_get_str(shl_json_at(ls, i), "digest") ?: "";
		struct buf l, plain;
		struct entry e;
		char got[72];
		snprintf(path, sizeof(path), "%s/%s", bdir, strlen(d) > 7 ? d + 7 : "x");
		l = read_file(path);
		e.data = l.p;
		e.size = l.n;
		plain = l.n > 2 && l.p[0] == 0x1f && l.p[1] == 0x8b ? inflate_entry(&e, 0) : l;
		digest_of(plain.p ? plain.p : (uint8_t *)"", plain.n, got);
		ok = !strcmp(got, diffs[i]);
		if (plain.p != l.p)
			free(plain.p);
		free(l.p);
	}
out:
	shl_json_put(j);
	shl_json_put(m);
	free(ix.p);
	free(man.p);
	return ok;
}

static void test_peers(struct world *w)
{
	char arch[400], oci[400], out[65536], dir[500];
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1" };
	const char *da[] = { w->l1.diff_id, w->l2.diff_id }, *db[] = { w->l1.diff_id, w->l3.diff_id };

	snprintf(arch, sizeof(arch), "%s/peers.tar", g_tmp);
	snprintf(oci, sizeof(oci), "%s/peers-oci.tar", g_tmp);
	CHECK_OK(save_to(w->root, arch, refs, 2, SHL_SAVE_DOCKER, 0, NULL));
	CHECK_OK(save_to(w->root, oci, refs, 2, SHL_SAVE_OCI, 0, NULL));

	if (have("skopeo")) {
		/* docker-archive: by name; the config skopeo sees is ours byte for byte */
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw docker-archive:%s:alpha:1 | sha256sum", arch) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64));
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw docker-archive:%s:registry.example:5000/team/beta:v1 | sha256sum",
			  arch) == 0);
		CHECK(!strncmp(out, w->b.config + 7, 64));
		CHECK(run(out, sizeof(out), "skopeo inspect docker-archive:%s:alpha:1", arch) == 0);
		CHECK(strstr(out, w->l2.diff_id) != NULL);
		/* the same archive read as an OCI archive (ref.name = tag), and the pure OCI one */
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw oci-archive:%s:v1 | sha256sum", arch) == 0);
		CHECK(!strncmp(out, w->b.config + 7, 64));
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw oci-archive:%s:1 | sha256sum", oci) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64));
		/* copies verify every blob digest (dir: keeps the docker config verbatim;
		 * skopeo rewrites it when converting docker-archive to oci:) */
		snprintf(dir, sizeof(dir), "%s/sk-a", g_tmp);
		CHECK(run(NULL, 0, "skopeo copy -q docker-archive:%s:alpha:1 dir:%s 2>&1", arch, dir) == 0);
		CHECK(copy_matches(dir, &w->a, da, 2));
		snprintf(dir, sizeof(dir), "%s/sk-b", g_tmp);
		CHECK(run(NULL, 0, "skopeo copy -q oci-archive:%s:v1 oci:%s:b 2>&1", arch, dir) == 0);
		CHECK(copy_matches(dir, &w->b, db, 2));
		{
			/* C: untagged, its Docker schema 2 manifest listed in index.json */
			char c[400], id[80];
			const char *cref[1] = { id };
			snprintf(id, sizeof(id), "%s", w->c.config);
			snprintf(c, sizeof(c), "%s/c-docker.tar", g_tmp);
			CHECK_OK(save_to(w->root, c, cref, 1, SHL_SAVE_DOCKER, 0, NULL));
			CHECK(run(out, sizeof(out), "skopeo inspect --config --raw oci-archive:%s | sha256sum", c) == 0);
			CHECK(!strncmp(out, w->c.config + 7, 64));
			CHECK(run(out, sizeof(out), "skopeo inspect --raw docker-archive:%s", c) == 0);
			CHECK(strstr(out, w->l4.diff_id) != NULL);
		}
	} else {
		printf("note: skopeo not installed, skipping its checks\n");
	}

	if (have("podman") && geteuid() == 0) {
		char pod[700];
		snprintf(pod, sizeof(pod),
			 "podman --storage-driver vfs --root %s/p --runroot %s/r --cgroup-manager cgroupfs --events-backend none",
			 g_tmp, g_tmp);
		CHECK(run(out, sizeof(out), "%s load -i %s 2>&1", pod, arch) == 0);
		CHECK(run(out, sizeof(out), "%s image inspect --format '{{.Id}} {{.RootFS.Layers}}' alpha:1", pod) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64) && strstr(out, w->l1.diff_id) && strstr(out, w->l2.diff_id));
		CHECK(run(out, sizeof(out), "%s image inspect --format '{{.Id}} {{.RootFS.Layers}}' registry.example:5000/team/beta:v1",
			  pod) == 0);
		CHECK(!strncmp(out, w->b.config + 7, 64) && strstr(out, w->l3.diff_id));
		/* a pure OCI archive (podman 4 takes one image per oci-archive) */
		run(NULL, 0, "%s rmi -a -f >/dev/null 2>&1", pod);
		CHECK(save_to(w->root, oci, refs, 1, SHL_SAVE_OCI, 0, NULL) == 0);
		CHECK(run(out, sizeof(out), "%s load -i %s 2>&1", pod, oci) == 0);
		CHECK(run(out, sizeof(out), "%s image inspect --format '{{.Id}}' alpha:1", pod) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64));
		run(NULL, 0, "%s rmi -a -f >/dev/null 2>&1", pod);
	} else {
		printf("note: podman not usable here, skipping its checks\n");
	}

	if (have("umoci") && have("tar")) {
		/* umoci reads the layout (from the docker-format archive, extracted) and unpacks A */
		snprintf(dir, sizeof(dir), "%s/um", g_tmp);
		CHECK(run(NULL, 0, "mkdir -p %s/layout && tar -xf %s -C %s/layout", dir, arch, dir) == 0);
		CHECK(run(NULL, 0, "umoci unpack --image %s/layout:1 %s/bundle 2>&1", dir, dir) == 0);
		CHECK(run(out, sizeof(out), "cat %s/bundle/rootfs/two/hello.txt %s/bundle/rootfs/one/link", dir, dir) == 0);
		CHECK(!strcmp(out, "hello from layer two\nhello from layer one\n"));
		CHECK(run(out, sizeof(out), "sha256sum < %s/bundle/rootfs/one/blob.bin", dir) == 0);
		{
			/* the 300 kB file survived bit-exact: compare with the same bytes from the source tar */
			char want[72];
			digest_of(w->t1.p + 512 * 2, 300000, want);
			CHECK(!strncmp(out, want + 7, 64));
		}
	} else {
		printf("note: umoci not installed, skipping its checks\n");
	}
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

int main(void)
{
	struct world w;

	snprintf(g_tmp, sizeof(g_tmp), "/tmp/shl-save-XXXXXX");
	if (!mkdtemp(g_tmp))
		SKIP("mkdtemp failed");
	memset(&w, 0, sizeof(w));
	populate(&w);
	if (check_result("populate") != 0)
		goto out;
	test_docker_format(&w);
	test_oci_format(&w);
	test_compress(&w);
	test_exclude(&w);
	test_errors(&w);
	test_tarout_large();
	test_peers(&w);
out:
	/* podman's vfs storage may hold read-only dirs; nftw removal handles the rest */
	if (!getenv("KEEP")) nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(w.t1.p);
	free(w.t2.p);
	free(w.t3.p);
	free(w.t4.p);
	return check_result("test_save");
}
