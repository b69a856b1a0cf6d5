#!/usr/bin/env python3
"""Generate the layer tars of tests/test_tarparse.c: python3 tarparse_gen.py OUTDIR

For each case NAME it writes OUTDIR/NAME.tar and OUTDIR/NAME.exp. The .exp is a
small line language the C test checks the parsed file tree against:
    ok | err CODE HEX-SUBSTRING      first line: expected result of shl_tarparse
    variants                         also run the gzip and zstd forms of the tar
    locale NAME                      run under setlocale(LC_ALL, NAME) if it exists
    entries N                        shl_fstree_nentries()
    path HEX                         select a path (must exist); then any of:
      type reg|dir|lnk|chr|blk|fifo|sock|wh   perm OCT   uid N   gid N
      mtime S NS   size N   off N   rdev MAJ MIN   target HEX   nlink N
      xattr NAMEHEX VALHEX   nxattrs N   same HEX   flag opaque|implicit|has_wh
    absent HEX                       path must not exist
Data offsets ("off") are Python's TarInfo.offset_data for the same bytes: an
independent oracle for libarchive's consumed-byte counter.
"""
import base64
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata

OUT = sys.argv[1]
SE = "surrogateescape"


def b2s(b):
    return b.decode("utf-8", SE)


def s2b(s):
    return s.encode("utf-8", SE)


def hx(b):
    if isinstance(b, str):
        b = s2b(b)
    return b.hex() if b else "-"


def norm(name):
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def ti(name, type_=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0, mtime=1600000000,
       link="", dev=(0, 0), pax=None):
    t = tarfile.TarInfo(name)
    t.type = type_
    t.mode = mode
    t.uid, t.gid = uid, gid
    t.mtime = mtime
    t.linkname = link
    t.devmajor, t.devminor = dev
    t.size = len(data) if type_ in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    if pax:
        t.pax_headers = dict(pax)
    return t, data


def build(members, fmt, gpax=None):
    buf = io.BytesIO()
    kw = {"pax_headers": gpax} if gpax else {}
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors=SE, **kw) as t:
        for info, data in members:
            t.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


class Case:
    def __init__(self, name, data, err=None, variants=False, locale=None):
        self.name, self.data, self.err = name, data, err
        self.lines = []
        if variants:
            self.lines.append("variants")
        if locale:
            self.lines.append("locale " + locale)

    def path(self, p, **kv):
        self.lines.append("path " + hx(p))
        for k, v in kv.items():
            if k == "xattrs":
                for n, val in v.items():
                    self.lines.append(f"xattr {hx(n)} {hx(val)}")
                self.lines.append(f"nxattrs {len(v)}")
            elif k == "perm":
                self.lines.append(f"perm {v:o}")
            elif k in ("target", "same"):
                self.lines.append(f"{k} {hx(v)}")
            elif isinstance(v, tuple):
                self.lines.append(f"{k} {v[0]} {v[1]}")
            else:
                self.lines.append(f"{k} {v}")

    def write(self):
        with open(os.path.join(OUT, self.name + ".tar"), "wb") as f:
            f.write(self.data)
        head = "ok" if self.err is None else f"err {self.err[0]} {hx(self.err[1])}"
        with open(os.path.join(OUT, self.name + ".exp"), "w") as f:
            f.write("\n".join([head] + self.lines) + "\n")


TYPES = {tarfile.REGTYPE: "reg", tarfile.AREGTYPE: "reg", tarfile.DIRTYPE: "dir",
         tarfile.SYMTYPE: "lnk", tarfile.CHRTYPE: "chr", tarfile.BLKTYPE: "blk",
         tarfile.FIFOTYPE: "fifo"}


