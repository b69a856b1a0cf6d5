/*
 * util/instream.c - the front of the layer pipeline (see util/instream.h).
 *
 * Main thread: read the source, sniff the compression, decompress
 * (util/decomp.c) and hand the plain bytes to the consumer (libarchive).
 * Hash thread: SHA-256 of the plain bytes and of the raw bytes, in order,
 * from a FIFO of jobs. The tee into the tar file and XXH3 go to whichever
 * thread has slack, measured on 2 cores (bench/bench_instream.sh): on a plain
 * tar the hash thread's SHA-256 is the bound (SHA-NI, ~1.5 GB/s), so the main
 * thread writes and computes XXH3; on gzip/zstd, inflating on the main thread
 * is the bound, so the hash thread writes and computes XXH3.
 *
 * Buffers come from two fixed rings (plain and raw); a slot is refilled only
 * after the hash thread has released it and two calls after the consumer got
 * it (libarchive still reads the previous buffer while asking for the next).
 * Memory: 8 x 256 KiB + 4 x 256 KiB + the decompressor's state, whatever the
 * size of the layer.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/decomp.h"
#include "util/dio.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

/* Chunk size by measurement: with 256 KiB chunks both threads spend ~10% less
 * CPU than with 1 MiB ones (the chunk stays in cache between read, write and
 * hash); 128 KiB is no better. */
#ifndef PLAIN_SZ
#define PLAIN_SZ (256u << 10)   /* plain chunk handed to the consumer */
#endif
#ifndef PLAIN_N
#define PLAIN_N 8               /* >= 2: the last one stays valid while the
                                   consumer asks for the next */
#endif
#define RAW_SZ (256u << 10)     /* compressed input chunk */
#define RAW_N 4
#define JOBS_N (PLAIN_N + RAW_N) /* a buffer has at most one job queued */
#define SYNC_WINDOW (16u << 20) /* start writeback of the tar every 16 MiB */
#define PIPE_SZ (1 << 20)       /* pipe buffer asked for a pipe source */
#define MSG_SZ 512

enum { JOB_PLAIN, JOB_RAW };
enum { ST_OK, ST_EOF, ST_FAILED, ST_FINISHED };

struct job {
	int kind;
	const uint8_t *p;
	size_t len;
};

struct shl_instream {
	/* source */
	shl_read_fn fn;
	void *ctx;
	int in_fd;
	int src_eof;
	int comp;
	shl_decomp *dec;
	int state;
	int err_code;                   /* ST_FAILED: the error, replayed */
	char err_msg[MSG_SZ];

	/* tee, and who does what (fixed once the compression is known) */
	int out_fd;
	int tee_on_hash;                /* the hash thread writes out_fd */
	int xxh_on_main;                /* the main thread computes XXH3 */
	uint64_t out_off;               /* offset in out_fd; sync_file_range window */
	uint64_t synced;
	int out_seekable;
	shl_dio *dio;                   /* direct writes of the tee (regular files) */

	/* rings */
	uint8_t *plain[PLAIN_N];
	uint64_t plain_seq;             /* plain buffers produced */
	uint8_t *raw[RAW_N];
	uint64_t raw_seq;               /* raw buffers read */
	const uint8_t *raw_p;           /* unconsumed raw input */
	size_t raw_left;

	/* hash thread; everything below `mu` is shared with it */
	pthread_t thr;
	int thr_running;
	int sync_init;
	pthread_mutex_t mu;
	pthread_cond_t cv_job, cv_done;
	struct job jobs[JOBS_N];
	uint64_t head, tail;            /* jobs pushed / done */
	uint64_t plain_done, raw_done;  /* buffers released */
	int closing;                    /* exit when the queue is empty */
	int abort;                      /* exit now */
	int main_waiting;
	int thr_rc;                     /* hash thread's error (a failed write) */
	char thr_msg[MSG_SZ];
	shl_sha256 *sha_plain, *sha_raw;
	shl_xxh3 *xxh;

	uint64_t raw_size, plain_size;
};

/* ---- tee ------------------------------------------------------------------ */

