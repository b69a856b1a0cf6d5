#!/usr/bin/env python3
"""Using images at the edges (docs/cli.md: mount, run, squash).

run: --net host gives the container the host's /etc/resolv.conf and /etc/hosts
(also when the image has its own, has no /etc, or has them as symlinks: those
resolve inside the image, never on the host); SIGTERM/SIGINT/SIGHUP sent to
shale reach the container's process, its exit status comes back, and no
process or mount is left; `exit 42` gives 42.
squash: into a full filesystem (ext4, erofs, tar; fresh or from the cache)
fails with one `shale: error:` line about space and leaves no file, not even a
temp file; `--size` below the minimum or below the content fails clearly.
mount: an image of 501 layers is refused with a one-line error (overlayfs
stacks at most 500) leaving nothing mounted, 500 layers mount, and the 501 still
squash to an EROFS holding every file; DIR not empty, already a mount point
(tmpfs or a bind mount on the same filesystem) or an unknown image fail with
nothing mounted.
Needs root and busybox-static (SKIPPED otherwise)."""
import hashlib
import io
import os
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = L.failures
check = L.check


def shale(root, *args, timeout=60):
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def mountpoints():
    """mount points of this mount namespace (field 5 of mountinfo)"""
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4].encode().decode("unicode_escape") for ln in f]


def mounted_at(path):
    return [m for m in mountpoints() if m == path]


def mounted_under(path):
    return [m for m in mountpoints() if m == path or m.startswith(path.rstrip("/") + "/")]


def one_error(r, code=1):
    """(ok, line): exit `code` with exactly one stderr line `shale: error: ...`"""
    lines = r.stderr.decode(errors="replace").strip().split("\n")
    return (r.returncode == code and len(lines) == 1 and lines[0].startswith("shale: error:"),
            f"exit {r.returncode}, stderr {r.stderr.decode(errors='replace').strip()!r}")


