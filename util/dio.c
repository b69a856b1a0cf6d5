/*
 * util/dio.c - direct-I/O appender (util/dio.h). A separate open file
 * description with O_DIRECT is made through /proc/self/fd, so the caller's
 * descriptor stays buffered for everything else (reads, the tail, fsync);
 * the kernel keeps the page cache coherent with direct writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/dio.h"
#include "util/err.h"

#define DIO_ALIGN 4096u
#define DIO_BUF (1u << 20)

struct shl_dio {
	int fd;          /* the caller's (buffered) descriptor */
	int dfd;         /* O_DIRECT descriptor of the same file, -1 after a fallback */
	uint8_t *buf;
	size_t len;
	uint64_t off;    /* file offset of buf[0] */
};

int shl_dio_open(shl_dio **out, int fd, uint64_t off)
{
	char path[64];
	shl_dio *d;
	const char *no = getenv("SHALE_NO_DIRECT");

	*out = NULL;
	if ((no && *no && strcmp(no, "0")) || off % DIO_ALIGN)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (dfd < 0)
		return 0; /* no /proc, or no O_DIRECT on this filesystem */
	if (!(d = calloc(1, sizeof(*d))) || posix_memalign((void **)&d->buf, DIO_ALIGN, DIO_BUF)) {
		close(dfd);
		free(d);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	d->fd = fd;
	d->dfd = dfd;
	d->off = off;
	*out = d;
	return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off, int *einval)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && einval) {
			*einval = 1;
			return 0;
		}
		if (n < 0)
			return shl_err_sys(errno == ENOSPC || errno == EDQUOT ? SHL_ENOSPC : SHL_EIO,
					   "write layer tar (at offset %llu)", (unsigned long long)off);
		if (n == 0) {
			errno = ENOSPC;
			return shl_err_sys(SHL_ENOSPC, "write layer tar (at offset %llu)", (unsigned long long)off);
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Write the first `len` bytes of the buffer (a multiple of DIO_ALIGN unless
 * through the buffered descriptor). */
static int flush(shl_dio *d, size_t len, int direct)
{
	int einval = 0, rc;

	if (direct && d->dfd >= 0) {
		if ((rc = pwrite_all(d->dfd, d->buf, len, d->off, &einval)))
			return rc;
		if (!einval)
			goto done;
		/* the filesystem refused direct I/O after all: buffered from now on */
		close(d->dfd);
		d->dfd = -1;
	}
	if ((rc = pwrite_all(d->fd, d->buf, len, d->off, NULL)))
		return rc;
done:
	memmove(d->buf, d->buf + len, d->len - len);
	d->len -= len;
	d->off += len;
	return 0;
}

int shl_dio_write(shl_dio *d, const void *p, size_t len)
{
	const uint8_t *s = p;
	int rc;

	while (len) {
		size_t k = DIO_BUF - d->len < len ? DIO_BUF - d->len : len;
		memcpy(d->buf + d->len, s, k);
		d->len += k;
		s += k;
		len -= k;
		if (d->len == DIO_BUF && (rc = flush(d, DIO_BUF, 1)))
			return rc;
	}
	return 0;
}

int shl_dio_finish(shl_dio *d)
{
	size_t aligned = d->len - d->len % DIO_ALIGN;
	int rc;

	if (aligned && (rc = flush(d, aligned, 1)))
		return rc;
	if (d->len && (rc = flush(d, d->len, 0)))
		return rc;
	if (lseek(d->fd, (off_t)d->off, SEEK_SET) < 0)
		return shl_err_sys(SHL_EIO, "seek layer tar");
	return 0;
}

void shl_dio_free(shl_dio *d)
{
	if (!d)
		return;
	if (d->dfd >= 0)
		close(d->dfd);
	free(d->buf);
	free(d);
}

int shl_dio_reader(int fd)
{
	char path[64];
	const char *no = getenv("SHALE_NO_DIRECT");

	if (no && *no && strcmp(no, "0"))
		return -1;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
}

ssize_t shl_dio_pread(int fd, int dfd, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	if (dfd >= 0 && !(off % DIO_ALIGN) && !(len % DIO_ALIGN) && !((uintptr_t)buf % DIO_ALIGN)) {
		do
			n = pread(dfd, buf, len, (off_t)off);
		while (n < 0 && errno == EINTR);
		if (n >= 0 || errno != EINVAL)
			return n;
	}
	do
		n = pread(fd, buf, len, (off_t)off);
	while (n < 0 && errno == EINTR);
	return n;
}
