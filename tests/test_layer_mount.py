#!/usr/bin/env python3
"""Layer writer end to end, proven by the kernel (needs root; SKIPPED otherwise).

For every fixture tar written by fixtures/mktars.py:
  * `shale convert` (index mode) from the file, from stdin redirected from the file,
    from a real pipe, and from gzip and zstd copies (file and pipe): identical .erofs
    bytes, identical diff_id (= sha256 of the tar), the stored .tar is the input tar
    bit-exact, converting twice gives identical bytes, the JSON and text summaries are
    right (sizes, entries, compression, blob digest);
  * the kernel mounts the image file-backed with device=<tar> and through loop devices
    for both (tests/helper_mount, raw syscalls, no shale code); the mounted tree equals
    the tar's extraction model (tests/layerlib.py) entry by entry: type, mode incl.
    suid/sgid/sticky, uid/gid, mtime incl. ns, content sha256, symlink target,
    rdev major:minor, every xattr (listxattr/getxattr, nothing excluded), hardlink
    identity (same st_ino, st_nlink = number of names), implicit dirs 0755, whiteouts
    as char 0:0 with trusted.overlay.origin="" on their dir, opaque dirs with
    trusted.overlay.opaque="y";
  * shale's own reader (`shale tree --json --hash`) equals the model and equals the
    kernel field by field (nid == st_ino, nlink, size of every inode, xattrs, ...);
    `shale tree` and `shale tree -l` list the same paths;
  * full mode (`--full`): identical from file and pipe, deterministic, no tar kept
    unless --tar-out; the kernel (file-backed and loop) and shale's reader see the
    model; Debian's `fsck.erofs --extract` (erofs-utils 1.5) succeeds and the
    extracted tree matches type, content, mode (without suid/sgid: 1.5 chowns after
    chmod), uid/gid, mtime (s and ns), symlink targets and rdev. Not compared there:
    xattrs (1.5 restores none) and hardlink identity (1.5 writes separate files);
  * overlay (new mount API, lowerdir+): lower+upper stacks, index and full images,
    apply whiteouts, opaque dirs, overrides, and show lower-only files; the upper
    alone over an empty dir hides its whiteouts too (trusted.overlay.origin).
"""
import ctypes
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

SRC = os.environ.get("SHALE_SRC", os.path.join(os.path.dirname(__file__), ".."))
HELPER = L.HELPER_MOUNT
failures = []
mounted = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)
    return cond


def read(path):
    with open(path, "rb") as f:
        return f.read()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------- shale commands

def convert(args, stdin=None, pipe_from=None, json_out=True):
    """Run shale convert; pipe_from=PATH feeds it through a real pipe (cat PATH |)."""
    cmd = [L.SHALE, "convert"] + (["--json"] if json_out else []) + args
    if pipe_from:
        cat = subprocess.Popen(["cat", pipe_from], stdout=subprocess.PIPE)
        r = subprocess.run(cmd, stdin=cat.stdout, capture_output=True)
        cat.stdout.close()
        cat.wait()
    else:
        r = subprocess.run(cmd, stdin=stdin, capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"shale convert {args} (pipe={pipe_from}): rc {r.returncode}: {r.stderr.decode()}")
    return json.loads(r.stdout) if json_out else r.stdout.decode()


def tree_json(image, tar=None):
    cmd = [L.SHALE, "tree", "--json", "--hash", image] + (["--device", tar] if tar else [])
    r = subprocess.run(cmd, capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {r.stderr.decode()}")
    out = {}
    for line in r.stdout.decode("utf-8", "surrogateescape").splitlines():
        e = json.loads(line)
        d = dict(type=e["type"], mode=e["mode"], uid=e["uid"], gid=e["gid"], mtime=(e["mtime"], e["mtime_ns"]),
                 xattrs={k: bytes.fromhex(v) for k, v in e["xattrs"].items()}, ino=(e["nid"], e["nlink"]),
                 size=e["size"])
        if "sha256" in e:
            d["sha256"] = e["sha256"]
        if "target" in e:
            d["target"] = e["target"]
        if "rdev" in e:
            d["rdev"] = tuple(e["rdev"])
        check(e["path"] not in out, f"{image}: shale tree lists {e['path']!r} twice")
        out[e["path"]] = d
    return out


def tree_lines(args):
    r = subprocess.run([L.SHALE, "tree"] + args, capture_output=True)
    check(r.returncode == 0, f"shale tree {args}: rc {r.returncode} {r.stderr.decode()}")
    return r.stdout.decode("utf-8", "surrogateescape").splitlines()


# ---------------------------------------------------------------- mounts

def helper(*args):
    r = subprocess.run([HELPER, *args], capture_output=True)
    if r.returncode == 77:
        L.skip(r.stdout.decode().strip().removeprefix("SKIPPED: "))
    return r


def mount(kind, image, mnt, tar=None):
    r = helper(kind, image, mnt, *(["--device", tar] if tar else []))
    if r.returncode != 0:
        raise AssertionError(f"helper_mount {kind} {image} {mnt} {tar or ''}: {r.stderr.decode().strip()}")
    mounted.append(mnt)
    return r.stdout.decode().strip()


def umount(mnt):
    r = helper("umount", mnt)
    check(r.returncode == 0, f"umount {mnt}: {r.stderr.decode().strip()}")
    if mnt in mounted:
        mounted.remove(mnt)


class Dirent(ctypes.Structure):  # glibc's struct dirent on 64-bit Linux
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64), ("d_reclen", ctypes.c_ushort),
                ("d_type", ctypes.c_ubyte), ("d_name", ctypes.c_char * 256)]


