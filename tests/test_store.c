/*
 * tests/test_store.c - the store core against a real LMDB index in a mkdtemp
 * root: staging layers (plain and gzip) and committing one batch with blobs,
 * layer records, an alias, an image and refs; reopening and querying; a batch
 * that names a missing layer commits nothing (root byte-identical); two
 * processes importing the same layer (one waits and skips); two processes
 * locking layers in opposite orders (deadlock detected, both succeed).
 * Maintenance (gc, prune, fsck, map growth, open) is in test_store_maint.c.
 */
#include "storelib.h"

/* ---- 1. import, commit, reopen, query --------------------------------------- */

static int collect_str(void *ctx, const char *s)
{
	char (*v)[72] = ctx;
	for (int i = 0; i < 8; i++) {
		if (!v[i][0]) {
			snprintf(v[i], 72, "%s", s);
			return 0;
		}
	}
	return 0;
}

struct listed {
	int n;
	char tag[600], id[72];
	uint64_t layers;
};

static int on_image(void *ctx, const shl_image_summary *img)
{
	struct listed *l = ctx;
	l->n++;
	snprintf(l->id, sizeof(l->id), "%s", img->id);
	if (img->tags[0])
		snprintf(l->tag, sizeof(l->tag), "%s", img->tags[0]);
	l->layers = img->layers;
	return 0;
}

