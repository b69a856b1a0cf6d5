#!/usr/bin/env python3
"""Hostile layer tars: each must make `shale convert` fail with exit 1, exactly one
line on stderr starting with "shale: error:" that names the culprit entry (where
there is one), and leave no file at all in the output directory (temp files
included). Every case runs twice: from a file argument and from a real pipe."""
import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import layerlib as L  # noqa: E402

failures = []


def tar_bytes(members, fmt=tarfile.GNU_FORMAT, eof=True):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
        end = buf.tell()
    return buf.getvalue() if eof else buf.getvalue()[:end]


def reg(name, data=b"x"):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1700000000
    return ti, data


def special(name, type_, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.linkname = linkname
    ti.mtime = 1700000000
    return ti, None


def header(name, typeflag, size, linkname=b""):
    """One raw ustar header block with a valid checksum."""
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = b"0000000\0"
    h[116:124] = b"0000000\0"
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1700000000
    h[156:157] = typeflag
    h[157:157 + len(linkname)] = linkname
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def run(cmd, data, pipe):
    if pipe:
        # a real pipe; communicate() tolerates shale exiting before reading it all
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = p.communicate(input=data, timeout=60)
        return p.returncode, err
    r = subprocess.run(cmd, capture_output=True, timeout=60)
    return r.returncode, r.stderr


def case(name, data, must_mention, extra_args=()):
    for pipe in (False, True):
        work = tempfile.mkdtemp(prefix="shl-hostile-")
        try:
            out = os.path.join(work, "out")
            os.mkdir(out)
            src = os.path.join(work, "in.tar")
            with open(src, "wb") as f:
                f.write(data)
            cmd = [L.SHALE, "convert", "-o", os.path.join(out, "x.erofs"), *extra_args]
            rc, err = run(cmd if pipe else cmd + [src], data, pipe)
            err = err.decode(errors="replace")
            lines = [ln for ln in err.splitlines() if ln.strip()]
            left = os.listdir(out)
            how = f"{name} ({'pipe' if pipe else 'file'})"
            bad = []
            if rc != 1:
                bad.append(f"exit {rc}")
            if len(lines) != 1 or not lines[0].startswith("shale: error:"):
                bad.append("want exactly one 'shale: error:' line")
            if must_mention and must_mention not in err:
                bad.append(f"error does not name {must_mention!r}")
            if left:
                bad.append(f"files left behind: {left}")
            if bad:
                failures.append(how)
                print(f"FAIL {how}: {'; '.join(bad)}; stderr {err.strip()[:300]!r}", file=sys.stderr)
            else:
                print(f"ok {how}: {lines[0][:200]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def main():
    good = tar_bytes([reg("a/file", b"hello" * 300), reg("b/other", b"x" * 2000)])
    case("truncated in data", good[:1100], "a/file")
    # the second header is cut: its name cannot be trusted, the error names the last good entry
    case("truncated in header", good[:2048 + 100], "a/file")
    bad = bytearray(good)
    bad[148:156] = b"0000000\0"  # break the first header's checksum
    case("bad header checksum", bytes(bad), "")
    bad = bytearray(good)
    bad[2048 + 148:2048 + 156] = b"0000000\0"  # the second header's
    case("bad checksum in the second header", bytes(bad), "a/file")
    case("dotdot path", tar_bytes([reg("a/../../etc/passwd")]), "../../etc/passwd")
    case("absolute path", tar_bytes([reg("/etc/passwd")]), "/etc/passwd")
    case("component over 255 bytes", tar_bytes([reg("d/" + "n" * 300)]), "nnnn")
    case("hardlink to missing target", tar_bytes([special("h", tarfile.LNKTYPE, "nowhere")]), "nowhere")
    case("hardlink to itself", tar_bytes([special("h", tarfile.LNKTYPE, "h")]), "'h'")
    case("hardlink to a directory", tar_bytes([special("d", tarfile.DIRTYPE), special("h", tarfile.LNKTYPE, "d")]),
         "'h'")
    case("entry below a symlink", tar_bytes([special("a", tarfile.SYMTYPE, "/etc"), reg("a/passwd")]), "a/passwd")
    case("entry below a file", tar_bytes([reg("f"), reg("f/x")]), "f/x")
    case("root as a file", tar_bytes([reg(".")]), "'.'")
    case("whiteout of nothing", tar_bytes([reg("d/.wh.", b"")]), ".wh.")
    case("whiteout of '.'", tar_bytes([reg("d/.wh..", b"")]), ".wh..")
    case("whiteout of '..'", tar_bytes([reg("d/.wh...", b"")]), ".wh...")
    case("xattr namespace EROFS cannot store",
         _xattr_tar(), "foo.bar")
    big = bytearray(tar_bytes([reg("huge", b"y" * 10)]))
    big[124:136] = b"%011o\0" % ((8 << 30) - 1)  # declare ~8 GiB in a 10 KiB file
    chk = sum(big[:148]) + 8 * 32 + sum(big[156:512])
    big[148:156] = b"%06o\0 " % chk
    case("absurd size", bytes(big), "huge")
    # metadata records that declare a huge size: must hit a cap, not allocate
    case("pax header of 1 GiB", header(b"././@PaxHeader", b"x", 1 << 30) + b"30 path=" + b"p" * 22 + b"\n", "")
    case("GNU long name of 1 GiB", header(b"././@LongLink", b"L", 1 << 30) + b"n" * 4096, "")
    case("unknown type flag", header(b"weird", b"Z", 0) + b"\0" * 1024, "weird")
    case("lone zero block, then more entries", header(b"a", b"0", 0) + b"\0" * 512 + header(b"b", b"0", 0)
         + b"\0" * 1024, "")
    case("garbage", bytes((i * 7919 + 13) % 251 for i in range(4096)), "")
    case("empty input", b"", "")
    gz = gzip.compress(good, mtime=0)
    case("gzip with bad CRC", gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:], "gzip")
    case("truncated gzip", gz[: len(gz) // 2], "gzip")
    zs = subprocess.run(["zstd", "-q", "-c"], input=good, capture_output=True, check=True).stdout
    case("truncated zstd", zs[: len(zs) // 2], "zstd")
    many = tar_bytes([reg(f"f{i}") for i in range(50)])
    case("more entries than the cap", many, "entries", extra_args=("--max-entries", "20"))
    # a GNU sparse member made by GNU tar itself
    work = tempfile.mkdtemp(prefix="shl-hostile-")
    try:
        sp = os.path.join(work, "sparse")
        with open(sp, "wb") as f:
            f.truncate(1 << 20)
            f.seek(4096)
            f.write(b"data")
        for fmt in ("gnu", "posix"):
            r = subprocess.run(["tar", "--sparse", f"--format={fmt}", "-C", work, "-cf", "-", "sparse"],
                               capture_output=True)
            if r.returncode != 0:
                failures.append(f"GNU tar --sparse --format={fmt} failed: {r.stderr.decode()}")
                continue
            case(f"GNU sparse entry ({fmt})", r.stdout, "sparse")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"test_layer_hostile: {len(failures)} failed: {failures}")
        return 1
    print("test_layer_hostile: all hostile inputs rejected cleanly")
    return 0


def _xattr_tar():
    ti = tarfile.TarInfo("x")
    ti.pax_headers = {"SCHILY.xattr.foo.bar": "v"}
    return tar_bytes([(ti, b"")], fmt=tarfile.PAX_FORMAT)


if __name__ == "__main__":
    sys.exit(main())