libc = ctypes.CDLL(None, use_errno=True)
libc.opendir.restype = ctypes.c_void_p
libc.opendir.argtypes = [ctypes.c_char_p]
libc.readdir.restype = ctypes.POINTER(Dirent)
libc.readdir.argtypes = [ctypes.c_void_p]
libc.closedir.argtypes = [ctypes.c_void_p]


def raw_names(path):
    """Every name readdir returns, "." and ".." included, in directory order."""
    d = libc.opendir(os.fsencode(path))
    if not d:
        raise OSError(ctypes.get_errno(), f"opendir {path}")
    names = []
    try:
        while True:
            e = libc.readdir(d)
            if not e:
                break
            names.append(e.contents.d_name)
    finally:
        libc.closedir(d)
    return names


def check_dirents(name, what, root, got):
    """EROFS directories: "." and ".." once each, no duplicate names, bytewise order
    (the kernel binary-searches them; its readdir returns the on-disk order)."""
    for p, e in got.items():
        if e["type"] != "dir":
            continue
        names = raw_names(os.path.join(root, p) if p else root)
        dups = sorted({n for n in names if names.count(n) > 1})
        check(names.count(b".") == 1 and names.count(b"..") == 1 and not dups,
              f"{name}: {what}: dir {p!r}: '.' x{names.count(b'.')}, '..' x{names.count(b'..')}, duplicates {dups}")
        check(names == sorted(names), f"{name}: {what}: dir {p!r}: dirents not in bytewise order")


def kernel_view(root):
    """Like layerlib.scan, plus the raw st_ino and st_size of every inode."""
    got = L.scan(root)
    for p, e in got.items():
        st = os.lstat(os.path.join(root, p) if p else root)
        e["raw"] = (st.st_ino, st.st_nlink, st.st_size)
    return got


# ---------------------------------------------------------------- the oracle

def model(tar):
    """layerlib.model, with implicit directories marked."""
    want = L.model(tar)
    with tarfile.open(tar) as t:
        named = {L.norm(ti.name) for ti in t}
    for p, e in want.items():
        if p and e["type"] == "dir" and p not in named:
            e["implicit"] = True
    return want


def compare(name, what, want, got, **kw):
    msgs = L.diff(want, got, **kw)
    for m in msgs[:40]:
        check(False, f"{name}: {what}: {m}")
    if len(msgs) > 40:
        check(False, f"{name}: {what}: ... {len(msgs) - 40} more differences")
    return not msgs


def reader_vs_kernel(name, what, mine, got):
    """shale's reader and the kernel agree on every field, the nid is the inode number."""
    check(set(mine) == set(got), f"{name}: {what}: reader and kernel list different paths: "
          f"{sorted(set(mine) ^ set(got))[:10]}")
    for p in sorted(set(mine) & set(got)):
        r, k = mine[p], got[p]
        ino, nlink, size = k["raw"]
        for key in ("type", "mode", "uid", "gid", "mtime", "xattrs", "sha256", "target", "rdev"):
            check(r.get(key) == k.get(key), f"{name}: {what}: {p!r} {key}: reader {r.get(key)!r} kernel {k.get(key)!r}")
        check(r["ino"] == (ino, nlink), f"{name}: {what}: {p!r} (nid, nlink): reader {r['ino']} kernel {(ino, nlink)}")
        check(r["size"] == size, f"{name}: {what}: {p!r} size: reader {r['size']} kernel {size}")


