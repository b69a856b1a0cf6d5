/*
 * store/fstree.h - the in-memory file tree of one layer.
 *
 * Built from tar entries in tar order with extraction semantics (later entry
 * wins, implicit parents, hardlinks share an inode, overlay whiteouts), then
 * handed to the EROFS writer. Memory grows with the number of entries and
 * their names/xattrs, never with file data: regular files are a (data_off,
 * size) pair pointing into the stored tar.
 *
 * Internal module: the struct layouts are visible to store/ code.
 */
#ifndef SHL_STORE_FSTREE_H
#define SHL_STORE_FSTREE_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#define SHL_FS_NONE UINT32_MAX

/* Caps on what one layer may contain (hostile input). */
typedef struct shl_fstree_limits {
	uint32_t max_entries;     /* dentries incl. implicit dirs; default 4M */
	uint32_t max_path;        /* bytes of a full path; default 4096 */
	uint32_t max_xattr_size;  /* bytes of one xattr value; default 65535 (EROFS u16) */
	uint32_t max_xattrs_total;/* bytes of all xattrs of one inode; default 256 KiB */
} shl_fstree_limits;

#define SHL_FSTREE_LIMITS_DEFAULT { 4u << 20, 4096, 65535, 256u << 10 }

typedef struct shl_fsxattr {
	char *name;              /* full name, e.g. "security.capability" */
	uint8_t *value;
	uint32_t len;
} shl_fsxattr;

/* inode flags */
#define SHL_FSI_OPAQUE    0x1u  /* dir: ".wh..wh..opq" seen -> trusted.overlay.opaque=y */
#define SHL_FSI_WHITEOUT  0x2u  /* chr 0:0 made from ".wh.NAME" */
#define SHL_FSI_HAS_WH    0x4u  /* dir: has a whiteout child (set by finalize) -> origin="" */
#define SHL_FSI_IMPLICIT  0x8u  /* dir created as an implicit parent */

typedef struct shl_fsinode {
	uint32_t mode;       /* st_mode: type | permission bits incl. suid/sgid/sticky */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_ns;
	uint32_t nlink;      /* set by finalize: dentries (non-dir) or 2 + subdirs (dir) */
	uint64_t size;       /* regular: data bytes; symlink: target length */
	uint64_t data_off;   /* regular: byte offset of the data in the tar (512-aligned) */
	uint32_t rdev_major, rdev_minor;
	uint32_t flags;      /* SHL_FSI_* */
	uint32_t src;        /* regular: which source (tar) holds the data (squash) */
	char *symlink;       /* symlink target (not NUL-counted in size) */
	shl_fsxattr *xattrs; /* sorted by name at finalize */
	uint32_t nxattrs;
	uint32_t dentry;     /* dirs: their (single) dentry */
	/* dirs, after finalize: children dentry indexes sorted bytewise by name */
	uint32_t *children;
	uint32_t nchildren;
	/* scratch for the writer */
	uint64_t nid;
	uint64_t aux;
} shl_fsinode;

typedef struct shl_fsdentry {
	const char *name;    /* one path component, NUL-terminated (root: "") */
	uint16_t name_len;
	uint32_t parent;     /* dentry index of the parent dir (root: itself) */
	uint32_t inode;      /* inode index; SHL_FS_NONE when detached */
	uint32_t next;       /* hash chain */
} shl_fsdentry;

typedef struct shl_fstree shl_fstree;

/* Attributes of one tar entry, as given to shl_fstree_add(). */
typedef struct shl_fsattr {
	uint32_t mode;       /* st_mode with S_IFMT type bits */
	uint32_t uid, gid;
	int64_t mtime;
	uint32_t mtime_ns;
	uint64_t size;       /* regular files */
	uint64_t data_off;   /* regular files; must be 512-aligned */
	uint32_t rdev_major, rdev_minor;
	const char *symlink; /* S_IFLNK: target, copied */
	const char *hardlink;/* non-NULL: this entry is a hardlink to that tar path;
	                        mode/type are ignored */
	uint32_t src;        /* regular files: index of the source holding the data */
} shl_fsattr;

int shl_fstree_new(shl_fstree **out, const shl_fstree_limits *lim /* NULL: defaults */);
void shl_fstree_free(shl_fstree *t);

/*
 * Add one tar entry. `path` is the tar path: leading "./" and "/" ... are
 * normalized ("./a//b/" -> "a/b"; "." or "./" is the root); a ".." component,
 * an absolute path or an empty component name is rejected (SHL_EFORMAT).
 * ".wh.NAME" becomes a whiteout, ".wh..wh..opq" marks the parent opaque,
 * other ".wh..wh.*" are ignored (aufs metadata). On success *ino_out (may be
 * NULL) receives the inode to attach xattrs to, or SHL_FS_NONE if the entry
 * produced no inode of its own (opaque marker, ignored names, hardlinks).
 * Errors name the entry: "tar entry 'a/b': ...".
 */
int shl_fstree_add(shl_fstree *t, const char *path, const shl_fsattr *a, uint32_t *ino_out);

/* Attach an xattr (full name, e.g. "user.x") to inode `ino`; a repeated name
 * replaces the value. Names without a prefix EROFS can store (user., trusted.,
 * security., system.posix_acl_access/default) are rejected (SHL_EUNSUPPORTED). */
int shl_fstree_add_xattr(shl_fstree *t, uint32_t ino, const char *name,
			 const void *value, size_t len);

/* Overlay merging (squash): remove `path` and everything below it (no-op if
 * absent), or drop every child of directory `path` (opaque dir; no-op if
 * absent or not a dir). Paths are normalized as in shl_fstree_add(). */
int shl_fstree_remove(shl_fstree *t, const char *path);
int shl_fstree_clear_dir(shl_fstree *t, const char *path);

/* Compute nlink, sort children and xattrs, flag dirs holding whiteouts.
 * Call once, after the last add. */
int shl_fstree_finalize(shl_fstree *t);

/* Accessors (valid after finalize). The root directory is inode
 * shl_fstree_root(t); detached inodes (replaced, unreachable) have nlink 0
 * and must be skipped by writers. */
uint32_t shl_fstree_root(const shl_fstree *t);
uint32_t shl_fstree_ninodes(const shl_fstree *t);
shl_fsinode *shl_fstree_inode(shl_fstree *t, uint32_t ino);
const shl_fsdentry *shl_fstree_dentry(const shl_fstree *t, uint32_t d);
/* Number of live dentries (tar entries that made a visible path, incl. root). */
uint32_t shl_fstree_nentries(const shl_fstree *t);

#endif
