/*
 * cli/outfile.c - output files that appear atomically (save, squash): a temp
 * file beside the target, registered for removal on SIGINT/SIGTERM/SIGHUP,
 * renamed into place on success with the mode a plain create would give.
 * Not fsync'd: an export is as durable as a cp.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_out_open(struct cli_out *o, const char *path)
{
	char d[4200], b[4200];

	o->path = path;
	o->fd = -1;
	snprintf(d, sizeof(d), "%s", path);
	snprintf(b, sizeof(b), "%s", path);
	snprintf(o->tmp, sizeof(o->tmp), "%s/.%s.tmp.XXXXXX", dirname(d), basename(b));
	if ((o->fd = mkstemp(o->tmp)) < 0) {
		fprintf(stderr, "shale: error: create %s: %s\n", path, strerror(errno));
		o->tmp[0] = '\0';
		return 1;
	}
	cli_tmp_register(o->tmp);
	return 0;
}

int cli_out_commit(struct cli_out *o)
{
	mode_t mask = umask(0);

	umask(mask);
	/* mkstemp made it 0600: give it the mode a plain create would have */
	if (fchmod(o->fd, 0666 & ~mask) != 0 || rename(o->tmp, o->path) != 0) {
		fprintf(stderr, "shale: error: write %s: %s\n", o->path, strerror(errno));
		return 1;
	}
	cli_tmp_unregister(o->tmp);
	o->tmp[0] = '\0';
	return 0;
}

void cli_out_close(struct cli_out *o)
{
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	if (o->tmp[0]) {
		unlink(o->tmp);
		cli_tmp_unregister(o->tmp);
		o->tmp[0] = '\0';
	}
}
