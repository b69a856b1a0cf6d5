/*
 * fetch/creds.c - where registry credentials come from (fetch/creds.h):
 * --auth, docker's config.json (credHelpers, auths, credsStore through
 * docker-credential-* helpers) and an enroot-compatible netrc-style file.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch/creds.h"
#include "util/err.h"
#include "util/json.h"

extern char **environ;

#define CREDS_FILE_CAP (1u << 20)

static int read_small(const char *path, char **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *buf;
	ssize_t n;

	*out = NULL;
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? SHL_ENOTFOUND : shl_err_sys(SHL_EIO, "open %s", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (off_t)CREDS_FILE_CAP) {
		close(fd);
		return shl_err(SHL_ELIMIT, "%s: not a regular file under 1 MiB", path);
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return shl_err(SHL_ENOMEM, "out of memory");
	}
	n = read(fd, buf, (size_t)st.st_size);
	close(fd);
	if (n < 0) {
		free(buf);
		return shl_err_sys(SHL_EIO, "read %s", path);
	}
	buf[n] = '\0';
	*out = buf;
	*len = (size_t)n;
	return 0;
}

/* Run argv with `input` on stdin; stdout (capped) into *out. Exit status != 0
 * is an error naming the program. */
static int run_capture(char *const argv[], const char *input, char **out)
{
	int in[2] = { -1, -1 }, outp[2] = { -1, -1 }, st = 0, rc = 0;
	posix_spawn_file_actions_t fa;
	pid_t pid;
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);

	*out = NULL;
	if (!buf)
		return shl_err(SHL_ENOMEM, "out of memory");
	if (pipe2(in, O_CLOEXEC) || pipe2(outp, O_CLOEXEC)) {
		rc = shl_err_sys(SHL_EIO, "pipe");
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
	errno = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (errno) {
		rc = shl_err_sys(SHL_ENOTFOUND, "cannot run %s", argv[0]);
		goto out;
	}
	close(in[0]);
	close(outp[1]);
	in[0] = outp[1] = -1;
	if (input) {
		size_t il = strlen(input);
		if (write(in[1], input, il) != (ssize_t)il) { /* helpers read a short line: one write */
		}
	}
	close(in[1]);
	in[1] = -1;
	for (;;) {
		ssize_t n = read(outp[0], buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == cap)
			break;
	}
	buf[len] = '\0';
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		rc = shl_err(SHL_EAUTH, "%s failed (exit %d)%s%.200s", argv[0], WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			     len ? ": " : "", buf);
		goto out;
	}
	*out = buf;
	buf = NULL;
out:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (outp[i] >= 0)
			close(outp[i]);
	}
	free(buf);
	return rc;
}

static int set_pair(struct shl_creds *c, const char *user, const char *secret, const char *source)
{
	if (strlen(user) >= sizeof(c->user) || strlen(secret) >= sizeof(c->secret))
		return shl_err(SHL_ELIMIT, "%s: credentials too long", source);
	snprintf(c->user, sizeof(c->user), "%s", user);
	snprintf(c->secret, sizeof(c->secret), "%s", secret);
	snprintf(c->source, sizeof(c->source), "%s", source);
	return 1;
}

/* ---- docker config.json --------------------------------------------------------- */

/* "https://index.docker.io/v1/", "http://host/v2/", "host" -> "host" (docker.io for Hub) */
static void key_host(const char *k, char *out, size_t len)
{
	const char *p = k;
	size_t n;

	if (!strncmp(p, "https://", 8))
		p += 8;
	else if (!strncmp(p, "http://", 7))
		p += 7;
	n = strcspn(p, "/");
	snprintf(out, len, "%.*s", (int)n, p);
	if (!strcmp(out, "index.docker.io") || !strcmp(out, "registry-1.docker.io"))
		snprintf(out, len, "docker.io");
}

static int helper_get(const char *helper, const char *host, struct shl_creds *c)
{
	char prog[300], *out = NULL;
	const char *server = !strcmp(host, "docker.io") ? "https://index.docker.io/v1/" : host;
	shl_json *j = NULL;
	int rc;

	snprintf(prog, sizeof(prog), "docker-credential-%s", helper);
	char *argv[] = { prog, (char *)"get", NULL };
	if ((rc = run_capture(argv, server, &out)))
		return shl_err_ctx(rc, "credential helper for %s", host);
	if ((rc = shl_json_parse(&j, out, strlen(out), 1u << 16, prog)) == 0) {
		const char *u = shl_json_get_str(j, "Username"), *s = shl_json_get_str(j, "Secret");
		rc = u && s ? set_pair(c, u, s, prog) : shl_err(SHL_EFORMAT, "%s: no Username/Secret", prog);
	}
	shl_json_put(j);
	free(out);
	return rc;
}

