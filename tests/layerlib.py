"""Shared helpers for shale's python integration tests.

- `model(tar_path)`: what extracting a layer tar must produce (the oracle), built
  from the tar with python's tarfile and docker/tar extraction rules: later entries
  win, implicit parents are 0755 root dirs with mtime 0, hardlinks share an inode,
  `.wh.NAME` becomes a char 0:0 whiteout and marks its dir with
  trusted.overlay.origin="", `.wh..wh..opq` marks its dir opaque.
- `scan(root)`: the same description of a mounted tree.
- `diff(a, b)`: human-readable differences between two descriptions.
- `check(cond, msg)` / `failures`: a failed check is recorded and printed, the
  test goes on; `skip(why)` exits 77 (ctest's skip code).
"""
import hashlib
import os
import stat
import subprocess
import sys
import tarfile

SHALE = os.environ.get("SHALE_BIN", "shale")
HELPER_MOUNT = os.environ.get("SHALE_helper_mount", "helper_mount")


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(77)


failures = []


def check(cond, msg):
    """record and print a failed check (the test goes on); returns cond"""
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)
    return cond


def norm(name):
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def mtime_ns(ti):
    v = ti.pax_headers.get("mtime")
    if v is not None:
        if "." in v:
            s, frac = v.split(".", 1)
            frac = (frac + "000000000")[:9]
            sec = int(s)
            ns = int(frac)
            if v.startswith("-") and ns:
                sec -= 1
                ns = 1000000000 - ns
            return sec, ns
        return int(v), 0
    return int(ti.mtime), 0


def model(tar_path):
    """Describe the tree a layer tar extracts to: {path: dict}."""
    ents = {"": dict(type="dir", mode=0o755, uid=0, gid=0, mtime=(0, 0), xattrs={}, ino=0)}
    next_ino = [1]
    data = {}

    def new_ino():
        next_ino[0] += 1
        return next_ino[0]

    def remove_tree(p):
        for k in [k for k in ents if k == p or k.startswith(p + "/")]:
            del ents[k]

    def ensure_parents(p):
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            q = "/".join(parts[:i])
            if q not in ents:
                ents[q] = dict(type="dir", mode=0o755, uid=0, gid=0, mtime=(0, 0), xattrs={}, ino=new_ino())

    with tarfile.open(tar_path, "r:*") as t:
        for ti in t:
            p = norm(ti.name)
            base = p.rsplit("/", 1)[-1]
            xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
                      for k, v in ti.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            # tarfile decodes pax values as utf-8 (surrogateescape) or latin-1 for binary: re-encode raw
            for k in list(xattrs):
                raw = ti.pax_headers["SCHILY.xattr." + k]
                try:
                    xattrs[k] = raw.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    xattrs[k] = raw.encode("latin-1")
            for k, v in ti.pax_headers.items():  # libarchive's form: url-encoded name, base64 value
                if k.startswith("LIBARCHIVE.xattr."):
                    import base64
                    import urllib.parse
                    xattrs[urllib.parse.unquote(k[len("LIBARCHIVE.xattr."):])] = base64.b64decode(v + "==")
            if not (ti.isreg() or ti.isdir()):  # Linux: user.* only on files and dirs
                xattrs = {k: v for k, v in xattrs.items() if not k.startswith("user.")}
            if p == "":
                ents[""].update(mode=ti.mode & 0o7777, uid=ti.uid, gid=ti.gid, mtime=mtime_ns(ti), xattrs=xattrs)
                continue
            ensure_parents(p)
            parent = p.rsplit("/", 1)[0] if "/" in p else ""
            if base == ".wh..wh..opq":
                ents[parent]["xattrs"]["trusted.overlay.opaque"] = b"y"
                continue
            if base.startswith(".wh..wh."):
                continue
            if base.startswith(".wh."):
                p = (parent + "/" if parent else "") + base[4:]
                remove_tree(p)
                ents[p] = dict(type="chr", mode=0, uid=ti.uid, gid=ti.gid, mtime=mtime_ns(ti), xattrs={},
                               rdev=(0, 0), ino=new_ino(), whiteout=True)
                continue
            if ti.islnk():
                target = ents[norm(ti.linkname)]
                if p in ents and ents[p] is not target:
                    remove_tree(p)
                ents[p] = target
                continue
            old = ents.get(p)
            e = dict(mode=ti.mode & 0o7777, uid=ti.uid, gid=ti.gid, mtime=mtime_ns(ti), xattrs=xattrs)
            if ti.isdir():
                if old is not None and old["type"] == "dir":
                    old.update(e)
                    continue
                e["type"] = "dir"
            elif ti.isreg():
                f = t.extractfile(ti)
                e.update(type="reg", size=ti.size, sha256=hashlib.sha256(f.read()).hexdigest())
            elif ti.issym():
                e.update(type="lnk", target=ti.linkname)
            elif ti.ischr() or ti.isblk():
                e.update(type="chr" if ti.ischr() else "blk", rdev=(ti.devmajor, ti.devminor))
            elif ti.isfifo():
                e.update(type="fifo")
            else:
                raise ValueError(f"unexpected member {ti.name}")
            if old is not None:
                remove_tree(p)
            e["ino"] = new_ino()
            ents[p] = e
    # whiteouts mark their directory
    for p, e in list(ents.items()):
        if e.get("whiteout"):
            parent = p.rsplit("/", 1)[0] if "/" in p else ""
            ents[parent]["xattrs"].setdefault("trusted.overlay.origin", b"")
    return ents


