/*
 * util/instream.c - the front of the layer pipeline (see util/instream.h).
 *
 * Main thread: read the source, decompress (isa-l for gzip: 2-3x zlib's
 * speed; libzstd), write the plain bytes to the tar file, hand them to the
 * consumer. Hash thread: SHA-256 + XXH3 of the plain bytes and SHA-256 of the
 * raw bytes, in order, from a FIFO of jobs. Buffers come from two fixed rings
 * (plain and raw); a slot is refilled only after the hash thread is done with
 * it, and the consumer only ever holds the last two plain buffers.
 */
#include <errno.h>
#include <isa-l/igzip_lib.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

#define PLAIN_N 6
#define PLAIN_SZ (1u << 20)
#define RAW_N 6
#define RAW_SZ (256u << 10)
#define JOBS_N (PLAIN_N + RAW_N + 2)

enum { JOB_PLAIN, JOB_RAW, JOB_END };

struct job {
	int kind;
	const uint8_t *p;
	size_t len;
};

struct shl_instream {
	shl_read_fn fn;
	void *ctx;
	int in_fd;
	int out_fd;
	int comp;
	int src_eof;
	int eof;        /* plain stream ended */
	int failed;
	int sync_init;

	/* rings */
	uint8_t *plain[PLAIN_N];
	uint64_t plain_seq;     /* plain buffers produced */
	uint8_t *raw[RAW_N];
	uint64_t raw_seq;       /* raw buffers read */
	const uint8_t *raw_p;   /* unconsumed raw input */
	size_t raw_left;

	/* decompressors */
	struct inflate_state *gz;
	int gz_member_done;
	ZSTD_DCtx *zs;
	size_t zs_last;         /* last ZSTD_decompressStream return (0 = frame end) */

	/* hash thread */
	pthread_t thr;
	int thr_running;
	pthread_mutex_t mu;
	pthread_cond_t cv_job, cv_done;
	struct job jobs[JOBS_N];
	uint64_t jobs_head, jobs_tail;  /* pushed / taken */
	uint64_t plain_hashed, raw_hashed;
	shl_sha256 *sha_plain, *sha_raw;
	shl_xxh3 *xxh;

	uint64_t raw_size, plain_size;
};

/* ---- hash thread ---------------------------------------------------------- */

