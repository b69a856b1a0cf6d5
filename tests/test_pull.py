#!/usr/bin/env python3
"""`shale pull` against Debian's docker-registry on 127.0.0.1 (tests/regserve.py).

Fixtures are OCI layouts built here (gzip and zstd layers, a multi-arch index),
pushed with skopeo. Checked: a pull ends in the same store state as `shale load`
of skopeo's copy of the same image (inspect, save bytes); repo digests (manifest
and index) resolve; platforms; dedup ("Already exists", no blob GET); anonymous,
htpasswd Basic (TLS) and Bearer-token auth (token cached per scope) with creds
from --auth, docker config.json and the netrc-style file; bad credentials fail
with the import hint. Faults (tests/test_pull_faults.py has the proxy ones).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402
import regserve as R  # noqa: E402

failures = L.failures
check = L.check


def shale(root, *args, env=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([L.SHALE, "--root", root, *args], capture_output=True, env=e, timeout=timeout)


def must(r, what):
    if r.returncode != 0:
        raise AssertionError(f"{what}: exit {r.returncode}: {r.stderr.decode()}")
    return r.stdout.decode()


def inspect(root, ref):
    return json.loads(must(shale(root, "inspect", ref), f"inspect {ref}"))[0]


def one_line_error(r, *needles):
    err = r.stderr.decode().strip().split("\n")
    last = err[-1] if err else ""
    return (r.returncode == 1 and last.startswith("shale: error:") and all(n in last for n in needles), last)


def files(tag, n, size=3000):
    return {f"{tag}/f{i}": hashlib.sha256(f"{tag}{i}".encode()).digest() * (size // 32) for i in range(n)}


def main():
    for tool in ("docker-registry", "skopeo"):
        if not R.which(tool):
            print(f"SKIPPED: {tool} is not installed")
            return 77
    with tempfile.TemporaryDirectory(prefix="shale-pull-") as work:
        base = R.make_layer_tar(files("base", 20))
        app = R.make_layer_tar(files("app", 5))
        arm = R.make_layer_tar(files("armbits", 4))
        lay = os.path.join(work, "layout")
        R.build_oci_layout(lay, [{"layers": [base, app], "compression": "gzip"}], index_name="gz")
        R.build_oci_layout(lay, [{"layers": [base, app], "compression": "zstd"}], index_name="zst")
        R.build_oci_layout(lay, [{"layers": [base], "compression": "gzip", "platform": ("linux", "amd64", None)},
                                 {"layers": [arm], "compression": "gzip", "platform": ("linux", "arm64", "v8")}],
                           index_name="multi")
        R.build_oci_layout(lay, [{"layers": [base, R.make_layer_tar(files("other", 3))], "compression": "gzip"}],
                           index_name="shares")
        # one tar twice, from a gzip and a zstd blob: stored once
        R.build_oci_layout(lay, [{"layers": [app, app], "compression": ["gzip", "zstd"]}], index_name="twice")

        with R.Registry(os.path.join(work, "reg")) as reg:
            for tag in ("gz", "zst", "multi", "shares", "twice"):
                R.skopeo_push(lay, tag, f"{reg.host}/test/{tag}:1")
            # Docker schema 2 manifest and media types, and a Docker manifest list
            R.run(["skopeo", "copy", "-q", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{lay}:gz",
                   f"docker://{reg.host}/test/v2s2:1"])
            R.run(["skopeo", "copy", "-q", "--all", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{lay}:multi",
                   f"docker://{reg.host}/test/list:1"])
            anonymous(work, reg)
        with R.Registry(os.path.join(work, "reg-basic"), auth="htpasswd") as reg:
            R.skopeo_push(lay, "gz", f"{reg.host}/test/gz:1", dest_creds="alice:secret", cert_dir=reg.cert_dir)
            basic(work, reg)
        with R.Registry(os.path.join(work, "reg-token"), auth="token") as reg:
            R.skopeo_push(lay, "gz", f"{reg.host}/test/gz:1", dest_creds="alice:secret")
            token(work, reg)
        without_libcurl(work)
    if failures:
        print(f"test_pull: {len(failures)} failures")
        return 1
    print("test_pull: all checks passed")
    return 0


def without_libcurl(work):
    """libcurl is opened on first use: with it missing (hidden by a bind
    mount in a private mount namespace) pull fails with one line naming it,
    and the store's other commands still work"""
    lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/libcurl.so.4")
    if os.geteuid() != 0 or not os.path.exists(lib) or not R.which("unshare"):
        print("note: libcurl-missing check skipped (needs root, unshare and Debian's libcurl path)")
        return
    root = os.path.join(work, "st-nocurl")
    script = (f'mount --bind /dev/null {lib} && "$0" --root {root} pull 127.0.0.1:9/x:1; echo "pull=$?" >&2; '
              f'"$0" --root {root} images >/dev/null; echo "images=$?" >&2')
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, L.SHALE],
                       capture_output=True, timeout=60)
    err = r.stderr.decode()
    lines = [x for x in err.splitlines() if x.startswith("shale:")]
    check("pull=1" in err and len(lines) == 1 and "libcurl" in lines[0] and "images=0" in err,
          f"pull without libcurl: {err.strip()!r}")


