/*
 * tests/test_store.c - the store core against a real LMDB index in a mkdtemp
 * root: staging layers (plain and gzip) and committing one batch with blobs,
 * layer records, an alias, an image and refs; reopening and querying; a batch
 * that names a missing layer commits nothing (root byte-identical); two
 * processes importing the same layer (one waits and skips); two processes
 * locking layers in opposite orders (deadlock detected, both succeed); gc and
 * prune remove exactly the unreferenced things; fsck finds a flipped byte, a
 * missing file, a bad blob, a tar whose sha256 is wrong (--deep); --repair
 * removes orphans and temp files and nothing the index names; the index map
 * grows, also while another process has it open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "shale/store.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

static char g_tmp[256];

/* ---- helpers: tars, gzip, digests, files ------------------------------------ */

struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 4096;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

/* one ustar entry: type '0' file, '5' dir */
static void tar_add(struct buf *t, const char *name, char type, const char *data)
{
	uint8_t h[512] = { 0 }, pad[512] = { 0 };
	size_t len = data ? strlen(data) : 0;
	unsigned sum = 0;

	snprintf((char *)h, 100, "%s", name);
	snprintf((char *)h + 100, 8, "%07o", type == '5' ? 0755 : 0644);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011o", (unsigned)len);
	snprintf((char *)h + 136, 12, "%011o", 1700000000);
	memset(h + 148, ' ', 8);
	h[156] = (uint8_t)type;
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

/* a small layer whose content depends on `seed` */
static struct buf make_tar(const char *seed)
{
	struct buf t = { 0 };
	uint8_t end[1024] = { 0 };
	char name[64], body[256];

	tar_add(&t, "etc/", '5', NULL);
	snprintf(name, sizeof(name), "etc/%s.conf", seed);
	snprintf(body, sizeof(body), "layer %s\nhello from %s\n", seed, seed);
	tar_add(&t, name, '0', body);
	buf_add(&t, end, sizeof(end));
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

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static int count_dir(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
		if (e->d_name[0] == '.')
			continue;
		if (!suffix || (l > sl && !strcmp(e->d_name + l - sl, suffix)))
			n++;
	}
	closedir(d);
	return n;
}

/* ---- a byte-exact snapshot of a store root ----------------------------------- */

static shl_sha256 *g_snap;
static size_t g_rootlen;

static int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (strstr(path, "/index/lock.mdb"))
		return 0; /* LMDB's reader table, not content */
	shl_sha256_update(g_snap, path + g_rootlen, strlen(path) + 1 - g_rootlen);
	if (flag == FTW_F) {
		char *data = malloc((size_t)st->st_size + 1);
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 && data ? read(fd, data, (size_t)st->st_size) : -1;
		if (n >= 0)
			shl_sha256_update(g_snap, data, (size_t)n);
		if (fd >= 0)
			close(fd);
		free(data);
	}
	return 0;
}

static void snapshot(const char *root, char out[72])
{
	uint8_t d[32];

	shl_sha256_new(&g_snap);
	g_rootlen = strlen(root);
	nftw(root, snap_one, 16, FTW_PHYS);
	shl_sha256_final(g_snap, d);
	shl_sha256_free(g_snap);
	shl_digest_str(d, out);
}

/* ---- a layer source with optional rendezvous pipes --------------------------- */

struct src {
	const uint8_t *p;
	size_t n, off;
	int calls;
	int signal_fd; /* written once when the first read happens (-1: none) */
	int gate_fd;   /* read once before returning data (-1: none) */
};

static ssize_t src_read(void *ctx, void *out, size_t len)
{
	struct src *s = ctx;
	size_t k = s->n - s->off;

	s->calls++;
	if (s->signal_fd >= 0) {
		if (write(s->signal_fd, "s", 1) != 1)
			return SHL_EIO;
		s->signal_fd = -1;
	}
	if (s->gate_fd >= 0) {
		char c;
		if (read(s->gate_fd, &c, 1) != 1)
			return SHL_EIO;
		s->gate_fd = -1;
	}
	if (k > len)
		k = len;
	if (k > 1000)
		k = 1000; /* several calls */
	memcpy(out, s->p + s->off, k);
	s->off += k;
	return (ssize_t)k;
}

static int stage_buf(shl_store *s, const struct buf *b, const char *key, shl_staged *st, char known[72], int *calls)
{
	struct src src = { b->p, b->n, 0, 0, -1, -1 };
	int rc = shl_store__stage_key(s, key, src_read, &src, st, known);

	if (calls)
		*calls = src.calls;
	return rc;
}

/* ---- images ------------------------------------------------------------------ */

struct img {
	char manifest[72], config[72];
};

/* Put an image over `n` layers (diff_ids, and the blob each arrived as) plus
 * its manifest and config blobs into the batch; name it if `ref` is set. */
