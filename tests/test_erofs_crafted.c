/*
 * tests/test_erofs_crafted.c - the EROFS reader (shale/erofs.h) on a
 * hand-crafted 512-byte-block image with a device table, 8-byte chunk
 * indexes (device 1, holes), a 4-byte block map into the unified address
 * space, a compact inode, inline/shared/long-prefix xattrs, read with a
 * device file and as flatdev; then broken in targeted ways: errors, never
 * crashes. (test_erofs_read.c: images made by mkfs.erofs.)
 */
#include "erofslib.h"

/* ---- the hand-crafted 512-byte-block image -------------------------------- */

/* Layout (blksz 512): SB @1024, device slot @1152, root dir nid 40 @1280
 * (extended, FLAT_INLINE dirents ". .. c f g h"), block 3: nid 48 "f"
 * (CHUNK_BASED, 8-byte indexes, 1 KiB chunks: dev1 blk0, hole, dev1 blk4),
 * nid 52 "g" (4-byte block map, 512 B chunks: unified blk 9 = dev1 blk1,
 * primary blk4, hole), nid 56 "h" (compact FLAT_PLAIN @blk5, xattrs: shared
 * security.sel1, inline user.abc and long-prefix trusted.overlay.opaque),
 * nid 60 "c" (compact chr 300:70000). Block 7: shared xattr + prefix table.
 * Primary = 8 blocks, device 1 (uniaddr 8) = 8 blocks. */
#define C_IMG 4096
#define C_DEV 4096

static uint8_t dev_byte(size_t i) { return (uint8_t)(i * 7 + 3 + (i >> 9)); }

static uint8_t *ext_inode(uint8_t *p, unsigned layout, unsigned mode, uint64_t size, uint32_t i_u)
{
	put16(p, (uint16_t)(1 | layout << 1));
	put16(p + 4, (uint16_t)mode);
	put64(p + 8, size);
	put32(p + 16, i_u);
	put32(p + 44, S_ISDIR(mode) ? 2 : 1);
	return p;
}

static void craft(uint8_t *img, uint8_t *dev)
{
	uint8_t *sb = img + 1024, *p;
	static const char *names[6] = { ".", "..", "c", "f", "g", "h" };
	static const uint64_t nids[6] = { 40, 40, 60, 48, 52, 56 };
	static const uint8_t types[6] = { 2, 2, 3, 1, 1, 1 };
	unsigned no = 72;

	memset(img, 0, C_IMG);
	for (size_t i = 0; i < C_DEV; i++)
		dev[i] = dev_byte(i);
	put32(sb, 0xE0F5E1E2u);
	put32(sb + 8, 1);                         /* SB_CHKSUM */
	sb[12] = 9;
	put16(sb + 14, 40);                       /* root nid */
	put64(sb + 16, 5);                        /* inodes */
	put64(sb + 24, 1700000000);               /* epoch */
	put32(sb + 32, 7);                        /* fixed_nsec */
	put32(sb + 36, 8);                        /* blocks */
	put32(sb + 44, 7);                        /* xattr_blkaddr */
	memcpy(sb + 64, "crafted", 7);
	put32(sb + 80, 0x4 | 0x8 | 0x40);         /* CHUNKED_FILE | DEVICE_TABLE | XATTR_PREFIXES */
	put16(sb + 86, 1); put16(sb + 88, 9);     /* one device, slot at 1152 */
	sb[91] = 1; put32(sb + 92, 3648 / 4);     /* one long prefix, at 3648 */
	put32(img + 1152 + 64, 8);                /* device blocks */
	put32(img + 1152 + 68, 8);                /* uniaddr */
	/* root: extended FLAT_INLINE dir with 79 bytes of dirents */
	p = ext_inode(img + 1280, 2, S_IFDIR | 0755, 79, 0xFFFFFFFFu);
	put64(p + 32, 1600000000);
	for (int i = 0; i < 6; i++) {
		put64(p + 64 + 12 * i, nids[i]);
		put16(p + 64 + 12 * i + 8, (uint16_t)no);
		p[64 + 12 * i + 10] = types[i];
		memcpy(p + 64 + no, names[i], strlen(names[i]));
		no += (unsigned)strlen(names[i]);
	}
	/* f: 2500 bytes, chunkbits 10, indexes at 1600 */
	p = ext_inode(img + 1536, 4, S_IFREG | 0644, 2500, 0x20 | 1);
	put16(p + 64 + 2, 1); put32(p + 64 + 4, 0);
	put16(p + 72 + 2, 1); put32(p + 72 + 4, 0xFFFFFFFFu);
	put16(p + 80 + 2, 1); put32(p + 80 + 4, 4);
	/* g: 1200 bytes, chunkbits 9, block map at 1728 */
	p = ext_inode(img + 1664, 4, S_IFREG | 0600, 1200, 0);
	put32(p + 64, 9); put32(p + 68, 4); put32(p + 72, 0xFFFFFFFFu);
	for (int i = 0; i < 512; i++)
		img[2048 + i] = (uint8_t)(0xA0 ^ i);
	/* h: compact, FLAT_PLAIN at block 5, 700 bytes, 40 bytes of xattrs */
	p = img + 1792;
	put16(p + 2, 8); put16(p + 4, S_IFREG | 0640); put16(p + 6, 1);
	put32(p + 8, 700); put32(p + 12, 5); put32(p + 16, 5);
	put16(p + 24, 7); put16(p + 26, 8);
	p[32 + 4] = 1;                    /* h_shared_count */
	put32(p + 32 + 12, 0);            /* shared id 0 */
	p[48] = 3; p[49] = 1; put16(p + 50, 2); memcpy(p + 52, "abcxy", 5);
	p[60] = 6; p[61] = 0x80; put16(p + 62, 1); memcpy(p + 64, "opaquey", 7);
	for (int i = 0; i < 700; i++)
		img[2560 + i] = (uint8_t)(i * 13);
	/* c: compact chr */
	p = img + 1920;
	put16(p + 4, S_IFCHR | 0600); put16(p + 6, 1);
	put32(p + 16, (70000 & 0xff) | (300u << 8) | ((70000u & ~0xffu) << 12));
	/* block 7: shared xattr security.sel1=label, long prefix trusted.overlay. */
	p = img + 3584;
	p[0] = 4; p[1] = 6; put16(p + 2, 5); memcpy(p + 4, "sel1label", 9);
	put16(img + 3648, 9); img[3650] = 4; memcpy(img + 3651, "overlay.", 8);
	fix_crc(img, C_IMG);
}

