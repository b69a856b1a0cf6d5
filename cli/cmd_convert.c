/*
 * cli/cmd_convert.c - `shale convert`: a layer tar (file or stdin; plain,
 * gzip or zstd) into an EROFS image, like `mkfs.erofs --tar`. Index mode
 * writes OUT.erofs + the uncompressed tar it points into; --full writes a
 * self-contained 4 KiB image. Outputs appear atomically or not at all.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "shale/error.h"
#include "shale/layer.h"

static const char usage_text[] =
	"usage: shale convert [--full] [-o OUT.erofs] [--tar-out TAR] [--max-entries N] [--json] [INPUT|-]\n"
	"\n"
	"Convert a layer tar (plain, gzip or zstd; from INPUT or stdin) into an EROFS image.\n"
	"  -o, --output FILE   image to write (default: layer.erofs)\n"
	"  --tar-out FILE      where to keep the uncompressed tar (index mode default:\n"
	"                      the output name with .erofs replaced by .tar)\n"
	"  --full              4 KiB blocks with file data copied in (no tar needed to mount)\n"
	"  --max-entries N     refuse layers with more than N entries (default 4194304)\n"
	"  --json              print the result as one JSON object\n";

struct tmpout {
	char final[4096];
	char tmp[4096];
	int fd;
};

static int tmp_open(struct tmpout *t, const char *final)
{
	char dirbuf[4096], basebuf[4096];

	if (strlen(final) >= sizeof(t->final) - 32) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(t->final, final);
	strcpy(dirbuf, final);
	strcpy(basebuf, final);
	snprintf(t->tmp, sizeof(t->tmp), "%s/.%s.tmp.XXXXXX", dirname(dirbuf), basename(basebuf));
	t->fd = mkstemp(t->tmp);
	if (t->fd < 0)
		return -1;
	cli_tmp_register(t->tmp);
	return 0;
}

static void tmp_discard(struct tmpout *t)
{
	if (t->fd >= 0) {
		close(t->fd);
		unlink(t->tmp);
		cli_tmp_unregister(t->tmp);
		t->fd = -1;
	}
}

static int tmp_publish(struct tmpout *t)
{
	if (fchmod(t->fd, 0644) != 0 || rename(t->tmp, t->final) != 0)
		return -1;
	cli_tmp_unregister(t->tmp);
	close(t->fd);
	t->fd = -1;
	return 0;
}

/* An unnamed temp file next to `near` (full mode without --tar-out). */
static int anon_tmp(const char *near)
{
	char dirbuf[4096], path[4096];
	int fd;

	snprintf(dirbuf, sizeof(dirbuf), "%s", near);
	fd = open(dirname(dirbuf), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
		return fd;
	snprintf(dirbuf, sizeof(dirbuf), "%s", near);
	snprintf(path, sizeof(path), "%s/.shale-tar.XXXXXX", dirname(dirbuf));
	fd = mkstemp(path);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static const char *comp_name(int c)
{
	return c == 1 ? "gzip" : c == 2 ? "zstd" : "none";
}

int cmd_convert(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "tar-out", required_argument, NULL, 't' },
		{ "full", no_argument, NULL, 'f' },
		{ "max-entries", required_argument, NULL, 'm' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_layer_opts o = SHL_LAYER_OPTS_INIT;
	shl_layer_info info;
	struct tmpout img = { .fd = -1 }, tar = { .fd = -1 };
	const char *out = "layer.erofs", *tar_out = NULL, *input = NULL;
	char tarpath[4096];
	int c, in_fd = 0, rc = 1, json = cli_g.json, anon_fd = -1;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 't': tar_out = optarg; break;
		case 'f': o.mode = SHL_LAYER_FULL; break;
		case 'j': json = 1; break;
		case 'm': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || !v || v > UINT32_MAX)
				return cli_usage("convert", "--max-entries: bad number '%s'", optarg);
			o.max_entries = (uint32_t)v;
			break;
		}
		case 'h': fputs(usage_text, stdout); return 0;
		default: return cli_usage("convert", "bad option");
		}
	}
	if (optind + 1 < argc)
		return cli_usage("convert", "too many arguments");
	if (optind < argc && strcmp(argv[optind], "-") != 0)
		input = argv[optind];
	if (o.mode == SHL_LAYER_INDEX && !tar_out) {
		size_t n = strlen(out);
		if (n > 6 && !strcmp(out + n - 6, ".erofs"))
			snprintf(tarpath, sizeof(tarpath), "%.*s.tar", (int)(n - 6), out);
		else
			snprintf(tarpath, sizeof(tarpath), "%s.tar", out);
		tar_out = tarpath;
	}
	if (input) {
		in_fd = open(input, O_RDONLY | O_CLOEXEC);
		if (in_fd < 0) {
			fprintf(stderr, "shale: error: open %s: %s\n", input, strerror(errno));
			return 1;
		}
	} else if (isatty(0)) {
		return cli_usage("convert", "refusing to read a layer from a terminal; give INPUT or a pipe");
	}

	if (tmp_open(&img, out) != 0) {
		fprintf(stderr, "shale: error: create %s: %s\n", out, strerror(errno));
		goto out;
	}
	if (tar_out) {
		if (tmp_open(&tar, tar_out) != 0) {
			fprintf(stderr, "shale: error: create %s: %s\n", tar_out, strerror(errno));
			goto out;
		}
		o.tar_fd = tar.fd;
	} else {
		anon_fd = anon_tmp(out);
		if (anon_fd < 0) {
			fprintf(stderr, "shale: error: temp file for the tar: %s\n", strerror(errno));
			goto out;
		}
		o.tar_fd = anon_fd;
	}
	o.erofs_fd = img.fd;
	if (shl_layer_convert_fd(in_fd, &o, &info) != 0) {
		cli_fail(input ? input : "stdin");
		goto out;
	}
	if ((tar.fd >= 0 && tmp_publish(&tar) != 0) || tmp_publish(&img) != 0) {
		fprintf(stderr, "shale: error: publish %s: %s\n", out, strerror(errno));
		if (tar.fd < 0 && tar_out)
			unlink(tar_out);
		goto out;
	}
	if (json) {
		printf("{\"diff_id\":\"%s\",\"blob_digest\":\"%s\",\"compression\":\"%s\","
		       "\"mode\":\"%s\",\"tar_size\":%llu,\"erofs_size\":%llu,\"entries\":%llu,\"image\":",
		       info.diff_id, info.raw_digest, comp_name(info.compression),
		       o.mode == SHL_LAYER_FULL ? "full" : "index", (unsigned long long)info.tar_size,
		       (unsigned long long)info.erofs_size, (unsigned long long)info.entries);
		json_str(stdout, out);
		if (tar_out) {
			printf(",\"tar\":");
			json_str(stdout, tar_out);
		}
		printf("}\n");
	} else {
		printf("%s\nentries %llu tar %llu erofs %llu\n", info.diff_id,
		       (unsigned long long)info.entries, (unsigned long long)info.tar_size,
		       (unsigned long long)info.erofs_size);
	}
	rc = 0;
out:
	tmp_discard(&img);
	tmp_discard(&tar);
	if (anon_fd >= 0)
		close(anon_fd);
	if (input && in_fd >= 0)
		close(in_fd);
	return rc;
}
