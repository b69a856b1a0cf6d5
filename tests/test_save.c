/*
 * tests/test_save.c - `shale save` (shl_save) on a store populated through the
 * store internals (tests/test_save_world.h: images A, B, C), independent of
 * `shale load`. Checks: archive structure (entry order, ustar fields,
 * mtime/uid/gid 0, no user names), every blob matches its name, layers are the
 * stored tars bit-exact and shared ones written once, A's manifest is
 * verbatim, B gets a synthesized manifest plus its original (annotation) and
 * its repo digests, C keeps its Docker media type; index.json / manifest.json
 * / repositories contents; saving twice, to a file and to a pipe, gives the
 * same bytes; --format oci; --compress gzip|zstd (layers decompress to the
 * diff_ids, deterministic); --exclude-layers in text and JSON form and bad
 * lists; an unknown reference; tarout's pax/base-256 headers for a member of
 * 8 GiB and more. Real peers read the same store's archives in
 * tests/test_save_peers.c.
 */
#include "test_save_world.h"
#include "save/tarout.h"

/* ---- tests ---------------------------------------------------------------------------- */

static void test_docker_format(struct world *w)
{
	char p1[400], p2[400], p3[400];
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1", "alpha:latest", "alpha:1" };
	struct archive a = { 0 }, b = { 0 };
	shl_json *ix, *mj, *repos, *ms, *d;
	const struct entry *e;
	char bsynth[72];

	snprintf(p1, sizeof(p1), "%s/ab1.tar", g_tmp);
	snprintf(p2, sizeof(p2), "%s/ab2.tar", g_tmp);
	snprintf(p3, sizeof(p3), "%s/ab3.tar", g_tmp);
	CHECK_OK(save_to(w->root, p1, refs, 4, SHL_SAVE_DOCKER, 0, NULL));
	CHECK_OK(save_to(w->root, p2, refs, 4, SHL_SAVE_DOCKER, 0, NULL));
	CHECK_OK(save_pipe(w->root, p3, refs, 4));
	CHECK(load_archive(&a, p1));
	CHECK(load_archive(&b, p2));
	CHECK(a.raw.n == b.raw.n && !memcmp(a.raw.p, b.raw.p, a.raw.n));
	CHECK(load_archive(&b, p3));
	CHECK(a.raw.n == b.raw.n && !memcmp(a.raw.p, b.raw.p, a.raw.n));

	/* order: blobs/ dirs, blobs sorted, then the JSON files */
	CHECK(a.n >= 6 && !strcmp(a.e[0].name, "blobs/") && a.e[0].type == '5');
	CHECK(!strcmp(a.e[1].name, "blobs/sha256/") && a.e[1].type == '5');
	for (size_t i = 3; i + 4 < a.n; i++)
		CHECK(strcmp(a.e[i - 1].name, a.e[i].name) < 0);
	CHECK(a.n >= 4 && !strcmp(a.e[a.n - 4].name, "index.json") && !strcmp(a.e[a.n - 3].name, "manifest.json") &&
	      !strcmp(a.e[a.n - 2].name, "oci-layout") && !strcmp(a.e[a.n - 1].name, "repositories"));
	/* every blob matches its name */
	for (size_t i = 2; i < a.n; i++) {
		char d2[72];
		if (strncmp(a.e[i].name, "blobs/sha256/", 13))
			continue;
		digest_of(a.e[i].data, a.e[i].size, d2);
		CHECK(!strcmp(d2 + 7, a.e[i].name + 13));
	}
	/* layers bit-exact, each once; configs; A's manifest verbatim; B's original kept */
	CHECK(same_bytes(blob(&a, w->l1.diff_id), &w->t1));
	CHECK(same_bytes(blob(&a, w->l2.diff_id), &w->t2));
	CHECK(same_bytes(blob(&a, w->l3.diff_id), &w->t3));
	CHECK(!blob(&a, w->l1.raw_digest) && !blob(&a, w->l3.raw_digest)); /* no gzip blobs */
	CHECK((e = blob(&a, w->a.config)) && e->size == strlen(w->a.cfg) && !memcmp(e->data, w->a.cfg, e->size));
	CHECK(blob(&a, w->b.config) != NULL);
	CHECK(blob(&a, w->a.manifest) != NULL);
	CHECK(blob(&a, w->b.manifest) != NULL);
	CHECK(a.n == 2 + 3 + 2 + 3 + 4); /* dirs, layers, configs, manifests (A, B synth, B orig), JSON */

	/* index.json: alpha:1, alpha:latest (A), beta:v1 (B); argument order, duplicates once */
	ix = json_of(&a, "index.json");
	ms = shl_json_get(ix, "manifests");
	CHECK(shl_json_len(ms) == 3);
	CHECK(!strcmp(shl_json_get_str(ix, "mediaType") ?: "", "application/vnd.oci.image.index.v1+json"));
	d = shl_json_at(ms, 0);
	CHECK(!strcmp(shl_json_get_str(d, "digest") ?: "", w->a.manifest));
	CHECK(!strcmp(ann(d, "io.containerd.image.name") ?: "", "docker.io/library/alpha:1"));
	CHECK(!strcmp(ann(d, "org.opencontainers.image.ref.name") ?: "", "1"));
	CHECK(!ann(d, "io.shale.original-manifest") && !ann(d, "io.shale.repo-digests"));
	d = shl_json_at(ms, 1);
	CHECK(!strcmp(ann(d, "io.containerd.image.name") ?: "", "docker.io/library/alpha:latest"));
	d = shl_json_at(ms, 2);
	snprintf(bsynth, sizeof(bsynth), "%s", shl_json_get_str(d, "digest") ?: "");
	CHECK(strcmp(bsynth, w->b.manifest) != 0 && blob(&a, bsynth));
	CHECK(!strcmp(shl_json_get_str(d, "mediaType") ?: "", MT_OCI_M));
	CHECK(!strcmp(ann(d, "io.containerd.image.name") ?: "", "registry.example:5000/team/beta:v1"));
	CHECK(!strcmp(ann(d, "org.opencontainers.image.ref.name") ?: "", "v1"));
	CHECK(!strcmp(ann(d, "io.shale.original-manifest") ?: "", w->b.manifest));
	{
		/* the index digest is kept; "beta@<its own manifest>" is implied and left out */
		char want[300];
		snprintf(want, sizeof(want), "registry.example:5000/team/beta@%s", w->b_index);
		CHECK(!strcmp(ann(d, "io.shale.repo-digests") ?: "", want));
	}
	{
		/* B's synthesized manifest: plain layers, verbatim config */
		shl_json *m = NULL, *ls;
		e = blob(&a, bsynth);
		CHECK(e && shl_json_parse(&m, e->data, e->size, 1 << 20, "m") == 0);
		ls = shl_json_get(m, "layers");
		CHECK(shl_json_len(ls) == 2);
		CHECK(!strcmp(shl_json_get_str(shl_json_at(ls, 0), "digest") ?: "", w->l1.diff_id));
		CHECK(!strcmp(shl_json_get_str(shl_json_at(ls, 1), "mediaType") ?: "", MT_TAR));
		CHECK(!strcmp(shl_json_get_str(shl_json_get(m, "config"), "digest") ?: "", w->b.config));
		shl_json_put(m);
	}
	shl_json_put(ix);

	/* manifest.json: one entry per image, familiar RepoTags, blob paths, LayerSources */
	mj = json_of(&a, "manifest.json");
	CHECK(shl_json_len(mj) == 2);
	d = shl_json_at(mj, 0);
	{
		char cp[100], lp[100];
		shl_json *tags = shl_json_get(d, "RepoTags"), *ls = shl_json_get(d, "Layers");
		snprintf(cp, sizeof(cp), "blobs/sha256/%s", w->a.config + 7);
		snprintf(lp, sizeof(lp), "blobs/sha256/%s", w->l2.diff_id + 7);
		CHECK(!strcmp(shl_json_get_str(d, "Config") ?: "", cp));
		CHECK(shl_json_len(tags) == 2 && !strcmp(shl_json_str(shl_json_at(tags, 0)) ?: "", "alpha:1") &&
		      !strcmp(shl_json_str(shl_json_at(tags, 1)) ?: "", "alpha:latest"));
		CHECK(shl_json_len(ls) == 2 && !strcmp(shl_json_str(shl_json_at(ls, 1)) ?: "", lp));
		CHECK(shl_json_get(shl_json_get(d, "LayerSources"), w->l2.diff_id) != NULL);
	}
	d = shl_json_at(mj, 1);
	CHECK(!strcmp(shl_json_str(shl_json_at(shl_json_get(d, "RepoTags"), 0)) ?: "", "registry.example:5000/team/beta:v1"));
	shl_json_put(mj);

	/* repositories: familiar repo -> tag -> top layer */
	repos = json_of(&a, "repositories");
	CHECK(!strcmp(shl_json_get_str(shl_json_get(repos, "alpha"), "latest") ?: "", w->l2.diff_id + 7));
	CHECK(!strcmp(shl_json_get_str(shl_json_get(repos, "registry.example:5000/team/beta"), "v1") ?: "",
		      w->l3.diff_id + 7));
	shl_json_put(repos);
	free(a.raw.p);
	free(b.raw.p);
}