def oracle(case, data, specs):
    """Expectations for every entry of a tar that has no overrides: attributes
    from the specs, data offsets from Python reading the bytes back."""
    got = list(tarfile.open(fileobj=io.BytesIO(data), encoding="utf-8", errors=SE))
    assert len(got) == len(specs), (case.name, len(got), len(specs))
    paths = set()
    for (spec, sdata), m in zip(specs, got):
        p = norm(s2b(m.name).decode("utf-8", SE))
        if p:
            parts = p.split("/")
            paths.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        base = p.rsplit("/", 1)[-1]
        if base == ".wh..wh..opq":
            paths.discard(p)
            case.path(p.rsplit("/", 1)[0] if "/" in p else "", flag="opaque")
            continue
        if base.startswith(".wh."):
            paths.discard(p)
            wp = (p.rsplit("/", 1)[0] + "/" if "/" in p else "") + base[4:]
            paths.add(wp)
            case.path(wp, type="wh")
            continue
        kv = {}
        if m.islnk():
            kv["same"] = norm(m.linkname)
        else:
            kv.update(type=TYPES[m.type], perm=spec.mode & 0o7777, uid=spec.uid, gid=spec.gid)
            sec, ns = int(spec.mtime), 0
            mt = spec.pax_headers.get("mtime")
            if mt:
                sec = int(mt.split(".")[0])
                if "." in mt:
                    ns = int((mt.split(".")[1] + "000000000")[:9])
            kv["mtime"] = (sec, ns)
            if m.isreg():
                kv.update(size=len(sdata), off=m.offset_data)
            if m.issym():
                kv.update(target=m.linkname, size=len(s2b(m.linkname)))
            if m.ischr() or m.isblk():
                kv["rdev"] = (m.devmajor, m.devminor)
        case.path(p, **kv)
    case.lines.append(f"entries {len(paths) + 1}")


def ok_case(name, specs, fmt, gpax=None, variants=True, extra=None, locale=None, fix=None):
    data = build(specs, fmt, gpax)
    if fix:
        data = fix(data)
    c = Case(name, data, variants=variants, locale=locale)
    oracle(c, data, specs)
    if extra:
        extra(c)
    c.write()
    return data


def err_case(name, data, code, sub):
    Case(name, data, err=(code, sub.encode() if isinstance(sub, str) else sub)).write()


def chk(buf, h):
    """Recompute the checksum of the header at byte offset h of a bytearray."""
    buf[h + 148:h + 156] = b" " * 8
    buf[h + 148:h + 156] = b"%06o\0 " % sum(buf[h:h + 512])


def patch(data, h, off, val):
    b = bytearray(data)
    b[h + off:h + off + len(val)] = val
    chk(b, h)
    return bytes(b)


def hdr_offsets(data):
    return [m.offset for m in tarfile.open(fileobj=io.BytesIO(data))]


