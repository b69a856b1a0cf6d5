#!/usr/bin/env python3
"""`shale push` to Debian's docker-registry and `shale import` from podman/docker.

push: a loaded image (plain-tar layers) is compressed on the fly (gzip, zstd);
skopeo inspects and copies it back and finds the same image ID and diff_ids; a
pulled image pushed to another repository of the same registry has its blobs
mounted and keeps its manifest digest; a second push uploads nothing.
import: `podman://REF` streams `podman save` (a private podman storage) into the
store; `--tar PATH --name NAME`; a missing docker gives a clear error naming
`--tar`; `dockerd://` when a docker daemon answers.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402
import regserve as R  # noqa: E402

failures = L.failures
check = L.check


def shale(root, *args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, env=e, timeout=300)


def must(r, what):
    if r.returncode != 0:
        raise AssertionError(f"{what}: exit {r.returncode}: {r.stderr.decode()}")
    return r.stdout.decode()


def inspect(root, ref):
    return json.loads(must(shale(root, "inspect", ref), f"inspect {ref}"))[0]


def push_tests(work, lay):
    root = os.path.join(work, "st")
    arch = os.path.join(work, "img.tar")
    R.run(["skopeo", "copy", "-q", f"oci:{lay}:gz", f"docker-archive:{arch}:local/img:1"])
    must(shale(root, "load", "-i", arch), "load")
    img = inspect(root, "local/img:1")
    with R.Registry(os.path.join(work, "reg")) as reg:
        for comp in ("gzip", "zstd"):
            dest = f"{reg.host}/pushed/{comp}:1"
            r = shale(root, "push", "--compress", comp, "local/img:1", dest)
            check(r.returncode == 0, f"push --compress {comp}: {r.stderr}")
            raw = json.loads(R.skopeo_inspect(dest, raw=True))
            check(raw["config"]["digest"] == img["Id"], f"{comp}: the registry has our config (image ID)")
            check(all(comp[:2] in x["mediaType"] for x in raw["layers"]), f"{comp}: layer media types {raw['layers']}")
            out = os.path.join(work, f"back-{comp}")
            R.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{out}:x"])
            cfg = json.loads(R.skopeo_inspect(dest, config=True))
            check(cfg["rootfs"]["diff_ids"] == img["RootFS"]["Layers"], f"{comp}: diff_ids survive the push")
            # what shale pulls back is the same image
            r2 = os.path.join(work, f"st-back-{comp}")
            r = shale(r2, "pull", dest)
            check(r.returncode == 0 and inspect(r2, dest)["Id"] == img["Id"], f"{comp}: pull back: {r.stderr}")
        # the blobs shale made are remembered: pushing the loaded image again
        # asks the registry (HEAD) instead of compressing and uploading again
        with R.FaultProxy(reg.url) as px:
            r = shale(root, "push", "local/img:1", f"{px.host}/pushed/gzip:2")
            check(r.returncode == 0 and r.stderr.decode().count("Layer already exists") == len(img["RootFS"]["Layers"]),
                  f"re-push of a loaded image: {r.stderr}")
            check(not [e for e in px.log if e[0] == "PATCH"], f"re-push uploaded again: {[e[:2] for e in px.log]}")
        check(json.loads(R.skopeo_inspect(f"{reg.host}/pushed/gzip:2", raw=True))["layers"] ==
              json.loads(R.skopeo_inspect(f"{reg.host}/pushed/gzip:1", raw=True))["layers"],
              "re-push: the layers differ from the first push")
        # and a pull of what was pushed downloads no layer
        with R.FaultProxy(reg.url) as px:
            r = shale(root, "pull", f"{px.host}/pushed/gzip:1")
            gets = [e for e in px.log if e[0] == "GET" and "/blobs/" in e[1]]
            check(r.returncode == 0 and len(gets) <= 1, f"pull after push downloaded layers: {[e[1] for e in gets]}")
        check(R.store_fsck_ok(L.SHALE, root), "fsck after push records")
        # pushing again uploads nothing new; pulled image -> another repository: mounted, same digest
        src = f"{reg.host}/pushed/gzip:1"
        r2 = os.path.join(work, "st-back-gzip")
        d0 = R.registry_manifest_digest(reg.host, "pushed/gzip", "1")
        r = shale(r2, "push", src, f"{reg.host}/mounted/img:2")
        check(r.returncode == 0, f"push of a pulled image: {r.stderr}")
        check(r.stderr.decode().count("Mounted from pushed/gzip") == len(img["RootFS"]["Layers"]),
              f"cross-repository mount: {r.stderr}")
        check(R.registry_manifest_digest(reg.host, "mounted/img", "2") == d0,
              "the manifest digest survives pull -> push")
        r = shale(r2, "push", src)
        check(r.returncode == 0 and "Layer already exists" in r.stderr.decode(), f"re-push: {r.stderr}")
        # an upload that breaks (500 on the streamed PATCH) starts over
        with R.FaultProxy(reg.url) as px:
            px.plan = [{"match": "/blobs/uploads/", "method": "PATCH", "action": "status", "code": 500, "times": 1}]
            dest = f"{px.host}/retried/img:1"
            r = shale(root, "push", "local/img:1", dest)
            check(r.returncode == 0, f"push retried after a broken upload: {r.stderr}")
            patches = [e for e in px.log if e[0] == "PATCH"]
            check(len(patches) == len(img["RootFS"]["Layers"]) + 1 and patches[0][3] == 500,
                  f"one PATCH failed, then every layer went up: {[(e[0], e[3]) for e in patches]}")
            raw = json.loads(R.skopeo_inspect(f"{reg.host}/retried/img:1", raw=True))
            check(raw["config"]["digest"] == img["Id"], "the retried push is complete")
        # two layers go up at once: each PATCH is held until the other is in flight
        with R.FaultProxy(reg.url) as px:
            px.plan = [{"match": "/blobs/uploads/", "method": "PATCH", "action": "rendezvous", "count": 2,
                        "seconds": 20, "times": 2}]
            dest = f"{px.host}/parallel/img:1"
            r = shale(root, "push", "local/img:1", dest)
            check(r.returncode == 0, f"parallel push: {r.stderr}")
            check(px.met, "the two layers were not uploaded at the same time")
            raw = json.loads(R.skopeo_inspect(f"{reg.host}/parallel/img:1", raw=True))
            check(raw["config"]["digest"] == img["Id"] and len(raw["layers"]) == 2, "the parallel push is complete")
        # an upload that keeps failing fails the push: one error, no manifest
        with R.FaultProxy(reg.url) as px:
            px.plan = [{"match": "/blobs/uploads/", "method": "PATCH", "action": "status", "code": 500, "times": 100}]
            r = shale(root, "push", "local/img:1", f"{px.host}/failing/img:1", env={"SHALE_TRANSFER_RETRIES": "1"})
            err = r.stderr.decode().strip().splitlines()
            check(r.returncode == 1 and err and err[-1].startswith("shale: error:") and "500" in err[-1],
                  f"push with a failing upload: {r.returncode} {err[-3:]}")
            check(not [e for e in px.log if "/manifests/" in e[1] and e[0] == "PUT"],
                  "a manifest was pushed although a layer failed")
        # a 4xx is final: no retries (one PATCH per upload worker at most)
        with R.FaultProxy(reg.url) as px:
            px.plan = [{"match": "/blobs/uploads/", "method": "PATCH", "action": "status", "code": 400, "times": 100}]
            r = shale(root, "push", "local/img:1", f"{px.host}/bad/img:1")
            patches = [e for e in px.log if e[0] == "PATCH"]
            check(r.returncode == 1 and b"400" in r.stderr and len(patches) <= 2,
                  f"push answered 400: exit {r.returncode}, {len(patches)} PATCHes, {r.stderr[-200:]!r}")
        r = shale(root, "push", "nope:1", f"{reg.host}/x:1")
        check(r.returncode == 1 and b"no such image" in r.stderr, f"push of an unknown image: {r.stderr}")
    # Bearer tokens with push scope
    with R.Registry(os.path.join(work, "reg-tok"), auth="token") as reg:
        dest = f"{reg.host}/tok/img:1"
        r = shale(root, "push", "local/img:1", dest, env={"DOCKER_CONFIG": os.path.join(work, "none")})
        check(r.returncode == 1 and b"shale: error:" in r.stderr, f"push without credentials fails: {r.stderr}")
        r = shale(root, "push", "--auth", "alice:secret", "local/img:1", dest)
        check(r.returncode == 0, f"push with a token: {r.stderr}")
        scopes = [q for q in reg.token_server.requests if q["ok"] and q["user"] == "alice"]
        check(any("repository:tok/img:pull,push" in s for q in scopes for s in q["query"].get("scope", [])),
              f"push asks for pull,push: {scopes}")
        raw = json.loads(R.skopeo_inspect(dest, raw=True, creds="alice:secret"))
        check(raw["config"]["digest"] == img["Id"], "pushed with a token: the registry has our config")


def import_tests(work, lay):
    root = os.path.join(work, "st-imp")
    arch = os.path.join(work, "imp.tar")
    R.run(["skopeo", "copy", "-q", f"oci:{lay}:gz", f"docker-archive:{arch}:local/imp:1"])
    want = json.loads(R.run(["skopeo", "inspect", "--config", f"docker-archive:{arch}"]).stdout)
    r = shale(root, "import", "--tar", arch, "--name", "imported:v1")
    check(r.returncode == 0, f"import --tar: {r.stderr}")
    img = inspect(root, "imported:v1")
    check(img["RootFS"]["Layers"] == want["rootfs"]["diff_ids"], "import --tar keeps the diff_ids")
    check("local/imp:1" in img["RepoTags"], f"the archive's own name too: {img['RepoTags']}")
    r = shale(root, "import", "--tar", arch)
    check(r.returncode == 2, "--tar wants --name")
    # a missing docker: clear error suggesting --tar
    r = shale(root, "import", "dockerd://alpine", env={"PATH": "/nonexistent"})
    check(r.returncode == 1 and b"--tar" in r.stderr and len(r.stderr.decode().strip().split("\n")) == 1,
          f"missing docker: {r.stderr}")
    r = shale(root, "import", "ftp://x")
    check(r.returncode == 2, "unknown import source is a usage error")

    if shutil.which("podman"):
        # a private podman storage, so the test never touches the machine's
        st = os.path.join(work, "podman")
        conf = os.path.join(work, "storage.conf")
        with open(conf, "w") as f:
            f.write(f'[storage]\ndriver = "vfs"\nrunroot = "{st}/run"\ngraphroot = "{st}/root"\n')
        env = {"CONTAINERS_STORAGE_CONF": conf}
        pe = dict(os.environ, **env)
        p = subprocess.run(["podman", "load", "-i", arch], capture_output=True, env=pe)
        if p.returncode != 0:
            print(f"SKIPPED: podman import (podman load failed: {p.stderr.decode().strip()[:200]})")
        else:
            r = shale(root, "import", "podman://docker.io/local/imp:1", env=env)
            check(r.returncode == 0, f"import podman://: {r.stderr}")
            got = inspect(root, "docker.io/local/imp:1") if r.returncode == 0 else {}
            check(got.get("RootFS", {}).get("Layers") == want["rootfs"]["diff_ids"], "podman:// diff_ids")
            r = shale(root, "import", "podman://localhost/absent:1", env=env)
            check(r.returncode == 1 and b"podman save" in r.stderr, f"podman save failure reported: {r.stderr}")
            subprocess.run(["podman", "rmi", "-a", "-f"], capture_output=True, env=pe)
    else:
        print("SKIPPED: podman:// import (podman is not installed)")
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        p = subprocess.run(["docker", "load", "-i", arch], capture_output=True)
        if p.returncode == 0:
            r = shale(root, "import", "dockerd://local/imp:1")
            check(r.returncode == 0 and inspect(root, "local/imp:1")["RootFS"]["Layers"] == want["rootfs"]["diff_ids"],
                  f"import dockerd://: {r.stderr}")
            subprocess.run(["docker", "rmi", "local/imp:1"], capture_output=True)
    else:
        print("SKIPPED: dockerd:// import (no docker daemon here)")


def main():
    for tool in ("docker-registry", "skopeo"):
        if not R.which(tool):
            print(f"SKIPPED: {tool} is not installed")
            return 77
    with tempfile.TemporaryDirectory(prefix="shale-push-") as work:
        lay = os.path.join(work, "layout")
        R.build_oci_layout(lay, [{"layers": [R.make_layer_tar({"a/x": b"x" * 5000, "a/y": b"y"}),
                                             R.make_layer_tar({"b/z": b"z" * 70000})], "compression": None}],
                           index_name="gz")
        push_tests(work, lay)
        import_tests(work, lay)
    if failures:
        print(f"test_push_import: {len(failures)} failures")
        return 1
    print("test_push_import: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