static void test_oci_format(struct world *w)
{
	char path[400], id[80];
	const char *refs[1] = { id };
	struct archive a = { 0 };
	shl_json *ix, *d;

	/* C by image ID: untagged, Docker schema 2 manifest kept verbatim */
	snprintf(id, sizeof(id), "%.19s", w->c.config + 7);
	snprintf(path, sizeof(path), "%s/c.tar", g_tmp);
	CHECK_OK(save_to(w->root, path, refs, 1, SHL_SAVE_OCI, 0, NULL));
	CHECK(load_archive(&a, path));
	CHECK(!find(&a, "manifest.json") && !find(&a, "repositories") && find(&a, "oci-layout"));
	CHECK(!strcmp(a.e[a.n - 1].name, "oci-layout") && !strcmp(a.e[a.n - 2].name, "index.json"));
	ix = json_of(&a, "index.json");
	CHECK(shl_json_len(shl_json_get(ix, "manifests")) == 1);
	d = shl_json_at(shl_json_get(ix, "manifests"), 0);
	CHECK(!strcmp(shl_json_get_str(d, "digest") ?: "", w->c.manifest));
	CHECK(!strcmp(shl_json_get_str(d, "mediaType") ?: "", MT_D2_M));
	CHECK(!shl_json_get(d, "annotations"));
	CHECK(same_bytes(blob(&a, w->l4.diff_id), &w->t4));
	shl_json_put(ix);
	free(a.raw.p);
}

