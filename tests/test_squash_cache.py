#!/usr/bin/env python3
"""`shale squash` results cached by manifest digest (run/squash_cache.c).

A second squash of the same image (same format and --size) comes from the cache
and has the same bytes; the outputs are independent files (writing one changes
no other, and makes the cache entry stale so the next squash is computed
again); --no-cache neither uses nor fills the cache; `prune` removes the entries
of images that are gone; ext4 squash works as a non-root user (uid 65534) and
passes e2fsck.
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = L.failures
check = L.check


def shale(root, *args, user=None):
    cmd = [L.SHALE, "--root", root, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True)


def layer(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def cache_files(root):
    d = os.path.join(root, "cache", "squash")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def main():
    with tempfile.TemporaryDirectory(prefix="shale-sqc-") as work:
        os.chmod(work, 0o755)
        root = os.path.join(work, "st")
        lay = os.path.join(work, "lay")
        L.oci_dir(lay, [layer({"a": None, "a/x": b"x" * 100000, "a/y": b"y", "a/empty": b"", "big": b"q" * 3000000}),
                      layer({"a/.wh.y": b"", "b": None, "b/z": b"z" * 5000})], "sq:1")
        r = shale(root, "load", "-i", lay, "--tag", "sq:1")
        check(r.returncode == 0, f"load: {r.stderr}")
        for fmt in ("erofs", "ext4", "tar"):
            o1, o2, o3 = (os.path.join(work, f"{fmt}{i}") for i in (1, 2, 3))
            r1 = shale(root, "squash", "--format", fmt, "sq:1", "-o", o1)
            check(r1.returncode == 0 and b"squash cache" not in r1.stderr, f"{fmt}: first squash: {r1.stderr}")
            r2 = shale(root, "squash", "--format", fmt, "sq:1", "-o", o2)
            check(r2.returncode == 0 and b"from the squash cache" in r2.stderr, f"{fmt}: second squash cached: {r2.stderr}")
            check(open(o1, "rb").read() == open(o2, "rb").read(), f"{fmt}: cached output has the same bytes")
            check(os.stat(o1).st_ino != os.stat(o2).st_ino, f"{fmt}: outputs are separate files")
            with open(o2, "r+b") as f:  # writing a copy does not touch the cache
                f.write(b"\0" * 16)
            r3 = shale(root, "squash", "--format", fmt, "sq:1", "-o", o3)
            check(r3.returncode == 0 and b"from the squash cache" in r3.stderr and
                  open(o3, "rb").read() == open(o1, "rb").read(), f"{fmt}: copies are independent")
            with open(o1, "r+b") as f:  # writing the linked first output makes the entry stale
                f.write(b"\0" * 16)
            r4 = shale(root, "squash", "--format", fmt, "sq:1", "-o", o2)
            check(r4.returncode == 0 and b"squash cache" not in r4.stderr and
                  open(o2, "rb").read() == open(o3, "rb").read(), f"{fmt}: a stale entry is recomputed: {r4.stderr}")
        if shutil.which("e2fsck"):
            r = subprocess.run(["e2fsck", "-fn", os.path.join(work, "ext43")], capture_output=True)
            check(r.returncode == 0, f"e2fsck of a cached ext4 copy: {r.stdout[-300:]}")
        if os.geteuid() == 0:
            # the kernel reads every file of the ext4 (empty ones included) as the EROFS has it
            m1, m2 = os.path.join(work, "m1"), os.path.join(work, "m2")
            os.makedirs(m1)
            os.makedirs(m2)
            a = subprocess.run(["mount", "-o", "ro,loop", os.path.join(work, "ext43"), m1], capture_output=True)
            b = subprocess.run(["mount", "-t", "erofs", "-o", "ro,loop", os.path.join(work, "erofs3"), m2],
                               capture_output=True)
            if a.returncode == 0 and b.returncode == 0:
                d = subprocess.run(["diff", "-r", "--no-dereference", "-x", "lost+found", m1, m2], capture_output=True)
                check(d.returncode == 0, f"ext4 and erofs squash differ: {d.stdout[:500]} {d.stderr[:500]}")
            else:
                print(f"SKIPPED: mounting the squashed images ({a.stderr} {b.stderr})")
            for m in (m1, m2):
                subprocess.run(["umount", m], capture_output=True)
        for fmt in ("ext4", "erofs", "tar"):
            a, b = os.path.join(work, f"det-{fmt}-a"), os.path.join(work, f"det-{fmt}-b")
            shale(root, "squash", "--no-cache", "--format", fmt, "sq:1", "-o", a)
            shale(root, "squash", "--no-cache", "--format", fmt, "sq:1", "-o", b)
            check(open(a, "rb").read() == open(b, "rb").read(), f"{fmt}: squashing twice gives the same bytes")
        n = len(cache_files(root))
        r = shale(root, "squash", "--no-cache", "--size", "64M", "--format", "ext4", "sq:1", "-o",
                  os.path.join(work, "nc"))
        check(r.returncode == 0 and len(cache_files(root)) == n, "--no-cache fills nothing")
        r = shale(root, "rm", "sq:1")
        check(r.returncode == 0, f"rm: {r.stderr}")
        r = shale(root, "prune")
        check(r.returncode == 0 and cache_files(root) == [], f"prune sweeps the cache: {cache_files(root)}")

        # no root needed, ext4 included (a copy of the store owned by nobody)
        if os.geteuid() == 0 and shutil.which("setpriv"):
            nroot = os.path.join(work, "st-nobody")
            r = shale(nroot, "load", "-i", lay, "--tag", "sq:1")
            subprocess.run(["chown", "-R", "65534:65534", nroot])
            out = os.path.join(nroot, "n.ext4")
            r = shale(nroot, "squash", "--format", "ext4", "sq:1", "-o", out, user=65534)
            check(r.returncode == 0, f"ext4 squash as uid 65534: {r.stderr}")
            if r.returncode == 0 and shutil.which("e2fsck"):
                r = subprocess.run(["e2fsck", "-fn", out], capture_output=True)
                check(r.returncode == 0, f"e2fsck of the non-root ext4: {r.stdout[-300:]}")
            r = shale(nroot, "squash", "--format", "ext4", "sq:1", "-o", out + "2", user=65534)
            check(r.returncode == 0 and b"from the squash cache" in r.stderr, "non-root squash uses the cache too")
        else:
            print("SKIPPED: non-root squash (needs root and setpriv to switch to uid 65534)")
    if failures:
        print(f"test_squash_cache: {len(failures)} failures")
        return 1
    print("test_squash_cache: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