def tar_of(entries):
    """a plain tar: (name, bytes) files, (name, None) dirs, (name, '->target') symlinks,
    (name, '=target') hardlinks"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            elif isinstance(data, str) and data.startswith("="):
                ti.type, ti.linkname = tarfile.LNKTYPE, data[1:]
                t.addfile(ti)
            elif isinstance(data, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[2:]
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o755
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def load(root, work, name, layers, cmd=None):
    d = os.path.join(work, "oci-" + name.replace(":", "-"))
    L.oci_dir(d, layers, name, cmd=cmd)
    r = shale(root, "load", "-i", d, "--tag", name)
    if not check(r.returncode == 0, f"load {name}: {r.stderr.decode()}"):
        raise SystemExit(f"cannot load {name}")
    shutil.rmtree(d)


def pidns_members(ns):
    """pids whose pid namespace link reads `ns`"""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/ns/pid") == ns:
                    out.append(int(p))
            except OSError:
                pass
    return out


def read_line(fd, deadline):
    """one line from a raw pipe fd, or what came before EOF/the deadline"""
    buf = b""
    while b"\n" not in buf and time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf


def default_signals():
    # the container's shell can only trap what it did not inherit as ignored
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_DFL)


def test_net_host(root, work):
    host = {}
    for f in ("/etc/resolv.conf", "/etc/hosts"):
        if os.path.exists(f):
            with open(f, "rb") as fh:
                host[f] = fh.read()
    if not host:
        print("note: the host has neither /etc/resolv.conf nor /etc/hosts: --net host checks skipped")
        return
    files = sorted(host)
    want = b"".join(host[f] for f in files)
    # plain: the image has /etc without the files; own: the image's files are
    # replaced; noetc: /etc is created; relsym: dangling relative symlinks (as
    # systemd-resolved images have) resolve inside the image
    for img in ("bb:1", "own:1", "noetc:1", "relsym:1"):
        r = shale(root, "run", "--net", "host", img, "--", "/bin/cat", *files)
        check(r.returncode == 0 and r.stdout == want,
              f"run --net host {img} cat {files}: exit {r.returncode}, stdout {r.stdout[:200]!r}, "
              f"stderr {r.stderr.decode().strip()!r}")
    # absolute symlinks (a file, and /etc itself) resolve inside the image too:
    # the host path they name must not be created or touched
    for img, victims in (("abssym:1", [os.path.join(work, "victim-resolv"), os.path.join(work, "victim-hosts")]),
                         ("etcsym:1", [os.path.join(work, "hostetc", "resolv.conf"),
                                       os.path.join(work, "hostetc", "hosts")])):
        r = shale(root, "run", "--net", "host", img, "--", "/bin/cat", *files)
        check(r.returncode == 0 and r.stdout == want,
              f"run --net host {img} (symlinks to host paths) cat {files}: exit {r.returncode}, "
              f"stdout {r.stdout[:200]!r}, stderr {r.stderr.decode().strip()!r}")
        made = [v for v in victims if os.path.lexists(v)]
        check(made == [], f"run --net host {img}: the image's symlinks made shale create host files {made}")
        for v in made:
            os.unlink(v)
    check(mounted_under(os.path.join(root, "run")) == [],
          f"mounts left after --net host runs: {mounted_under(os.path.join(root, 'run'))}")


def test_exit_status(root):
    for code in (42, 0, 255):
        r = shale(root, "run", "bb:1", "--", "/bin/sh", "-c", f"exit {code}")
        check(r.returncode == code, f"run exit {code}: got {r.returncode} {r.stderr.decode().strip()!r}")


def test_signals(root):
    run_dir = os.path.join(root, "run")
    for sig, name in ((signal.SIGTERM, "TERM"), (signal.SIGINT, "INT"), (signal.SIGHUP, "HUP")):
        script = (f"trap 'echo got-{name}; exit 3' {name}; echo ready $(readlink /proc/self/ns/pid); "
                  "while :; do sleep 0.1; done")
        p = subprocess.Popen([L.SHALE, "--root", root, "run", "bb:1", "--", "/bin/sh", "-c", script],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=default_signals)
        ns = None
        try:
            line = read_line(p.stdout.fileno(), time.time() + 20).decode().split()
            if not check(len(line) == 2 and line[0] == "ready" and line[1].startswith("pid:["),
                         f"SIG{name}: container did not start: {line}"):
                continue
            ns = line[1]
            check(pidns_members(ns) != [], f"SIG{name}: the container's processes are not visible as {ns}")
            p.send_signal(sig)
            try:
                out, err = p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                check(False, f"SIG{name}: shale did not exit within 20 s of the signal")
                p.kill()
                out, err = p.communicate()
            check(p.returncode == 3, f"SIG{name}: exit status {p.returncode} (want the trap's 3), stderr {err!r}")
            check(f"got-{name}".encode() in out, f"SIG{name}: not forwarded to the container: stdout {out!r}")
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
            p.stderr.close()
        # no process of the container's pid namespace is left (pid 1 exited: the
        # kernel reaps the rest; poll briefly in case reaping is still under way)
        deadline = time.time() + 10
        while ns and pidns_members(ns) and time.time() < deadline:
            time.sleep(0.05)
        check(not ns or pidns_members(ns) == [], f"SIG{name}: processes left in {ns}: {ns and pidns_members(ns)}")
        check(mounted_under(run_dir) == [], f"SIG{name}: mounts left under {run_dir}: {mounted_under(run_dir)}")
        left = [e for e in os.listdir(run_dir) if e.startswith("rootfs-")]
        check(left == [], f"SIG{name}: rootfs dirs left in {run_dir}: {left}")


def test_ext4_dirs(root, work, mnts):
    """ext4 squash writes each directory's entries itself: a directory of
    3000 names (long and short, many blocks), the image's own lost+found and
    hardlinks come out e2fsck-clean and as the image has them"""
    names = [f"{i:04d}" + "x" * (i % 240) for i in range(3000)]
    r = shale(root, "squash", "--format", "ext4", "dirs:1", "-o", os.path.join(work, "dirs.ext4"))
    if not check(r.returncode == 0, f"squash ext4 dirs:1: {r.stderr.decode().strip()}"):
        return
    img = os.path.join(work, "dirs.ext4")
    r = subprocess.run(["e2fsck", "-fn", img], capture_output=True)
    check(r.returncode == 0, f"e2fsck -fn of the squashed dirs:1: {r.stdout.decode()[-400:]}")
    mnt = os.path.join(work, "dirs-mnt")
    os.makedirs(mnt)
    if not check(subprocess.run(["mount", "-o", "loop,ro", img, mnt]).returncode == 0, "mount the ext4 squash"):
        return
    mnts.append(mnt)
    got = sorted(os.listdir(os.path.join(mnt, "big")))
    check(got == sorted(names), f"big dir: {len(got)} names, first differences "
                                f"{sorted(set(got) ^ set(names))[:3]}")
    check(sorted(os.listdir(mnt)) == ["big", "lost+found", "root-file"], f"root: {sorted(os.listdir(mnt))}")
    lf = os.path.join(mnt, "lost+found")
    check(os.listdir(lf) == ["kept"] and oct(os.stat(lf).st_mode & 0o7777) == "0o755",  # mke2fs: 0700
          f"the image's lost+found: {os.listdir(lf)} mode {oct(os.stat(lf).st_mode)}")
    a, b = os.stat(os.path.join(mnt, "root-file")), os.stat(os.path.join(mnt, "big", names[7]))
    check(a.st_ino == b.st_ino and a.st_nlink == 2, f"hardlink: inodes {a.st_ino} {b.st_ino}, nlink {a.st_nlink}")
    umount(mnt, mnts)


def test_no_space(root, work, mnts):
    small = os.path.join(work, "small")
    os.makedirs(small)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", small]).returncode != 0:
        check(False, "cannot mount a 1 MiB tmpfs")
        return
    mnts.append(small)
    out = os.path.join(small, "out")
    roomy = os.path.join(work, "roomy")
    os.makedirs(roomy)
    for fmt in ("ext4", "erofs", "tar"):
        # fresh (the cache is empty, then not used), then a cache hit copied into the full filesystem
        for how, extra in (("fresh", []), ("fresh --no-cache", ["--no-cache"]), ("from the cache", [])):
            if how == "from the cache":
                r = shale(root, "squash", "--format", fmt, "big:1", "-o", os.path.join(roomy, "big." + fmt))
                check(r.returncode == 0, f"squash {fmt} big:1 into room: {r.stderr.decode().strip()}")
            r = shale(root, "squash", *extra, "--format", fmt, "big:1", "-o", out)
            ok, desc = one_error(r)
            check(ok and "space" in r.stderr.decode().lower(), f"squash --format {fmt} ({how}) into a full tmpfs: {desc}")
            check(os.listdir(small) == [], f"squash --format {fmt} ({how}): left {os.listdir(small)} in the full tmpfs")
    # a failed squash did not poison the cache: the erofs copied from it holds the blob
    r = shale(root, "squash", "big:1", "-o", os.path.join(roomy, "again.erofs"))
    check(r.returncode == 0, f"squash after the failures: {r.stderr.decode().strip()}")
    m = os.path.join(work, "m-big")
    os.makedirs(m)
    if r.returncode == 0 and mount_erofs(os.path.join(roomy, "again.erofs"), m, mnts):
        with open(os.path.join(m, "blob"), "rb") as f:
            check(hashlib.sha256(f.read()).hexdigest() == BIG_SHA, "squashed blob content")
        umount(m, mnts)

    # --size: below the 8 MiB minimum, and below the content (12 MiB)
    for size, words in (("1M", ("too small", "minimum")), ("8M", ("too small",))):
        tiny = os.path.join(roomy, "tiny.ext4")
        before = sorted(os.listdir(roomy))
        r = shale(root, "squash", "--no-cache", "--format", "ext4", "--size", size, "big:1", "-o", tiny)
        ok, desc = one_error(r)
        check(ok and any(w in r.stderr.decode() for w in words), f"squash ext4 --size {size} of 12 MiB: {desc}")
        check(sorted(os.listdir(roomy)) == before, f"squash --size {size}: left {set(os.listdir(roomy)) - set(before)}")


def mount_erofs(img, mnt, mnts):
    for opts in (["-o", "ro"], ["-o", "ro,loop"]):
        if subprocess.run(["mount", "-t", "erofs", *opts, img, mnt], capture_output=True).returncode == 0:
            mnts.append(mnt)
            return True
    check(False, f"cannot mount the squashed EROFS {img}")
    return False


def umount(mnt, mnts):
    subprocess.run(["umount", mnt], capture_output=True)
    if mnt in mnts:
        mnts.remove(mnt)


def test_many_layers(root, work, mnts):
    layers = [tar_of([(f"f{i:03d}", str(i).encode())]) for i in range(501)]
    load(root, work, "many:1", layers)
    load(root, work, "five-hundred:1", layers[:500])  # the same blobs: free to load
    layer_dir = os.path.join(root, "run", "layers")
    mp = os.path.join(work, "mp-many")
    os.makedirs(mp)
    r = shale(root, "mount", "many:1", mp)
    ok, desc = one_error(r)
    line = r.stderr.decode()
    check(ok and "501" in line and "500" in line and "layers" in line, f"mount of 501 layers: {desc}")
    check(mounted_at(mp) == [], f"mount of 501 layers: {mp} is mounted")
    check(mounted_under(layer_dir) == [], f"mount of 501 layers: layers left mounted: {len(mounted_under(layer_dir))}")
    check(os.listdir(mp) == [], f"mount of 501 layers: {mp} not empty: {os.listdir(mp)[:5]}")
    check(not os.path.isdir(layer_dir) or os.listdir(layer_dir) == [],
          f"mount of 501 layers: dirs left in {layer_dir}: {len(os.listdir(layer_dir))}")
    r = shale(root, "mounts")
    check(r.returncode == 0 and b"many:1" not in r.stdout, f"mounts after the refusal: {r.stdout!r}")
    # run stacks the same way: refused too, nothing left
    r = shale(root, "run", "many:1", "--", "/bin/sh")
    ok, desc = one_error(r, 125)
    check(ok and "500" in r.stderr.decode(), f"run of 501 layers: {desc}")
    check(mounted_under(os.path.join(root, "run")) == [], "run of 501 layers: mounts left")

    # the limit itself: 500 layers mount
    r = shale(root, "mount", "five-hundred:1", mp)
    if check(r.returncode == 0, f"mount of 500 layers: {r.stderr.decode().strip()}"):
        mnts.append(mp)
        names = sorted(os.listdir(mp))
        check(names == [f"f{i:03d}" for i in range(500)], f"500-layer view: {len(names)} entries")
        r = shale(root, "umount", mp)
        check(r.returncode == 0, f"umount 500 layers: {r.stderr.decode().strip()}")
        mnts.remove(mp)
        check(mounted_at(mp) == [] and mounted_under(layer_dir) == [], "after umount of 500 layers: mounts left")

    # squash has no such limit
    sq = os.path.join(work, "many.erofs")
    r = shale(root, "squash", "many:1", "-o", sq)
    if check(r.returncode == 0, f"squash of 501 layers: {r.stderr.decode().strip()}"):
        m = os.path.join(work, "m-many")
        os.makedirs(m)
        if mount_erofs(sq, m, mnts):
            names = sorted(os.listdir(m))
            check(names == [f"f{i:03d}" for i in range(501)], f"squashed 501 layers: {len(names)} entries")
            bad = []
            for i in range(501):
                with open(os.path.join(m, f"f{i:03d}"), "rb") as f:
                    if f.read() != str(i).encode():
                        bad.append(i)
            check(bad == [], f"squashed 501 layers: wrong content in {bad[:10]}")
            umount(m, mnts)


def test_mount_targets(root, work, mnts):
    layer_dir = os.path.join(root, "run", "layers")

    def nothing_new(dirpath, what, n_at=0):
        check(len(mounted_at(dirpath)) == n_at, f"{what}: mounts at {dirpath}: {len(mounted_at(dirpath))} (want {n_at})")
        check(mounted_under(layer_dir) == [], f"{what}: layers left mounted")

    full = os.path.join(work, "full")
    os.makedirs(full)
    with open(os.path.join(full, "keep"), "w") as f:
        f.write("mine\n")
    r = shale(root, "mount", "bb:1", full)
    ok, desc = one_error(r)
    check(ok and "empty" in r.stderr.decode(), f"mount on a non-empty dir: {desc}")
    nothing_new(full, "mount on a non-empty dir")
    check(os.listdir(full) == ["keep"] and open(os.path.join(full, "keep")).read() == "mine\n",
          "mount on a non-empty dir changed it")

    hidden = os.path.join(work, "hidden")
    os.makedirs(hidden)
    open(os.path.join(hidden, ".dot"), "w").close()
    r = shale(root, "mount", "bb:1", hidden)
    ok, desc = one_error(r)
    check(ok and "empty" in r.stderr.decode(), f"mount on a dir holding only a dotfile: {desc}")
    nothing_new(hidden, "mount on a dir holding only a dotfile")

    busy = os.path.join(work, "busy")
    os.makedirs(busy)
    if check(subprocess.run(["mount", "-t", "tmpfs", "tmpfs", busy]).returncode == 0, "mount a tmpfs"):
        mnts.append(busy)
        r = shale(root, "mount", "bb:1", busy)
        ok, desc = one_error(r)
        check(ok and "mount point" in r.stderr.decode(), f"mount on a tmpfs mount point: {desc}")
        nothing_new(busy, "mount on a tmpfs mount point", 1)
        if len(mounted_at(busy)) > 1:
            shale(root, "umount", busy)
        umount(busy, mnts)

    # a bind mount on the same filesystem is a mount point as much as a tmpfs
    src, bound = os.path.join(work, "bind-src"), os.path.join(work, "bound")
    os.makedirs(src)
    os.makedirs(bound)
    if check(subprocess.run(["mount", "--bind", src, bound]).returncode == 0, "bind mount"):
        mnts.append(bound)
        r = shale(root, "mount", "bb:1", bound)
        ok, desc = one_error(r)
        check(ok and "mount point" in r.stderr.decode(), f"mount on a bind mount point (same filesystem): {desc}")
        if len(mounted_at(bound)) > 1:
            check(False, f"mount on a bind mount point stacked {len(mounted_at(bound)) - 1} mount(s) over it")
            shale(root, "umount", bound)
        nothing_new(bound, "mount on a bind mount point", 1)
        umount(bound, mnts)

    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    r = shale(root, "mount", "nope:1", empty)
    ok, desc = one_error(r)
    check(ok and "no such image" in r.stderr.decode(), f"mount of an unknown image: {desc}")
    nothing_new(empty, "mount of an unknown image")
    check(os.listdir(empty) == [], "mount of an unknown image wrote into DIR")

    r = shale(root, "mount", "bb:1", os.path.join(work, "does-not-exist"))
    ok, desc = one_error(r)
    check(ok, f"mount on a missing dir: {desc}")
    check(mounted_under(os.path.join(root, "run")) == [], f"mounts left: {mounted_under(os.path.join(root, 'run'))}")


BIG_SHA = None


def main():
    global BIG_SHA
    if os.geteuid() != 0:
        L.skip("run/mount need root (namespaces, mounts)")
    bb = shutil.which("busybox")
    if not bb or "statically linked" not in subprocess.run(["file", "-L", bb], capture_output=True,
                                                           text=True).stdout:
        L.skip("busybox-static not installed")
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="shl-use-")
    root = os.path.join(work, "st")
    mnts = []
    try:
        with open(bb, "rb") as f:
            bbin = f.read()
        tools = [("bin", None), ("bin/busybox", bbin)] + [(f"bin/{t}", "->busybox")
                                                         for t in ("sh", "cat", "sleep", "readlink")]
        cmd = ["/bin/sh"]
        load(root, work, "bb:1", [tar_of(tools + [("etc", None), ("tmp", None)])], cmd)
        load(root, work, "own:1", [tar_of(tools + [("etc", None), ("etc/resolv.conf", b"nameserver 203.0.113.7\n"),
                                                   ("etc/hosts", b"203.0.113.7 image-only\n")])], cmd)
        load(root, work, "noetc:1", [tar_of(tools)], cmd)
        load(root, work, "relsym:1", [tar_of(tools + [("etc", None),
                                                      ("etc/resolv.conf", "->../run/systemd/resolve/stub-resolv.conf"),
                                                      ("etc/hosts", "->../run/hosts")])], cmd)
        load(root, work, "abssym:1", [tar_of(tools + [("etc", None),
                                                      ("etc/resolv.conf", "->" + os.path.join(work, "victim-resolv")),
                                                      ("etc/hosts", "->" + os.path.join(work, "victim-hosts"))])], cmd)
        os.makedirs(os.path.join(work, "hostetc"))
        load(root, work, "etcsym:1", [tar_of(tools + [("etc", "->" + os.path.join(work, "hostetc"))])], cmd)
        big = [("big", None)] + [(f"big/{i:04d}" + "x" * (i % 240), b"%d" % i) for i in range(3000)]
        lf = [("lost+found", None), ("lost+found/kept", b"k")]
        load(root, work, "dirs:1", [tar_of(big + lf + [("root-file", "=big/0007" + "x" * 7)])])
        blob = os.urandom(12 << 20)
        BIG_SHA = hashlib.sha256(blob).hexdigest()
        load(root, work, "big:1", [tar_of([("blob", blob)])])
        del blob

        r = shale(root, "run", "bb:1", "--", "/bin/sh", "-c", "exit 0")
        if r.returncode != 0 and b"Operation not permitted" in r.stderr:
            L.skip("namespaces/mounts not permitted here")

        test_net_host(root, work)
        test_exit_status(root)
        test_signals(root)
        test_no_space(root, work, mnts)
        test_many_layers(root, work, mnts)
        test_mount_targets(root, work, mnts)
        test_ext4_dirs(root, work, mnts)
    finally:
        for m in reversed(mnts):
            subprocess.run(["umount", m], capture_output=True)
        # anything still mounted below work (shale's overlays and layers too),
        # newest first, then the files
        for m in reversed(mounted_under(work)):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"test_use_edges: {time.time() - t0:.1f} s")
    if failures:
        print(f"test_use_edges: {len(failures)} failures")
        return 1
    print("test_use_edges: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
