/*
 * cli/regprogress.c - progress output for pull and push: per-layer bars
 * redrawn in place on a terminal (stderr), plain lines (state changes only)
 * otherwise, or JSON lines with --json (stdout). Also the SIGINT/SIGTERM
 * handler that asks a transfer to stop cleanly instead of dying.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "regprogress.h"

static volatile int cancel_flag;

static void on_cancel(int sig)
{
	if (cancel_flag) {
		/* second signal: give up at once */
		signal(sig, SIG_DFL);
		raise(sig);
	}
	cancel_flag = 1;
}

volatile int *cli_cancel_flag(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_cancel;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	return &cancel_flag;
}

/* A row key for an archive entry: "sha256:<hex>" when its name holds a
 * digest (blobs/sha256/<hex>, <hex>/layer.tar, <hex>.tar), else the name. */
void regp_entry_key(const char *name, char key[72])
{
	for (const char *p = name; *p; p++) {
		size_t n = strspn(p, "0123456789abcdef");
		if (n == 64) {
			snprintf(key, 72, "sha256:%.64s", p);
			return;
		}
		p += n ? n - 1 : 0;
	}
	/* an archive's name goes to a terminal: no control bytes */
	size_t i = 0;
	for (; i < 71 && name[i]; i++)
		key[i] = (unsigned char)name[i] < 0x20 || name[i] == 0x7f ? '?' : name[i];
	key[i] = '\0';
}

void regp_init(struct regp *p, int json, int quiet)
{
	memset(p, 0, sizeof(*p));
	p->json = json;
	p->quiet = quiet;
	p->tty = isatty(2) && !json && !quiet && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
}

static struct regp_row *row(struct regp *p, const char *digest)
{
	for (size_t i = 0; i < p->nrows; i++)
		if (!strcmp(p->rows[i].digest, digest))
			return &p->rows[i];
	if (p->nrows == REGP_MAX_ROWS)
		return NULL;
	struct regp_row *r = &p->rows[p->nrows++];
	memset(r, 0, sizeof(*r));
	snprintf(r->digest, sizeof(r->digest), "%s", digest);
	return r;
}

static void draw_row(const struct regp_row *r)
{
	char cur[16], tot[16], bar[52];
	const char *hex = strncmp(r->digest, "sha256:", 7) ? r->digest : r->digest + 7;

	fprintf(stderr, "\r\033[K%.12s: %s", hex, r->status);
	if (r->total && r->current < r->total &&
	    (!strcmp(r->status, "Downloading") || !strcmp(r->status, "Loading layer"))) {
		int w = (int)(50.0 * (double)r->current / (double)r->total);
		memset(bar, '=', (size_t)w);
		bar[w] = '>';
		memset(bar + w + 1, ' ', (size_t)(49 - w));
		bar[50] = '\0';
		cli_human_size(r->current, cur, sizeof(cur));
		cli_human_size(r->total, tot, sizeof(tot));
		fprintf(stderr, " [%s] %s/%s", bar, cur, tot);
	} else if (!r->total && r->current) {
		cli_human_size(r->current, cur, sizeof(cur)); /* a push: the compressed size is not known yet */
		fprintf(stderr, " %s", cur);
	}
	fputc('\n', stderr);
}

static void redraw(struct regp *p)
{
	if (p->drawn)
		fprintf(stderr, "\033[%zuA", p->drawn);
	for (size_t i = 0; i < p->nrows; i++)
		draw_row(&p->rows[i]);
	p->drawn = p->nrows;
	fflush(stderr);
}

void regp_event(void *ctx, const shl_reg_event *ev)
{
	struct regp *p = ctx;

	if (p->json) {
		static const char *const kinds[] = { "resolved", "layer", "progress", "retry", "done" };
		if (ev->kind == SHL_REG_PROGRESS)
			return; /* state changes only: bars are for people */
		printf("{\"event\":\"%s\"", ev->kind >= 0 && ev->kind <= SHL_REG_DONE ? kinds[ev->kind] : "other");
		if (ev->digest) {
			printf(",\"digest\":");
			json_str(stdout, ev->digest);
		}
		if (ev->text) {
			printf(",\"%s\":", ev->kind == SHL_REG_LAYER ? "status" : "text");
			json_str(stdout, ev->text);
		}
		if (ev->total)
			printf(",\"current\":%llu,\"total\":%llu", (unsigned long long)ev->current,
			       (unsigned long long)ev->total);
		printf("}\n");
		fflush(stdout);
		return;
	}
	switch (ev->kind) {
	case SHL_REG_RESOLVED:
		snprintf(p->digest, sizeof(p->digest), "%s", ev->text);
		break;
	case SHL_REG_LAYER:
	case SHL_REG_PROGRESS: {
		struct regp_row *r = ev->digest ? row(p, ev->digest) : NULL;
		if (!r)
			break;
		snprintf(r->status, sizeof(r->status), "%s", ev->text);
		r->current = ev->current;
		r->total = ev->total;
		if (p->tty)
			redraw(p);
		else if (ev->kind == SHL_REG_LAYER && !p->quiet)
			fprintf(stderr, "%.12s: %s\n", ev->digest + 7, ev->text);
		break;
	}
	case SHL_REG_RETRY:
		if (!p->quiet) {
			if (p->tty)
				p->drawn = 0; /* the message scrolls the table: draw anew below */
			fprintf(stderr, "%s\n", ev->text);
		}
		break;
	case SHL_REG_DONE:
		snprintf(p->name, sizeof(p->name), "%s", ev->text);
		break;
	}
}
