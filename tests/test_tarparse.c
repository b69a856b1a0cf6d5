/*
 * tests/test_tarparse.c - store/tarparse.c end to end: tars written by
 * Python's tarfile (tests/data/tarparse_gen.py: ustar, GNU, pax, long names
 * and targets, xattrs, ACLs, devices, whiteouts, raw and NFD names, 1 MiB
 * buffer boundaries, hostile inputs) go through the instream (plain, gzip,
 * zstd) into shl_tarparse; the file tree must match the generator's
 * expectations, with data offsets equal to Python's TarInfo.offset_data, and
 * every hostile tar must fail with the expected code naming the entry. Also:
 * the thread locale is restored, a failing source's error comes through.
 */
#include <dirent.h>
#include <locale.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "check.h"
#include "store/fstree.h"
#include "store/tarparse.h"
#include "util/err.h"
#include "util/instream.h"

struct mem {
	const uint8_t *p;
	size_t left, chunk;
	long fail_after;        /* bytes before the source fails; -1 never */
};

static ssize_t mem_read(void *ctx, void *buf, size_t len)
{
	struct mem *m = ctx;
	size_t n = len < m->left ? len : m->left;

	if (m->chunk && n > m->chunk)
		n = m->chunk;
	if (m->fail_after >= 0) {
		if ((long)n > m->fail_after)
			n = (size_t)m->fail_after;
		if (n == 0)
			return shl_err(SHL_ENET, "source broke on purpose");
		m->fail_after -= (long)n;
	}
	memcpy(buf, m->p, n);
	m->p += n;
	m->left -= n;
	return (ssize_t)n;
}

static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n) {
		*len = (size_t)n;
		buf[n] = 0;
	} else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

static uint8_t *gzip_of(const uint8_t *in, size_t n, size_t *out_len)
{
	z_stream z;
	size_t cap = compressBound((uLong)n) + 64;
	uint8_t *out = malloc(cap);

	memset(&z, 0, sizeof(z));
	deflateInit2(&z, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (uint8_t *)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	deflate(&z, Z_FINISH);
	*out_len = z.total_out;
	deflateEnd(&z);
	return out;
}

static uint8_t *zstd_of(const uint8_t *in, size_t n, size_t *out_len)
{
	size_t cap = ZSTD_compressBound(n);
	uint8_t *out = malloc(cap);

	*out_len = ZSTD_compress(out, cap, in, n, 1);
	return out;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;

	if (!strcmp(s, "-"))
		return 0;
	for (; s[0] && s[1] && n < cap; s += 2) {
		unsigned v;
		if (sscanf(s, "%2x", &v) != 1)
			break;
		out[n++] = (uint8_t)v;
	}
	return n;
}

/* Inode of a path in a finalized tree ("" is the root), SHL_FS_NONE if absent. */
static uint32_t lookup(shl_fstree *t, const uint8_t *path, size_t len)
{
	uint32_t ino = shl_fstree_root(t);
	size_t i = 0;

	while (i < len) {
		size_t j = i;
		shl_fsinode *dir = shl_fstree_inode(t, ino);
		uint32_t next = SHL_FS_NONE;
		while (j < len && path[j] != '/')
			j++;
		for (uint32_t k = 0; k < dir->nchildren; k++) {
			const shl_fsdentry *d = shl_fstree_dentry(t, dir->children[k]);
			if (d->name_len == j - i && !memcmp(d->name, path + i, j - i)) {
				next = d->inode;
				break;
			}
		}
		if (next == SHL_FS_NONE)
			return SHL_FS_NONE;
		ino = next;
		i = j + 1;
	}
	return ino;
}

static const char *type_name(const shl_fsinode *in)
{
	if (in->flags & SHL_FSI_WHITEOUT)
		return "wh";
	switch (in->mode & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "lnk";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	default: return "?";
	}
}

static int failed_here;

#define EXPECT(cond, ...) do { \
	check_count++; \
	if (!(cond)) { \
		check_failures++; \
		failed_here++; \
		fprintf(stderr, "  %s [%s] line %d: ", cname, variant, lineno); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
	} \
} while (0)