def kind(mode):
    return {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk", stat.S_IFCHR: "chr",
            stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock"}[stat.S_IFMT(mode)]


def scan(root, content=True):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] if dirpath == root else []:
            pass
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir
        paths = [rel_dir] if rel_dir == "" else []
        paths += [(rel_dir + "/" if rel_dir else "") + n for n in dirnames + filenames]
        for p in paths:
            full = os.path.join(root, p) if p else root
            st = os.lstat(full)
            e = dict(type=kind(st.st_mode), mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                     mtime=(st.st_mtime_ns // 10**9, st.st_mtime_ns % 10**9), ino=(st.st_ino, st.st_nlink))
            xs = {}
            for x in os.listxattr(full, follow_symlinks=False):
                xs[x] = os.getxattr(full, x, follow_symlinks=False)
            e["xattrs"] = xs
            if e["type"] == "reg":
                e["size"] = st.st_size
                if content:
                    with open(full, "rb") as f:
                        e["sha256"] = hashlib.sha256(f.read()).hexdigest()
            elif e["type"] == "lnk":
                e["target"] = os.readlink(full)
            elif e["type"] in ("chr", "blk"):
                e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            out[p] = e
    return out


def diff(want, got, compare_ino=True, skip_xattrs=()):
    """Differences between a model (want) and a scanned tree (got)."""
    msgs = []
    for p in sorted(set(want) | set(got)):
        if p not in got:
            msgs.append(f"missing: {p!r}")
            continue
        if p not in want:
            msgs.append(f"unexpected: {p!r}")
            continue
        w, g = want[p], got[p]
        for k in ("type", "mode", "uid", "gid", "mtime", "size", "sha256", "target", "rdev"):
            if k in w and w.get(k) != g.get(k):
                msgs.append(f"{p!r}: {k} want {w.get(k)!r} got {g.get(k)!r}")
        wx = {k: v for k, v in w["xattrs"].items() if k not in skip_xattrs}
        gx = {k: v for k, v in g["xattrs"].items() if k not in skip_xattrs}
        if wx != gx:
            msgs.append(f"{p!r}: xattrs want {wx!r} got {gx!r}")
    if compare_ino:
        # hardlink groups: same model identity <=> same inode number
        groups = {}
        for p, w in want.items():
            if w["type"] != "dir" and p in got:
                groups.setdefault(id(w), []).append(p)
        for paths in groups.values():
            inos = {got[p]["ino"][0] for p in paths}
            if len(inos) != 1 or any(got[p]["ino"][1] != len(paths) for p in paths):
                msgs.append(f"hardlink group {paths}: inodes {[got[p]['ino'] for p in paths]}")
    return msgs


def run(cmd, **kw):
    return subprocess.run(cmd, check=False, capture_output=True, **kw)


def mount_erofs(image, mnt, tar=None, force_loop=False):
    env = dict(os.environ)
    if force_loop:
        env["SHALE_FORCE_LOOP"] = "1"
    r = run([HELPER_MOUNT, "erofs", image, mnt] + ([tar] if tar else []), env=env)
    if r.returncode == 77:
        skip(r.stdout.decode().strip())
    if r.returncode != 0:
        raise AssertionError(f"mount {image}: {r.stderr.decode()}")
    return r.stdout.decode().strip()


def umount(mnt):
    run([HELPER_MOUNT, "umount", mnt])


def oci_dir(path, layers, tag, cmd=None):
    """write an OCI image layout dir at `path`: one image of plain-tar `layers`
    (bytes), named `tag` by org.opencontainers.image.ref.name"""
    import json

    def blob(b):
        d = hashlib.sha256(b).hexdigest()
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "blobs", "sha256", d), "wb") as f:
            f.write(b)
        return "sha256:" + d, len(b)
    ls = [blob(x) for x in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": cmd} if cmd else {},
                      "rootfs": {"type": "layers", "diff_ids": [d for d, _ in ls]}}).encode()
    cd, cl = blob(cfg)
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cl},
                      "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}
                                 for d, n in ls]}).encode()
    md, ml = blob(man)
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                      "digest": md, "size": ml,
                                                      "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
