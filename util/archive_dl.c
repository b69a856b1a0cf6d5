/*
 * util/archive_dl.c - libarchive, loaded on first use.
 *
 * libarchive brings libxml2 and ICU (a 30 MB data library) and a dozen more
 * shared objects into every process: ~5.7 ms of dynamic loading (an empty
 * program linked with shale's other libraries starts in 8.3 ms, 14.1 ms
 * with libarchive), paid by `mount` and `run` on every container start
 * although only load, save, the layer converter and squash --format tar
 * read or write tars. So shale does not link libarchive: the functions it
 * calls are defined here (one line each in LA_FUNCS) and forward to
 * libarchive.so.13, opened once (thread-safe) by the first call. libarchive
 * is a hard dependency of the package: if it cannot be opened, the process
 * stops with one error line.
 */
#include <archive.h>
#include <archive_entry.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* X(return type, name, (parameters), (arguments)); V: returns void */
#define LA_FUNCS(X, V) \
	X(int, archive_entry_acl_next, (struct archive_entry *a0, int a1, int *a2, int *a3, int *a4, int *a5, const char **a6), (a0, a1, a2, a3, a4, a5, a6)) \
	X(int, archive_entry_acl_reset, (struct archive_entry *a0, int a1), (a0, a1)) \
	X(__LA_MODE_T, archive_entry_filetype, (struct archive_entry *a0), (a0)) \
	V(archive_entry_free, (struct archive_entry *a0), (a0)) \
	X(la_int64_t, archive_entry_gid, (struct archive_entry *a0), (a0)) \
	X(const char *, archive_entry_hardlink, (struct archive_entry *a0), (a0)) \
	X(__LA_MODE_T, archive_entry_mode, (struct archive_entry *a0), (a0)) \
	X(time_t, archive_entry_mtime, (struct archive_entry *a0), (a0)) \
	X(int, archive_entry_mtime_is_set, (struct archive_entry *a0), (a0)) \
	X(long, archive_entry_mtime_nsec, (struct archive_entry *a0), (a0)) \
	X(struct archive_entry *, archive_entry_new, (void), ()) \
	X(const char *, archive_entry_pathname, (struct archive_entry *a0), (a0)) \
	X(const char *, archive_entry_pathname_utf8, (struct archive_entry *a0), (a0)) \
	X(dev_t, archive_entry_rdevmajor, (struct archive_entry *a0), (a0)) \
	X(dev_t, archive_entry_rdevminor, (struct archive_entry *a0), (a0)) \
	V(archive_entry_set_filetype, (struct archive_entry *a0, unsigned int a1), (a0, a1)) \
	V(archive_entry_set_gid, (struct archive_entry *a0, la_int64_t a1), (a0, a1)) \
	V(archive_entry_set_hardlink, (struct archive_entry *a0, const char *a1), (a0, a1)) \
	V(archive_entry_set_mode, (struct archive_entry *a0, __LA_MODE_T a1), (a0, a1)) \
	V(archive_entry_set_mtime, (struct archive_entry *a0, time_t a1, long a2), (a0, a1, a2)) \
	V(archive_entry_set_pathname, (struct archive_entry *a0, const char *a1), (a0, a1)) \
	V(archive_entry_set_perm, (struct archive_entry *a0, __LA_MODE_T a1), (a0, a1)) \
	V(archive_entry_set_rdev, (struct archive_entry *a0, dev_t a1), (a0, a1)) \
	V(archive_entry_set_size, (struct archive_entry *a0, la_int64_t a1), (a0, a1)) \
	V(archive_entry_set_symlink, (struct archive_entry *a0, const char *a1), (a0, a1)) \
	V(archive_entry_set_uid, (struct archive_entry *a0, la_int64_t a1), (a0, a1)) \
	X(la_int64_t, archive_entry_size, (struct archive_entry *a0), (a0)) \
	X(int, archive_entry_size_is_set, (struct archive_entry *a0), (a0)) \
	X(int, archive_entry_sparse_count, (struct archive_entry *a0), (a0)) \
	X(const char *, archive_entry_symlink, (struct archive_entry *a0), (a0)) \
	X(const char *, archive_entry_symlink_utf8, (struct archive_entry *a0), (a0)) \
	X(la_int64_t, archive_entry_uid, (struct archive_entry *a0), (a0)) \
	V(archive_entry_xattr_add_entry, (struct archive_entry *a0, const char *a1, const void *a2, size_t a3), (a0, a1, a2, a3)) \
	X(int, archive_entry_xattr_next, (struct archive_entry *a0, const char **a1, const void **a2, size_t *a3), (a0, a1, a2, a3)) \
	X(int, archive_entry_xattr_reset, (struct archive_entry *a0), (a0)) \
	X(int, archive_errno, (struct archive *a0), (a0)) \
	X(const char *, archive_error_string, (struct archive *a0), (a0)) \
	X(la_int64_t, archive_filter_bytes, (struct archive *a0, int a1), (a0, a1)) \
	X(la_ssize_t, archive_read_data, (struct archive *a0, void *a1, size_t a2), (a0, a1, a2)) \
	X(int, archive_read_data_skip, (struct archive *a0), (a0)) \
	X(int, archive_read_free, (struct archive *a0), (a0)) \
	X(struct archive *, archive_read_new, (void), ()) \
	X(int, archive_read_next_header, (struct archive *a0, struct archive_entry **a1), (a0, a1)) \
	X(int, archive_read_open, (struct archive *a0, void *a1, archive_open_callback *a2, archive_read_callback *a3, archive_close_callback *a4), (a0, a1, a2, a3, a4)) \
	X(int, archive_read_open_fd, (struct archive *a0, int a1, size_t a2), (a0, a1, a2)) \
	X(int, archive_read_support_filter_all, (struct archive *a0), (a0)) \
	X(int, archive_read_support_filter_none, (struct archive *a0), (a0)) \
	X(int, archive_read_support_format_tar, (struct archive *a0), (a0)) \
	X(int, archive_write_close, (struct archive *a0), (a0)) \
	X(la_ssize_t, archive_write_data, (struct archive *a0, const void *a1, size_t a2), (a0, a1, a2)) \
	X(int, archive_write_free, (struct archive *a0), (a0)) \
	X(int, archive_write_header, (struct archive *a0, struct archive_entry *a1), (a0, a1)) \
	X(struct archive *, archive_write_new, (void), ()) \
	X(int, archive_write_open, (struct archive *a0, void *a1, archive_open_callback *a2, archive_write_callback *a3, archive_close_callback *a4), (a0, a1, a2, a3, a4)) \
	X(int, archive_write_set_bytes_per_block, (struct archive *a0, int a1), (a0, a1)) \
	X(int, archive_write_set_format_pax_restricted, (struct archive *a0), (a0))

