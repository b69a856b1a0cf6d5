/*
 * cli/cmd_load.c - `shale load [-i FILE|DIR] [--platform P] [--all-platforms]
 * [--tag REF]`: import a docker-archive or OCI archive/layout (stdin if no
 * --input), printing "Loaded image: name:tag" per image like docker
 * ("Loaded image ID: sha256:..." for an image without a name), a progress
 * bar per layer on stderr when it is a terminal, JSON lines with --json.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "regprogress.h"
#include "shale/load.h"

static const char usage_text[] =
	"usage: shale load [-i|--input FILE|DIR] [--platform OS/ARCH[/VARIANT]] [--all-platforms]\n"
	"                  [--tag REF] [-q] [--json]\n"
	"\n"
	"Load images from a docker-archive (legacy or Docker >= 25) or an OCI archive/layout\n"
	"(auto-detected; the archive may be gzip/zstd/xz/bzip2-compressed) from FILE, an OCI\n"
	"layout DIR, or stdin (streamed). Layers the store has are not stored again.\n"
	"\n"
	"  -i, --input FILE|DIR   archive file or OCI layout directory (default or \"-\": stdin)\n"
	"  --platform P           platform to pick from multi-platform images (default: host)\n"
	"  --all-platforms        load every platform (the name goes to the --platform/host one)\n"
	"  --tag REF              name for the archive's untagged image (error if it has several)\n"
	"  -q, --quiet            print only the names (or IDs) loaded\n"
	"  --json                 one JSON object per loaded image\n"
	"  --threads N            parallel layer conversions from a file (1-2, default 2)\n";

struct out_ctx {
	int json, quiet;
	struct regp bars;       /* bars.tty: a row per layer on stderr */
};

static void layer_row(struct out_ctx *c, int kind, const char *entry, const char *status, uint64_t cur,
		      uint64_t total)
{
	char key[72];
	shl_reg_event ev = { kind, key, status, cur, total };

	regp_entry_key(entry, key);
	regp_event(&c->bars, &ev);
}

static void progress(void *ctx, const char *entry, uint64_t done, uint64_t total)
{
	struct out_ctx *c = ctx;

	if (done >= total)
		layer_row(c, SHL_REG_LAYER, entry, "Loaded", total, total);
	else
		layer_row(c, SHL_REG_PROGRESS, entry, "Loading layer", done, total);
}

static void event(void *ctx, const char *ev, const char *what)
{
	struct out_ctx *c = ctx;

	if (!strcmp(ev, "Loading layer")) {
		if (c->bars.tty)
			layer_row(c, SHL_REG_LAYER, what, "Loading layer", 0, 0);
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
		{ "threads", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_load_opts o = SHL_LOAD_OPTS_INIT;
	struct out_ctx oc = { cli_g.json, cli_g.quiet, { 0 } };
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
		case 'T': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 1 || n > 2)
				return cli_usage("load", "--threads wants 1 or 2");
			o.threads = (int)n;
			break;
		}
		case 'h': fputs(usage_text, stdout); return 0;
		default: return cli_usage("load", "bad option");
		}
	}
	if (optind != argc)
		return cli_usage("load", "unexpected argument '%s'", argv[optind]);
	regp_init(&oc.bars, oc.json, oc.quiet); /* a terminal on stderr, not dumb: bars */
	if (oc.bars.tty)
		o.progress = progress;
	if (o.input && !strcmp(o.input, "-"))
		o.input = NULL;
	if (!o.input && isatty(0))
		return cli_usage("load", "requested load from stdin, but stdin is a terminal; use --input");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_load(s, &o, event, &oc);
	shl_store_close(s);
	return rc ? cli_fail(o.input ? o.input : "stdin") : 0;
}
