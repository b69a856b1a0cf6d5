/*
 * tests/test_store_maint.c - store maintenance against a real LMDB index in
 * a mkdtemp root: gc and prune remove exactly the unreferenced things; fsck
 * finds a flipped byte, a missing file, a bad blob, a tar whose sha256 is
 * wrong (--deep); --repair removes orphans and temp files and nothing the
 * index names; the index map grows, also while another process has it open;
 * open: default root, schema, stale temp files.
 */
#include "storelib.h"

/* ---- 4. gc and prune ---------------------------------------------------------- */

static int g_events;
static void count_event(void *ctx, const char *kind, const char *what)
{
	(void)ctx;
	(void)kind;
	(void)what;
	g_events++;
}

static void test_gc(void)
{
	char root[512], known[72], gzd[72], path[4200], got[72];
	struct buf t[4] = { make_tar("g1"), make_tar("g2"), make_tar("g3"), make_tar("g4") };
	struct buf g4 = gzip_buf(&t[3]);
	char diff[4][72];
	shl_staged st[4];
	shl_batch *b = NULL;
	shl_store *s = NULL;
	shl_gc_report gr;
	struct img i1, i2;

	mkroot("g", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	digest_of(g4.p, g4.n, gzd);
	CHECK_OK(shl_batch_new(&b));
	for (int i = 0; i < 3; i++) {
		CHECK_OK(stage_buf(s, &t[i], NULL, &st[i], known, NULL));
		snprintf(diff[i], 72, "%.71s", st[i].info.diff_id);
		CHECK_OK(shl_batch_add_layer(b, &st[i], NULL));
	}
	{
		const char *d1[] = { diff[0], diff[1] }, *d2[] = { diff[1], diff[2] };
		CHECK_OK(add_image(b, "i1", d1, d1, 2, "docker.io/library/keep:1", &i1));
		CHECK_OK(add_image(b, "i2", d2, d2, 2, NULL, &i2)); /* dangling */
	}
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	/* garbage: a layer (with an alias) no image uses, a stray blob, an orphan file */
	CHECK_OK(shl_batch_new(&b));
	CHECK_OK(stage_buf(s, &g4, gzd, &st[3], known, NULL));
	snprintf(diff[3], 72, "%.71s", st[3].info.diff_id);
	CHECK_OK(shl_batch_add_layer(b, &st[3], "application/vnd.oci.image.layer.v1.tar+gzip"));
	CHECK_OK(shl_batch_put_blob(b, "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
				    "application/json", "{}", 2));
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	snprintf(path, sizeof(path), "%s/layers/%064d.tar", root, 0);
	{
		int fd = open(path, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0 && write(fd, "junk", 4) == 4);
		if (fd >= 0)
			close(fd);
	}
	CHECK(count_db(s, SHL_DB_LAYERS) == 4 && count_db(s, SHL_DB_ALIASES) == 1 && count_db(s, SHL_DB_BLOBS) == 5);

	g_events = 0;
	CHECK_OK(shl_store_gc(s, &gr, count_event, NULL));
	CHECK(gr.layers == 1 && gr.blobs == 1 && gr.aliases == 1 && gr.files == 3);
	CHECK(g_events == 4);
	CHECK(!exists(path));
	CHECK(!shl_store_layer_has(s, diff[3]) && shl_store_layer_has(s, diff[2]));
	shl_store_layer_paths(s, diff[3], path, sizeof(path), NULL, 0);
	CHECK(!exists(path));
	CHECK(count_db(s, SHL_DB_LAYERS) == 3 && count_db(s, SHL_DB_ALIASES) == 0 && count_db(s, SHL_DB_BLOBS) == 4 &&
	      count_db(s, SHL_DB_IMAGES) == 2);
	/* nothing left to collect */
	CHECK_OK(shl_store_gc(s, &gr, NULL, NULL));
	CHECK(gr.layers == 0 && gr.blobs == 0 && gr.aliases == 0 && gr.files == 0);

	/* prune: the dangling image and its unique layer go, the shared one stays */
	CHECK_OK(shl_store_prune(s, 0, NULL, NULL));
	CHECK(count_db(s, SHL_DB_IMAGES) == 1 && count_db(s, SHL_DB_LAYERS) == 2 && count_db(s, SHL_DB_BLOBS) == 2);
	CHECK(shl_store_layer_has(s, diff[0]) && shl_store_layer_has(s, diff[1]) && !shl_store_layer_has(s, diff[2]));
	shl_store_layer_paths(s, diff[2], path, sizeof(path), NULL, 0);
	CHECK(!exists(path));
	CHECK_ERR(shl_store_resolve(s, i2.config, got), SHL_ENOTFOUND);
	/* rm of the last tag deletes the image and everything it alone used */
	CHECK_OK(shl_store_remove(s, "keep:1", 0, NULL, NULL));
	for (int db = 0; db < SHL_DB_META; db++)
		CHECK(count_db(s, db) == 0);
	snprintf(path, sizeof(path), "%s/layers", root);
	CHECK(count_dir(path, NULL) == 0);
	shl_store_close(s);
	for (int i = 0; i < 4; i++)
		free(t[i].p);
	free(g4.p);
}

/* ---- 5. fsck ----------------------------------------------------------------- */

static int g_msgs;
static char g_log[8192];
static void on_msg(void *ctx, const char *m)
{
	size_t n = strlen(g_log);
	(void)ctx;
	g_msgs++;
	snprintf(g_log + n, sizeof(g_log) - n, "%s\n", m);
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char c = 0;

	CHECK(fd >= 0 && pread(fd, &c, 1, off) == 1);
	c ^= 0x20;
	CHECK(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

static void test_fsck(void)
{
	char root[512], known[72], tar[4200], erofs[4200], orphan[4200], stale[4200], lockf[4200];
	struct buf t1 = make_tar("k1"), t2 = make_tar("k2");
	shl_staged a, b;
	shl_batch *batch = NULL;
	shl_store *s = NULL;
	shl_fsck_report r;
	struct img im;

	mkroot("k", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	CHECK_OK(stage_buf(s, &t1, NULL, &a, known, NULL));
	CHECK_OK(stage_buf(s, &t2, NULL, &b, known, NULL));
	CHECK_OK(shl_batch_new(&batch));
	CHECK_OK(shl_batch_add_layer(batch, &a, NULL));
	CHECK_OK(shl_batch_add_layer(batch, &b, NULL));
	{
		const char *d[] = { a.info.diff_id, b.info.diff_id };
		CHECK_OK(add_image(batch, "k", d, d, 2, "docker.io/library/k:1", &im));
	}
	CHECK_OK(shl_store_commit(s, batch));
	shl_batch_free(batch);

	CHECK_OK(shl_store_fsck(s, SHL_FSCK_DEEP, &r, on_msg, NULL));
	CHECK(r.problems == 0 && r.layers == 2 && r.images == 1 && r.blobs == 2 && r.refs == 1);

	/* a flipped byte in a tar, a missing EROFS file */
	shl_store_layer_paths(s, a.info.diff_id, tar, sizeof(tar), NULL, 0);
	shl_store_layer_paths(s, b.info.diff_id, NULL, 0, erofs, sizeof(erofs));
	flip_byte(tar, 600);
	CHECK(unlink(erofs) == 0);
	g_msgs = 0;
	g_log[0] = '\0';
	CHECK_OK(shl_store_fsck(s, 0, &r, on_msg, NULL));
	CHECK(r.problems == 2 && g_msgs == 2);
	CHECK(strstr(g_log, a.info.diff_id) && strstr(g_log, "corrupt"));
	CHECK(strstr(g_log, b.info.diff_id) && strstr(g_log, ".erofs"));

	/* orphans and temp files: reported, then repaired; indexed files stay */
	snprintf(orphan, sizeof(orphan), "%s/layers/%064d.erofs", root, 7);
	snprintf(stale, sizeof(stale), "%s/tmp/99999-dead00", root);
	snprintf(lockf, sizeof(lockf), "%s/tmp/%.64s.lock", root, a.info.diff_id + 7);
	CHECK(mkdir(stale, 0755) == 0);
	{
		char f[4300];
		int fd;
		snprintf(f, sizeof(f), "%s/layer-abc", stale);
		fd = open(f, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
		fd = open(orphan, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
		fd = open(lockf, O_WRONLY | O_CREAT, 0644);
		CHECK(fd >= 0);
		close(fd);
	}
	CHECK_OK(shl_store_fsck(s, 0, &r, NULL, NULL));
	CHECK(r.problems == 3 && r.repaired == 0);
	CHECK(exists(orphan) && exists(stale));
	g_msgs = 0;
	CHECK_OK(shl_store_fsck(s, SHL_FSCK_REPAIR, &r, on_msg, NULL));
	CHECK(r.problems == 2 && r.repaired == 3);
	CHECK(!exists(orphan) && !exists(stale) && !exists(lockf));
	CHECK(exists(tar) && exists(s->tmp_dir)); /* named by the index / in use */

	/* deep: a tar whose size and xxh3 agree with a (forged) record but whose
	 * sha256 is not its diff_id; and a blob whose bytes changed */
	{
		shl_json *rec = NULL;
		uint8_t x[16];
		char hex[33], *v;
		size_t len;
		shl_wtxn *w;
		int fd = open(tar, O_RDONLY);
		struct stat st;
		char *data = NULL;
		fstat(fd, &st);
		data = malloc((size_t)st.st_size);
		CHECK(read(fd, data, (size_t)st.st_size) == st.st_size);
		close(fd);
		{
			shl_xxh3 *h;
			shl_xxh3_new(&h);
			shl_xxh3_update(h, data, (size_t)st.st_size);
			shl_xxh3_final(h, x);
			shl_xxh3_free(h);
		}
		free(data);
		shl_hex(x, 16, hex);
		CHECK_OK(shl_store__get_layer(s, a.info.diff_id, &rec));
		shl_json_set_str(rec, "tar_xxh3", hex);
		v = strdup(shl_json_dump(rec, 0, &len));
		shl_json_put(rec);
		CHECK_OK(shl_index_wbegin(s->ix, &w));
		CHECK_OK(shl_index_wput(w, SHL_DB_LAYERS, a.info.diff_id, v, len));
		CHECK_OK(shl_index_wput(w, SHL_DB_BLOBS, im.config, "application/json\n{}", 18));
		CHECK_OK(shl_index_wcommit(w));
		free(v);
	}
	/* fast: b's missing EROFS and the blob; a's tar passes */
	g_log[0] = '\0';
	CHECK_OK(shl_store_fsck(s, 0, &r, on_msg, NULL));
	CHECK(r.problems == 2 && strstr(g_log, "content has digest") && !strstr(g_log, "tar content"));
	/* deep: also a's sha256 */
	g_log[0] = '\0';
	CHECK_OK(shl_store_fsck(s, SHL_FSCK_DEEP, &r, on_msg, NULL));
	CHECK(r.problems == 3 && strstr(g_log, "tar content has digest"));
	shl_store_close(s);
	free(t1.p);
	free(t2.p);
}

/* ---- 6. the index map grows --------------------------------------------------- */

static void test_map_growth(void)
{
	char root[512], d[8][72], c;
	size_t saved = shl_index__initial_mapsize;
	shl_store *s = NULL;
	shl_batch *b = NULL;
	int ready[2], go[2];
	pid_t pid;
	size_t n = 1u << 20;
	char *blob = malloc(n);

	mkroot("m", root, sizeof(root));
	shl_index__initial_mapsize = 256u << 10;
	if (pipe(ready) || pipe(go))
		abort();
	/* the child opens the store while it is small, the parent grows it, the
	 * child then reads and writes through the grown map */
	CHECK_OK(shl_store_open(&s, root));
	shl_store_close(s);
	s = NULL;
	if ((pid = fork()) == 0) {
		char *v = NULL;
		size_t len;
		shl_wtxn *w;
		alarm(60);
		if (shl_store_open(&s, root) || write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		for (int i = 0; i < 8; i++) {
			char key[72];
			if (read(go[0], key, 71) != 71)
				_exit(1);
			key[71] = '\0';
			if (shl_index_get(s->ix, SHL_DB_BLOBS, key, &v, &len) || len != n + 25) /* "application/octet-stream\n" + bytes */
				_exit(2);
			free(v);
		}
		if (shl_index_wbegin(s->ix, &w) || shl_index_wput(w, SHL_DB_META, "child", "1", 1) || shl_index_wcommit(w))
			_exit(3);
		shl_store_close(s);
		_exit(0);
	}
	CHECK(read(ready[0], &c, 1) == 1);
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		goto out;
	CHECK_OK(shl_batch_new(&b));
	for (int i = 0; i < 8; i++) {
		memset(blob, 'a' + i, n);
		digest_of(blob, n, d[i]);
		CHECK_OK(shl_batch_put_blob(b, d[i], "application/octet-stream", blob, n));
	}
	CHECK_OK(shl_store_commit(s, b));
	shl_batch_free(b);
	CHECK(shl_index_mapsize(s->ix) >= (8u << 20));
	CHECK(count_db(s, SHL_DB_BLOBS) == 8);
	CHECK(write(go[1], "g", 1) == 1);
	for (int i = 0; i < 8; i++)
		CHECK(write(go[1], d[i], 71) == 71);
	{
		int st = wait_child(pid);
		CHECK(st == 0);
		if (st)
			fprintf(stderr, "map growth: child exited with %d\n", st);
	}
	{
		char *v = NULL;
		CHECK_OK(shl_index_get(s->ix, SHL_DB_META, "child", &v, NULL));
		free(v);
	}
	shl_store_close(s);
	s = NULL;
	/* reopened with the small initial size: the file's size wins */
	CHECK_OK(shl_store_open(&s, root));
	if (s) {
		char *data = NULL;
		size_t len;
		CHECK_OK(shl_store__get_blob(s, d[7], &data, &len, NULL));
		CHECK(len == n && data[0] == 'h' && data[n - 1] == 'h');
		free(data);
		shl_store_close(s);
	}
out:
	for (int i = 0; i < 2; i++) {
		close(ready[i]);
		close(go[i]);
	}
	shl_index__initial_mapsize = saved;
	free(blob);
}

/* ---- 7. open: default root, schema, stale temp files -------------------------- */

static void test_open(void)
{
	char root[512], stale[600], got[600];
	shl_store *s = NULL;
	shl_wtxn *w;

	mkroot("o", root, sizeof(root));
	setenv("SHALE_ROOT", root, 1);
	CHECK_OK(shl_store_open(&s, NULL));
	CHECK(s && !strcmp(shl_store_root(s), root));
	unsetenv("SHALE_ROOT");
	if (!s)
		return;
	/* a staging dir nobody holds: swept by the next open */
	snprintf(stale, sizeof(stale), "%s/tmp/1-zzzzzz", root);
	CHECK(mkdir(stale, 0755) == 0);
	snprintf(got, sizeof(got), "%s/tmp", root);
	CHECK(count_dir(got, NULL) == 2);
	CHECK_OK(shl_index_wbegin(s->ix, &w));
	CHECK_OK(shl_index_wput(w, SHL_DB_META, "schema", "2", 1));
	CHECK_OK(shl_index_wcommit(w));
	shl_store_close(s);
	s = NULL;
	CHECK(count_dir(got, NULL) == 1); /* own dir removed at close, stale one still there */
	CHECK_ERR(shl_store_open(&s, root), SHL_EUNSUPPORTED);
	CHECK(!exists(stale)); /* swept by the open even though it then failed */
	CHECK(strstr(shl_error_last(), "schema") != NULL);
}


int main(void)
{
	if (storelib_init("shl-store-maint"))
		return 1;
	test_gc();
	test_fsck();
	test_map_growth();
	test_open();
	storelib_cleanup();
	return check_result("test_store_maint");
}
