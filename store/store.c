/*
 * store/store.c - store root, staging and the commit protocol.
 *
 * Publish protocol (crash safety): a layer is streamed into temp files in this
 * process's staging dir (<root>/tmp/<pid>-XXXXXX, flock'd while alive), fsync'd
 * and verified; at commit the files are renamed into layers/ (an existing
 * target has the same content: the temp is dropped), layers/ is fsync'd, and
 * then ONE LMDB write transaction records layers, aliases, blobs, images and
 * refs. The index therefore never names a missing or partial file; a crash
 * leaves at most temp dirs (removed on the next open) or unreferenced layer
 * files (removed by `shale fsck --repair`).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = malloc(n);

	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

static int mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return shl_err(SHL_EINVAL, "path too long: %s", path);
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];
			buf[i] = '\0';
			if (mkdir(buf, 0755) != 0 && errno != EEXIST)
				return shl_err_sys(SHL_EIO, "mkdir %s", buf);
			buf[i] = c;
		}
	}
	return 0;
}

static void rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (d) {
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char *p = join(path, e->d_name);
			if (!p)
				continue;
			if (e->d_type == DT_DIR)
				rm_rf(p);
			else
				unlink(p);
			free(p);
		}
		closedir(d);
	}
	rmdir(path);
}

/* Remove staging dirs whose owner is gone (their lock file is not held). */
static void clean_stale_tmp(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		char lock[4200], *dir;
		int fd;
		if (e->d_name[0] == '.')
			continue;
		snprintf(lock, sizeof(lock), "%s/%s/lock", tmp, e->d_name);
		fd = open(lock, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd); /* alive */
			continue;
		}
		dir = join(tmp, e->d_name);
		if (dir)
			rm_rf(dir);
		free(dir);
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
}

static char *default_root(void)
{
	const char *env = getenv("SHALE_ROOT"), *xdg, *home;
	char buf[4096];

	if (env && *env)
		return strdup(env);
	if (geteuid() == 0)
		return strdup("/var/lib/shale");
	xdg = getenv("XDG_DATA_HOME");
	if (xdg && *xdg) {
		snprintf(buf, sizeof(buf), "%s/shale", xdg);
		return strdup(buf);
	}
	home = getenv("HOME");
	snprintf(buf, sizeof(buf), "%s/.local/share/shale", home ? home : ".");
	return strdup(buf);
}

int shl_store_open(shl_store **out, const char *root)
{
	shl_store *s = calloc(1, sizeof(*s));
	char *index = NULL, *tmp = NULL, *lock = NULL, *meta = NULL;
	int rc, guard = -1;

	*out = NULL;
	if (!s)
		return shl_err(SHL_ENOMEM, "out of memory");
	s->tmp_lock_fd = -1;
	s->root = root ? strdup(root) : default_root();
	if (!s->root || !(s->layers_dir = join(s->root, "layers")) || !(index = join(s->root, "index")) ||
	    !(tmp = join(s->root, "tmp"))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = mkdir_p(s->layers_dir)) || (rc = mkdir_p(index)) || (rc = mkdir_p(tmp)))
		goto fail;
	/* tmp/.lock serializes "create + lock my staging dir" against the
	 * sweep of stale ones, so a sweep never sees a live dir before its lock */
	{
		char gl[4200];
		snprintf(gl, sizeof(gl), "%s/.lock", tmp);
		guard = open(gl, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (guard < 0 || flock(guard, LOCK_EX) != 0) {
			rc = shl_err_sys(SHL_EIO, "lock %s", gl);
			goto fail;
		}
	}
	clean_stale_tmp(tmp);
	{
		char tpl[4200];
		snprintf(tpl, sizeof(tpl), "%s/%d-XXXXXX", tmp, (int)getpid());
		if (!mkdtemp(tpl)) {
			rc = shl_err_sys(SHL_EIO, "create staging dir in %s", tmp);
			goto fail;
		}
		s->tmp_dir = strdup(tpl);
		lock = join(tpl, "lock");
		if (!s->tmp_dir || !lock) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto fail;
		}
		s->tmp_lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (s->tmp_lock_fd < 0 || flock(s->tmp_lock_fd, LOCK_EX) != 0) {
			rc = shl_err_sys(SHL_EIO, "lock %s", lock);
			goto fail;
		}
	}
	close(guard);
	guard = -1;
	if ((rc = shl_index_open(&s->ix, index))) {
		shl_err_ctx(rc, "store %s", s->root);
		goto fail;
	}
	/* schema version */
	if (shl_index_get(s->ix, SHL_DB_META, "schema", &meta, NULL) == SHL_ENOTFOUND) {
		shl_wtxn *w;
		if ((rc = shl_index_wbegin(s->ix, &w)) || (rc = shl_index_wput(w, SHL_DB_META, "schema", "1", 1)) ||
		    (rc = shl_index_wcommit(w)))
			goto fail;
	} else if (meta && strcmp(meta, "1") != 0) {
		rc = shl_err(SHL_EUNSUPPORTED, "store %s: schema version %s not supported", s->root, meta);
		goto fail;
	}
	free(meta);
	free(index);
	free(tmp);
	free(lock);
	*out = s;
	return 0;
