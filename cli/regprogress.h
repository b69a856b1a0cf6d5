/*
 * cli/regprogress.h - progress rendering for registry transfers (pull, push)
 * and loads (one row per layer, bars on a terminal), and the cancel flag set
 * by SIGINT/SIGTERM.
 */
#ifndef SHL_CLI_REGPROGRESS_H
#define SHL_CLI_REGPROGRESS_H

#include <stdint.h>
#include "shale/registry.h"

#define REGP_MAX_ROWS 256

struct regp_row {
	char digest[72];
	char status[64];
	uint64_t current, total;
};

struct regp {
	int json, quiet, tty;
	struct regp_row rows[REGP_MAX_ROWS];
	size_t nrows, drawn;
	char digest[72];    /* the last manifest digest resolved */
	char name[600];     /* from SHL_REG_DONE */
};

void regp_init(struct regp *p, int json, int quiet);
/* The row key for an archive entry name (a digest in it, else the name). */
void regp_entry_key(const char *name, char key[72]);
/* shl_reg_fn */
void regp_event(void *ctx, const shl_reg_event *ev);
/* Install the handlers; the flag turns 1 on the first signal (the second one
 * kills as usual). */
volatile int *cli_cancel_flag(void);

#endif