static void expect_file(shl_erofs *e, const char *path, const uint8_t *want, size_t len)
{
	uint8_t buf[4096];
	uint64_t nid = 0;
	size_t got = 0;

	CHECK_OK(shl_erofs_lookup(e, path, &nid));
	CHECK_OK(shl_erofs_pread(e, nid, buf, sizeof(buf), 0, &got));
	CHECK(got == len && !memcmp(buf, want, len));
	/* reads starting inside each piece */
	for (size_t off = 1; off < len; off += 509) {
		CHECK_OK(shl_erofs_pread(e, nid, buf, 700, off, &got));
		CHECK(got == (len - off < 700 ? len - off : 700) && !memcmp(buf, want + off, got));
	}
}

struct ext_rec {
	uint64_t v[8][4];
	int n;
};

static int ext_rec_cb(void *ctx, uint64_t fo, int dev, uint64_t off, uint64_t len)
{
	struct ext_rec *r = ctx;
	if (r->n < 8) {
		r->v[r->n][0] = fo;
		r->v[r->n][1] = (uint64_t)(int64_t)dev;
		r->v[r->n][2] = off;
		r->v[r->n][3] = len;
	}
	r->n++;
	return 0;
}

static int stop_dirent(void *ctx, const char *name, size_t len, uint64_t nid, unsigned type)
{
	(void)name; (void)len; (void)nid; (void)type;
	return ++*(int *)ctx == 2 ? 7 : 0;
}

static int stop_walk(void *ctx, const char *path, const shl_erofs_stat *st)
{
	(void)st;
	return !strcmp(path, "g") ? ++*(int *)ctx + 4 : 0;
}

