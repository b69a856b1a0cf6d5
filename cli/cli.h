/*
 * cli/cli.h - shared pieces of the shale command line: global options, the
 * command table, error/usage reporting and a small JSON writer. The CLI uses
 * only the public API in include/shale/.
 */
#ifndef SHL_CLI_H
#define SHL_CLI_H

#include <stdint.h>
#include <stdio.h>

struct cli_global {
	const char *root;   /* --root / SHALE_ROOT */
	int json;           /* --json */
	int quiet;          /* -q */
	int debug;          /* --debug */
};

extern struct cli_global cli_g;

/* Print "shale: error: <ctx>: <last shale error>" (ctx may be NULL); returns 1. */
int cli_fail(const char *ctx);
/* Print "shale: <fmt...>" and the command's usage hint; returns 2. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* JSON output helpers (strings are escaped; bytes that are not UTF-8 become
 * \udcXX, the surrogateescape convention, so file names round-trip). */
void json_str(FILE *f, const char *s);
void json_strn(FILE *f, const char *s, size_t n);

/* Temp files that must vanish if we are interrupted (SIGINT/SIGTERM/SIGHUP). */
void cli_tmp_register(const char *path);
void cli_tmp_unregister(const char *path);

/* An output file that appears atomically (cli/outfile.c): open makes a temp
 * file beside `path` (removed on signals), commit renames it into place,
 * close removes it unless committed. open/commit print the error and return 1. */
struct cli_out {
	const char *path;
	char tmp[4300];
	int fd;
};
int cli_out_open(struct cli_out *o, const char *path);
int cli_out_commit(struct cli_out *o);
void cli_out_close(struct cli_out *o);

/* Human-readable size like docker ("7.8MB"). */
void cli_human_size(uint64_t bytes, char *buf, size_t len);

int cmd_convert(int argc, char **argv);
int cmd_tree(int argc, char **argv);
int cmd_load(int argc, char **argv);
int cmd_save(int argc, char **argv);
int cmd_images(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tag(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_df(int argc, char **argv);
int cmd_fsck(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_history(int argc, char **argv);
int cmd_squash(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_umount(int argc, char **argv);
int cmd_mounts(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_import(int argc, char **argv);

#endif