static int add_image(shl_batch *b, const char *salt, const char *const *diffs, const char *const *blobs, size_t n,
		     const char *ref, struct img *out)
{
	char cfg[4096], man[8192], *p;
	shl_json *rec, *layers;
	int rc;

	p = cfg + snprintf(cfg, sizeof(cfg),
			   "{\"architecture\":\"amd64\",\"os\":\"linux\",\"created\":\"2024-01-02T03:04:05Z\","
			   "\"config\":{\"Env\":[\"SALT=%s\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[",
			   salt);
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s\"%s\"", i ? "," : "", diffs[i]);
	strcpy(p, "]}}");
	digest_of(cfg, strlen(cfg), out->config);
	p = man + snprintf(man, sizeof(man),
			   "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
			   "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
			   "\"size\":%zu},\"layers\":[",
			   out->config, strlen(cfg));
	for (size_t i = 0; i < n; i++)
		p += sprintf(p, "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":1}",
			     i ? "," : "", blobs[i]);
	strcpy(p, "]}");
	digest_of(man, strlen(man), out->manifest);

	rec = shl_json_new_object();
	layers = shl_json_new_array();
	for (size_t i = 0; i < n; i++) {
		shl_json *l = shl_json_new_object();
		shl_json_set_str(l, "diff_id", diffs[i]);
		shl_json_set_str(l, "digest", blobs[i]);
		shl_json_set_str(l, "media_type", "application/vnd.oci.image.layer.v1.tar");
		shl_json_set_int(l, "size", 1);
		shl_json_set_int(l, "tar_size", 3072);
		shl_json_push(layers, l);
	}
	shl_json_set_str(rec, "manifest", out->manifest);
	shl_json_set_str(rec, "media_type", "application/vnd.oci.image.manifest.v1+json");
	shl_json_set_str(rec, "config", out->config);
	shl_json_set_str(rec, "os", "linux");
	shl_json_set_str(rec, "architecture", "amd64");
	shl_json_set_int(rec, "created", 1704164645);
	shl_json_set_int(rec, "size", (int64_t)n * 3072);
	shl_json_set(rec, "layers", layers);
	if ((rc = shl_batch_put_blob(b, out->manifest, "application/vnd.oci.image.manifest.v1+json", man, strlen(man))) ||
	    (rc = shl_batch_put_blob(b, out->config, "application/vnd.oci.image.config.v1+json", cfg, strlen(cfg)))) {
		shl_json_put(rec);
		return rc;
	}
	if ((rc = shl_batch_put_image(b, out->manifest, rec)))
		return rc;
	return ref ? shl_batch_set_ref(b, ref, out->manifest) : 0;
}

static void mkroot(const char *name, char *root, size_t len)
{
	snprintf(root, len, "%s/%s", g_tmp, name);
}

static size_t count_db(shl_store *s, int db)
{
	size_t n = 0;
	shl_index_count(s->ix, db, &n);
	return n;
}

/* ---- 1. import, commit, reopen, query --------------------------------------- */

static int collect_str(void *ctx, const char *s)
{
	char (*v)[72] = ctx;
	for (int i = 0; i < 8; i++) {
		if (!v[i][0]) {
			snprintf(v[i], 72, "%s", s);
			return 0;
		}
	}
	return 0;
}

struct listed {
	int n;
	char tag[600], id[72];
	uint64_t layers;
};

static int on_image(void *ctx, const shl_image_summary *img)
{
	struct listed *l = ctx;
	l->n++;
	snprintf(l->id, sizeof(l->id), "%s", img->id);
	if (img->tags[0])
		snprintf(l->tag, sizeof(l->tag), "%s", img->tags[0]);
	l->layers = img->layers;
	return 0;
}