static void test_compress(struct world *w)
{
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1" };
	for (int zstd = 0; zstd <= 1; zstd++) {
		char p1[400], p2[400];
		struct archive a = { 0 }, b = { 0 };
		shl_json *ix, *mj, *m = NULL, *ls;
		const struct entry *e;
		snprintf(p1, sizeof(p1), "%s/z1.tar", g_tmp);
		snprintf(p2, sizeof(p2), "%s/z2.tar", g_tmp);
		CHECK_OK(save_to(w->root, p1, refs, 2, SHL_SAVE_DOCKER, zstd ? SHL_SAVE_COMPRESS_ZSTD : SHL_SAVE_COMPRESS_GZIP,
				 NULL));
		CHECK_OK(save_to(w->root, p2, refs, 2, SHL_SAVE_DOCKER, zstd ? SHL_SAVE_COMPRESS_ZSTD : SHL_SAVE_COMPRESS_GZIP,
				 NULL));
		CHECK(load_archive(&a, p1) && load_archive(&b, p2));
		CHECK(a.raw.n == b.raw.n && !memcmp(a.raw.p, b.raw.p, a.raw.n));
		CHECK(!blob(&a, w->l1.diff_id)); /* no plain layers */
		ix = json_of(&a, "index.json");
		/* A's manifest is synthesized now (its layers are compressed); the original rides along */
		e = blob(&a, shl_json_get_str(shl_json_at(shl_json_get(ix, "manifests"), 0), "digest") ?: "sha256:x");
		CHECK(e && shl_json_parse(&m, e->data, e->size, 1 << 20, "m") == 0);
		CHECK(!strcmp(ann(shl_json_at(shl_json_get(ix, "manifests"), 0), "io.shale.original-manifest") ?: "",
			      w->a.manifest));
		CHECK(blob(&a, w->a.manifest) != NULL);
		ls = shl_json_get(m, "layers");
		CHECK(shl_json_len(ls) == 2);
		for (size_t i = 0; i < shl_json_len(ls); i++) {
			const char *dg = shl_json_get_str(shl_json_at(ls, i), "digest") ?: "sha256:x";
			const char *mt = shl_json_get_str(shl_json_at(ls, i), "mediaType") ?: "";
			struct buf plain = inflate_entry(blob(&a, dg), zstd);
			char pd[72];
			int64_t sz = -1;
			shl_json_get_int(shl_json_at(ls, i), "size", &sz);
			digest_of(plain.p, plain.n, pd);
			CHECK(!strcmp(pd, i ? w->l2.diff_id : w->l1.diff_id));
			CHECK(!strcmp(mt, zstd ? "application/vnd.oci.image.layer.v1.tar+zstd" : MT_GZ));
			CHECK(blob(&a, dg) && (int64_t)blob(&a, dg)->size == sz);
			free(plain.p);
		}
		/* manifest.json points at the compressed blobs, no LayerSources */
		mj = json_of(&a, "manifest.json");
		CHECK(shl_json_len(shl_json_get(shl_json_at(mj, 0), "Layers")) == 2);
		CHECK(!shl_json_get(shl_json_at(mj, 0), "LayerSources"));
		shl_json_put(mj);
		shl_json_put(m);
		shl_json_put(ix);
		free(a.raw.p);
		free(b.raw.p);
	}
}

