/*
 * cli/cmd_save.c - `shale save [-o FILE] [--format docker|oci]
 * [--compress none|gzip|zstd] [--exclude-layers FILE] REF...`: write images
 * as one archive to FILE (atomically: a temp file in the same directory +
 * rename, nothing left behind on error or interruption) or to stdout (never a
 * terminal).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "shale/save.h"

static const char usage_text[] =
	"usage: shale save [-o|--output FILE] [--format docker|oci] [--compress none|gzip|zstd]\n"
	"                  [--exclude-layers FILE] IMAGE...\n"
	"\n"
	"Save images to one archive (stdout if no --output). The default format is the OCI\n"
	"layout plus docker's manifest.json and repositories, which docker, podman, skopeo and\n"
	"containerd load; --format oci writes a pure OCI archive. Layers are the stored tars,\n"
	"bit-exact, unless --compress gzip|zstd. --exclude-layers FILE omits the layers listed\n"
	"in FILE (diff_ids one per line, or `shale df --layers --json` of the target store):\n"
	"`shale load` on the target completes the images from its store.\n";

int cmd_save(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, 'f' },
		{ "exclude-layers", required_argument, NULL, 'x' },
		{ "compress", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_save_opts o = SHL_SAVE_OPTS_INIT;
	const char *out = NULL;
	struct cli_out of = { NULL, "", -1 };
	shl_store *s = NULL;
	int c, fd = 1, rc = 1;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'f':
			if (!strcmp(optarg, "docker"))
				o.format = SHL_SAVE_DOCKER;
			else if (!strcmp(optarg, "oci"))
				o.format = SHL_SAVE_OCI;
			else
				return cli_usage("save", "--format: want docker or oci, not '%s'", optarg);
			break;
		case 'x': o.exclude_layers = optarg; break;
		case 'c':
			if (!strcmp(optarg, "none"))
				o.compress = SHL_SAVE_COMPRESS_NONE;
			else if (!strcmp(optarg, "gzip"))
				o.compress = SHL_SAVE_COMPRESS_GZIP;
			else if (!strcmp(optarg, "zstd"))
				o.compress = SHL_SAVE_COMPRESS_ZSTD;
			else
				return cli_usage("save", "--compress: want none, gzip or zstd, not '%s'", optarg);
			break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return cli_usage("save", "bad option");
		}
	}
	if (optind >= argc)
		return cli_usage("save", "expected at least one IMAGE");
	if (!out && isatty(1))
		return cli_usage("save", "cowardly refusing to write an archive to a terminal; use --output or a pipe");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	if (out) {
		if (cli_out_open(&of, out))
			goto done;
		fd = of.fd;
	}
	if (shl_save(s, (const char *const *)argv + optind, (size_t)(argc - optind), &o, fd) != 0) {
		cli_fail(NULL);
		goto done;
	}
	if (out && cli_out_commit(&of))
		goto done;
	rc = 0;
done:
	cli_out_close(&of);
	shl_store_close(s);
	return rc;
}
