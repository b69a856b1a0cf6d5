/*
 * run/imagemount.c - `shale mount` / `umount` / `mounts`: an image's layers
 * stacked with overlayfs at a directory (shale/mount.h).
 *
 * Each layer's EROFS index is mounted once, at <root>/run/layers/<hex>, and
 * shared by every mounted image that uses it. A state file per mounted
 * directory (<root>/run/mounts/<sha256 of the path>.json) records which
 * layers it uses, so the state survives the shale process: `umount` releases
 * the layers nobody else uses, and stale state (the directory is no longer
 * a mount point, e.g. after a reboot or a lazy unmount) is swept on the next
 * mount/umount/mounts. A store-wide lock (<root>/run/lock) serializes all of
 * this between processes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale/mount.h"
#include "store/store_int.h"
#include "util/err.h"
#include "util/hash.h"

struct rt {
	char run[4200], layers[4200], mounts[4200];
	int lockfd;
};

static int rt_open(shl_store *s, struct rt *r)
{
	char lock[4300];

	snprintf(r->run, sizeof(r->run), "%s/run", s->root);
	snprintf(r->layers, sizeof(r->layers), "%s/run/layers", s->root);
	snprintf(r->mounts, sizeof(r->mounts), "%s/run/mounts", s->root);
	for (int i = 0; i < 3; i++) {
		const char *d = i == 0 ? r->run : i == 1 ? r->layers : r->mounts;
		if (mkdir(d, 0700) != 0 && errno != EEXIST)
			return shl_err_sys(SHL_EIO, "mkdir %s", d);
	}
	snprintf(lock, sizeof(lock), "%s/lock", r->run);
	r->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (r->lockfd < 0 || flock(r->lockfd, LOCK_EX) != 0)
		return shl_err_sys(SHL_EIO, "lock %s", lock);
	return 0;
}

static void rt_close(struct rt *r)
{
	if (r->lockfd >= 0)
		close(r->lockfd);
}

static void state_path(const struct rt *r, const char *dir, char *out, size_t len)
{
	uint8_t h[32];
	char hex[65];

	shl_sha256_buf(dir, strlen(dir), h);
	shl_hex(h, 32, hex);
	snprintf(out, len, "%s/%.32s.json", r->mounts, hex);
}

static int read_state(const char *path, shl_json **out)
{
	char buf[1 << 16];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	*out = NULL;
	if (fd < 0)
		return SHL_ENOTFOUND;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n <= 0)
		return shl_err(SHL_EFORMAT, "mount state %s unreadable", path);
	return shl_json_parse(out, buf, (size_t)n, sizeof(buf), path);
}

/* Is a layer (hex) used by any state file other than `except`? */
static int layer_in_use(const struct rt *r, const char *hex, const char *except)
{
	DIR *d = opendir(r->mounts);
	struct dirent *e;
	int used = 0;

	while (d && !used && (e = readdir(d))) {
		char p[4600];
		shl_json *st = NULL;
		if (e->d_name[0] == '.' || !strstr(e->d_name, ".json"))
			continue;
		snprintf(p, sizeof(p), "%s/%s", r->mounts, e->d_name);
		if (except && !strcmp(p, except))
			continue;
		if (read_state(p, &st) != 0)
			continue;
		shl_json *ls = shl_json_get(st, "layers");
		for (size_t i = 0; i < shl_json_len(ls); i++)
			if (shl_json_str(shl_json_at(ls, i)) && !strcmp(shl_json_str(shl_json_at(ls, i)), hex))
				used = 1;
		shl_json_put(st);
	}
	if (d)
		closedir(d);
	return used;
}

/* Drop a state file and release what only it used. */
static void release(const struct rt *r, const char *statefile, shl_json *st)
{
	shl_json *ls = shl_json_get(st, "layers");
	const char *tmpfs = shl_json_get_str(st, "tmpfs");

	if (tmpfs) {
		umount2(tmpfs, MNT_DETACH);
		rmdir(tmpfs);
	}
	unlink(statefile);
	for (size_t i = 0; i < shl_json_len(ls); i++) {
		const char *hex = shl_json_str(shl_json_at(ls, i));
		char ld[4400];
		if (!hex || layer_in_use(r, hex, NULL))
			continue;
		snprintf(ld, sizeof(ld), "%s/%s", r->layers, hex);
		if (shl_is_mountpoint(ld))
			umount2(ld, MNT_DETACH);
		rmdir(ld);
	}
}

