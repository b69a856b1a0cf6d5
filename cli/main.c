/*
 * cli/main.c - `shale` entry point: global options and command dispatch.
 * Exit codes: 0 success, 1 error (one line on stderr), 2 usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "shale/error.h"

#ifndef SHL_VERSION
#define SHL_VERSION "0.0.0"
#endif

struct cli_global cli_g;

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{ "convert", cmd_convert, "convert a layer tar into an EROFS image" },
	{ "tree", cmd_tree, "list the tree of an EROFS image" },
	{ "load", cmd_load, "load images from a docker or OCI archive" },
	{ "save", cmd_save, "save images to a docker/OCI archive" },
	{ "pull", cmd_pull, "pull an image from a registry" },
	{ "push", cmd_push, "push an image to a registry" },
	{ "import", cmd_import, "import from the local docker/podman (dockerd://, podman://) or --tar" },
	{ "images", cmd_images, "list images" },
	{ "inspect", cmd_inspect, "show an image's details (docker-compatible JSON)" },
	{ "tag", cmd_tag, "name an image" },
	{ "rm", cmd_rm, "remove images" },
	{ "rmi", cmd_rm, "alias of rm" },
	{ "history", cmd_history, "show an image's history" },
	{ "prune", cmd_prune, "remove untagged images (--all: every image)" },
	{ "df", cmd_df, "disk usage: per image shared/unique, reclaimable (--layers)" },
	{ "fsck", cmd_fsck, "check the store (--deep, --repair)" },
	{ "squash", cmd_squash, "flatten an image into one EROFS image (no mount, no root)" },
	{ "mount", cmd_mount, "mount an image (shared EROFS layers under overlayfs)" },
	{ "umount", cmd_umount, "unmount an image mounted by shale" },
	{ "mounts", cmd_mounts, "list mounted images" },
	{ "run", cmd_run, "run a command in an image (namespaces, throwaway upper)" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: shale [--root DIR] [--json] [-q] [--debug] COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(f, "\nRun 'shale COMMAND --help' for a command's options.\n");
}

/* Messages quote names from archives and registries: one line, no control
 * bytes (a newline or an escape sequence in an entry name stays inert). */
static void put_clean(const char *s)
{
	for (; *s; s++)
		fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, stderr);
}

int cli_fail(const char *ctx)
{
	const char *msg = shl_error_last();

	fputs("shale: error: ", stderr);
	if (ctx && *ctx) {
		put_clean(ctx);
		if (*msg)
			fputs(": ", stderr);
		put_clean(msg);
	} else {
		put_clean(*msg ? msg : "unknown error");
	}
	fputc('\n', stderr);
	return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "shale: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nSee 'shale %s --help'.\n", cmd);
	return 2;
}

void json_strn(FILE *f, const char *s, size_t n)
{
	fputc('"', f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else if (c < 0x80)
			fputc(c, f);
		else {
			/* pass valid UTF-8 sequences through, escape stray bytes */
			size_t len = 0;
			if (c >= 0xc2 && c < 0xe0)
				len = 2;
			else if (c >= 0xe0 && c < 0xf0)
				len = 3;
			else if (c >= 0xf0 && c < 0xf5)
				len = 4;
			size_t k = 1;
			while (len && k < len && i + k < n && ((unsigned char)s[i + k] & 0xc0) == 0x80)
				k++;
			if (len && k == len) {
				fwrite(s + i, 1, len, f);
				i += len - 1;
			} else {
				/* not UTF-8: the byte as a lone surrogate U+DC80..U+DCFF
				 * (Python's surrogateescape), so names round-trip */
				fprintf(f, "\\u%04x", 0xdc00 | c);
			}
		}
	}
	fputc('"', f);
}

void json_str(FILE *f, const char *s)
{
	json_strn(f, s, strlen(s));
}

/* ---- temp-file cleanup on signals ---- */

#define MAX_TMP 8
static char tmp_paths[MAX_TMP][4096];
static volatile sig_atomic_t tmp_used[MAX_TMP];

static void on_signal(int sig)
{
	for (int i = 0; i < MAX_TMP; i++)
		if (tmp_used[i])
			unlink(tmp_paths[i]);
	signal(sig, SIG_DFL);
	raise(sig);
}

void cli_tmp_register(const char *path)
{
	for (int i = 0; i < MAX_TMP; i++) {
		if (!tmp_used[i]) {
			strncpy(tmp_paths[i], path, sizeof(tmp_paths[i]) - 1);
			tmp_paths[i][sizeof(tmp_paths[i]) - 1] = '\0';
			tmp_used[i] = 1;
			return;
		}
	}
}

void cli_tmp_unregister(const char *path)
{
	for (int i = 0; i < MAX_TMP; i++)
		if (tmp_used[i] && !strcmp(tmp_paths[i], path))
			tmp_used[i] = 0;
}

void cli_human_size(uint64_t b, char *buf, size_t len)
{
	static const char *const units[] = { "B", "kB", "MB", "GB", "TB", "PB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1000.0 && u < 5) {
		v /= 1000.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lluB", (unsigned long long)b);
	else
		snprintf(buf, len, "%.3g%s", v, units[u]);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "root", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "debug", no_argument, NULL, 'd' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	signal(SIGPIPE, SIG_IGN);
	cli_g.root = getenv("SHALE_ROOT");
	while ((c = getopt_long(argc, argv, "+qh", opts, NULL)) != -1) {
		switch (c) {
		case 'r': cli_g.root = optarg; break;
		case 'j': cli_g.json = 1; break;
		case 'q': cli_g.quiet = 1; break;
		case 'd': cli_g.debug = 1; break;
		case 'V': printf("shale %s\n", SHL_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (!strcmp(argv[optind], commands[i].name)) {
			int sub_argc = argc - optind;
			char **sub_argv = argv + optind;
			optind = 0; /* full getopt reset (GNU) for the command */
			return commands[i].fn(sub_argc, sub_argv);
		}
	}
	fprintf(stderr, "shale: unknown command '%s'\n", argv[optind]);
	usage(stderr);
	return 2;
}
