/*
 * cli/cmd_load.c - `shale load [-i FILE|DIR] [--platform P] [--all-platforms]
 * [--tag REF]`: import a docker-archive or OCI archive/layout (stdin if no
 * --input), printing "Loaded image: name:tag" per image like docker.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "shale/load.h"

static const char usage_text[] =
	"usage: shale load [-i|--input FILE|DIR] [--platform OS/ARCH[/VARIANT]] [--all-platforms] [--tag REF] [-q]\n"
	"\n"
	"Load images from a docker-archive or OCI archive/layout (auto-detected; the archive\n"
	"may be gzip/zstd/xz-compressed) from FILE, an OCI layout DIR, or stdin.\n";

struct out_ctx {
	int json, quiet, tty;
};

static void event(void *ctx, const char *ev, const char *what)
{
	struct out_ctx *c = ctx;

	if (!strcmp(ev, "Loading layer")) {
		if (c->tty && !c->quiet && !c->json)
			fprintf(stderr, "Loading layer %s\n", what);
		return;
	}
	if (c->json) {
		printf("{\"event\":");
		json_str(stdout, ev);
		printf(",\"image\":");
		json_str(stdout, what);
		printf("}\n");
	} else if (c->quiet) {
		printf("%s\n", what);
	} else {
		printf("%s: %s\n", ev, what);
	}
}

int cmd_load(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "input", required_argument, NULL, 'i' },
		{ "platform", required_argument, NULL, 'p' },
		{ "all-platforms", no_argument, NULL, 'a' },
		{ "tag", required_argument, NULL, 't' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_load_opts o = SHL_LOAD_OPTS_INIT;
	struct out_ctx oc = { cli_g.json, cli_g.quiet, isatty(2) };
	shl_store *s = NULL;
	int c, rc;

	while ((c = getopt_long(argc, argv, "i:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'i': o.input = optarg; break;
		case 'p': o.platform = optarg; break;
		case 'a': o.all_platforms = 1; break;
		case 't': o.tag = optarg; break;
		case 'q': oc.quiet = 1; break;
		case 'j': oc.json = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return cli_usage("load", "bad option");
		}
	}
	if (optind != argc)
		return cli_usage("load", "unexpected argument '%s'", argv[optind]);
	if (!o.input && isatty(0))
		return cli_usage("load", "requested load from stdin, but stdin is a terminal; use --input");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_load(s, &o, event, &oc);
	shl_store_close(s);
	return rc ? cli_fail(o.input ? o.input : "stdin") : 0;
}
