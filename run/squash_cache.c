/*
 * run/squash_cache.c - squash a stored image by reference, with results
 * cached by manifest digest (shl_squash_image in shale/squash.h). The cache
 * lives in <root>/cache/squash/<manifest hex>.<format>[-<size>]. An entry is a
 * hard link to the first squash's output (free), with a stamp of that
 * inode's size and mtime: once the user writes to that output (an ext4
 * rootfs, say) the entry is stale and dropped. A hit is copied to the new
 * output, never linked (outputs must stay independent): a reflink where the
 * filesystem has them, else the data extents only (squashed ext4 images are
 * partly holes), read and written with direct I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shale/squash.h"
#include "store/store_int.h"
#include "util/dio.h"
#include "util/err.h"

#define COPY_BUF (4u << 20)
#define READ_AHEAD (64u << 20)

struct layer_list {
	shl_store *s;
	shl_squash_layer *v;
	char (*paths)[2][4200];
	size_t n;
};

static int add_layer(void *ctx, const char *diff_id)
{
	struct layer_list *l = ctx;
	void *nv = realloc(l->v, (l->n + 1) * sizeof(*l->v)), *np;

	if (!nv)
		return shl_err(SHL_ENOMEM, "out of memory");
	l->v = nv;
	if (!(np = realloc(l->paths, (l->n + 1) * sizeof(*l->paths))))
		return shl_err(SHL_ENOMEM, "out of memory");
	l->paths = np;
	int rc = shl_store_layer_paths(l->s, diff_id, l->paths[l->n][0], sizeof(l->paths[l->n][0]), l->paths[l->n][1],
				       sizeof(l->paths[l->n][1]));
	if (rc)
		return rc;
	l->n++;
	return 0;
}

/* Copy src into the empty dst: a reflink, else the data extents read and
 * written with direct I/O (util/dio.h) as long runs: holes under HOLE_FILL
 * are written as zeros, bigger ones stay holes (squashed ext4 images are
 * partly holes; many small extents would be many small I/O requests). */
#define HOLE_FILL (1u << 20)

static int fill_zero(shl_dio *d, uint64_t n, int dst, off_t at)
{
	static const uint8_t zero[65536];
	int rc;

	while (n) {
		size_t k = n > sizeof(zero) ? sizeof(zero) : (size_t)n;
		if (d) {
			if ((rc = shl_dio_write(d, zero, k)))
				return rc;
		} else if (pwrite(dst, zero, k, at) != (ssize_t)k) {
			return shl_err_sys(errno == ENOSPC ? SHL_ENOSPC : SHL_EIO, "write squash output");
		}
		at += (off_t)k;
		n -= k;
	}
	return 0;
}

static int copy_sparse(int src, int dst)
{
	struct stat st;
	shl_dio *d = NULL;
	off_t pos = 0, end = -1, advised = 0; /* end: where the current run stands */
	uint8_t *buf;
	int rc = 0;

	if (fstat(src, &st))
		return shl_err_sys(SHL_EIO, "stat squash cache entry");
	if (ioctl(dst, FICLONE, src) == 0)
		return 0;
	if (posix_memalign((void **)&buf, 4096, COPY_BUF))
		return shl_err(SHL_ENOMEM, "out of memory");
	int dsrc = shl_dio_reader(src); /* cold entries: no page-cache fill either */
	while (!rc && pos < st.st_size) {
		off_t data = lseek(src, pos, SEEK_DATA), hole;
		if (data < 0) {
			if (errno != ENXIO)
				rc = shl_err_sys(SHL_EIO, "seek squash cache entry");
			break; /* ENXIO: only a hole left */
		}
		hole = lseek(src, data, SEEK_HOLE);
		if (hole < 0 || hole > st.st_size)
			hole = st.st_size;
		if (end >= 0 && data - end < (off_t)HOLE_FILL) {
			rc = fill_zero(d, (uint64_t)(data - end), dst, end); /* a small hole: part of the run */
		} else {
			/* a new run */
			if (d && (rc = shl_dio_finish(d)))
				break;
			shl_dio_free(d);
			d = NULL;
			if ((rc = shl_dio_open(&d, dst, (uint64_t)data, "squash output")))
				break;
		}
		for (off_t at = data; !rc && at < hole;) {
			size_t k = (size_t)(hole - at) > COPY_BUF ? COPY_BUF : (size_t)(hole - at);
			if (dsrc < 0 && at + (off_t)(READ_AHEAD / 2) >= advised) {
				/* keep the disk reading ahead of us (the entry may be cold) */
				if (advised < at)
					advised = at;
				posix_fadvise(src, advised, READ_AHEAD, POSIX_FADV_WILLNEED);
				advised += READ_AHEAD;
			}
			ssize_t r = shl_dio_pread(src, dsrc, buf, (k + 4095) & ~(size_t)4095, (uint64_t)at);
			if (r > (ssize_t)k)
				r = (ssize_t)k;
			if (r <= 0) {
				rc = shl_err_sys(SHL_EIO, "read squash cache entry");
				break;
			}
			rc = d ? shl_dio_write(d, buf, (size_t)r)
			       : (pwrite(dst, buf, (size_t)r, at) == r ? 0
								       : shl_err_sys(errno == ENOSPC ? SHL_ENOSPC : SHL_EIO,
										     "write squash output"));
			at += r;
		}
		end = hole;
		pos = hole;
	}
	if (!rc && d)
		rc = shl_dio_finish(d);
	shl_dio_free(d);
	if (dsrc >= 0)
		close(dsrc);
	free(buf);
	if (!rc && ftruncate(dst, st.st_size))
		rc = shl_err_sys(errno == ENOSPC || errno == EFBIG ? SHL_ENOSPC : SHL_EIO, "size squash output");
	return rc;
}

