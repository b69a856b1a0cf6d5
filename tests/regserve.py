"""Registry test harness (python3 stdlib + Debian tools only).

- Registry: Debian's docker-registry on 127.0.0.1 (anonymous, htpasswd Basic
  via glibc bcrypt, or Bearer tokens from TokenServer; optional TLS with a
  throwaway self-signed certificate from the openssl CLI).
- TokenServer: the Docker token protocol (GET /token?service=&scope=, Basic
  credentials, anonymous pull if allowed); JWTs signed RS256 by the openssl CLI
  with the certificate in the `x5c` header, which the registry checks against
  its rootcertbundle. Every request is logged (scope caching is testable).
- FaultProxy: a reverse proxy that injects faults per request path: statuses
  (500/429 + Retry-After), connections dropped mid-body, stalls, corrupted
  bodies, endless bodies, redirect loops, cross-host redirects. Logs requests
  with their headers (Range, Authorization).
- BlobHost: a static file server (a redirect target; logs headers).
- Fixtures: layer tars, OCI layouts (gzip/zstd/plain layers, multi-arch
  indexes), pushed with skopeo.
"""
import base64
import crypt
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"


def which(tool):
    return shutil.which(tool)


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(dirpath, name="cert"):
    key, crt = os.path.join(dirpath, name + ".key"), os.path.join(dirpath, name + ".pem")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt])
    return key, crt


class _Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _serve(handler_cls, owner):
    srv = _Threaded(("127.0.0.1", 0), handler_cls)
    srv.owner = owner
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    return srv, th


# ---- token server ---------------------------------------------------------------

