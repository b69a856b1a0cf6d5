/*
 * util/dio.c - direct-I/O appender (util/dio.h). A separate open file
 * description with O_DIRECT is made through /proc/self/fd, so the caller's
 * descriptor stays buffered for everything else (reads, the tail, fsync);
 * the kernel keeps the page cache coherent with direct writes. Two aligned
 * buffers and a writer thread: while one buffer goes to the disk the caller
 * fills the other, so disk time overlaps hashing / reading.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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
	uint8_t *buf[2];
	int cur;         /* the buffer being filled */
	size_t len;      /* bytes in buf[cur] */
	uint64_t off;    /* file offset of buf[cur][0] */
	/* the writer thread: one job at a time */
	pthread_t th;
	int th_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int busy;        /* a job is queued or being written */
	int quit;
	const uint8_t *job;
	size_t job_len;
	uint64_t job_off;
	const char *what; /* the file, for messages ("layer tar") */
	int err;         /* first write error (code), sticky */
	char msg[256];
};

static int pwrite_all(const shl_dio *d, int fd, const uint8_t *p, size_t len, uint64_t off, int *einval, char *msg,
		      size_t msglen)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && einval) {
			*einval = 1;
			return 0;
		}
		if (n <= 0) {
			int e = n == 0 ? ENOSPC : errno;
			snprintf(msg, msglen, "write %s at offset %llu: %s", d->what, (unsigned long long)off, strerror(e));
			return e == ENOSPC || e == EDQUOT ? SHL_ENOSPC : SHL_EIO;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Write one block-aligned job: direct, or buffered after a refusal. */
static int write_job(shl_dio *d, const uint8_t *p, size_t len, uint64_t off, char *msg, size_t msglen)
{
	int einval = 0, rc;

	if (d->dfd >= 0) {
		if ((rc = pwrite_all(d, d->dfd, p, len, off, &einval, msg, msglen)) || !einval)
			return rc;
		/* the filesystem refused direct I/O after all: buffered from now on */
		close(d->dfd);
		d->dfd = -1;
	}
	return pwrite_all(d, d->fd, p, len, off, NULL, msg, msglen);
}

static void *writer(void *arg)
{
	shl_dio *d = arg;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (!d->busy && !d->quit)
			pthread_cond_wait(&d->cv, &d->mu);
		if (!d->busy)
			break;
		const uint8_t *p = d->job;
		size_t len = d->job_len;
		uint64_t off = d->job_off;
		pthread_mutex_unlock(&d->mu);
		char msg[256] = "";
		int rc = d->err ? 0 : write_job(d, p, len, off, msg, sizeof(msg));
		pthread_mutex_lock(&d->mu);
		if (rc && !d->err) {
			d->err = rc;
			snprintf(d->msg, sizeof(d->msg), "%s", msg);
		}
		d->busy = 0;
		pthread_cond_broadcast(&d->cv);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Wait until the writer is idle; its error, raised here. */
static int drain(shl_dio *d)
{
	int rc;

	pthread_mutex_lock(&d->mu);
	while (d->busy)
		pthread_cond_wait(&d->cv, &d->mu);
	rc = d->err;
	pthread_mutex_unlock(&d->mu);
	return rc ? shl_err(rc, "%s", d->msg) : 0;
}

int shl_dio_open(shl_dio **out, int fd, uint64_t off, const char *what)
{
	char path[64];
	shl_dio *d;
	sigset_t all, old;
	const char *no = getenv("SHALE_NO_DIRECT");

	*out = NULL;
	if ((no && *no && strcmp(no, "0")) || off % DIO_ALIGN)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (dfd < 0)
		return 0; /* no /proc, or no O_DIRECT on this filesystem */
	if (!(d = calloc(1, sizeof(*d))) || posix_memalign((void **)&d->buf[0], DIO_ALIGN, DIO_BUF) ||
	    posix_memalign((void **)&d->buf[1], DIO_ALIGN, DIO_BUF)) {
		close(dfd);
		if (d)
			free(d->buf[0]);
		free(d);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	d->fd = fd;
	d->dfd = dfd;
	d->what = what ? what : "output";
	d->off = off;
	pthread_mutex_init(&d->mu, NULL);
	pthread_cond_init(&d->cv, NULL);
	/* the writer takes no signals: they belong to the caller's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	d->th_started = pthread_create(&d->th, NULL, writer, d) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!d->th_started) {
		shl_dio_free(d);
		return shl_err(SHL_ENOMEM, "cannot start the writer thread");
	}
	*out = d;
	return 0;
}

/* Hand the first `len` bytes of the current buffer to the writer (len is a
 * multiple of DIO_ALIGN) and continue in the other buffer with the rest. */
static int submit(shl_dio *d, size_t len)
{
	int rc;

	if ((rc = drain(d)))
		return rc;
	pthread_mutex_lock(&d->mu);
	d->job = d->buf[d->cur];
	d->job_len = len;
	d->job_off = d->off;
	d->busy = 1;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	memcpy(d->buf[!d->cur], d->buf[d->cur] + len, d->len - len);
	d->cur = !d->cur;
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
		memcpy(d->buf[d->cur] + d->len, s, k);
		d->len += k;
		s += k;
		len -= k;
		if (d->len == DIO_BUF && (rc = submit(d, DIO_BUF)))
			return rc;
	}
	return 0;
}

int shl_dio_seek(shl_dio *d, uint64_t off)
{
	int rc;

	if (off == d->off + d->len)
		return 0;
	if (d->len % DIO_ALIGN || off % DIO_ALIGN)
		return shl_err(SHL_EINVAL, "direct writer: unaligned seek");
	if (d->len && (rc = submit(d, d->len)))
		return rc;
	d->off = off;
	return 0;
}

int shl_dio_finish(shl_dio *d)
{
	size_t aligned = d->len - d->len % DIO_ALIGN;
	char msg[256] = "";
	int rc;

	if (aligned && (rc = submit(d, aligned)))
		return rc;
	if ((rc = drain(d)))
		return rc;
	if (d->len) {
		/* the unaligned tail, through the buffered descriptor */
		if ((rc = pwrite_all(d, d->fd, d->buf[d->cur], d->len, d->off, NULL, msg, sizeof(msg))))
			return shl_err(rc, "%s", msg);
		d->off += d->len;
		d->len = 0;
	}
	if (lseek(d->fd, (off_t)d->off, SEEK_SET) < 0)
		return shl_err_sys(SHL_EIO, "seek %s", d->what);
	return 0;
}

void shl_dio_free(shl_dio *d)
{
	if (!d)
		return;
	if (d->th_started) {
		pthread_mutex_lock(&d->mu);
		while (d->busy)
			pthread_cond_wait(&d->cv, &d->mu);
		d->quit = 1;
		pthread_cond_broadcast(&d->cv);
		pthread_mutex_unlock(&d->mu);
		pthread_join(d->th, NULL);
	}
	pthread_mutex_destroy(&d->mu);
	pthread_cond_destroy(&d->cv);
	if (d->dfd >= 0)
		close(d->dfd);
	free(d->buf[0]);
	free(d->buf[1]);
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
