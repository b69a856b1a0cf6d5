/*
 * cli/cmd_tree.c - `shale tree`: list an EROFS image's tree through shale's
 * own reader (no mount): paths, `ls -l`-like lines, or JSON lines with every
 * attribute, xattr and (with --hash) a content digest. Used by tests to
 * compare the reader's view with the kernel's.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "shale/digest.h"
#include "shale/erofs.h"
#include "shale/error.h"

static const char usage_text[] =
	"usage: shale tree [--device TAR] [-l] [--json] [--hash] IMAGE.erofs\n"
	"\n"
	"List the tree of an EROFS image with shale's reader.\n"
	"  --device TAR   the layer tar of an index image (default: IMAGE with\n"
	"                 .erofs replaced by .tar, if it exists)\n"
	"  -l             long listing (mode, owner, size, mtime)\n"
	"  --json         one JSON object per entry\n"
	"  --hash         with --json: add the sha256 of regular files\n";

struct tree_ctx {
	shl_erofs *e;
	int long_fmt, json, hash;
	uint8_t *buf;
};

static const char *type_name(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return "reg";
	case S_IFDIR: return "dir";
	case S_IFLNK: return "lnk";
	case S_IFCHR: return "chr";
	case S_IFBLK: return "blk";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "sock";
	default: return "unknown";
	}
}

static void mode_string(uint32_t m, char out[11])
{
	static const char types[] = "?pc?d?b?-?l?s???";
	out[0] = types[(m >> 12) & 0xf];
	for (int i = 0; i < 9; i++)
		out[1 + i] = (m & (0400u >> i)) ? "rwxrwxrwx"[i] : '-';
	if (m & S_ISUID)
		out[3] = (m & 0100) ? 's' : 'S';
	if (m & S_ISGID)
		out[6] = (m & 0010) ? 's' : 'S';
	if (m & S_ISVTX)
		out[9] = (m & 0001) ? 't' : 'T';
	out[10] = '\0';
}

static int print_xattr(void *ctx, const char *name, const void *value, size_t len)
{
	int *first = ctx;
	const uint8_t *v = value;

	if (!*first)
		putchar(',');
	*first = 0;
	json_str(stdout, name);
	putchar(':');
	putchar('"');
	for (size_t i = 0; i < len; i++)
		printf("%02x", v[i]);
	putchar('"');
	return 0;
}

static int hash_file(struct tree_ctx *c, const shl_erofs_stat *st, char hex[65])
{
	shl_sha256 *h;
	uint8_t d[32];
	uint64_t off = 0;
	int rc;

	if ((rc = shl_sha256_new(&h)))
		return rc;
	while (off < st->size) {
		size_t got = 0;
		size_t want = st->size - off > (1u << 20) ? (1u << 20) : (size_t)(st->size - off);
		if ((rc = shl_erofs_pread(c->e, st->nid, c->buf, want, off, &got)))
			break;
		if (got == 0)
			break;
		shl_sha256_update(h, c->buf, got);
		off += got;
	}
	shl_sha256_final(h, d);
	shl_sha256_free(h);
	shl_hex(d, 32, hex);
	return rc;
}

static int visit(void *ctx, const char *path, const shl_erofs_stat *st)
{
	struct tree_ctx *c = ctx;
	char target[4097] = "";
	int rc;

	if (S_ISLNK(st->mode) && (rc = shl_erofs_readlink(c->e, st->nid, target, sizeof(target))))
		return rc;
	if (c->json) {
		int first = 1;
		printf("{\"path\":");
		json_str(stdout, path);
		printf(",\"type\":\"%s\",\"mode\":%u,\"uid\":%u,\"gid\":%u,\"size\":%llu,"
		       "\"mtime\":%lld,\"mtime_ns\":%u,\"nlink\":%u,\"nid\":%llu",
		       type_name(st->mode), st->mode & 07777, st->uid, st->gid,
		       (unsigned long long)st->size, (long long)st->mtime, st->mtime_nsec, st->nlink,
		       (unsigned long long)st->nid);
		if (S_ISCHR(st->mode) || S_ISBLK(st->mode))
			printf(",\"rdev\":[%u,%u]", st->rdev_major, st->rdev_minor);
		if (S_ISLNK(st->mode)) {
			printf(",\"target\":");
			json_str(stdout, target);
		}
		printf(",\"xattrs\":{");
		if ((rc = shl_erofs_xattrs(c->e, st->nid, print_xattr, &first)))
			return rc;
		putchar('}');
		if (c->hash && S_ISREG(st->mode)) {
			char hex[65];
			if ((rc = hash_file(c, st, hex)))
				return rc;
			printf(",\"sha256\":\"%s\"", hex);
		}
		printf("}\n");
	} else if (c->long_fmt) {
		char ms[11], tbuf[32];
		time_t t = (time_t)st->mtime;
		struct tm tm;
		mode_string(st->mode, ms);
		gmtime_r(&t, &tm);
		strftime(tbuf, sizeof(tbuf), "%Y-%m-%d %H:%M", &tm);
		if (S_ISCHR(st->mode) || S_ISBLK(st->mode))
			printf("%s %3u %5u %5u %6u, %5u %s %s\n", ms, st->nlink, st->uid, st->gid,
			       st->rdev_major, st->rdev_minor, tbuf, *path ? path : "/");
		else
			printf("%s %3u %5u %5u %13llu %s %s%s%s\n", ms, st->nlink, st->uid, st->gid,
			       (unsigned long long)st->size, tbuf, *path ? path : "/",
			       S_ISLNK(st->mode) ? " -> " : "", target);
	} else {
		printf("%s\n", *path ? path : "/");
	}
	return 0;
}

int cmd_tree(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "device", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "hash", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct tree_ctx c = { .json = cli_g.json };
	const char *device = NULL;
	char devbuf[4096];
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "lh", opts, NULL)) != -1) {
		switch (opt) {
		case 'D': device = optarg; break;
		case 'l': c.long_fmt = 1; break;
		case 'j': c.json = 1; break;
		case 'H': c.hash = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return cli_usage("tree", "bad option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("tree", "expected one IMAGE argument");
	if (!device) {
		const char *img = argv[optind];
		size_t n = strlen(img);
		if (n > 6 && !strcmp(img + n - 6, ".erofs")) {
			snprintf(devbuf, sizeof(devbuf), "%.*s.tar", (int)(n - 6), img);
			if (access(devbuf, R_OK) == 0)
				device = devbuf;
		}
	}
	if (shl_erofs_open(&c.e, argv[optind], device) != 0)
		return cli_fail(argv[optind]);
	c.buf = malloc(1u << 20);
	if (!c.buf) {
		shl_erofs_close(c.e);
		fprintf(stderr, "shale: error: out of memory\n");
		return 1;
	}
	rc = shl_erofs_walk(c.e, visit, &c);
	fflush(stdout);
	free(c.buf);
	shl_erofs_close(c.e);
	return rc ? cli_fail(argv[optind]) : 0;
}
