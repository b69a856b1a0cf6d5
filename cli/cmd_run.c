/*
 * cli/cmd_run.c - `shale run [--rm] [-e|--env K=V] [-w|--workdir D]
 * [-u|--user U] [--net host|none] IMAGE [-- CMD...]`; exits with the
 * command's status (125 if shale itself failed).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "shale/run.h"

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rm", no_argument, NULL, 'r' },
		{ "env", required_argument, NULL, 'e' },
		{ "workdir", required_argument, NULL, 'w' },
		{ "user", required_argument, NULL, 'u' },
		{ "net", required_argument, NULL, 'n' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	shl_run_opts o;
	const char **env = calloc((size_t)argc + 1, sizeof(char *));
	shl_store *s;
	int c, status = 125;

	memset(&o, 0, sizeof(o));
	if (!env)
		return 125;
	while ((c = getopt_long(argc, argv, "+e:w:u:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': break; /* every run is throwaway */
		case 'e': env[o.nenv++] = optarg; break;
		case 'w': o.workdir = optarg; break;
		case 'u': o.user = optarg; break;
		case 'n':
			if (!strcmp(optarg, "none"))
				o.net_none = 1;
			else if (strcmp(optarg, "host"))
				return free(env), cli_usage("run", "--net: want host or none");
			break;
		case 'h':
			puts("usage: shale run [--rm] [-e K=V] [-w DIR] [-u USER] [--net host|none] IMAGE [-- CMD...]");
			free(env);
			return 0;
		default:
			free(env);
			return cli_usage("run", "bad option");
		}
	}
	if (optind >= argc) {
		free(env);
		return cli_usage("run", "expected IMAGE");
	}
	o.env = env;
	{
		int first = optind + 1; /* IMAGE [--] CMD... */
		if (first < argc && !strcmp(argv[first], "--"))
			first++;
		o.argv = (const char *const *)argv + first;
		o.argc = (size_t)(argc - first);
	}
	if (shl_store_open(&s, cli_g.root) != 0) {
		free(env);
		cli_fail(NULL);
		return 125;
	}
	if (shl_run(s, argv[optind], &o, &status) != 0) {
		cli_fail(NULL);
		if (status == 0)
			status = 125;
	}
	shl_store_close(s);
	free(env);
	return status;
}