static void check_crafted(shl_erofs *e)
{
	uint8_t f[2500], g[1200], h[700];
	shl_erofs_stat st;
	shl_erofs_info info;
	struct xlist xl;
	struct ext_rec r;
	uint64_t nid = 0;
	size_t got;
	int n = 0;

	for (int i = 0; i < 2500; i++)
		f[i] = i < 1024 ? dev_byte((size_t)i) : i < 2048 ? 0 : dev_byte((size_t)i);
	for (int i = 0; i < 1200; i++)
		g[i] = i < 512 ? dev_byte(512 + (size_t)i) : i < 1024 ? (uint8_t)(0xA0 ^ (i - 512)) : 0;
	for (int i = 0; i < 700; i++)
		h[i] = (uint8_t)(i * 13);
	shl_erofs_get_info(e, &info);
	CHECK(info.block_size == 512 && info.root_nid == 40 && info.extra_devices == 1);
	CHECK(info.device_blocks == 8 && info.blocks == 8 && !strcmp(info.volume, "crafted"));
	expect_file(e, "f", f, sizeof(f));
	expect_file(e, "/g", g, sizeof(g));
	expect_file(e, "h", h, sizeof(h));
	CHECK_OK(shl_erofs_lookup(e, "h", &nid));
	CHECK_OK(shl_erofs_getattr(e, nid, &st));
	CHECK(st.uid == 7 && st.gid == 8 && st.mtime == 1700000005 && st.mtime_nsec == 7);
	CHECK(st.layout == 0 && st.size == 700 && st.mode == (S_IFREG | 0640));
	memset(&xl, 0, sizeof(xl));
	CHECK_OK(shl_erofs_xattrs(e, nid, xattr_collect, &xl));
	CHECK(xl.n == 3);
	CHECK(!strcmp(xl.v[0].name, "user.abc") && xl.v[0].len == 2 && !memcmp(xl.v[0].val, "xy", 2));
	CHECK(!strcmp(xl.v[1].name, "trusted.overlay.opaque") && xl.v[1].len == 1);
	CHECK(!strcmp(xl.v[2].name, "security.sel1") && !memcmp(xl.v[2].val, "label", 5));
	CHECK_OK(shl_erofs_lookup(e, "c", &nid));
	CHECK_OK(shl_erofs_getattr(e, nid, &st));
	CHECK(S_ISCHR(st.mode) && st.rdev_major == 300 && st.rdev_minor == 70000);
	CHECK_ERR(shl_erofs_pread(e, nid, f, 1, 0, &got), SHL_EINVAL);
	CHECK_ERR(shl_erofs_readlink(e, nid, (char *)f, 10), SHL_EINVAL);
	CHECK_ERR(shl_erofs_readdir(e, nid, stop_dirent, &n), SHL_EINVAL);
	/* callbacks stop readdir and the walk with their own value */
	CHECK(shl_erofs_readdir(e, 40, stop_dirent, &n) == 7 && n == 2);
	n = 0;
	CHECK(shl_erofs_walk(e, stop_walk, &n) == 5 && n == 1);
	memset(&r, 0, sizeof(r));
	CHECK_OK(shl_erofs_lookup(e, "f", &nid));
	CHECK_OK(shl_erofs_extents(e, nid, ext_rec_cb, &r));
	CHECK(r.n == 3 && r.v[0][1] == 1 && r.v[0][2] == 0 && r.v[0][3] == 1024);
	CHECK(r.v[1][0] == 1024 && r.v[1][1] == (uint64_t)-1 && r.v[1][3] == 1024);
	CHECK(r.v[2][1] == 1 && r.v[2][2] == 2048 && r.v[2][3] == 452);
	memset(&r, 0, sizeof(r));
	CHECK_OK(shl_erofs_lookup(e, "g", &nid));
	CHECK_OK(shl_erofs_extents(e, nid, ext_rec_cb, &r));
	CHECK(r.n == 3 && r.v[0][1] == 1 && r.v[0][2] == 512 && r.v[1][1] == 0 && r.v[1][2] == 2048);
	CHECK(r.v[2][1] == (uint64_t)-1 && r.v[2][3] == 176);
}

/* A targeted break of the crafted image: write `val` (`width` bytes) at
 * `off`, fix the checksum (unless stage 2), and expect `code` from open
 * (stage 1, 2) or from reading everything (stage 0). */
struct patch {
	const char *what;
	unsigned off, width;
	uint64_t val;
	int code, stage;
};

