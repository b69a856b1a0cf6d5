/*
 * tests/test_fetch.c - the registry client's pure parts: WWW-Authenticate,
 * Content-Range, Retry-After and error-body parsing (fetch/http.c),
 * credentials from --auth, docker config.json (auths, credHelpers with a
 * real helper program, credsStore) and the netrc-style file with $VAR and
 * $(cmd) expansion (fetch/creds.c), pull reference forms and local names
 * (fetch/pull.c), and the environment defaults.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "fetch/creds.h"
#include "fetch/http.h"
#include "shale/registry.h"

static void www_auth(void)
{
	struct shl_www_auth a;

	CHECK_OK(shl_http_parse_www_auth(
		"Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\",scope=\"repository:library/alpine:pull\"",
		&a));
	CHECK(!strcmp(a.scheme, "bearer"));
	CHECK(!strcmp(a.realm, "https://auth.docker.io/token"));
	CHECK(!strcmp(a.service, "registry.docker.io"));
	CHECK(!strcmp(a.scope, "repository:library/alpine:pull"));
	CHECK_OK(shl_http_parse_www_auth("Basic realm=\"Registry Realm\"", &a));
	CHECK(!strcmp(a.scheme, "basic") && !strcmp(a.realm, "Registry Realm"));
	/* unquoted tokens, spaces around '=', escapes, an error parameter, a second challenge */
	CHECK_OK(shl_http_parse_www_auth("BEARER  realm = https://t.example/tok , error=\"invalid_token\", "
					 "scope=\"a\\\"b\", Basic realm=x",
					 &a));
	CHECK(!strcmp(a.scheme, "bearer") && !strcmp(a.realm, "https://t.example/tok"));
	CHECK(!strcmp(a.error, "invalid_token") && !strcmp(a.scope, "a\"b"));
	CHECK_ERR(shl_http_parse_www_auth("", &a), SHL_EFORMAT);
	CHECK_ERR(shl_http_parse_www_auth("Bearer realm=\"open", &a), SHL_EFORMAT);
	/* an over-long realm is truncated, never overflows */
	char big[5000];
	memset(big, 'r', sizeof(big));
	memcpy(big, "Bearer realm=\"", 14);
	big[sizeof(big) - 2] = '"';
	big[sizeof(big) - 1] = '\0';
	CHECK_OK(shl_http_parse_www_auth(big, &a));
	CHECK(strlen(a.realm) == sizeof(a.realm) - 1);
}

static void headers(void)
{
	int64_t a, b, t;
	char buf[200];

	CHECK_OK(shl_http_parse_content_range("bytes 100-199/1000", &a, &b, &t));
	CHECK(a == 100 && b == 199 && t == 1000);
	CHECK_OK(shl_http_parse_content_range("bytes 0-0/*", &a, &b, &t));
	CHECK(t == -1);
	CHECK_ERR(shl_http_parse_content_range("bytes 5-4/10", &a, &b, &t), SHL_EFORMAT);
	CHECK_ERR(shl_http_parse_content_range("bytes 0-9/9", &a, &b, &t), SHL_EFORMAT);
	CHECK_ERR(shl_http_parse_content_range("items 0-9/100", &a, &b, &t), SHL_EFORMAT);
	CHECK(shl_http_retry_after("3", 9) == 3);
	CHECK(shl_http_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 9) == 9);
	CHECK(shl_http_retry_after("100000", 9) == 60);
	CHECK(shl_http_retry_after(NULL, 9) == 9);
	const char *eb = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
	shl_http_error_text(401, eb, strlen(eb), buf, sizeof(buf));
	CHECK(!strcmp(buf, "401 UNAUTHORIZED: authentication required"));
	shl_http_error_text(502, "<html>bad gateway</html>", 24, buf, sizeof(buf));
	CHECK(!strcmp(buf, "HTTP 502"));
}

static void write_file(const char *path, const char *text, int mode)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	chmod(path, (mode_t)mode);
}

