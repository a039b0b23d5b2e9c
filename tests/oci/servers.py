"""Servers the OCI tests and benchmarks run on 127.0.0.1: a real docker-registry and a proxy in front of it
that injects faults, counts requests and can demand Bearer tokens. Each is stopped by its owner."""
from __future__ import annotations

import base64
import http.client
import json
import random
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- docker-registry ------------------------------------------------------------------------------------
class RegistryServer:
    def __init__(self, root: Path, htpasswd: Path | None = None, tls: tuple[Path, Path] | None = None,
                 token_auth: str = ""):
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        auth = (f"auth:\n  htpasswd:\n    realm: pybuild-test\n    path: {htpasswd}\n" if htpasswd else token_auth)
        tls_cfg = f"  tls:\n    certificate: {tls[0]}\n    key: {tls[1]}\n" if tls else ""
        self.scheme = "https" if tls else "http"
        cfg = root / "config.yml"
        cfg.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                       f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
                       f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: pybuild-test-secret\n{tls_cfg}{auth}")
        self.log = open(root / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with warnings.catch_warnings():  # a self-signed test certificate
                    warnings.simplefilter("ignore")
                    requests.get(f"{self.scheme}://{self.host}/v2/", timeout=1, verify=False)
                return
            except requests.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_htpasswd(path: Path, user: str, password: str) -> None:
    """A bcrypt htpasswd file (docker-registry reads no other hash): the `bcrypt` package, else apache2-utils."""
    try:
        import bcrypt
    except ImportError:
        line = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True,
                              check=True).stdout.strip()
        path.write_text(line + "\n")
        return
    path.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")


# -- a proxy that injects faults, counts requests and can demand Bearer tokens -----------------------
class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, fault_rate: float = 0.0, seed: int = 1, bearer: tuple[str, str] | None = None,
                 script: dict[tuple[str, int], str] | None = None, delay: float = 0.0,
                 refresh_token: str | None = None):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.fault_rate = fault_rate
        self.script = dict(script or {})  # (method, nth request of that method, from 1) -> fault
        self.seen: dict[str, int] = {}
        self.delay = delay  # seconds each upload request (PUT, PATCH) is held, to show overlap
        self.refresh_token = refresh_token  # accepted at the token endpoint in an OAuth2 refresh grant
        self.in_flight = 0
        self.max_in_flight = 0
        self.rng = random.Random(seed)
        self.bearer = bearer  # (user, password) the token endpoint accepts
        self.tokens: set[str] = set()
        self.lock = threading.Lock()
        self.log: list[tuple[str, str, str]] = []  # (method, path, fault or status)
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def choose(self, method: str, path: str) -> str:
        with self.lock:
            if not path.startswith("/v2/") or path == "/v2/":
                return ""
            self.seen[method] = self.seen.get(method, 0) + 1
            if (method, self.seen[method]) in self.script:
                return self.script[(method, self.seen[method])]
            if self.rng.random() >= self.fault_rate:
                return ""
            return self.rng.choice(["503", "429", "reset-before", "reset-after"])

    def record(self, method: str, path: str, what: str) -> None:
        with self.lock:
            self.log.append((method, path, what))

    def count(self, method: str, contains: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.log if m == method and contains in p)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _token_endpoint(self, body: bytes) -> None:
        user, password = self.server.bearer  # type: ignore[misc]
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.command == "POST":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            ok = (form.get("grant_type") == "refresh_token" and self.server.refresh_token is not None
                  and form.get("refresh_token") == self.server.refresh_token)
        else:
            ok = self.headers.get("Authorization") == expected
        if not ok:
            self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
            return
        token = f"tok{random.getrandbits(64):x}"
        with self.server.lock:
            self.server.tokens.add(token)
        self._reply(200, json.dumps({"token": token}).encode(), {"Content-Type": "application/json"})

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.bearer:
            if self.path.startswith("/token"):
                self._token_endpoint(body)
                return
            auth = self.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:] in self.server.tokens):
                challenge = (f'Bearer realm="http://{self.server.host}/token",service="pybuild-test",'
                             f'scope="repository:x:pull"')
                self.server.record(self.command, self.path, "401")
                self._reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
                return
        fault = self.server.choose(self.command, self.path)
        if fault in ("503", "429"):
            self.server.record(self.command, self.path, fault)
            self._reply(int(fault), b"injected fault")
            return
        if fault == "reset-before":
            self.server.record(self.command, self.path, fault)
            self._reset()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "authorization")}
        conn = http.client.HTTPConnection(self.server.upstream, timeout=120)
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            if self.server.delay and self.command in ("PUT", "PATCH"):
                time.sleep(self.server.delay)
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
            with self.server.lock:
                self.server.in_flight -= 1
        if fault == "reset-after":
            self.server.record(self.command, self.path, fault)
            self._reset()
            return
        self.server.record(self.command, self.path, str(resp.status))
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v)
        length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length or "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


# -- a token service for docker-registry's `auth: token` (real JWT checks by the registry) ------------------
class TokenServer(ThreadingHTTPServer):
    """Issues RS256 JWTs the registry verifies against `cert` (sent in the x5c header) to one user."""

    daemon_threads = True
    issuer = "pybuild-test-issuer"
    service = "pybuild-test"

    def __init__(self, root: Path, user: str, password: str):
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        super().__init__(("127.0.0.1", 0), _TokenHandler)
        self.user, self.password = user, password
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pybuild test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(minutes=5))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.cert_path = root / "token-signer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issued = 0
        self.realm = f"http://127.0.0.1:{self.server_address[1]}/token"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def registry_auth(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.service}\n"
                f"    issuer: {self.issuer}\n    rootcertbundle: {self.cert_path}\n")

    def token(self, scopes: list[str], subject: str) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": f"{random.getrandbits(64):x}", "access": access}
        signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64(signature)

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: TokenServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        expected = "Basic " + base64.b64encode(f"{self.server.user}:{self.server.password}".encode()).decode()
        auth = self.headers.get("Authorization")
        if auth is not None and auth != expected:
            body, status = b'{"errors":[{"code":"UNAUTHORIZED"}]}', 401
        else:
            scopes = query.get("scope", []) if auth else [s for s in query.get("scope", []) if s.endswith(":pull")]
            token = self.server.token(scopes, self.server.user if auth else "")
            self.server.issued += 1
            body, status = json.dumps({"token": token, "expires_in": 300}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
