/*
 * cli/cmd_images.c - image management: `images`, `inspect`, `tag`, `rm`.
 * Output follows docker's (`docker images` table, `image inspect` JSON).
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "shale/ref.h"
#include "shale/store.h"

struct list_ctx {
	int quiet, json, digests;
};

static void ago(int64_t t, char *buf, size_t len)
{
	int64_t d = (int64_t)time(NULL) - t;

	if (t <= 0)
		snprintf(buf, len, "N/A");
	else if (d < 3600 * 48)
		snprintf(buf, len, "%lld hours ago", (long long)(d / 3600));
	else if (d < 86400 * 14)
		snprintf(buf, len, "%lld days ago", (long long)(d / 86400));
	else if (d < 86400 * 60)
		snprintf(buf, len, "%lld weeks ago", (long long)(d / 86400 / 7));
	else if (d < 86400 * 730)
		snprintf(buf, len, "%lld months ago", (long long)(d / 86400 / 30));
	else
		snprintf(buf, len, "%lld years ago", (long long)(d / 86400 / 365));
}

static int print_image(void *ctx, const shl_image_summary *img)
{
	struct list_ctx *c = ctx;
	char size[32], created[32], shortid[13];

	snprintf(shortid, sizeof(shortid), "%.12s", img->id + 7);
	if (c->quiet) {
		printf("%s\n", shortid);
		return 0;
	}
	cli_human_size(img->size, size, sizeof(size));
	ago(img->created, created, sizeof(created));
	if (c->json) {
		printf("{\"Id\":\"%s\",\"Manifest\":\"%s\",\"RepoTags\":[", img->id, img->manifest);
		for (size_t i = 0; img->tags[i]; i++) {
			shl_ref r;
			char fam[600];
			if (shl_ref_parse(img->tags[i], &r) == 0)
				shl_ref_familiar(&r, fam, sizeof(fam));
			else
				snprintf(fam, sizeof(fam), "%s", img->tags[i]);
			printf("%s", i ? "," : "");
			json_str(stdout, fam);
		}
		printf("],\"Created\":%lld,\"Size\":%llu,\"Layers\":%llu}\n", (long long)img->created,
		       (unsigned long long)img->size, (unsigned long long)img->layers);
		return 0;
	}
	if (!img->tags[0]) {
		if (c->digests)
			printf("%-40s %-20s %-71s %-12s %-18s %s\n", "<none>", "<none>", "<none>", shortid, created, size);
		else
			printf("%-40s %-20s %-12s %-18s %s\n", "<none>", "<none>", shortid, created, size);
	}
	for (size_t i = 0; img->tags[i]; i++) {
		shl_ref r;
		char repo[600];
		if (shl_ref_parse(img->tags[i], &r) != 0)
			continue;
		shl_ref_repo(&r, 1, repo, sizeof(repo));
		if (c->digests)
			printf("%-40s %-20s %-71s %-12s %-18s %s\n", repo, r.tag, img->manifest, shortid, created, size);
		else
			printf("%-40s %-20s %-12s %-18s %s\n", repo, r.tag, shortid, created, size);
	}
	return 0;
}

int cmd_images(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "digests", no_argument, NULL, 'd' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct list_ctx c = { cli_g.quiet, cli_g.json, 0 };
	shl_store *s;
	int o, rc;

	while ((o = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (o) {
		case 'q': c.quiet = 1; break;
		case 'd': c.digests = 1; break;
		case 'j': c.json = 1; break;
		case 'h': puts("usage: shale images [-q] [--digests] [--json]"); return 0;
		default: return cli_usage("images", "bad option");
		}
	}
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	if (!c.quiet && !c.json) {
		if (c.digests)
			printf("%-40s %-20s %-71s %-12s %-18s %s\n", "REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE");
		else
			printf("%-40s %-20s %-12s %-18s %s\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
	}
	rc = shl_store_list(s, print_image, &c);
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}

int cmd_inspect(int argc, char **argv)
{
	shl_store *s;
	int rc = 0;

	if (argc < 2)
		return cli_usage("inspect", "expected at least one IMAGE");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	printf("[");
	for (int i = 1; i < argc; i++) {
		char *json = NULL;
		if (shl_store_inspect(s, argv[i], &json) != 0) {
			rc = cli_fail(NULL);
			break;
		}
		printf("%s%s", i > 1 ? ",\n" : "", json);
		free(json);
	}
	printf("]\n");
	shl_store_close(s);
	return rc;
}

int cmd_tag(int argc, char **argv)
{
	shl_store *s;
	int rc;

	if (argc != 3)
		return cli_usage("tag", "usage: shale tag SOURCE TARGET");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_store_tag(s, argv[1], argv[2]);
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}

static void rm_event(void *ctx, const char *kind, const char *what)
{
	(void)ctx;
	printf("%s: %s\n", kind, what);
}

int cmd_rm(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_store *s;
	int o, force = 0, rc = 0;

	while ((o = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		switch (o) {
		case 'f': force = 1; break;
		case 'h': puts("usage: shale rm [-f] IMAGE..."); return 0;
		default: return cli_usage("rm", "bad option");
		}
	}
	if (optind >= argc)
		return cli_usage("rm", "expected at least one IMAGE");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	for (int i = optind; i < argc; i++)
		if (shl_store_remove(s, argv[i], force, rm_event, NULL) != 0)
			rc = cli_fail(NULL);
	shl_store_close(s);
	return rc;
}