fail:
	if (guard >= 0)
		close(guard);
	free(meta);
	free(index);
	free(tmp);
	free(lock);
	shl_store_close(s);
	return rc;
}

void shl_store_close(shl_store *s)
{
	if (!s)
		return;
	shl_index_close(s->ix);
	if (s->tmp_dir)
		rm_rf(s->tmp_dir);
	if (s->tmp_lock_fd >= 0)
		close(s->tmp_lock_fd);
	free(s->tmp_dir);
	free(s->layers_dir);
	free(s->root);
	free(s);
}

const char *shl_store_root(const shl_store *s)
{
	return s->root;
}

void shl_store__fault(const char *point)
{
	const char *f = getenv("SHALE_FAULT");

	if (f && !strcmp(f, point))
		kill(getpid(), SIGKILL);
}

int shl_store__lock(shl_store *s, int exclusive)
{
	char path[4200];
	int fd;

	snprintf(path, sizeof(path), "%s/lock", s->root);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return shl_err_sys(SHL_EIO, "open %s", path);
	if (flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0) {
		close(fd);
		return shl_err_sys(SHL_EIO, "lock %s", path);
	}
	return fd;
}

/* ---- staging ------------------------------------------------------------ */

int shl_store__stage(shl_store *s, shl_layer_read_fn fn, void *ctx, shl_staged *st)
{
	shl_layer_opts o = SHL_LAYER_OPTS_INIT;
	int tfd = -1, efd = -1, rc;

	memset(st, 0, sizeof(*st));
	snprintf(st->tar_tmp, sizeof(st->tar_tmp), "%s/layer-XXXXXX", s->tmp_dir);
	snprintf(st->erofs_tmp, sizeof(st->erofs_tmp), "%s/erofs-XXXXXX", s->tmp_dir);
	tfd = mkstemp(st->tar_tmp);
	if (tfd < 0) {
		st->tar_tmp[0] = '\0';
		st->erofs_tmp[0] = '\0';
		return shl_err_sys(SHL_EIO, "create temp file in %s", s->tmp_dir);
	}
	efd = mkstemp(st->erofs_tmp);
	if (efd < 0) {
		st->erofs_tmp[0] = '\0';
		rc = shl_err_sys(SHL_EIO, "create temp file in %s", s->tmp_dir);
		goto out;
	}
	o.tar_fd = tfd;
	o.erofs_fd = efd;
	if ((rc = shl_layer_convert(fn, ctx, &o, &st->info)))
		goto out;
	if (fsync(tfd) != 0 || fsync(efd) != 0) {
		rc = shl_err_sys(SHL_EIO, "fsync staged layer");
		goto out;
	}
	if (fchmod(tfd, 0644) != 0 || fchmod(efd, 0644) != 0)
		rc = shl_err_sys(SHL_EIO, "chmod staged layer");
	shl_store__fault("staged");
out:
	if (tfd >= 0)
		close(tfd);
	if (efd >= 0)
		close(efd);
	if (rc)
		shl_store__unstage(st);
	return rc;
}