/* The cache entry is a hard link to the first output (no copy). Its stamp
 * (inode, size, mtime) says whether that file was written to since; then
 * the entry is stale and dropped. */
static void stamp_of(const struct stat *st, char *buf, size_t len)
{
	snprintf(buf, len, "%llu %lld %lld.%09ld\n", (unsigned long long)st->st_ino, (long long)st->st_size,
		 (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
}

static int entry_valid(const char *entry, int fd)
{
	char stamp[4500], want[200], got[200] = "";
	struct stat st;
	FILE *f;

	snprintf(stamp, sizeof(stamp), "%s.stamp", entry);
	if (fstat(fd, &st) || !(f = fopen(stamp, "re")))
		return 0;
	if (!fgets(got, sizeof(got), f))
		got[0] = '\0';
	fclose(f);
	stamp_of(&st, want, sizeof(want));
	return !strcmp(got, want);
}

static void entry_drop(const char *entry)
{
	char stamp[4500];

	snprintf(stamp, sizeof(stamp), "%s.stamp", entry);
	unlink(entry);
	unlink(stamp);
}

/* Link the finished output into the cache (same filesystem), else copy it. */
static int entry_put(shl_store *s, const char *dir, const char *entry, int out_fd)
{
	char cache_dir[4200], tmp[4400], stamp_tmp[4400], stamp[4500], proc[64], line[200];
	struct stat st;
	int fd, rc = 0;

	snprintf(cache_dir, sizeof(cache_dir), "%s/cache", s->root);
	if ((mkdir(cache_dir, 0755) && errno != EEXIST) || (mkdir(dir, 0755) && errno != EEXIST))
		return shl_err_sys(SHL_EIO, "mkdir %s", dir);
	snprintf(tmp, sizeof(tmp), "%s/.entry-%d", dir, (int)getpid());
	snprintf(stamp_tmp, sizeof(stamp_tmp), "%s/.stamp-%d", dir, (int)getpid());
	snprintf(stamp, sizeof(stamp), "%s.stamp", entry);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", out_fd);
	unlink(tmp);
	if (linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW) != 0) {
		/* another filesystem (or no /proc): a copy */
		if ((fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0)
			return shl_err_sys(SHL_EIO, "create %s", tmp);
		rc = copy_sparse(out_fd, fd);
		if (!rc && fstat(fd, &st))
			rc = shl_err_sys(SHL_EIO, "stat %s", tmp);
		close(fd);
	} else if (fstat(out_fd, &st)) {
		rc = shl_err_sys(SHL_EIO, "stat squash output");
	}
	if (!rc) {
		FILE *f = fopen(stamp_tmp, "we");
		stamp_of(&st, line, sizeof(line));
		if (!f || fputs(line, f) < 0 || fclose(f) != 0)
			rc = shl_err_sys(SHL_EIO, "write %s", stamp_tmp);
	}
	if (!rc && (rename(stamp_tmp, stamp) || rename(tmp, entry)))
		rc = shl_err_sys(SHL_EIO, "install %s", entry);
	if (rc) {
		unlink(tmp);
		unlink(stamp_tmp);
	}
	return rc;
}

static const char *format_name(int f)
{
	return f == SHL_SQUASH_EXT4 ? "ext4" : f == SHL_SQUASH_TAR ? "tar" : "erofs";
}

int shl_squash_image(shl_store *s, const char *ref, const shl_squash_opts *o, int out_fd, int no_cache, int *cached)
{
	struct layer_list l = { s, NULL, NULL, 0 };
	char manifest[72], dir[4200], entry[4400];
	int rc, cfd = -1, squashed = 0;

	if (cached)
		*cached = 0;
	if ((rc = shl_store_resolve(s, ref, manifest)))
		return rc;
	snprintf(dir, sizeof(dir), "%s/cache/squash", s->root);
	if (o->size)
		snprintf(entry, sizeof(entry), "%s/%s.%s-%llu", dir, manifest + 7, format_name(o->format),
			 (unsigned long long)o->size);
	else
		snprintf(entry, sizeof(entry), "%s/%s.%s", dir, manifest + 7, format_name(o->format));
	if (!no_cache && (cfd = open(entry, O_RDONLY | O_CLOEXEC)) >= 0) {
		if (entry_valid(entry, cfd)) {
			rc = copy_sparse(cfd, out_fd);
			close(cfd);
			if (!rc && cached)
				*cached = 1;
			return rc;
		}
		close(cfd);
		entry_drop(entry); /* the linked output was changed since */
	}
	if ((rc = shl_store_image_layers(s, manifest, add_layer, &l)))
		goto out;
	for (size_t i = 0; i < l.n; i++) {
		l.v[i].tar_path = l.paths[i][0];
		l.v[i].erofs_path = l.paths[i][1];
	}
	if ((rc = shl_squash(l.v, l.n, o, out_fd)) || no_cache)
		goto out;
	squashed = 1;
	rc = entry_put(s, dir, entry, out_fd);
out:
	if (rc && squashed) {
		/* no room or no permission for the cache copy: the squash itself is done */
		rc = 0;
		shl_error_clear();
	}
	free(l.v);
	free(l.paths);
	return rc;
}
