"""Fixtures for the OCI tests: tiny images built in-process, a real docker-registry on 127.0.0.1,
a fault-injecting (and optionally token-issuing) proxy in front of it, and isolated podman state.

Every server listens on 127.0.0.1 only and is stopped when its test ends.
"""
from __future__ import annotations

import base64
import http.client
import json
import random
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from builder.oci.blobs import BlobStore
from builder.oci.image import Image, Layer
from builder.oci.tarball import TarWriter

SCHEMAS = Path(__file__).resolve().parents[2] / "builder" / "schemas"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- images -------------------------------------------------------------------------------------------
def hello_elf(message: bytes = b"hello from pybuild\n") -> bytes:
    """A static x86-64 Linux executable that writes `message` and exits 0 (no libc, no compiler)."""
    base = 0x400000
    code_off = 64 + 56
    code = (b"\xb8\x01\x00\x00\x00"            # mov eax, 1 (write)
            b"\xbf\x01\x00\x00\x00"            # mov edi, 1 (stdout)
            b"\x48\x8d\x35\x10\x00\x00\x00"    # lea rsi, [rip+16] (message)
            + b"\xba" + struct.pack("<I", len(message))  # mov edx, len
            + b"\x0f\x05"                      # syscall
            b"\xb8\x3c\x00\x00\x00"            # mov eax, 60 (exit)
            b"\x31\xff"                        # xor edi, edi
            b"\x0f\x05")                       # syscall
    body = code + message
    total = code_off + len(body)
    ehdr = (b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8
            + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + code_off, 64, 0, 0, 64, 56, 1, 64, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    return ehdr + phdr + body


@pytest.fixture
def store(tmp_path) -> BlobStore:
    return BlobStore(tmp_path / "store")


def base_layer(store: BlobStore) -> Layer:
    tw = TarWriter()
    tw.add_bytes("hello", hello_elf(), mode=0o755)
    tw.add_bytes("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")
    tw.add_bytes("etc/group", b"root:x:0:\nnonroot:x:65532:\n")
    tw.add_dir("tmp", 0o1777)
    tw.add_dir("home/nonroot", 0o755, 65532, 65532)
    tw.add_bytes("var/lib/dpkg/status.d/base-files",
                 b"Package: base-files\nVersion: 13.8\nArchitecture: amd64\nStatus: install ok installed\n\n")
    tw.add_bytes("junk/cache.bin", b"c" * 4000)
    return Layer.from_tar_writer(tw, store, "pybuild stack: test-static")


def app_layer(store: BlobStore, text: str = "print('hi')\n", size: int = 20000) -> Layer:
    tw = TarWriter(uid=65532, gid=65532)
    tw.add_bytes("workspace/app.py", text.encode())
    tw.add_bytes("workspace/data.bin", random.Random(7).randbytes(size))
    tw.add_bytes(".wh.junk", b"")
    return Layer.from_tar_writer(tw, store, "pybuild buildpack: test-app", "app layer")


def make_image(store: BlobStore, text: str = "print('hi')\n", arch: str = "amd64") -> Image:
    cfg = {"User": "65532", "Entrypoint": ["/hello"], "Cmd": [], "Env": ["PATH=/usr/bin:/bin", "PORT=8080"],
           "WorkingDir": "/workspace", "Labels": {"org.opencontainers.image.source": "tests/oci"},
           "ExposedPorts": {"8080/tcp": {}}}
    return Image(config=cfg, architecture=arch).with_layers(base_layer(store), app_layer(store, text))


@pytest.fixture
def image(store) -> Image:
    return make_image(store)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own PYBUILD_CACHE_DIR and no user registry credentials."""
    monkeypatch.setenv("PYBUILD_CACHE_DIR", str(tmp_path / "cache"))
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("PYBUILD_INSECURE_REGISTRIES", raising=False)


# -- schema validation --------------------------------------------------------------------------------
def validate(doc: dict, kind: str) -> None:
    """Validate against builder/schemas/oci-<kind>.schema.json (image-manifest, image-index, image-config)."""
    import jsonschema
    from referencing import Registry, Resource

    resources = [(p.name, Resource.from_contents(json.loads(p.read_text())))
                 for p in SCHEMAS.glob("oci-*.schema.json")]
    schema = json.loads((SCHEMAS / f"oci-{kind}.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema, registry=Registry().with_resources(resources),
                                           format_checker=jsonschema.FormatChecker())
    validator.validate(doc)


# -- docker-registry ------------------------------------------------------------------------------------
class RegistryServer:
    def __init__(self, root: Path, htpasswd: Path | None = None):
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        auth = (f"auth:\n  htpasswd:\n    realm: pybuild-test\n    path: {htpasswd}\n" if htpasswd else "")
        cfg = root / "config.yml"
        cfg.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                       f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\n"
                       f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: pybuild-test-secret\n{auth}")
        self.log = open(root / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                requests.get(f"http://{self.host}/v2/", timeout=1)
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
    import bcrypt

    path.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")


@pytest.fixture
def registry(tmp_path):
    need("docker-registry")
    root = tmp_path / "registry"
    root.mkdir()
    server = RegistryServer(root)
    yield server
    server.stop()


@pytest.fixture
def auth_registry(tmp_path):
    """A registry behind htpasswd (Basic auth): user `tester`, password `s3cret`."""
    need("docker-registry")
    root = tmp_path / "auth-registry"
    root.mkdir()
    write_htpasswd(root / "htpasswd", "tester", "s3cret")
    server = RegistryServer(root, root / "htpasswd")
    yield server
    server.stop()


def write_auth_file(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


# -- a proxy that injects faults, counts requests and can demand Bearer tokens -----------------------
class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, fault_rate: float = 0.0, seed: int = 1, bearer: tuple[str, str] | None = None):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream
        self.fault_rate = fault_rate
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
            if not path.startswith("/v2/") or path == "/v2/" or self.rng.random() >= self.fault_rate:
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

    def _token_endpoint(self) -> None:
        user, password = self.server.bearer  # type: ignore[misc]
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if self.headers.get("Authorization") != expected:
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
                self._token_endpoint()
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
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
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


@pytest.fixture
def proxy_factory():
    proxies: list[FaultProxy] = []

    def make(upstream: str, **kw) -> FaultProxy:
        p = FaultProxy(upstream, **kw)
        proxies.append(p)
        return p

    yield make
    for p in proxies:
        p.stop()


# -- podman with its own state ------------------------------------------------------------------------------
@pytest.fixture
def podman(tmp_path):
    need("podman")
    root = Path(tempfile.mkdtemp(prefix="pbp-", dir="/tmp"))  # podman wants a runroot under 50 characters
    args = ["podman", "--root", str(root / "root"), "--runroot", str(root / "run"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]

    def run(*more: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        proc = subprocess.run(args + list(more), capture_output=True, text=True, timeout=180, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(more)} failed: {proc.stderr}")
        return proc

    run.args = args  # type: ignore[attr-defined]
    run.root = root  # type: ignore[attr-defined]
    yield run
    subprocess.run(args + ["system", "reset", "--force"], capture_output=True, timeout=120)
    shutil.rmtree(root, ignore_errors=True)