def check_special(name, want, got, what):
    """Spot checks that don't depend on the model being right."""
    for p, e in got.items():
        if e["type"] == "dir" and "trusted.overlay.origin" in e["xattrs"]:
            check(e["xattrs"]["trusted.overlay.origin"] == b"", f"{name}: {what}: {p!r} origin not empty")
        if e["type"] == "chr" and e.get("rdev") == (0, 0):
            parent = p.rsplit("/", 1)[0] if "/" in p else ""
            check(got[parent]["xattrs"].get("trusted.overlay.origin") == b"",
                  f"{name}: {what}: whiteout {p!r} but no trusted.overlay.origin on {parent!r}")
        check(".wh." not in p.rsplit("/", 1)[-1], f"{name}: {what}: whiteout name {p!r} leaked into the image")
    for p, e in want.items():
        if e["type"] == "dir" and p in got and e.get("implicit"):
            check(got[p]["mode"] == 0o755, f"{name}: {what}: implicit dir {p!r} mode {oct(got[p]['mode'])}")


# ---------------------------------------------------------------- per fixture

def one_fixture(work, tar, mnt):
    name = os.path.basename(tar)[:-4]
    d = os.path.join(work, name)
    os.makedirs(d)
    want = model(tar)
    src = read(tar)
    sha = hashlib.sha256(src).hexdigest()

    # index mode from the file
    img = os.path.join(d, "layer.erofs")
    info = convert(["-o", img, tar])
    stored = os.path.join(d, "layer.tar")
    check(info["diff_id"] == "sha256:" + sha, f"{name}: diff_id {info['diff_id']} != sha256 of the tar")
    check(info["blob_digest"] == "sha256:" + sha, f"{name}: blob_digest of an uncompressed input {info['blob_digest']}")
    check(info["compression"] == "none" and info["mode"] == "index", f"{name}: summary {info}")
    check(info["tar_size"] == len(src), f"{name}: tar_size {info['tar_size']} != {len(src)}")
    check(info["erofs_size"] == os.path.getsize(img), f"{name}: erofs_size {info['erofs_size']} != file size")
    check(info["entries"] == len(want), f"{name}: entries {info['entries']}, the tar has {len(want)} paths")
    check(read(stored) == src, f"{name}: stored tar differs from the input")
    check(sorted(os.listdir(d)) == ["layer.erofs", "layer.tar"], f"{name}: output dir {os.listdir(d)}")
    img_bytes = read(img)
    check(len(img_bytes) % 512 == 0, f"{name}: image size {len(img_bytes)} not a multiple of 512")

    # determinism, text summary
    again = os.path.join(d, "again.erofs")
    text = convert(["-o", again, tar], json_out=False).splitlines()
    check(read(again) == img_bytes, f"{name}: converting twice gave different bytes")
    check(text[:2] == [f"sha256:{sha}", f"entries {len(want)} tar {len(src)} erofs {len(img_bytes)}"],
          f"{name}: text summary {text}")

    # every input path: stdin file, real pipe, gzip file, gzip pipe, zstd file, zstd pipe
    gz = os.path.join(d, "in.tar.gz")
    with open(gz, "wb") as f:
        f.write(gzip.compress(src, compresslevel=6, mtime=0))
    zs = os.path.join(d, "in.tar.zst")
    subprocess.run(["zstd", "-q", "-f", "-o", zs, tar], check=True)
    variants = [("stdin", "none", None), ("pipe", "none", tar),
                ("gzip", "gzip", None), ("gzip-pipe", "gzip", gz),
                ("zstd", "zstd", None), ("zstd-pipe", "zstd", zs)]
    for label, comp, pipe in variants:
        out = os.path.join(d, f"{label}.erofs")
        if label == "stdin":
            with open(tar, "rb") as f:
                i2 = convert(["-o", out, "-"], stdin=f)
        elif pipe:
            i2 = convert(["-o", out], pipe_from=pipe)
        else:
            i2 = convert(["-o", out, gz if comp == "gzip" else zs])
        blob = {"none": tar, "gzip": gz, "zstd": zs}[comp]
        check(i2["compression"] == comp, f"{name}: {label}: compression {i2['compression']}")
        check(i2["diff_id"] == info["diff_id"], f"{name}: {label}: diff_id differs")
        check(i2["blob_digest"] == "sha256:" + sha256_file(blob), f"{name}: {label}: blob_digest wrong")
        check(read(out) == img_bytes, f"{name}: {label}: different image bytes")
        check(read(out[:-6] + ".tar") == src, f"{name}: {label}: stored tar differs from the input")

    # shale's reader: against the model, default --device, plain and -l listings
    mine = tree_json(img, stored)
    compare(name, "shale tree vs tar", want, mine)
    check(tree_json(img) == mine, f"{name}: shale tree without --device differs")
    paths = tree_lines([img])
    check(sorted(paths) == sorted("/" if p == "" else p for p in want),
          f"{name}: shale tree paths {sorted(set(paths) ^ set('/' if p == '' else p for p in want))[:10]}")
    check(len(tree_lines(["-l", img])) == len(want), f"{name}: shale tree -l line count")

    # the kernel: file-backed with device=, then loop devices for both
    for kind in ("erofs", "erofs-loop"):
        how = mount(kind, img, mnt, stored)
        try:
            check(how == ("loop" if kind == "erofs-loop" else "file"), f"{name}: {kind} mounted via {how}")
            got = kernel_view(mnt)
            check_dirents(name, f"kernel ({kind})", mnt, got)
        finally:
            umount(mnt)
        compare(name, f"kernel ({kind}) vs tar", want, got)
        check_special(name, want, got, f"kernel ({kind})")
        reader_vs_kernel(name, f"reader vs kernel ({kind})", mine, got)

    full_mode(name, d, tar, src, want, mnt)