static int b64_decode(const char *in, char *out, size_t cap, size_t *outlen)
{
	size_t n = strlen(in), pad = 0;
	int k;

	if (n % 4 || (n / 4) * 3 + 1 > cap)
		return -1;
	if (n && in[n - 1] == '=')
		pad++;
	if (n > 1 && in[n - 2] == '=')
		pad++;
	k = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
	if (k < 0 || (size_t)k < pad)
		return -1;
	*outlen = (size_t)k - pad;
	out[*outlen] = '\0';
	return 0;
}

struct auth_q {
	const char *host;
	shl_json *found;
};

static int auth_match(void *ctx, const char *k, shl_json *v)
{
	struct auth_q *q = ctx;
	char kh[300];

	key_host(k, kh, sizeof(kh));
	if (!strcmp(kh, q->host) && !q->found)
		q->found = v;
	return 0;
}

static int from_docker_config(const char *host, const char *want_user, struct shl_creds *c)
{
	char path[4096], *text = NULL, dec[4400];
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	shl_json *j = NULL, *auths;
	const char *helper;
	size_t len, dl;
	int rc = 0;

	if (dir && *dir)
		snprintf(path, sizeof(path), "%s/config.json", dir);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.docker/config.json", home);
	else
		return 0;
	if ((rc = read_small(path, &text, &len)))
		return rc == SHL_ENOTFOUND ? (shl_error_clear(), 0) : rc;
	if ((rc = shl_json_parse(&j, text, len, CREDS_FILE_CAP, path)))
		goto out;
	/* credHelpers[host] */
	shl_json *helpers = shl_json_get(j, "credHelpers");
	if ((helper = shl_json_get_str(helpers, host)) && *helper) {
		rc = helper_get(helper, host, c);
		goto out;
	}
	/* auths[host] (any spelling of the key) */
	auths = shl_json_get(j, "auths");
	if (shl_json_is_object(auths)) {
		struct auth_q q = { host, NULL };
		shl_json_foreach(auths, auth_match, &q);
		if (q.found) {
			const char *a = shl_json_get_str(q.found, "auth"), *u = shl_json_get_str(q.found, "username"),
				   *p = shl_json_get_str(q.found, "password");
			if (a && *a) {
				char *colon;
				if (b64_decode(a, dec, sizeof(dec), &dl) || !(colon = memchr(dec, ':', dl))) {
					rc = shl_err(SHL_EFORMAT, "%s: auths[%s].auth is not base64 of user:secret", path, host);
					goto out;
				}
				*colon = '\0';
				if (!want_user || !strcmp(want_user, dec)) {
					rc = set_pair(c, dec, colon + 1, "docker config.json");
					goto out;
				}
			} else if (u && p && (!want_user || !strcmp(want_user, u))) {
				rc = set_pair(c, u, p, "docker config.json");
				goto out;
			}
		}
	}
	if ((helper = shl_json_get_str(j, "credsStore")) && *helper) {
		rc = helper_get(helper, host, c);
		/* a store that has nothing for this host is not an error */
		if (rc < 0 && rc != SHL_ENOMEM) {
			shl_error_clear();
			rc = 0;
		}
	}
out:
	shl_json_put(j);
	free(text);
	explicit_bzero(dec, sizeof(dec));
	return rc;
}

/* ---- netrc-style file ------------------------------------------------------------ */

static const char *next_word(const char **p, char *buf, size_t cap)
{
	const char *s = *p;
	size_t n = 0;

	for (;;) {
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		if (*s != '#')
			break;
		while (*s && *s != '\n')
			s++;
	}
	if (!*s)
		return NULL;
	while (*s && *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') {
		if (n + 1 < cap)
			buf[n++] = *s;
		s++;
	}
	buf[n] = '\0';
	*p = s;
	return buf;
}

