#!/usr/bin/env python3
"""Layer writer end to end, proven by the kernel.

For every fixture tar (fixtures/mktars.py): `shale convert` from a file, from a
pipe, and from gzip and zstd copies must give the same diff_id and identical
image bytes; the stored tar is the input bit-exact; the image mounted by the
kernel (file-backed with device=, and through loop devices) equals the tar's
extraction model entry by entry; shale's own reader (`shale tree --json --hash`)
agrees with the kernel; full-mode images mount equal too and pass Debian's
fsck.erofs --extract; two layers stacked with overlayfs apply whiteouts and opaque
dirs. Needs root for the mounts (prints SKIPPED otherwise).
"""
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

SRC = os.environ.get("SHALE_SRC", os.path.join(os.path.dirname(__file__), ".."))
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def convert(args, stdin=None):
    r = subprocess.run([L.SHALE, "convert", "--json"] + args, stdin=stdin, capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"convert {args}: {r.stderr.decode()}")
    return json.loads(r.stdout)


def tree_json(image, tar=None):
    cmd = [L.SHALE, "tree", "--json", "--hash", image] + (["--device", tar] if tar else [])
    r = subprocess.run(cmd, capture_output=True, check=True)
    out = {}
    for line in r.stdout.decode().splitlines():
        e = json.loads(line)
        d = dict(type=e["type"], mode=e["mode"], uid=e["uid"], gid=e["gid"], mtime=(e["mtime"], e["mtime_ns"]),
                 xattrs={k: bytes.fromhex(v) for k, v in e["xattrs"].items()}, ino=(e["nid"], e["nlink"]))
        if "sha256" in e:
            d["sha256"] = e["sha256"]
            d["size"] = e["size"]
        if "target" in e:
            d["target"] = e["target"]
        if "rdev" in e:
            d["rdev"] = tuple(e["rdev"])
        out[e["path"]] = d
    return out


def one_fixture(work, tar, mnt):
    name = os.path.basename(tar)[:-4]
    want = L.model(tar)
    sha = hashlib.sha256(open(tar, "rb").read()).hexdigest()

    img = os.path.join(work, name + ".erofs")
    info = convert(["-o", img, tar])
    stored = img[:-6] + ".tar"
    check(info["diff_id"] == "sha256:" + sha, f"{name}: diff_id {info['diff_id']} != sha256 of the tar")
    check(open(stored, "rb").read() == open(tar, "rb").read(), f"{name}: stored tar differs from the input")
    img_bytes = open(img, "rb").read()

    # determinism and every input path
    again = os.path.join(work, name + "-again.erofs")
    convert(["-o", again, tar])
    check(open(again, "rb").read() == img_bytes, f"{name}: converting twice gave different bytes")
    with open(tar, "rb") as f:
        piped = os.path.join(work, name + "-pipe.erofs")
        info_p = convert(["-o", piped], stdin=f)
    check(open(piped, "rb").read() == img_bytes, f"{name}: pipe input gave different bytes")
    check(info_p["diff_id"] == info["diff_id"], f"{name}: pipe diff_id differs")
    gz = os.path.join(work, name + ".tar.gz")
    with open(gz, "wb") as f:
        f.write(gzip.compress(open(tar, "rb").read(), mtime=0))
    zs = os.path.join(work, name + ".tar.zst")
    subprocess.run(["zstd", "-q", "-f", "-o", zs, tar], check=True)
    for comp, path in (("gzip", gz), ("zstd", zs)):
        out = os.path.join(work, f"{name}-{comp}.erofs")
        i2 = convert(["-o", out, path])
        check(i2["compression"] == comp, f"{name}: {comp} not sniffed ({i2['compression']})")
        check(i2["diff_id"] == info["diff_id"], f"{name}: {comp} diff_id differs")
        check(i2["blob_digest"] == "sha256:" + hashlib.sha256(open(path, "rb").read()).hexdigest(),
              f"{name}: {comp} blob digest wrong")
        check(open(out, "rb").read() == img_bytes, f"{name}: {comp} input gave different image bytes")

    # shale's reader
    mine = tree_json(img, stored)
    for m in L.diff(want, mine):
        check(False, f"{name}: reader vs tar: {m}")

    # the kernel: file-backed, then loop devices for both
    for loop in (False, True):
        how = L.mount_erofs(img, mnt, stored, force_loop=loop)
        try:
            check(how == ("loop" if loop else "file"), f"{name}: mounted via {how}")
            got = L.scan(mnt)
        finally:
            L.umount(mnt)
        for m in L.diff(want, got):
            check(False, f"{name}: kernel ({how}) vs tar: {m}")
        # the reader and the kernel agree on nids/links too
        for p in mine:
            if p in got and mine[p]["ino"][1] != got[p]["ino"][1]:
                check(False, f"{name}: nlink of {p!r}: reader {mine[p]['ino'][1]} kernel {got[p]['ino'][1]}")

    # full mode: kernel and Debian's fsck.erofs
    full = os.path.join(work, name + "-full.erofs")
    convert(["--full", "-o", full, tar])
    L.mount_erofs(full, mnt)
    try:
        got = L.scan(mnt)
    finally:
        L.umount(mnt)
    for m in L.diff(want, got):
        check(False, f"{name}: full image vs tar: {m}")
    if shutil.which("fsck.erofs"):
        ex = os.path.join(work, name + "-extract")
        r = L.run(["fsck.erofs", "--extract=" + ex, full])
        check(r.returncode == 0, f"{name}: fsck.erofs --extract failed: {r.stderr.decode()[-500:]}")
        if r.returncode == 0:
            # erofs-utils 1.5 extracts contents, types, modes and link targets;
            # it restores no xattrs, writes hardlinks as separate files, and its
            # chown after chmod drops setuid/setgid: compare the rest
            got = L.scan(ex)
            xnames = set()
            for e in list(want.values()) + list(got.values()):
                xnames |= set(e["xattrs"])
            strip = {p: dict(e, mode=e["mode"] & 0o1777) for p, e in want.items()}
            gots = {p: dict(e, mode=e["mode"] & 0o1777) for p, e in got.items()}
            for m in L.diff(strip, gots, compare_ino=False, skip_xattrs=xnames):
                check(False, f"{name}: fsck.erofs extract vs tar: {m}")
            shutil.rmtree(ex)