static int write_out(shl_instream *s, const uint8_t *p, size_t len)
{
	if (s->dio) {
		int rc = shl_dio_write(s->dio, p, len);
		if (!rc)
			s->out_off += len;
		return rc;
	}
	while (len) {
		ssize_t n = write(s->out_fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shl_err_sys(SHL_EIO, "write layer tar (at offset %llu)",
					   (unsigned long long)s->out_off);
		if (n == 0) {
			errno = ENOSPC;
			return shl_err_sys(SHL_ENOSPC, "write layer tar (at offset %llu)",
					   (unsigned long long)s->out_off);
		}
		p += n;
		len -= (size_t)n;
		s->out_off += (uint64_t)n;
	}
	/* start writeback of each full window as it fills, so the final fsync
	 * finds little left to do: the disk works while we parse and hash */
	if (s->out_seekable && s->out_off - s->synced >= SYNC_WINDOW) {
		uint64_t end = s->out_off - s->out_off % SYNC_WINDOW;
		sync_file_range(s->out_fd, (off_t)s->synced, (off_t)(end - s->synced), SYNC_FILE_RANGE_WRITE);
		s->synced = end;
	}
	return 0;
}

/* ---- hash thread ---------------------------------------------------------- */

static void *hash_main(void *arg)
{
	shl_instream *s = arg;

	for (;;) {
		struct job j;

		pthread_mutex_lock(&s->mu);
		while (s->head == s->tail && !s->closing && !s->abort)
			pthread_cond_wait(&s->cv_job, &s->mu);
		if (s->abort || s->head == s->tail) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		j = s->jobs[s->tail % JOBS_N];
		pthread_mutex_unlock(&s->mu);

		if (j.kind == JOB_PLAIN) {
			/* thr_rc is written by this thread only: no lock to read it */
			if (s->tee_on_hash && s->out_fd >= 0 && !s->thr_rc) {
				int rc = write_out(s, j.p, j.len);
				if (rc) {
					pthread_mutex_lock(&s->mu);
					snprintf(s->thr_msg, sizeof(s->thr_msg), "%s", shl_error_last());
					s->thr_rc = rc;
					pthread_mutex_unlock(&s->mu);
				}
			}
			shl_sha256_update(s->sha_plain, j.p, j.len);
			if (!s->xxh_on_main)
				shl_xxh3_update(s->xxh, j.p, j.len);
		} else {
			shl_sha256_update(s->sha_raw, j.p, j.len);
		}

		pthread_mutex_lock(&s->mu);
		s->tail++;
		if (j.kind == JOB_PLAIN)
			s->plain_done++;
		else
			s->raw_done++;
		if (s->main_waiting)
			pthread_cond_signal(&s->cv_done);
		pthread_mutex_unlock(&s->mu);
	}
	return NULL;
}

static void push_job(shl_instream *s, int kind, const uint8_t *p, size_t len)
{
	pthread_mutex_lock(&s->mu);
	/* never blocks: each ring slot has at most one job in the queue */
	s->jobs[s->head % JOBS_N] = (struct job){ kind, p, len };
	s->head++;
	pthread_cond_signal(&s->cv_job);
	pthread_mutex_unlock(&s->mu);
}

/* Wait until buffer number `seq - n` of a ring (plain or raw) is released. */
static void wait_slot(shl_instream *s, uint64_t seq, int raw)
{
	uint64_t n = raw ? RAW_N : PLAIN_N;
	const uint64_t *done = raw ? &s->raw_done : &s->plain_done;

	if (seq < n)
		return;
	pthread_mutex_lock(&s->mu);
	while (*done <= seq - n) {
		s->main_waiting = 1;
		pthread_cond_wait(&s->cv_done, &s->mu);
	}
	s->main_waiting = 0;
	pthread_mutex_unlock(&s->mu);
}

/* Stop the hash thread: after the queue drains (finish) or at once (free). */
static void stop_thread(shl_instream *s, int now)
{
	if (!s->thr_running)
		return;
	pthread_mutex_lock(&s->mu);
	if (now)
		s->abort = 1;
	else
		s->closing = 1;
	pthread_cond_signal(&s->cv_job);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thr, NULL);
	s->thr_running = 0;
}

/* ---- source --------------------------------------------------------------- */

static ssize_t src_read(shl_instream *s, void *buf, size_t len)
{
	if (s->fn) {
		ssize_t n = s->fn(s->ctx, buf, len);
		if (n > (ssize_t)len)
			return shl_err(SHL_EINVAL, "layer source returned %zd bytes for a %zu-byte read",
				       n, len);
		return n; /* < 0: the callback's code, its message kept */
	}
	for (;;) {
		ssize_t n = read(s->in_fd, buf, len);
		if (n >= 0)
			return n;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			/* non-blocking descriptor: wait for data, don't spin */
			struct pollfd p = { .fd = s->in_fd, .events = POLLIN };
			if (poll(&p, 1, -1) < 0 && errno != EINTR)
				return shl_err_sys(SHL_EIO, "poll layer input");
			continue;
		}
		if (errno != EINTR)
			return shl_err_sys(SHL_EIO, "read layer input");
	}
}

