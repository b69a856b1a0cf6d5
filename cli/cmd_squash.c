/*
 * cli/cmd_squash.c - `shale squash IMAGE -o FILE [--format erofs|ext4|tar]`:
 * flatten an image's layers in-process (whiteouts and opaque dirs applied; no
 * mount, no root), cached by manifest digest (shl_squash_image). The output
 * appears atomically.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "shale/squash.h"
#include "shale/store.h"

int cmd_squash(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, 'f' },
		{ "size", required_argument, NULL, 's' },
		{ "no-cache", no_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_squash_opts o = SHL_SQUASH_OPTS_INIT;
	shl_store *s = NULL;
	const char *out = NULL;
	struct cli_out of = { NULL, "", -1 };
	int c, rc = 1, no_cache = 0, cached = 0;

	while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'f':
			if (!strcmp(optarg, "erofs"))
				o.format = SHL_SQUASH_EROFS;
			else if (!strcmp(optarg, "ext4"))
				o.format = SHL_SQUASH_EXT4;
			else if (!strcmp(optarg, "tar"))
				o.format = SHL_SQUASH_TAR;
			else
				return cli_usage("squash", "--format %s: want erofs, ext4 or tar", optarg);
			break;
		case 's': {
			char *end;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (*end == 'M' || *end == 'm')
				v <<= 20, end++;
			else if (*end == 'G' || *end == 'g')
				v <<= 30, end++;
			if (*end || !v)
				return cli_usage("squash", "--size: bad size '%s'", optarg);
			o.size = v;
			break;
		}
		case 'n': no_cache = 1; break;
		case 'h':
			puts("usage: shale squash IMAGE -o FILE [--format erofs|ext4|tar] [--size N[M|G]] [--no-cache]\n"
			     "\n"
			     "Flatten an image (whiteouts applied, no mount, no root) into one file:\n"
			     "full-mode EROFS (default), ext4 (sized automatically, or --size) or a flat tar.\n"
			     "Results are cached by manifest digest: squashing the same image again copies\n"
			     "the cached file (--no-cache: neither use nor fill the cache).");
			return 0;
		default: return cli_usage("squash", "bad option");
		}
	}
	if (optind + 1 != argc || !out)
		return cli_usage("squash", "expected IMAGE and -o FILE");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	if (cli_out_open(&of, out))
		goto done;
	if (shl_squash_image(s, argv[optind], &o, of.fd, no_cache, &cached) != 0) {
		cli_fail(argv[optind]);
		goto done;
	}
	if (cached && !cli_g.quiet)
		fprintf(stderr, "%s: from the squash cache\n", argv[optind]);
	if (cli_out_commit(&of))
		goto done;
	rc = 0;
done:
	cli_out_close(&of);
	shl_store_close(s);
	return rc;
}