int shl_creds_parse_netrc(const char *text, const char *host, const char *want_user, struct shl_creds *out)
{
	char w[4096], mach[300] = "", login[256] = "", pass[4096] = "";
	const char *p = text;
	int found = 0, have = 0;

	/* entries: machine H [login U] [password P]; another "machine" ends one */
	for (;;) {
		const char *k = next_word(&p, w, sizeof(w));
		int end = !k || !strcmp(k, "machine") || !strcmp(k, "default");
		if (end && have && !strcmp(mach, host) && (!want_user || !strcmp(login, want_user))) {
			set_pair(out, login, pass, "credentials file");
			found = 1; /* the last matching entry wins */
		}
		if (!k)
			break;
		if (end) {
			have = 1;
			mach[0] = login[0] = pass[0] = '\0';
			if (!strcmp(k, "machine") && next_word(&p, w, sizeof(w)))
				snprintf(mach, sizeof(mach), "%.299s", w);
		} else if (!strcmp(k, "login") && next_word(&p, w, sizeof(w))) {
			snprintf(login, sizeof(login), "%.255s", w);
		} else if (!strcmp(k, "password") && next_word(&p, w, sizeof(w))) {
			if (!strncmp(w, "$(", 2)) {
				/* a command substitution may hold spaces: up to its closing paren */
				const char *st = p - strlen(w);
				int depth = 0;
				size_t n = 0;
				for (p = st; *p && *p != '\n'; p++) {
					depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
					if (n + 1 < sizeof(pass))
						pass[n++] = *p;
					if (depth == 0 && *p == ')') {
						p++;
						break;
					}
				}
				pass[n] = '\0';
			} else {
				snprintf(pass, sizeof(pass), "%s", w);
			}
		}
	}
	explicit_bzero(pass, sizeof(pass));
	explicit_bzero(w, sizeof(w));
	return found;
}

static int from_netrc(const char *host, const char *want_user, struct shl_creds *c)
{
	char path[4096], *text = NULL;
	const char *env = getenv("SHALE_CREDENTIALS"), *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	size_t len;
	int rc;

	if (env && *env)
		snprintf(path, sizeof(path), "%s", env);
	else if (xdg && *xdg)
		snprintf(path, sizeof(path), "%s/shale/credentials", xdg);
	else if (home && *home)
		snprintf(path, sizeof(path), "%s/.config/shale/credentials", home);
	else
		return 0;
	if ((rc = read_small(path, &text, &len)))
		return rc == SHL_ENOTFOUND ? (shl_error_clear(), 0) : rc;
	rc = shl_creds_parse_netrc(text, host, want_user, c);
	free(text);
	if (rc == 1 && strchr(c->secret, '$')) {
		/* enroot semantics: the password is expanded by a shell ($VAR, $(cmd)) */
		char script[4200], *out = NULL;
		snprintf(script, sizeof(script), "printf '%%s' \"%s\"", c->secret);
		char *argv[] = { (char *)"/bin/sh", (char *)"-c", script, NULL };
		int r2 = run_capture(argv, NULL, &out);
		explicit_bzero(script, sizeof(script));
		if (r2)
			return shl_err_ctx(r2, "%s: expanding the password for %s", path, host);
		char user[256];
		snprintf(user, sizeof(user), "%s", c->user);
		rc = set_pair(c, user, out, "credentials file");
		explicit_bzero(out, strlen(out));
		free(out);
	}
	return rc;
}

int shl_creds_lookup(const char *host, const char *auth, const char *want_user, struct shl_creds *out)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (auth && *auth) {
		const char *colon = strchr(auth, ':');
		char user[256];
		if (!colon || colon == auth || (size_t)(colon - auth) >= sizeof(user))
			return shl_err(SHL_EINVAL, "--auth wants USER:SECRET");
		snprintf(user, sizeof(user), "%.*s", (int)(colon - auth), auth);
		return set_pair(out, user, colon + 1, "--auth");
	}
	if ((rc = from_docker_config(host, want_user, out)))
		return rc;
	return from_netrc(host, want_user, out);
}

int shl_creds_basic(const struct shl_creds *c, char *buf, size_t len)
{
	char plain[4400];
	int n = snprintf(plain, sizeof(plain), "%s:%s", c->user, c->secret);
	size_t need = 6 + 4 * (((size_t)n + 2) / 3) + 1;

	if (n < 0 || (size_t)n >= sizeof(plain) || need > len)
		return shl_err(SHL_ELIMIT, "credentials too long");
	memcpy(buf, "Basic ", 6);
	EVP_EncodeBlock((unsigned char *)buf + 6, (const unsigned char *)plain, n);
	explicit_bzero(plain, sizeof(plain));
	return 0;
}
