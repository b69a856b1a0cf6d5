#!/usr/bin/env python3
"""`shale load`: every archive shape, names, platforms, dedup, hostile input.

Archives are built here byte by byte (python tarfile/json) in the exact shapes
real tools write (formats.md A.1-A.4): legacy docker-archive with symlinked
layer.tar, Docker >= 25 (OCI layout + manifest.json, tag-only ref.name),
containerd exports (compressed blobs, index.json without mediaType), nested
multi-platform indexes with attestations and missing platforms, OCI layout
directories; plus `podman save -m` of several images. Each is loaded from a file
(two-pass, parallel), a pipe (streamed) and compressed pipes; image IDs, diff_ids,
manifest digests and names are checked. Hostile inputs must fail with exit 1,
one error line naming the culprit, and leave the store byte-identical.
"""
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = []
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)
    return cond


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def jdump(o):
    return json.dumps(o, separators=(",", ":"), sort_keys=True).encode()


def shale(root, *args, stdin=None, data=None):
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, stdin=stdin, input=data)


def must(r, what):
    if r.returncode != 0:
        raise AssertionError(f"{what}: {r.stderr.decode()}")
    return r.stdout.decode()


def inspect(root, ref):
    return json.loads(must(shale(root, "inspect", ref), f"inspect {ref}"))[0]


def store_state(root):
    """hash of every file but lock files; plus leftover temp files"""
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
    if os.path.isdir(os.path.join(root, "tmp")):
        for dp, dn, fn in os.walk(os.path.join(root, "tmp")):
            leftover += [f for f in fn if f not in ("lock", ".lock")]
    return h.hexdigest(), leftover


# ---- building blocks ---------------------------------------------------------

def layer(files, seed=""):
    """an uncompressed layer tar: {path: bytes}"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for p, d in sorted(files.items()):
            ti = tarfile.TarInfo(p)
            ti.size, ti.mtime, ti.mode = len(d), 1700000000, 0o644
            t.addfile(ti, io.BytesIO(d))
        ti = tarfile.TarInfo("seed")
        ti.size, ti.mtime = len(seed), 1700000000
        t.addfile(ti, io.BytesIO(seed.encode()))
    return buf.getvalue()


def config(diff_ids, arch="amd64", os_="linux", extra=None):
    c = {"architecture": arch, "os": os_, "created": "2024-01-02T03:04:05Z",
         "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
         "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    c.update(extra or {})
    return json.dumps(c, indent=1).encode()  # not compact on purpose: bytes are kept verbatim


def manifest(cfg, blobs, media=MT_TAR, cfg_media=MT_CONFIG):
    return jdump({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                  "config": {"mediaType": cfg_media, "digest": sha(cfg), "size": len(cfg)},
                  "layers": [{"mediaType": media, "digest": sha(b), "size": len(b)} for b in blobs]})


def desc(mt, b, **kw):
    d = {"mediaType": mt, "digest": sha(b), "size": len(b)}
    d.update(kw)
    return d


def tar_of(entries, fmt=tarfile.USTAR_FORMAT):
    """entries: list of (name, bytes | ('sym', target) | ('dir',))"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, d in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if isinstance(d, tuple) and d[0] == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, d[1]
                t.addfile(ti)
            elif isinstance(d, tuple) and d[0] == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(d), 0o444
                t.addfile(ti, io.BytesIO(d))
    return buf.getvalue()


def blob_entries(blobs):
    return [("blobs/sha256/" + sha(b)[7:], b) for b in blobs]


LAYERS = [layer({"etc/os-release": b"ID=test\n", "bin/sh": b"#!sh\n" * 100}, "a"),
          layer({"usr/share/doc/x": os.urandom(20000)}, "b"),
          layer({"app/main": b"main\n" * 3000}, "c")]
DIFFS = [sha(x) for x in LAYERS]


