#!/usr/bin/env python3
"""Images built by buildah (Debian's, vfs storage in a temp root), in every
transport it writes: docker-archive, oci-archive (gzip, zstd, zstd:chunked
layers), an OCI layout dir and containers/image dir:. The image has what a
second layer made by `buildah run` produces: whiteouts, an opaque directory,
a removed hardlink, a fifo, a 245-byte path, plus a device node, a setuid
file, an xattr, a sparse file and non-ASCII names from `buildah copy`.

Checked: `shale load` of each keeps the image ID (config digest) and the
diff_ids, the mounted image equals `buildah mount` of the same image, and a
`shale save` of it reads back in skopeo with the same config digest.
Needs root (mounts) and buildah (SKIPPED otherwise)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = L.failures
check = L.check


def sh(*cmd, **kw):
    r = subprocess.run(list(cmd), capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)[:200]}: {(r.stderr or r.stdout).decode()[-800:]}")
    return r.stdout


def shale(root, *args):
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True)


def build(work, br):
    ctx = os.path.join(work, "ctx")
    for d in ("bin", "etc", "data/sub"):
        os.makedirs(os.path.join(ctx, d))
    shutil.copy("/bin/busybox", os.path.join(ctx, "bin", "busybox"))
    os.symlink("busybox", os.path.join(ctx, "bin", "sh"))
    f = os.path.join(ctx, "data", "sub", "f")
    with open(f, "w") as fh:
        fh.write("hello\n")
    os.chmod(f, 0o4755)
    os.setxattr(f, "user.test", b"val")
    with open(os.path.join(ctx, "data", "ünï cødé.txt"), "w") as fh:
        fh.write("naïve\n")
    os.link(f, os.path.join(ctx, "data", "hard"))
    os.symlink("../data/sub/f", os.path.join(ctx, "data", "sym"))
    os.mkfifo(os.path.join(ctx, "data", "fifo"))
    os.mknod(os.path.join(ctx, "data", "null"), 0o666 | 0o020000, os.makedev(1, 3))
    with open(os.path.join(ctx, "data", "sparse"), "wb") as fh:
        fh.truncate(10 << 20)
        fh.seek(0, 2)
        fh.write(b"x\n")
    c = sh(*br, "from", "scratch").decode().strip()
    sh(*br, "copy", c, ctx + "/", "/")
    sh(*br, "config", "--cmd", "/bin/sh", c)
    sh(*br, "commit", "-q", c, "base:1")
    c2 = sh(*br, "from", "base:1").decode().strip()
    deep = "/deep/" + "d" * 120 + "/" + "e" * 118
    b = "/bin/busybox"
    script = (f"{b} rm -rf /data/sub && {b} mkdir /data/sub && echo new > /data/sub/g && {b} rm /data/hard && "
              f"{b} mkdir -p {deep} && echo deep > {deep}/file && {b} mkfifo /data/fifo2 && "
              f"{b} ln -s /nonexistent/abs /data/dangling")
    sh(*br, "run", "--isolation", "chroot", c2, "--", "/bin/sh", "-c", script)
    sh(*br, "commit", "-q", c2, "derived:1")


def compare(mp, mnt, what):
    want, got = L.scan(mp), L.scan(mnt)
    for e in list(want.values()) + list(got.values()):
        e["xattrs"] = {k: v for k, v in e["xattrs"].items() if not k.startswith("trusted.overlay.")}
    want[""]["mtime"], want[""]["mode"] = got[""]["mtime"], got[""]["mode"]
    for m in L.diff(want, got, compare_ino=False)[:10]:
        check(False, f"{what} vs buildah mount: {m}")


def main():
    if os.geteuid() != 0:
        L.skip("needs root (mounts)")
    if not shutil.which("buildah") or not shutil.which("skopeo"):
        L.skip("buildah or skopeo not installed (Debian: buildah, skopeo)")
    work = tempfile.mkdtemp(prefix="shl-buildah-")
    br = ["buildah", "--root", os.path.join(work, "b-root"), "--runroot", os.path.join(work, "b-run"),
          "--storage-driver", "vfs"]
    mounted = []
    try:
        build(work, br)
        cfg = sh("skopeo", "inspect", "--raw", "--config",
                 f"containers-storage:[vfs@{work}/b-root+{work}/b-run]localhost/derived:1")
        src_id = "sha256:" + hashlib.sha256(cfg).hexdigest()
        src_diffs = json.loads(cfg)["rootfs"]["diff_ids"]
        outs = {
            "docker-archive": ([], f"docker-archive:{work}/da.tar:derived:1", f"{work}/da.tar"),
            "oci-archive gzip": ([], f"oci-archive:{work}/oa.tar:derived:1", f"{work}/oa.tar"),
            "oci-archive zstd": (["--compression-format", "zstd"], f"oci-archive:{work}/oz.tar:derived:1",
                                 f"{work}/oz.tar"),
            "oci-archive zstd:chunked": (["--compression-format", "zstd:chunked"],
                                         f"oci-archive:{work}/oc.tar:derived:1", f"{work}/oc.tar"),
            "oci dir": ([], f"oci:{work}/odir:derived", f"{work}/odir"),
            "dir:": (["--format", "v2s2"], f"dir:{work}/ddir", f"{work}/ddir"),
        }
        c3 = sh(*br, "from", "derived:1").decode().strip()
        mp = sh(*br, "mount", c3).decode().strip()
        for name, (opts, dest, path) in outs.items():
            r = subprocess.run([*br, "push", "-q", *opts, "derived:1", dest], capture_output=True)
            if r.returncode != 0 and b"zstd" in r.stderr:
                print(f"note: buildah cannot write {name} here: {r.stderr.decode().strip()[-200:]}")
                continue
            if not check(r.returncode == 0, f"buildah push {name}: {r.stderr.decode()[-300:]}"):
                continue
            root = os.path.join(work, "st-" + name.replace(" ", "-").replace(":", ""))
            r = shale(root, "load", "-i", path, "--tag", "derived:1")
            if not check(r.returncode == 0, f"load {name}: {r.stderr.decode().strip()}"):
                continue
            img = json.loads(shale(root, "inspect", "derived:1").stdout)[0]
            check(img["Id"] == src_id and img["RootFS"]["Layers"] == src_diffs,
                  f"load {name}: ID {img['Id']} diff_ids {img['RootFS']['Layers']}")
            mnt = os.path.join(work, "m-" + os.path.basename(root))
            os.makedirs(mnt)
            r = shale(root, "mount", "derived:1", mnt)
            if check(r.returncode == 0, f"mount {name}: {r.stderr.decode().strip()}"):
                mounted.append((root, mnt))
                compare(mp, mnt, name)
                shale(root, "umount", mnt)
                mounted.pop()
            out = os.path.join(work, "save-" + os.path.basename(root) + ".tar")
            r = shale(root, "save", "-o", out, "derived:1")
            if check(r.returncode == 0, f"save {name}: {r.stderr.decode().strip()}"):
                got = sh("skopeo", "inspect", "--raw", "--config", f"docker-archive:{out}")
                check("sha256:" + hashlib.sha256(got).hexdigest() == src_id, f"save {name}: config digest")
            print(f"ok {name}")
        sh(*br, "umount", c3)
    finally:
        for root, mnt in mounted:
            shale(root, "umount", mnt)
        subprocess.run([*br, "rm", "-a"], capture_output=True)
        subprocess.run(["bash", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"],
                       capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_buildah_interop: {len(failures)} failures")
        return 1
    print("test_buildah_interop: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
