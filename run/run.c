/*
 * run/run.c - `shale run`: a process in a stored image (shale/run.h).
 *
 * The image is mounted writable on a throwaway tmpfs upper (run/imagemount.c,
 * state records the supervisor's pid). A child is cloned into new mount, pid,
 * uts and ipc namespaces (and net with --net none); it makes its mounts
 * private, adds /proc, a minimal /dev and (--net host) copies of the host's
 * resolv.conf/hosts, all resolved inside the image (RESOLVE_IN_ROOT), pivot_roots into the image, applies the config's Env, WorkingDir, User,
 * Entrypoint and Cmd and execs. The supervisor forwards signals, returns the
 * exit status and unmounts everything; if the supervisor is killed, the child
 * dies with it (PDEATHSIG) and the next shale command sweeps the mounts.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
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
	int rootfd;           /* the image's root (child only) */
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

/*
 * Every path the child touches inside the image before pivot_root is
 * resolved by the kernel with RESOLVE_IN_ROOT: an image's symlink (etc ->
 * /etc, proc -> /tmp/x, resolv.conf -> ../run/...) then resolves inside the
 * image, never on the host. Mounts go onto the resolved object through its
 * /proc/self/fd link; files are written through directory fds.
 */
static int in_root(struct child_args *a, const char *rel, int flags)
{
	struct open_how how;

	memset(&how, 0, sizeof(how));
	how.flags = (unsigned long long)(flags | O_CLOEXEC);
	how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
	return (int)syscall(SYS_openat2, a->rootfd, rel, &how, sizeof(how));
}

/* The directory `name` right under the image's root as an O_PATH fd; made
 * when absent, a dangling symlink in its place replaced by a directory. */
static int root_dir(struct child_args *a, const char *name, mode_t mode)
{
	struct stat st;
	int fd = in_root(a, name, O_PATH | O_DIRECTORY);

	if (fd < 0 && errno == ENOENT) {
		if (fstatat(a->rootfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
			unlinkat(a->rootfd, name, 0);
		if (mkdirat(a->rootfd, name, mode) != 0 && errno != EEXIST)
			child_fail(a, name);
		fd = in_root(a, name, O_PATH | O_DIRECTORY);
	}
	if (fd < 0) {
		char what[300];
		snprintf(what, sizeof(what), "/%s in the image", name);
		child_fail(a, what);
	}
	return fd;
}

static void mount_on(struct child_args *a, int fd, const char *src, const char *type, unsigned long flags,
		     const char *data, const char *what)
{
	char p[64];

	snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
	if (mount(src, p, type, flags, data) != 0)
		child_fail(a, what);
}

static void mknod_dev(struct child_args *a, int devfd, const char *name, unsigned maj, unsigned min)
{
	if (mknodat(devfd, name, S_IFCHR | 0666, makedev(maj, min)) != 0 ||
	    fchmodat(devfd, name, 0666, 0) != 0)
		child_fail(a, name);
}

/* The host's `src` (resolv.conf, hosts) copied into a fresh regular file
 * <etc>/<name> on the throwaway upper: whatever the image had there (a file,
 * a dangling symlink) is replaced, and the host's file is never exposed. */
static void copy_host_file(struct child_args *a, int etcfd, const char *src, const char *name)
{
	char buf[65536];
	ssize_t n;
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NONBLOCK), out;
	struct stat st;

	if (in < 0)
		return; /* the host has none: leave the image's */
	if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(in);
		return;
	}
	if (unlinkat(etcfd, name, 0) != 0 && errno != ENOENT)
		child_fail(a, name); /* e.g. a directory named resolv.conf */
	out = openat(etcfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (out < 0)
		child_fail(a, name);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			child_fail(a, name);
	close(in);
	close(out);
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
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		child_fail(a, "make mounts private");
	/* the image's root must be a mount point of its own for pivot_root */
	if (mount(a->rootfs, a->rootfs, NULL, MS_BIND | MS_REC, NULL) != 0)
		child_fail(a, "bind the root");
	a->rootfd = open(a->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (a->rootfd < 0)
		child_fail(a, a->rootfs);
	fd = root_dir(a, "proc", 0555);
	mount_on(a, fd, "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, "mount /proc");
	close(fd);
	fd = root_dir(a, "dev", 0755);
	mount_on(a, fd, "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536k", "mount /dev");
	close(fd);
	fd = root_dir(a, "dev", 0755); /* now the tmpfs */
	mknod_dev(a, fd, "null", 1, 3);
	mknod_dev(a, fd, "zero", 1, 5);
	mknod_dev(a, fd, "full", 1, 7);
	mknod_dev(a, fd, "random", 1, 8);
	mknod_dev(a, fd, "urandom", 1, 9);
	mknod_dev(a, fd, "tty", 5, 0);
	close(fd);
	if (!a->o->net_none) {
		fd = root_dir(a, "etc", 0755);
		copy_host_file(a, fd, "/etc/resolv.conf", "resolv.conf");
		copy_host_file(a, fd, "/etc/hosts", "hosts");
		close(fd);
	}
	if (sethostname("shale", 5) != 0)
		child_fail(a, "sethostname");
	/* pivot_root(".", "."): the old root ends up stacked on the new one and
	 * is detached at once; no directory in the image is needed for it */
	if (fchdir(a->rootfd) != 0 || syscall(SYS_pivot_root, ".", ".") != 0)
		child_fail(a, "pivot_root");
	if (umount2(".", MNT_DETACH) != 0 || chdir("/") != 0)
		child_fail(a, "leave the old root");
	close(a->rootfd);
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
	if ((rc = shl_image_mount(s, manifest, rootfs, &mo))) {
		shl_err_ctx(rc, "%s", ref); /* the message names the manifest */
		goto out;
	}
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