#define PTR_X(ret, name, params, args) static ret(*p_##name) params;
#define PTR_V(name, params, args) static void(*p_##name) params;
LA_FUNCS(PTR_X, PTR_V)

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int loaded;
static void *lib; /* open for the life of the process */

static void load(void)
{
	void *h = dlopen("libarchive.so.13", RTLD_NOW | RTLD_LOCAL);
	const char *missing = NULL;

	if (!h) {
		const char *e = dlerror();
		fprintf(stderr, "shale: error: %s (Debian: libarchive13)\n", e ? e : "libarchive.so.13 not found");
		return;
	}
#define SYM_X(ret, name, params, args) \
	if (!(*(void **)&p_##name = dlsym(h, #name)) && !missing) \
		missing = #name;
#define SYM_V(name, params, args) SYM_X(void, name, params, args)
	LA_FUNCS(SYM_X, SYM_V)
	if (missing) {
		fprintf(stderr, "shale: error: libarchive.so.13 has no %s\n", missing);
		dlclose(h);
		return;
	}
	lib = h;
	loaded = 1;
}

static void need(void)
{
	pthread_once(&once, load);
	if (!loaded)
		exit(1);
}

#define DEF_X(ret, name, params, args) \
	ret name params \
	{ \
		need(); \
		return p_##name args; \
	}
#define DEF_V(name, params, args) \
	void name params \
	{ \
		need(); \
		p_##name args; \
	}
LA_FUNCS(DEF_X, DEF_V)