/* Check a finalized tree against the .exp lines after the first. */
static void verify(shl_fstree *t, char *exp, const char *cname, const char *variant)
{
	static uint8_t b1[70000], b2[70000];
	static char a[70000], b[70000];
	shl_fsinode *in = NULL;
	uint32_t ino = SHL_FS_NONE;
	int lineno = 1;
	char *save = NULL;

	for (char *line = strtok_r(exp, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char k[32];
		unsigned long long v1 = 0, v2 = 0;
		int nf = sscanf(line, "%31s %69999s %69999s", k, a, b);

		lineno++;
		if (lineno == 2 || nf < 1)
			continue;       /* the ok/err line */
		if (nf >= 2)
			v1 = strtoull(a, NULL, 0);
		if (nf >= 3)
			v2 = strtoull(b, NULL, 0);
		if (!strcmp(k, "variants") || !strcmp(k, "locale"))
			continue;
		if (!strcmp(k, "entries")) {
			EXPECT(shl_fstree_nentries(t) == v1, "entries %u, want %llu", shl_fstree_nentries(t), v1);
			continue;
		}
		if (!strcmp(k, "path") || !strcmp(k, "absent")) {
			size_t n = unhex(a, b1, sizeof(b1));
			ino = lookup(t, b1, n);
			in = ino == SHL_FS_NONE ? NULL : shl_fstree_inode(t, ino);
			if (!strcmp(k, "absent"))
				EXPECT(!in, "path %.*s exists", (int)n, b1);
			else
				EXPECT(in, "path %.*s missing", (int)n, b1);
			continue;
		}
		if (!in)
			continue;
		if (!strcmp(k, "type")) {
			EXPECT(!strcmp(type_name(in), a), "type %s, want %s", type_name(in), a);
			if (!strcmp(a, "wh"))
				EXPECT(S_ISCHR(in->mode) && !in->rdev_major && !in->rdev_minor, "whiteout not chr 0:0");
		} else if (!strcmp(k, "perm")) {
			EXPECT((in->mode & 07777) == strtoul(a, NULL, 8), "perm %o, want %s", in->mode & 07777, a);
		} else if (!strcmp(k, "uid")) {
			EXPECT(in->uid == v1, "uid %u, want %llu", in->uid, v1);
		} else if (!strcmp(k, "gid")) {
			EXPECT(in->gid == v1, "gid %u, want %llu", in->gid, v1);
		} else if (!strcmp(k, "mtime")) {
			long long s = strtoll(a, NULL, 0);
			EXPECT(in->mtime == s && in->mtime_ns == v2, "mtime %lld.%09u, want %lld.%09llu",
			       (long long)in->mtime, in->mtime_ns, s, v2);
		} else if (!strcmp(k, "size")) {
			EXPECT(in->size == v1, "size %llu, want %llu", (unsigned long long)in->size, v1);
		} else if (!strcmp(k, "off")) {
			EXPECT(in->data_off == v1, "data offset %llu, want %llu (python offset_data)",
			       (unsigned long long)in->data_off, v1);
		} else if (!strcmp(k, "rdev")) {
			EXPECT(in->rdev_major == v1 && in->rdev_minor == v2, "rdev %u:%u, want %llu:%llu",
			       in->rdev_major, in->rdev_minor, v1, v2);
		} else if (!strcmp(k, "target")) {
			size_t n = unhex(a, b1, sizeof(b1));
			EXPECT(in->symlink && strlen(in->symlink) == n && !memcmp(in->symlink, b1, n),
			       "symlink target '%s', want '%.*s'", in->symlink ? in->symlink : "(none)", (int)n, b1);
		} else if (!strcmp(k, "nlink")) {
			EXPECT(in->nlink == v1, "nlink %u, want %llu", in->nlink, v1);
		} else if (!strcmp(k, "nxattrs")) {
			EXPECT(in->nxattrs == v1, "%u xattrs, want %llu", in->nxattrs, v1);
		} else if (!strcmp(k, "xattr")) {
			size_t nn = unhex(a, b1, sizeof(b1) - 1), vn = unhex(b, b2, sizeof(b2));
			const shl_fsxattr *x = NULL;
			b1[nn] = 0;
			for (uint32_t i = 0; i < in->nxattrs; i++)
				if (!strcmp(in->xattrs[i].name, (char *)b1))
					x = &in->xattrs[i];
			EXPECT(x && x->len == vn && !memcmp(x->value, b2, vn), "xattr %s missing or differs", b1);
		} else if (!strcmp(k, "same")) {
			size_t n = unhex(a, b1, sizeof(b1));
			uint32_t other = lookup(t, b1, n);
			EXPECT(other == ino, "not the same inode as %.*s", (int)n, b1);
		} else if (!strcmp(k, "flag")) {
			uint32_t f = !strcmp(a, "opaque") ? SHL_FSI_OPAQUE : !strcmp(a, "implicit") ? SHL_FSI_IMPLICIT
				   : !strcmp(a, "has_wh") ? SHL_FSI_HAS_WH : 0;
			EXPECT(f && (in->flags & f), "flag %s not set (flags 0x%x)", a, in->flags);
		} else {
			EXPECT(0, "unknown expectation '%s'", k);
		}
	}
}

/* Parse one byte stream; check the result against the expectations. */
static void run(const char *cname, const char *variant, const uint8_t *data, size_t len,
		const char *exp_text, size_t chunk, size_t plain_len)
{
	struct mem m = { data, len, chunk, -1 };
	shl_instream *in = NULL;
	shl_fstree *t = NULL;
	shl_instream_result res;
	char want_code[32] = "", want_hex[4096] = "";
	uint8_t want_msg[2048];
	char *exp = strdup(exp_text);
	int is_err = sscanf(exp_text, "err %31s %4095s", want_code, want_hex) == 2;
	int rc, lineno = 1;

	CHECK_OK(shl_instream_new(&in, mem_read, &m, -1));
	CHECK_OK(shl_fstree_new(&t, NULL));
	if (!in || !t)
		goto out;
	rc = shl_tarparse(t, in);
	EXPECT(uselocale((locale_t)0) == LC_GLOBAL_LOCALE, "thread locale not restored");
	if (is_err) {
		size_t n = unhex(want_hex, want_msg, sizeof(want_msg) - 1);
		want_msg[n] = 0;
		EXPECT(rc != 0 && !strcmp(shl_error_name(rc), want_code), "returned %d (%s), want %s: %s", rc,
		       rc ? shl_error_name(rc) : "ok", want_code, shl_error_last());
		EXPECT(rc == 0 || strstr(shl_error_last(), (char *)want_msg), "message '%s' lacks '%s'",
		       shl_error_last(), (char *)want_msg);
		goto out;
	}
	EXPECT(rc == 0, "failed: %s", shl_error_last());
	if (rc)
		goto out;
	CHECK_OK(shl_instream_finish(in, &res));
	EXPECT(res.plain_size == plain_len, "instream saw %llu plain bytes, want %zu",
	       (unsigned long long)res.plain_size, plain_len);
	CHECK_OK(shl_fstree_finalize(t));
	verify(t, exp, cname, variant);
out:
	shl_instream_free(in);
	shl_fstree_free(t);
	free(exp);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_case(const char *dir, const char *cname)
{
	char path[4096];
	size_t tlen = 0, elen = 0, zlen = 0;
	uint8_t *tar, *z;
	char *exp, *loc;

	snprintf(path, sizeof(path), "%s/%s.tar", dir, cname);
	tar = read_file(path, &tlen);
	snprintf(path, sizeof(path), "%s/%s.exp", dir, cname);
	exp = (char *)read_file(path, &elen);
	CHECK(tar && exp);
	if (!tar || !exp)
		goto out;
	failed_here = 0;
	if ((loc = strstr(exp, "\nlocale "))) {
		char name[64] = "";
		sscanf(loc + 8, "%63s", name);
		if (!setlocale(LC_ALL, name))
			printf("  (%s: locale %s not available, parsing in C)\n", cname, name);
	}
	run(cname, "plain", tar, tlen, exp, 0, tlen);
	/* odd source reads: the instream still hands out full buffers, but the
	 * sniffing and the first buffer differ */
	run(cname, "chunk4099", tar, tlen, exp, 4099, tlen);
	if (strstr(exp, "\nvariants")) {
		z = gzip_of(tar, tlen, &zlen);
		run(cname, "gzip", z, zlen, exp, 0, tlen);
		free(z);
		z = zstd_of(tar, tlen, &zlen);
		run(cname, "zstd", z, zlen, exp, 0, tlen);
		free(z);
	}
	setlocale(LC_ALL, "C");
	printf("%s %s\n", failed_here ? "FAIL" : "ok  ", cname);
out:
	free(tar);
	free(exp);
}

/* A source that breaks mid-tar: its own error comes back, not a tar error. */
static void source_error(const char *dir)
{
	char path[4096];
	size_t len = 0;
	uint8_t *tar;
	struct mem m;
	shl_instream *in = NULL;
	shl_fstree *t = NULL;

	snprintf(path, sizeof(path), "%s/boundary.tar", dir);
	tar = read_file(path, &len);
	CHECK(tar && len > (3u << 20));
	if (!tar)
		return;
	m = (struct mem){ tar, len, 0, (long)(2u << 20) + 1234 };
	CHECK_OK(shl_instream_new(&in, mem_read, &m, -1));
	CHECK_OK(shl_fstree_new(&t, NULL));
	if (in && t) {
		CHECK_ERR(shl_tarparse(t, in), SHL_ENET);
		CHECK(strstr(shl_error_last(), "broke on purpose") != NULL);
	}
	shl_instream_free(in);
	shl_fstree_free(t);
	free(tar);
}

int main(void)
{
	char tmpl[] = "/tmp/shl-tarparse-XXXXXX", cmd[8192], gen[4096];
	const char *src = getenv("SHALE_SRC");
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc;

	if (src) {
		snprintf(gen, sizeof(gen), "%s/tests/data/tarparse_gen.py", src);
	} else {
		/* not under ctest: the generator sits next to this file */
		const char *slash = strrchr(__FILE__, '/');
		snprintf(gen, sizeof(gen), "%.*s/data/tarparse_gen.py",
			 slash ? (int)(slash - __FILE__) : 1, slash ? __FILE__ : ".");
	}
	if (access(gen, R_OK) != 0)
		SKIP("tests/data/tarparse_gen.py not found (set SHALE_SRC)");
	if (system("python3 -c 'import tarfile' >/dev/null 2>&1") != 0)
		SKIP("python3 not available");
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(cmd, sizeof(cmd), "python3 '%s' '%s'", gen, tmpl);
	rc = system(cmd);
	CHECK(rc == 0);
	if (rc == 0 && (d = opendir(tmpl))) {
		while ((de = readdir(d))) {
			size_t l = strlen(de->d_name);
			if (l > 4 && !strcmp(de->d_name + l - 4, ".exp")) {
				if (n == cap) {
					char **nn = realloc(names, (cap ? cap * 2 : 64) * sizeof(*names));
					if (!nn)
						break;
					names = nn;
					cap = cap ? cap * 2 : 64;
				}
				if (!(names[n] = strndup(de->d_name, l - 4)))
					break;
				n++;
			}
		}
		closedir(d);
		qsort(names, n, sizeof(*names), cmp_str);
		CHECK(n >= 40);
		for (size_t i = 0; i < n; i++)
			run_case(tmpl, names[i]);
		source_error(tmpl);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpl);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpl);
	return check_result("test_tarparse");
}