def _b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, workdir, users=None, anonymous_pull=True, service="shale-test-registry",
                 issuer="shale-test-issuer"):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.users = users or {"alice": "secret"}
        self.anonymous_pull = anonymous_pull
        self.service, self.issuer = service, issuer
        self.key, self.cert = self_signed(workdir, "token")
        der = run(["openssl", "x509", "-in", self.cert, "-outform", "DER"]).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests = []
        self.lock = threading.Lock()

    def sign(self, claims):
        head = _b64url(json.dumps({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}).encode())
        body = _b64url(json.dumps(claims).encode())
        msg = f"{head}.{body}".encode()
        sig = run(["openssl", "dgst", "-sha256", "-sign", self.key], input=msg).stdout
        return f"{head}.{body}.{_b64url(sig)}"

    def __enter__(self):
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                user = None
                auth = self.headers.get("Authorization", "")
                ok = True
                if auth.startswith("Basic "):
                    try:
                        user, pw = base64.b64decode(auth[6:]).decode().split(":", 1)
                    except Exception:
                        user, pw = "?", None
                    ok = owner.users.get(user) == pw
                with owner.lock:
                    owner.requests.append({"method": "GET", "path": u.path, "query": q, "user": user, "ok": ok})
                if u.path != "/token" or not ok:
                    return self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                access = []
                for sc in q.get("scope", []):
                    parts = sc.split(":")
                    if len(parts) < 3:
                        continue
                    acts = parts[-1].split(",")
                    if user is None:
                        if not owner.anonymous_pull:
                            return self._send(401, {"errors": [{"code": "UNAUTHORIZED",
                                                                "message": "anonymous access refused"}]})
                        acts = [a for a in acts if a == "pull"]
                    access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": acts})
                now = int(time.time())
                tok = owner.sign({"iss": owner.issuer, "sub": user or "", "aud": q.get("service", [""])[0],
                                  "exp": now + 300, "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                                  "access": access})
                self._send(200, {"token": tok, "access_token": tok, "expires_in": 300,
                                 "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})

            def _send(self, code, obj):
                b = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(b)))
                self.end_headers()
                self.wfile.write(b)

        self.srv, self.th = _serve(H, self)
        self.port = self.srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *a):
        self.srv.shutdown()
        self.srv.server_close()


# ---- the registry -----------------------------------------------------------------

class Registry:
    def __init__(self, workdir, auth=None, tls=False, users=None):
        self.dir = workdir
        self.auth, self.tls = auth, tls
        self.users = users or {"alice": "secret"}
        self.ca = None
        self.cert_dir = None
        self.token_server = None
        self.proc = None

    def __enter__(self):
        os.makedirs(self.dir, exist_ok=True)
        port = free_port()
        self.host = f"127.0.0.1:{port}"
        lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
                 "storage:", "  filesystem:", f"    rootdirectory: {self.dir}/data", "  delete:", "    enabled: true",
                 "http:", f"  addr: 127.0.0.1:{port}"]
        if self.tls:
            key, crt = self_signed(self.dir)
            self.ca = crt
            self.cert_dir = os.path.join(self.dir, "certs.d")
            os.makedirs(self.cert_dir, exist_ok=True)
            shutil.copy(crt, os.path.join(self.cert_dir, "ca.crt"))
            lines += ["  tls:", f"    certificate: {crt}", f"    key: {key}"]
        if self.auth == "htpasswd":
            hp = os.path.join(self.dir, "htpasswd")
            with open(hp, "w") as f:
                for u, p in self.users.items():
                    f.write(f"{u}:{crypt.crypt(p, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
            lines += ["auth:", "  htpasswd:", "    realm: shale-test", f"    path: {hp}"]
        elif self.auth == "token":
            self.token_server = TokenServer(os.path.join(self.dir, "token"), users=self.users).__enter__()
            ts = self.token_server
            lines += ["auth:", "  token:", f"    realm: {ts.url}/token", f"    service: {ts.service}",
                      f"    issuer: {ts.issuer}", f"    rootcertbundle: {ts.cert}"]
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(self.dir, "registry.log"), "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=subprocess.STDOUT)
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://{self.host}"
        deadline = time.time() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise AssertionError("docker-registry did not start: " +
                                         open(os.path.join(self.dir, "registry.log"), "rb").read()[-2000:].decode())
                time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.token_server:
            self.token_server.__exit__()
            self.token_server = None

    def __exit__(self, *a):
        self.stop()
        self.log.close()

    def tls_args(self, prefix):
        """skopeo flags for this registry (prefix "src" or "dest")"""
        if self.tls:
            return [f"--{prefix}-cert-dir={self.cert_dir}"]
        return [f"--{prefix}-tls-verify=false"]


# ---- fault proxy ------------------------------------------------------------------

class FaultProxy:
    """Reverse proxy in front of an http upstream (e.g. Registry.url)."""

    def __init__(self, upstream):
        u = urllib.parse.urlparse(upstream)
        self.up_host, self.up_port = u.hostname, u.port
        self.plan = []
        self.log = []
        self.lock = threading.Lock()
        # "rendezvous" rules: a request waits (up to rule["seconds"]) until
        # rule["count"] such requests are in flight at once; met says it happened
        self.cv = threading.Condition()
        self.arrived = 0
        self.met = False

    def _rule(self, method, path):
        with self.lock:
            for r in self.plan:
                if r.get("times", 1) <= 0:
                    continue
                if r.get("method") and r["method"] != method:
                    continue
                if re.search(r["match"], path):
                    r["times"] = r.get("times", 1) - 1
                    return dict(r)
        return None

    def __enter__(self):
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _entry(self, status):
                with owner.lock:
                    owner.log.append((self.command, self.path, dict(self.headers.items()), status))

            def _plain(self, code, body=b"", headers=None, close=True):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                if close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def handle_one(self):
                rule = owner._rule(self.command, self.path)
                act = rule and rule["action"]
                if act == "rendezvous":
                    with owner.cv:
                        owner.arrived += 1
                        owner.cv.notify_all()
                        if owner.cv.wait_for(lambda: owner.arrived >= rule["count"], timeout=rule.get("seconds", 10)):
                            owner.met = True
                        else:
                            owner.arrived -= 1  # gave up: no longer in flight
                if act == "status":
                    self._entry(rule["code"])
                    return self._plain(rule["code"], b'{"errors":[{"code":"INJECTED","message":"injected fault"}]}',
                                       dict(rule.get("headers", {}), **{"Content-Type": "application/json"}))
                if act == "redirect_loop":
                    self._entry(302)
                    return self._plain(302, b"", {"Location": f"http://{owner.host}{self.path}"}, close=False)
                if act == "redirect":
                    self._entry(307)
                    return self._plain(307, b"", {"Location": rule["to"]}, close=False)
                if act == "endless":
                    self._entry(200)
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    zero = b"\0" * 65536
                    try:
                        for _ in range(1 << 16):  # 4 GiB at most
                            self.wfile.write(zero)
                    except OSError:
                        pass
                    return
                # forward
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    body = b"".join(parts)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("host", "connection", "transfer-encoding", "content-length")}
                if body is not None:
                    hdrs["Content-Length"] = str(len(body))
                c = http.client.HTTPConnection(owner.up_host, owner.up_port, timeout=60)
                c.request(self.command, self.path, body=body, headers=hdrs)
                resp = c.getresponse()
                data = resp.read()
                c.close()
                self._entry(resp.status)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() in ("connection", "transfer-encoding", "content-length"):
                        continue
                    if k.lower() == "location":
                        v = v.replace(f"{owner.up_host}:{owner.up_port}", owner.host)
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                if act in ("drop_after", "stall"):
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    if act == "drop_after":
                        self.wfile.write(data[:rule["bytes"]])
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                    elif act == "stall":
                        self.wfile.write(data[:min(len(data) // 2, 65536)])
                        self.wfile.flush()
                        time.sleep(rule["seconds"])
                        self.connection.shutdown(socket.SHUT_RDWR)
                    elif act == "corrupt":
                        b = bytearray(data)
                        for i in range(0, len(b), 4096):
                            b[i] ^= 0xFF
                        self.wfile.write(bytes(b))
                    else:
                        self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = handle_one

        self.srv, self.th = _serve(H, self)
        self.port = self.srv.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        return self

    def __exit__(self, *a):
        self.srv.shutdown()
        self.srv.server_close()


class BlobHost:
    """Static files from a directory; logs (path, headers)."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.log = []

    def __enter__(self):
        owner = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                owner.log.append((self.path, dict(self.headers.items())))
                p = os.path.join(owner.dir, os.path.basename(self.path))
                if not os.path.isfile(p):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = open(p, "rb").read()
                rng = self.headers.get("Range")
                start = int(rng[6:].split("-")[0]) if rng and rng.startswith("bytes=") else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        self.srv, self.th = _serve(H, self)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        return self

    def __exit__(self, *a):
        self.srv.shutdown()
        self.srv.server_close()


# ---- fixtures ---------------------------------------------------------------------

def make_layer_tar(files):
    """{path: bytes, or None for a directory} -> deterministic tar bytes"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in sorted(files):
            data = files[name]
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _compress(data, how):
    if how == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0), MT_LAYER + "+gzip"
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-3", "-c"], input=data, capture_output=True, check=True).stdout, \
            MT_LAYER + "+zstd"
    return data, MT_LAYER


def _blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def build_oci_layout(layout, images, index_name="latest"):
    """Add images to the OCI layout at `layout` under tag index_name; several
    images make one multi-platform index. "compression": None, "gzip", "zstd",
    or a list with one of those per layer."""
    os.makedirs(layout, exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    descs = []
    for im in images:
        os_, arch, variant = im.get("platform") or ("linux", "amd64", None)
        layers, diffs = [], []
        comp = im.get("compression")
        for k, tb in enumerate(im["layers"]):
            diffs.append("sha256:" + hashlib.sha256(tb).hexdigest())
            data, mt = _compress(tb, comp[k] if isinstance(comp, list) else comp)
            layers.append(dict(_blob(layout, data), mediaType=mt))
        cfg = {"architecture": arch, "os": os_, "created": "2024-01-01T00:00:00Z",
               "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
               "rootfs": {"type": "layers", "diff_ids": diffs},
               "history": [{"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"} for i in range(len(diffs))]}
        if variant:
            cfg["variant"] = variant
        cfg.update(im.get("config_extra", {}))
        cb = json.dumps(cfg, sort_keys=True).encode()
        man = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": dict(_blob(layout, cb), mediaType=MT_CONFIG),
               "layers": layers}
        mb = json.dumps(man, sort_keys=True).encode()
        d = dict(_blob(layout, mb), mediaType=MT_MANIFEST)
        plat = {"architecture": arch, "os": os_}
        if variant:
            plat["variant"] = variant
        d["platform"] = plat
        descs.append(d)
    ipath = os.path.join(layout, "index.json")
    idx = json.load(open(ipath)) if os.path.exists(ipath) else {"schemaVersion": 2, "manifests": []}
    idx["manifests"] = [m for m in idx["manifests"]
                        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != index_name]
    if len(descs) == 1:
        top = dict(descs[0])
        top.pop("platform", None)
    else:
        ib = json.dumps({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": descs}, sort_keys=True).encode()
        top = dict(_blob(layout, ib), mediaType=MT_INDEX)
    top["annotations"] = {"org.opencontainers.image.ref.name": index_name}
    idx["manifests"].append(top)
    with open(ipath, "w") as f:
        json.dump(idx, f)


def skopeo_push(layout, tag, dest, dest_creds=None, cert_dir=None):
    cmd = ["skopeo", "copy", "-q", "--all", "--preserve-digests"]
    cmd += [f"--dest-cert-dir={cert_dir}"] if cert_dir else ["--dest-tls-verify=false"]
    if dest_creds:
        cmd += ["--dest-creds", dest_creds]
    run(cmd + [f"oci:{layout}:{tag}", f"docker://{dest}"])


def skopeo_inspect(ref, raw=False, config=False, creds=None, cert_dir=None):
    cmd = ["skopeo", "inspect"] + ([f"--cert-dir={cert_dir}"] if cert_dir else ["--tls-verify=false"])
    if creds:
        cmd += ["--creds", creds]
    if raw:
        cmd.append("--raw")
    if config:
        cmd.append("--config")
    return run(cmd + [f"docker://{ref}"]).stdout.decode()


def _get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def registry_manifest_digest(host, repo, tag):
    accept = ", ".join([MT_INDEX, MT_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])
    return "sha256:" + hashlib.sha256(_get(f"http://{host}/v2/{repo}/manifests/{tag}", accept)).hexdigest()


def config_digest(host, repo, tag):
    m = json.loads(_get(f"http://{host}/v2/{repo}/manifests/{tag}", MT_MANIFEST))
    return m["config"]["digest"]


def fetch_blob(base, repo, digest):
    """a blob from a registry URL, or (repo None) from an OCI layout's blobs dir"""
    if repo is None:
        with open(os.path.join(base, digest[7:]), "rb") as f:
            return f.read()
    return _get(f"{base}/v2/{repo}/blobs/{digest}")


# ---- store checks -----------------------------------------------------------------

def store_state(root):
    """hash of the store's files (not lock files, staging or partial downloads)"""
    h = hashlib.sha256()
    for dp, dn, fn in sorted(os.walk(root)):
        dn[:] = sorted(d for d in dn if d not in ("tmp", "downloads"))
        for f in sorted(fn):
            if f in ("lock.mdb", "lock"):
                continue
            p = os.path.join(dp, f)
            h.update(os.path.relpath(p, root).encode())
            with open(p, "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def leftover_tmp(root):
    out = []
    t = os.path.join(root, "tmp")
    if os.path.isdir(t):
        for dp, dn, fn in os.walk(t):
            out += [f for f in fn if f not in ("lock", ".lock") and not f.endswith(".lock")]
    return out


def store_fsck_ok(shale, root):
    r = subprocess.run([shale, "--root", root, "fsck"], capture_output=True)
    return r.returncode == 0 and b" 0 problems" in r.stdout + r.stderr
