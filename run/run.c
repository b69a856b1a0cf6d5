/*
 * run/run.c - `shale run`: a process in a stored image (shale/run.h).
 *
 * The image is mounted writable on a throwaway tmpfs upper (run/imagemount.c,
 * state records the supervisor's pid). A child is cloned into new mount, pid,
 * uts and ipc namespaces (and net with --net none); it makes its mounts
 * private, adds /proc, a minimal /dev and (--net host) resolv.conf/hosts,
 * pivot_roots into the image, applies the config's Env, WorkingDir, User,
 * Entrypoint and Cmd and execs. The supervisor forwards signals, returns the
 * exit status and unmounts everything; if the supervisor is killed, the child
 * dies with it (PDEATHSIG) and the next shale command sweeps the mounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shale/mount.h"
#include "shale/run.h"
#include "store/store_int.h"
#include "util/err.h"

struct child_args {
	const char *rootfs;
	const shl_run_opts *o;
	char **argv;
	char **envp;
	const char *workdir;
	const char *user;
	int pipefd;           /* error reports back to the supervisor */
};

static void child_fail(struct child_args *a, const char *what)
{
	char buf[512];
	int n = snprintf(buf, sizeof(buf), "%s: %s", what, strerror(errno));

	if (write(a->pipefd, buf, (size_t)n) < 0) {
		/* nothing else to do */
	}
	_exit(127);
}

static void mknod_dev(struct child_args *a, const char *name, unsigned maj, unsigned min)
{
	char p[4200];

	snprintf(p, sizeof(p), "%s/dev/%s", a->rootfs, name);
	if (mknod(p, S_IFCHR | 0666, makedev(maj, min)) != 0 || chmod(p, 0666) != 0)
		child_fail(a, p);
}

static void bind_file(struct child_args *a, const char *src, const char *rel)
{
	char p[4200];
	int fd;

	snprintf(p, sizeof(p), "%s%s", a->rootfs, rel);
	fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	if (access(src, R_OK) == 0 && mount(src, p, NULL, MS_BIND, NULL) != 0)
		child_fail(a, p);
}

/* "uid[:gid]" or a name from the image's /etc/passwd (read after pivot_root). */
static void set_user(struct child_args *a)
{
	uid_t uid = 0;
	gid_t gid = 0;
	char name[256], *colon;
	const char *u = a->user;

	if (!u || !*u)
		return;
	snprintf(name, sizeof(name), "%s", u);
	colon = strchr(name, ':');
	if (colon)
		*colon++ = '\0';
	if (name[0] >= '0' && name[0] <= '9') {
		uid = (uid_t)strtoul(name, NULL, 10);
	} else {
		FILE *f = fopen("/etc/passwd", "r");
		char line[1024];
		int found = 0;
		while (f && fgets(line, sizeof(line), f)) {
			char *fields[4] = { 0 }, *p = line;
			for (int i = 0; i < 4 && p; i++) {
				fields[i] = p;
				p = strchr(p, ':');
				if (p)
					*p++ = '\0';
			}
			if (fields[3] && !strcmp(fields[0], name)) {
				uid = (uid_t)strtoul(fields[2], NULL, 10);
				gid = (gid_t)strtoul(fields[3], NULL, 10);
				found = 1;
				break;
			}
		}
		if (f)
			fclose(f);
		if (!found) {
			errno = ENOENT;
			child_fail(a, "user not found in the image's /etc/passwd");
		}
	}
	if (colon)
		gid = (gid_t)strtoul(colon, NULL, 10);
	if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
		child_fail(a, "set user");
}

