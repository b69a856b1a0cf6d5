#!/usr/bin/env python3
"""`shale save` archives loaded by real daemons: containerd (`ctr images
import`) and an old docker (Debian's docker.io 20.10: graphdriver, loads
through manifest.json), each started privately in a temp dir (own sockets,
roots, vfs storage for docker, no network setup) and stopped at the end.

Source: images built with umoci from fixture tars, written by skopeo as a
docker-archive and loaded by shale. Checked: plain, --compress gzip and
--compress zstd archives (zstd only for containerd: docker 20.10 predates zstd
layers) import with the source's image IDs and diff_ids; containerd unpacks
them (overlayfs snapshots). `shale import dockerd://` of the image docker
loaded gives it back with the same IDs. Skipped unless root with containerd, ctr and
dockerd installed (Debian packages containerd, docker.io).
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

SRC = os.environ.get("SHALE_SRC", os.path.join(os.path.dirname(__file__), ".."))
failures = L.failures
check = L.check


def sh(*cmd, **kw):
    r = subprocess.run(list(cmd), capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).decode()[-800:]}")
    return r.stdout


def wait_for(path, proc, log, secs=30):
    for _ in range(secs * 10):
        if os.path.exists(path):
            return True
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    print(open(log).read()[-2000:], file=sys.stderr)
    return False


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    if os.geteuid() != 0:
        L.skip("needs root (daemons)")
    for tool in ("containerd", "ctr", "dockerd", "docker", "skopeo", "umoci"):
        if not shutil.which(tool):
            L.skip(f"{tool} not installed (Debian: containerd, docker.io)")
    work = "/tmp/shl-savedmn-%d" % os.getpid()
    os.makedirs(work)
    procs = []
    try:
        run(work, procs)
    finally:
        for p in reversed(procs):
            stop(p)
        subprocess.run(["bash", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"])
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_save_daemons: {len(failures)} failures")
        return 1
    print("test_save_daemons: all checks passed")
    return 0


def run(work, procs):
    fx = os.path.join(work, "fx")
    sh(sys.executable, os.path.join(SRC, "fixtures", "mktars.py"), fx)
    oci = os.path.join(work, "oci")
    sh("umoci", "init", "--layout", oci)
    sh("umoci", "new", "--image", oci + ":img")
    for t in ("lower", "upper", "tree"):
        sh("umoci", "raw", "add-layer", "--image", oci + ":img", os.path.join(fx, t + ".tar"))
    cfg = sh("skopeo", "inspect", "--raw", "--config", "oci:" + oci + ":img")
    src_id, src_diffs = "sha256:" + hashlib.sha256(cfg).hexdigest(), json.loads(cfg)["rootfs"]["diff_ids"]
    da = os.path.join(work, "da.tar")
    sh("skopeo", "copy", "-q", "oci:" + oci + ":img", f"docker-archive:{da}:shale/daemons:1")
    st = os.path.join(work, "st")
    sh(L.SHALE, "--root", st, "load", "-i", da)
    arch = {}
    for comp in ("none", "gzip", "zstd"):
        arch[comp] = os.path.join(work, f"save-{comp}.tar")
        sh(L.SHALE, "--root", st, "save", "--compress", comp, "-o", arch[comp], "shale/daemons:1")

    # containerd
    ctd = os.path.join(work, "ctd")
    os.makedirs(ctd)
    sock = os.path.join(ctd, "c.sock")
    with open(os.path.join(ctd, "config.toml"), "w") as f:
        f.write(f'version = 2\nroot = "{ctd}/root"\nstate = "{ctd}/state"\n'
                f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{ctd}/t.sock"\n')
    log = os.path.join(ctd, "log")
    procs.append(subprocess.Popen(["containerd", "--config", os.path.join(ctd, "config.toml")],
                                  stdout=open(log, "w"), stderr=subprocess.STDOUT))
    if not check(wait_for(sock, procs[-1], log), "containerd did not start"):
        return
    for comp, path in arch.items():
        ns = "shale-" + comp
        ctr = ["ctr", "-a", sock, "-n", ns]
        r = subprocess.run([*ctr, "images", "import", path], capture_output=True)
        if not check(r.returncode == 0, f"ctr import ({comp}): {r.stderr.decode()}"):
            continue
        check(b"docker.io/shale/daemons:1" in r.stdout, f"ctr import ({comp}) names: {r.stdout!r}")
        ls = sh(*ctr, "images", "ls").decode().split("\n")[1].split()
        man = json.loads(sh(*ctr, "content", "get", ls[2]))
        check(man["config"]["digest"] == src_id, f"containerd ({comp}): image ID {man['config']['digest']}")
        conf = json.loads(sh(*ctr, "content", "get", src_id))
        check(conf["rootfs"]["diff_ids"] == src_diffs, f"containerd ({comp}): diff_ids")
        chk = sh(*ctr, "images", "check").decode()
        check("complete" in chk and "true" in chk.split("\n")[1], f"containerd ({comp}) unpacked: {chk}")
        print(f"ok containerd import ({comp}): {ls[0]} {ls[2][:19]}")

    # docker 20.10 (old: loads via manifest.json) on that containerd
    dkd = os.path.join(work, "dkd")
    os.makedirs(dkd)
    dsock = os.path.join(dkd, "d.sock")
    log = os.path.join(dkd, "log")
    procs.append(subprocess.Popen(["dockerd", "--data-root", dkd + "/root", "--exec-root", dkd + "/exec",
                                   "-H", "unix://" + dsock, "--pidfile", dkd + "/d.pid", "--storage-driver", "vfs",
                                   "--bridge", "none", "--iptables=false", "--ip6tables=false",
                                   "--containerd", sock, "--containerd-namespace", "shale-docker"],
                                  stdout=open(log, "w"), stderr=subprocess.STDOUT))
    if not check(wait_for(dsock, procs[-1], log), "dockerd did not start"):
        return
    env = dict(os.environ, DOCKER_HOST="unix://" + dsock)
    for _ in range(100):
        if subprocess.run(["docker", "version"], capture_output=True, env=env).returncode == 0:
            break
        time.sleep(0.1)
    for comp in ("none", "gzip"):
        r = subprocess.run(["docker", "load", "-i", arch[comp]], capture_output=True, env=env)
        if not check(r.returncode == 0, f"docker load ({comp}): {r.stderr.decode()}"):
            continue
        check(b"Loaded image: shale/daemons:1" in r.stdout, f"docker load ({comp}): {r.stdout!r}")
        j = json.loads(sh("docker", "image", "inspect", "shale/daemons:1", env=env))[0]
        check(j["Id"] == src_id and j["RootFS"]["Layers"] == src_diffs, f"docker ({comp}): IDs {j['Id']}")
        print(f"ok docker 20.10 load ({comp}): {j['Id'][:19]}")
        if comp == "none":
            # and back: `shale import dockerd://` streams `docker save` into load
            st2 = os.path.join(work, "st-import")
            r = subprocess.run([L.SHALE, "--root", st2, "import", "dockerd://shale/daemons:1"], capture_output=True,
                               env=env)
            if check(r.returncode == 0, f"import dockerd://: {r.stderr.decode()}"):
                got = json.loads(sh(L.SHALE, "--root", st2, "inspect", "shale/daemons:1"))
                got = got[0] if isinstance(got, list) else got
                check(got["Id"] == src_id and got["RootFS"]["Layers"] == src_diffs,
                      f"import dockerd://: IDs {got['Id']} {got['RootFS']['Layers']}")
                print(f"ok shale import dockerd:// (docker 20.10): {got['Id'][:19]}")
        sh("docker", "rmi", "shale/daemons:1", env=env)


if __name__ == "__main__":
    sys.exit(main())
