#!/usr/bin/env python3
"""Hostile layer tars: each must fail with exit 1, one line on stderr that starts
with "shale: error:" and names the culprit, and leave no file in the output dir."""
import gzip
import io
import os
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = []


def tar_bytes(members, fmt=tarfile.GNU_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def reg(name, data=b"x"):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    return ti, data


def special(name, type_, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.linkname = linkname
    return ti, None


def case(name, data, must_mention, extra_args=()):
    work = tempfile.mkdtemp(prefix="shl-hostile-")
    out = os.path.join(work, "out")
    os.mkdir(out)
    src = os.path.join(work, "in.tar")
    with open(src, "wb") as f:
        f.write(data)
    r = subprocess.run([L.SHALE, "convert", "-o", os.path.join(out, "x.erofs"), *extra_args, src],
                       capture_output=True)
    err = r.stderr.decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    left = os.listdir(out)
    ok = True
    if r.returncode != 1:
        ok = False
        print(f"FAIL {name}: exit {r.returncode}, stderr {err!r}", file=sys.stderr)
    if len(lines) != 1 or not lines[0].startswith("shale: error:"):
        ok = False
        print(f"FAIL {name}: want one 'shale: error:' line, got {err!r}", file=sys.stderr)
    if must_mention and must_mention not in err:
        ok = False
        print(f"FAIL {name}: error does not name {must_mention!r}: {err!r}", file=sys.stderr)
    if left:
        ok = False
        print(f"FAIL {name}: files left behind: {left}", file=sys.stderr)
    if not ok:
        failures.append(name)
    else:
        print(f"ok {name}: {lines[0]}")
    subprocess.run(["rm", "-rf", work])


def main():
    good = tar_bytes([reg("a/file", b"hello" * 300), reg("b/other", b"x" * 2000)])
    case("truncated in data", good[:1100], "a/file")
    case("truncated in header", good[:2048 + 100], "a/file")
    bad = bytearray(good)
    bad[148:156] = b"0000000\0"  # break the first header's checksum
    case("bad header checksum", bytes(bad), "")
    case("dotdot path", tar_bytes([reg("a/../../etc/passwd")]), "../../etc/passwd")
    case("absolute path", tar_bytes([reg("/etc/passwd")]), "/etc/passwd")
    case("component over 255 bytes", tar_bytes([reg("d/" + "n" * 300)]), "nnnn")
    case("hardlink to missing target", tar_bytes([special("h", tarfile.LNKTYPE, "nowhere")]), "nowhere")
    case("hardlink to a directory", tar_bytes([special("d", tarfile.DIRTYPE), special("h", tarfile.LNKTYPE, "d")]),
         "'h'")
    big = bytearray(tar_bytes([reg("huge", b"y" * 10)]))
    big[124:136] = b"%011o\0" % ((8 << 30) - 1)  # declare ~8 GiB
    chk = sum(big[:148]) + 8 * 32 + sum(big[156:512])
    big[148:156] = b"%06o\0 " % chk
    case("absurd size", bytes(big), "huge")
    case("garbage", os.urandom(4096), "")
    case("empty input", b"", "")
    case("gzip with bad crc", gzip.compress(good)[:-8] + b"\0\0\0\0" + gzip.compress(good)[-4:], "gzip")
    zs = subprocess.run(["zstd", "-q", "-c"], input=good, capture_output=True).stdout
    case("truncated zstd", zs[: len(zs) // 2], "zstd")
    many = tar_bytes([reg(f"f{i}") for i in range(50)])
    case("more entries than the cap", many, "entries", extra_args=("--max-entries", "20"))
    # GNU sparse member, if GNU tar can make one here
    work = tempfile.mkdtemp()
    sp = os.path.join(work, "sparse")
    with open(sp, "wb") as f:
        f.truncate(1 << 20)
        f.seek(4096)
        f.write(b"data")
    r = subprocess.run(["tar", "--sparse", "-C", work, "-cf", "-", "sparse"], capture_output=True)
    subprocess.run(["rm", "-rf", work])
    if r.returncode == 0:
        case("GNU sparse entry", r.stdout, "sparse")
    if failures:
        print(f"test_layer_hostile: {len(failures)} failed: {failures}")
        return 1
    print("test_layer_hostile: all hostile inputs rejected cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
