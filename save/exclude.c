/*
 * save/exclude.c - the `save --exclude-layers FILE` list: the diff_ids the
 * target store already has. FILE is either plain text (one "sha256:<hex>" per
 * line, '#' starts a comment, blank lines ignored) or the JSON `shale df
 * --layers --json` prints (an array of objects with a "diff_id" field; an
 * array of digest strings and {"layers": [...]} are accepted too). Anything
 * else is an error naming the line or element: a typo must not silently put
 * a layer into (or leave it out of) an archive.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "save/save_int.h"
#include "util/err.h"
#include "util/hash.h"

#define EXCLUDE_CAP (64u << 20)   /* bytes of FILE */
#define EXCLUDE_MAX (1u << 20)    /* diff_ids */

static int add(shl_saver *v, const char *d, size_t n, const char *path, const char *where)
{
	char buf[72];
	uint8_t raw[32];

	if (n != 71 || (memcpy(buf, d, 71), buf[71] = '\0', shl_digest_parse(buf, raw) != 0))
		return shl_err(SHL_EFORMAT, "%s: %s: not a diff_id (want sha256:<64 lowercase hex>): '%.*s'", path,
			       where, (int)(n > 80 ? 80 : n), d);
	if (v->nexclude >= EXCLUDE_MAX)
		return shl_err(SHL_ELIMIT, "%s: more than %u diff_ids", path, EXCLUDE_MAX);
	if (v->nexclude == v->exclude_cap) {
		size_t cap = v->exclude_cap ? v->exclude_cap * 2 : 64;
		char (*ne)[72] = realloc(v->exclude, cap * sizeof(*ne));
		if (!ne)
			return shl_err(SHL_ENOMEM, "out of memory");
		v->exclude = ne;
		v->exclude_cap = cap;
	}
	memcpy(v->exclude[v->nexclude++], buf, 72);
	return 0;
}

static int from_text(shl_saver *v, char *p, size_t len, const char *path)
{
	char *end = p + len, where[32];
	unsigned line = 0;
	int rc;

	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end, *h;
		line++;
		if ((h = memchr(p, '#', (size_t)(e - p))))
			e = h;
		while (p < e && strchr(" \t\r", *p))
			p++;
		while (e > p && strchr(" \t\r", e[-1]))
			e--;
		if (e > p) {
			snprintf(where, sizeof(where), "line %u", line);
			if ((rc = add(v, p, (size_t)(e - p), path, where)))
				return rc;
		}
		p = nl ? nl + 1 : end;
	}
	return 0;
}

static int from_json(shl_saver *v, const char *p, size_t len, const char *path)
{
	shl_json *j = NULL, *arr;
	char where[48];
	int rc;

	if ((rc = shl_json_parse(&j, p, len, EXCLUDE_CAP, path)))
		return rc;
	arr = shl_json_is_object(j) ? shl_json_get(j, "layers") : j;
	if (!shl_json_is_array(arr)) {
		rc = shl_err(SHL_EFORMAT, "%s: want a JSON array of layers (as `shale df --layers --json` prints)",
			     path);
		goto out;
	}
	for (size_t i = 0; i < shl_json_len(arr) && !rc; i++) {
		shl_json *e = shl_json_at(arr, i);
		const char *d = shl_json_is_string(e) ? shl_json_str(e) : shl_json_get_str(e, "diff_id");
		snprintf(where, sizeof(where), "element %zu", i);
		if (!d)
			rc = shl_err(SHL_EFORMAT, "%s: %s: no \"diff_id\"", path, where);
		else
			rc = add(v, d, strlen(d), path, where);
	}
out:
	shl_json_put(j);
	return rc;
}

static int cmp72(const void *a, const void *b)
{
	return strcmp(a, b);
}

int shl_save__read_exclude(shl_saver *v, const char *path)
{
	struct stat st;
	char *data = NULL, *p;
	size_t len = 0, cap;
	int fd, rc = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return shl_err_sys(SHL_EIO, "--exclude-layers %s", path);
	if (fstat(fd, &st) != 0) {
		rc = shl_err_sys(SHL_EIO, "stat %s", path);
		goto out;
	}
	/* a pipe (e.g. <(ssh target shale df --layers --json)) has no size: grow up to the cap */
	cap = S_ISREG(st.st_mode) && (uint64_t)st.st_size < EXCLUDE_CAP ? (size_t)st.st_size + 2 : 1u << 16;
	if (!(data = malloc(cap))) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n;
		if (len + 1 >= cap) {
			char *nd;
			cap = cap > EXCLUDE_CAP / 2 ? EXCLUDE_CAP + 2 : cap * 2;
			if (!(nd = realloc(data, cap))) {
				rc = shl_err(SHL_ENOMEM, "out of memory");
				goto out;
			}
			data = nd;
		}
		n = read(fd, data + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = shl_err_sys(SHL_EIO, "read %s", path);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > EXCLUDE_CAP) {
			rc = shl_err(SHL_ELIMIT, "%s: larger than %u MiB", path, EXCLUDE_CAP >> 20);
			goto out;
		}
	}
	data[len] = '\0';
	for (p = data; p < data + len && strchr(" \t\r\n", *p); p++)
		;
	if (p < data + len && (*p == '[' || *p == '{'))
		rc = from_json(v, data, len, path);
	else
		rc = from_text(v, data, len, path);
	if (!rc && v->nexclude) {
		size_t k = 1;
		qsort(v->exclude, v->nexclude, sizeof(*v->exclude), cmp72);
		for (size_t i = 1; i < v->nexclude; i++)
			if (strcmp(v->exclude[i], v->exclude[k - 1]))
				memcpy(v->exclude[k++], v->exclude[i], 72);
		v->nexclude = k;
	}
out:
	free(data);
	close(fd);
	return rc;
}

int shl_save__excluded(const shl_saver *v, const char *diff_id)
{
	return v->nexclude && bsearch(diff_id, v->exclude, v->nexclude, sizeof(*v->exclude), cmp72) != NULL;
}
