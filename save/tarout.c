/*
 * save/tarout.c - deterministic tar output for `shale save` (save/tarout.h).
 *
 * Why hand-written instead of libarchive's writer (which shale uses to read
 * archives and to write squashed tars): archive_write_data() takes a user
 * buffer and copies every byte through libarchive's own blocking buffers, so
 * saving a 2 GB image would read 2 GB into user space and write it out again.
 * Layer bodies here are already-verified stored tars; they go from the store
 * to the output inside the kernel: copy_file_range() when the output is a
 * regular file (on filesystems with reflinks it shares extents), sendfile()
 * when it is a pipe or a socket, and a pread/write loop only when the kernel
 * refuses both. Exception: a regular-file output on a filesystem with
 * O_DIRECT gets everything through util/dio.c (read + direct write), because
 * the in-kernel copy into fresh page-cache pages is what costs most there
 * (bench_load_save.sh: 2 GB saved in 6.9 s via copy_file_range on this VM).
 * The headers themselves are simple: every name shale writes is
 * short (blobs/sha256/<64 hex> is 77 bytes), everything is root-owned with
 * mtime 0. A body of 8 GiB or more does not fit the 11-digit octal size field:
 * it gets a pax 'x' header with a "size" record (POSIX.1-2001), and the ustar
 * field carries the size in GNU base-256 for readers that skip pax headers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "save/tarout.h"
#include "util/dio.h"
#include "util/err.h"

#define USTAR_MAX_SIZE 077777777777ull
#define COPY_CHUNK (1u << 30)
#define RW_BUF (4u << 20)
#define WILLNEED_AHEAD (64u << 20)

/* Wait until fd is writable (an O_NONBLOCK stdout given to us). */
static int wait_writable(int fd)
{
	struct pollfd p = { fd, POLLOUT, 0 };

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return shl_err_sys(SHL_EIO, "poll archive output");
	return 0;
}

/* Direct I/O for a regular-file output, decided at the first write. */
static void dio_setup(shl_tarout *t)
{
	struct stat st;
	off_t pos;

	if (t->dio_tried)
		return;
	t->dio_tried = 1;
	if (fstat(t->fd, &st) || !S_ISREG(st.st_mode) || (pos = lseek(t->fd, 0, SEEK_CUR)) < 0)
		return;
	if (shl_dio_open(&t->dio, t->fd, (uint64_t)pos, "output archive") != 0) {
		t->dio = NULL;
		shl_error_clear(); /* out of memory for the buffer: the ordinary way */
	}
}

static int write_all(shl_tarout *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int rc;

	dio_setup(t);
	if (t->dio) {
		if ((rc = shl_dio_write(t->dio, buf, len)))
			return rc;
		t->off += len;
		return 0;
	}

	while (len) {
		ssize_t n = write(t->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if ((rc = wait_writable(t->fd)))
				return rc;
			continue;
		}
		if (n < 0)
			return shl_err_sys(SHL_EIO, "write archive");
		p += n;
		len -= (size_t)n;
		t->off += (uint64_t)n;
	}
	return 0;
}

static void octal(uint8_t *field, size_t width, uint64_t v)
{
	/* width-1 digits, zero-padded, then NUL (the caller checked the range) */
	for (size_t i = width - 1; i-- > 0; v >>= 3)
		field[i] = (uint8_t)('0' + (v & 7));
	field[width - 1] = '\0';
}

