/*
 * tests/test_save_peers.c - archives `shale save` writes from the store of
 * tests/test_save_world.h (images A, B, C), read by real tools where
 * installed: skopeo inspect/copy (docker-archive:, oci-archive:, both from
 * the one default-format archive), podman load (vfs storage; the docker
 * format with two images, a pure OCI archive with one) and umoci unpack of the
 * extracted layout, comparing image IDs (config digests), diff_ids and file
 * contents with the source. Skipped when none of the tools is installed.
 */
#include "test_save_world.h"

/* ---- real peers ------------------------------------------------------------------------ */

static int have(const char *tool)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
	return system(cmd) == 0;
}

/* Run a shell command; its stdout (up to cap) into out. Returns the exit status. */
static int run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	FILE *f;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (!(f = popen(cmd, "r")))
		return -1;
	if (out) {
		n = fread(out, 1, cap - 1, f);
		out[n] = '\0';
	} else {
		char sink[4096];
		while (fread(sink, 1, sizeof(sink), f) > 0)
			;
	}
	st = pclose(f);
	if (st != 0)
		fprintf(stderr, "command failed (%d): %s\n", st, cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Does a skopeo copy (an oci: layout, or a dir: with manifest.json and blobs
 * named by hex) hold the image: config digest and the diff_ids of its layers? */
static int copy_matches(const char *dir, const struct img *im, const char *const *diffs, size_t n)
{
	char path[1200], bdir[600];
	struct buf ix = { 0 }, man = { 0 };
	shl_json *j = NULL, *m = NULL, *ls;
	const char *md;
	int ok = 0;

	snprintf(path, sizeof(path), "%s/index.json", dir);
	if (access(path, F_OK) == 0) {
		ix = read_file(path);
		if (!ix.p || shl_json_parse(&j, ix.p, ix.n, 1 << 20, "index") != 0)
			goto out;
		md = shl_json_get_str(shl_json_at(shl_json_get(j, "manifests"), 0), "digest");
		if (!md)
			goto out;
		snprintf(bdir, sizeof(bdir), "%s/blobs/sha256", dir);
		snprintf(path, sizeof(path), "%s/%s", bdir, md + 7);
	} else {
		snprintf(bdir, sizeof(bdir), "%s", dir);
		snprintf(path, sizeof(path), "%s/manifest.json", dir);
	}
	man = read_file(path);
	if (!man.p || shl_json_parse(&m, man.p, man.n, 1 << 20, "manifest") != 0)
		goto out;
	ok = !strcmp(shl_json_get_str(shl_json_get(m, "config"), "digest") ?: "", im->config);
	snprintf(path, sizeof(path), "%s/%s", bdir, im->config + 7);
	ok &= access(path, F_OK) == 0;
	ls = shl_json_get(m, "layers");
	ok &= shl_json_len(ls) == n;
	for (size_t i = 0; ok && i < n; i++) {
		/* gzip'd or not (sniffed: skopeo's docker-archive source calls plain
		 * tars .tar.gzip), the plain bytes hash to the diff_id */
		const char *d = shl_json_get_str(shl_json_at(ls, i), "digest") ?: "";
		struct buf l, plain;
		struct entry e;
		char got[72];
		snprintf(path, sizeof(path), "%s/%s", bdir, strlen(d) > 7 ? d + 7 : "x");
		l = read_file(path);
		e.data = l.p;
		e.size = l.n;
		plain = l.n > 2 && l.p[0] == 0x1f && l.p[1] == 0x8b ? inflate_entry(&e, 0) : l;
		digest_of(plain.p ? plain.p : (uint8_t *)"", plain.n, got);
		ok = !strcmp(got, diffs[i]);
		if (plain.p != l.p)
			free(plain.p);
		free(l.p);
	}
out:
	shl_json_put(j);
	shl_json_put(m);
	free(ix.p);
	free(man.p);
	return ok;
}

static void test_peers(struct world *w)
{
	char arch[400], oci[400], out[65536], dir[500];
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1" };
	const char *da[] = { w->l1.diff_id, w->l2.diff_id }, *db[] = { w->l1.diff_id, w->l3.diff_id };

	snprintf(arch, sizeof(arch), "%s/peers.tar", g_tmp);
	snprintf(oci, sizeof(oci), "%s/peers-oci.tar", g_tmp);
	CHECK_OK(save_to(w->root, arch, refs, 2, SHL_SAVE_DOCKER, 0, NULL));
	CHECK_OK(save_to(w->root, oci, refs, 2, SHL_SAVE_OCI, 0, NULL));

	if (have("skopeo")) {
		/* docker-archive: by name; the config skopeo sees is ours byte for byte */
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw docker-archive:%s:alpha:1 | sha256sum", arch) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64));
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw docker-archive:%s:registry.example:5000/team/beta:v1 | sha256sum",
			  arch) == 0);
		CHECK(!strncmp(out, w->b.config + 7, 64));
		CHECK(run(out, sizeof(out), "skopeo inspect docker-archive:%s:alpha:1", arch) == 0);
		CHECK(strstr(out, w->l2.diff_id) != NULL);
		/* the same archive read as an OCI archive (ref.name = tag), and the pure OCI one */
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw oci-archive:%s:v1 | sha256sum", arch) == 0);
		CHECK(!strncmp(out, w->b.config + 7, 64));
		CHECK(run(out, sizeof(out), "skopeo inspect --config --raw oci-archive:%s:1 | sha256sum", oci) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64));
		/* copies verify every blob digest (dir: keeps the docker config verbatim;
		 * skopeo rewrites it when converting docker-archive to oci:) */
		snprintf(dir, sizeof(dir), "%s/sk-a", g_tmp);
		CHECK(run(NULL, 0, "skopeo copy -q docker-archive:%s:alpha:1 dir:%s 2>&1", arch, dir) == 0);
		CHECK(copy_matches(dir, &w->a, da, 2));
		snprintf(dir, sizeof(dir), "%s/sk-b", g_tmp);
		CHECK(run(NULL, 0, "skopeo copy -q oci-archive:%s:v1 oci:%s:b 2>&1", arch, dir) == 0);
		CHECK(copy_matches(dir, &w->b, db, 2));
		{
			/* C: untagged, its Docker schema 2 manifest listed in index.json */
			char c[400], id[80];
			const char *cref[1] = { id };
			snprintf(id, sizeof(id), "%s", w->c.config);
			snprintf(c, sizeof(c), "%s/c-docker.tar", g_tmp);
			CHECK_OK(save_to(w->root, c, cref, 1, SHL_SAVE_DOCKER, 0, NULL));
			CHECK(run(out, sizeof(out), "skopeo inspect --config --raw oci-archive:%s | sha256sum", c) == 0);
			CHECK(!strncmp(out, w->c.config + 7, 64));
			CHECK(run(out, sizeof(out), "skopeo inspect --raw docker-archive:%s", c) == 0);
			CHECK(strstr(out, w->l4.diff_id) != NULL);
		}
	} else {
		printf("note: skopeo not installed, skipping its checks\n");
	}

	if (have("podman") && geteuid() == 0) {
		char pod[700];
		snprintf(pod, sizeof(pod),
			 "podman --storage-driver vfs --root %s/p --runroot %s/r --cgroup-manager cgroupfs --events-backend none",
			 g_tmp, g_tmp);
		CHECK(run(out, sizeof(out), "%s load -i %s 2>&1", pod, arch) == 0);
		CHECK(run(out, sizeof(out), "%s image inspect --format '{{.Id}} {{.RootFS.Layers}}' alpha:1", pod) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64) && strstr(out, w->l1.diff_id) && strstr(out, w->l2.diff_id));
		CHECK(run(out, sizeof(out), "%s image inspect --format '{{.Id}} {{.RootFS.Layers}}' registry.example:5000/team/beta:v1",
			  pod) == 0);
		CHECK(!strncmp(out, w->b.config + 7, 64) && strstr(out, w->l3.diff_id));
		/* a pure OCI archive (podman 4 takes one image per oci-archive) */
		run(NULL, 0, "%s rmi -a -f >/dev/null 2>&1", pod);
		CHECK(save_to(w->root, oci, refs, 1, SHL_SAVE_OCI, 0, NULL) == 0);
		CHECK(run(out, sizeof(out), "%s load -i %s 2>&1", pod, oci) == 0);
		CHECK(run(out, sizeof(out), "%s image inspect --format '{{.Id}}' alpha:1", pod) == 0);
		CHECK(!strncmp(out, w->a.config + 7, 64));
		run(NULL, 0, "%s rmi -a -f >/dev/null 2>&1", pod);
	} else {
		printf("note: podman not usable here, skipping its checks\n");
	}

	if (have("umoci") && have("tar")) {
		/* umoci reads the layout (from the docker-format archive, extracted) and unpacks A */
		snprintf(dir, sizeof(dir), "%s/um", g_tmp);
		CHECK(run(NULL, 0, "mkdir -p %s/layout && tar -xf %s -C %s/layout", dir, arch, dir) == 0);
		CHECK(run(NULL, 0, "umoci unpack --image %s/layout:1 %s/bundle 2>&1", dir, dir) == 0);
		CHECK(run(out, sizeof(out), "cat %s/bundle/rootfs/two/hello.txt %s/bundle/rootfs/one/link", dir, dir) == 0);
		CHECK(!strcmp(out, "hello from layer two\nhello from layer one\n"));
		CHECK(run(out, sizeof(out), "sha256sum < %s/bundle/rootfs/one/blob.bin", dir) == 0);
		{
			/* the 300 kB file survived bit-exact: compare with the same bytes from the source tar */
			char want[72];
			digest_of(w->t1.p + 512 * 2, 300000, want);
			CHECK(!strncmp(out, want + 7, 64));
		}
	} else {
		printf("note: umoci not installed, skipping its checks\n");
	}
}

int main(void)
{
	struct world w;

	if (!have("skopeo") && !have("podman") && !have("umoci"))
		SKIP("none of skopeo, podman, umoci installed");
	if (world_setup(&w) == 0)
		test_peers(&w);
	world_teardown(&w);
	return check_result("test_save_peers");
}
