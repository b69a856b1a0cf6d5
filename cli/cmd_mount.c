/*
 * cli/cmd_mount.c - `shale mount IMAGE DIR [--rw [--upper DIR]]`,
 * `shale umount DIR`, `shale mounts`.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "shale/mount.h"

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rw", no_argument, NULL, 'w' },
		{ "upper", required_argument, NULL, 'u' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_image_mount_opts o = { 0, NULL, 0 };
	shl_store *s;
	int c, rc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'w': o.rw = 1; break;
		case 'u': o.upper = optarg; break;
		case 'h': puts("usage: shale mount IMAGE DIR [--rw [--upper DIR]]"); return 0;
		default: return cli_usage("mount", "bad option");
		}
	}
	if (optind + 2 != argc)
		return cli_usage("mount", "expected IMAGE and DIR");
	if (o.upper && !o.rw)
		return cli_usage("mount", "--upper needs --rw");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	rc = shl_image_mount(s, argv[optind], argv[optind + 1], &o);
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}

int cmd_umount(int argc, char **argv)
{
	shl_store *s;
	int rc = 0;

	if (argc < 2)
		return cli_usage("umount", "expected DIR");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	for (int i = 1; i < argc; i++)
		if (shl_image_umount(s, argv[i]) != 0)
			rc = cli_fail(NULL);
	shl_store_close(s);
	return rc;
}

static int list_one(void *ctx, const char *dir, const char *image, int layers)
{
	(void)ctx;
	printf("%-50s %-40s %d\n", dir ? dir : "?", image ? image : "?", layers);
	return 0;
}

int cmd_mounts(int argc, char **argv)
{
	shl_store *s;
	int rc;

	(void)argv;
	if (argc != 1)
		return cli_usage("mounts", "no arguments expected");
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	printf("%-50s %-40s %s\n", "DIRECTORY", "IMAGE", "LAYERS");
	rc = shl_image_mounts(s, list_one, NULL);
	shl_store_close(s);
	return rc ? cli_fail(NULL) : 0;
}