/* Fill buf with up to len bytes; short only at the end of the source. */
static ssize_t src_fill(shl_instream *s, uint8_t *buf, size_t len)
{
	size_t got = 0;

	while (got < len && !s->src_eof) {
		ssize_t n = src_read(s, buf + got, len - got);
		if (n < 0)
			return n;
		if (n == 0)
			s->src_eof = 1;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* Read the next raw chunk into the raw ring (compressed input) and queue it
 * for hashing. */
static int next_raw(shl_instream *s)
{
	uint8_t *b = s->raw[s->raw_seq % RAW_N];
	ssize_t n;

	wait_slot(s, s->raw_seq, 1);
	n = src_fill(s, b, RAW_SZ);
	if (n < 0)
		return (int)n;
	s->raw_p = b;
	s->raw_left = (size_t)n;
	s->raw_size += (uint64_t)n;
	if (n > 0) {
		s->raw_seq++;
		push_job(s, JOB_RAW, b, (size_t)n);
	}
	return 0;
}

/* ---- sniffing ------------------------------------------------------------- */

/* A ustar/GNU/v7 header block with a valid checksum: certainly a plain tar. */
static int tar_header(const uint8_t *p, size_t n)
{
	unsigned long sum = 0, want = 0;
	size_t i = 148, digits = 0;

	if (n < 512)
		return 0;
	while (i < 156 && p[i] == ' ')
		i++;
	for (; i < 156 && p[i] >= '0' && p[i] <= '7'; i++, digits++)
		want = want * 8 + (unsigned long)(p[i] - '0');
	if (!digits || (i < 156 && p[i] != ' ' && p[i] != '\0'))
		return 0;
	for (i = 0; i < 512; i++)
		sum += i >= 148 && i < 156 ? ' ' : p[i];
	return sum == want;
}

/* A failed write on the hash thread, as this thread's error; 0 if none. */
static int thread_error(shl_instream *s)
{
	int rc;

	pthread_mutex_lock(&s->mu);
	rc = s->thr_rc;
	if (rc)
		shl_err(rc, "%s", s->thr_msg);
	pthread_mutex_unlock(&s->mu);
	return rc;
}

static int sniff(shl_instream *s)
{
	const uint8_t *p = s->raw[0];
	ssize_t got = src_fill(s, s->raw[0], RAW_SZ);
	size_t n;

	if (got < 0)
		return (int)got;
	n = (size_t)got;
	s->raw_p = p;
	s->raw_left = n;
	s->raw_size = n;
	if (tar_header(p, n))
		s->comp = SHL_COMP_NONE;
	else if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b)
		s->comp = SHL_COMP_GZIP;
	else if (n >= 4 && (!memcmp(p, "\x28\xb5\x2f\xfd", 4) ||
			    ((p[0] & 0xf0) == 0x50 && !memcmp(p + 1, "\x2a\x4d\x18", 3))))
		s->comp = SHL_COMP_ZSTD; /* a frame, or a skippable frame first */
	else if (n >= 6 && !memcmp(p, "\xfd" "7zXZ\0", 6))
		return shl_err(SHL_EUNSUPPORTED, "layer compressed with xz is not supported");
	else if (n >= 4 && !memcmp(p, "BZh", 3) && p[3] >= '1' && p[3] <= '9')
		return shl_err(SHL_EUNSUPPORTED, "layer compressed with bzip2 is not supported");
	else if (n >= 4 && !memcmp(p, "\x04\x22\x4d\x18", 4))
		return shl_err(SHL_EUNSUPPORTED, "layer compressed with lz4 is not supported");
	else
		s->comp = SHL_COMP_NONE; /* a tar or not: the parser decides */
	/* who does what: see the top of the file */
	if (s->comp == SHL_COMP_NONE) {
		s->xxh_on_main = 1;
		return 0;
	}
	s->tee_on_hash = 1;
	for (int i = 1; i < RAW_N; i++)
		if (!(s->raw[i] = malloc(RAW_SZ)))
			return shl_err(SHL_ENOMEM, "layer stream: out of memory");
	/* the sniffed chunk is the first raw input (n > 0: it has the magic) */
	s->raw_seq = 1;
	push_job(s, JOB_RAW, p, n);
	return shl_decomp_new(&s->dec, s->comp);
}

/* ---- public --------------------------------------------------------------- */

static int setup(shl_instream *s)
{
	sigset_t all, old;
	struct stat st;
	int rc;

	s->out_seekable = s->out_fd >= 0 && fstat(s->out_fd, &st) == 0 && S_ISREG(st.st_mode);
	if (s->out_seekable) {
		off_t off = lseek(s->out_fd, 0, SEEK_CUR);
		s->out_seekable = off >= 0;
		s->out_off = s->synced = off >= 0 ? (uint64_t)off : 0;
		if (s->out_seekable && (rc = shl_dio_open(&s->dio, s->out_fd, s->out_off, "layer tar")))
			return rc;
	}
	if (!s->fn && fstat(s->in_fd, &st) == 0) {
		if (S_ISREG(st.st_mode))
			posix_fadvise(s->in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
		/* a bigger pipe: fewer switches between the writer and us (best
		 * effort; never shrinks it) */
		if (S_ISFIFO(st.st_mode) && fcntl(s->in_fd, F_GETPIPE_SZ) < PIPE_SZ)
			fcntl(s->in_fd, F_SETPIPE_SZ, PIPE_SZ);
	}
	if (pthread_mutex_init(&s->mu, NULL))
		return shl_err(SHL_ENOMEM, "layer stream: cannot create a mutex");
	if (pthread_cond_init(&s->cv_job, NULL)) {
		pthread_mutex_destroy(&s->mu);
		return shl_err(SHL_ENOMEM, "layer stream: cannot create a condition variable");
	}
	if (pthread_cond_init(&s->cv_done, NULL)) {
		pthread_cond_destroy(&s->cv_job);
		pthread_mutex_destroy(&s->mu);
		return shl_err(SHL_ENOMEM, "layer stream: cannot create a condition variable");
	}
	s->sync_init = 1;
	for (int i = 0; i < PLAIN_N; i++)
		if (!(s->plain[i] = malloc(PLAIN_SZ)))
			return shl_err(SHL_ENOMEM, "layer stream: out of memory");
	if (!(s->raw[0] = malloc(RAW_SZ)))
		return shl_err(SHL_ENOMEM, "layer stream: out of memory");
	if ((rc = shl_sha256_new(&s->sha_plain)) || (rc = shl_sha256_new(&s->sha_raw)) ||
	    (rc = shl_xxh3_new(&s->xxh)))
		return rc;
	/* the hash thread takes no signals: they belong to the caller's threads */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&s->thr, NULL, hash_main, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		errno = rc;
		return shl_err_sys(SHL_ENOMEM, "layer stream: cannot start the hash thread");
	}
	s->thr_running = 1;
	return sniff(s);
}

static int create(shl_instream **out, shl_read_fn fn, void *ctx, int in_fd, int out_fd)
{
	shl_instream *s;
	int rc;

	*out = NULL;
	if (!fn && in_fd < 0)
		return shl_err(SHL_EINVAL, "layer stream: no source");
	if (!(s = calloc(1, sizeof(*s))))
		return shl_err(SHL_ENOMEM, "layer stream: out of memory");
	s->fn = fn;
	s->ctx = ctx;
	s->in_fd = in_fd;
	s->out_fd = out_fd;
	if ((rc = setup(s))) {
		shl_instream_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int shl_instream_new(shl_instream **out, shl_read_fn fn, void *ctx, int out_fd)
{
	if (!fn) {
		*out = NULL;
		return shl_err(SHL_EINVAL, "layer stream: no read callback");
	}
	return create(out, fn, ctx, -1, out_fd);
}

int shl_instream_new_fd(shl_instream **out, int in_fd, int out_fd)
{
	return create(out, NULL, NULL, in_fd, out_fd);
}

/* Decompress into b (up to PLAIN_SZ); returns bytes or a negative code. */
static ssize_t fill_decomp(shl_instream *s, uint8_t *b)
{
	size_t done = 0;

	while (done < PLAIN_SZ) {
		size_t made;
		int rc;
		if (!s->raw_left && !s->src_eof && (rc = next_raw(s)))
			return rc;
		rc = shl_decomp_run(s->dec, &s->raw_p, &s->raw_left, s->src_eof, b + done,
				    PLAIN_SZ - done, &made);
		done += made;
		if (rc < 0)
			return rc;
		if (rc == 1) {
			s->state = ST_EOF;
			break;
		}
		if (!made && !s->raw_left && s->src_eof) /* cannot happen; never spin */
			return shl_err(SHL_EFORMAT, "layer stream: decompressor stuck at the end");
	}
	return (ssize_t)done;
}

static ssize_t fill_plain(shl_instream *s, uint8_t *b)
{
	size_t n = 0;
	ssize_t m;

	if (s->raw_left) { /* the sniffed chunk is plain data too */
		n = s->raw_left < PLAIN_SZ ? s->raw_left : PLAIN_SZ;
		memcpy(b, s->raw_p, n);
		s->raw_p += n;
		s->raw_left -= n;
		if (s->raw_left)
			return (ssize_t)n;
	}
	m = src_fill(s, b + n, PLAIN_SZ - n);
	if (m < 0)
		return m;
	s->raw_size += (uint64_t)m;
	n += (size_t)m;
	if (s->src_eof)
		s->state = ST_EOF;
	return (ssize_t)n;
}

static int fail(shl_instream *s, int rc)
{
	s->state = ST_FAILED;
	s->err_code = rc;
	snprintf(s->err_msg, sizeof(s->err_msg), "%s", shl_error_last());
	return rc;
}

int shl_instream_next(shl_instream *s, const void **buf, size_t *len)
{
	uint8_t *b;
	ssize_t n;
	int rc;

	*buf = NULL;
	*len = 0;
	if (s->state == ST_FAILED)
		return shl_err(s->err_code, "%s", s->err_msg);
	if (s->state != ST_OK)
		return 0;
	b = s->plain[s->plain_seq % PLAIN_N];
	wait_slot(s, s->plain_seq, 0);
	if ((rc = thread_error(s)))
		return fail(s, rc);
	n = s->comp == SHL_COMP_NONE ? fill_plain(s, b) : fill_decomp(s, b);
	if (n < 0)
		return fail(s, (int)n);
	if (n == 0) {
		s->state = ST_EOF;
		return 0;
	}
	if (s->out_fd >= 0 && !s->tee_on_hash && (rc = write_out(s, b, (size_t)n)))
		return fail(s, rc);
	if (s->xxh_on_main)
		shl_xxh3_update(s->xxh, b, (size_t)n);
	s->plain_seq++;
	s->plain_size += (uint64_t)n;
	push_job(s, JOB_PLAIN, b, (size_t)n);
	*buf = b;
	*len = (size_t)n;
	return 0;
}

int shl_instream_finish(shl_instream *s, shl_instream_result *res)
{
	const void *b;
	size_t n;
	int rc;

	memset(res, 0, sizeof(*res));
	if (s->state == ST_FINISHED)
		return shl_err(SHL_EINVAL, "layer stream: already finished");
	do {
		if ((rc = shl_instream_next(s, &b, &n)))
			return rc;
	} while (n);
	stop_thread(s, 0);
	if ((rc = thread_error(s)))
		return fail(s, rc);
	if (s->dio && (rc = shl_dio_finish(s->dio)))
		return fail(s, rc);
	s->state = ST_FINISHED;
	res->compression = s->comp;
	res->raw_size = s->raw_size;
	res->plain_size = s->plain_size;
	shl_sha256_final(s->sha_plain, res->plain_sha256);
	shl_xxh3_final(s->xxh, res->plain_xxh3);
	if (s->comp == SHL_COMP_NONE)
		memcpy(res->raw_sha256, res->plain_sha256, 32);
	else
		shl_sha256_final(s->sha_raw, res->raw_sha256);
	return 0;
}

void shl_instream_free(shl_instream *s)
{
	if (!s)
		return;
	stop_thread(s, 1);
	if (s->sync_init) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv_job);
		pthread_cond_destroy(&s->cv_done);
	}
	for (int i = 0; i < PLAIN_N; i++)
		free(s->plain[i]);
	for (int i = 0; i < RAW_N; i++)
		free(s->raw[i]);
	shl_decomp_free(s->dec);
	shl_sha256_free(s->sha_plain);
	shl_sha256_free(s->sha_raw);
	shl_xxh3_free(s->xxh);
	shl_dio_free(s->dio);
	free(s);
}