static void test_import_query(void)
{
	char root[512], known[72], gzd[72], tar[4200], erofs[4200], got[72], ref[700], snapa[72], snapb[72];
	char users[8][72] = { { 0 } }, order[8][72] = { { 0 } };
	struct buf t1 = make_tar("one"), t2 = make_tar("two"), g2 = gzip_buf(&t2);
	shl_staged a, b;
	shl_batch *batch = NULL;
	shl_store *s = NULL;
	struct img im;
	struct listed l = { 0 };
	struct stat st;
	char *data = NULL, *media = NULL, *json = NULL, *meta = NULL;
	size_t len;
	int calls;

	mkroot("q", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	snprintf(tar, sizeof(tar), "%s/index", root);
	CHECK(exists(tar));
	snprintf(tar, sizeof(tar), "%s/layers", root);
	CHECK(exists(tar));
	snprintf(tar, sizeof(tar), "%s/tmp", root);
	CHECK(exists(tar));
	CHECK_OK(shl_index_get(s->ix, SHL_DB_META, "schema", &meta, NULL));
	CHECK(meta && !strcmp(meta, "1"));
	free(meta);

	digest_of(g2.p, g2.n, gzd);
	CHECK_OK(stage_buf(s, &t1, NULL, &a, known, NULL));
	CHECK(known[0] == '\0' && a.info.compression == 0 && a.info.tar_size == t1.n);
	CHECK_OK(stage_buf(s, &g2, gzd, &b, known, NULL));
	CHECK(known[0] == '\0' && b.info.compression == 1 && !strcmp(b.info.raw_digest, gzd));
	CHECK(!strcmp(a.info.raw_digest, a.info.diff_id));
	/* the per-layer lock file exists while staged */
	snprintf(tar, sizeof(tar), "%s/tmp/%s.lock", root, gzd + 7);
	CHECK(exists(tar));

	CHECK_OK(shl_batch_new(&batch));
	{
		/* blobs: capped, and their digest is checked */
		size_t big = (4u << 20) + 1;
		char *p = calloc(1, big), d[72];
		digest_of(p, big, d);
		CHECK_ERR(shl_batch_put_blob(batch, d, "application/vnd.oci.image.manifest.v1+json", p, big), SHL_ELIMIT);
		CHECK_OK(shl_batch_put_blob(batch, d, "application/vnd.oci.image.config.v1+json", p, big));
		CHECK_ERR(shl_batch_put_blob(batch, gzd, "application/json", "{}", 2), SHL_EDIGEST);
		free(p);
	}
	CHECK_OK(shl_batch_add_layer(batch, &a, NULL));
	CHECK_OK(shl_batch_add_layer(batch, &b, "application/vnd.oci.image.layer.v1.tar+gzip"));
	{
		const char *diffs[] = { a.info.diff_id, b.info.diff_id }, *blobs[] = { a.info.diff_id, gzd };
		CHECK_OK(add_image(batch, "q", diffs, blobs, 2, "docker.io/library/testimg:1", &im));
	}
	CHECK_OK(shl_batch_set_ref(batch, "docker.io/library/testimg@sha256:" "1111111111111111111111111111111111111111111111111111111111111111",
				   im.manifest));
	/* nothing visible before the commit */
	CHECK(!shl_store_layer_has(s, a.info.diff_id));
	CHECK_ERR(shl_store_resolve(s, "testimg:1", got), SHL_ENOTFOUND);
	CHECK_OK(shl_store_commit(s, batch));
	shl_batch_free(batch);
	CHECK(!exists(tar)); /* lock released (and its file removed) after the batch */
	CHECK(count_dir(s->tmp_dir, NULL) == 1); /* only the staging dir's own lock */
	shl_store_close(s);
	s = NULL;

	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		goto out;
	CHECK(shl_store_layer_has(s, a.info.diff_id) && shl_store_layer_has(s, b.info.diff_id));
	CHECK_OK(shl_store_layer_paths(s, b.info.diff_id, tar, sizeof(tar), erofs, sizeof(erofs)));
	CHECK(stat(tar, &st) == 0 && (uint64_t)st.st_size == b.info.tar_size && st.st_size == (off_t)t2.n);
	CHECK(stat(erofs, &st) == 0 && (uint64_t)st.st_size == b.info.erofs_size);
	CHECK_OK(shl_store__alias(s, gzd, known));
	CHECK(!strcmp(known, b.info.diff_id));
	CHECK_ERR(shl_store__alias(s, a.info.diff_id, known), SHL_ENOTFOUND); /* plain: no alias */

	CHECK_OK(shl_store_resolve(s, "testimg:1", got));
	CHECK(!strcmp(got, im.manifest));
	CHECK_OK(shl_store_resolve(s, "docker.io/library/testimg:1", got));
	CHECK(!strcmp(got, im.manifest));
	snprintf(ref, sizeof(ref), "%.19s", im.config + 7); /* short image ID */
	CHECK_OK(shl_store_resolve(s, ref, got));
	CHECK(!strcmp(got, im.manifest));
	CHECK_OK(shl_store_resolve(s, im.config, got));
	CHECK(!strcmp(got, im.manifest));
	CHECK_OK(shl_store_resolve(s, "testimg@sha256:1111111111111111111111111111111111111111111111111111111111111111",
				   got));
	CHECK(!strcmp(got, im.manifest));
	snprintf(ref, sizeof(ref), "testimg@%s", im.manifest);
	CHECK_OK(shl_store_resolve(s, ref, got));
	CHECK_ERR(shl_store_resolve(s, "testimg:2", got), SHL_ENOTFOUND);
	CHECK_ERR(shl_store_resolve(s, "other", got), SHL_ENOTFOUND);

	CHECK_OK(shl_store__get_blob(s, im.config, &data, &len, &media));
	CHECK(data && strstr(data, "SALT=q") && media && !strcmp(media, "application/vnd.oci.image.config.v1+json"));
	free(data);
	free(media);
	CHECK_ERR(shl_store__get_blob(s, gzd, &data, &len, NULL), SHL_ENOTFOUND);

	CHECK_OK(shl_store_list(s, on_image, &l));
	CHECK(l.n == 1 && l.layers == 2 && !strcmp(l.id, im.config) && !strcmp(l.tag, "docker.io/library/testimg:1"));
	CHECK_OK(shl_store_image_layers(s, "testimg:1", collect_str, order));
	CHECK(!strcmp(order[0], a.info.diff_id) && !strcmp(order[1], b.info.diff_id) && !order[2][0]);
	CHECK_OK(shl_store_layer_users(s, b.info.diff_id, collect_str, users));
	CHECK(!strcmp(users[0], im.manifest) && !users[1][0]);
	CHECK_OK(shl_store_inspect(s, "testimg:1", &json));
	CHECK(json && strstr(json, im.config));
	free(json);

	/* a stored layer is not read again: the source is never called */
	snapshot(root, snapa);
	{
		char da[72], db[72];
		struct buf t3 = make_tar("three");
		snprintf(da, sizeof(da), "%s", a.info.diff_id);
		snprintf(db, sizeof(db), "%s", b.info.diff_id);
		CHECK_OK(stage_buf(s, &g2, gzd, &b, known, &calls)); /* by alias */
		CHECK(!strcmp(known, db) && calls == 0 && !b.tar_tmp[0] && !b.lock);
		CHECK_OK(stage_buf(s, &t1, da, &a, known, &calls)); /* by diff_id */
		CHECK(!strcmp(known, da) && calls == 0 && !a.tar_tmp[0]);
		/* content that is not what the key says: EDIGEST, nothing kept */
		CHECK_ERR(stage_buf(s, &t3, "sha256:2222222222222222222222222222222222222222222222222222222222222222", &a,
				    known, &calls),
			  SHL_EDIGEST);
		CHECK(calls > 0 && count_dir(s->tmp_dir, NULL) == 1);
		free(t3.p);
	}
	snapshot(root, snapb);
	CHECK(!strcmp(snapa, snapb));
out:
	shl_store_close(s);
	free(t1.p);
	free(t2.p);
	free(g2.p);
}

/* ---- 2. a batch naming a missing layer commits nothing ----------------------- */

static void test_failed_batch(void)
{
	char root[512], known[72], before[72], after[72], got[72];
	struct buf t1 = make_tar("f1"), t2 = make_tar("f2");
	shl_staged a, b;
	shl_batch *batch = NULL;
	shl_store *s = NULL;
	struct img im, im2;

	mkroot("f", root, sizeof(root));
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		return;
	/* something stored first, so the snapshot is not of an empty store */
	CHECK_OK(stage_buf(s, &t1, NULL, &a, known, NULL));
	CHECK_OK(shl_batch_new(&batch));
	CHECK_OK(shl_batch_add_layer(batch, &a, NULL));
	{
		const char *d[] = { a.info.diff_id };
		CHECK_OK(add_image(batch, "f1", d, d, 1, "docker.io/library/f:1", &im));
	}
	CHECK_OK(shl_store_commit(s, batch));
	shl_batch_free(batch);

	snapshot(root, before);
	CHECK_OK(stage_buf(s, &t2, NULL, &b, known, NULL));
	CHECK(count_dir(s->tmp_dir, NULL) == 3); /* lock + staged tar + erofs */
	CHECK_OK(shl_batch_new(&batch));
	CHECK_OK(shl_batch_add_layer(batch, &b, NULL));
	{
		const char *d[] = { b.info.diff_id, "sha256:3333333333333333333333333333333333333333333333333333333333333333" };
		CHECK_OK(add_image(batch, "f2", d, d, 2, "docker.io/library/f:1", &im2)); /* would retag */
	}
	CHECK_ERR(shl_store_commit(s, batch), SHL_ENOTFOUND);
	CHECK(strstr(shl_error_last(), "3333333333") != NULL);
	shl_batch_free(batch);
	CHECK(count_dir(s->tmp_dir, NULL) == 1);
	snapshot(root, after);
	CHECK(!strcmp(before, after));
	CHECK(!shl_store_layer_has(s, b.info.diff_id));
	CHECK_OK(shl_store_resolve(s, "f:1", got));
	CHECK(!strcmp(got, im.manifest));

	/* a stored layer whose file vanished is refused as well */
	{
		char erofs[4200];
		shl_store_layer_paths(s, a.info.diff_id, NULL, 0, erofs, sizeof(erofs));
		CHECK(unlink(erofs) == 0);
		CHECK_OK(shl_batch_new(&batch));
		{
			const char *d[] = { a.info.diff_id };
			CHECK_OK(add_image(batch, "f3", d, d, 1, NULL, &im2));
		}
		CHECK_ERR(shl_store_commit(s, batch), SHL_ENOTFOUND);
		shl_batch_free(batch);
		CHECK_ERR(shl_store_resolve(s, im2.config, got), SHL_ENOTFOUND);
	}
	shl_store_close(s);
	free(t1.p);
	free(t2.p);
}

/* ---- 3. two processes import the same layer --------------------------------- */

/* child: stage `t` keyed by `key` (rendezvous through the pipes), commit an
 * image over it. Exit 0 = converted it, 3 = found it stored, 1 = failed. */
static void child_import(const char *root, const struct buf *t, const char *key, const char *salt, int signal_fd,
			 int gate_fd)
{
	struct src src = { t->p, t->n, 0, 0, signal_fd, gate_fd };
	char known[72];
	shl_store *s = NULL;
	shl_staged st;
	shl_batch *b = NULL;
	struct img im;
	const char *d[1];
	int rc;

	if (shl_store_open(&s, root) || shl_batch_new(&b))
		_exit(1);
	if ((rc = shl_store__stage_key(s, key, src_read, &src, &st, known)))
		_exit(1);
	if (!known[0] && shl_batch_add_layer(b, &st, NULL))
		_exit(1);
	d[0] = known[0] ? known : st.info.diff_id;
	if (add_image(b, salt, d, d, 1, NULL, &im) || shl_store_commit(s, b))
		_exit(1);
	shl_batch_free(b);
	shl_store_close(s);
	_exit(known[0] ? 3 : 0);
}


static void test_concurrent_import(void)
{
	char root[512], key[72], tar[4200];
	struct buf t = make_tar("shared");
	int sig[2], gate[2], ra, rb;
	pid_t pa, pb;
	shl_store *s = NULL;
	char c;

	mkroot("c", root, sizeof(root));
	digest_of(t.p, t.n, key);
	CHECK_OK(shl_store_open(&s, root)); /* create it, then let the children work */
	shl_store_close(s);
	s = NULL;
	if (pipe(sig) || pipe(gate))
		abort();
	/* A takes the lock and blocks inside its first read */
	if ((pa = fork()) == 0)
		child_import(root, &t, key, "A", sig[1], gate[0]);
	CHECK(read(sig[0], &c, 1) == 1);
	/* B can only wait for A's lock; then A goes on and commits */
	if ((pb = fork()) == 0)
		child_import(root, &t, key, "B", -1, -1);
	CHECK(write(gate[1], "g", 1) == 1);
	ra = wait_child(pa);
	rb = wait_child(pb);
	CHECK(ra == 0);  /* A converted */
	CHECK(rb == 3);  /* B waited and found it stored */
	close(sig[0]);
	close(sig[1]);
	close(gate[0]);
	close(gate[1]);
	CHECK_OK(shl_store_open(&s, root));
	if (!s)
		goto out;
	CHECK(shl_store_layer_has(s, key));
	CHECK(count_db(s, SHL_DB_IMAGES) == 2 && count_db(s, SHL_DB_LAYERS) == 1);
	snprintf(tar, sizeof(tar), "%s/layers", root);
	CHECK(count_dir(tar, NULL) == 2);
	snprintf(tar, sizeof(tar), "%s/tmp", root);
	CHECK(count_dir(tar, ".lock") == 0);
	shl_store_close(s);
out:
	free(t.p);
}

/* Two processes each hold one layer lock and then want the other's: the
 * kernel refuses one wait (EDEADLK), that one converts without the lock, and
 * both loads succeed. */
static void child_two(const char *root, const struct buf *t1, const char *k1, const struct buf *t2, const char *k2,
		      int ready_fd, int go_fd)
{
	char known1[72], known2[72], c;
	shl_store *s = NULL;
	shl_staged st1, st2;
	shl_batch *b = NULL;
	struct img im;
	const char *d[2];
	int conv = 0;

	alarm(60);
	if (shl_store_open(&s, root) || shl_batch_new(&b))
		_exit(1);
	if (stage_buf(s, t1, k1, &st1, known1, NULL) || known1[0] || shl_batch_add_layer(b, &st1, NULL))
		_exit(1);
	if (write(ready_fd, "r", 1) != 1 || read(go_fd, &c, 1) != 1)
		_exit(1);
	if (stage_buf(s, t2, k2, &st2, known2, NULL))
		_exit(1);
	if (!known2[0]) {
		conv = 1;
		if (shl_batch_add_layer(b, &st2, NULL))
			_exit(1);
	}
	d[0] = st1.info.diff_id;
	d[1] = known2[0] ? known2 : st2.info.diff_id;
	if (add_image(b, k1, d, d, 2, NULL, &im) || shl_store_commit(s, b))
		_exit(1);
	shl_batch_free(b);
	shl_store_close(s);
	_exit(conv ? 0 : 3);
}

static void test_lock_order(void)
{
	char root[512], kx[72], ky[72];
	struct buf tx = make_tar("x"), ty = make_tar("y");
	int r1[2], r2[2], go[2], ra, rb;
	pid_t pa, pb;
	shl_store *s = NULL;
	char c;

	mkroot("d", root, sizeof(root));
	digest_of(tx.p, tx.n, kx);
	digest_of(ty.p, ty.n, ky);
	CHECK_OK(shl_store_open(&s, root));
	shl_store_close(s);
	s = NULL;
	if (pipe(r1) || pipe(r2) || pipe(go))
		abort();
	if ((pa = fork()) == 0)
		child_two(root, &tx, kx, &ty, ky, r1[1], go[0]);
	if ((pb = fork()) == 0)
		child_two(root, &ty, ky, &tx, kx, r2[1], go[0]);
	CHECK(read(r1[0], &c, 1) == 1 && read(r2[0], &c, 1) == 1);
	CHECK(write(go[1], "gg", 2) == 2);
	ra = wait_child(pa);
	rb = wait_child(pb);
	/* both succeed; at least one converted its second layer itself */
	CHECK((ra == 0 || ra == 3) && (rb == 0 || rb == 3));
	CHECK(ra == 0 || rb == 0);
	for (int i = 0; i < 2; i++) {
		close(r1[i]);
		close(r2[i]);
		close(go[i]);
	}
	CHECK_OK(shl_store_open(&s, root));
	if (s) {
		char tmp[600];
		CHECK(count_db(s, SHL_DB_LAYERS) == 2 && count_db(s, SHL_DB_IMAGES) == 2);
		snprintf(tmp, sizeof(tmp), "%s/layers", root);
		CHECK(count_dir(tmp, NULL) == 4);
		shl_store_close(s);
	}
	free(tx.p);
	free(ty.p);
}


int main(void)
{
	if (storelib_init("shl-store"))
		return 1;
	test_import_query();
	test_failed_batch();
	test_concurrent_import();
	test_lock_order();
	storelib_cleanup();
	return check_result("test_store");
}