static int child_main(void *arg)
{
	struct child_args *a = arg;
	char p[4200], old[4200];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		child_fail(a, "make mounts private");
	/* the image's root must be a mount point of its own for pivot_root */
	if (mount(a->rootfs, a->rootfs, NULL, MS_BIND | MS_REC, NULL) != 0)
		child_fail(a, "bind the root");
	snprintf(p, sizeof(p), "%s/proc", a->rootfs);
	mkdir(p, 0555);
	if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
		child_fail(a, "mount /proc");
	snprintf(p, sizeof(p), "%s/dev", a->rootfs);
	mkdir(p, 0755);
	if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536k") != 0)
		child_fail(a, "mount /dev");
	mknod_dev(a, "null", 1, 3);
	mknod_dev(a, "zero", 1, 5);
	mknod_dev(a, "full", 1, 7);
	mknod_dev(a, "random", 1, 8);
	mknod_dev(a, "urandom", 1, 9);
	mknod_dev(a, "tty", 5, 0);
	if (!a->o->net_none) {
		snprintf(p, sizeof(p), "%s/etc", a->rootfs);
		mkdir(p, 0755);
		bind_file(a, "/etc/resolv.conf", "/etc/resolv.conf");
		bind_file(a, "/etc/hosts", "/etc/hosts");
	}
	if (sethostname("shale", 5) != 0)
		child_fail(a, "sethostname");
	snprintf(old, sizeof(old), "%s/.shale-oldroot", a->rootfs);
	mkdir(old, 0700);
	if (syscall(SYS_pivot_root, a->rootfs, old) != 0)
		child_fail(a, "pivot_root");
	if (chdir("/") != 0 || umount2("/.shale-oldroot", MNT_DETACH) != 0)
		child_fail(a, "leave the old root");
	rmdir("/.shale-oldroot");
	if (chdir(a->workdir && *a->workdir ? a->workdir : "/") != 0)
		child_fail(a, a->workdir);
	set_user(a);
	environ = a->envp;
	execvp(a->argv[0], a->argv);
	child_fail(a, a->argv[0]);
	return 127;
}

static volatile pid_t child_pid;

static void forward(int sig)
{
	if (child_pid > 0)
		kill(child_pid, sig);
}

/* argv/env from the image config and the options */
static int build_cmd(shl_json *cfg, const shl_run_opts *o, char ***argv_out, char ***env_out,
		     const char **workdir, const char **user)
{
	shl_json *c = shl_json_get(cfg, "config"), *ep = shl_json_get(c, "Entrypoint"), *cmd = shl_json_get(c, "Cmd");
	shl_json *env = shl_json_get(c, "Env");
	size_t n = 0, ne = 0, na = o->argc;
	char **argv = calloc(shl_json_len(ep) + (na ? na : shl_json_len(cmd)) + 1, sizeof(char *));
	char **envp = calloc(shl_json_len(env) + o->nenv + 2, sizeof(char *));
	int has_path = 0;

	if (!argv || !envp) {
		free(argv);
		free(envp);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < shl_json_len(ep); i++)
		if (shl_json_str(shl_json_at(ep, i)))
			argv[n++] = (char *)shl_json_str(shl_json_at(ep, i));
	if (na)
		for (size_t i = 0; i < na; i++)
			argv[n++] = (char *)o->argv[i];
	else
		for (size_t i = 0; i < shl_json_len(cmd); i++)
			if (shl_json_str(shl_json_at(cmd, i)))
				argv[n++] = (char *)shl_json_str(shl_json_at(cmd, i));
	if (!n) {
		free(argv);
		free(envp);
		return shl_err(SHL_EINVAL, "no command: the image has no Entrypoint/Cmd and none was given");
	}
	for (size_t i = 0; i < shl_json_len(env); i++) {
		const char *e = shl_json_str(shl_json_at(env, i));
		if (e)
			envp[ne++] = (char *)e;
	}
	for (size_t i = 0; i < o->nenv; i++) {
		const char *eq = strchr(o->env[i], '=');
		size_t kl = eq ? (size_t)(eq - o->env[i]) : strlen(o->env[i]);
		for (size_t k = 0; k < ne; k++) /* --env overrides the image's value */
			if (!strncmp(envp[k], o->env[i], kl) && envp[k][kl] == '=')
				envp[k] = envp[--ne];
		envp[ne++] = (char *)o->env[i];
	}
	for (size_t k = 0; k < ne; k++)
		has_path |= !strncmp(envp[k], "PATH=", 5);
	if (!has_path)
		envp[ne++] = (char *)"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	*workdir = o->workdir ? o->workdir : shl_json_get_str(c, "WorkingDir");
	*user = o->user ? o->user : shl_json_get_str(c, "User");
	*argv_out = argv;
	*env_out = envp;
	return 0;
}

