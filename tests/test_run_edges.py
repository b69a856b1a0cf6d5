#!/usr/bin/env python3
"""Edges of `run`, `mount` and `squash` (issue "Using images"): --net host sees the
host's resolv.conf and hosts; SIGTERM/SIGINT reach the container's process and its
exit status comes back; squash into a full filesystem fails cleanly and leaves no
file; an image of 501 layers cannot be mounted (overlayfs stacks at most 500) but
squashes fine; mount refuses a non-empty DIR, a DIR that is already a mount point
and an unknown image, leaving nothing mounted. Needs root and busybox-static
(SKIPPED otherwise)."""
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)
    return cond


def shale(root, *args, timeout=120):
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, timeout=timeout)


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if path in ln]


def one_line(r):
    lines = r.stderr.decode().strip().split("\n")
    return r.returncode == 1 and len(lines) == 1 and lines[0].startswith("shale: error:"), lines[-1]


def tar_of(files, links=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o755
                t.addfile(ti, io.BytesIO(data))
        for name, target in links:
            ti = tarfile.TarInfo(name)
            ti.type, ti.linkname = tarfile.SYMTYPE, target
            t.addfile(ti)
    return buf.getvalue()


def main():
    if os.geteuid() != 0:
        L.skip("run/mount need root (namespaces, mounts)")
    bb = shutil.which("busybox")
    if not bb or "statically linked" not in subprocess.run(["file", "-L", bb], capture_output=True, text=True).stdout:
        L.skip("busybox-static not installed")
    work = tempfile.mkdtemp(prefix="shl-edges-")
    root = os.path.join(work, "st")
    mnts = []
    try:
        bbl = tar_of([("bin", None), ("bin/busybox", open(bb, "rb").read()), ("etc", None), ("tmp", None)],
                     links=[("bin/sh", "busybox"), ("bin/cat", "busybox"), ("bin/sleep", "busybox")])
        lay = os.path.join(work, "bb")
        L.oci_dir(lay, [bbl], "bb:1", cmd=["/bin/sh"])
        r = shale(root, "load", "-i", lay, "--tag", "bb:1")
        check(r.returncode == 0, f"load: {r.stderr}")

        # --net host: the host's resolver and hosts files
        for f in ("/etc/resolv.conf", "/etc/hosts"):
            if not os.path.exists(f):
                continue
            r = shale(root, "run", "--net", "host", "bb:1", "--", "/bin/cat", f)
            check(r.returncode == 0 and r.stdout == open(f, "rb").read(), f"--net host {f}: {r.returncode} {r.stderr}")
        r = shale(root, "run", "bb:1", "--", "/bin/sh", "-c", "exit 42")
        check(r.returncode == 42, f"exit status: {r.returncode}")

        # signals reach the container's process; its status comes back
        for sig, name in ((signal.SIGTERM, "TERM"), (signal.SIGINT, "INT")):
            p = subprocess.Popen([L.SHALE, "--root", root, "run", "bb:1", "--", "/bin/sh", "-c",
                                  f"trap 'echo got-{name}; exit 3' {name}; echo ready; while :; do sleep 0.1; done"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            check(p.stdout.readline().strip() == b"ready", f"{name}: container started")
            p.send_signal(sig)
            try:
                out, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            check(p.returncode == 3 and f"got-{name}".encode() in out, f"SIG{name} forwarded: {p.returncode} {out} {err}")
        check(mounted(os.path.join(root, "run")) == [], f"nothing mounted after runs: {mounted(root)}")

        # no space: squash into a 1 MiB tmpfs
        small = os.path.join(work, "small")
        os.makedirs(small)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small]).returncode == 0:
            mnts.append(small)
            for fmt in ("ext4", "erofs", "tar"):
                r = shale(root, "squash", "--no-cache", "--format", fmt, "bb:1", "-o", os.path.join(small, "out"))
                ok, line = one_line(r)
                check(ok and ("space" in line.lower()), f"squash {fmt} into a full filesystem: {line}")
                check(os.listdir(small) == [], f"squash {fmt}: nothing left behind: {os.listdir(small)}")
        r = shale(root, "squash", "--no-cache", "--format", "ext4", "--size", "1M", "bb:1", "-o",
                  os.path.join(work, "tiny.ext4"))
        ok, line = one_line(r)
        check(ok and "minimum" in line, f"--size below the minimum: {line}")
        big = os.path.join(work, "big")
        L.oci_dir(big, [tar_of([("blob", os.urandom(12 << 20))])], "big:1")
        r = shale(root, "load", "-i", big, "--tag", "big:1")
        r = shale(root, "squash", "--no-cache", "--format", "ext4", "--size", "8M", "big:1", "-o",
                  os.path.join(work, "tiny.ext4"))
        ok, line = one_line(r)
        check(ok and "too small" in line, f"--size too small for the content: {line}")
        check(not os.path.exists(os.path.join(work, "tiny.ext4")), "no output after --size too small")

        # 501 layers: mount refuses clearly, squash works
        many = os.path.join(work, "many")
        L.oci_dir(many, [tar_of([(f"f{i:03d}", str(i).encode())]) for i in range(501)], "many:1")
        r = shale(root, "load", "-i", many, "--tag", "many:1")
        check(r.returncode == 0, f"load 501 layers: {r.stderr}")
        mp = os.path.join(work, "mp")
        os.makedirs(mp)
        r = shale(root, "mount", "many:1", mp)
        ok, line = one_line(r)
        check(ok and "500" in line, f"mount of 501 layers: {line}")
        check(mounted(mp) == [] and mounted(os.path.join(root, "run", "layers")) == [] and os.listdir(mp) == [],
              "nothing mounted after the refusal")
        sq = os.path.join(work, "many.erofs")
        r = shale(root, "squash", "many:1", "-o", sq)
        check(r.returncode == 0, f"squash of 501 layers: {r.stderr}")
        m2 = os.path.join(work, "m2")
        os.makedirs(m2)
        if r.returncode == 0 and subprocess.run(["mount", "-t", "erofs", "-o", "ro,loop", sq, m2]).returncode == 0:
            mnts.append(m2)
            names = sorted(os.listdir(m2))
            check(len(names) == 501 and open(os.path.join(m2, "f500")).read() == "500", f"squashed 501 layers: {len(names)}")

        # mount target checks
        full = os.path.join(work, "full")
        os.makedirs(full)
        open(os.path.join(full, "x"), "w").close()
        r = shale(root, "mount", "bb:1", full)
        ok, line = one_line(r)
        check(ok and "empty" in line, f"mount on a non-empty dir: {line}")
        check(mounted(full) == [], "nothing mounted on the non-empty dir")
        busy = os.path.join(work, "busy")
        os.makedirs(busy)
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", busy]).returncode == 0:
            mnts.append(busy)
            r = shale(root, "mount", "bb:1", busy)
            ok, line = one_line(r)
            check(ok and "mount" in line, f"mount on a mount point: {line}")
            check(len(mounted(busy)) == 1, "only the tmpfs is mounted there")
        r = shale(root, "mount", "nope:1", mp)
        ok, line = one_line(r)
        check(ok and "no such image" in line, f"mount of an unknown image: {line}")
        check(mounted(os.path.join(root, "run")) == [], f"nothing left mounted: {mounted(os.path.join(root, 'run'))}")
    finally:
        for m in reversed(mnts):
            subprocess.run(["umount", m], capture_output=True)
        subprocess.run([L.SHALE, "--root", root, "umount", "--all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_run_edges: {len(failures)} failures")
        return 1
    print("test_run_edges: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