static void test_import_query(void)
{
	char root[512], known[72], gzd[72], tar[4200], erofs[4200], got[72], ref[700], snapa[72], snapb[72];
	char users[8][72] = { { 0 } }, order[8][72] = { { 0 } };
	struct buf t1 = make_tar("one"), t2 = make_tar("two"), g2 = gzip_buf(&t2);
	shl_staged a, b;
	shl_batch *batch = NULL;
	shl_store *s = NULL;
	struct img im;
	struct listed l = { 0 };
	struct stat st;
	char *data = NULL, *media = NULL, *json = NULL, *meta = NULL;
	size_t len;
	int calls;

	mkroot("q", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	snprintf(tar, sizeof(tar), "%s/index", root);
	CHECK(exists(tar));
	snprintf(tar, sizeof(tar), "%s/layers", root);
	CHECK(exists(tar));
	snprintf(tar, sizeof(tar), "%s/tmp", root);
	CHECK(exists(tar));
	CHECK_OK(shl_index_get(s->ix, SHL_DB_META, "schema", &meta, NULL));
	CHECK(meta && !strcmp(meta, "1"));
	free(meta);

	digest_of(g2.p, g2.n, gzd);
	CHECK_OK(stage_buf(s, &t1, NULL, &a, known, NULL));
	CHECK(known[0] == '\0' && a.info.compression == 0 && a.info.tar_size == t1.n);
	CHECK_OK(stage_buf(s, &g2, gzd, &b, known, NULL));
	CHECK(known[0] == '\0' && b.info.compression == 1 && !strcmp(b.info.raw_digest, gzd));
	CHECK(!strcmp(a.info.raw_digest, a.info.diff_id));
	/* the per-layer lock file exists while staged */
	snprintf(tar, sizeof(tar), "%s/tmp/%s.lock", root, gzd + 7);
	CHECK(exists(tar));

	CHECK_OK(shl_batch_new(&batch));
	{
		/* blobs: capped, and their digest is checked */
		size_t big = (4u << 20) + 1;
		char *p = calloc(1, big), d[72];
		digest_of(p, big, d);
		CHECK_ERR(shl_batch_put_blob(batch, d, "application/vnd.oci.image.manifest.v1+json", p, big), SHL_ELIMIT);
		CHECK_OK(shl_batch_put_blob(batch, d, "application/vnd.oci.image.config.v1+json", p, big));
		CHECK_ERR(shl_batch_put_blob(batch, gzd, "application/json", "{}", 2), SHL_EDIGEST);
		free(p);
	}
	CHECK_OK(shl_batch_add_layer(batch, &a, NULL));
	CHECK_OK(shl_batch_add_layer(batch, &b, "application/vnd.oci.image.layer.v1.tar+gzip"));
	{
		const char *diffs[] = { a.info.diff_id, b.info.diff_id }, *blobs[] = { a.info.diff_id, gzd };
		CHECK_OK(add_image(batch, "q", diffs, blobs, 2, "docker.io/library/testimg:1", &im));
	}
	CHECK_OK(shl_batch_set_ref(batch, "docker.io/library/testimg@sha256:" "1111111111111111111111111111111111111111111111111111111111111111",
				   im.manifest));
	/* nothing visible before the commit */
	CHECK(!shl_store_layer_has(s, a.info.diff_id));
	CHECK_ERR(shl_store_resolve(s, "testimg:1", got), SHL_ENOTFOUND);
	CHECK_OK(shl_store_commit(s, batch));
	shl_batch_free(batch);
	CHECK(!exists(tar)); /* lock released (and its file removed) after the batch */
	CHECK(count_dir(s->tmp_dir, NULL) == 1); /* only the staging dir's own lock */
	shl_store_close(s);
	s = NULL;

	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		goto out;
	CHECK(shl_store_layer_has(s, a.info.diff_id) && shl_store_layer_has(s, b.info.diff_id));
	CHECK_OK(shl_store_layer_paths(s, b.info.diff_id, tar, sizeof(tar), erofs, sizeof(erofs)));
	CHECK(stat(tar, &st) == 0 && (uint64_t)st.st_size == b.info.tar_size && st.st_size == (off_t)t2.n);
	CHECK(stat(erofs, &st) == 0 && (uint64_t)st.st_size == b.info.erofs_size);
	CHECK_OK(shl_store__alias(s, gzd, known));
	CHECK(!strcmp(known, b.info.diff_id));
	CHECK_ERR(shl_store__alias(s, a.info.diff_id, known), SHL_ENOTFOUND); /* plain: no alias */

	CHECK_OK(shl_store_resolve(s, "testimg:1", got));
	CHECK(!strcmp(got, im.manifest));
	CHECK_OK(shl_store_resolve(s, "docker.io/library/testimg:1", got));
	CHECK(!strcmp(got, im.manifest));
	snprintf(ref, sizeof(ref), "%.19s", im.config + 7); /* short image ID */
	CHECK_OK(shl_store_resolve(s, ref, got));
	CHECK(!strcmp(got, im.manifest));
	CHECK_OK(shl_store_resolve(s, im.config, got));
	CHECK(!strcmp(got, im.manifest));
	CHECK_OK(shl_store_resolve(s, "testimg@sha256:1111111111111111111111111111111111111111111111111111111111111111",
				   got));
	CHECK(!strcmp(got, im.manifest));
	snprintf(ref, sizeof(ref), "testimg@%s", im.manifest);
	CHECK_OK(shl_store_resolve(s, ref, got));
	CHECK_ERR(shl_store_resolve(s, "testimg:2", got), SHL_ENOTFOUND);
	CHECK_ERR(shl_store_resolve(s, "other", got), SHL_ENOTFOUND);

	CHECK_OK(shl_store__get_blob(s, im.config, &data, &len, &media));
	CHECK(data && strstr(data, "SALT=q") && media && !strcmp(media, "application/vnd.oci.image.config.v1+json"));
	free(data);
	free(media);
	CHECK_ERR(shl_store__get_blob(s, gzd, &data, &len, NULL), SHL_ENOTFOUND);

	CHECK_OK(shl_store_list(s, on_image, &l));
	CHECK(l.n == 1 && l.layers == 2 && !strcmp(l.id, im.config) && !strcmp(l.tag, "docker.io/library/testimg:1"));
	CHECK_OK(shl_store_image_layers(s, "testimg:1", collect_str, order));
	CHECK(!strcmp(order[0], a.info.diff_id) && !strcmp(order[1], b.info.diff_id) && !order[2][0]);
	CHECK_OK(shl_store_layer_users(s, b.info.diff_id, collect_str, users));
	CHECK(!strcmp(users[0], im.manifest) && !users[1][0]);
	CHECK_OK(shl_store_inspect(s, "testimg:1", &json));
	CHECK(json && strstr(json, im.config));
	free(json);

	/* a stored layer is not read again: the source is never called */
	snapshot(root, snapa);
	{
		char da[72], db[72];
		struct buf t3 = make_tar("three");
		snprintf(da, sizeof(da), "%s", a.info.diff_id);
		snprintf(db, sizeof(db), "%s", b.info.diff_id);
		CHECK_OK(stage_buf(s, &g2, gzd, &b, known, &calls)); /* by alias */
		CHECK(!strcmp(known, db) && calls == 0 && !b.tar_tmp[0] && !b.lock);
		CHECK_OK(stage_buf(s, &t1, da, &a, known, &calls)); /* by diff_id */
		CHECK(!strcmp(known, da) && calls == 0 && !a.tar_tmp[0]);
		/* content that is not what the key says: EDIGEST, nothing kept */
		CHECK_ERR(stage_buf(s, &t3, "sha256:2222222222222222222222222222222222222222222222222222222222222222", &a,
				    known, &calls),
			  SHL_EDIGEST);
		CHECK(calls > 0 && count_dir(s->tmp_dir, NULL) == 1);
		free(t3.p);
	}
	snapshot(root, snapb);
	CHECK(!strcmp(snapa, snapb));
out:
	shl_store_close(s);
	free(t1.p);
	free(t2.p);
	free(g2.p);
}

/* ---- 2. a batch naming a missing layer commits nothing ----------------------- */

static void test_failed_batch(void)
{
	char root[512], known[72], before[72], after[72], got[72];
	struct buf t1 = make_tar("f1"), t2 = make_tar("f2");
	shl_staged a, b;
	shl_batch *batch = NULL;
	shl_store *s = NULL;
	struct img im, im2;

	mkroot("f", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	/* something stored first, so the snapshot is not of an empty store */
	CHECK_OK(stage_buf(s, &t1, NULL, &a, known, NULL));
	CHECK_OK(shl_batch_new(&batch));
	CHECK_OK(shl_batch_add_layer(batch, &a, NULL));
	{
		const char *d[] = { a.info.diff_id };
		CHECK_OK(add_image(batch, "f1", d, d, 1, "docker.io/library/f:1", &im));
	}
	CHECK_OK(shl_store_commit(s, batch));
	shl_batch_free(batch);

	snapshot(root, before);
	CHECK_OK(stage_buf(s, &t2, NULL, &b, known, NULL));
	CHECK(count_dir(s->tmp_dir, NULL) == 3); /* lock + staged tar + erofs */
	CHECK_OK(shl_batch_new(&batch));
	CHECK_OK(shl_batch_add_layer(batch, &b, NULL));
	{
		const char *d[] = { b.info.diff_id, "sha256:3333333333333333333333333333333333333333333333333333333333333333" };
		CHECK_OK(add_image(batch, "f2", d, d, 2, "docker.io/library/f:1", &im2)); /* would retag */
	}
	CHECK_ERR(shl_store_commit(s, batch), SHL_ENOTFOUND);
	CHECK(strstr(shl_error_last(), "3333333333") != NULL);
	shl_batch_free(batch);
	CHECK(count_dir(s->tmp_dir, NULL) == 1);
	snapshot(root, after);
	CHECK(!strcmp(before, after));
	CHECK(!shl_store_layer_has(s, b.info.diff_id));
	CHECK_OK(shl_store_resolve(s, "f:1", got));
	CHECK(!strcmp(got, im.manifest));

	/* a stored layer whose file vanished is refused as well */
	{
		char erofs[4200];
		shl_store_layer_paths(s, a.info.diff_id, NULL, 0, erofs, sizeof(erofs));
		CHECK(unlink(erofs) == 0);
		CHECK_OK(shl_batch_new(&batch));
		{
			const char *d[] = { a.info.diff_id };
			CHECK_OK(add_image(batch, "f3", d, d, 1, NULL, &im2));
		}
		CHECK_ERR(shl_store_commit(s, batch), SHL_ENOTFOUND);
		shl_batch_free(batch);
		CHECK_ERR(shl_store_resolve(s, im2.config, got), SHL_ENOTFOUND);
	}
	shl_store_close(s);
	free(t1.p);
	free(t2.p);
}

/* ---- 3. two processes import the same layer --------------------------------- */

/* child: stage `t` keyed by `key` (rendezvous through the pipes), commit an
 * image over it. Exit 0 = converted it, 3 = found it stored, 1 = failed. */
static void child_import(const char *root, const struct buf *t, const char *key, const char *salt, int signal_fd,
			 int gate_fd)
{
	struct src src = { t->p, t->n, 0, 0, signal_fd, gate_fd };
	char known[72];
	shl_store *s = NULL;
	shl_staged st;
	shl_batch *b = NULL;
	struct img im;
	const char *d[1];
	int rc;

	if (shl_store_open(&s, root) || shl_batch_new(&b))
		_exit(1);
	if ((rc = shl_store__stage_key(s, key, src_read, &src, &st, known)))
		_exit(1);
	if (!known[0] && shl_batch_add_layer(b, &st, NULL))
		_exit(1);
	d[0] = known[0] ? known : st.info.diff_id;
	if (add_image(b, salt, d, d, 1, NULL, &im) || shl_store_commit(s, b))
		_exit(1);
	shl_batch_free(b);
	shl_store_close(s);
	_exit(known[0] ? 3 : 0);
}

static int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_concurrent_import(void)
{
	char root[512], key[72], tar[4200];
	struct buf t = make_tar("shared");
	int sig[2], gate[2], ra, rb;
	pid_t pa, pb;
	shl_store *s = NULL;
	char c;

	mkroot("c", root, sizeof(root));
	digest_of(t.p, t.n, key);
	CHECK_OK(shl_store_open(&s, root)); /* create it, then let the children work */
	shl_store_close(s);
	s = NULL;
	if (pipe(sig) || pipe(gate))
		abort();
	/* A takes the lock and blocks inside its first read */
	if ((pa = fork()) == 0)
		child_import(root, &t, key, "A", sig[1], gate[0]);
	CHECK(read(sig[0], &c, 1) == 1);
	/* B can only wait for A's lock; then A goes on and commits */
	if ((pb = fork()) == 0)
		child_import(root, &t, key, "B", -1, -1);
	CHECK(write(gate[1], "g", 1) == 1);
	ra = wait_child(pa);
	rb = wait_child(pb);
	CHECK(ra == 0);  /* A converted */
	CHECK(rb == 3);  /* B waited and found it stored */
	close(sig[0]);
	close(sig[1]);
	close(gate[0]);
	close(gate[1]);
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		goto out;
	CHECK(shl_store_layer_has(s, key));
	CHECK(count_db(s, SHL_DB_IMAGES) == 2 && count_db(s, SHL_DB_LAYERS) == 1);
	snprintf(tar, sizeof(tar), "%s/layers", root);
	CHECK(count_dir(tar, NULL) == 2);
	snprintf(tar, sizeof(tar), "%s/tmp", root);
	CHECK(count_dir(tar, ".lock") == 0);
	shl_store_close(s);
out:
	free(t.p);
}

/* Two processes each hold one layer lock and then want the other's: the
 * kernel refuses one wait (EDEADLK), that one converts without the lock, and
 * both loads succeed. */
static void child_two(const char *root, const struct buf *t1, const char *k1, const struct buf *t2, const char *k2,
		      int ready_fd, int go_fd)
{
	char known1[72], known2[72], c;
	shl_store *s = NULL;
	shl_staged st1, st2;
	shl_batch *b = NULL;
	struct img im;
	const char *d[2];
	int conv = 0;

	alarm(60);
	if (shl_store_open(&s, root) || shl_batch_new(&b))
		_exit(1);
	if (stage_buf(s, t1, k1, &st1, known1, NULL) || known1[0] || shl_batch_add_layer(b, &st1, NULL))
		_exit(1);
	if (write(ready_fd, "r", 1) != 1 || read(go_fd, &c, 1) != 1)
		_exit(1);
	if (stage_buf(s, t2, k2, &st2, known2, NULL))
		_exit(1);
	if (!known2[0]) {
		conv = 1;
		if (shl_batch_add_layer(b, &st2, NULL))
			_exit(1);
	}
	d[0] = st1.info.diff_id;
	d[1] = known2[0] ? known2 : st2.info.diff_id;
	if (add_image(b, k1, d, d, 2, NULL, &im) || shl_store_commit(s, b))
		_exit(1);
	shl_batch_free(b);
	shl_store_close(s);
	_exit(conv ? 0 : 3);
}

static void test_lock_order(void)
{
	char root[512], kx[72], ky[72];
	struct buf tx = make_tar("x"), ty = make_tar("y");
	int r1[2], r2[2], go[2], ra, rb;
	pid_t pa, pb;
	shl_store *s = NULL;
	char c;

	mkroot("d", root, sizeof(root));
	digest_of(tx.p, tx.n, kx);
	digest_of(ty.p, ty.n, ky);
	CHECK_OK(shl_store_open(&s, root));
	shl_store_close(s);
	s = NULL;
	if (pipe(r1) || pipe(r2) || pipe(go))
		abort();
	if ((pa = fork()) == 0)
		child_two(root, &tx, kx, &ty, ky, r1[1], go[0]);
	if ((pb = fork()) == 0)
		child_two(root, &ty, ky, &tx, kx, r2[1], go[0]);
	CHECK(read(r1[0], &c, 1) == 1 && read(r2[0], &c, 1) == 1);
	CHECK(write(go[1], "gg", 2) == 2);
	ra = wait_child(pa);
	rb = wait_child(pb);
	/* both succeed; at least one converted its second layer itself */
	CHECK((ra == 0 || ra == 3) && (rb == 0 || rb == 3));
	CHECK(ra == 0 || rb == 0);
	for (int i = 0; i < 2; i++) {
		close(r1[i]);
		close(r2[i]);
		close(go[i]);
	}
	CHECK_OK(shl_store_open(&s, root));
	if (s) {
		char tmp[600];
		CHECK(count_db(s, SHL_DB_LAYERS) == 2 && count_db(s, SHL_DB_IMAGES) == 2);
		snprintf(tmp, sizeof(tmp), "%s/layers", root);
		CHECK(count_dir(tmp, NULL) == 4);
		shl_store_close(s);
	}
	free(tx.p);
	free(ty.p);
}

/* ---- 4. gc and prune ---------------------------------------------------------- */

static int g_events;
static void count_event(void *ctx, const char *kind, const char *what)
{
	(void)ctx;
	(void)kind;
	(void)what;
	g_events++;
}

static void test_gc(void)
{
	char root[512], known[72], gzd[72], path[4200], got[72];
	struct buf t[4] = { make_tar("g1"), make_tar("g2"), make_tar("g3"), make_tar("g4") };
	struct buf g4 = gzip_buf(&t[3]);
	char diff[4][72];
	shl_staged st[4];
	shl_batch *b = NULL;
	shl_store *s = NULL;
	shl_gc_report gr;
	struct img i1, i2;

	mkroot("g", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	digest_of(g4.p, g4.n, gzd);
	CHECK_OK(shl_batch_new(&b));
	for (int i = 0; i < 3; i++) {
		CHECK_OK(stage_buf(s, &t[i], NULL, &st[i], known, NULL));
		snprintf(diff[i], 72, "%.71s", st[i].info.diff_id);
		CHECK_OK(shl_batch_add_layer(b, &st[i], NULL));
	}
	{
		const char *d1[] = { diff[0], diff[1] }, *d2[] = { diff[1], diff[2] };
		CHECK_OK(add_image(b, "i1", d1, d1, 2, "docker.io/library/keep:1", &i1));
		CHECK_OK(add_image(b, "i2", d2, d2, 2, NULL, &i2)); /* dangling */
	}
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	/* garbage: a layer (with an alias) no image uses, a stray blob, an orphan file */
	CHECK_OK(shl_batch_new(&b));
	CHECK_OK(stage_buf(s, &g4, gzd, &st[3], known, NULL));
	snprintf(diff[3], 72, "%.71s", st[3].info.diff_id);
	CHECK_OK(shl_batch_add_layer(b, &st[3], "application/vnd.oci.image.layer.v1.tar+gzip"));
	CHECK_OK(shl_batch_put_blob(b, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
				    "application/json", "{}", 2));
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	snprintf(path, sizeof(path), "%s/layers/%064d.tar", root, 0);
	{
		int fd = open(path, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0 && write(fd, "junk", 4) == 4);
		if (fd >= 0)
			close(fd);
	}
	CHECK(count_db(s, SHL_DB_LAYERS) == 4 && count_db(s, SHL_DB_ALIASES) == 1 && count_db(s, SHL_DB_BLOBS) == 5);

	g_events = 0;
	CHECK_OK(shl_store_gc(s, &gr, count_event, NULL));
	CHECK(gr.layers == 1 && gr.blobs == 1 && gr.aliases == 1 && gr.files == 3);
	CHECK(g_events == 4);
	CHECK(!exists(path));
	CHECK(!shl_store_layer_has(s, diff[3]) && shl_store_layer_has(s, diff[2]));
	shl_store_layer_paths(s, diff[3], path, sizeof(path), NULL, 0);
	CHECK(!exists(path));
	CHECK(count_db(s, SHL_DB_LAYERS) == 3 && count_db(s, SHL_DB_ALIASES) == 0 && count_db(s, SHL_DB_BLOBS) == 4 &&
	      count_db(s, SHL_DB_IMAGES) == 2);
	/* nothing left to collect */
	CHECK_OK(shl_store_gc(s, &gr, NULL, NULL));
	CHECK(gr.layers == 0 && gr.blobs == 0 && gr.aliases == 0 && gr.files == 0);

	/* prune: the dangling image and its unique layer go, the shared one stays */
	CHECK_OK(shl_store_prune(s, 0, NULL, NULL));
	CHECK(count_db(s, SHL_DB_IMAGES) == 1 && count_db(s, SHL_DB_LAYERS) == 2 && count_db(s, SHL_DB_BLOBS) == 2);
	CHECK(shl_store_layer_has(s, diff[0]) && shl_store_layer_has(s, diff[1]) && !shl_store_layer_has(s, diff[2]));
	shl_store_layer_paths(s, diff[2], path, sizeof(path), NULL, 0);
	CHECK(!exists(path));
	CHECK_ERR(shl_store_resolve(s, i2.config, got), SHL_ENOTFOUND);
	/* rm of the last tag deletes the image and everything it alone used */
	CHECK_OK(shl_store_remove(s, "keep:1", 0, NULL, NULL));
	for (int db = 0; db < SHL_DB_META; db++)
		CHECK(count_db(s, db) == 0);
	snprintf(path, sizeof(path), "%s/layers", root);
	CHECK(count_dir(path, NULL) == 0);
	shl_store_close(s);
	for (int i = 0; i < 4; i++)
		free(t[i].p);
	free(g4.p);
}

/* ---- 5. fsck ----------------------------------------------------------------- */

static int g_msgs;
static char g_log[8192];
static void on_msg(void *ctx, const char *m)
{
	size_t n = strlen(g_log);
	(void)ctx;
	g_msgs++;
	snprintf(g_log + n, sizeof(g_log) - n, "%s\n", m);
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char c = 0;

	CHECK(fd >= 0 && pread(fd, &c, 1, off) == 1);
	c ^= 0x20;
	CHECK(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

static void test_fsck(void)
{
	char root[512], known[72], tar[4200], erofs[4200], orphan[4200], stale[4200], lockf[4200];
	struct buf t1 = make_tar("k1"), t2 = make_tar("k2");
	shl_staged a, b;
	shl_batch *batch = NULL;
	shl_store *s = NULL;
	shl_fsck_report r;
	struct img im;

	mkroot("k", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	CHECK_OK(stage_buf(s, &t1, NULL, &a, known, NULL));
	CHECK_OK(stage_buf(s, &t2, NULL, &b, known, NULL));
	CHECK_OK(shl_batch_new(&batch));
	CHECK_OK(shl_batch_add_layer(batch, &a, NULL));
	CHECK_OK(shl_batch_add_layer(batch, &b, NULL));
	{
		const char *d[] = { a.info.diff_id, b.info.diff_id };
		CHECK_OK(add_image(batch, "k", d, d, 2, "docker.io/library/k:1", &im));
	}
	CHECK_OK(shl_store_commit(s, batch));
	shl_batch_free(batch);

	CHECK_OK(shl_store_fsck(s, SHL_FSCK_DEEP, &r, on_msg, NULL));
	CHECK(r.problems == 0 && r.layers == 2 && r.images == 1 && r.blobs == 2 && r.refs == 1);

	/* a flipped byte in a tar, a missing EROFS file */
	shl_store_layer_paths(s, a.info.diff_id, tar, sizeof(tar), NULL, 0);
	shl_store_layer_paths(s, b.info.diff_id, NULL, 0, erofs, sizeof(erofs));
	flip_byte(tar, 600);
	CHECK(unlink(erofs) == 0);
	g_msgs = 0;
	g_log[0] = '\0';
	CHECK_OK(shl_store_fsck(s, 0, &r, on_msg, NULL));
	CHECK(r.problems == 2 && g_msgs == 2);
	CHECK(strstr(g_log, a.info.diff_id) && strstr(g_log, "corrupt"));
	CHECK(strstr(g_log, b.info.diff_id) && strstr(g_log, ".erofs"));

	/* orphans and temp files: reported, then repaired; indexed files stay */
	snprintf(orphan, sizeof(orphan), "%s/layers/%064d.erofs", root, 7);
	snprintf(stale, sizeof(stale), "%s/tmp/99999-dead00", root);
	snprintf(lockf, sizeof(lockf), "%s/tmp/%.64s.lock", root, a.info.diff_id + 7);
	CHECK(mkdir(stale, 0755) == 0);
	{
		char f[4300];
		int fd;
		snprintf(f, sizeof(f), "%s/layer-abc", stale);
		fd = open(f, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
		fd = open(orphan, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
		fd = open(lockf, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
	}
	CHECK_OK(shl_store_fsck(s, 0, &r, NULL, NULL));
	CHECK(r.problems == 3 && r.repaired == 0);
	CHECK(exists(orphan) && exists(stale));
	g_msgs = 0;
	CHECK_OK(shl_store_fsck(s, SHL_FSCK_REPAIR, &r, on_msg, NULL));
	CHECK(r.problems == 2 && r.repaired == 3);
	CHECK(!exists(orphan) && !exists(stale) && !exists(lockf));
	CHECK(exists(tar) && exists(s->tmp_dir)); /* named by the index / in use */

	/* deep: a tar whose size and xxh3 agree with a (forged) record but whose
	 * sha256 is not its diff_id; and a blob whose bytes changed */
	{
		shl_json *rec = NULL;
		uint8_t x[16];
		char hex[33], *v;
		size_t len;
		shl_wtxn *w;
		int fd = open(tar, O_RDONLY);
		struct stat st;
		char *data = NULL;
		fstat(fd, &st);
		data = malloc((size_t)st.st_size);
		CHECK(read(fd, data, (size_t)st.st_size) == st.st_size);
		close(fd);
		{
			shl_xxh3 *h;
			shl_xxh3_new(&h);
			shl_xxh3_update(h, data, (size_t)st.st_size);
			shl_xxh3_final(h, x);
			shl_xxh3_free(h);
		}
		free(data);
		shl_hex(x, 16, hex);
		CHECK_OK(shl_store__get_layer(s, a.info.diff_id, &rec));
		shl_json_set_str(rec, "tar_xxh3", hex);
		v = strdup(shl_json_dump(rec, 0, &len));
		shl_json_put(rec);
		CHECK_OK(shl_index_wbegin(s->ix, &w));
		CHECK_OK(shl_index_wput(w, SHL_DB_LAYERS, a.info.diff_id, v, len));
		CHECK_OK(shl_index_wput(w, SHL_DB_BLOBS, im.config, "application/json\n{}", 18));
		CHECK_OK(shl_index_wcommit(w));
		free(v);
	}
	/* fast: b's missing EROFS and the blob; a's tar passes */
	g_log[0] = '\0';
	CHECK_OK(shl_store_fsck(s, 0, &r, on_msg, NULL));
	CHECK(r.problems == 2 && strstr(g_log, "content has digest") && !strstr(g_log, "tar content"));
	/* deep: also a's sha256 */
	g_log[0] = '\0';
	CHECK_OK(shl_store_fsck(s, SHL_FSCK_DEEP, &r, on_msg, NULL));
	CHECK(r.problems == 3 && strstr(g_log, "tar content has digest"));
	shl_store_close(s);
	free(t1.p);
	free(t2.p);
}

/* ---- 6. the index map grows --------------------------------------------------- */

static void test_map_growth(void)
{
	char root[512], d[8][72], c;
	size_t saved = shl_index__initial_mapsize;
	shl_store *s = NULL;
	shl_batch *b = NULL;
	int ready[2], go[2];
	pid_t pid;
	size_t n = 1u << 20;
	char *blob = malloc(n);

	mkroot("m", root, sizeof(root));
	shl_index__initial_mapsize = 256u << 10;
	if (pipe(ready) || pipe(go))
		abort();
	/* the child opens the store while it is small, the parent grows it, the
	 * child then reads and writes through the grown map */
	CHECK_OK(shl_store_open(&s, root));
	shl_store_close(s);
	s = NULL;
	if ((pid = fork()) == 0) {
		char *v = NULL;
		size_t len;
		shl_wtxn *w;
		alarm(60);
		if (shl_store_open(&s, root) || write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		for (int i = 0; i < 8; i++) {
			char key[72];
			if (read(go[0], key, 71) != 71)
				_exit(1);
			key[71] = '\0';
			if (shl_index_get(s->ix, SHL_DB_BLOBS, key, &v, &len) || len != n + 25) /* "application/octet-stream\n" + bytes */
				_exit(2);
			free(v);
		}
		if (shl_index_wbegin(s->ix, &w) || shl_index_wput(w, SHL_DB_META, "child", "1", 1) || shl_index_wcommit(w))
			_exit(3);
		shl_store_close(s);
		_exit(0);
	}
	CHECK(read(ready[0], &c, 1) == 1);
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		goto out;
	CHECK_OK(shl_batch_new(&b));
	for (int i = 0; i < 8; i++) {
		memset(blob, 'a' + i, n);
		digest_of(blob, n, d[i]);
		CHECK_OK(shl_batch_put_blob(b, d[i], "application/octet-stream", blob, n));
	}
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	CHECK(shl_index_mapsize(s->ix) >= (8u << 20));
	CHECK(count_db(s, SHL_DB_BLOBS) == 8);
	CHECK(write(go[1], "g", 1) == 1);
	for (int i = 0; i < 8; i++)
		CHECK(write(go[1], d[i], 71) == 71);
	{
		int st = wait_child(pid);
		CHECK(st == 0);
		if (st)
			fprintf(stderr, "map growth: child exited with %d\n", st);
	}
	{
		char *v = NULL;
		CHECK_OK(shl_index_get(s->ix, SHL_DB_META, "child", &v, NULL));
		free(v);
	}
	shl_store_close(s);
	s = NULL;
	/* reopened with the small initial size: the file's size wins */
	CHECK_OK(shl_store_open(&s, root));
	if (s) {
		char *data = NULL;
		size_t len;
		CHECK_OK(shl_store__get_blob(s, d[7], &data, &len, NULL));
		CHECK(len == n && data[0] == 'h' && data[n - 1] == 'h');
		free(data);
		shl_store_close(s);
	}
out:
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(go[i]);
	}
	shl_index__initial_mapsize = saved;
	free(blob);
}

/* ---- 7. open: default root, schema, stale temp files -------------------------- */

static void test_open(void)
{
	char root[512], stale[600], got[600];
	shl_store *s = NULL;
	shl_wtxn *w;

	mkroot("o", root, sizeof(root));
	setenv("SHALE_ROOT", root, 1);
	CHECK_OK(shl_store_open(&s, NULL));
	CHECK(s && !strcmp(shl_store_root(s), root));
	unsetenv("SHALE_ROOT");
	if (!s)
		return;
	/* a staging dir nobody holds: swept by the next open */
	snprintf(stale, sizeof(stale), "%s/tmp/1-zzzzzz", root);
	CHECK(mkdir(stale, 0755) == 0);
	snprintf(got, sizeof(got), "%s/tmp", root);
	CHECK(count_dir(got, NULL) == 2);
	CHECK_OK(shl_index_wbegin(s->ix, &w));
	CHECK_OK(shl_index_wput(w, SHL_DB_META, "schema", "2", 1));
	CHECK_OK(shl_index_wcommit(w));
	shl_store_close(s);
	s = NULL;
	CHECK(count_dir(got, NULL) == 1); /* own dir removed at close, stale one still there */
	CHECK_ERR(shl_store_open(&s, root), SHL_EUNSUPPORTED);
	CHECK(!exists(stale)); /* swept by the open even though it then failed */
	CHECK(strstr(shl_error_last(), "schema") != NULL);
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
	snprintf(g_tmp, sizeof(g_tmp), "/tmp/shl-store-XXXXXX");
	if (!mkdtemp(g_tmp)) {
		perror("mkdtemp");
		return 1;
	}
	test_import_query();
	test_failed_batch();
	test_concurrent_import();
	test_lock_order();
	test_gc();
	test_fsck();
	test_map_growth();
	test_open();
	nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return check_result("test_store");
}