def legacy_archive():
    """docker save (Docker <= 24): <id>/layer.tar, a symlinked repeat, two images"""
    cfg1 = config(DIFFS[:2])
    cfg2 = config([DIFFS[0], DIFFS[2], DIFFS[0]], extra={"comment": "second"})
    ids = ["%064x" % (i + 1) for i in range(5)]
    ents = [
        (ids[0] + "/VERSION", b"1.0"), (ids[0] + "/json", b'{"id":"x"}'), (ids[0] + "/layer.tar", LAYERS[0]),
        (ids[1] + "/VERSION", b"1.0"), (ids[1] + "/layer.tar", LAYERS[1]),
        (ids[2] + "/layer.tar", LAYERS[2]),
        (ids[3] + "/layer.tar", ("sym", "../" + ids[0] + "/layer.tar")),
        (sha(cfg1)[7:] + ".json", cfg1), (sha(cfg2)[7:] + ".json", cfg2),
        ("manifest.json", jdump([
            {"Config": sha(cfg1)[7:] + ".json", "RepoTags": ["busybox:latest", "example.com/team/bb:1"],
             "Layers": [ids[0] + "/layer.tar", ids[1] + "/layer.tar"]},
            {"Config": sha(cfg2)[7:] + ".json", "RepoTags": None,
             "Layers": [ids[3] + "/layer.tar", ids[2] + "/layer.tar", ids[0] + "/layer.tar"]}])),
        ("repositories", b'{"busybox":{"latest":"' + ids[1].encode() + b'"}}'),
    ]
    return tar_of(ents), cfg1, cfg2


def docker25_archive(with_containerd_name=True):
    """docker save (Docker >= 25): OCI layout + manifest.json, layers named by diff_id"""
    cfg = config(DIFFS)
    man = manifest(cfg, LAYERS)
    ann = {"org.opencontainers.image.ref.name": "1.0"}
    if with_containerd_name:
        ann["io.containerd.image.name"] = "docker.io/library/myapp:1.0"
    index = jdump({"schemaVersion": 2, "mediaType": MT_INDEX,
                   "manifests": [desc(MT_MANIFEST, man, annotations=ann)]})
    mj = jdump([{"Config": "blobs/sha256/" + sha(cfg)[7:], "RepoTags": ["myapp:1.0"],
                 "Layers": ["blobs/sha256/" + d[7:] for d in DIFFS],
                 "LayerSources": {d: {"mediaType": MT_TAR, "digest": d, "size": len(b)} for d, b in zip(DIFFS, LAYERS)}}])
    ents = [("blobs", ("dir",)), ("blobs/sha256", ("dir",))] + blob_entries([cfg, man] + LAYERS) + [
        ("index.json", index), ("manifest.json", mj), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
        ("repositories", b'{"myapp":{"1.0":"' + DIFFS[-1][7:].encode() + b'"}}')]
    return tar_of(ents, tarfile.PAX_FORMAT), cfg, man


def gz(b):
    return gzip.compress(b, mtime=0)


