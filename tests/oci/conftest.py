"""Fixtures for the OCI tests: tiny images built in-process, a real docker-registry on 127.0.0.1,
a fault-injecting (and optionally token-issuing) proxy in front of it, and isolated podman state.

Every server listens on 127.0.0.1 only and is stopped when its test ends.
"""
from __future__ import annotations

import base64
import json
import random
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from builder.oci.blobs import BlobStore
from builder.oci.image import Image, Layer
from builder.oci.tarball import TarWriter

from .servers import FaultProxy, RegistryServer, free_port, write_htpasswd  # noqa: F401

SCHEMAS = Path(__file__).resolve().parents[2] / "builder" / "schemas"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed")
    return path


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
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        need("htpasswd")
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
