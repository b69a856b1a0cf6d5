/*
 * store/store.c - opening a store root: default location, directories, the
 * schema version, this process's staging dir, the store-wide lock, and the
 * sweep of what dead processes left in tmp/.
 *
 * Publish protocol (crash safety): a layer is streamed into temp files in this
 * process's staging dir (<root>/tmp/<pid>-XXXXXX, flock'd while alive), fsync'd
 * and verified (store/layerstore.c); at commit the files are renamed into
 * layers/ (an existing target has the same content), layers/ is fsync'd, and
 * then ONE LMDB write transaction records layers, aliases, blobs, images and
 * refs (store/batch.c). The index therefore never names a missing or partial
 * file; a crash leaves at most temp dirs (removed on the next open) or
 * unreferenced layer files (removed by `shale fsck --repair` and `prune`).
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

#define SHL_SCHEMA "1"

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

/* Remove a file or a directory tree; 0 if `path` is gone afterwards. */
static int rm_rf(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;

	if (!d)
		return errno == ENOTDIR ? unlink(path) : rmdir(path);
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
	return rmdir(path);
}

/* Remove staging dirs whose owner is gone (their lock file is not held) and
 * layer lock files nobody holds. The caller holds tmp/.lock. */
static int clean_stale_tmp(const char *tmp)
{
	DIR *d = opendir(tmp);
	struct dirent *e;
	int removed = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char lock[4200], *dir;
		size_t nl = strlen(e->d_name);
		int fd;
		if (e->d_name[0] == '.')
			continue;
		if (nl > 5 && !strcmp(e->d_name + nl - 5, ".lock")) {
			snprintf(lock, sizeof(lock), "%s/%s", tmp, e->d_name);
			removed += shl_store__clean_layer_lock(lock);
			continue;
		}
		snprintf(lock, sizeof(lock), "%s/%s/lock", tmp, e->d_name);
		fd = open(lock, O_RDWR | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
			close(fd); /* alive */
			continue;
		}
		dir = join(tmp, e->d_name);
		if (dir && rm_rf(dir) == 0)
			removed++;
		free(dir);
		if (fd >= 0)
			close(fd);
	}
	closedir(d);
	return removed;
}

/* tmp/.lock serializes "create + lock a staging dir" against the sweep of
 * stale ones, so a sweep never sees a live dir before its lock. */
static int tmp_guard(const char *tmp)
{
	char gl[4200];
	int fd;

	snprintf(gl, sizeof(gl), "%s/.lock", tmp);
	fd = open(gl, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || flock(fd, LOCK_EX) != 0) {
		int rc = shl_err_sys(SHL_EIO, "lock %s", gl);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

int shl_store__clean_tmp(shl_store *s)
{
	char tmp[4200];
	int guard, n;

	snprintf(tmp, sizeof(tmp), "%s/tmp", s->root);
	if ((guard = tmp_guard(tmp)) < 0)
		return guard;
	n = clean_stale_tmp(tmp);
	close(guard);
	return n;
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
	if ((guard = tmp_guard(tmp)) < 0) {
		rc = guard;
		goto fail;
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
	{
		/* the store-wide lock file is part of the layout from the start, so
		 * a failed first operation leaves the root as it found it */
		char lp[4200];
		int lfd;
		snprintf(lp, sizeof(lp), "%s/lock", s->root);
		if ((lfd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
			rc = shl_err_sys(SHL_EIO, "open %s", lp);
			goto fail;
		}
		close(lfd);
	}
	if ((rc = shl_index_open(&s->ix, index))) {
		shl_err_ctx(rc, "store %s", s->root);
		goto fail;
	}
	/* schema version */
	rc = shl_index_get(s->ix, SHL_DB_META, "schema", &meta, NULL);
	if (rc == SHL_ENOTFOUND) {
		shl_wtxn *w;
		if ((rc = shl_index_wbegin(s->ix, &w)))
			goto fail;
		if ((rc = shl_index_wput(w, SHL_DB_META, "schema", SHL_SCHEMA, strlen(SHL_SCHEMA)))) {
			shl_index_wabort(w);
			goto fail;
		}
		if ((rc = shl_index_wcommit(w)))
			goto fail;
	} else if (rc) {
		goto fail;
	} else if (strcmp(meta, SHL_SCHEMA) != 0) {
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