def full_mode(name, d, tar, src, want, mnt):
    full = os.path.join(d, "full.erofs")
    info = convert(["--full", "-o", full, tar])
    check(info["mode"] == "full" and info["erofs_size"] == os.path.getsize(full), f"{name}: full summary {info}")
    check(info["diff_id"] == "sha256:" + hashlib.sha256(src).hexdigest(), f"{name}: full diff_id")
    check(not os.path.exists(os.path.join(d, "full.tar")), f"{name}: --full kept a tar without --tar-out")
    fb = read(full)
    check(len(fb) % 4096 == 0, f"{name}: full image size {len(fb)} not a multiple of 4096")
    convert(["--full", "-o", os.path.join(d, "full2.erofs"), "--tar-out", os.path.join(d, "kept.tar")],
            pipe_from=tar)
    check(read(os.path.join(d, "full2.erofs")) == fb, f"{name}: full mode from a pipe / twice gave different bytes")
    check(read(os.path.join(d, "kept.tar")) == src, f"{name}: full mode --tar-out differs from the input")

    mine = tree_json(full)
    compare(name, "shale tree (full) vs tar", want, mine)
    for kind in ("erofs", "erofs-loop"):
        mount(kind, full, mnt)
        try:
            got = kernel_view(mnt)
            check_dirents(name, f"full image, kernel ({kind})", mnt, got)
        finally:
            umount(mnt)
        compare(name, f"full image, kernel ({kind}) vs tar", want, got)
        reader_vs_kernel(name, f"full image, reader vs kernel ({kind})", mine, got)

    if not shutil.which("fsck.erofs"):
        check(False, "fsck.erofs (erofs-utils) is not installed")
        return
    ex = os.path.join(d, "extract")
    r = L.run(["fsck.erofs", "--extract=" + ex, full])
    if check(r.returncode == 0, f"{name}: fsck.erofs --extract failed: {r.stderr.decode()[-500:]}"):
        got = L.scan(ex)
        xnames = set()
        for e in list(want.values()) + list(got.values()):
            xnames |= set(e["xattrs"])
        strip = {p: dict(e, mode=e["mode"] & 0o1777) for p, e in want.items()}
        gots = {p: dict(e, mode=e["mode"] & 0o1777) for p, e in got.items()}
        compare(name, "fsck.erofs --extract vs tar", strip, gots, compare_ino=False, skip_xattrs=xnames)
    r = L.run(["fsck.erofs", full])
    check(r.returncode == 0, f"{name}: fsck.erofs failed: {r.stderr.decode()[-300:]}")


# ---------------------------------------------------------------- overlay