/* State whose directory is no longer mounted: release it. */
static void sweep(const struct rt *r)
{
	DIR *d = opendir(r->mounts);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char p[4600];
		shl_json *st = NULL;
		const char *dir;
		if (e->d_name[0] == '.' || !strstr(e->d_name, ".json"))
			continue;
		snprintf(p, sizeof(p), "%s/%s", r->mounts, e->d_name);
		if (read_state(p, &st) != 0) {
			unlink(p);
			continue;
		}
		dir = shl_json_get_str(st, "dir");
		int64_t pid = 0;
		shl_json_get_int(st, "pid", &pid);
		if (dir && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH && shl_is_mountpoint(dir))
			umount2(dir, MNT_DETACH); /* its owner (shale run) died */
		if (!dir || !shl_is_mountpoint(dir))
			release(r, p, st);
		shl_json_put(st);
	}
	if (d)
		closedir(d);
}

struct lay_ctx {
	shl_store *s;
	char (*hex)[65];
	size_t n, cap;
};

static int collect(void *ctx, const char *diff)
{
	struct lay_ctx *c = ctx;

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16;
		void *nh = realloc(c->hex, cap * sizeof(*c->hex));
		if (!nh)
			return shl_err(SHL_ENOMEM, "out of memory");
		c->hex = nh;
		c->cap = cap;
	}
	snprintf(c->hex[c->n++], 65, "%s", diff + 7);
	return 0;
}