def main():
    os.makedirs(OUT, exist_ok=True)
    rnd = random.Random(1234)

    # ---- ustar: types, modes, sizes around 512, implicit parents, ./ prefixes
    long100 = "n" * 100                              # fills the name field, no NUL
    split = "p" * 120 + "/" + "q" * 90               # needs the 155-byte prefix field
    specs = [
        ti("./", tarfile.DIRTYPE, mode=0o700, mtime=1500000000),
        ti("./etc/", tarfile.DIRTYPE, mode=0o755),
        ti("./etc/suid", data=b"#!", mode=0o4755, uid=1000, gid=1001),
        ti("etc/sgid", data=b"x" * 511, mode=0o2755),
        ti("tmp", tarfile.DIRTYPE, mode=0o1777),
        ti("etc/512", data=b"y" * 512),
        ti("etc/513", data=b"z" * 513, mode=0o600, uid=2097151, gid=2097151),
        ti("etc/empty", data=b""),
        ti("a/b/c/deep", data=b"deep"),               # implicit a, a/b, a/b/c
        ti("etc/link", tarfile.SYMTYPE, link="../a/b/c/deep", mode=0o777),
        ti("etc/hard", tarfile.LNKTYPE, link="./etc/512"),
        ti("dev/null", tarfile.CHRTYPE, dev=(1, 3), mode=0o666),
        ti("dev/sda", tarfile.BLKTYPE, dev=(8, 0), mode=0o660),
        ti("dev/big", tarfile.CHRTYPE, dev=(4095, 1048575)),
        ti("run/fifo", tarfile.FIFOTYPE, mode=0o600),
        ti(long100, data=b"100"),
        ti(split, data=b"split"),
        ti("w/.wh.gone", data=b""),
        ti("o/.wh..wh..opq", data=b""),
        ti("o/kept", data=b"k"),
    ]

    def ustar_extra(c):
        c.path("a", flag="implicit", perm=0o755, type="dir")
        c.path("a/b/c", flag="implicit")
        c.path("etc/512", nlink=2)
        c.path("etc/hard", nlink=2, size=512)
        c.path("w", flag="has_wh")
        c.path("", perm=0o700, mtime=(1500000000, 0))
    ok_case("ustar", specs, tarfile.USTAR_FORMAT, extra=ustar_extra)

    # ---- GNU: long names and link targets ('L'/'K'), base-256 numbers
    ln150 = "dir150/" + "l" * 143
    ln300 = "d" * 200 + "/" + "e" * 200 + "/" + "f" * 250   # path > 255, components <= 255
    tgt = "t" * 250 + "/" + "u" * 250
    specs = [
        ti(ln150, data=b"150"),
        ti(ln300, data=b"300" * 200),
        ti("sym", tarfile.SYMTYPE, link=tgt),
        ti("hl300", tarfile.LNKTYPE, link=ln300),
        ti("big-ids", data=b"ids", uid=2**32 - 2, gid=2**32 - 2),
        ti("old", data=b"1969", mtime=-1000),
        ti("future", data=b"2300", mtime=10**10),
    ]
    ok_case("gnu", specs, tarfile.GNU_FORMAT,
            extra=lambda c: c.path(ln300, nlink=2))

    # ---- pax: long names, xattrs (binary, LIBARCHIVE.*), ns mtimes, big ids
    cap = bytes.fromhex("01000002ffffffff00000000ffffffff00000000")
    acl_raw = bytes.fromhex("0200000001000600ffffffff04000400ffffffff20000400ffffffff")
    many = {f"SCHILY.xattr.user.k{i:02d}": "v" * 100 + str(i) for i in range(40)}
    specs = [
        ti("p/" + "x" * 250 + "/" + "y" * 250, data=b"long"),
        ti("p/sym", tarfile.SYMTYPE, link="/" + "z" * 300),
        ti("p/cap", data=b"\x7fELF", mode=0o755,
           pax={"SCHILY.xattr.security.capability": b2s(cap),
                "SCHILY.xattr.user.mime": "text/plain",
                "SCHILY.xattr.system.posix_acl_access": b2s(acl_raw)}),
        ti("p/libarchive", data=b"la",
           pax={"LIBARCHIVE.xattr.user.%41b%3D": base64.b64encode(b"va\0lue").decode()}),
        ti("p/many", data=b"m" * 700, pax=many),
        ti("p/ns", data=b"ns", pax={"mtime": "1700000000.123456789"}),
        ti("p/ns1", data=b"", pax={"mtime": "1700000001.5"}),
        ti("p/ids", data=b"", uid=2**32 - 2, gid=4000000000),
        ti("p/dir", tarfile.DIRTYPE, mode=0o750, pax={"SCHILY.xattr.trusted.x": "1",
                                                      "mtime": "1600000000.000000001"}),
        ti("p/dir/f", data=b"f" * 1000),
        ti("p/hl", tarfile.LNKTYPE, link="p/" + "x" * 250 + "/" + "y" * 250),
    ]
    xs = {"p/cap": {"security.capability": cap, "user.mime": b"text/plain",
                    "system.posix_acl_access": acl_raw},
          "p/libarchive": {"user.Ab=": b"va\0lue"},
          "p/many": {k[len("SCHILY.xattr."):]: v.encode() for k, v in many.items()},
          "p/dir": {"trusted.x": b"1"}}

    def pax_extra(c):
        for p, x in xs.items():
            c.path(p, xattrs=x)
        c.path("p/ns", mtime=(1700000000, 123456789))
        c.path("p/ns1", mtime=(1700000001, 500000000))
        c.path("p/dir", mtime=(1600000000, 1))
    ok_case("pax", specs, tarfile.PAX_FORMAT, gpax={"comment": "a global header"}, extra=pax_extra)

    # ---- names: raw bytes survive in every format, NFD is not normalized,
    # also when the application runs in a UTF-8 locale
    nfd = unicodedata.normalize("NFD", "caf\u00e9")
    raw = b2s(b"raw\xff\xfe")
    for fmt, fname in ((tarfile.USTAR_FORMAT, "ustar"), (tarfile.GNU_FORMAT, "gnu"),
                       (tarfile.PAX_FORMAT, "pax")):
        specs = [
            ti("caf\u00e9", data=b"nfc"), ti(nfd, data=b"nfd"), ti(raw, data=b"raw"),
            ti("s1", tarfile.SYMTYPE, link=nfd + "/" + raw),
            ti("h1", tarfile.LNKTYPE, link=nfd), ti("h2", tarfile.LNKTYPE, link=raw),
        ]
        ok_case("names_" + fname, specs, fmt, variants=False, locale="C.UTF-8")

    # ---- ACLs (SCHILY.acl.*, as GNU tar --acls --numeric-owner and bsdtar write
    # them); expected bytes are what setfacl made on Linux for the same ACLs
    acl_f = bytes.fromhex("0200000001000700ffffffff02000600e803000004000500ffffffff"
                          "08000400e903000010000700ffffffff20000400ffffffff")
    acl_d = bytes.fromhex("0200000001000700ffffffff02000500e803000004000500ffffffff"
                          "10000500ffffffff20000500ffffffff")
    acl_m = bytes.fromhex("0200000001000600ffffffff02000700e803000004000700ffffffff"
                          "10000400ffffffff20000000ffffffff")
    specs = [
        ti("d", tarfile.DIRTYPE, mode=0o755,
           pax={"SCHILY.acl.access": "user::rwx\ngroup::r-x\nother::r-x\n",
                "SCHILY.acl.default": "user::rwx\nuser:1000:r-x\ngroup::r-x\nmask::r-x\nother::r-x\n"}),
        ti("d/f", data=b"hi\n", mode=0o774,
           pax={"SCHILY.acl.access": "user::rwx\nuser:1000:rw-\ngroup::r-x\ngroup:1001:r--\n"
                                     "mask::rwx\nother::r--\n"}),
        ti("d/star", mode=0o774,
           pax={"SCHILY.acl.access": "user::rwx,user:alice:rw-:1000,group::r-x,group:grp:r--:1001,"
                                     "mask::rwx,other::r--"}),
        # mask narrower than group::, as after chmod g=r: st_mode shows the mask
        ti("d/m", mode=0o640,
           pax={"SCHILY.acl.access": "user::rw-\nuser:1000:rwx\ngroup::rwx\nmask::r--\nother::---\n"}),
    ]

    def acl_extra(c):
        c.path("d", xattrs={"system.posix_acl_default": acl_d}, perm=0o755)
        c.path("d/f", xattrs={"system.posix_acl_access": acl_f}, perm=0o774)
        c.path("d/star", xattrs={"system.posix_acl_access": acl_f}, perm=0o774)
        c.path("d/m", xattrs={"system.posix_acl_access": acl_m}, perm=0o640)
    ok_case("acl", specs, tarfile.PAX_FORMAT, extra=acl_extra)

    # ---- many entries and big files across the instream's 1 MiB buffers, and a
    # ustar hardlink whose header ends exactly at the end of the first buffer and
    # whose size field is not 0 (ignored, as Go and Python ignore it)
    sizes = [0, 1, 100, 511, 512, 513, 4000, 20000]
    specs = [ti("big/first", data=bytes(rnd.getrandbits(8) for _ in range(1000)))]
    # header(512) + 1024 data + pad entry + target(512 + 512) + link header(512) = 1 MiB
    pad = (1 << 20) - 512 - 1024 - 512 - 1024 - 512
    specs += [ti("big/pad", data=b"p" * pad), ti("big/target", data=b"t" * 500),
              ti("big/link", tarfile.LNKTYPE, link="big/target")]
    for i in range(1500):
        specs.append(ti(f"many/{i % 37}/f{i}", data=b"%d" % i * (sizes[i % len(sizes)] // len(b"%d" % i) + 1)))
    specs.append(ti("big/huge", data=bytes(range(256)) * 10000))
    link_hdr = (1 << 20) - 512
    data = ok_case("boundary", specs, tarfile.USTAR_FORMAT,
                   extra=lambda c: c.path("big/target", nlink=2),
                   fix=lambda d: patch(d, link_hdr, 124, b"%011o\0" % 100))
    assert hdr_offsets(data)[3] == link_hdr
    ok_case("boundary_pax", [ti("x" * 200 + f"/{i}", data=b"q" * (i * 37 % 3000),
                                pax={"SCHILY.xattr.user.i": str(i)})
                             for i in range(900)], tarfile.PAX_FORMAT)

    # ---- end markers
    Case("empty", bytes(1024)).write()
    e = Case("one_zero_block", bytes(512))
    e.lines.append("entries 1")
    e.write()
    Case("trailing", build([ti("f", data=b"f")], tarfile.USTAR_FORMAT) + b"garbage" * 100).write()
    Case("no_end_marker", build([ti("f", data=b"f")], tarfile.USTAR_FORMAT)[:1024]).write()
    one = build([ti("f", data=b"f")], tarfile.USTAR_FORMAT)
    err_case("lone_zero_block", one[:1024] + bytes(512) + one[:1024] + bytes(1024), "EFORMAT",
             "single end-of-archive")

    # ---- hostile inputs: each rejected, naming the entry where there is one
    good = build([ti("a/file", data=b"hello" * 300), ti("b/other", data=b"x" * 2000)], tarfile.USTAR_FORMAT)
    err_case("truncated_data", good[:1100], "EFORMAT", "a/file")
    err_case("truncated_header", good[:2048 + 100], "EFORMAT", "after entry 'a/file'")
    bad = bytearray(good)
    bad[2048 + 148:2048 + 156] = b"0000000\0"
    err_case("bad_checksum", bytes(bad), "EFORMAT", "after entry 'a/file'")
    bad = bytearray(good)
    bad[148:156] = b"0000000\0"
    err_case("bad_first_checksum", bytes(bad), "EFORMAT", "not a tar archive")
    err_case("dotdot", build([ti("a/../../etc/passwd", data=b"x")], tarfile.USTAR_FORMAT),
             "EFORMAT", "a/../../etc/passwd")
    err_case("absolute", build([ti("/etc/passwd", data=b"x")], tarfile.GNU_FORMAT),
             "EFORMAT", "/etc/passwd")
    err_case("hardlink_missing", build([ti("h", tarfile.LNKTYPE, link="nowhere")], tarfile.USTAR_FORMAT),
             "EFORMAT", "nowhere")
    err_case("garbage", bytes(rnd.getrandbits(8) for _ in range(4096)), "EFORMAT", "not a tar archive")
    err_case("empty_input", b"", "EFORMAT", "empty input")
    err_case("short_input", b"hello", "EFORMAT", "not a tar archive")

    base = build([ti("d", tarfile.DIRTYPE), ti("d/x", data=b"data")], tarfile.USTAR_FORMAT)
    h = hdr_offsets(base)[1]
    for flag, what in ((b"Z", "type 'Z'"), (b"M", "type 'M'"), (b"N", "type 'N'"), (b"D", "type 'D'"),
                       (b"S", "sparse")):
        err_case("type_" + flag.decode(), patch(base, h, 156, flag), "EUNSUPPORTED", what)
    err_case("type_0_dir_with_data", patch(base, h, 0, b"d/x/\0"), "EUNSUPPORTED", "directory with data")
    err_case("hardlink_with_data",
             build([ti("t", data=b"t"), ti("l", tarfile.LNKTYPE, link="t", pax={"size": "512"})],
                   tarfile.PAX_FORMAT) , "EUNSUPPORTED", "'l': hardlink with data")
    err_case("symlink_with_data",
             build([ti("s", tarfile.SYMTYPE, link="t", pax={"size": "1024"})] + [ti("f", data=b"f" * 2000)],
                   tarfile.PAX_FORMAT), "EUNSUPPORTED", "'s'")
    err_case("realsize", build([ti("r", data=b"r" * 10, pax={"SCHILY.realsize": "100000"}),
                                ti("after", data=b"a" * 5000)], tarfile.PAX_FORMAT),
             "EUNSUPPORTED", "'r'")
    err_case("bad_pax_record", build([ti("p", data=b"p", pax={"comment": "x"})], tarfile.PAX_FORMAT)
             .replace(b"comment=x", b"comment:x"), "EFORMAT", "pax")
    err_case("dev_major", build([ti("dev/c", tarfile.CHRTYPE, dev=(5000, 1))], tarfile.USTAR_FORMAT),
             "EUNSUPPORTED", "'dev/c': device number 5000:1")
    err_case("dev_minor", build([ti("dev/c", tarfile.CHRTYPE, dev=(1, 1 << 20))], tarfile.USTAR_FORMAT),
             "EUNSUPPORTED", "device number")
    err_case("uid_negative", build([ti("u", data=b"", pax={"uid": "-1"})], tarfile.PAX_FORMAT),
             "EFORMAT", "'u': uid/gid")
    err_case("acl_names_only",
             build([ti("f", pax={"SCHILY.acl.access": "user::rw-\nuser:alice:r--\ngroup::r--\n"
                                                      "mask::r--\nother::r--\n"})], tarfile.PAX_FORMAT),
             "EUNSUPPORTED", "'f': ACL entry for user 'alice' has no numeric id")
    err_case("xattr_namespace", build([ti("x", pax={"SCHILY.xattr.foo.bar": "1"})], tarfile.PAX_FORMAT),
             "EUNSUPPORTED", "'x'")
    err_case("symlink_empty", build([ti("s", tarfile.SYMTYPE, link="")], tarfile.USTAR_FORMAT),
             "EFORMAT", "'s'")
    huge = bytearray(build([ti("huge", data=b"y" * 10)], tarfile.USTAR_FORMAT))
    huge[124:136] = b"%011o\0" % ((8 << 30) - 1)    # ~8 GiB declared, 10 bytes there
    chk(huge, 0)
    err_case("absurd_size", bytes(huge), "EFORMAT", "huge")
    over = bytearray(build([ti("over", data=b"y" * 10)], tarfile.GNU_FORMAT))
    over[124:136] = b"\x80" + (1 << 42).to_bytes(11, "big")   # base-256: 4 TiB
    chk(over, 0)
    err_case("over_2tib", bytes(over), "EUNSUPPORTED", "'over'")

    # GNU sparse files, as GNU tar writes them (old 'S' and the pax 0.0/0.1/1.0
    # forms); a 1 MiB file with data only at 4 KiB
    if shutil.which("tar"):
        work = tempfile.mkdtemp()
        try:
            sp = os.path.join(work, "sparse")
            with open(sp, "wb") as f:
                f.truncate(1 << 20)
                f.seek(4096)
                f.write(b"data")
            for fmt, ver in (("gnu", None), ("pax", "0.0"), ("pax", "0.1"), ("pax", "1.0")):
                cmd = ["tar", "--sparse", "--format=" + fmt, "-C", work, "-cf", "-", "sparse"]
                if ver:
                    cmd.insert(2, "--sparse-version=" + ver)
                r = subprocess.run(cmd, capture_output=True)
                if r.returncode == 0:
                    err_case(f"sparse_{fmt}_{ver or 'old'}".replace(".", ""), r.stdout, "EUNSUPPORTED",
                             "sparse")
        finally:
            shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
