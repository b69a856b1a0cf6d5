#!/usr/bin/env python3
"""`shale pull` through a fault-injecting proxy (tests/regserve.py FaultProxy) in
front of Debian's docker-registry: 500s and 429s are retried, a connection
dropped mid-blob resumes with Range, a stalled transfer times out and resumes,
a corrupted blob fails the digest check, endless bodies and redirect loops fail
with one clear line, an interrupted pull (retries exhausted, or SIGINT) leaves
the store unchanged but keeps the partial blob, and the next pull resumes it
from where it stopped. A cross-host redirect does not carry Authorization.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402
import regserve as R  # noqa: E402

failures = L.failures
check = L.check


def shale(root, *args, env=None, timeout=300):
    e = dict(os.environ)
    e.update({"SHALE_CONNECT_TIMEOUT": "5"})
    e.update(env or {})
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, env=e, timeout=timeout)


def last_line(r):
    err = r.stderr.decode().strip().split("\n")
    return err[-1] if err else ""


def blob_gets(proxy, digest):
    return [e for e in proxy.log if e[0] == "GET" and digest in e[1]]


def fresh(work, name):
    return os.path.join(work, name)


def main():
    for tool in ("docker-registry", "skopeo"):
        if not R.which(tool):
            print(f"SKIPPED: {tool} is not installed")
            return 77
    with tempfile.TemporaryDirectory(prefix="shale-faults-") as work:
        big = {f"d/f{i}": hashlib.sha256(str(i).encode()).digest() * 4096 for i in range(40)}  # ~5 MB, incompressible
        lay = os.path.join(work, "layout")
        R.build_oci_layout(lay, [{"layers": [R.make_layer_tar(big), R.make_layer_tar({"s/x": b"x"})],
                                  "compression": "gzip"}], index_name="t")
        with R.Registry(os.path.join(work, "reg")) as reg:
            R.skopeo_push(lay, "t", f"{reg.host}/f/img:1")
            man = json.loads(R.skopeo_inspect(f"{reg.host}/f/img:1", raw=True))
            blob = max(man["layers"], key=lambda x: x["size"])
            with R.FaultProxy(reg.url) as px:
                run_faults(work, px, blob)
        # a blob redirected to another host (as registries do to their storage): followed, and the
        # Bearer token is not sent there
        with R.Registry(os.path.join(work, "reg-tok"), auth="token") as reg:
            R.skopeo_push(lay, "t", f"{reg.host}/f/img:1", dest_creds="alice:secret")
            with R.FaultProxy(reg.url) as px, R.BlobHost(os.path.join(work, "blobhost")) as bh:
                dg = blob["digest"]
                with open(os.path.join(work, "blobhost", dg[7:]), "wb") as f:
                    f.write(R.fetch_blob(os.path.join(lay, "blobs", "sha256"), None, dg))
                px.plan = [{"match": f"/blobs/{dg}", "method": "GET", "action": "redirect",
                            "to": f"{bh.url}/{dg[7:]}", "times": 100}]
                r = shale(fresh(work, "redir"), "pull", "--auth", "alice:secret", f"{px.host}/f/img:1")
                check(r.returncode == 0, f"redirected blob: {r.stderr}")
                sent_auth = [e for e in px.log if any(k.lower() == "authorization" for k in e[2])]
                check(sent_auth, "the registry itself got the Bearer token")
                check(bh.log and all(not any(k.lower() == "authorization" for k in h) for _, h in bh.log),
                      f"no Authorization to another host: {bh.log}")
    if failures:
        print(f"test_pull_faults: {len(failures)} failures")
        return 1
    print("test_pull_faults: all checks passed")
    return 0


def run_faults(work, px, blob):
    ref = f"{px.host}/f/img:1"
    dg, size = blob["digest"], blob["size"]
    bpath = f"/blobs/{dg}"

    def pulled(root):
        r = subprocess.run([L.SHALE, "--root", root, "images", "-q"], capture_output=True)
        return r.stdout.decode().split()

    # 500 twice, then fine
    px.log.clear()
    px.plan = [{"match": bpath, "action": "status", "code": 500, "times": 2}]
    r = shale(fresh(work, "a"), "pull", ref)
    check(r.returncode == 0, f"500 x2 retried: {r.stderr}")
    check(len(blob_gets(px, dg)) == 3, f"three GETs of the blob: {len(blob_gets(px, dg))}")
    check(b"retrying" in r.stderr, f"retries are reported: {r.stderr}")

    # 429 with Retry-After
    px.plan = [{"match": bpath, "action": "status", "code": 429, "headers": {"Retry-After": "1"}, "times": 1}]
    t0 = time.time()
    r = shale(fresh(work, "b"), "pull", ref)
    check(r.returncode == 0 and time.time() - t0 >= 1, f"429 + Retry-After honoured: {r.stderr}")

    # dropped mid-blob: resumed with Range
    px.log.clear()
    px.plan = [{"match": bpath, "action": "drop_after", "bytes": size // 3, "times": 2}]
    r = shale(fresh(work, "c"), "pull", ref)
    check(r.returncode == 0, f"drops resumed: {r.stderr}")
    ranges = [e[2].get("Range") or e[2].get("range") for e in blob_gets(px, dg)]
    check(any(x and x.startswith("bytes=") and x != "bytes=0-" for x in ranges), f"Range used to resume: {ranges}")
    check(R.store_fsck_ok(L.SHALE, fresh(work, "c")), "fsck after a resumed pull")

    # stalled transfer: the transfer timeout fires, then it resumes
    px.plan = [{"match": bpath, "action": "stall", "seconds": 6, "times": 1}]
    r = shale(fresh(work, "d"), "pull", ref, env={"SHALE_TRANSFER_TIMEOUT": "2"})
    check(r.returncode == 0, f"stall -> timeout -> retry: {r.stderr}")

    # corrupt blob: digest check fails, store unchanged, partial removed
    root = fresh(work, "e")
    px.plan = [{"match": bpath, "action": "corrupt", "times": 100}]
    r = shale(root, "pull", "--retries", "1", ref)
    line = last_line(r)
    check(r.returncode == 1 and line.startswith("shale: error:") and dg in line and "digest" in line,
          f"corrupt blob: {line}")
    check(pulled(root) == [], "nothing stored after a bad blob")
    check(not os.path.exists(os.path.join(root, "downloads", dg[7:])), "a bad blob's partial file is removed")
    check(R.leftover_tmp(root) == [], f"no staged temp files left: {R.leftover_tmp(root)}")
    left = os.listdir(os.path.join(root, "downloads"))
    r = subprocess.run([L.SHALE, "--root", root, "prune"], capture_output=True)
    check(r.returncode == 0 and left and os.listdir(os.path.join(root, "downloads")) == [],
          f"prune removes partial downloads ({left}): {r.stderr}")
    px.plan = []

    # endless manifest / blob bodies, redirect loop: one line each, nothing stored
    for rule, needle in (({"match": "/manifests/", "action": "endless", "times": 100}, "larger than"),
                         ({"match": bpath, "action": "endless", "times": 100}, "bytes its descriptor says"),
                         ({"match": bpath, "action": "redirect_loop", "times": 1000}, "edirect")):
        root = fresh(work, "f" + rule["action"] + rule["match"][1:3])
        px.plan = [rule]
        r = shale(root, "pull", "--retries", "1", ref, timeout=120)
        line = last_line(r)
        check(r.returncode == 1 and line.startswith("shale: error:") and needle in line, f"{rule['action']}: {line}")
        check(pulled(root) == [], f"{rule['action']}: nothing stored")
    px.plan = []

    # retries exhausted mid-blob: the partial stays; the next pull resumes from its end
    root = fresh(work, "g")
    px.plan = [{"match": bpath, "action": "drop_after", "bytes": size // 2, "times": 1}]
    r = shale(root, "pull", "--retries", "0", ref)
    check(r.returncode == 1 and pulled(root) == [], f"retries exhausted: {r.stderr}")
    part = os.path.join(root, "downloads", dg[7:])
    have = os.path.getsize(part) if os.path.exists(part) else -1
    check(have >= size // 2 - 65536 and have < size, f"the partial blob is kept ({have} of {size})")
    px.log.clear()
    px.plan = []
    r = shale(root, "pull", ref)
    check(r.returncode == 0, f"resumed pull: {r.stderr}")
    ranges = [e[2].get("Range") or e[2].get("range") for e in blob_gets(px, dg)]
    check(ranges == [f"bytes={have}-"], f"resumed from the partial file's end: {ranges} (have {have})")

    # SIGINT during a stall: exit 1 "interrupted", nothing committed, the partial kept
    root = fresh(work, "h")
    px.plan = [{"match": bpath, "action": "stall", "seconds": 30, "times": 1}]
    p = subprocess.Popen([L.SHALE, "--root", root, "pull", ref], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 20
    while time.time() < deadline and not os.path.exists(os.path.join(root, "downloads", dg[7:])):
        time.sleep(0.05)
    time.sleep(0.5)  # let some bytes arrive before the stall
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    check(p.returncode == 1 and b"interrupted" in err, f"SIGINT: {p.returncode} {err}")
    check(pulled(root) == [] and R.leftover_tmp(root) == [], "nothing committed or staged after SIGINT")
    check(os.path.exists(os.path.join(root, "downloads", dg[7:])), "partial blob kept after SIGINT")
    px.plan = []
    r = shale(root, "pull", ref)
    check(r.returncode == 0, f"pull after SIGINT: {r.stderr}")

    px.plan = []

if __name__ == "__main__":
    sys.exit(main())