static int raw_header(shl_tarout *t, const char *name, uint64_t size, char type, unsigned mode)
{
	uint8_t h[512];
	unsigned sum = 0;
	size_t nl = strlen(name);

	memset(h, 0, sizeof(h));
	memcpy(h, name, nl); /* nl <= 100: a name of exactly 100 bytes has no NUL, as ustar allows */
	octal(h + 100, 8, mode);
	octal(h + 108, 8, 0);
	octal(h + 116, 8, 0);
	if (size <= USTAR_MAX_SIZE) {
		octal(h + 124, 12, size);
	} else {
		/* GNU base-256: high bit set, big-endian value in the remaining bytes */
		uint64_t v = size;
		for (int i = 11; i >= 1; i--, v >>= 8)
			h[124 + i] = (uint8_t)(v & 0xff);
		h[124] = 0x80;
	}
	octal(h + 136, 12, 0);
	memset(h + 148, ' ', 8);
	h[156] = (uint8_t)type;
	memcpy(h + 257, "ustar", 6); /* magic "ustar\0", version "00" */
	memcpy(h + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	octal(h + 148, 7, sum); /* six digits, NUL, then the space already there */
	return write_all(t, h, sizeof(h));
}

static int pad(shl_tarout *t)
{
	static const uint8_t zero[512];
	size_t r = (size_t)(t->off % 512);

	return r ? write_all(t, zero, 512 - r) : 0;
}

/* One pax record "<len> key=value\n", where <len> counts the whole record. */
static size_t pax_record(char *out, size_t cap, const char *key, const char *value)
{
	size_t body = strlen(key) + strlen(value) + 3; /* ' ', '=', '\n' */
	size_t len = body + 1;

	while (snprintf(NULL, 0, "%zu", len) + body != len)
		len++;
	if (len >= cap)
		return 0;
	snprintf(out, cap, "%zu %s=%s\n", len, key, value);
	return len;
}

static int header(shl_tarout *t, const char *name, uint64_t size, char type, unsigned mode)
{
	char rec[512 + 64], val[32], xname[101];
	size_t nl = strlen(name), n = 0, k;
	const char *base;
	int rc;

	if (nl == 0 || nl > 100)
		return shl_err(SHL_EINVAL, "tar member name '%s': want 1 to 100 bytes", name);
	if (size > USTAR_MAX_SIZE) {
		snprintf(val, sizeof(val), "%llu", (unsigned long long)size);
		if (!(k = pax_record(rec, sizeof(rec), "size", val)))
			return shl_err(SHL_EINVAL, "tar member %s: pax record too long", name);
		n += k;
	}
	if (n) {
		/* the 'x' header's own name is informational; keep it short and stable */
		base = strrchr(name, '/');
		base = base && base[1] ? base + 1 : name;
		snprintf(xname, sizeof(xname), "PaxHeaders/%.89s", base);
		if ((rc = raw_header(t, xname, n, 'x', 0644)) || (rc = write_all(t, rec, n)) || (rc = pad(t)))
			return rc;
	}
	return raw_header(t, name, size, type, mode);
}

int shl_tarout_dir(shl_tarout *t, const char *name)
{
	return header(t, name, 0, '5', 0755);
}

int shl_tarout_mem(shl_tarout *t, const char *name, const void *data, size_t len)
{
	int rc = header(t, name, len, '0', 0644);

	if (!rc)
		rc = write_all(t, data, len);
	return rc ? rc : pad(t);
}

/* Errors that mean "this copy method does not apply to these fds". */
static int unsupported(int e)
{
	return e == EXDEV || e == EINVAL || e == ENOSYS || e == EOPNOTSUPP || e == EBADF || e == ENOTSUP;
}

int shl_tarout_file(shl_tarout *t, const char *name, int src, uint64_t size)
{
	uint64_t left = size;
	loff_t in_off = 0;
	uint64_t advised = 0;
	char *buf = NULL;
	int dsrc = -1;
	int rc = header(t, name, size, '0', 0644);

	if (!rc && t->dio) {
		t->copy_mode = 2; /* read + direct write (see the top of the file) */
		posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL); /* bigger readahead for a cold tar */
	}
	while (!rc && left) {
		size_t chunk = left > COPY_CHUNK ? COPY_CHUNK : (size_t)left;
		ssize_t n;

		if (t->copy_mode == 0) {
			n = copy_file_range(src, &in_off, t->fd, NULL, chunk, 0);
			if (n < 0 && unsupported(errno)) {
				t->copy_mode = 1;
				continue;
			}
		} else if (t->copy_mode == 1) {
			off_t o = (off_t)in_off;
			n = sendfile(t->fd, src, &o, chunk);
			if (n < 0 && unsupported(errno)) {
				t->copy_mode = 2;
				continue;
			}
			if (n > 0)
				in_off = o;
		} else {
			if (!buf) {
				if (posix_memalign((void **)&buf, 4096, RW_BUF)) {
					buf = NULL;
					rc = shl_err(SHL_ENOMEM, "out of memory");
					break;
				}
				/* direct output: read the (often cold) tar directly too; the
				 * writer thread overlaps the writes with these reads */
				dsrc = t->dio ? shl_dio_reader(src) : -1;
			}
			if (t->dio && dsrc < 0 && (uint64_t)in_off + WILLNEED_AHEAD / 2 >= advised) {
				/* keep the disk reading ahead while we write */
				posix_fadvise(src, (off_t)advised, WILLNEED_AHEAD, POSIX_FADV_WILLNEED);
				advised += WILLNEED_AHEAD;
			}
			n = shl_dio_pread(src, dsrc, buf, chunk > RW_BUF ? RW_BUF : chunk, (uint64_t)in_off);
			if (n > 0) {
				if ((rc = write_all(t, buf, (size_t)n)))
					break;
				in_off += n;
				left -= (uint64_t)n;
				continue;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			rc = wait_writable(t->fd);
			continue;
		}
		if (n < 0) {
			rc = shl_err_sys(SHL_EIO, "copy %s into the archive", name);
			break;
		}
		if (n == 0) {
			rc = shl_err(SHL_EIO, "%s: source is %llu bytes shorter than recorded", name,
				     (unsigned long long)left);
			break;
		}
		left -= (uint64_t)n;
		t->off += (uint64_t)n;
		t->copied += (uint64_t)n;
	}
	if (dsrc >= 0)
		close(dsrc);
	free(buf);
	return rc ? rc : pad(t);
}

int shl_tarout_finish(shl_tarout *t)
{
	static const uint8_t zero[1024];
	int rc = write_all(t, zero, sizeof(zero));

	if (!rc && t->dio)
		rc = shl_dio_finish(t->dio);
	shl_tarout_release(t);
	return rc;
}

void shl_tarout_release(shl_tarout *t)
{
	shl_dio_free(t->dio);
	t->dio = NULL;
}
