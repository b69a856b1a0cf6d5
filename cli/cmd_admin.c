/*
 * cli/cmd_admin.c - store housekeeping: `df`, `fsck`, `prune`, `history`.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "shale/store.h"

struct df_ctx {
	int json, layers, first;
};

static int df_layer(void *ctx, const shl_df_layer *l)
{
	struct df_ctx *c = ctx;
	char a[32], b[32];

	if (!c->layers)
		return 0;
	if (c->json) {
		printf("%s{\"diff_id\":\"%s\",\"tar_size\":%llu,\"erofs_size\":%llu,\"images\":%u}", c->first ? "" : ",\n",
		       l->diff_id, (unsigned long long)l->tar_size, (unsigned long long)l->erofs_size, l->images);
		c->first = 0;
	} else {
		cli_human_size(l->tar_size, a, sizeof(a));
		cli_human_size(l->erofs_size, b, sizeof(b));
		printf("%-71s %10s %10s %6u\n", l->diff_id, a, b, l->images);
	}
	return 0;
}

static int df_image(void *ctx, const shl_df_image *i)
{
	struct df_ctx *c = ctx;
	char a[32], b[32], d[32];

	if (c->layers)
		return 0;
	if (c->json) {
		printf("%s{\"manifest\":\"%s\",\"id\":\"%s\",\"tagged\":%s,\"size\":%llu,\"shared\":%llu,\"unique\":%llu}",
		       c->first ? "" : ",\n", i->manifest, i->id, i->tagged ? "true" : "false",
		       (unsigned long long)i->size, (unsigned long long)i->shared, (unsigned long long)i->unique);
		c->first = 0;
	} else {
		cli_human_size(i->size, a, sizeof(a));
		cli_human_size(i->shared, b, sizeof(b));
		cli_human_size(i->unique, d, sizeof(d));
		printf("%-12.12s %-8s %10s %10s %10s\n", i->id + 7, i->tagged ? "tagged" : "dangling", a, b, d);
	}
	return 0;
}

int cmd_df(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "layers", no_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct df_ctx c = { cli_g.json, 0, 1 };
	shl_df_total t;
	shl_store *s;
	char a[32], b[32];
	int o, rc;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'l': c.layers = 1; break;
		case 'j': c.json = 1; break;
		case 'h': puts("usage: shale df [--layers] [--json]"); return 0;
		default: return cli_usage("df", "bad option");
		}
	}
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	if (c.json)
		printf(c.layers ? "[" : "{\"images\":[");
	else if (c.layers)
		printf("%-71s %10s %10s %6s\n", "DIFF ID", "TAR", "EROFS", "IMAGES");
	else
		printf("%-12s %-8s %10s %10s %10s\n", "IMAGE ID", "STATE", "SIZE", "SHARED", "UNIQUE");
	rc = shl_store_df(s, &t, df_layer, df_image, &c);
	if (!rc) {
		if (c.json && c.layers) {
			printf("]\n");
		} else if (c.json) {
			printf("],\"total\":{\"images\":%llu,\"layers\":%llu,\"bytes\":%llu,\"reclaimable\":%llu}}\n",
			       (unsigned long long)t.images, (unsigned long long)t.layers, (unsigned long long)t.bytes,
			       (unsigned long long)t.reclaimable);
		} else {
			cli_human_size(t.bytes, a, sizeof(a));
			cli_human_size(t.reclaimable, b, sizeof(b));
			printf("\n%llu images, %llu layers, %s on disk, %s reclaimable\n", (unsigned long long)t.images,
			       (unsigned long long)t.layers, a, b);
		}
	}
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}

static void say(void *ctx, const char *msg)
{
	(void)ctx;
	printf("%s\n", msg);
}

int cmd_fsck(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "deep", no_argument, NULL, 'd' },
		{ "repair", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_fsck_report r;
	shl_store *s;
	int o, flags = 0, rc;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 'd': flags |= SHL_FSCK_DEEP; break;
		case 'r': flags |= SHL_FSCK_REPAIR; break;
		case 'h': puts("usage: shale fsck [--deep] [--repair]"); return 0;
		default: return cli_usage("fsck", "bad option");
		}
	}
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_store_fsck(s, flags, &r, say, NULL);
	shl_store_close(s);
	if (rc)
		return cli_fail(NULL);
	printf("checked %llu layers (%llu bytes) and %llu images: %llu problems%s", (unsigned long long)r.layers,
	       (unsigned long long)r.bytes, (unsigned long long)r.images, (unsigned long long)r.problems,
	       r.repaired ? "" : "\n");
	if (r.repaired)
		printf(", %llu files removed\n", (unsigned long long)r.repaired);
	if (r.problems) {
		fprintf(stderr, "shale: error: the store has %llu problems\n", (unsigned long long)r.problems);
		return 1;
	}
	return 0;
}

static void rm_event(void *ctx, const char *kind, const char *what)
{
	(void)ctx;
	printf("%s: %s\n", kind, what);
}

int cmd_prune(int argc, char **argv)
{
	shl_store *s;
	int all = 0, rc;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-a") || !strcmp(argv[i], "--all"))
			all = 1;
		else if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--force"))
			continue;
		else
			return cli_usage("prune", "usage: shale prune [--all]");
	}
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_store_prune(s, all, rm_event, NULL);
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}

static int hist_line(void *ctx, const char *created, const char *by, uint64_t size, const char *comment, int empty)
{
	char sz[32];

	(void)ctx;
	(void)empty;
	cli_human_size(size, sz, sizeof(sz));
	printf("%-30.30s %-50.50s %10s %s\n", created ? created : "", by ? by : "", sz, comment ? comment : "");
	return 0;
}

int cmd_history(int argc, char **argv)
{
	shl_store *s;
	int rc;

	if (argc != 2)
		return cli_usage("history", "usage: shale history IMAGE");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	printf("%-30s %-50s %10s %s\n", "CREATED", "CREATED BY", "SIZE", "COMMENT");
	rc = shl_store_history(s, argv[1], hist_line, NULL);
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}
