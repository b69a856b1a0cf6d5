#!/usr/bin/env python3
"""`shale load` progress (docs/cli.md): with stderr a terminal, one row per
layer that draws a bar while the layer streams in ("Loading layer [==>  ]
12MB/40MB") and ends "Loaded"; from a seekable file (parallel conversion) the
rows end "Loaded" too. With stderr not a terminal, or with -q / --json, no
rows and no escape codes. stdout keeps "Loaded image: NAME" in every case.

The bar is seen by feeding the archive through a pipe in small pieces and
reading the terminal between pieces until a bar row appears (then the rest goes
at once): the wait is for output, not a fixed time."""
import hashlib
import io
import os
import pty
import select
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = L.failures
check = L.check


def layer(name, size, seed):
    buf = io.BytesIO()
    data = hashlib.sha256(seed).digest() * (size // 32)
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo(name)
        ti.size, ti.mtime = len(data), 1700000000
        t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def archive(work, layers):
    d = os.path.join(work, "lay")
    L.oci_dir(d, layers, "prog:1")
    out = os.path.join(work, "img.tar")
    subprocess.run(["tar", "-C", d, "-cf", out, "."], check=True)
    shutil.rmtree(d)
    return out


def with_pty(args, feed=None, until=None, deadline=60):
    """run shale with stderr on a pty and stdout/stdin on pipes; feed: bytes
    written to stdin piece by piece until `until` shows up on the terminal.
    Returns (exit code, stdout, terminal output)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([L.SHALE, *args], stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    term = b""
    end = time.time() + deadline

    def drain(timeout):
        nonlocal term
        while True:
            r, _, _ = select.select([master], [], [], timeout)
            if not r:
                return
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            term += chunk
            timeout = 0

    if feed is not None:
        pos, piece = 0, 256 << 10
        while pos < len(feed) and time.time() < end:
            if until is not None and until in term:
                piece = len(feed)  # seen: the rest at once
            p.stdin.write(feed[pos:pos + piece])
            p.stdin.flush()
            pos += piece
            drain(0.02)
        p.stdin.close()
    out = p.stdout.read()
    p.wait(timeout=max(1, end - time.time()))
    drain(0.1)
    os.close(master)
    return p.returncode, out, term


def main():
    work = tempfile.mkdtemp(prefix="shl-prog-")
    try:
        layers = [layer("big", 48 << 20, b"a"), layer("small", 1 << 20, b"b")]
        hexes = [hashlib.sha256(x).hexdigest()[:12].encode() for x in layers]
        arch = os.path.join(work, "img.tar")
        arch = archive(work, layers)
        with open(arch, "rb") as f:
            data = f.read()

        # streamed: a bar while the big layer comes in, then both rows end Loaded
        rc, out, term = with_pty(["--root", os.path.join(work, "s1"), "load"], feed=data, until=b"Loading layer [")
        check(rc == 0 and b"Loaded image: prog:1" in out, f"streamed load on a tty: rc {rc}, stdout {out!r}")
        check(b"Loading layer [" in term and b"/" in term.split(b"Loading layer [", 1)[-1][:80],
              f"streamed load: no bar on the terminal: {term[-400:]!r}")
        for h in hexes:
            check(h + b": Loaded" in term, f"streamed load: no 'Loaded' row for {h.decode()}: {term[-400:]!r}")
        check(b"\x1b[" in term, "streamed load: rows are not redrawn in place")

        # from the file (two passes, parallel conversion): rows end Loaded
        rc, out, term = with_pty(["--root", os.path.join(work, "s2"), "load", "-i", arch])
        check(rc == 0 and b"Loaded image: prog:1" in out, f"file load on a tty: rc {rc}, stdout {out!r}")
        for h in hexes:
            check(h + b": Loaded" in term, f"file load: no 'Loaded' row for {h.decode()}: {term[-400:]!r}")

        # -q and --json on a tty, and a plain pipe: no rows, no escapes
        for args in (["load", "-q", "-i", arch], ["--json", "load", "-i", arch]):
            rc, out, term = with_pty(["--root", os.path.join(work, "s3"), *args])
            check(rc == 0 and b"Loaded" not in term and b"\x1b[" not in term,
                  f"{' '.join(args[:2])}: terminal got {term[-300:]!r}")
        r = subprocess.run([L.SHALE, "--root", os.path.join(work, "s4"), "load", "-i", arch], capture_output=True)
        check(r.returncode == 0 and r.stderr == b"" and b"Loaded image: prog:1" in r.stdout,
              f"load with stderr a pipe: rc {r.returncode}, stderr {r.stderr[-300:]!r}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_load_progress: {len(failures)} failures")
        return 1
    print("test_load_progress: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