void shl_store__unstage(shl_staged *st)
{
	if (st->published)
		return;
	if (st->tar_tmp[0])
		unlink(st->tar_tmp);
	if (st->erofs_tmp[0])
		unlink(st->erofs_tmp);
	st->tar_tmp[0] = st->erofs_tmp[0] = '\0';
}

/* ---- queries ------------------------------------------------------------ */

int shl_store__has_layer(shl_store *s, const char *diff_id)
{
	char *v = NULL;
	int rc = shl_index_get(s->ix, SHL_DB_LAYERS, diff_id, &v, NULL);

	free(v);
	return rc == 0;
}

int shl_store__alias(shl_store *s, const char *blob_digest, char diff_id[72])
{
	char *v = NULL;
	size_t n;
	shl_json *j = NULL;
	const char *d;
	int rc = shl_index_get(s->ix, SHL_DB_ALIASES, blob_digest, &v, &n);

	if (rc)
		return rc;
	if ((rc = shl_json_parse(&j, v, n, 1 << 20, "alias record")) == 0) {
		d = shl_json_get_str(j, "diff_id");
		if (d && strlen(d) < 72)
			snprintf(diff_id, 72, "%s", d);
		else
			rc = shl_err(SHL_EFORMAT, "alias %s: corrupt record", blob_digest);
	}
	shl_json_put(j);
	free(v);
	return rc;
}

int shl_store__get_blob(shl_store *s, const char *digest, char **data, size_t *len, char **media)
{
	char *v = NULL, *nl;
	size_t n;
	int rc = shl_index_get(s->ix, SHL_DB_BLOBS, digest, &v, &n);

	if (rc)
		return rc == SHL_ENOTFOUND ? shl_err(SHL_ENOTFOUND, "blob %s not in the store", digest) : rc;
	/* value: "<media type>\n<bytes>" */
	nl = memchr(v, '\n', n);
	if (!nl) {
		free(v);
		return shl_err(SHL_EFORMAT, "blob %s: corrupt record", digest);
	}
	*len = n - (size_t)(nl + 1 - v);
	*data = malloc(*len + 1);
	if (!*data) {
		free(v);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	memcpy(*data, nl + 1, *len);
	(*data)[*len] = '\0';
	if (media) {
		*nl = '\0';
		*media = strdup(v);
	}
	free(v);
	return 0;
}

static int get_json(shl_store *s, int db, const char *key, shl_json **rec, const char *what)
{
	char *v = NULL;
	size_t n;
	int rc = shl_index_get(s->ix, db, key, &v, &n);

	*rec = NULL;
	if (rc)
		return rc == SHL_ENOTFOUND ? shl_err(SHL_ENOTFOUND, "%s %s not in the store", what, key) : rc;
	rc = shl_json_parse(rec, v, n, SHL_CONFIG_CAP, what);
	free(v);
	return rc;
}

int shl_store__get_image(shl_store *s, const char *manifest, shl_json **rec)
{
	return get_json(s, SHL_DB_IMAGES, manifest, rec, "image");
}

int shl_store__get_layer(shl_store *s, const char *diff_id, shl_json **rec)
{
	return get_json(s, SHL_DB_LAYERS, diff_id, rec, "layer");
}

int shl_store_layer_paths(shl_store *s, const char *diff_id, char *tar, size_t tar_len,
			  char *erofs, size_t erofs_len)
{
	if (strncmp(diff_id, "sha256:", 7) != 0 || strlen(diff_id) != 71)
		return shl_err(SHL_EINVAL, "bad diff_id %s", diff_id);
	if (tar)
		snprintf(tar, tar_len, "%s/%s.tar", s->layers_dir, diff_id + 7);
	if (erofs)
		snprintf(erofs, erofs_len, "%s/%s.erofs", s->layers_dir, diff_id + 7);
	return 0;
}
