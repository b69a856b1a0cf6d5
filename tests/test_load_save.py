#!/usr/bin/env python3
"""load / save against real peers (umoci, skopeo, podman).

Images are built by umoci from fixture layer tars and written by skopeo and
podman in every archive form (docker-archive, oci-archive, OCI dir, zstd and gzip
layers, several images per archive). Each is loaded with `shale load` (file and
pipe); the image ID (sha256 of the config bytes) and the diff_ids must equal the
source's. `shale save` output must be read by skopeo (docker-archive: and
oci-archive:), copied by skopeo, loaded by podman, re-loaded by shale with the same
IDs, and be byte-identical when saved twice. Hostile archives must fail with one
error line and leave the store byte-identical. Incremental export is checked both
ways. Mounted EROFS layers of a loaded image must match the source layer tars.
"""
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
failures = L.failures
check = L.check


def sh(*cmd, **kw):
    r = subprocess.run(list(cmd), capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {r.stderr.decode()[-800:]}")
    return r.stdout


def shale(root, *args, stdin=None, ok=True):
    r = subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, stdin=stdin)
    if ok and r.returncode != 0:
        raise AssertionError(f"shale {' '.join(args)}: {r.stderr.decode()}")
    return r


def tree_hash(root):
    h = hashlib.sha256()
    for dp, dn, fn in sorted(os.walk(root)):
        dn.sort()
        for f in sorted(fn):
            p = os.path.join(dp, f)
            h.update(os.path.relpath(p, root).encode())
            with open(p, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def store_state(root):
    # the index's data file changes on any committed write; compare everything but lock files
    h = hashlib.sha256()
    for dp, dn, fn in sorted(os.walk(root)):
        dn[:] = sorted(d for d in dn if d != "tmp")
        for f in sorted(fn):
            if f in ("lock.mdb", "lock"):
                continue
            p = os.path.join(dp, f)
            h.update(os.path.relpath(p, root).encode())
            with open(p, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    leftover = []
    tmp = os.path.join(root, "tmp")
    if os.path.isdir(tmp):
        for dp, dn, fn in os.walk(tmp):
            leftover += [f for f in fn if f not in ("lock", ".lock")]
    return h.hexdigest(), leftover


def source_ids(ref):
    """(image id, diff_ids) of a skopeo-readable image."""
    cfg = sh("skopeo", "inspect", "--raw", "--config", ref)
    diff_ids = json.loads(cfg)["rootfs"]["diff_ids"]
    return "sha256:" + hashlib.sha256(cfg).hexdigest(), diff_ids


def inspect(root, ref):
    return json.loads(shale(root, "inspect", ref).stdout)[0]


def main():
    for tool in ("skopeo", "umoci", "podman"):
        if not shutil.which(tool):
            L.skip(f"{tool} not installed")
    # podman derives image names from the path it pulls from: keep it to [a-z0-9-]
    work = "/tmp/shl-loadsave-%d-%d" % (os.getpid(), int.from_bytes(os.urandom(4), "little"))
    os.makedirs(work)
    try:
        run(work)
    finally:
        subprocess.run(["bash", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | xargs -r -n1 umount -l"])
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_load_save: {len(failures)} failures")
        return 1
    print("test_load_save: all checks passed")
    return 0


def run(work):
    fx = os.path.join(work, "fx")
    sh(sys.executable, os.path.join(SRC, "fixtures", "mktars.py"), fx)
    oci = os.path.join(work, "oci")
    sh("umoci", "init", "--layout", oci)
    sh("umoci", "new", "--image", oci + ":multi")
    for t in ("lower", "upper", "tree"):
        sh("umoci", "raw", "add-layer", "--image", oci + ":multi", os.path.join(fx, t + ".tar"))
    sh("umoci", "new", "--image", oci + ":small")
    sh("umoci", "raw", "add-layer", "--image", oci + ":small", os.path.join(fx, "lower.tar"))
    sh("umoci", "raw", "add-layer", "--image", oci + ":small", os.path.join(fx, "names_pax.tar"))
    sh("skopeo", "copy", "oci:" + oci + ":small", "oci:" + os.path.join(work, "small-only") + ":small")
    src_multi = source_ids("oci:" + oci + ":multi")
    src_small = source_ids("oci:" + oci + ":small")

    arch = {}
    arch["docker-archive"] = os.path.join(work, "da.tar")
    sh("skopeo", "copy", "oci:" + oci + ":multi", f"docker-archive:{arch['docker-archive']}:shale/multi:1")
    arch["oci-archive"] = os.path.join(work, "oa.tar")
    sh("skopeo", "copy", "oci:" + oci + ":multi", f"oci-archive:{arch['oci-archive']}:shale/multi:1")
    arch["oci-dir-zstd"] = os.path.join(work, "zst")
    sh("skopeo", "copy", "--dest-compress-format", "zstd", "oci:" + oci + ":multi", "oci:" + arch["oci-dir-zstd"] + ":z")
    arch["oci-dir-gzip"] = os.path.join(work, "gz")
    sh("skopeo", "copy", "--dest-compress", "oci:" + oci + ":multi", "oci:" + arch["oci-dir-gzip"] + ":g")

    # podman: several images in one archive, both formats
    pod = ["podman", "--root", os.path.join(work, "p-root"), "--runroot", os.path.join(work, "p-run"),
           "--storage-driver", "vfs"]
    sh(*pod, "pull", "oci:" + oci + ":multi")
    sh(*pod, "tag", sh(*pod, "images", "-q").decode().split()[0], "localhost/multi:1")
    sh(*pod, "pull", "oci:" + oci + ":small")
    small_id = [ln for ln in sh(*pod, "images", "--format", "{{.ID}} {{.Repository}}").decode().splitlines()]
    arch["podman-docker-multi"] = os.path.join(work, "pd.tar")
    sh(*pod, "save", "-m", "--format", "docker-archive", "-o", arch["podman-docker-multi"], "localhost/multi:1")
    arch["podman-oci"] = os.path.join(work, "po.tar")
    sh(*pod, "save", "--format", "oci-archive", "-o", arch["podman-oci"], "localhost/multi:1")
    del small_id
    arch["podman-docker-dir"] = os.path.join(work, "pdd")
    sh(*pod, "save", "--format", "docker-dir", "-o", arch["podman-docker-dir"], "localhost/multi:1")
    arch["podman-oci-dir"] = os.path.join(work, "pod")
    sh(*pod, "save", "--format", "oci-dir", "-o", arch["podman-oci-dir"], "localhost/multi:1")

    for kind, path in arch.items():
        root = os.path.join(work, "st-" + kind)
        r = shale(root, "load", "--tag", "shale/multi:1", "-i", path, ok=False)
        if not check(r.returncode == 0, f"load {kind}: {r.stderr.decode()}"):
            continue
        out = r.stdout.decode()
        check("Loaded image" in out, f"load {kind}: output {out!r}")
        refs = [ln.split(": ", 1)[1] for ln in out.splitlines() if ln.startswith("Loaded image")]
        img = inspect(root, refs[0])
        check(img["Id"] == src_multi[0], f"load {kind}: image ID {img['Id']} != source {src_multi[0]}")
        check(img["RootFS"]["Layers"] == src_multi[1], f"load {kind}: diff_ids differ")
        # the same archive again through a pipe into a fresh store
        if os.path.isfile(path):
            root2 = os.path.join(work, "st2-" + kind)
            with open(path, "rb") as f:
                r = shale(root2, "load", "--tag", "shale/multi:1", stdin=f, ok=False)
            check(r.returncode == 0, f"load {kind} from a pipe: {r.stderr.decode()}")

    # layers stored once across images and archives
    root = os.path.join(work, "st-main")
    shale(root, "load", "-i", arch["docker-archive"])
    shale(root, "load", "--tag", "shale/multi:oci", "-i", arch["oci-dir-gzip"])
    shale(root, "tag", "shale/multi:1", "shale/other:2")
    layers = sorted(f for f in os.listdir(os.path.join(root, "layers")) if f.endswith(".tar"))
    check(len(layers) == 3, f"layers stored once: {layers}")

    # mounted EROFS layers equal the source layer tars
    if os.geteuid() == 0:
        img = inspect(root, "shale/multi:1")
        for name, diff in zip(("lower", "upper", "tree"), img["RootFS"]["Layers"]):
            hexd = diff[7:]
            mnt = os.path.join(work, "m-" + name)
            os.makedirs(mnt)
            L.mount_erofs(os.path.join(root, "layers", hexd + ".erofs"), mnt, os.path.join(root, "layers", hexd + ".tar"))
            try:
                for m in L.diff(L.model(os.path.join(fx, name + ".tar")), L.scan(mnt)):
                    check(False, f"stored layer {name} vs its tar: {m}")
            finally:
                L.umount(mnt)

    # squash: the flattened EROFS equals the kernel's overlay of the layers
    sq = os.path.join(work, "squash.erofs")
    r = shale(root, "squash", "shale/multi:1", "-o", sq, ok=False)
    check(r.returncode == 0, f"squash: {r.stderr.decode()}")
    if os.geteuid() == 0 and r.returncode == 0:
        img = inspect(root, "shale/multi:1")
        mnts = []
        try:
            for i, diff in enumerate(img["RootFS"]["Layers"]):
                m = os.path.join(work, f"sqm{i}")
                os.makedirs(m)
                L.mount_erofs(os.path.join(root, "layers", diff[7:] + ".erofs"), m,
                              os.path.join(root, "layers", diff[7:] + ".tar"))
                mnts.append(m)
            ovl, flat = os.path.join(work, "sq-ovl"), os.path.join(work, "sq-flat")
            os.makedirs(ovl)
            os.makedirs(flat)
            sh(L.HELPER_MOUNT, "overlay", ovl, *reversed(mnts))
            mnts.append(ovl)
            L.mount_erofs(sq, flat)
            mnts.append(flat)
            want, got = L.scan(ovl), L.scan(flat)
            for p_, e in want.items():
                e["xattrs"] = {k: v for k, v in e["xattrs"].items() if not k.startswith("trusted.overlay.")}
            for m in L.diff(want, got, compare_ino=False):
                check(False, f"squash vs overlay: {m}")
        finally:
            for m in reversed(mnts):
                L.umount(m)
    # squash needs no root: a copy of the store owned by nobody
    if os.geteuid() == 0 and shutil.which("setpriv"):
        nroot = os.path.join(work, "st-nobody")
        shutil.copytree(root, nroot)
        subprocess.run(["chown", "-R", "65534:65534", nroot])
        os.chmod(work, 0o755)
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", L.SHALE, "--root", nroot,
                            "squash", "shale/multi:1", "-o", os.path.join(nroot, "sq.erofs")], capture_output=True)
        check(r.returncode == 0, f"squash as nobody: {r.stderr.decode()}")
        if r.returncode == 0:
            check(open(os.path.join(nroot, "sq.erofs"), "rb").read() == open(sq, "rb").read(),
                  "squash as nobody gave different bytes")

    # save: peers read it, IDs survive, bytes are stable
    out1, out2 = os.path.join(work, "save1.tar"), os.path.join(work, "save2.tar")
    shale(root, "save", "-o", out1, "shale/multi:1", "shale/other:2")
    shale(root, "save", "-o", out2, "shale/multi:1", "shale/other:2")
    check(open(out1, "rb").read() == open(out2, "rb").read(), "saving twice gave different bytes")
    # docker's convention: org.opencontainers.image.ref.name is the tag only
    for t in ("docker-archive:" + out1 + ":shale/multi:1", "oci-archive:" + out1 + ":1"):
        r = subprocess.run(["skopeo", "inspect", t], capture_output=True)
        if check(r.returncode == 0, f"skopeo inspect {t}: {r.stderr.decode()}"):
            check(source_ids(t) == src_multi, f"skopeo sees other IDs in {t}")
    r = subprocess.run(["skopeo", "copy", "docker-archive:" + out1 + ":shale/multi:1", "oci:" + os.path.join(work, "copied") + ":c"],
                       capture_output=True)
    check(r.returncode == 0, f"skopeo copy of the saved archive: {r.stderr.decode()}")
    pod2 = ["podman", "--root", os.path.join(work, "p2-root"), "--runroot", os.path.join(work, "p2-run"),
            "--storage-driver", "vfs"]
    r = subprocess.run([*pod2, "load", "-i", out1], capture_output=True)
    check(r.returncode == 0, f"podman load of the saved archive: {r.stderr.decode()}")
    if r.returncode == 0:
        ids = sh(*pod2, "images", "--no-trunc", "--format", "{{.ID}}").decode().split()
        check(src_multi[0] in ids or src_multi[0][7:] in ids, f"podman image IDs {ids} lack {src_multi[0]}")
    # round trip into a fresh store
    root3 = os.path.join(work, "st-round")
    shale(root3, "load", "-i", out1)
    img = inspect(root3, "shale/multi:1")
    check(img["Id"] == src_multi[0] and img["RootFS"]["Layers"] == src_multi[1], "round trip changed IDs")
    check(inspect(root3, "shale/other:2")["Id"] == src_multi[0], "second name lost in the round trip")
    out3 = os.path.join(work, "save3.tar")
    shale(root3, "save", "-o", out3, "shale/multi:1", "shale/other:2")
    check(open(out3, "rb").read() == open(out1, "rb").read(), "save after a round trip differs")
    # --compress gzip|zstd: deterministic, read by skopeo/podman/shale with the same IDs
    for comp in ("gzip", "zstd"):
        c1, c2 = os.path.join(work, f"c1.{comp}.tar"), os.path.join(work, f"c2.{comp}.tar")
        shale(root, "save", "--compress", comp, "-o", c1, "shale/multi:1")
        shale(root, "save", "--compress", comp, "-o", c2, "shale/multi:1")
        check(open(c1, "rb").read() == open(c2, "rb").read(), f"--compress {comp}: not deterministic")
        check(source_ids("docker-archive:" + c1) == src_multi, f"--compress {comp}: skopeo IDs")
        croot = os.path.join(work, f"st-c-{comp}")
        shale(croot, "load", "-i", c1)
        check(inspect(croot, "shale/multi:1")["Id"] == src_multi[0], f"--compress {comp}: shale reload ID")
        man = json.loads(tarfile.open(c1).extractfile("manifest.json").read())
        check(all(l.split("/")[-1] not in [d[7:] for d in src_multi[1]] for l in man[0]["Layers"]),
              f"--compress {comp}: layers not compressed")
        pc = ["podman", "--root", os.path.join(work, f"pc-{comp}"), "--runroot", os.path.join(work, f"pcr-{comp}"),
              "--storage-driver", "vfs"]
        r = subprocess.run([*pc, "load", "-i", c1], capture_output=True)
        check(r.returncode == 0, f"podman load --compress {comp}: {r.stderr.decode()}")

    # --format oci
    out_oci = os.path.join(work, "save-oci.tar")
    shale(root, "save", "--format", "oci", "-o", out_oci, "shale/multi:1")
    names = tarfile.open(out_oci).getnames()
    check("manifest.json" not in names and "index.json" in names, f"--format oci members: {names}")
    check(source_ids("oci-archive:" + out_oci) == src_multi, "oci archive IDs")

    # the original (registry-style, zstd) manifest digest survives save -> load
    zroot, zroot2 = os.path.join(work, "st-z"), os.path.join(work, "st-z2")
    shale(zroot, "load", "--tag", "reg.example/app:1", "-i", arch["oci-dir-zstd"])
    orig = inspect(zroot, "reg.example/app:1")["Shale"]["Manifest"]
    zsave = os.path.join(work, "z.tar")
    shale(zroot, "save", "-o", zsave, "reg.example/app:1")
    shale(zroot2, "load", "-i", zsave)
    r = shale(zroot2, "inspect", "reg.example/app@" + orig, ok=False)
    check(r.returncode == 0 and json.loads(r.stdout)[0]["Id"] == src_multi[0],
          f"name@<original manifest digest> after the transfer: {r.stderr.decode()}")
    zsave2 = os.path.join(work, "z2.tar")
    shale(zroot2, "save", "-o", zsave2, "reg.example/app:1")
    check(open(zsave2, "rb").read() == open(zsave, "rb").read(), "re-saving on the far side changed the archive")

    # incremental export
    small_root = os.path.join(work, "st-small")
    shale(small_root, "load", "--tag", "shale/small:1", "-i", os.path.join(work, "small-only"))
    # --tag names one untagged image; the umoci layout has two (tag-only ref.names)
    r = shale(small_root, "load", "--tag", "shale/small:2", "-i", oci, ok=False)
    check(r.returncode == 1 and "several untagged images" in r.stderr.decode(), f"--tag with two untagged: {r.stderr}")
    have = os.path.join(work, "have.txt")
    with open(have, "w") as f:
        img = inspect(root, "shale/multi:1")
        f.write("# layers the target has\n" + img["RootFS"]["Layers"][0] + "\n")
    inc = os.path.join(work, "inc.tar")
    shale(root, "save", "--exclude-layers", have, "-o", inc, "shale/multi:1")
    check(os.path.getsize(inc) < os.path.getsize(out1), "incremental archive is not smaller")
    target = os.path.join(work, "st-target")
    shale(target, "load", "-i", arch["oci-dir-zstd"], "--tag", "base:1")  # has every layer
    r = shale(target, "load", "-i", inc, ok=False)
    check(r.returncode == 0, f"incremental load into a store that has the layer: {r.stderr.decode()}")
    empty = os.path.join(work, "st-empty")
    shale(empty, "images")
    before = store_state(empty)
    r = shale(empty, "load", "-i", inc, ok=False)
    check(r.returncode == 1 and "missing" in r.stderr.decode(), f"incremental load without the layer: {r.stderr.decode()}")
    check(store_state(empty) == before, "failed incremental load changed the store")

    # hostile archives: one error line, store unchanged
    good = open(arch["docker-archive"], "rb").read()
    hostile = {
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(5000),
    }
    # digest mismatch: flip a byte inside a blob of the OCI archive
    with tarfile.open(arch["oci-archive"]) as t:
        members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    import io

    def rebuild(mutate):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            for m, data in members:
                m2 = tarfile.TarInfo(m.name)
                m2.type, m2.mode = m.type, m.mode
                d = mutate(m.name, data)
                if d is False:
                    continue
                if d is not None:
                    m2.size = len(d)
                    t.addfile(m2, io.BytesIO(d))
                else:
                    t.addfile(m2)
        return buf.getvalue()

    blobs = [m.name for m, d in members if m.name.startswith("blobs/sha256/") and d and len(d) > 2000]
    hostile["digest mismatch"] = rebuild(lambda n, d: (d[:100] + bytes([d[100] ^ 1]) + d[101:]) if n == blobs[0] else d)
    hostile["missing blob"] = rebuild(lambda n, d: False if n == blobs[0] else d)
    hostile["dotdot entry"] = rebuild(lambda n, d: d) + b""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ti = tarfile.TarInfo("../evil")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"{}"))
    hostile["dotdot entry"] = buf.getvalue()
    hostile["json over cap"] = rebuild(lambda n, d: (b"[" + b"1," * (9 << 20) + b"1]") if n == "index.json" else d)
    root_h = os.path.join(work, "st-hostile")
    shale(root_h, "load", "--tag", "other:1", "-i", os.path.join(work, "small-only"))
    for name, data in hostile.items():
        p = os.path.join(work, "hostile.tar")
        with open(p, "wb") as f:
            f.write(data)
        before = store_state(root_h)
        r = shale(root_h, "load", "-i", p, ok=False)
        err = r.stderr.decode()
        lines = [ln for ln in err.splitlines() if ln.strip()]
        check(r.returncode == 1, f"hostile {name}: exit {r.returncode}")
        check(len(lines) == 1 and lines[0].startswith("shale: error:"), f"hostile {name}: stderr {err!r}")
        after = store_state(root_h)
        check(after[0] == before[0] and not after[1], f"hostile {name}: store changed or temp files left {after[1]}")
        print(f"ok hostile {name}: {lines[0] if lines else ''}")

    # rm: untag, then delete; shared layers stay while used
    r = shale(root, "rm", "shale/other:2")
    check("Untagged: shale/other:2" in r.stdout.decode() and "Deleted" not in r.stdout.decode(), f"rm one of two tags: {r.stdout}")
    r = shale(root, "rm", "shale/multi:1")
    check("Deleted: " + src_multi[0] in r.stdout.decode(), f"rm last tag: {r.stdout}")
    left = sorted(f for f in os.listdir(os.path.join(root, "layers")))
    check(len(left) == 6, f"layers of the remaining image must stay: {left}")
    shale(root, "rm", "shale/multi:oci")
    check(os.listdir(os.path.join(root, "layers")) == [], "layers left after removing every image")
    r = shale(root, "inspect", "nope:1", ok=False)
    check(r.returncode == 1 and "no such image" in r.stderr.decode(), f"unknown ref: {r.stderr}")


if __name__ == "__main__":
    sys.exit(main())