static const struct patch patches[] = {
	{ "checksum", 1100, 1, 1, SHL_EFORMAT, 2 },
	{ "unknown incompat bit", 1024 + 81, 1, 0x02, SHL_EUNSUPPORTED, 1 },
	{ "block size 8K", 1024 + 12, 1, 13, SHL_EUNSUPPORTED, 1 },
	{ "magic", 1024, 1, 0, SHL_EFORMAT, 1 },
	{ "root not a dir", 1024 + 14, 2, 56, SHL_EFORMAT, 1 },
	{ "device table beyond the image", 1024 + 88, 2, 500, SHL_EFORMAT, 1 },
	{ "de[0].nameoff", 1344 + 8, 2, 70, SHL_EFORMAT, 0 },
	{ "nameoffs decreasing", 1344 + 36 + 8, 2, 74, SHL_EFORMAT, 0 },
	{ "names unsorted", 1344 + 76, 2, 'g' | 'f' << 8, SHL_EFORMAT, 0 },
	{ "slash in a name", 1344 + 75, 1, '/', SHL_EFORMAT, 0 },
	{ "inline data crossing a block", 1280 + 8, 8, 300, SHL_EFORMAT, 0 },
	{ "directory is its own ancestor", 1344 + 24, 8, 40, SHL_EFORMAT, 0 },
	{ "huge nid", 1344 + 36, 8, 1ull << 60, SHL_EFORMAT, 0 },
	{ "compressed layout", 1792, 2, 1 << 1, SHL_EUNSUPPORTED, 0 },
	{ "layout 7", 1792, 2, 7 << 1, SHL_EUNSUPPORTED, 0 },
	{ "bad file type", 1792 + 4, 2, 0170000, SHL_EFORMAT, 0 },
	{ "48-bit chunks", 1536 + 16, 4, 0x41, SHL_EUNSUPPORTED, 0 },
	{ "chunk beyond the device", 1536 + 80 + 4, 4, 100, SHL_EFORMAT, 0 },
	{ "xattr value overruns", 1792 + 50, 2, 200, SHL_EFORMAT, 0 },
	{ "too many shared xattrs", 1792 + 36, 1, 200, SHL_EFORMAT, 0 },
	{ "unknown xattr index", 1792 + 49, 1, 9, SHL_EUNSUPPORTED, 0 },
	{ "long prefix id", 1792 + 61, 1, 0x81, SHL_EFORMAT, 0 },
};

static void crafted_bad(const struct patch *pt)
{
	static uint8_t img[C_IMG], dev[C_DEV];
	shl_erofs *e = NULL;
	int fds[2], rc;

	craft(img, dev);
	for (unsigned i = 0; i < pt->width; i++)
		img[pt->off + i] = (uint8_t)(pt->val >> (8 * i));
	if (pt->stage != 2)
		fix_crc(img, C_IMG);
	if (pt->stage) {
		rc = open_mem(&e, img, C_IMG, dev, C_DEV, fds);
		close_mem(e, fds);
	} else {
		rc = read_all_mem(img, C_IMG, dev, C_DEV);
	}
	if (rc != pt->code)
		fprintf(stderr, "  crafted '%s': got %d, expected %d (%s)\n", pt->what, rc, pt->code, shl_error_last());
	CHECK(rc == pt->code);
}

static void test_crafted(void)
{
	static uint8_t img[C_IMG + C_DEV], dev[C_DEV];
	shl_erofs *e = NULL;
	int fds[2];
	uint64_t nid;
	size_t got;
	uint8_t buf[64];

	craft(img, dev);
	/* the device as its own file */
	CHECK_OK(open_mem(&e, img, C_IMG, dev, C_DEV, fds));
	if (e)
		check_crafted(e);
	close_mem(e, fds);
	/* flatdev: the device appended to the primary at uniaddr (block 8) */
	memcpy(img + C_IMG, dev, C_DEV);
	CHECK_OK(open_mem(&e, img, C_IMG + C_DEV, NULL, 0, fds));
	if (e)
		check_crafted(e);
	close_mem(e, fds);
	/* no device at all: metadata and primary data work, device data fails */
	CHECK_OK(open_mem(&e, img, C_IMG, NULL, 0, fds));
	CHECK_OK(shl_erofs_lookup(e, "h", &nid));
	CHECK_OK(shl_erofs_pread(e, nid, buf, sizeof(buf), 0, &got));
	CHECK_OK(shl_erofs_lookup(e, "f", &nid));
	CHECK_ERR(shl_erofs_pread(e, nid, buf, sizeof(buf), 0, &got), SHL_EFORMAT);
	CHECK(strstr(shl_error_last(), "erofs nid 48") != NULL);
	close_mem(e, fds);

	for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		crafted_bad(&patches[i]);
		if (strstr(patches[i].what, "ancestor"))
			CHECK(strstr(shl_error_last(), "own ancestor") != NULL);
		if (strstr(patches[i].what, "compressed"))
			CHECK(strstr(shl_error_last(), "compressed") != NULL);
	}
}


int main(void)
{
	test_crafted();
	return check_result("test_erofs_crafted");
}
