/*
 * cli/cmd_pull.c - `shale pull REF` and `shale push REF [DEST]`: registry
 * transfers with docker-like output (per-layer progress, "Digest:",
 * "Status:"), connection settings from flags or SHALE_* environment
 * variables, and a clean stop on Ctrl+C.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "regprogress.h"
#include "shale/registry.h"

#define REG_OPTIONS_HELP                                                                                         \
	"  --auth USER:SECRET     credentials (else docker config.json, then $SHALE_CREDENTIALS)\n"               \
	"  --ca-cert FILE         PEM bundle to verify the registry's TLS certificate ($SHALE_CA_CERT)\n"           \
	"  --tls-verify=false     do not verify TLS certificates\n"                                                \
	"  --plain-http           allow plain HTTP ($SHALE_ALLOW_HTTP=1; loopback registries fall back to it)\n"   \
	"  --max-connections N    parallel blob transfers ($SHALE_MAX_CONNECTIONS, default 4)\n"                   \
	"  --connect-timeout S    ($SHALE_CONNECT_TIMEOUT, default 30)\n"                                          \
	"  --transfer-timeout S   seconds without progress before a retry ($SHALE_TRANSFER_TIMEOUT, 60)\n"         \
	"  --retries N            per request ($SHALE_TRANSFER_RETRIES, default 5)\n"                              \
	"  -q, --quiet            print only the result\n"                                                         \
	"  --json                 JSON events on stdout\n"

enum { O_AUTH = 1000, O_CA, O_TLS, O_HTTP, O_MAXC, O_CTO, O_TTO, O_RETRIES, O_PLATFORM, O_ALL, O_NAME, O_JSON,
       O_COMPRESS };

#define REG_LONGOPTS                                                                                             \
	{ "auth", required_argument, NULL, O_AUTH }, { "ca-cert", required_argument, NULL, O_CA },               \
		{ "tls-verify", required_argument, NULL, O_TLS }, { "plain-http", no_argument, NULL, O_HTTP },   \
		{ "max-connections", required_argument, NULL, O_MAXC },                                          \
		{ "connect-timeout", required_argument, NULL, O_CTO },                                           \
		{ "transfer-timeout", required_argument, NULL, O_TTO },                                          \
		{ "retries", required_argument, NULL, O_RETRIES }, { "quiet", no_argument, NULL, 'q' },          \
		{ "json", no_argument, NULL, O_JSON }, { "help", no_argument, NULL, 'h' }

static int num(const char *s, int lo, int hi, int *out)
{
	char *e;
	long v = strtol(s, &e, 10);

	if (!*s || *e || v < lo || v > hi)
		return -1;
	*out = (int)v;
	return 0;
}

/* 1: handled, 0: not a registry option, -1: bad value (usage printed). */
static int reg_opt(const char *cmd, int c, const char *arg, shl_reg_opts *o)
{
	switch (c) {
	case O_AUTH: o->auth = arg; return 1;
	case O_CA: o->ca_cert = arg; return 1;
	case O_TLS:
		if (!strcmp(arg, "false") || !strcmp(arg, "0"))
			o->tls_verify = 0;
		else if (!strcmp(arg, "true") || !strcmp(arg, "1"))
			o->tls_verify = 1;
		else
			return cli_usage(cmd, "--tls-verify wants true or false"), -1;
		return 1;
	case O_HTTP: o->allow_http = 1; return 1;
	case O_MAXC: return num(arg, 1, 64, &o->max_connections) ? (cli_usage(cmd, "--max-connections wants 1-64"), -1) : 1;
	case O_CTO: return num(arg, 1, 3600, &o->connect_timeout) ? (cli_usage(cmd, "bad --connect-timeout"), -1) : 1;
	case O_TTO: return num(arg, 1, 86400, &o->transfer_timeout) ? (cli_usage(cmd, "bad --transfer-timeout"), -1) : 1;
	case O_RETRIES: return num(arg, 0, 100, &o->retries) ? (cli_usage(cmd, "--retries wants 0-100"), -1) : 1;
	}
	return 0;
}

static const char pull_usage[] =
	"usage: shale pull [OPTIONS] REF\n"
	"\n"
	"Pull an image from a registry into the store. REF is a docker reference\n"
	"(alpine, python:3.12, ghcr.io/org/x:tag, name@sha256:..., localhost:5000/x) or\n"
	"enroot's docker://[USER@][REGISTRY#]IMAGE[:TAG]. Layers the store has are not\n"
	"downloaded; interrupted downloads resume. The registry's manifest digest is\n"
	"recorded, so NAME@sha256:<digest> resolves.\n"
	"\n"
	"  --platform OS/ARCH[/VARIANT]  platform to pick from a multi-platform image (default: host)\n"
	"  --all-platforms        store every platform (the name goes to the --platform/host one)\n"
	"  --name[=NAME]          store under NAME; without a value, bhatti's rule\n"
	"                         (python:3.12 -> python-3.12, ghcr.io/org/base:latest -> base-latest)\n" REG_OPTIONS_HELP;