static void test_exclude(struct world *w)
{
	const char *refs[] = { "alpha:1", "registry.example:5000/team/beta:v1" };
	char list[400], out[400], text[2048];
	struct archive a = { 0 };
	shl_json *mj;

	snprintf(list, sizeof(list), "%s/have.txt", g_tmp);
	snprintf(out, sizeof(out), "%s/inc.tar", g_tmp);
	/* text form: comments, blanks, CRLF, a layer no image uses */
	snprintf(text, sizeof(text), "# what the target has\n\n  %s  # base\r\n%s\n",
		 w->l1.diff_id, "sha256:0000000000000000000000000000000000000000000000000000000000000000");
	write_text(list, text);
	CHECK_OK(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list));
	CHECK(load_archive(&a, out));
	CHECK(!blob(&a, w->l1.diff_id) && same_bytes(blob(&a, w->l2.diff_id), &w->t2) && blob(&a, w->l3.diff_id));
	CHECK(blob(&a, w->a.manifest) != NULL); /* A's manifest still verbatim, naming the excluded layer */
	mj = json_of(&a, "manifest.json");
	CHECK(shl_json_len(shl_json_get(shl_json_at(mj, 0), "Layers")) == 2);
	CHECK(shl_json_get(shl_json_get(shl_json_at(mj, 0), "LayerSources"), w->l1.diff_id) != NULL);
	shl_json_put(mj);

	/* JSON form, as `shale df --layers --json` prints it (one line, long) */
	snprintf(text, sizeof(text),
		 "[{\"diff_id\":\"%s\",\"tar_size\":1,\"erofs_size\":2,\"images\":2},\n{\"diff_id\":\"%s\",\"tar_size\":1,"
		 "\"erofs_size\":2,\"images\":1}]\n",
		 w->l1.diff_id, w->l3.diff_id);
	write_text(list, text);
	CHECK_OK(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list));
	CHECK(load_archive(&a, out));
	CHECK(!blob(&a, w->l1.diff_id) && !blob(&a, w->l3.diff_id) && blob(&a, w->l2.diff_id));

	/* compressed + excluded: the excluded layer is named by its plain digest */
	CHECK_OK(save_to(w->root, out, refs, 1, SHL_SAVE_DOCKER, SHL_SAVE_COMPRESS_GZIP, list));
	CHECK(load_archive(&a, out));
	CHECK(!blob(&a, w->l1.diff_id));
	mj = json_of(&a, "manifest.json");
	{
		char lp[100];
		snprintf(lp, sizeof(lp), "blobs/sha256/%s", w->l1.diff_id + 7);
		CHECK(!strcmp(shl_json_str(shl_json_at(shl_json_get(shl_json_at(mj, 0), "Layers"), 0)) ?: "", lp));
	}
	shl_json_put(mj);

	/* bad lists fail clearly and write nothing */
	write_text(list, "sha256:1234\n");
	CHECK_ERR(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "line 1") != NULL);
	write_text(list, "[{\"id\":\"x\"}]");
	CHECK_ERR(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list), SHL_EFORMAT);
	snprintf(list, sizeof(list), "%s/does-not-exist", g_tmp);
	CHECK(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, list) != 0);
	free(a.raw.p);
}

