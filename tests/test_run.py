#!/usr/bin/env python3
"""shale run: a busybox-static image built with umoci runs in its own namespaces
with the config's Cmd/Env/WorkingDir, options override them, the exit status
comes through, writes are throwaway, --net none isolates, and nothing stays
mounted, also after the shale process is killed with SIGKILL. Needs root and
Debian's busybox-static (SKIPPED otherwise)."""
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr)


def run(root, *args):
    return subprocess.run([L.SHALE, "--root", root, "run", *args], capture_output=True, timeout=60)


def mounts_under(path):
    with open("/proc/mounts") as f:
        return [ln for ln in f if path in ln]


def main():
    if os.geteuid() != 0:
        L.skip("run needs root (namespaces, mounts)")
    bb = shutil.which("busybox")
    if not bb or "statically linked" not in subprocess.run(["file", "-L", bb], capture_output=True, text=True).stdout:
        L.skip("busybox-static not installed")
    if not shutil.which("umoci"):
        L.skip("umoci not installed")
    work = tempfile.mkdtemp(prefix="shl-run-")
    root = os.path.join(work, "st")
    try:
        layer = os.path.join(work, "bb.tar")
        with tarfile.open(layer, "w") as t:
            t.add(bb, "bin/busybox")
            for name, target in (("bin/sh", "busybox"),):
                ti = tarfile.TarInfo(name)
                ti.type, ti.linkname = tarfile.SYMTYPE, target
                t.addfile(ti)
            data = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
            ti = tarfile.TarInfo("etc/passwd")
            ti.size = len(data)
            import io
            t.addfile(ti, io.BytesIO(data))
            ti = tarfile.TarInfo("work")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        oci = os.path.join(work, "oci")
        for cmd in (["umoci", "init", "--layout", oci], ["umoci", "new", "--image", oci + ":bb"],
                    ["umoci", "raw", "add-layer", "--image", oci + ":bb", layer],
                    ["umoci", "config", "--image", oci + ":bb", "--config.cmd", "/bin/sh", "--config.cmd", "-c",
                     "--config.cmd", "echo from-config $FOO $(pwd)", "--config.env", "FOO=img",
                     "--config.workingdir", "/work"]):
            subprocess.run(cmd, check=True, capture_output=True)
        subprocess.run([L.SHALE, "--root", root, "load", "--tag", "bb:1", "-i", oci], check=True, capture_output=True)

        r = run(root, "bb:1")
        check(r.returncode == 0 and r.stdout.decode().strip() == "from-config img /work", f"default Cmd: {r}")
        r = run(root, "-e", "FOO=opt", "-w", "/", "bb:1", "--", "/bin/sh", "-c",
                "echo $FOO $(pwd) $(hostname) $$; ls /dev | tr '\\n' ' '; exit 7")
        out = r.stdout.decode().split("\n")
        check(r.returncode == 7, f"exit status passed through: {r.returncode} {r.stderr}")
        check(out[0] == "opt / shale 1", f"env/workdir/uts/pid namespace: {out[0]!r}")
        check(all(d in out[1] for d in ("null", "zero", "full", "random", "urandom", "tty")), f"/dev: {out[1]!r}")
        r = run(root, "-u", "nobody", "bb:1", "/bin/sh", "-c", "id -u; id -g")
        check(r.stdout.decode().split() == ["65534", "65534"], f"--user: {r.stdout}")
        r = run(root, "--net", "none", "bb:1", "/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1")
        check(r.stdout.decode().split() == ["lo"], f"--net none: {r.stdout}")
        run(root, "bb:1", "/bin/sh", "-c", "echo x > /work/left")
        r = run(root, "bb:1", "/bin/sh", "-c", "cat /work/left")
        check(r.returncode != 0, "writes must not survive a run")
        r = run(root, "bb:1", "/nonexistent")
        check(r.returncode == 127 and b"/nonexistent" in r.stderr, f"missing command: {r}")
        r = run(root, "nope:1")
        check(r.returncode == 125, f"unknown image: {r.returncode}")
        check(mounts_under(root) == [], f"mounts left after runs: {mounts_under(root)}")

        # kill -9 of shale: the container dies with it, the next command cleans up
        p = subprocess.Popen([L.SHALE, "--root", root, "run", "bb:1", "/bin/sh", "-c", "echo up; sleep 6047"],
                             stdout=subprocess.PIPE)
        check(p.stdout.readline().strip() == b"up", "background run started")
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        deadline = time.time() + 10
        while time.time() < deadline and subprocess.run(["pgrep", "-f", "sleep 6047"], capture_output=True).returncode == 0:
            time.sleep(0.1)
        check(subprocess.run(["pgrep", "-f", "sleep 6047"], capture_output=True).returncode != 0,
              "the container outlived shale")
        subprocess.run([L.SHALE, "--root", root, "mounts"], capture_output=True)
        check(mounts_under(root) == [], f"mounts left after kill -9: {mounts_under(root)}")
    finally:
        subprocess.run(["bash", "-c", f"grep -o ' {work}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l"])
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_run: {len(failures)} failures")
        return 1
    print("test_run: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