int shl_run(shl_store *s, const char *ref, const shl_run_opts *o, int *exit_status)
{
	char manifest[72], rootfs[4200], *cfgb = NULL, errbuf[600];
	size_t cfglen;
	shl_json *img = NULL, *cfg = NULL;
	shl_image_mount_opts mo = { 1, NULL, (int)getpid() };
	struct child_args a;
	char **argv = NULL, **envp = NULL, *stack = NULL;
	const char *workdir = NULL, *user = NULL;
	int pipefd[2] = { -1, -1 }, mounted = 0, rc, status = 0;
	ssize_t n;

	*exit_status = 125;
	if ((rc = shl_store_resolve(s, ref, manifest)) || (rc = shl_store__get_image(s, manifest, &img)) ||
	    (rc = shl_store__get_blob(s, shl_json_get_str(img, "config") ? shl_json_get_str(img, "config") : "",
				      &cfgb, &cfglen, NULL)) ||
	    (rc = shl_json_parse(&cfg, cfgb, cfglen, SHL_CONFIG_CAP, "config")) ||
	    (rc = build_cmd(cfg, o, &argv, &envp, &workdir, &user)))
		goto out;
	snprintf(rootfs, sizeof(rootfs), "%s/run", s->root);
	mkdir(rootfs, 0700);
	snprintf(rootfs, sizeof(rootfs), "%s/run/rootfs-%d", s->root, (int)getpid());
	if (mkdir(rootfs, 0755) != 0 && errno != EEXIST) {
		rc = shl_err_sys(SHL_EIO, "mkdir %s", rootfs);
		goto out;
	}
	if ((rc = shl_image_mount(s, manifest, rootfs, &mo)))
		goto out;
	mounted = 1;
	if (pipe2(pipefd, O_CLOEXEC) != 0) {
		rc = shl_err_sys(SHL_EIO, "pipe");
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a.rootfs = rootfs;
	a.o = o;
	a.argv = argv;
	a.envp = envp;
	a.workdir = workdir;
	a.user = user;
	a.pipefd = pipefd[1];
	stack = malloc(1u << 20);
	if (!stack) {
		rc = shl_err(SHL_ENOMEM, "out of memory");
		goto out;
	}
	child_pid = clone(child_main, stack + (1u << 20),
			  CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
			  (o->net_none ? CLONE_NEWNET : 0) | SIGCHLD, &a);
	if (child_pid < 0) {
		rc = shl_err_sys(SHL_EIO, "clone the container process");
		goto out;
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	signal(SIGINT, forward);
	signal(SIGTERM, forward);
	signal(SIGHUP, forward);
	signal(SIGQUIT, forward);
	n = read(pipefd[0], errbuf, sizeof(errbuf) - 1);
	while (waitpid(child_pid, &status, 0) < 0 && errno == EINTR)
		;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	child_pid = 0;
	if (n > 0) {
		errbuf[n] = '\0';
		rc = shl_err(SHL_EIO, "run %s: %s", ref, errbuf);
		*exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 127;
		goto out;
	}
	*exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
out:
	if (mounted) {
		int urc = shl_image_umount(s, rootfs);
		if (!rc)
			rc = urc;
	}
	rmdir(rootfs);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	free(stack);
	free(argv);
	free(envp);
	shl_json_put(cfg);
	shl_json_put(img);
	free(cfgb);
	return rc;
}
