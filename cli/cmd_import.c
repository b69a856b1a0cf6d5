/*
 * cli/cmd_import.c - `shale import dockerd://REF | podman://REF` streams
 * `docker save REF` / `podman save REF` straight into the loader (a pipe, no
 * temp archive); `shale import --tar PATH --name NAME` loads an archive and
 * names its image (bhatti's flow).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "shale/error.h"
#include "shale/load.h"
#include "shale/store.h"

extern char **environ;

static const char usage_text[] =
	"usage: shale import [--name NAME] dockerd://REF | podman://REF\n"
	"       shale import --tar PATH --name NAME\n"
	"\n"
	"Import an image from the local Docker daemon or Podman storage (streamed from\n"
	"`docker save` / `podman save`, no temporary archive), or from an archive file.\n"
	"\n"
	"  --tar PATH     a docker-archive or OCI archive (like `shale load -i PATH`)\n"
	"  --name NAME    also name the image NAME\n"
	"  --platform P   platform to pick from a multi-platform archive (default: host)\n"
	"  -q, --quiet    print only the names loaded\n";

struct imp {
	char first[600];
	int quiet;
};

static void on_event(void *ctx, const char *ev, const char *what)
{
	struct imp *im = ctx;

	if (!strcmp(ev, "Loading layer"))
		return;
	if (!im->first[0]) {
		if (!strcmp(ev, "Loaded image ID"))
			snprintf(im->first, sizeof(im->first), "%s", what);
		else if (!strcmp(ev, "Loaded image"))
			snprintf(im->first, sizeof(im->first), "%s", what);
	}
	if (im->quiet)
		printf("%s\n", what);
	else
		printf("%s: %s\n", ev, what);
}

static int in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[4096];

	if (!path)
		path = "/usr/bin:/bin";
	for (const char *p = path; *p;) {
		size_t n = strcspn(p, ":");
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (n && access(buf, X_OK) == 0)
			return 1;
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

/* Spawn `prog save REF` with stdout into a pipe (*out_fd) and stderr into a
 * memfd (*err_fd), so a failing save can be reported in one line. */
static int spawn_save(const char *prog, const char *ref, pid_t *pid, int *out_fd, int *err_fd)
{
	int p[2];
	posix_spawn_file_actions_t fa;
	char *argv[] = { (char *)prog, (char *)"save", (char *)ref, NULL };

	if (!in_path(prog)) {
		fprintf(stderr,
			"shale: error: import: %s is not installed here; save the image to a file elsewhere and run "
			"'shale import --tar PATH --name NAME'\n",
			prog);
		return -1;
	}
	if ((*err_fd = memfd_create("save-stderr", MFD_CLOEXEC)) < 0 || pipe2(p, O_CLOEXEC)) {
		fprintf(stderr, "shale: error: import: %s\n", strerror(errno));
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, *err_fd, 2);
	int e = posix_spawnp(pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (e) {
		close(p[0]);
		fprintf(stderr, "shale: error: import: cannot run %s: %s; try 'shale import --tar PATH --name NAME'\n", prog,
			strerror(e));
		return -1;
	}
	*out_fd = p[0];
	return 0;
}

static void child_error(const char *prog, int err_fd, int status)
{
	char buf[600];
	ssize_t n = pread(err_fd, buf, sizeof(buf) - 1, 0);

	if (n < 0)
		n = 0;
	buf[n] = '\0';
	for (char *c = buf; *c; c++)
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	while (n > 0 && buf[n - 1] == ' ')
		buf[--n] = '\0';
	fprintf(stderr, "shale: error: import: '%s save' failed (%s %d)%s%s\n", prog,
		WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
		n ? ": " : "", buf);
}

int cmd_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "tar", required_argument, NULL, 't' },  { "name", required_argument, NULL, 'n' },
		{ "platform", required_argument, NULL, 'p' }, { "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },       { NULL, 0, NULL, 0 },
	};
	shl_load_opts o = SHL_LOAD_OPTS_INIT;
	struct imp im = { "", cli_g.quiet };
	const char *tar = NULL, *name = NULL, *prog = NULL, *ref = NULL;
	shl_store *s = NULL;
	pid_t pid = -1;
	int c, rc, fd = -1, err_fd = -1, status = 0;

	while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
		switch (c) {
		case 't': tar = optarg; break;
		case 'n': name = optarg; break;
		case 'p': o.platform = optarg; break;
		case 'q': im.quiet = 1; break;
		case 'h': fputs(usage_text, stdout); return 0;
		default: return cli_usage("import", "bad option");
		}
	}
	if (tar) {
		if (optind != argc)
			return cli_usage("import", "--tar takes no source argument");
		if (!name)
			return cli_usage("import", "--tar wants --name NAME");
		o.input = tar;
	} else {
		if (optind + 1 != argc)
			return cli_usage("import", "import wants dockerd://REF, podman://REF or --tar PATH");
		const char *src = argv[optind];
		if (!strncmp(src, "dockerd://", 10)) {
			prog = "docker";
			ref = src + 10;
		} else if (!strncmp(src, "podman://", 9)) {
			prog = "podman";
			ref = src + 9;
		} else {
			return cli_usage("import", "unknown source '%s' (dockerd://REF, podman://REF or --tar PATH)", src);
		}
		if (!*ref || *ref == '-')
			return cli_usage("import", "bad reference in '%s'", src);
	}
	o.tag = name;
	if (shl_store_open(&s, cli_g.root) != 0)
		return cli_fail(NULL);
	if (prog) {
		if (spawn_save(prog, ref, &pid, &fd, &err_fd)) {
			shl_store_close(s);
			return 1;
		}
		o.fd = fd;
	}
	rc = shl_load(s, &o, on_event, &im);
	if (pid > 0) {
		if (rc)
			kill(pid, SIGTERM); /* the loader stopped reading: do not leave it blocked */
		close(fd);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			if (!rc || WIFEXITED(status))
				child_error(prog, err_fd, status);
			else
				cli_fail("import");
			close(err_fd);
			shl_store_close(s);
			return 1;
		}
		close(err_fd);
	}
	if (rc) {
		shl_store_close(s);
		return cli_fail(tar ? tar : "import");
	}
	if (name && im.first[0] && shl_store_tag(s, im.first, name) != 0) {
		shl_store_close(s);
		return cli_fail("import --name");
	}
	if (name && !im.quiet)
		printf("Tagged: %s\n", name);
	shl_store_close(s);
	return 0;
}