def overlay(work, fx, mnt_root):
    lo, up = os.path.join(fx, "lower.tar"), os.path.join(fx, "upper.tar")
    d = os.path.join(work, "overlay")
    os.makedirs(d)
    views = {}
    for mode in ("index", "full"):
        m = {k: os.path.join(d, f"{mode}-{k}") for k in ("lo", "up", "ovl", "single", "empty")}
        for p in m.values():
            os.makedirs(p)
        imgs = {}
        for key, t in (("lo", lo), ("up", up)):
            img = os.path.join(d, f"{mode}-{key}.erofs")
            convert((["--full"] if mode == "full" else []) + ["-o", img, t])
            imgs[key] = img
        mount("erofs", imgs["lo"], m["lo"], imgs["lo"][:-6] + ".tar" if mode == "index" else None)
        try:
            mount("erofs", imgs["up"], m["up"], imgs["up"][:-6] + ".tar" if mode == "index" else None)
            try:
                r = helper("overlay", m["ovl"], m["up"], m["lo"])
                if check(r.returncode == 0, f"overlay ({mode}) mount: {r.stderr.decode().strip()}"):
                    mounted.append(m["ovl"])
                    try:
                        o = m["ovl"]
                        ls = lambda p: sorted(os.listdir(os.path.join(o, p)))  # noqa: E731
                        check(ls("") == ["a", "b", "c_lower_only"], f"overlay ({mode}) /: {ls('')} "
                              "(.wh.c_gone must hide c_gone)")
                        check(ls("a") == ["keep"], f"overlay ({mode}) a/: {ls('a')} (whiteout must hide foo)")
                        check(ls("b") == ["new"], f"overlay ({mode}) b/: {ls('b')} (opaque must hide old, sub)")
                        check(read(os.path.join(o, "a/keep")) == b"upper keep\n", f"overlay ({mode}): upper must win")
                        check(read(os.path.join(o, "c_lower_only")) == b"stays\n", f"overlay ({mode}): lower file")
                        check(not os.path.lexists(os.path.join(o, "a/foo")), f"overlay ({mode}): a/foo visible")
                        check(not os.path.lexists(os.path.join(o, "b/sub/x")), f"overlay ({mode}): b/sub/x visible")
                        views[mode] = L.scan(o)
                    finally:
                        umount(m["ovl"])
                # the upper layer alone over an empty dir: a/ is not merged, so only
                # trusted.overlay.origin on a/ keeps its whiteout out of readdir
                r = helper("overlay", m["single"], m["up"], m["empty"])
                if check(r.returncode == 0, f"overlay ({mode}, single) mount: {r.stderr.decode().strip()}"):
                    mounted.append(m["single"])
                    try:
                        s = m["single"]
                        check(sorted(os.listdir(os.path.join(s, "a"))) == ["keep"],
                              f"overlay ({mode}) upper alone: a/ lists {sorted(os.listdir(os.path.join(s, 'a')))}"
                              " (whiteout leaked: origin xattr missing?)")
                        check(sorted(os.listdir(s)) == ["a", "b"], f"overlay ({mode}) upper alone: / lists "
                              f"{sorted(os.listdir(s))}")
                    finally:
                        umount(m["single"])
            finally:
                umount(m["up"])
        finally:
            umount(m["lo"])
    if "index" in views and "full" in views:
        check(not L.diff(views["index"], views["full"], compare_ino=False),
              f"overlay: index and full stacks differ: {L.diff(views['index'], views['full'], compare_ino=False)[:5]}")


def main():
    if os.geteuid() != 0:
        L.skip("kernel mounts need root")
    if not os.path.exists(HELPER) and not shutil.which(HELPER):
        print(f"test_layer_mount: helper_mount not found ({HELPER}); set SHALE_helper_mount")
        return 1
    work = tempfile.mkdtemp(prefix="shl-layer-")
    try:
        fx = os.path.join(work, "fixtures")
        subprocess.run([sys.executable, os.path.join(SRC, "fixtures", "mktars.py"), fx], check=True)
        mnt = os.path.join(work, "mnt")
        os.makedirs(mnt)
        cases = sorted(n for n in os.listdir(fx) if n.endswith(".tar"))
        check(len(cases) >= 10, f"only {len(cases)} fixtures generated")
        for t in cases:
            try:
                one_fixture(work, os.path.join(fx, t), mnt)
            except AssertionError as e:
                check(False, f"{t}: {e}")
            print(f"{t}: done ({len(failures)} failures so far)")
        try:
            overlay(work, fx, mnt)
        except AssertionError as e:
            check(False, f"overlay: {e}")
    finally:
        for m in reversed(mounted):
            subprocess.run([HELPER, "umount", m], capture_output=True)
        with open("/proc/self/mounts") as f:
            left = [ln.split()[1] for ln in f if f" {work}" in f" {ln.split()[1]}"]
        for m in reversed(left):
            subprocess.run([HELPER, "umount", m], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if left:
        check(False, f"mounts left behind: {left}")
    if failures:
        print(f"test_layer_mount: {len(failures)} failures")
        return 1
    print(f"test_layer_mount: {len(cases)} fixtures match the tar, the kernel and shale's reader")
    return 0


if __name__ == "__main__":
    sys.exit(main())
