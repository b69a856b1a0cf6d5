#!/usr/bin/env python3
"""`shale save` from the command line, against real peers.

Source images are built with umoci from fixture layer tars and saved by podman
(docker-archive, two images). `shale load` takes them in; `shale save` writes
them out again (to a file, to stdout redirected into a file, to a pipe: all the
same bytes). The saved archive must be read by skopeo (docker-archive: and
oci-archive:, inspect and copy), loaded by podman and by shale into fresh
stores, with the image IDs (config digests) and diff_ids of the source; saving
on the far side gives the same bytes again. Incremental export: the target
prints `shale df --layers --json`, `save --exclude-layers` leaves those layers
out, the target's `shale load` completes the image, a store without them
refuses it. CLI behaviour: unknown reference -> one error line, exit 1, no
output file and no temp file (an existing file is left alone); a terminal as
stdout is refused; bad options exit 2.
"""
import hashlib
import json
import os
import pty
import shutil
import subprocess
import sys
import tarfile

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


def shale(root, *args, ok=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    r = subprocess.run([L.SHALE, "--root", root, *args], stderr=subprocess.PIPE, **kw)
    if ok and r.returncode != 0:
        raise AssertionError(f"shale {' '.join(args)}: {r.stderr.decode()}")
    return r


def config_ids(ref):
    """(image id, diff_ids) of a skopeo-readable image, from its config bytes."""
    cfg = sh("skopeo", "inspect", "--raw", "--config", ref)
    return "sha256:" + hashlib.sha256(cfg).hexdigest(), json.loads(cfg)["rootfs"]["diff_ids"]


def shale_ids(root, ref):
    j = json.loads(shale(root, "inspect", ref).stdout)[0]
    return j["Id"], j["RootFS"]["Layers"]


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    for tool in ("skopeo", "umoci", "podman"):
        if not shutil.which(tool):
            L.skip(f"{tool} not installed")
    work = "/tmp/shl-savecli-%d-%d" % (os.getpid(), int.from_bytes(os.urandom(4), "little"))
    os.makedirs(work)
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_save_cli: {len(failures)} failures")
        return 1
    print("test_save_cli: all checks passed")
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
    src = {"localhost/multi:1": config_ids("oci:" + oci + ":multi"),
           "localhost/small:1": config_ids("oci:" + oci + ":small")}
    check(src["localhost/multi:1"][1][0] == src["localhost/small:1"][1][0], "fixture: the images share a base layer")

    # podman makes the source archive (two images, docker-archive)
    pod = ["podman", "--root", os.path.join(work, "p-root"), "--runroot", os.path.join(work, "p-run"),
           "--storage-driver", "vfs", "--events-backend", "none"]
    for name in ("multi", "small"):
        iid = sh(*pod, "pull", "-q", f"oci:{oci}:{name}").decode().split()[-1]
        sh(*pod, "tag", iid, f"localhost/{name}:1")
    pd = os.path.join(work, "pd.tar")
    sh(*pod, "save", "-m", "--format", "docker-archive", "-o", pd, "localhost/multi:1", "localhost/small:1")

    st1 = os.path.join(work, "st1")
    out = shale(st1, "load", "-i", pd).stdout.decode()
    check("Loaded image: localhost/multi:1" in out, f"load output: {out!r}")
    for ref, ids in src.items():
        check(shale_ids(st1, ref) == ids, f"{ref}: loaded IDs differ from the source")

    # save: file, stdout into a file, a pipe -> the same bytes
    s1, s2 = os.path.join(work, "s1.tar"), os.path.join(work, "s2.tar")
    shale(st1, "save", "-o", s1, "localhost/multi:1", "localhost/small:1")
    with open(s2, "wb") as f:
        shale(st1, "save", "localhost/multi:1", "localhost/small:1", stdout=f)
    check(read(s1) == read(s2), "save to stdout (a file) differs from -o")
    r = subprocess.run([L.SHALE, "--root", st1, "save", "localhost/multi:1", "localhost/small:1"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0 and r.stdout == read(s1), "save to a pipe differs from -o")
    check(oct(os.stat(s1).st_mode & 0o777) == oct(0o666 & ~current_umask()), "-o file mode follows the umask")
    names = tarfile.open(s1).getnames()
    check(names[:2] == ["blobs", "blobs/sha256"] and names[-4:] == ["index.json", "manifest.json", "oci-layout",
                                                                     "repositories"], f"archive members: {names}")
    check(len([n for n in names if n.startswith("blobs/sha256/")]) == 4 + 2 + 2,  # layers, configs, manifests
          f"shared base layer written once: {names}")

    # peers read it, with the source's IDs
    for ref, ids in src.items():
        check(config_ids(f"docker-archive:{s1}:{ref}") == ids, f"skopeo docker-archive:{ref}")
    check(config_ids(f"oci-archive:{s1}:1") in src.values(), "skopeo oci-archive by ref.name (tag only)")
    r = subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{s1}:localhost/small:1",
                        "oci:" + os.path.join(work, "copied") + ":s"], capture_output=True)
    check(r.returncode == 0, f"skopeo copy of the saved archive: {r.stderr.decode()}")
    pod2 = ["podman", "--root", os.path.join(work, "p2-root"), "--runroot", os.path.join(work, "p2-run"),
            "--storage-driver", "vfs", "--events-backend", "none"]
    r = subprocess.run([*pod2, "load", "-i", s1], capture_output=True)
    if check(r.returncode == 0, f"podman load of the saved archive: {r.stderr.decode()}"):
        for ref, ids in src.items():
            j = json.loads(sh(*pod2, "image", "inspect", ref))[0]
            check(("sha256:" + j["Id"], j["RootFS"]["Layers"]) == ids, f"podman: {ref} IDs")

    # far side: shale load of the saved archive, and saving there gives the same bytes
    st2 = os.path.join(work, "st2")
    shale(st2, "load", "-i", s1)
    for ref, ids in src.items():
        check(shale_ids(st2, ref) == ids, f"far side: {ref} IDs")
    s3 = os.path.join(work, "s3.tar")
    shale(st2, "save", "-o", s3, "localhost/multi:1", "localhost/small:1")
    check(read(s3) == read(s1), "save after a shale -> shale transfer differs")

    # --format oci: one image through podman, skopeo reads the two-image one
    so = os.path.join(work, "so.tar")
    shale(st1, "save", "--format", "oci", "-o", so, "localhost/small:1")
    check("manifest.json" not in tarfile.open(so).getnames(), "--format oci has no manifest.json")
    check(config_ids(f"oci-archive:{so}") == src["localhost/small:1"], "skopeo oci-archive (pure OCI)")
    r = subprocess.run([*pod2, "load", "-i", so], capture_output=True)
    check(r.returncode == 0, f"podman load of the OCI archive: {r.stderr.decode()}")

    # incremental export: the target has `small`; its df tells what to leave out
    st3 = os.path.join(work, "st3")
    small_only = os.path.join(work, "small.tar")
    shale(st1, "save", "-o", small_only, "localhost/small:1")
    shale(st3, "load", "-i", small_only)
    have = os.path.join(work, "have.json")
    with open(have, "wb") as f:
        f.write(shale(st3, "df", "--layers", "--json").stdout)
    inc = os.path.join(work, "inc.tar")
    shale(st1, "save", "--exclude-layers", have, "-o", inc, "localhost/multi:1")
    base = src["localhost/multi:1"][1][0]
    inc_names = tarfile.open(inc).getnames()
    check("blobs/sha256/" + base[7:] not in inc_names, "excluded base layer is not in the archive")
    check(os.path.getsize(inc) < os.path.getsize(s1), "incremental archive is smaller")
    r = shale(st3, "load", "-i", inc, ok=False)
    check(r.returncode == 0, f"target completes the incremental archive: {r.stderr.decode()}")
    if r.returncode == 0:
        check(shale_ids(st3, "localhost/multi:1") == src["localhost/multi:1"], "incremental: IDs on the target")
    st4 = os.path.join(work, "st4")
    r = shale(st4, "load", "-i", inc, ok=False)
    check(r.returncode == 1 and base in r.stderr.decode(), f"a store without the layer refuses: {r.stderr.decode()}")
    # the same list as plain text, with a comment
    have_txt = os.path.join(work, "have.txt")
    with open(have_txt, "w") as f:
        f.write("# layers on the target\n" + "\n".join(
            e["diff_id"] for e in json.loads(read(have))) + "\n")
    inc2 = os.path.join(work, "inc2.tar")
    shale(st1, "save", "--exclude-layers", have_txt, "-o", inc2, "localhost/multi:1")
    check(read(inc2) == read(inc), "text and JSON exclude lists give the same archive")
    # ... and from a pipe, as in --exclude-layers <(ssh target shale df --layers --json)
    rfd, wfd = os.pipe()
    os.write(wfd, read(have))
    os.close(wfd)
    inc3 = os.path.join(work, "inc3.tar")
    shale(st1, "save", "--exclude-layers", f"/dev/fd/{rfd}", "-o", inc3, "localhost/multi:1", pass_fds=(rfd,))
    os.close(rfd)
    check(read(inc3) == read(inc), "exclude list from a pipe")

    # errors: one line, exit 1, nothing written, no temp file; an existing file stays
    errdir = os.path.join(work, "errdir")
    os.makedirs(errdir)
    target = os.path.join(errdir, "out.tar")
    r = shale(st1, "save", "-o", target, "localhost/multi:1", "nope:1", ok=False)
    check(r.returncode == 1 and r.stderr.decode() == "shale: error: no such image: nope:1\n",
          f"unknown ref: rc {r.returncode} {r.stderr!r}")
    check(os.listdir(errdir) == [], f"nothing left behind: {os.listdir(errdir)}")
    with open(target, "wb") as f:
        f.write(b"keep me")
    shale(st1, "save", "-o", target, "nope:1", ok=False)
    check(read(target) == b"keep me" and os.listdir(errdir) == ["out.tar"], "an existing file is left alone")
    r = shale(st1, "save", "-o", os.path.join(work, "no-such-dir", "x.tar"), "localhost/small:1", ok=False)
    check(r.returncode == 1 and r.stderr.decode().startswith("shale: error:"), f"bad output dir: {r.stderr!r}")
    # a terminal as stdout is refused (exit 2), bad options too
    master, slave = pty.openpty()
    r = subprocess.run([L.SHALE, "--root", st1, "save", "localhost/small:1"], stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    os.close(master)
    check(r.returncode == 2 and b"terminal" in r.stderr, f"tty stdout: rc {r.returncode} {r.stderr!r}")
    for args in (["--format", "tgz"], ["--compress", "xz"], []):
        r = shale(st1, "save", "-o", os.path.join(work, "x.tar"), *args, ok=False)
        check(r.returncode == 2, f"save {args}: rc {r.returncode}")
    bad = os.path.join(work, "bad-list")
    with open(bad, "w") as f:
        f.write("sha256:abc\n")
    r = shale(st1, "save", "--exclude-layers", bad, "-o", os.path.join(work, "x.tar"), "localhost/small:1", ok=False)
    check(r.returncode == 1 and "line 1" in r.stderr.decode(), f"bad exclude list: {r.stderr!r}")
    check(not os.path.exists(os.path.join(work, "x.tar")), "no output after a bad exclude list")


def current_umask():
    m = os.umask(0)
    os.umask(m)
    return m


if __name__ == "__main__":
    sys.exit(main())
