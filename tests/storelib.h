/*
 * tests/storelib.h - helpers shared by the store tests (test_store.c,
 * test_store_maint.c): tiny tars and gzip, digests, a byte-exact snapshot of
 * a store root, a layer source with rendezvous pipes, image records.
 */
#ifndef SHL_TESTS_STORELIB_H
#define SHL_TESTS_STORELIB_H

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
#include "testbuf.h"
#include "shale/store.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

static char g_tmp[256] __attribute__((unused)); /* the test's mkdtemp root */

/* ---- helpers: tars, gzip, digests, files ------------------------------------ */

/* one ustar entry: type '0' file, '5' dir */
static inline void tar_add(struct buf *t, const char *name, char type, const char *data)
{
	tar_entry(t, name, type, data, data ? strlen(data) : 0, NULL, 0);
}

/* a small layer whose content depends on `seed` */
static inline struct buf make_tar(const char *seed)
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

static inline int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static inline int count_dir(const char *dir, const char *suffix)
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

static shl_sha256 *g_snap __attribute__((unused));
static size_t g_rootlen __attribute__((unused));

static inline int snap_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
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

static inline void snapshot(const char *root, char out[72])
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

static inline ssize_t src_read(void *ctx, void *out, size_t len)
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

static inline int stage_buf(shl_store *s, const struct buf *b, const char *key, shl_staged *st, char known[72], int *calls)
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
static inline int add_image(shl_batch *b, const char *salt, const char *const *diffs, const char *const *blobs, size_t n,
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

static inline void mkroot(const char *name, char *root, size_t len)
{
	snprintf(root, len, "%s/%s", g_tmp, name);
}

static inline size_t count_db(shl_store *s, int db)
{
	size_t n = 0;
	shl_index_count(s->ix, db, &n);
	return n;
}


static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* the exit status of a child process (128+signal if killed), -1 on error */
static inline int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* mkdtemp the test root into g_tmp; 0 on success */
static inline int storelib_init(const char *prefix)
{
	snprintf(g_tmp, sizeof(g_tmp), "/tmp/%s-XXXXXX", prefix);
	if (!mkdtemp(g_tmp)) {
		perror("mkdtemp");
		return -1;
	}
	return 0;
}

static inline void storelib_cleanup(void)
{
	nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
