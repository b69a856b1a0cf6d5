/*
 * save/tarout.c - deterministic ustar output (save/tarout.h).
 *
 * Hand-written rather than libarchive's writer because layer tars (hundreds
 * of MB) must go from the store to the output without passing through user
 * space: copy_file_range for a regular-file output, sendfile for pipes, with
 * a read/write fallback. The headers themselves are trivial for the fixed,
 * short names shale writes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "save/tarout.h"
#include "util/err.h"

static int write_all(shl_tarout *t, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(t->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return shl_err_sys(SHL_EIO, "write archive");
		p += n;
		len -= (size_t)n;
		t->off += (uint64_t)n;
	}
	return 0;
}

static int header(shl_tarout *t, const char *name, uint64_t size, char type, unsigned mode)
{
	uint8_t h[512];
	unsigned sum = 0;
	size_t nl = strlen(name);

	if (nl > 99)
		return shl_err(SHL_EINVAL, "tar name too long: %s", name);
	if (size > 077777777777ull)
		return shl_err(SHL_ELIMIT, "tar member %s: %llu bytes exceeds the ustar size field", name,
			       (unsigned long long)size);
	memset(h, 0, sizeof(h));
	memcpy(h, name, nl);
	snprintf((char *)h + 100, 8, "%07o", mode);
	snprintf((char *)h + 108, 8, "%07o", 0);
	snprintf((char *)h + 116, 8, "%07o", 0);
	snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
	snprintf((char *)h + 136, 12, "%011o", 0);
	memset(h + 148, ' ', 8);
	h[156] = (uint8_t)type;
	memcpy(h + 257, "ustar", 6);
	memcpy(h + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	snprintf((char *)h + 148, 8, "%06o", sum);
	h[155] = ' ';
	return write_all(t, h, sizeof(h));
}

static int pad(shl_tarout *t)
{
	static const uint8_t zero[512];
	size_t r = (size_t)(t->off % 512);

	return r ? write_all(t, zero, 512 - r) : 0;
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

int shl_tarout_file(shl_tarout *t, const char *name, int src, uint64_t size)
{
	uint64_t left = size;
	loff_t in_off = 0;
	int rc = header(t, name, size, '0', 0644), mode = 0; /* 0 cfr, 1 sendfile, 2 rw */
	char *buf = NULL;

	while (!rc && left) {
		size_t chunk = left > (1u << 30) ? (1u << 30) : (size_t)left;
		ssize_t n = -1;
		if (mode == 0) {
			n = copy_file_range(src, &in_off, t->fd, NULL, chunk, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ||
				      errno == EBADF)) {
				mode = 1;
				continue;
			}
		} else if (mode == 1) {
			off_t o = (off_t)in_off;
			n = sendfile(t->fd, src, &o, chunk);
			if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
				mode = 2;
				continue;
			}
			if (n > 0)
				in_off = o;
		} else {
			if (!buf && !(buf = malloc(1u << 20))) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				break;
			}
			n = pread(src, buf, chunk > (1u << 20) ? (1u << 20) : chunk, in_off);
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
		if (n < 0) {
			rc = shl_err_sys(SHL_EIO, "copy %s into the archive", name);
			break;
		}
		if (n == 0) {
			rc = shl_err(SHL_EIO, "%s: shorter than recorded (%llu bytes missing)", name,
				     (unsigned long long)left);
			break;
		}
		left -= (uint64_t)n;
		t->off += (uint64_t)n;
	}
	free(buf);
	return rc ? rc : pad(t);
}

int shl_tarout_finish(shl_tarout *t)
{
	static const uint8_t zero[1024];

	return write_all(t, zero, sizeof(zero));
}
