/*
 * tests/test_instream.c - util/instream.c and util/decomp.c: plain, gzip
 * (single, multi-member with an empty member, header fields, zero padding)
 * and zstd (single, multi-frame with a skippable frame) inputs of many sizes
 * (0 bytes, 1 byte, exactly a buffer, many MiB) through callbacks with small
 * random reads, files, blocking and non-blocking pipes; the teed file, the
 * digests (SHA-256 of plain and raw bytes, XXH3) and the delivered bytes are
 * checked against the source, as is each buffer staying intact until the
 * call after next and the buffers coming from a fixed set. Errors: corrupt
 * and truncated gzip/zstd, garbage after the end, xz/bzip2/lz4, source
 * errors (message kept, replayed), ENOSPC on the tee from either thread,
 * freeing at any point.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "util/err.h"
#include "util/hash.h"
#include "util/instream.h"

#define MIB (1u << 20)
static char tee_path[64];

/* ---- inputs --------------------------------------------------------------- */

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

/* Half text-like (compressible), half random: compressors emit many blocks. */
static uint8_t *gen(size_t n)
{
	static const char words[] = "usr/lib/python3.11/site-packages/ lorem ipsum 0000644 ustar ";
	uint8_t *p = malloc(n ? n : 1);

	for (size_t i = 0; i < n;) {
		size_t run = 1 + rnd() % 3000;
		int text = rnd() & 1;
		for (size_t k = 0; k < run && i < n; k++, i++)
			p[i] = text ? (uint8_t)words[(i + k / 7) % (sizeof(words) - 1)] : (uint8_t)rnd();
	}
	return p;
}

struct buf {
	uint8_t *p;
	size_t n;
};

