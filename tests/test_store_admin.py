#!/usr/bin/env python3
"""Store housekeeping and crash safety.

- fsck: clean after loads; a flipped byte in a stored tar or EROFS file and a
  missing file are reported (exit 1) naming the layer; --repair removes orphans
  and never what the index names.
- df: per-image shared + unique = size; --layers --json lists every layer.
- crash safety: a load killed with SIGKILL at each fault point (after staging a
  layer, after publishing files, after the commit) leaves a store that
  `fsck --repair` brings back to clean, and the retried load succeeds.
- concurrency: two loads of overlapping images at once both succeed; each layer
  is stored once.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

SRC = os.environ.get("SHALE_SRC", os.path.join(os.path.dirname(__file__), ".."))
failures = L.failures
check = L.check


def shale(root, *args, env=None):
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, env=env)


def sh(*cmd):
    r = subprocess.run(list(cmd), capture_output=True)
    if r.returncode:
        raise AssertionError(f"{cmd}: {r.stderr.decode()}")
    return r.stdout


def main():
    if not shutil.which("umoci") or not shutil.which("skopeo"):
        L.skip("umoci/skopeo not installed")
    work = tempfile.mkdtemp(prefix="shl-admin-")
    try:
        fx = os.path.join(work, "fx")
        sh(sys.executable, os.path.join(SRC, "fixtures", "mktars.py"), fx)
        oci = os.path.join(work, "oci")
        sh("umoci", "init", "--layout", oci)
        for img, layers in (("a", ("lower", "tree")), ("b", ("lower", "kinds", "attrs"))):
            sh("umoci", "new", "--image", f"{oci}:{img}")
            for t in layers:
                sh("umoci", "raw", "add-layer", "--image", f"{oci}:{img}", os.path.join(fx, t + ".tar"))
        da = os.path.join(work, "a.tar")
        db = os.path.join(work, "b.tar")
        sh("skopeo", "copy", f"oci:{oci}:a", f"docker-archive:{da}:t/a:1")
        sh("skopeo", "copy", f"oci:{oci}:b", f"docker-archive:{db}:t/b:1")

        root = os.path.join(work, "st")
        check(shale(root, "load", "-i", da).returncode == 0, "load a")
        check(shale(root, "load", "-i", db).returncode == 0, "load b")
        r = shale(root, "fsck", "--deep")
        check(r.returncode == 0 and b"0 problems" in r.stdout, f"fsck of a fresh store: {r.stdout} {r.stderr}")

        # df adds up
        d = json.loads(shale(root, "df", "--json").stdout)
        for im in d["images"]:
            check(im["shared"] + im["unique"] == im["size"], f"df: {im}")
        lays = json.loads(shale(root, "df", "--layers", "--json").stdout)
        check(len(lays) == 4 and d["total"]["layers"] == 4, f"df layers: {len(lays)}")
        shared = [x for x in lays if x["images"] == 2]
        check(len(shared) == 1, f"one layer shared by both images: {lays}")
        check(d["total"]["bytes"] == sum(x["tar_size"] + x["erofs_size"] for x in lays), "df total bytes")

        # corruption is found and named
        layers_dir = os.path.join(root, "layers")
        victim = sorted(f for f in os.listdir(layers_dir) if f.endswith(".tar"))[0]
        p = os.path.join(layers_dir, victim)
        data = bytearray(open(p, "rb").read())
        data[600] ^= 0x40
        open(p, "wb").write(bytes(data))
        r = shale(root, "fsck")
        check(r.returncode == 1 and victim[:-4].encode() in r.stdout, f"fsck must name the corrupt layer: {r.stdout}")
        data[600] ^= 0x40
        open(p, "wb").write(bytes(data))
        os.rename(p, p + ".away")
        r = shale(root, "fsck")
        check(r.returncode == 1, "fsck must report a missing layer file")
        r = shale(root, "fsck", "--repair")  # the renamed file is an orphan; the missing one stays missing
        os.rename(p + ".away", p) if os.path.exists(p + ".away") else None
        check(not os.path.exists(p + ".away"), "--repair removes orphan files")
        # restore the store for the rest
        shutil.rmtree(root)
        shale(root, "load", "-i", da)
        shale(root, "load", "-i", db)

        # crash safety at each fault point
        for point in ("staged", "published", "committed"):
            croot = os.path.join(work, "crash-" + point)
            shale(croot, "load", "-i", da)
            env = dict(os.environ, SHALE_FAULT=point)
            r = shale(croot, "load", "-i", db, env=env)
            check(r.returncode == -signal.SIGKILL, f"fault {point}: load not killed ({r.returncode})")
            r = shale(croot, "fsck", "--repair")
            check(r.returncode == 0, f"fault {point}: fsck --repair: {r.stdout} {r.stderr}")
            r = shale(croot, "fsck", "--deep")
            check(r.returncode == 0, f"fault {point}: fsck after repair: {r.stdout}")
            r = shale(croot, "load", "-i", db)
            check(r.returncode == 0, f"fault {point}: retried load: {r.stderr}")
            r = shale(croot, "fsck", "--deep")
            check(r.returncode == 0, f"fault {point}: fsck after the retry: {r.stdout}")
            tmp = os.path.join(croot, "tmp")
            left = [f for dp, dn, fn in os.walk(tmp) for f in fn if f not in ("lock", ".lock")]
            check(left == [], f"fault {point}: temp files left: {left}")

        # a legacy docker-archive (<id>/layer.tar): a second load of a seekable
        # file finds the stored layers from manifest.json + config and does not
        # read them (proof: their bytes are garbage in the second archive)
        import io
        import tarfile
        legacy = os.path.join(work, "legacy.tar")
        garbled = os.path.join(work, "legacy-garbled.tar")
        with tarfile.open(da) as src:
            members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
        man = json.loads([d for m, d in members if m.name == "manifest.json"][0])
        rename = {}
        for i, lp in enumerate(man[0]["Layers"]):
            rename[lp] = f"v1id{i:060d}/layer.tar"
            man[0]["Layers"][i] = rename[lp]
        for out, garble in ((legacy, False), (garbled, True)):
            with tarfile.open(out, "w") as t:
                for m, d in members:
                    if m.name == "manifest.json":
                        d = json.dumps(man).encode()
                    name = rename.get(m.name, m.name)
                    if m.issym() or (m.isfile() and "/" in m.name and m.name not in rename):
                        continue
                    if garble and name in rename.values():
                        d = bytes(len(d))  # same size, all zeros
                    ti = tarfile.TarInfo(name)
                    ti.size = len(d) if d is not None else 0
                    ti.type = m.type if d is not None else tarfile.DIRTYPE
                    t.addfile(ti, io.BytesIO(d) if d is not None else None)
        lroot = os.path.join(work, "legacy-st")
        r = shale(lroot, "load", "-i", legacy)
        check(r.returncode == 0, f"legacy docker-archive: {r.stderr.decode()}")
        r = shale(lroot, "load", "-i", garbled)
        check(r.returncode == 0, f"reload of a legacy archive must not read stored layers: {r.stderr.decode()}")
        check(shale(lroot, "fsck", "--deep").returncode == 0, "fsck after the legacy reload")
        r = shale(os.path.join(work, "legacy-fresh"), "load", "-i", garbled)
        check(r.returncode == 1, "a garbled layer must fail where it is not stored")

        # concurrent overlapping loads
        croot = os.path.join(work, "conc")
        procs = [subprocess.Popen([L.SHALE, "--root", croot, "load", "-i", x], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for x in (da, db, da, db)]
        for p_ in procs:
            out, err = p_.communicate()
            check(p_.returncode == 0, f"concurrent load: {err.decode()}")
        tars = [f for f in os.listdir(os.path.join(croot, "layers")) if f.endswith(".tar")]
        check(len(tars) == 4, f"concurrent loads: each layer once: {tars}")
        r = shale(croot, "fsck", "--deep")
        check(r.returncode == 0, f"fsck after concurrent loads: {r.stdout}")
        r = shale(croot, "images", "-q")
        check(len(r.stdout.split()) == 2, f"two images after concurrent loads: {r.stdout}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_store_admin: {len(failures)} failures")
        return 1
    print("test_store_admin: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