static void *hash_main(void *arg)
{
	shl_instream *s = arg;

	for (;;) {
		struct job j;
		pthread_mutex_lock(&s->mu);
		while (s->jobs_tail == s->jobs_head)
			pthread_cond_wait(&s->cv_job, &s->mu);
		j = s->jobs[s->jobs_tail % JOBS_N];
		pthread_mutex_unlock(&s->mu);
		if (j.kind == JOB_END)
			break;
		if (j.kind == JOB_PLAIN) {
			shl_sha256_update(s->sha_plain, j.p, j.len);
			shl_xxh3_update(s->xxh, j.p, j.len);
		} else {
			shl_sha256_update(s->sha_raw, j.p, j.len);
		}
		pthread_mutex_lock(&s->mu);
		s->jobs_tail++;
		if (j.kind == JOB_PLAIN)
			s->plain_hashed++;
		else
			s->raw_hashed++;
		pthread_cond_broadcast(&s->cv_done);
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_lock(&s->mu);
	s->jobs_tail++;
	pthread_cond_broadcast(&s->cv_done);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void push_job(shl_instream *s, int kind, const uint8_t *p, size_t len)
{
	pthread_mutex_lock(&s->mu);
	while (s->jobs_head - s->jobs_tail >= JOBS_N)
		pthread_cond_wait(&s->cv_done, &s->mu);
	s->jobs[s->jobs_head % JOBS_N] = (struct job){ kind, p, len };
	s->jobs_head++;
	pthread_cond_signal(&s->cv_job);
	pthread_mutex_unlock(&s->mu);
}

/* Wait until the hash thread has released buffer number `seq - N` of a ring. */
static void wait_slot(shl_instream *s, uint64_t seq, int raw)
{
	uint64_t n = raw ? RAW_N : PLAIN_N;

	if (seq < n)
		return;
	pthread_mutex_lock(&s->mu);
	while ((raw ? s->raw_hashed : s->plain_hashed) <= seq - n)
		pthread_cond_wait(&s->cv_done, &s->mu);
	pthread_mutex_unlock(&s->mu);
}

/* ---- source --------------------------------------------------------------- */

static ssize_t src_read(shl_instream *s, void *buf, size_t len)
{
	if (s->fn)
		return s->fn(s->ctx, buf, len);
	for (;;) {
		ssize_t n = read(s->in_fd, buf, len);
		if (n >= 0)
			return n;
		if (errno != EINTR)
			return shl_err_sys(SHL_EIO, "read layer");
	}
}

/* Fill `buf` up to `len` bytes (short only at EOF). */
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

/* Read the next raw chunk into the raw ring (compressed input only). */
static int next_raw(shl_instream *s)
{
	uint8_t *b = s->raw[s->raw_seq % RAW_N];
	ssize_t n;

	wait_slot(s, s->raw_seq, 1);
	n = src_fill(s, b, RAW_SZ);
	if (n < 0)
		return (int)n;
	s->raw_seq++;
	s->raw_p = b;
	s->raw_left = (size_t)n;
	s->raw_size += (uint64_t)n;
	if (n > 0)
		push_job(s, JOB_RAW, b, (size_t)n);
	return 0;
}

/* ---- decompression -------------------------------------------------------- */

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* gzip: decompress into out[0..cap); returns bytes produced (0 at end). */
static ssize_t gz_fill(shl_instream *s, uint8_t *out, size_t cap)
{
	size_t produced = 0;

	while (produced < cap) {
		int ret;
		if (s->gz_member_done) {
			/* between members: another member, zero padding, or the end */
			if (!s->raw_left) {
				if (s->src_eof)
					return (ssize_t)produced;
				if ((ret = next_raw(s)))
					return ret;
				continue;
			}
			if (s->raw_p[0] == 0) {
				if (!all_zero(s->raw_p, s->raw_left))
					return shl_err(SHL_EFORMAT, "gzip: garbage after the end of the stream");
				s->raw_left = 0;
				continue;
			}
			if (s->raw_left >= 1 && s->raw_p[0] != 0x1f)
				return shl_err(SHL_EFORMAT, "gzip: garbage after the end of the stream");
			isal_inflate_reset(s->gz);
			s->gz->crc_flag = ISAL_GZIP;
			s->gz_member_done = 0;
		}
		if (!s->raw_left && !s->src_eof) {
			if ((ret = next_raw(s)))
				return ret;
		}
		s->gz->next_in = (uint8_t *)s->raw_p;
		s->gz->avail_in = (uint32_t)s->raw_left;
		s->gz->next_out = out + produced;
		s->gz->avail_out = (uint32_t)(cap - produced);
		ret = isal_inflate(s->gz);
		produced = (size_t)(s->gz->next_out - out);
		s->raw_left = s->gz->avail_in;
		s->raw_p = s->gz->next_in;
		if (ret == ISAL_INCORRECT_CHECKSUM)
			return shl_err(SHL_EFORMAT, "gzip: checksum mismatch (corrupt data)");
		if (ret < 0)
			return shl_err(SHL_EFORMAT, "gzip: corrupt stream (isa-l error %d)", ret);
		if (s->gz->block_state == ISAL_BLOCK_FINISH) {
			s->gz_member_done = 1;
			continue;
		}
		if (!s->raw_left && s->src_eof && s->gz->avail_out)
			return shl_err(SHL_EFORMAT, "gzip: unexpected end of stream");
	}
	return (ssize_t)produced;
}

static ssize_t zs_fill(shl_instream *s, uint8_t *out, size_t cap)
{
	ZSTD_outBuffer ob = { out, cap, 0 };

	while (ob.pos < ob.size) {
		ZSTD_inBuffer ib;
		size_t r;
		if (!s->raw_left) {
			int ret;
			if (s->src_eof) {
				if (s->zs_last != 0)
					return shl_err(SHL_EFORMAT, "zstd: unexpected end of stream");
				break;
			}
			if ((ret = next_raw(s)))
				return ret;
			if (!s->raw_left)
				continue;
		}
		ib.src = s->raw_p;
		ib.size = s->raw_left;
		ib.pos = 0;
		r = ZSTD_decompressStream(s->zs, &ob, &ib);
		if (ZSTD_isError(r))
			return shl_err(SHL_EFORMAT, "zstd: %s", ZSTD_getErrorName(r));
		s->zs_last = r;
		s->raw_p += ib.pos;
		s->raw_left -= ib.pos;
	}
	return (ssize_t)ob.pos;
}

/* ---- public --------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	/* start writeback of what came before, so a final fsync finds little
	 * left to do (the disk works while we parse and hash) */
	off_t pos = lseek(fd, 0, SEEK_CUR);
	if (pos >= (off_t)(16u << 20) && (pos & ((16 << 20) - 1)) < (off_t)len)
		sync_file_range(fd, pos - (16 << 20) - (pos & ((16 << 20) - 1)), 16 << 20, SYNC_FILE_RANGE_WRITE);
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shl_err_sys(SHL_EIO, "write layer tar");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int sniff(shl_instream *s)
{
	int rc;
	const uint8_t *p;

	/* first raw chunk decides; for plain input it becomes plain data */
	if ((rc = next_raw(s)))
		return rc;
	p = s->raw_p;
	if (s->raw_left >= 2 && p[0] == 0x1f && p[1] == 0x8b) {
		s->comp = SHL_COMP_GZIP;
		s->gz = calloc(1, sizeof(*s->gz));
		if (!s->gz)
			return shl_err(SHL_ENOMEM, "out of memory");
		isal_inflate_init(s->gz);
		s->gz->crc_flag = ISAL_GZIP;
	} else if (s->raw_left >= 4 && p[0] == 0x28 && p[1] == 0xb5 && p[2] == 0x2f && p[3] == 0xfd) {
		s->comp = SHL_COMP_ZSTD;
		s->zs = ZSTD_createDCtx();
		if (!s->zs)
			return shl_err(SHL_ENOMEM, "out of memory");
	} else if (s->raw_left >= 6 && !memcmp(p, "\xfd" "7zXZ\0", 6)) {
		return shl_err(SHL_EUNSUPPORTED, "layer compressed with xz is not supported");
	} else if (s->raw_left >= 3 && !memcmp(p, "BZh", 3)) {
		return shl_err(SHL_EUNSUPPORTED, "layer compressed with bzip2 is not supported");
	} else {
		s->comp = SHL_COMP_NONE;
	}
	return 0;
}

static int setup(shl_instream *s)
{
	int rc;

	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv_job, NULL);
	pthread_cond_init(&s->cv_done, NULL);
	s->sync_init = 1;
	for (int i = 0; i < PLAIN_N; i++)
		if (!(s->plain[i] = malloc(PLAIN_SZ)))
			return shl_err(SHL_ENOMEM, "out of memory");
	for (int i = 0; i < RAW_N; i++)
		if (!(s->raw[i] = malloc(RAW_SZ)))
			return shl_err(SHL_ENOMEM, "out of memory");
	if ((rc = shl_sha256_new(&s->sha_plain)) || (rc = shl_sha256_new(&s->sha_raw)) ||
	    (rc = shl_xxh3_new(&s->xxh)))
		return rc;
	if (pthread_create(&s->thr, NULL, hash_main, s) != 0)
		return shl_err(SHL_ENOMEM, "cannot start the hash thread");
	s->thr_running = 1;
	return sniff(s);
}

int shl_instream_new(shl_instream **out, shl_read_fn fn, void *ctx, int out_fd)
{
	shl_instream *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return shl_err(SHL_ENOMEM, "out of memory");
	s->fn = fn;
	s->ctx = ctx;
	s->in_fd = -1;
	s->out_fd = out_fd;
	if ((rc = setup(s))) {
		shl_instream_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int shl_instream_new_fd(shl_instream **out, int in_fd, int out_fd)
{
	shl_instream *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (!s)
		return shl_err(SHL_ENOMEM, "out of memory");
	s->in_fd = in_fd;
	s->out_fd = out_fd;
	if ((rc = setup(s))) {
		shl_instream_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

int shl_instream_next(shl_instream *s, const void **buf, size_t *len)
{
	uint8_t *b;
	ssize_t n = 0;
	int rc;

	*buf = NULL;
	*len = 0;
	if (s->failed)
		return shl_err(SHL_EIO, "layer stream already failed");
	if (s->eof)
		return 0;
	b = s->plain[s->plain_seq % PLAIN_N];
	wait_slot(s, s->plain_seq, 0);
	if (s->comp == SHL_COMP_NONE) {
		/* the first raw chunk (sniffed) is plain data too */
		if (s->raw_left) {
			memcpy(b, s->raw_p, s->raw_left);
			n = (ssize_t)s->raw_left;
			s->raw_left = 0;
		}
		if (!s->src_eof) {
			ssize_t m = src_fill(s, b + n, PLAIN_SZ - (size_t)n);
			if (m < 0) {
				n = m;
			} else {
				n += m;
				s->raw_size += (uint64_t)m;
			}
		}
	} else if (s->comp == SHL_COMP_GZIP) {
		n = gz_fill(s, b, PLAIN_SZ);
	} else {
		n = zs_fill(s, b, PLAIN_SZ);
	}
	if (n < 0) {
		s->failed = 1;
		return (int)n;
	}
	if (n == 0) {
		s->eof = 1;
		return 0;
	}
	if (s->out_fd >= 0 && (rc = write_all(s->out_fd, b, (size_t)n))) {
		s->failed = 1;
		return rc;
	}
	s->plain_seq++;
	s->plain_size += (uint64_t)n;
	push_job(s, JOB_PLAIN, b, (size_t)n);
	*buf = b;
	*len = (size_t)n;
	return 0;
}

static void stop_thread(shl_instream *s)
{
	if (!s->thr_running)
		return;
	push_job(s, JOB_END, NULL, 0);
	pthread_join(s->thr, NULL);
	s->thr_running = 0;
}

int shl_instream_finish(shl_instream *s, shl_instream_result *res)
{
	const void *b;
	size_t n;
	int rc;

	do {
		if ((rc = shl_instream_next(s, &b, &n)))
			return rc;
	} while (n);
	stop_thread(s);
	memset(res, 0, sizeof(*res));
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
	stop_thread(s);
	if (s->sync_init) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv_job);
		pthread_cond_destroy(&s->cv_done);
	}
	for (int i = 0; i < PLAIN_N; i++)
		free(s->plain[i]);
	for (int i = 0; i < RAW_N; i++)
		free(s->raw[i]);
	free(s->gz);
	ZSTD_freeDCtx(s->zs);
	shl_sha256_free(s->sha_plain);
	shl_sha256_free(s->sha_raw);
	shl_xxh3_free(s->xxh);
	free(s);
}