static void test_errors(struct world *w)
{
	const char *refs[] = { "alpha:1", "nope:1" };
	char out[400];
	struct stat st;

	snprintf(out, sizeof(out), "%s/err.tar", g_tmp);
	unlink(out);
	CHECK_ERR(save_to(w->root, out, refs, 2, SHL_SAVE_DOCKER, 0, NULL), SHL_ENOTFOUND);
	CHECK(!strcmp(shl_error_last(), "no such image: nope:1"));
	CHECK(stat(out, &st) == 0 && st.st_size == 0); /* nothing written before the snapshot */
	/* an unknown tag of a known repository */
	CHECK_ERR(save_to(w->root, out, (const char *[]){ "alpha:2" }, 1, SHL_SAVE_DOCKER, 0, NULL), SHL_ENOTFOUND);
}

/* ---- tarout: a body of 8 GiB or more -------------------------------------------------- */

static int read_n(int fd, uint8_t *b, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t k = read(fd, b + got, n - got);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* child: check what tarout wrote for an 8 GiB + 5 byte member, skipping the
 * zeros in the kernel. Exit status says what was wrong. */
static int check_big_stream(int in, uint64_t size)
{
	uint8_t h[1536], t[5 + 507 + 1024], extra;
	uint64_t skip = size - 5, v = 0;
	int null = open("/dev/null", O_WRONLY);
	const char rec[] = "19 size=8589934597\n";

	if (read_n(in, h, sizeof(h)))
		return 1;
	if (h[156] != 'x' || memcmp(h, "PaxHeaders/big", 15) || oct(h + 124, 12) != strlen(rec) ||
	    memcmp(h + 512, rec, strlen(rec)))
		return 2;
	if (h[1024 + 156] != '0' || strcmp((char *)h + 1024, "blobs/sha256/big") || h[1024 + 124] != 0x80)
		return 3;
	for (int i = 1; i < 12; i++)
		v = v << 8 | h[1024 + 124 + i];
	if (v != size)
		return 4;
	while (skip) {
		ssize_t k = splice(in, NULL, null, NULL, skip > (1u << 30) ? (1u << 30) : (size_t)skip, 0);
		if (k <= 0)
			return 5;
		skip -= (uint64_t)k;
	}
	/* "hello", padding to 512, two zero blocks, then EOF */
	if (read_n(in, t, sizeof(t)) || memcmp(t, "hello", 5) || read(in, &extra, 1) != 0)
		return 6;
	for (size_t i = 5; i < sizeof(t); i++)
		if (t[i])
			return 7;
	return 0;
}

/* The headers of an 8 GiB + 5 byte member, cheaply: the source holds only
 * "hello", so tarout writes the headers and 5 bytes, then reports the source
 * as short. With SHALE_TEST_BIG=1 the whole member also streams from a sparse
 * file through a pipe (about 30 s of kernel time here: the page cache fills
 * with zeros). */
static void test_tarout_large(void)
{
	uint64_t size = (8ull << 30) + 5;
	char path[400], out[400];
	int fd, ofd, p[2], st = -1;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/hello", g_tmp);
	snprintf(out, sizeof(out), "%s/big-head.tar", g_tmp);
	write_text(path, "hello");
	fd = open(path, O_RDONLY);
	ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && ofd >= 0);
	{
		shl_tarout t = SHL_TAROUT_INIT(ofd);
		t.dio_tried = 1; /* buffered: the headers must be in the file after the error */
		CHECK_ERR(shl_tarout_file(&t, "blobs/sha256/big", fd, size), SHL_EIO);
		CHECK(strstr(shl_error_last(), "shorter than recorded") != NULL);
		CHECK(t.off == 1536 + 5);
	}
	close(fd);
	close(ofd);
	{
		/* the same checks the streaming child makes, on the file */
		int in = open(out, O_RDONLY);
		uint8_t h[1536];
		const char rec[] = "19 size=8589934597\n";
		uint64_t v = 0;
		CHECK(in >= 0 && read_n(in, h, sizeof(h)) == 0);
		CHECK(h[156] == 'x' && !memcmp(h, "PaxHeaders/big", 15) && oct(h + 124, 12) == strlen(rec));
		CHECK(!memcmp(h + 512, rec, strlen(rec)));
		CHECK(h[1024 + 156] == '0' && !strcmp((char *)h + 1024, "blobs/sha256/big") && h[1024 + 124] == 0x80);
		for (int i = 1; i < 12; i++)
			v = v << 8 | h[1024 + 124 + i];
		CHECK(v == size);
		close(in);
	}
	if (!getenv("SHALE_TEST_BIG"))
		return;
	snprintf(path, sizeof(path), "%s/sparse", g_tmp);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size - 5) != 0 || pwrite(fd, "hello", 5, (off_t)size - 5) != 5 || pipe(p)) {
		CHECK(!"sparse file");
		return;
	}
	pid = fork();
	if (pid == 0) {
		close(p[1]);
		_exit(check_big_stream(p[0], size));
	}
	close(p[0]);
	{
		shl_tarout t = SHL_TAROUT_INIT(p[1]);
		CHECK_OK(shl_tarout_file(&t, "blobs/sha256/big", fd, size));
		CHECK_OK(shl_tarout_finish(&t));
		CHECK(t.copied == size); /* all of it in the kernel (sendfile into the pipe) */
		CHECK(t.off == 1536 + (size + 511) / 512 * 512 + 1024);
	}
	close(p[1]);
	close(fd);
	unlink(path);
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, "big member stream: check %d failed\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

int main(void)
{
	struct world w;

	if (world_setup(&w) == 0) {
		test_docker_format(&w);
		test_oci_format(&w);
		test_compress(&w);
		test_exclude(&w);
		test_errors(&w);
		test_tarout_large();
	}
	world_teardown(&w);
	return check_result("test_save");
}