static int dir_empty(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

int shl_image_mount(shl_store *s, const char *ref, const char *dir_in, const shl_image_mount_opts *o)
{
	struct rt r = { .lockfd = -1 };
	struct lay_ctx lc = { s, NULL, 0, 0 };
	char dir[4096], statefile[4400], tmpfs[4400] = "", up[4500], wk[4500];
	const char **lowers = NULL;
	shl_json *st = NULL, *ls = NULL;
	int rc, empty;

	if (!realpath(dir_in, dir))
		return shl_err_sys(SHL_EIO, "mount point %s", dir_in);
	if (shl_is_mountpoint(dir))
		return shl_err(SHL_EBUSY, "%s is already a mount point", dir);
	if ((empty = dir_empty(dir)) <= 0)
		return empty < 0 ? shl_err_sys(SHL_EIO, "open %s", dir) : shl_err(SHL_EBUSY, "%s is not empty", dir);
	if ((rc = shl_store_image_layers(s, ref, collect, &lc)))
		return rc;
	if (lc.n > SHL_OVERLAY_MAX_LOWERS) {
		rc = shl_err(SHL_ELIMIT, "%s has %zu layers; overlayfs stacks at most %d", ref, lc.n,
			     SHL_OVERLAY_MAX_LOWERS);
		goto out;
	}
	if ((rc = rt_open(s, &r)))
		goto out;
	sweep(&r);
	state_path(&r, dir, statefile, sizeof(statefile));
	lowers = calloc(lc.n + 2, sizeof(*lowers));
	ls = shl_json_new_array();
	st = shl_json_new_object();
	if (!lowers || !ls || !st) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	/* write the state first: a crash from here on leaves something the sweep releases */
	for (size_t i = 0; i < lc.n && !rc; i++)
		rc = shl_json_push(ls, shl_json_new_string(lc.hex[i]));
	if (rc || (rc = shl_json_set_str(st, "dir", dir)) || (rc = shl_json_set_str(st, "image", ref)) ||
	    (rc = shl_json_set(st, "layers", shl_json_ref(ls))))
		goto out;
	if (o && o->owner_pid > 0 && (rc = shl_json_set_int(st, "pid", o->owner_pid)))
		goto out;
	if (o && o->rw && !o->upper) {
		snprintf(tmpfs, sizeof(tmpfs), "%s/%.32s.upper", r.mounts, strrchr(statefile, '/') + 1);
		if ((rc = shl_json_set_str(st, "tmpfs", tmpfs)))
			goto out;
	}
	{
		const char *js = shl_json_dump(st, 0, NULL);
		FILE *f = fopen(statefile, "w");
		if (!f || fputs(js, f) < 0 || fclose(f) != 0) {
			rc = shl_err_sys(SHL_EIO, "write %s", statefile);
			goto out;
		}
	}
	/* layers: mounted once, shared */
	for (size_t i = 0; i < lc.n; i++) {
		char ld[4400], tar[4200], erofs[4200], diff[80];
		snprintf(ld, sizeof(ld), "%s/%s", r.layers, lc.hex[i]);
		snprintf(diff, sizeof(diff), "sha256:%s", lc.hex[i]);
		if (!shl_is_mountpoint(ld)) {
			if (mkdir(ld, 0755) != 0 && errno != EEXIST) {
				rc = shl_err_sys(SHL_EIO, "mkdir %s", ld);
				goto fail;
			}
			shl_store_layer_paths(s, diff, tar, sizeof(tar), erofs, sizeof(erofs));
			if ((rc = shl_mount_erofs(erofs, tar, ld, NULL)))
				goto fail;
		}
		lowers[lc.n - 1 - i] = strdup(ld); /* top layer first */
		if (!lowers[lc.n - 1 - i]) {
			rc = shl_err(SHL_ENOMEM, "out of memory");
			goto fail;
		}
	}
	if (o && o->rw) {
		const char *base = o->upper ? o->upper : tmpfs;
		if (!o->upper) {
			if ((mkdir(tmpfs, 0700) != 0 && errno != EEXIST) ||
			    mount("tmpfs", tmpfs, "tmpfs", MS_NODEV | MS_NOSUID, "mode=0755") != 0) {
				rc = shl_err_sys(SHL_EIO, "tmpfs for the upper layer at %s", tmpfs);
				goto fail;
			}
		}
		snprintf(up, sizeof(up), "%s/upper", base);
		snprintf(wk, sizeof(wk), "%s/work", base);
		if ((mkdir(up, 0755) != 0 && errno != EEXIST) || (mkdir(wk, 0700) != 0 && errno != EEXIST)) {
			rc = shl_err_sys(SHL_EIO, "create %s", up);
			goto fail;
		}
		rc = shl_mount_overlay(dir, lowers, lc.n, up, wk);
	} else if (lc.n == 1) {
		/* one layer, read-only: a read-only bind of the layer itself */
		if (mount(lowers[0], dir, NULL, MS_BIND, NULL) != 0 ||
		    mount(NULL, dir, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0)
			rc = shl_err_sys(SHL_EIO, "bind %s", dir);
	} else {
		rc = shl_mount_overlay(dir, lowers, lc.n, NULL, NULL);
	}
	if (rc)
		goto fail;
	goto out;
fail:
	/* nothing left mounted for this directory */
	{
		shl_json *again = NULL;
		if (read_state(statefile, &again) == 0) {
			release(&r, statefile, again);
			shl_json_put(again);
		}
	}
out:
	for (size_t i = 0; lowers && i < lc.n; i++)
		free((char *)lowers[i]);
	free(lowers);
	free(lc.hex);
	shl_json_put(ls);
	shl_json_put(st);
	rt_close(&r);
	return rc;
}

int shl_image_umount(shl_store *s, const char *dir_in)
{
	struct rt r = { .lockfd = -1 };
	char dir[4096], statefile[4400];
	shl_json *st = NULL;
	int rc;

	if (!realpath(dir_in, dir))
		return shl_err_sys(SHL_EIO, "%s", dir_in);
	if ((rc = rt_open(s, &r)))
		return rc;
	state_path(&r, dir, statefile, sizeof(statefile));
	if ((rc = read_state(statefile, &st))) {
		rc = shl_err(SHL_ENOTFOUND, "%s is not mounted by shale", dir);
		goto out;
	}
	if (shl_is_mountpoint(dir) && umount2(dir, 0) != 0) {
		rc = shl_err_sys(SHL_EBUSY, "umount %s", dir);
		goto out;
	}
	release(&r, statefile, st);
	sweep(&r);
out:
	shl_json_put(st);
	rt_close(&r);
	return rc;
}

int shl_image_mounts(shl_store *s, shl_mount_list_fn fn, void *ctx)
{
	struct rt r = { .lockfd = -1 };
	DIR *d;
	struct dirent *e;
	int rc;

	if ((rc = rt_open(s, &r)))
		return rc;
	sweep(&r);
	d = opendir(r.mounts);
	while (!rc && d && (e = readdir(d))) {
		char p[4600];
		shl_json *st = NULL;
		if (e->d_name[0] == '.' || !strstr(e->d_name, ".json"))
			continue;
		snprintf(p, sizeof(p), "%s/%s", r.mounts, e->d_name);
		if (read_state(p, &st) != 0)
			continue;
		rc = fn(ctx, shl_json_get_str(st, "dir"), shl_json_get_str(st, "image"),
			(int)shl_json_len(shl_json_get(st, "layers")));
		shl_json_put(st);
	}
	if (d)
		closedir(d);
	rt_close(&r);
	return rc;
}