def containerd_archive():
    """ctr export / docker save with the containerd store: compressed blobs first
    (sorted by path), index.json without mediaType"""
    blobs = [gz(x) for x in LAYERS]
    cfg = config(DIFFS)
    man = jdump({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                 "config": {"mediaType": MT_CONFIG, "digest": sha(cfg), "size": len(cfg)},
                 "layers": [desc(MT_GZ, b) for b in blobs]})
    index = jdump({"schemaVersion": 2, "manifests": [desc(MT_MANIFEST, man, annotations={
        "io.containerd.image.name": "ghcr.io/org/tool:v2", "org.opencontainers.image.ref.name": "v2"})]})
    mj = jdump([{"Config": "blobs/sha256/" + sha(cfg)[7:], "RepoTags": ["ghcr.io/org/tool:v2"],
                 "Layers": ["blobs/sha256/" + sha(b)[7:] for b in blobs]}])
    ents = sorted(blob_entries([cfg, man] + blobs)) + [
        ("index.json", index), ("manifest.json", mj), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    return tar_of(ents), cfg, man, blobs


def multiplatform(omit_arm=False, depth=1, attest=True, all_present=True):
    """index.json -> (nested) index: amd64, arm64/v8, an attestation manifest"""
    amd = config(DIFFS[:2], "amd64")
    arm_layer = layer({"arm": b"arm64\n"}, "arm")
    arm = config([DIFFS[0], sha(arm_layer)], "arm64", extra={"variant": "v8"})
    m_amd, m_arm = manifest(amd, LAYERS[:2]), manifest(arm, [LAYERS[0], arm_layer])
    intoto = b'{"_type":"https://in-toto.io/Statement/v0.1"}'
    att_cfg = b"{}"
    m_att = jdump({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                   "config": {"mediaType": MT_CONFIG, "digest": sha(att_cfg), "size": 2},
                   "layers": [desc("application/vnd.in-toto+json", intoto)]})
    ms = [desc(MT_MANIFEST, m_arm, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
          desc(MT_MANIFEST, m_amd, platform={"os": "linux", "architecture": "amd64"})]
    if attest:
        ms.append(desc(MT_MANIFEST, m_att, platform={"os": "unknown", "architecture": "unknown"},
                       annotations={"vnd.docker.reference.type": "attestation-manifest",
                                    "vnd.docker.reference.digest": sha(m_amd)}))
    inner = jdump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": ms})
    blobs = [inner, m_amd, amd] + LAYERS[:2]
    if attest:
        blobs += [m_att, intoto, att_cfg]
    if not omit_arm:
        blobs += [m_arm, arm, arm_layer]
    top = inner
    for _ in range(depth - 1):
        top = jdump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [desc(MT_INDEX, top)]})
        blobs.append(top)
    index = jdump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [
        desc(MT_INDEX, top, annotations={"io.containerd.image.name": "docker.io/library/multi:1"})]})
    ents = blob_entries(blobs) + [("index.json", index), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    return tar_of(ents), {"amd": (amd, m_amd), "arm": (arm, m_arm)}


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def unpack(data, d):
    os.makedirs(d)
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        t.extractall(d, filter="fully_trusted") if sys.version_info >= (3, 12) else t.extractall(d)
    return d


def loaded(out):
    return [ln for ln in out.splitlines() if ln.startswith("Loaded image")]


# ---- the checks ---------------------------------------------------------------

def run(work):
    n = [0]

    def fresh():
        n[0] += 1
        return os.path.join(work, f"st{n[0]}")

    # legacy docker-archive: file (two passes), pipe, compressed pipes
    leg, cfg1, cfg2 = legacy_archive()
    legp = write(os.path.join(work, "legacy.tar"), leg)
    variants = {"file": ("-i", legp), "pipe": None, "gzip": gz(leg), "xz": lzma.compress(leg),
                "bzip2": bz2.compress(leg)}
    if shutil.which("zstd"):
        variants["zstd"] = subprocess.run(["zstd", "-q", "-c"], input=leg, capture_output=True).stdout
    for kind, v in variants.items():
        root = fresh()
        if kind == "file":
            r = shale(root, "load", *v)
        elif kind == "pipe":
            r = shale(root, "load", data=leg)
        else:
            r = shale(root, "load", data=v)
        if not check(r.returncode == 0, f"legacy {kind}: {r.stderr.decode()}"):
            continue
        out = r.stdout.decode()
        check(loaded(out) == ["Loaded image: busybox:latest", "Loaded image: example.com/team/bb:1",
                              "Loaded image ID: " + sha(cfg2)], f"legacy {kind}: output {out!r}")
        img = inspect(root, "busybox")
        check(img["Id"] == sha(cfg1) and img["RootFS"]["Layers"] == DIFFS[:2], f"legacy {kind}: image 1")
        img2 = inspect(root, sha(cfg2))
        check(img2["RootFS"]["Layers"] == [DIFFS[0], DIFFS[2], DIFFS[0]], f"legacy {kind}: image 2 layers")
        layers = sorted(f for f in os.listdir(os.path.join(root, "layers")) if f.endswith(".tar"))
        check(layers == sorted(d[7:] + ".tar" for d in DIFFS), f"legacy {kind}: stored layers {layers}")
        for d, b in zip(DIFFS, LAYERS):
            with open(os.path.join(root, "layers", d[7:] + ".tar"), "rb") as f:
                check(f.read() == b, f"legacy {kind}: stored tar {d} differs from the source")
    # stdin as a regular file (seekable, two passes on fd 0)
    root = fresh()
    with open(legp, "rb") as f:
        r = shale(root, "load", "-q", stdin=f)
    check(r.returncode == 0 and r.stdout.decode().split() == ["busybox:latest", "example.com/team/bb:1", sha(cfg2)],
          f"legacy from stdin file, -q: {r.stdout!r} {r.stderr!r}")
    # --json lines
    root = fresh()
    r = shale(root, "--json", "load", "-i", legp)
    lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
    check(r.returncode == 0 and {"event": "Loaded image ID", "image": sha(cfg2)} in lines and len(lines) == 3,
          f"--json: {r.stdout!r}")
    # --tag names the untagged image
    root = fresh()
    r = shale(root, "load", "--tag", "second:v1", "-i", legp)
    check(r.returncode == 0 and "Loaded image: second:v1" in r.stdout.decode(), f"--tag: {r.stdout!r} {r.stderr!r}")
    check(inspect(root, "second:v1")["Id"] == sha(cfg2), "--tag named the wrong image")

    # dedup: stored layers are not read from a file (a corrupted copy loads),
    # but a stream must read them (and then the corruption shows)
    lroot = fresh()
    must(shale(lroot, "load", "-i", legp), "legacy load")
    inodes = {f: os.stat(os.path.join(lroot, "layers", f)).st_ino for f in os.listdir(os.path.join(lroot, "layers"))}
    bad = leg.replace(b"#!sh\n" * 100, b"#!SH\n" * 100)
    check(bad != leg, "corruption did not apply")
    badp = write(os.path.join(work, "legacy-bad.tar"), bad)
    r = shale(lroot, "load", "-i", badp)
    check(r.returncode == 0, f"reload from a file read stored layers: {r.stderr.decode()}")
    before = store_state(lroot)
    r = shale(lroot, "load", data=bad)
    check(r.returncode == 1 and "diff_id" in r.stderr.decode(), f"corrupt layer through a pipe: {r.stderr!r}")
    check(store_state(lroot) == before, "failed pipe load changed the store")
    now = {f: os.stat(os.path.join(lroot, "layers", f)).st_ino for f in os.listdir(os.path.join(lroot, "layers"))}
    check(now == inodes, "layers were rewritten on reload")

    # Docker >= 25: manifest kept verbatim, names from io.containerd.image.name
    # or tag-only ref.name paired with manifest.json RepoTags
    for cname in (True, False):
        d25, cfg, man = docker25_archive(cname)
        p = write(os.path.join(work, f"d25-{cname}.tar"), d25)
        for how in ("file", "pipe"):
            root = fresh()
            r = shale(root, "load", "-i", p) if how == "file" else shale(root, "load", data=d25)
            if not check(r.returncode == 0, f"docker25 {cname} {how}: {r.stderr.decode()}"):
                continue
            check(loaded(r.stdout.decode()) == ["Loaded image: myapp:1.0"], f"docker25 {cname} {how}: {r.stdout!r}")
            img = inspect(root, "myapp:1.0")
            check(img["Id"] == sha(cfg) and img["RootFS"]["Layers"] == DIFFS, f"docker25 {cname} {how}: IDs")
            check(img["Shale"]["Manifest"] == sha(man), f"docker25 {cname} {how}: manifest digest not kept")
    # --tag on an archive that names its one image: one more name, not ignored
    root = fresh()
    r = shale(root, "load", "--tag", "mine/app:2", "-i", p)
    check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: myapp:1.0", "Loaded image: mine/app:2"],
          f"--tag on a named image: {r.stdout!r} {r.stderr!r}")
    check(r.returncode == 0 and inspect(root, "mine/app:2")["Id"] == inspect(root, "myapp:1.0")["Id"] == sha(cfg),
          "--tag on a named image: the names differ")
    # Docker >= 25 quirks: an untagged image missing from index.json (moby
    # #51389), "manifests": null (moby #47210); manifest.json has them
    d25e = tarfile_entries(docker25_archive()[0])
    ucfg = config(DIFFS[:1], extra={"comment": "untagged"})
    mj = json.loads([d for n_, d in d25e if n_ == "manifest.json"][0])
    mj.append({"Config": "blobs/sha256/" + sha(ucfg)[7:], "RepoTags": [], "Layers": ["blobs/sha256/" + DIFFS[0][7:]],
               "LayerSources": {DIFFS[0]: {"mediaType": MT_TAR, "digest": DIFFS[0], "size": len(LAYERS[0])}}})
    q1 = tar_of([(n_, jdump(mj) if n_ == "manifest.json" else d) for n_, d in d25e] + blob_entries([ucfg]))
    q2 = tar_of([(n_, jdump(mj) if n_ == "manifest.json" else
                  (b'{"schemaVersion":2,"mediaType":"%s","manifests":null}' % MT_INDEX.encode() if n_ == "index.json" else d))
                 for n_, d in d25e] + blob_entries([ucfg]))
    for qname, q in (("#51389", q1), ("#47210", q2)):
        root = fresh()
        r = shale(root, "load", data=q)
        check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: myapp:1.0", "Loaded image ID: " + sha(ucfg)],
              f"docker25 {qname}: {r.stdout!r} {r.stderr!r}")
        if r.returncode == 0 and qname == "#51389":
            check(inspect(root, "myapp:1.0")["Shale"]["Manifest"] == sha(docker25_archive()[2]), f"{qname}: manifest")

    # the same layout as a directory
    d25, cfg, man = docker25_archive(False)
    dd = unpack(d25, os.path.join(work, "d25dir"))
    root = fresh()
    r = shale(root, "load", "-i", dd)
    check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: myapp:1.0"], f"OCI dir: {r.stderr!r}")

    # containerd export: gzip blobs stored once, aliases make a second load read nothing
    ca, cfg, man, blobs = containerd_archive()
    cap = write(os.path.join(work, "ctr.tar"), ca)
    root = fresh()
    r = shale(root, "load", data=ca)
    check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: ghcr.io/org/tool:v2"],
          f"containerd export: {r.stdout!r} {r.stderr!r}")
    if r.returncode == 0:
        img = inspect(root, "ghcr.io/org/tool:v2")
        check(img["Id"] == sha(cfg) and img["RootFS"]["Layers"] == DIFFS and img["Shale"]["Manifest"] == sha(man),
              "containerd export: IDs")
        # known compressed blobs are skipped unread, even when their bytes are junk
        junk = ca.replace(blobs[1][100:200], bytes(100))
        check(junk != ca, "junk did not apply")
        r = shale(root, "load", data=junk)
        check(r.returncode == 0, f"known compressed blobs were read: {r.stderr.decode()}")
    root = fresh()
    r = shale(root, "load", "-i", cap)
    check(r.returncode == 0, f"containerd export from a file: {r.stderr.decode()}")
    # the layers equal the ones of the docker-archive: stored once per diff_id
    r = shale(root, "load", "-i", legp)
    check(len([f for f in os.listdir(os.path.join(root, "layers")) if f.endswith(".tar")]) == 3,
          "gzip and plain forms of a layer stored twice")

    # multi-platform: host (amd64) by default, --platform, --all-platforms,
    # attestations skipped, missing platforms tolerated when not selected
    mp, ids = multiplatform()
    mpp = write(os.path.join(work, "mp.tar"), mp)
    host = os.uname().machine
    if host == "x86_64":
        root = fresh()
        r = shale(root, "load", "-i", mpp)
        check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: multi:1"], f"multi default: {r.stderr!r}")
        if r.returncode == 0:
            check(inspect(root, "multi:1")["Id"] == sha(ids["amd"][0]), "multi default picked the wrong platform")
    root = fresh()
    r = shale(root, "load", "--platform", "linux/arm64", "-i", mpp)
    check(r.returncode == 0 and inspect(root, "multi:1")["Id"] == sha(ids["arm"][0]),
          f"--platform linux/arm64: {r.stderr!r}")
    root = fresh()
    r = shale(root, "load", "--platform", "linux/amd64", "--all-platforms", "-i", mpp)
    out = r.stdout.decode()
    check(r.returncode == 0 and loaded(out) == ["Loaded image ID: " + sha(ids["arm"][0]), "Loaded image: multi:1"],
          f"--all-platforms: {out!r} {r.stderr!r}")
    if r.returncode == 0:
        check(inspect(root, "multi:1")["Id"] == sha(ids["amd"][0]), "--all-platforms: name on the wrong platform")
    mp2, ids = multiplatform(omit_arm=True, depth=3)
    for args in (["--platform", "linux/amd64"], ["--all-platforms", "--platform", "linux/amd64"]):
        root = fresh()
        r = shale(root, "load", *args, data=mp2)
        check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: multi:1"],
              f"multi, arm64 blobs absent, {args}: {r.stdout!r} {r.stderr!r}")
    root = fresh()
    r = shale(root, "load", "--platform", "linux/arm64", data=mp2)
    check(r.returncode == 1 and "missing" in r.stderr.decode(), f"selecting an absent platform: {r.stderr!r}")
    r = shale(root, "load", "--platform", "linux/s390x", data=mp2)
    check(r.returncode == 1 and "no image for platform linux/s390x" in r.stderr.decode(), f"no such platform: {r.stderr!r}")
    r = shale(root, "load", "--platform", "linux", data=mp2)
    check(r.returncode == 1 and "bad platform" in r.stderr.decode(), f"bad --platform: {r.stderr!r}")

    # identical duplicates are fine (tar -r style appends)
    d25, cfg, man = docker25_archive()
    dups = tar_of(blob_entries([cfg, man] + LAYERS) + blob_entries([LAYERS[0], cfg]) + [
        ("index.json", jdump({"schemaVersion": 2, "manifests": [desc(MT_MANIFEST, man, annotations={
            "org.opencontainers.image.ref.name": "docker.io/library/dup:1"})]})),
        ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')])
    for how in ("file", "pipe"):
        root = fresh()
        r = shale(root, "load", "-i", write(os.path.join(work, "dups.tar"), dups)) if how == "file" else \
            shale(root, "load", data=dups)
        check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: dup:1"],
              f"identical duplicates ({how}): {r.stderr!r}")

    # incremental: a layer absent from the archive comes from the store
    inc = tar_of([(n_, d) for n_, d in tarfile_entries(leg) if not n_.endswith("2/layer.tar")])
    root = fresh()
    r = shale(root, "load", data=inc)
    check(r.returncode == 1 and DIFFS[1] in r.stderr.decode() and "missing" in r.stderr.decode(),
          f"incremental without the layer: {r.stderr!r}")
    must(shale(root, "load", "-i", cap), "load ctr")
    r = shale(root, "load", data=inc)
    check(r.returncode == 0 and "Loaded image: busybox:latest" in r.stdout.decode(),
          f"incremental with the layer stored: {r.stderr!r}")

    # concurrent loads of overlapping images (files and pipes): all succeed,
    # each layer stored once
    root = fresh()
    d25p = write(os.path.join(work, "d25-conc.tar"), docker25_archive()[0])
    procs = []
    for cmd in (["-i", legp], ["-i", cap], ["-i", d25p], ["<", cap], ["<", legp]):
        if cmd[0] == "<":  # a pipe
            argv = ["sh", "-c", 'cat "$1" | "$2" --root "$3" load', "sh", cmd[1], L.SHALE, root]
        else:
            argv = [L.SHALE, "--root", root, "load", *cmd]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p_ in procs:
        out, err = p_.communicate()
        check(p_.returncode == 0, f"concurrent load: {err.decode()}")
    tars = sorted(f for f in os.listdir(os.path.join(root, "layers")) if f.endswith(".tar"))
    check(tars == sorted(d[7:] + ".tar" for d in DIFFS), f"concurrent loads: layers {tars}")
    r = shale(root, "fsck")
    check(r.returncode == 0, f"fsck after concurrent loads: {r.stdout!r} {r.stderr!r}")

    hostile(work, fresh, leg, legp, d25)
    podman(work, fresh)


def tarfile_entries(data):
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            if m.issym():
                out.append((m.name, ("sym", m.linkname)))
            elif m.isdir():
                out.append((m.name, ("dir",)))
            else:
                out.append((m.name, t.extractfile(m).read()))
    return out


def hostile(work, fresh, leg, legp, d25):
    # a store with an unrelated image (the hostile archives' layers are not in it)
    root = fresh()
    other = layer({"other": b"unrelated\n"}, "z")
    ocfg = config([sha(other)])
    seed = tar_of([("l/layer.tar", other), ("c.json", ocfg),
                   ("manifest.json", jdump([{"Config": "c.json", "RepoTags": ["seed:1"], "Layers": ["l/layer.tar"]}]))])
    must(shale(root, "load", data=seed), "seed the hostile store")
    d25e = tarfile_entries(d25)
    cfg = [d for n_, d in d25e if isinstance(d, bytes) and d.startswith(b"{\n")][0]

    def d25_with(mutate, extra=()):
        out = []
        for n_, d in d25e:
            r = mutate(n_, d)
            if r is not None:
                out.append((n_, r))
        return tar_of(out + list(extra), tarfile.PAX_FORMAT)

    def with_manifest(newman):
        idx = jdump({"schemaVersion": 2, "manifests": [desc(MT_MANIFEST, newman, annotations={
            "io.containerd.image.name": "docker.io/library/h:1"})]})
        return d25_with(lambda n_, d: idx if n_ == "index.json" else (None if n_ == "manifest.json" else d),
                        [("blobs/sha256/" + sha(newman)[7:], newman)])

    layer_blob = "blobs/sha256/" + DIFFS[1][7:]
    flipped = LAYERS[1].replace(LAYERS[1][2000:2010], b"X" * 10)  # still a valid tar
    leg_e = tarfile_entries(leg)
    ccfg_bad = cfg.replace(b'"amd64"', b'"arm64"')
    cases = {
        "truncated": leg[: len(leg) // 2 + 100],
        "garbage": os.urandom(4096),
        "empty": b"",
        "layer digest mismatch": d25_with(lambda n_, d: flipped if n_ == layer_blob else d),
        "config digest mismatch": d25_with(lambda n_, d: ccfg_bad if d == cfg else d),
        "missing layer blob": d25_with(lambda n_, d: None if n_ == layer_blob else d),
        "missing config": d25_with(lambda n_, d: None if d == cfg else d),
        "manifest names an absent layer": tar_of([(n_, jdump([dict(json.loads(d)[0], Layers=json.loads(d)[0]["Layers"][:1] + ["nope/layer.tar"])])
                                                   if n_ == "manifest.json" else d) for n_, d in leg_e if not n_.startswith("repo")]),
        "layers vs diff_ids count": tar_of([(n_, jdump([dict(json.loads(d)[0], Layers=json.loads(d)[0]["Layers"][:1])])
                                              if n_ == "manifest.json" else d) for n_, d in leg_e]),
        "diff_id mismatch": tar_of([(n_, jdump([dict(json.loads(d)[0], Layers=list(reversed(json.loads(d)[0]["Layers"])))])
                                     if n_ == "manifest.json" else d) for n_, d in leg_e]),
        "json over cap": tar_of([("manifest.json", b"[" + b"1," * (9 << 20) + b"1]")]),
        "unknown layer media type": with_manifest(manifest(cfg, LAYERS, media="application/vnd.example.weird")),
        "unknown config media type": with_manifest(manifest(cfg, LAYERS, cfg_media="application/vnd.cncf.helm.config.v1+json")),
        "schema1 manifest": with_manifest(jdump({"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"})),
        "dotdot entry": tar_of([("a/../../evil", b"{}")]),
        "control bytes in a name": tar_of([("a\n\x1b[31mb/../../evil", b"{}")]),  # the error stays one line
        "absolute entry": tar_of([("/etc/evil", b"{}")]),
        "symlink escaping": tar_of(leg_e + [("esc/layer.tar", ("sym", "../../etc/passwd"))]),
        "absolute symlink": tar_of([("x/layer.tar", ("sym", "/etc/passwd"))] + leg_e),
        "duplicate with other content": tar_of(leg_e + [("repositories", b'{"x":{}}')]),
        "duplicate layer with other content": tar_of(leg_e + [(leg_e[2][0], LAYERS[2])]),
        "nested too deep": multiplatform(depth=6)[0],
        "not an image archive": tar_of([("hello.txt", b"hi")]),
    }
    # --tag cannot name two untagged images
    two = tar_of([(n_, jdump([dict(e, RepoTags=None) for e in json.loads(d)]) if n_ == "manifest.json" else d)
                  for n_, d in leg_e])
    for name, data in cases.items():
        for how in ("file", "pipe"):
            if how == "file" and not data:
                continue
            before = store_state(root)
            p = write(os.path.join(work, "hostile.tar"), data)
            r = shale(root, "load", "-i", p) if how == "file" else shale(root, "load", data=data)
            err = r.stderr.decode()
            lines = [ln for ln in err.splitlines() if ln.strip()]
            check(r.returncode == 1, f"hostile {name} ({how}): exit {r.returncode} {err!r}")
            check(len(lines) == 1 and lines[0].startswith("shale: error:"), f"hostile {name} ({how}): stderr {err!r}")
            after = store_state(root)
            check(after[0] == before[0] and not after[1], f"hostile {name} ({how}): store changed / temp files {after[1]}")
            print(f"ok hostile {name} ({how}): {lines[0] if lines else ''}")
    before = store_state(root)
    r = shale(root, "load", "--tag", "x:1", data=two)
    check(r.returncode == 1 and "several untagged images" in r.stderr.decode(), f"--tag with two: {r.stderr!r}")
    check(store_state(root) == before, "--tag conflict changed the store")
    # several images, each named: which one --tag means is unclear
    named = tar_of([(n_, jdump([dict(e, RepoTags=[f"n{i}:1"]) for i, e in enumerate(json.loads(d))])
                     if n_ == "manifest.json" else d) for n_, d in leg_e])
    r = shale(root, "load", "--tag", "x:1", data=named)
    check(r.returncode == 1 and "several images, each named" in r.stderr.decode(), f"--tag with two named: {r.stderr!r}")
    check(store_state(root) == before, "--tag with two named images changed the store")
    # culprits are named
    for name, want in (("layer digest mismatch", DIFFS[1][7:]), ("missing layer blob", DIFFS[1]),
                       ("symlink escaping", "esc/layer.tar"), ("duplicate with other content", "repositories"),
                       ("unknown layer media type", "application/vnd.example.weird"),
                       ("dotdot entry", "a/../../evil")):
        r = shale(root, "load", data=cases[name])
        check(want in r.stderr.decode(), f"hostile {name}: error does not name {want}: {r.stderr!r}")
    # OCI layout directories: symlinks refused
    d = unpack(d25, os.path.join(work, "evil-dir"))
    os.symlink("/etc/passwd", os.path.join(d, "blobs", "sha256", "f" * 64))
    before = store_state(root)
    r = shale(root, "load", "-i", d)
    check(r.returncode == 1 and "symlink" in r.stderr.decode(), f"OCI dir with a symlink: {r.stderr!r}")
    check(store_state(root) == before, "OCI dir with a symlink changed the store")


def podman(work, fresh):
    if not shutil.which("podman"):
        print("note: podman missing, skipping the podman part")
        return
    pod = ["podman", "--root", os.path.join(work, "p-root"), "--runroot", os.path.join(work, "p-run"),
           "--storage-driver", "vfs"]
    ids = {}
    for i, name in enumerate(("localhost/one:1", "quay.io/x/two:latest")):
        src = write(os.path.join(work, f"imp{i}.tar"), LAYERS[i])
        r = subprocess.run([*pod, "import", src, name], capture_output=True)
        if r.returncode != 0:
            print(f"note: podman import failed, skipping the podman part: {r.stderr.decode()[-300:]}")
            return
        ids[name] = "sha256:" + r.stdout.decode().strip().split(":")[-1]
    out = os.path.join(work, "pm.tar")
    r = subprocess.run([*pod, "save", "-m", "--format", "docker-archive", "-o", out, *ids], capture_output=True)
    if not check(r.returncode == 0, f"podman save -m: {r.stderr.decode()}"):
        return
    for how in ("file", "pipe"):
        root = fresh()
        if how == "file":
            r = shale(root, "load", "-i", out)
        else:
            with open(out, "rb") as f:
                r = shale(root, "load", data=f.read())
        check(r.returncode == 0 and sorted(loaded(r.stdout.decode())) ==
              ["Loaded image: localhost/one:1", "Loaded image: quay.io/x/two:latest"], f"podman save -m ({how}): {r.stdout!r} {r.stderr!r}")
        for name, iid in ids.items():
            if r.returncode == 0:
                img = inspect(root, name)
                check(img["Id"] == iid, f"podman {name}: id {img['Id']} != {iid}")
    out = os.path.join(work, "po.tar")
    r = subprocess.run([*pod, "save", "--format", "oci-archive", "-o", out, "quay.io/x/two:latest"], capture_output=True)
    if check(r.returncode == 0, f"podman save oci-archive: {r.stderr.decode()}"):
        root = fresh()
        r = shale(root, "load", "-i", out)
        check(r.returncode == 0 and loaded(r.stdout.decode()) == ["Loaded image: quay.io/x/two:latest"],
              f"podman oci-archive: {r.stdout!r} {r.stderr!r}")


def main():
    work = tempfile.mkdtemp(prefix="shl-loadfmt-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_load_formats: {len(failures)} failures")
        return 1
    print("test_load_formats: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