int cmd_pull(int argc, char **argv)
{
	static const struct option opts[] = {
		REG_LONGOPTS,
		{ "platform", required_argument, NULL, O_PLATFORM },
		{ "all-platforms", no_argument, NULL, O_ALL },
		{ "name", optional_argument, NULL, O_NAME },
		{ NULL, 0, NULL, 0 },
	};
	shl_pull_opts o;
	struct regp rp;
	shl_store *s = NULL;
	char manifest[72], derived[600];
	int c, rc, want_name = 0, quiet = cli_g.quiet, json = cli_g.json;
	const char *name = NULL;

	memset(&o, 0, sizeof(o));
	shl_reg_opts_default(&o.reg);
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		int r = reg_opt("pull", c, optarg, &o.reg);
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (c) {
		case O_PLATFORM: o.platform = optarg; break;
		case O_ALL: o.all_platforms = 1; break;
		case O_NAME: want_name = 1; name = optarg; break;
		case O_JSON: json = 1; break;
		case 'q': quiet = 1; break;
		case 'h': fputs(pull_usage, stdout); return 0;
		default: return cli_usage("pull", "bad option");
		}
	}
	if (optind + 1 != argc)
		return cli_usage("pull", "pull wants exactly one REF");
	if (want_name && !name) {
		if (shl_pull_local_name(argv[optind], derived, sizeof(derived)))
			return cli_fail(NULL);
		name = derived;
	}
	o.name = name;
	o.reg.cancel = cli_cancel_flag();
	regp_init(&rp, json, quiet);
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_pull(s, argv[optind], &o, regp_event, &rp, manifest);
	shl_store_close(s);
	if (rc)
		return cli_fail(NULL);
	if (json) {
		printf("{\"event\":\"pulled\",\"manifest\":\"%s\",\"name\":", manifest);
		json_str(stdout, rp.name);
		printf("}\n");
		return 0;
	}
	if (!quiet) {
		int fresh = 0;
		for (size_t i = 0; i < rp.nrows; i++)
			fresh |= !strcmp(rp.rows[i].status, "Pull complete");
		fprintf(stderr, "Digest: %s\nStatus: %s %s\n", manifest,
			fresh ? "Downloaded newer image for" : "Image is up to date for", rp.name);
	}
	printf("%s\n", rp.name);
	return 0;
}

static const char push_usage[] =
	"usage: shale push [OPTIONS] REF [DEST]\n"
	"\n"
	"Push a stored image to a registry (as DEST, default REF). Layers the registry has\n"
	"(or can mount from another repository of the same registry) are not uploaded;\n"
	"the others are compressed on the fly. An image whose original layer blobs are all\n"
	"present keeps its manifest digest.\n"
	"\n"
	"  --compress gzip|zstd   compression of uploaded layers (default gzip)\n" REG_OPTIONS_HELP;

int cmd_push(int argc, char **argv)
{
	static const struct option opts[] = {
		REG_LONGOPTS,
		{ "compress", required_argument, NULL, O_COMPRESS },
		{ NULL, 0, NULL, 0 },
	};
	shl_push_opts o;
	struct regp rp;
	shl_store *s = NULL;
	int c, rc, quiet = cli_g.quiet, json = cli_g.json;

	memset(&o, 0, sizeof(o));
	shl_reg_opts_default(&o.reg);
	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		int r = reg_opt("push", c, optarg, &o.reg);
		if (r < 0)
			return 2;
		if (r)
			continue;
		switch (c) {
		case O_COMPRESS:
			if (strcmp(optarg, "gzip") && strcmp(optarg, "zstd"))
				return cli_usage("push", "--compress wants gzip or zstd");
			o.compress = optarg;
			break;
		case O_JSON: json = 1; break;
		case 'q': quiet = 1; break;
		case 'h': fputs(push_usage, stdout); return 0;
		default: return cli_usage("push", "bad option");
		}
	}
	if (optind + 1 != argc && optind + 2 != argc)
		return cli_usage("push", "push wants REF [DEST]");
	o.reg.cancel = cli_cancel_flag();
	regp_init(&rp, json, quiet);
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_push(s, argv[optind], optind + 1 < argc ? argv[optind + 1] : NULL, &o, regp_event, &rp);
	shl_store_close(s);
	if (rc)
		return cli_fail(NULL);
	if (json)
		printf("{\"event\":\"pushed\",\"ref\":\"%s\"}\n", rp.name);
	else
		printf("%s\n", rp.name);
	return 0;
}
