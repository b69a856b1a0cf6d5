#!/usr/bin/env python3
"""shale mount / umount / mounts against the kernel and umoci.

Two images built by umoci share a base layer. Mounted with shale, each view must
equal `umoci unpack` of the same image (a real peer applying the same layers),
the shared base layer must be mounted once, --rw must take writes on a tmpfs
upper, umount must release exactly the layers nobody else uses, stale state
(an overlay unmounted behind shale's back) must be swept, and bad requests must
leave nothing mounted. Needs root (SKIPPED otherwise).
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

SRC = os.environ.get("SHALE_SRC", os.path.join(os.path.dirname(__file__), ".."))
failures = L.failures
check = L.check


def sh(*cmd):
    r = subprocess.run(list(cmd), capture_output=True)
    if r.returncode:
        raise AssertionError(f"{cmd}: {r.stderr.decode()}")
    return r.stdout


def shale(root, *args):
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True)


def layer_mounts(root):
    base = os.path.join(root, "run", "layers") + "/"
    n = 0
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "erofs" and parts[1].startswith(base):
                n += 1
    return n


def main():
    if os.geteuid() != 0:
        L.skip("mounting needs root")
    if not shutil.which("umoci") or not shutil.which("skopeo"):
        L.skip("umoci/skopeo not installed")
    work = tempfile.mkdtemp(prefix="shl-imount-")
    root = os.path.join(work, "st")
    try:
        fx = os.path.join(work, "fx")
        sh(sys.executable, os.path.join(SRC, "fixtures", "mktars.py"), fx)
        # an xattr layer of our own (every fixture entry must be something
        # umoci can restore on Linux: e.g. no user.* xattrs on symlinks)
        import io
        import tarfile
        cap = bytes.fromhex("0100000200200000000000000000000000000000")
        acl = bytes.fromhex("02000000" "0100" "0600" "ffffffff" "0200" "0400" "e8030000"
                            "0400" "0400" "ffffffff" "1000" "0400" "ffffffff" "2000" "0400" "ffffffff")
        with tarfile.open(os.path.join(fx, "xa.tar"), "w", format=tarfile.PAX_FORMAT) as t:
            ti = tarfile.TarInfo("xa/file")
            ti.size, ti.mode, ti.mtime = 2, 0o644, 1700000000  # mode consistent with the ACL
            ti.pax_headers = {"SCHILY.xattr.user.comment": "hello", "SCHILY.xattr.trusted.tag": "t",
                              "SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                              "SCHILY.xattr.system.posix_acl_access": acl.decode("utf-8", "surrogateescape"),
                              "mtime": "1700000000.5"}
            t.addfile(ti, io.BytesIO(b"xa"))
            ti = tarfile.TarInfo("xa/dir")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o2775
            ti.pax_headers = {"SCHILY.xattr.user.d": "1"}
            t.addfile(ti)
        oci = os.path.join(work, "oci")
        sh("umoci", "init", "--layout", oci)
        for img, layers in (("a", ("lower", "upper", "tree")), ("b", ("lower", "kinds", "xa"))):
            sh("umoci", "new", "--image", f"{oci}:{img}")
            for t in layers:
                sh("umoci", "raw", "add-layer", "--image", f"{oci}:{img}", os.path.join(fx, t + ".tar"))
        for img in ("a", "b"):
            da = os.path.join(work, img + ".tar")
            sh("skopeo", "copy", f"oci:{oci}:{img}", f"docker-archive:{da}:t/{img}:1")
            r = shale(root, "load", "-i", da)
            check(r.returncode == 0, f"load {img}: {r.stderr.decode()}")

        ma, mb, mrw = (os.path.join(work, d) for d in ("ma", "mb", "mrw"))
        for d in (ma, mb, mrw):
            os.makedirs(d)
        r = shale(root, "mount", "t/a:1", ma)
        if r.returncode != 0 and b"Operation not permitted" in r.stderr:
            L.skip("mount not permitted here")
        check(r.returncode == 0, f"mount a: {r.stderr.decode()}")
        r = shale(root, "mount", "t/b:1", mb)
        check(r.returncode == 0, f"mount b: {r.stderr.decode()}")
        check(layer_mounts(root) == 5, f"shared base mounted once: {layer_mounts(root)} layer mounts (want 5)")

        # the views equal umoci unpack of the same images
        for img, mnt in (("a", ma), ("b", mb)):
            bundle = os.path.join(work, "bundle-" + img)
            sh("umoci", "unpack", "--image", f"{oci}:{img}", bundle)
            want = L.scan(os.path.join(bundle, "rootfs"))
            got = L.scan(mnt)
            # umoci drops security.selinux, and gives directories it creates
            # implicitly the current time (shale: mtime 0): compare the rest
            for e in list(want.values()) + list(got.values()):
                e["xattrs"] = {k: v for k, v in e["xattrs"].items()
                               if not k.startswith("trusted.overlay.") and k != "security.selinux"}
                if e["type"] == "dir":
                    e["mtime"] = None
            want[""]["mode"] = got[""]["mode"]  # the bundle's rootfs dir is umoci's own
            want[""]["mtime"] = got[""]["mtime"]
            want[""]["uid"], want[""]["gid"] = got[""]["uid"], got[""]["gid"]
            for m in L.diff(want, got, compare_ino=False):
                check(False, f"mount {img} vs umoci unpack: {m}")

        # squash to ext4 (libext2fs): e2fsck -fn is clean and the loop-mounted
        # image equals the overlay view (ext4 adds only lost+found)
        for img, mnt in (("a", ma), ("b", mb)):
            ext4 = os.path.join(work, img + ".ext4")
            r = shale(root, "squash", "--format", "ext4", f"t/{img}:1", "-o", ext4)
            if not check(r.returncode == 0, f"squash ext4 {img}: {r.stderr.decode()}"):
                continue
            r = subprocess.run(["e2fsck", "-fn", ext4], capture_output=True)
            check(r.returncode == 0, f"e2fsck -fn {img}: {r.stdout.decode()[-400:]}")
            em = os.path.join(work, "ext4-" + img)
            os.makedirs(em)
            sh("mount", "-o", "loop,ro", ext4, em)
            try:
                want, got = L.scan(mnt), L.scan(em)
                got = {p_: e for p_, e in got.items() if p_ != "lost+found" and not p_.startswith("lost+found/")}
                for e in list(want.values()) + list(got.values()):
                    e["xattrs"] = {k: v for k, v in e["xattrs"].items() if not k.startswith("trusted.overlay.")}
                    if e["type"] == "dir":
                        e["size"] = None
                want[""]["mtime"] = got[""]["mtime"] = None
                for m in L.diff(want, got, compare_ino=False):
                    check(False, f"ext4 squash of {img} vs mount: {m}")
            finally:
                sh("umount", em)

        # squash to a flat tar: converted back and mounted, it equals the view
        for img, mnt in (("a", ma), ("b", mb)):
            flat = os.path.join(work, img + "-flat.tar")
            r = shale(root, "squash", "--format", "tar", f"t/{img}:1", "-o", flat)
            if not check(r.returncode == 0, f"squash tar {img}: {r.stderr.decode()}"):
                continue
            fimg = os.path.join(work, img + "-flat.erofs")
            subprocess.run([L.SHALE, "convert", "-o", fimg, flat], check=True, capture_output=True)
            fm = os.path.join(work, "flat-" + img)
            os.makedirs(fm)
            L.mount_erofs(fimg, fm, fimg[:-6] + ".tar")
            try:
                want, got = L.scan(mnt), L.scan(fm)
                for e in list(want.values()) + list(got.values()):
                    e["xattrs"] = {k: v for k, v in e["xattrs"].items() if not k.startswith("trusted.overlay.")}
                for m in L.diff(want, got, compare_ino=False):
                    check(False, f"tar squash of {img} vs mount: {m}")
            finally:
                L.umount(fm)

        # read-write on a tmpfs upper
        r = shale(root, "mount", "--rw", "t/a:1", mrw)
        check(r.returncode == 0, f"mount --rw: {r.stderr.decode()}")
        with open(os.path.join(mrw, "a", "keep"), "w") as f:
            f.write("changed\n")
        os.remove(os.path.join(mrw, "c_lower_only"))
        check(open(os.path.join(ma, "a", "keep")).read() == "upper keep\n", "rw changes leaked into another mount")
        r = shale(root, "mounts")
        check(r.stdout.decode().count("t/a:1") == 2 and b"t/b:1" in r.stdout, f"mounts: {r.stdout.decode()}")

        # bad requests leave nothing new mounted
        before = layer_mounts(root)
        check(shale(root, "mount", "t/a:1", ma).returncode == 1, "mount on a mount point must fail")
        check(shale(root, "mount", "nope:1", os.path.join(work, "fx")).returncode == 1, "mount of a non-empty dir / unknown image")
        empty = os.path.join(work, "empty")
        os.makedirs(empty)
        r = shale(root, "mount", "nope:1", empty)
        check(r.returncode == 1 and b"no such image" in r.stderr, f"unknown image: {r.stderr}")
        check(layer_mounts(root) == before, "a failed mount changed the layer mounts")

        # umount releases only unshared layers
        check(shale(root, "umount", mb).returncode == 0, "umount b")
        check(layer_mounts(root) == 3, f"after umount b: {layer_mounts(root)} layer mounts (want 3)")
        check(shale(root, "umount", mrw).returncode == 0, "umount rw")
        check(layer_mounts(root) == 3, "a's layers stay while a is mounted")
        # stale state: unmount the overlay behind shale's back; the next command sweeps
        subprocess.run(["umount", ma])
        shale(root, "mounts")
        check(layer_mounts(root) == 0, f"stale mount state not swept: {layer_mounts(root)}")
        check(not os.listdir(os.path.join(root, "run", "layers")), "layer mount dirs left")
    finally:
        subprocess.run(["bash", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"])
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_image_mount: {len(failures)} failures")
        return 1
    print("test_image_mount: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