static void creds(const char *dir)
{
	struct shl_creds c;
	char path[600], basic[200];

	/* --auth wins */
	setenv("HOME", dir, 1);
	unsetenv("DOCKER_CONFIG");
	CHECK(shl_creds_lookup("r.example", "bob:pw:with:colons", NULL, &c) == 1);
	CHECK(!strcmp(c.user, "bob") && !strcmp(c.secret, "pw:with:colons"));
	CHECK_OK(shl_creds_basic(&c, basic, sizeof(basic)));
	CHECK(!strcmp(basic, "Basic Ym9iOnB3OndpdGg6Y29sb25z"));
	CHECK_ERR(shl_creds_lookup("r.example", "nocolon", NULL, &c), SHL_EINVAL);
	/* nothing configured */
	CHECK(shl_creds_lookup("r.example", NULL, NULL, &c) == 0);

	/* docker config.json: auths under several key spellings, a credHelper, a credsStore */
	snprintf(path, sizeof(path), "%s/.docker", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/.docker/config.json", dir);
	write_file(path,
		   "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnNlY3JldA==\"},"
		   "\"http://r.example:5000/v2/\":{\"username\":\"u5\",\"password\":\"p5\"}},"
		   "\"credHelpers\":{\"helped.example\":\"shaletest\"},\"credsStore\":\"shalestore\"}",
		   0600);
	CHECK(shl_creds_lookup("docker.io", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.user, "hub") && !strcmp(c.secret, "hubsecret"));
	CHECK(shl_creds_lookup("r.example:5000", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.user, "u5") && !strcmp(c.secret, "p5"));
	CHECK(shl_creds_lookup("r.example:5000", NULL, "someoneelse", &c) == 0);
	/* helpers are programs on PATH speaking docker's credential-helper protocol */
	snprintf(path, sizeof(path), "%s/bin", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/bin/docker-credential-shaletest", dir);
	write_file(path,
		   "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread host\n"
		   "printf '{\"ServerURL\":\"%s\",\"Username\":\"helper-user\",\"Secret\":\"for-%s\"}' \"$host\" \"$host\"\n",
		   0700);
	snprintf(path, sizeof(path), "%s/bin/docker-credential-shalestore", dir);
	write_file(path,
		   "#!/bin/sh\nread host\n[ \"$host\" = stored.example ] || { echo 'credentials not found'; exit 1; }\n"
		   "echo '{\"Username\":\"st\",\"Secret\":\"from-store\"}'\n",
		   0700);
	char newpath[1200];
	snprintf(newpath, sizeof(newpath), "%s/bin:%s", dir, getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", newpath, 1);
	CHECK(shl_creds_lookup("helped.example", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.user, "helper-user") && !strcmp(c.secret, "for-helped.example"));
	CHECK(shl_creds_lookup("stored.example", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.secret, "from-store"));
	/* the store has nothing for this host: not an error, just none */
	CHECK(shl_creds_lookup("unknown.example", NULL, NULL, &c) == 0);

	/* the netrc-style file, with enroot's shell expansion */
	snprintf(path, sizeof(path), "%s/creds", dir);
	write_file(path,
		   "# comment\nmachine nrc.example login alice password plain\n"
		   "machine env.example login bob password $SHALE_TEST_TOKEN\n"
		   "machine cmd.example login carol password $(echo from-cmd)\n"
		   "machine nrc.example login alice2 password later\n",
		   0600);
	setenv("SHALE_CREDENTIALS", path, 1);
	setenv("SHALE_TEST_TOKEN", "tok-123", 1);
	CHECK(shl_creds_lookup("nrc.example", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.user, "alice2") && !strcmp(c.secret, "later")); /* the last entry wins */
	CHECK(shl_creds_lookup("nrc.example", NULL, "alice", &c) == 1);
	CHECK(!strcmp(c.secret, "plain"));
	CHECK(shl_creds_lookup("env.example", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.user, "bob") && !strcmp(c.secret, "tok-123"));
	CHECK(shl_creds_lookup("cmd.example", NULL, NULL, &c) == 1);
	CHECK(!strcmp(c.secret, "from-cmd"));
	CHECK(shl_creds_lookup("none.example", NULL, NULL, &c) == 0);
	unsetenv("SHALE_CREDENTIALS");
}

static void refs(void)
{
	char ref[1200], user[256], name[600];

	CHECK_OK(shl_pull_ref("alpine", ref, sizeof(ref), user, sizeof(user)));
	CHECK(!strcmp(ref, "docker.io/library/alpine:latest") && !user[0]);
	CHECK_OK(shl_pull_ref("docker://alice@nvcr.io#nvidia/cuda:12.4", ref, sizeof(ref), user, sizeof(user)));
	CHECK(!strcmp(ref, "nvcr.io/nvidia/cuda:12.4") && !strcmp(user, "alice"));
	CHECK_OK(shl_pull_ref("docker://ubuntu", ref, sizeof(ref), user, sizeof(user)));
	CHECK(!strcmp(ref, "docker.io/library/ubuntu:latest"));
	CHECK_OK(shl_pull_ref("docker://localhost:5000#x/y:1", ref, sizeof(ref), user, sizeof(user)));
	CHECK(!strcmp(ref, "localhost:5000/x/y:1"));
	CHECK_OK(shl_pull_ref("docker://127.0.0.1:5000#x@sha256:0123456789012345678901234567890123456789012345678901234567890123",
			      ref, sizeof(ref), user, sizeof(user)));
	CHECK(!strcmp(ref, "127.0.0.1:5000/x@sha256:0123456789012345678901234567890123456789012345678901234567890123"));
	CHECK(!user[0]);
	CHECK_ERR(shl_pull_ref("docker://nothost#x", ref, sizeof(ref), user, sizeof(user)), SHL_EFORMAT);
	CHECK_ERR(shl_pull_ref("docker://#x", ref, sizeof(ref), user, sizeof(user)), SHL_EFORMAT);
	CHECK_ERR(shl_pull_ref("Upper/Case", ref, sizeof(ref), user, sizeof(user)), SHL_EFORMAT);
	CHECK_OK(shl_pull_local_name("python:3.12", name, sizeof(name)));
	CHECK(!strcmp(name, "python-3.12"));
	CHECK_OK(shl_pull_local_name("ghcr.io/org/base:latest", name, sizeof(name)));
	CHECK(!strcmp(name, "base-latest"));
	CHECK_OK(shl_pull_local_name("alpine", name, sizeof(name)));
	CHECK(!strcmp(name, "alpine-latest"));
}

static void env_defaults(void)
{
	shl_reg_opts o;

	setenv("SHALE_MAX_CONNECTIONS", "7", 1);
	setenv("SHALE_CONNECT_TIMEOUT", "3", 1);
	setenv("SHALE_TRANSFER_TIMEOUT", "9", 1);
	setenv("SHALE_TRANSFER_RETRIES", "0", 1);
	setenv("SHALE_ALLOW_HTTP", "1", 1);
	shl_reg_opts_default(&o);
	CHECK(o.max_connections == 7 && o.connect_timeout == 3 && o.transfer_timeout == 9 && o.retries == 0);
	CHECK(o.allow_http == 1 && o.tls_verify == 1);
	setenv("SHALE_MAX_CONNECTIONS", "junk", 1);
	setenv("SHALE_ALLOW_HTTP", "0", 1);
	shl_reg_opts_default(&o);
	CHECK(o.max_connections == 4 && o.allow_http == 0);
}

int main(void)
{
	char dir[] = "/tmp/shale-test-fetch-XXXXXX";

	if (!mkdtemp(dir))
		return 1;
	www_auth();
	headers();
	creds(dir);
	refs();
	env_defaults();
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
	return check_result("test_fetch");
}