def overlay(work, fx, mnt):
    lo, up = os.path.join(fx, "lower.tar"), os.path.join(fx, "upper.tar")
    imgs = []
    for t in (lo, up):
        img = os.path.join(work, os.path.basename(t)[:-4] + "-ovl.erofs")
        convert(["-o", img, t])
        imgs.append((img, img[:-6] + ".tar"))
    m_lo, m_up, m_ovl = (os.path.join(work, d) for d in ("m_lo", "m_up", "m_ovl"))
    for d in (m_lo, m_up, m_ovl):
        os.makedirs(d, exist_ok=True)
    L.mount_erofs(imgs[0][0], m_lo, imgs[0][1])
    L.mount_erofs(imgs[1][0], m_up, imgs[1][1])
    try:
        r = L.run([L.HELPER_MOUNT, "overlay", m_ovl, m_up, m_lo])
        check(r.returncode == 0, f"overlay mount: {r.stderr.decode()}")
        if r.returncode == 0:
            try:
                ls = lambda p: sorted(os.listdir(os.path.join(m_ovl, p)))  # noqa: E731
                check(ls("a") == ["keep"], f"overlay a/: {ls('a')} (whiteout must hide foo)")
                check(ls("b") == ["new"], f"overlay b/: {ls('b')} (opaque must hide old, sub)")
                check(open(os.path.join(m_ovl, "a/keep")).read() == "upper keep\n", "upper file must win")
                check("c_gone" not in ls("") and "c_lower_only" in ls(""), f"overlay /: {ls('')}")
            finally:
                L.umount(m_ovl)
    finally:
        L.umount(m_up)
        L.umount(m_lo)


def main():
    if os.geteuid() != 0:
        L.skip("kernel mounts need root")
    work = tempfile.mkdtemp(prefix="shl-layer-")
    try:
        fx = os.path.join(work, "fixtures")
        subprocess.run([sys.executable, os.path.join(SRC, "fixtures", "mktars.py"), fx], check=True)
        mnt = os.path.join(work, "mnt")
        os.makedirs(mnt)
        for t in sorted(os.listdir(fx)):
            one_fixture(work, os.path.join(fx, t), mnt)
        overlay(work, fx, mnt)
    finally:
        subprocess.run(["bash", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | xargs -r -n1 umount -l"])
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_layer_mount: {len(failures)} failures")
        return 1
    print("test_layer_mount: all fixtures match the kernel view")
    return 0


if __name__ == "__main__":
    sys.exit(main())