static void put(struct buf *b, const void *p, size_t n)
{
	b->p = realloc(b->p, b->n + n + 1);
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

/* One gzip member of src[0, n); `named` adds FNAME/FCOMMENT/FEXTRA/FHCRC. */
static void gz_member(struct buf *out, const uint8_t *src, size_t n, int named)
{
	z_stream z;
	gz_header h;
	size_t cap = deflateBound(NULL, (uLong)n) + 256;
	uint8_t *tmp = malloc(cap);

	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	if (named) {
		memset(&h, 0, sizeof(h));
		h.name = (Bytef *)"layer.tar";
		h.comment = (Bytef *)"a comment";
		h.extra = (Bytef *)"AB\x02\x00xy";
		h.extra_len = 6;
		h.hcrc = 1;
		deflateSetHeader(&z, &h);
	}
	z.next_in = (Bytef *)src;
	z.avail_in = (uInt)n;
	z.next_out = tmp;
	z.avail_out = (uInt)cap;
	CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
	put(out, tmp, z.total_out);
	deflateEnd(&z);
	free(tmp);
}

/* gzip of src split into `members` members (the 2nd one empty if >= 3). */
static struct buf gz_make(const uint8_t *src, size_t n, int members, int named)
{
	struct buf b = { NULL, 0 };
	size_t off = 0;

	for (int m = 0; m < members; m++) {
		size_t len = m == members - 1 ? n - off : (m == 1 && members >= 3 ? 0 : n / (size_t)members);
		gz_member(&b, src + off, len, named && m == 0);
		off += len;
	}
	return b;
}

static struct buf zs_make(const uint8_t *src, size_t n, int frames)
{
	struct buf b = { NULL, 0 };
	size_t off = 0, cap = ZSTD_compressBound(n);
	uint8_t *tmp = malloc(cap);

	for (int f = 0; f < frames; f++) {
		size_t len = f == frames - 1 ? n - off : n / (size_t)frames;
		size_t r = ZSTD_compress(tmp, cap, src + off, len, 3);
		CHECK(!ZSTD_isError(r));
		put(&b, tmp, r);
		off += len;
		if (f == 0 && frames > 1) /* a skippable frame with 5 bytes of payload */
			put(&b, "\x50\x2a\x4d\x18\x05\x00\x00\x00hello", 13);
	}
	free(tmp);
	return b;
}

/* ---- running a stream ------------------------------------------------------ */

struct src {
	const uint8_t *p;
	size_t left;
	size_t maxchunk;        /* 0: as much as asked; else random 1..maxchunk */
	int fail_at;            /* fail on this call (1-based); 0: never */
	int calls;
	int overread;           /* return more than asked */
};

static ssize_t src_read(void *ctx, void *buf, size_t len)
{
	struct src *s = ctx;
	size_t n = len < s->left ? len : s->left;

	if (++s->calls == s->fail_at)
		return shl_err(SHL_ENET, "source broke on purpose (call %d)", s->calls);
	if (s->overread)
		return (ssize_t)len + 1;
	if (s->maxchunk && n > s->maxchunk)
		n = 1 + rnd() % s->maxchunk;
	if (n > len)
		n = len;
	memcpy(buf, s->p, n);
	s->p += n;
	s->left -= n;
	return (ssize_t)n;
}

struct seen {
	uint64_t delivered;
	uint8_t sha[32];        /* of the delivered bytes */
	int stale;              /* a buffer changed before the call after next */
	int ptrs;               /* distinct buffer addresses */
};

/* Consume a stream to the end, checking each buffer survives one more call. */
static int drain(shl_instream *st, struct seen *sn)
{
	const void *prev = NULL, *ptr[64];
	size_t prev_len = 0;
	uint64_t prev_x = 0;
	shl_sha256 *h = NULL;
	int rc;

	memset(sn, 0, sizeof(*sn));
	if ((rc = shl_sha256_new(&h)))
		return rc;
	for (;;) {
		const void *b;
		size_t len;
		rc = shl_instream_next(st, &b, &len);
		if (prev && XXH3_64bits(prev, prev_len) != prev_x)
			sn->stale = 1;
		if (rc || !len)
			break;
		int known = 0;
		for (int i = 0; i < sn->ptrs; i++)
			known |= ptr[i] == b;
		if (!known && sn->ptrs < 64)
			ptr[sn->ptrs++] = b;
		shl_sha256_update(h, b, len);
		sn->delivered += len;
		prev = b;
		prev_len = len;
		prev_x = XXH3_64bits(b, len);
	}
	shl_sha256_final(h, sn->sha);
	shl_sha256_free(h);
	return rc;
}

static int file_equals(const char *path, off_t off, const uint8_t *want, size_t n)
{
	struct stat st;
	uint8_t *got;
	int fd = open(path, O_RDONLY), ok;

	if (fd < 0 || fstat(fd, &st) || st.st_size != off + (off_t)n) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	got = malloc(n + 1);
	ok = pread(fd, got, n, off) == (ssize_t)n && (n == 0 || !memcmp(got, want, n));
	free(got);
	close(fd);
	return ok;
}

/* Check a finished stream's result against the source. */
static void check_result_of(const shl_instream_result *r, int comp, const uint8_t *raw, size_t rn,
			    const uint8_t *plain, size_t pn, const struct seen *sn)
{
	uint8_t d[32];
	XXH128_canonical_t c;

	shl_sha256_buf(plain, pn, d);
	CHECK(r->compression == comp);
	CHECK(r->plain_size == pn && sn->delivered == pn);
	CHECK(!memcmp(r->plain_sha256, d, 32) && !memcmp(sn->sha, d, 32));
	XXH128_canonicalFromHash(&c, XXH3_128bits(plain, pn));
	CHECK(!memcmp(r->plain_xxh3, c.digest, 16));
	shl_sha256_buf(raw, rn, d);
	CHECK(r->raw_size == rn && !memcmp(r->raw_sha256, d, 32));
	CHECK(!sn->stale);
	CHECK(sn->ptrs <= 16); /* a fixed ring, whatever the size */
}

/* Run raw[0, rn) through a callback source with a tee file; check all. */
static void run_ok(const uint8_t *raw, size_t rn, size_t maxchunk, int comp, const uint8_t *plain,
		   size_t pn)
{
	struct src s = { raw, rn, maxchunk, 0, 0, 0 };
	int fd = open(tee_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	shl_instream *st = NULL;
	shl_instream_result r;
	struct seen sn;

	CHECK_OK(shl_instream_new(&st, src_read, &s, fd));
	if (st) {
		CHECK_OK(drain(st, &sn));
		CHECK_OK(shl_instream_finish(st, &r));
		check_result_of(&r, comp, raw, rn, plain, pn, &sn);
	}
	shl_instream_free(st);
	close(fd);
	CHECK(file_equals(tee_path, 0, plain, pn));
}

/* Run through a callback source; return the error (0 if it went through). */
static int run_err(const uint8_t *raw, size_t rn, size_t maxchunk, int fail_at, int out_fd)
{
	struct src s = { raw, rn, maxchunk, fail_at, 0, 0 };
	shl_instream *st = NULL;
	shl_instream_result r;
	struct seen sn;
	int rc = shl_instream_new(&st, src_read, &s, out_fd);

	if (!rc && !(rc = drain(st, &sn)))
		rc = shl_instream_finish(st, &r);
	shl_instream_free(st);
	return rc;
}

#define CHECK_MSG(substr) CHECK(strstr(shl_error_last(), (substr)) != NULL)

/* ---- fd sources ------------------------------------------------------------ */

struct writer {
	int fd;
	const uint8_t *p;
	size_t n;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t off = 0;

	while (off < w->n) {
		size_t k = 1 + (off * 7919) % 100000;
		ssize_t m;
		if (k > w->n - off)
			k = w->n - off;
		m = write(w->fd, w->p + off, k); /* the write end blocks */
		if (m < 0 && errno == EINTR)
			continue;
		if (m <= 0)
			break;
		off += (size_t)m;
	}
	close(w->fd);
	return NULL;
}

static void run_pipe(const uint8_t *raw, size_t rn, int comp, const uint8_t *plain, size_t pn, int nonblock)
{
	int p[2], fd = open(tee_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	struct writer w;
	pthread_t t;
	shl_instream *st = NULL;
	shl_instream_result r;
	struct seen sn;

	CHECK(pipe(p) == 0);
	if (nonblock)
		fcntl(p[0], F_SETFL, O_NONBLOCK);
	w = (struct writer){ p[1], raw, rn };
	pthread_create(&t, NULL, writer_main, &w);
	CHECK_OK(shl_instream_new_fd(&st, p[0], fd));
	if (st) {
		CHECK_OK(drain(st, &sn));
		CHECK_OK(shl_instream_finish(st, &r));
		check_result_of(&r, comp, raw, rn, plain, pn, &sn);
	}
	shl_instream_free(st);
	pthread_join(t, NULL);
	close(p[0]);
	close(fd);
	CHECK(file_equals(tee_path, 0, plain, pn));
}

static void run_file(const char *dir, const uint8_t *raw, size_t rn, int comp, const uint8_t *plain,
		     size_t pn)
{
	char path[128];
	int in, fd = open(tee_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	shl_instream *st = NULL;
	shl_instream_result r;
	struct seen sn;

	snprintf(path, sizeof(path), "%s/input", dir);
	in = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(write(in, raw, rn) == (ssize_t)rn);
	lseek(in, 0, SEEK_SET);
	CHECK(write(fd, "HEAD", 4) == 4); /* the tee starts at the current offset */
	CHECK_OK(shl_instream_new_fd(&st, in, fd));
	if (st) {
		CHECK_OK(drain(st, &sn));
		CHECK_OK(shl_instream_finish(st, &r));
		check_result_of(&r, comp, raw, rn, plain, pn, &sn);
	}
	shl_instream_free(st);
	close(in);
	close(fd);
	unlink(path);
	CHECK(file_equals(tee_path, 4, plain, pn));
}

/* ---- test groups ------------------------------------------------------------ */

static void round_trips(const char *dir)
{
	static const size_t sizes[] = { 0, 1, 511, 256 << 10, (256 << 10) + 1, MIB, 3 * MIB + 7, 12 * MIB };

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t n = sizes[k];
		uint8_t *src = gen(n);
		struct buf g1 = gz_make(src, n, 1, 0), g3 = gz_make(src, n, 3, 1);
		struct buf z1 = zs_make(src, n, 1), z3 = zs_make(src, n, 3);

		run_ok(src, n, 0, SHL_COMP_NONE, src, n);
		run_ok(src, n, 8192, SHL_COMP_NONE, src, n);
		run_ok(g1.p, g1.n, 0, SHL_COMP_GZIP, src, n);
		run_ok(g3.p, g3.n, 5000, SHL_COMP_GZIP, src, n);
		put(&g3, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16); /* zero padding */
		run_ok(g3.p, g3.n, 0, SHL_COMP_GZIP, src, n);
		run_ok(z1.p, z1.n, 0, SHL_COMP_ZSTD, src, n);
		run_ok(z3.p, z3.n, 3000, SHL_COMP_ZSTD, src, n);
		if (n == MIB) { /* a skippable frame first (zstd:chunked puts them at the end) */
			struct buf zk = { NULL, 0 };
			put(&zk, "\x5e\x2a\x4d\x18\x03\x00\x00\x00" "abc", 11);
			put(&zk, z1.p, z1.n);
			run_ok(zk.p, zk.n, 0, SHL_COMP_ZSTD, src, n);
			free(zk.p);
		}
		if (n == 0 || n == MIB || n == 3 * MIB + 7) {
			run_pipe(src, n, SHL_COMP_NONE, src, n, 0);
			run_pipe(g3.p, g3.n, SHL_COMP_GZIP, src, n, 1);
			run_pipe(z3.p, z3.n, SHL_COMP_ZSTD, src, n, 0);
			run_file(dir, src, n, SHL_COMP_NONE, src, n);
			run_file(dir, z1.p, z1.n, SHL_COMP_ZSTD, src, n);
		}
		free(src);
		free(g1.p);
		free(g3.p);
		free(z1.p);
		free(z3.p);
	}
	/* a tar whose first name starts with the gzip magic is still a tar */
	{
		uint8_t hdr[1024];
		unsigned sum = 0;
		memset(hdr, 0, sizeof(hdr));
		memcpy(hdr, "\x1f\x8bname", 6);
		memcpy(hdr + 100, "0000644", 7);
		memcpy(hdr + 257, "ustar", 6);
		memset(hdr + 148, ' ', 8);
		for (int i = 0; i < 512; i++)
			sum += hdr[i];
		snprintf((char *)hdr + 148, 8, "%06o", sum);
		run_ok(hdr, sizeof(hdr), 0, SHL_COMP_NONE, hdr, sizeof(hdr));
	}
}

static void gzip_errors(void)
{
	size_t n = MIB + 12345;
	uint8_t *src = gen(n);
	struct buf g = gz_make(src, n, 1, 0), g2 = gz_make(src, n, 2, 0), b = { NULL, 0 };
	static const size_t cuts[] = { 2, 5, 10, 100, 4000, 100000 };

	/* trailer: CRC32 then ISIZE */
	g.p[g.n - 6] ^= 0x01;
	CHECK_ERR(run_err(g.p, g.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: crc mismatch");
	g.p[g.n - 6] ^= 0x01;
	g.p[g.n - 2] ^= 0x01;
	CHECK_ERR(run_err(g.p, g.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: crc mismatch");
	g.p[g.n - 2] ^= 0x01;
	/* in the second member of two */
	g2.p[g2.n - 5] ^= 0x80;
	CHECK_ERR(run_err(g2.p, g2.n, 700, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: crc mismatch");
	g2.p[g2.n - 5] ^= 0x80;
	/* a flipped byte in the deflate data: a bad block or a crc mismatch */
	g.p[g.n / 2] ^= 0x55;
	CHECK_ERR(run_err(g.p, g.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: ");
	g.p[g.n / 2] ^= 0x55;
	CHECK_OK(run_err(g.p, g.n, 0, 0, -1));
	/* truncated anywhere */
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		CHECK_ERR(run_err(g.p, cuts[k], 0, 0, -1), SHL_EFORMAT);
		CHECK_MSG("gzip: unexpected end of stream");
	}
	for (size_t cut = 1; cut <= 8; cut++) {
		CHECK_ERR(run_err(g.p, g.n - cut, 0, 0, -1), SHL_EFORMAT);
		CHECK_MSG("gzip: unexpected end of stream");
	}
	CHECK_ERR(run_err(g2.p, g2.n - 3, 333, 0, -1), SHL_EFORMAT);
	/* after the last member: zeros are fine, anything else is not */
	put(&b, g.p, g.n);
	put(&b, "junk", 4);
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: garbage after the member");
	b.n = g.n;
	put(&b, "\0\0\0\0x", 5);
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: garbage after the end of the stream");
	b.n = g.n;
	put(&b, "\0\0\0\0", 4);
	put(&b, g.p, g.n); /* a member after zero padding: not a gzip tool's output */
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	b.n = g.n;
	put(&b, "\x1f", 1); /* the start of a member that never comes */
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("gzip: unexpected end of stream");
	b.n = g.n;
	put(&b, "\x1f\x8b\x09\x00\x00\x00\x00\x00\x00\x03", 10); /* method 9 */
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	b.n = g.n;
	put(&b, "\x1f\x00", 2);
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	free(src);
	free(g.p);
	free(g2.p);
	free(b.p);
}

static void zstd_errors(void)
{
	size_t n = 2 * MIB + 999;
	uint8_t *src = gen(n);
	struct buf z = zs_make(src, n, 2), b = { NULL, 0 };
	static const size_t cuts[] = { 4, 6, 50, 5000, 300000 };

	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		CHECK_ERR(run_err(z.p, cuts[k], 0, 0, -1), SHL_EFORMAT);
		CHECK_MSG("zstd: unexpected end of stream");
	}
	for (size_t cut = 1; cut <= 3; cut++) {
		CHECK_ERR(run_err(z.p, z.n - cut, 1000, 0, -1), SHL_EFORMAT);
		CHECK_MSG("zstd: unexpected end of stream");
	}
	put(&b, z.p, z.n);
	put(&b, "junkjunk", 8);
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	CHECK_MSG("zstd: ");
	b.n = 0;
	put(&b, z.p, 4);
	put(&b, "\xff\xff\xff\xff\xff\xff\xff\xff", 8); /* reserved bits in the frame header */
	CHECK_ERR(run_err(b.p, b.n, 0, 0, -1), SHL_EFORMAT);
	/* a frame asking for a 256 MiB window (--long=28): refused, bounded memory */
	CHECK_ERR(run_err((const uint8_t *)"\x28\xb5\x2f\xfd\x00\x90\x01\x00\x00", 9, 0, 0, -1), SHL_ELIMIT);
	CHECK_MSG("window");
	/* while a 128 MiB window is fine */
	CHECK_OK(run_err((const uint8_t *)"\x28\xb5\x2f\xfd\x00\x88\x01\x00\x00", 9, 0, 0, -1));
	free(src);
	free(z.p);
	free(b.p);
}

static void other_errors(void)
{
	size_t n = 3 * MIB;
	uint8_t *src = gen(n);
	struct buf g = gz_make(src, n, 1, 0);
	shl_instream *st = NULL;
	shl_instream_result r;
	const void *b;
	size_t len;
	int full;

	CHECK_ERR(run_err((const uint8_t *)"\xfd" "7zXZ\0\0\x04\xe6\xd6\xb4\x46", 12, 0, 0, -1),
		  SHL_EUNSUPPORTED);
	CHECK_MSG("layer compressed with xz is not supported");
	CHECK_ERR(run_err((const uint8_t *)"BZh91AY&SY\x01\x02", 12, 0, 0, -1), SHL_EUNSUPPORTED);
	CHECK_MSG("bzip2");
	CHECK_ERR(run_err((const uint8_t *)"\x04\x22\x4d\x18\x64\x40\xa7", 7, 0, 0, -1), SHL_EUNSUPPORTED);

	/* source errors come through unchanged: while sniffing, mid-stream */
	CHECK_ERR(run_err(src, n, 0, 1, -1), SHL_ENET);
	CHECK_MSG("source broke on purpose (call 1)");
	CHECK_ERR(run_err(src, n, 4096, 40, -1), SHL_ENET);
	CHECK_MSG("source broke on purpose (call 40)");
	CHECK_ERR(run_err(g.p, g.n, 4096, 60, -1), SHL_ENET);
	CHECK_MSG("source broke on purpose (call 60)");
	{
		struct src s = { src, n, 0, 0, 0, 1 };
		CHECK_ERR(shl_instream_new(&st, src_read, &s, -1), SHL_EINVAL);
		CHECK(st == NULL);
	}
	/* a failed stream keeps failing with the same error, and frees */
	{
		struct src s = { src, n, 1000, 1500, 0, 0 }; /* ~500 calls per 256 KiB */
		int rc = 0;
		CHECK_OK(shl_instream_new(&st, src_read, &s, -1));
		while (st && !(rc = shl_instream_next(st, &b, &len)) && len)
			;
		CHECK(rc == SHL_ENET);
		shl_error_clear();
		if (!st)
			return;
		CHECK_ERR(shl_instream_next(st, &b, &len), SHL_ENET);
		CHECK_MSG("on purpose");
		CHECK_ERR(shl_instream_finish(st, &r), SHL_ENET);
		shl_instream_free(st);
		st = NULL;
	}
	/* ENOSPC on the tee: written by the main thread (plain) or the hash
	 * thread (compressed) */
	full = open("/dev/full", O_WRONLY);
	if (full >= 0) {
		CHECK_ERR(run_err(src, n, 0, 0, full), SHL_ENOSPC);
		CHECK_MSG("write layer tar");
		CHECK_ERR(run_err(g.p, g.n, 0, 0, full), SHL_ENOSPC);
		CHECK_MSG("write layer tar");
		close(full);
	}
	CHECK_ERR(shl_instream_new_fd(&st, -1, -1), SHL_EINVAL);
	CHECK_ERR(shl_instream_new_fd(&st, 12345, -1), SHL_EIO); /* EBADF */
	free(src);
	free(g.p);
}

static void lifecycle(void)
{
	size_t n = 8 * MIB;
	uint8_t *src = gen(n);
	struct buf g = gz_make(src, n, 1, 0), z = zs_make(src, n, 1);
	struct buf *in[] = { NULL, &g, &z };
	shl_instream *st = NULL;
	shl_instream_result r;
	const void *b;
	size_t len;

	for (int k = 0; k < 3; k++) {
		const uint8_t *p = in[k] ? in[k]->p : src;
		size_t pn = in[k] ? in[k]->n : n;
		struct src s = { p, pn, 0, 0, 0, 0 };
		/* free right away; after one chunk (hash thread busy); after a few */
		CHECK_OK(shl_instream_new(&st, src_read, &s, -1));
		shl_instream_free(st);
		s = (struct src){ p, pn, 0, 0, 0, 0 };
		CHECK_OK(shl_instream_new(&st, src_read, &s, -1));
		CHECK_OK(shl_instream_next(st, &b, &len));
		CHECK(len > 0);
		shl_instream_free(st);
		s = (struct src){ p, pn, 0, 0, 0, 0 };
		CHECK_OK(shl_instream_new(&st, src_read, &s, -1));
		for (int i = 0; i < 5; i++)
			CHECK_OK(shl_instream_next(st, &b, &len));
		shl_instream_free(st);
		/* finish after one chunk: the rest is read, stored and hashed */
		s = (struct src){ p, pn, 0, 0, 0, 0 };
		int fd = open(tee_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		CHECK_OK(shl_instream_new(&st, src_read, &s, fd));
		CHECK_OK(shl_instream_next(st, &b, &len));
		CHECK_OK(shl_instream_finish(st, &r));
		uint8_t d[32];
		shl_sha256_buf(src, n, d);
		CHECK(r.plain_size == n && !memcmp(r.plain_sha256, d, 32));
		CHECK(file_equals(tee_path, 0, src, n));
		CHECK_ERR(shl_instream_finish(st, &r), SHL_EINVAL);
		CHECK_OK(shl_instream_next(st, &b, &len));
		CHECK(len == 0);
		shl_instream_free(st);
		close(fd);
	}
	shl_instream_free(NULL);
	free(src);
	free(g.p);
	free(z.p);
}

int main(void)
{
	char dir[] = "/tmp/shl-instream-XXXXXX";

	if (!mkdtemp(dir))
		SKIP("mkdtemp failed");
	snprintf(tee_path, sizeof(tee_path), "%s/tee", dir);
	round_trips(dir);
	gzip_errors();
	zstd_errors();
	other_errors();
	lifecycle();
	unlink(tee_path);
	rmdir(dir);
	return check_result("test_instream");
}