def anonymous(work, reg):
    root = os.path.join(work, "st")
    ref = f"{reg.host}/test/gz:1"
    digest = R.registry_manifest_digest(reg.host, "test/gz", "1")

    r = shale(root, "pull", ref)
    check(r.returncode == 0, f"anonymous pull: {r.stderr.decode()}")
    out = r.stderr.decode()
    check(f"Digest: {digest}" in out and "Downloaded newer image" in out, f"pull output: {out}")
    check(r.stdout.decode().strip() == ref, f"pull prints the name: {r.stdout}")
    img = inspect(root, ref)
    cfg = json.loads(R.skopeo_inspect(ref, config=True))
    check(img["Id"] == R.config_digest(reg.host, "test/gz", "1"), "image ID is the registry's config digest")
    check(img["RootFS"]["Layers"] == cfg["rootfs"]["diff_ids"], "diff_ids as in the config")
    check(f"{reg.host}/test/gz@{digest}" in img["RepoDigests"], f"repo digest recorded: {img['RepoDigests']}")
    check(img["Shale"]["Manifest"] == digest, "the registry's manifest is stored verbatim")
    check(inspect(root, f"{reg.host}/test/gz@{digest}")["Id"] == img["Id"], "name@digest resolves")
    check(not os.listdir(os.path.join(root, "downloads")), "partial blobs removed after the commit")
    r = shale(root, "fsck", "--deep")
    check(r.returncode == 0 and b" 0 problems" in r.stdout + r.stderr, f"fsck after pull: {r.stdout} {r.stderr}")

    # same store state as loading skopeo's copy of the image
    arch = os.path.join(work, "gz-oci.tar")
    R.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci-archive:{arch}:{ref}"])
    root2 = os.path.join(work, "st-load")
    must(shale(root2, "load", "-i", arch), "load skopeo's copy")
    img2 = inspect(root2, ref)
    for k in ("Id", "RepoTags", "RootFS", "Config", "Created", "Size", "Architecture", "Os"):
        check(img[k] == img2[k], f"pull vs load: {k} differs: {img[k]} / {img2[k]}")
    check(img["Shale"] == img2["Shale"], f"pull vs load: per-layer records differ:\n{img['Shale']}\n{img2['Shale']}")
    s1, s2 = os.path.join(work, "s1.tar"), os.path.join(work, "s2.tar")
    must(shale(root, "save", "-o", s1, ref), "save pulled")
    must(shale(root2, "save", "-o", s2, ref), "save loaded")
    check(open(s1, "rb").read() == open(s2, "rb").read(), "pull and load give identical `shale save` bytes")

    # again: nothing downloaded; by digest: no network needed at all
    r = shale(root, "pull", ref)
    check(r.returncode == 0 and "Image is up to date" in r.stderr.decode(), f"second pull: {r.stderr}")
    r = shale(root, "pull", "--plain-http", "--retries", "0", f"127.0.0.1:1/test/gz@{digest}")
    check(r.returncode != 0, "a stored digest under another registry still needs that registry")
    r = shale(root, "pull", f"{reg.host}/test/gz@{digest}")
    check(r.returncode == 0, f"pull by digest: {r.stderr}")

    # zstd layers; a shared base layer is not downloaded again
    r = shale(root, "pull", f"{reg.host}/test/zst:1")
    check(r.returncode == 0, f"zstd pull: {r.stderr}")
    z = inspect(root, f"{reg.host}/test/zst:1")
    check(z["RootFS"]["Layers"] == img["RootFS"]["Layers"], "zstd image has the same diff_ids")
    check(all("zstd" in lay["MediaType"] for lay in z["Shale"]["Layers"]), "zstd media types kept")
    check("Already exists" in r.stderr.decode(), f"layers stored by diff_id are not downloaded: {r.stderr}")
    r = shale(root, "pull", f"{reg.host}/test/shares:1")
    check(r.returncode == 0 and r.stderr.decode().count("Already exists") == 1, f"shared base: {r.stderr}")
    r = shale(root, "df", "--layers", "--json")
    check(r.returncode == 0, f"df: {r.stderr}")

    # multi-arch: the host's platform by default, --platform, --all-platforms
    idx = R.registry_manifest_digest(reg.host, "test/multi", "1")
    r = shale(root, "pull", f"{reg.host}/test/multi:1")
    check(r.returncode == 0, f"multi-arch pull: {r.stderr}")
    m = inspect(root, f"{reg.host}/test/multi:1")
    check(m["Architecture"] == "amd64", f"host platform chosen: {m['Architecture']}")
    check(f"{reg.host}/test/multi@{idx}" in m["RepoDigests"], f"index digest is a repo digest: {m['RepoDigests']}")
    check(inspect(root, f"{reg.host}/test/multi@{idx}")["Id"] == m["Id"], "name@<index digest> resolves")
    # air-gapped: save -> load elsewhere keeps both repo digests resolvable
    sv = os.path.join(work, "multi.tar")
    must(shale(root, "save", "-o", sv, f"{reg.host}/test/multi:1", ref), "save pulled images")
    gap = os.path.join(work, "st-gap")
    must(shale(gap, "load", "-i", sv), "load on the air-gapped side")
    check(inspect(gap, f"{reg.host}/test/multi@{idx}")["Id"] == m["Id"], "name@<index digest> after save/load")
    check(inspect(gap, f"{reg.host}/test/gz@{digest}")["Id"] == img["Id"], "name@<manifest digest> after save/load")
    check(f"{reg.host}/test/multi@{idx}" in inspect(gap, f"{reg.host}/test/multi:1")["RepoDigests"],
          "the index digest is a repo digest after save/load")
    r3 = os.path.join(work, "st-arm")
    r = shale(r3, "pull", "--platform", "linux/arm64", f"{reg.host}/test/multi:1")
    check(r.returncode == 0 and inspect(r3, f"{reg.host}/test/multi:1")["Architecture"] == "arm64",
          f"--platform linux/arm64: {r.stderr}")
    r = shale(r3, "pull", "--platform", "linux/s390x", f"{reg.host}/test/multi:1")
    ok, last = one_line_error(r, "s390x")
    check(ok, f"missing platform: {last}")
    r4 = os.path.join(work, "st-all")
    r = shale(r4, "pull", "--all-platforms", f"{reg.host}/test/multi:1")
    check(r.returncode == 0, f"--all-platforms: {r.stderr}")
    lst = must(shale(r4, "images", "--json"), "images")
    check(lst.count('"Id"') + lst.count('"ID"') >= 2 or len([x for x in lst.splitlines() if x.strip()]) >= 2,
          f"--all-platforms stores both: {lst}")
    check(inspect(r4, f"{reg.host}/test/multi:1")["Architecture"] == "amd64", "name goes to the host platform")

    # Docker media types
    for name in ("v2s2", "list"):
        d = R.registry_manifest_digest(reg.host, f"test/{name}", "1")
        r = shale(root, "pull", f"{reg.host}/test/{name}:1")
        check(r.returncode == 0, f"pull of a Docker {name}: {r.stderr}")
        if r.returncode == 0:
            im = inspect(root, f"{reg.host}/test/{name}:1")
            check(f"{reg.host}/test/{name}@{d}" in im["RepoDigests"], f"{name}: registry digest kept: {im['RepoDigests']}")
            if name == "v2s2":
                check(im["Shale"]["ManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json",
                      f"v2s2 manifest stored verbatim: {im['Shale']['ManifestMediaType']}")

    # --name: bhatti's rule, or a given name
    r = shale(root, "pull", "--name", f"{reg.host}/test/gz:1")
    check(r.returncode == 0 and inspect(root, "gz-1")["Id"] == img["Id"], f"--name (bhatti): {r.stderr}")
    r = shale(root, "pull", "--name=mine:v1", f"docker://{reg.host}#test/gz:1")
    check(r.returncode == 0 and inspect(root, "mine:v1")["Id"] == img["Id"], f"--name=mine:v1 docker://: {r.stderr}")

    # unknown tag / repository: one line, nothing stored
    before = R.store_state(root)
    r = shale(root, "pull", f"{reg.host}/test/gz:nope")
    ok, last = one_line_error(r, "not found")
    check(ok, f"unknown tag: {last}")
    r = shale(root, "pull", "Bad//Ref")
    check(r.returncode != 0 and b"invalid reference" in r.stderr, f"bad reference: {r.stderr}")
    check(R.store_state(root) == before, "failed pulls leave the store unchanged")

    # on a terminal: per-layer bars redrawn in place (stderr is a pty)
    import pty
    mfd, sfd = pty.openpty()
    p = subprocess.Popen([L.SHALE, "--root", os.path.join(work, "st-tty"), "pull", ref], stdout=subprocess.PIPE,
                         stderr=sfd, env=dict(os.environ, TERM="xterm"))
    os.close(sfd)
    tty_out = b""
    while True:
        try:
            chunk = os.read(mfd, 65536)
        except OSError:
            break
        if not chunk:
            break
        tty_out += chunk
    p.wait()
    os.close(mfd)
    check(p.returncode == 0 and b"\x1b[" in tty_out and b"Pull complete" in tty_out,
          f"TTY progress redraws in place: {tty_out[-300:]!r}")

    # the same tar from two blobs in one image
    rt = os.path.join(work, "st-twice")
    r = shale(rt, "pull", f"{reg.host}/test/twice:1")
    check(r.returncode == 0, f"one tar from two blobs: {r.stderr}")
    if r.returncode == 0:
        check(len([f for f in os.listdir(os.path.join(rt, "layers")) if f.endswith(".tar")]) == 1, "stored once")
        check(R.store_fsck_ok(L.SHALE, rt), "fsck after pulling one tar twice")
        check(len(inspect(rt, f"{reg.host}/test/twice:1")["RootFS"]["Layers"]) == 2, "the image keeps both layers")

    # two pulls of the same image at once: both succeed, each layer stored once
    rc_ = os.path.join(work, "st-conc")
    procs = [subprocess.Popen([L.SHALE, "--root", rc_, "pull", "-q", f"{reg.host}/test/shares:1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    check(all(p.returncode == 0 for p in procs), f"concurrent pulls: {[o[1] for o in outs]}")
    check(len([f for f in os.listdir(os.path.join(rc_, "layers")) if f.endswith(".tar")]) == 2,
          f"each layer stored once: {os.listdir(os.path.join(rc_, 'layers'))}")
    check(R.store_fsck_ok(L.SHALE, rc_), "fsck after concurrent pulls")
    check(not [f for f in os.listdir(os.path.join(rc_, "downloads"))], "no partial files left after concurrent pulls")

    # --json events
    r = shale(os.path.join(work, "st-json"), "pull", "--json", ref)
    ev = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
    check(r.returncode == 0 and ev and ev[-1].get("event") == "pulled" and ev[-1].get("manifest") == digest,
          f"--json: {ev[-3:]}")
    check(any(e.get("event") == "layer" and e.get("status") == "Pull complete" for e in ev), "--json layer events")


def basic(work, reg):
    ref = f"{reg.host}/test/gz:1"
    tls = ["--ca-cert", reg.ca] if reg.ca else []
    root = os.path.join(work, "st-basic")
    r = shale(root, "pull", *tls, ref)
    ok, last = one_line_error(r)
    check(ok and ("user name and password" in last or "denied" in last) and "shale import" in last,
          f"Basic without credentials: {last}")
    r = shale(root, "pull", *tls, "--auth", "alice:wrong", ref)
    ok, last = one_line_error(r)
    check(ok and "shale import" in last, f"Basic with a wrong password: {last}")
    r = shale(root, "pull", *tls, "--auth", "alice:secret", ref)
    check(r.returncode == 0, f"Basic with --auth: {r.stderr}")
    # docker config.json
    root = os.path.join(work, "st-basic2")
    dc = os.path.join(work, "dockercfg")
    os.makedirs(dc, exist_ok=True)
    import base64
    with open(os.path.join(dc, "config.json"), "w") as f:
        json.dump({"auths": {reg.host: {"auth": base64.b64encode(b"alice:secret").decode()}}}, f)
    r = shale(root, "pull", *tls, ref, env={"DOCKER_CONFIG": dc})
    check(r.returncode == 0, f"Basic with docker config.json: {r.stderr}")
    # netrc-style file with $VAR expansion
    root = os.path.join(work, "st-basic3")
    cf = os.path.join(work, "creds")
    with open(cf, "w") as f:
        f.write(f"machine {reg.host} login alice password $SHALE_TEST_PW\n")
    r = shale(root, "pull", *tls, ref, env={"SHALE_CREDENTIALS": cf, "SHALE_TEST_PW": "secret",
                                            "DOCKER_CONFIG": os.path.join(work, "none")})
    check(r.returncode == 0, f"Basic with the credentials file: {r.stderr}")
    if reg.ca:
        r = shale(os.path.join(work, "st-basic4"), "pull", "--auth", "alice:secret", ref)
        ok, last = one_line_error(r)
        check(ok, f"TLS is verified by default (self-signed certificate refused): {last}")


def token(work, reg):
    ref = f"{reg.host}/test/gz:1"
    root = os.path.join(work, "st-tok")
    n0 = len(reg.token_server.requests)
    r = shale(root, "pull", "--auth", "alice:secret", ref)
    check(r.returncode == 0, f"Bearer token pull: {r.stderr}")
    reqs = reg.token_server.requests[n0:]
    scopes = [q for q in reqs if "repository:test/gz:pull" in json.dumps(q)]
    check(len(scopes) == 1, f"one token request per scope (cached): {reqs}")
    check(all(q.get("user") == "alice" for q in reqs), f"token fetched with the credentials: {reqs}")
    r = shale(os.path.join(work, "st-tok2"), "pull", "--auth", "alice:bad", ref)
    ok, last = one_line_error(r, "token")
    check(ok and "shale import" in last, f"refused token: {last}")
    if getattr(reg.token_server, "anonymous_pull", False):
        r = shale(os.path.join(work, "st-tok3"), "pull", ref, env={"DOCKER_CONFIG": os.path.join(work, "none")})
        check(r.returncode == 0, f"anonymous token pull: {r.stderr}")


if __name__ == "__main__":
    sys.exit(main())
