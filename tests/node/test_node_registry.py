"""The npm registry client against a registry served on the loopback: metadata cached and
revalidated with its ETag, used offline, tarballs checked against dist.integrity, auth tokens,
and npm tarballs unpacked safely."""
from __future__ import annotations

import base64
import hashlib
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from builder.errors import NetworkError, PybuildError, VerificationError
from buildpacks.node.registry import Registry, extract_package
from helpers import tar_bytes


def npm_tarball(files: dict[str, bytes]) -> bytes:
    return tar_bytes(files, gz=True)


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class FakeRegistry:
    def __init__(self):
        self.tarballs: dict[str, bytes] = {}
        self.packuments: dict[str, dict] = {}
        self.requests: list[tuple[str, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append((self.path, dict(self.headers)))
                if self.path in outer.tarballs:
                    body, ctype = outer.tarballs[self.path], "application/octet-stream"
                elif self.path.lstrip("/").replace("%2F", "%2f") in outer.packuments:
                    etag = '"v1"'
                    if self.headers.get("If-None-Match") == etag:
                        self.send_response(304)
                        self.end_headers()
                        return
                    name = self.path.lstrip("/").replace("%2F", "%2f")
                    body, ctype = json.dumps(outer.packuments[name]).encode(), "application/json"
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if ctype == "application/json":
                    self.send_header("ETag", '"v1"')
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, name: str, version: str, data: bytes, integrity: str | None = None):
        path = f"/{name}/-/{name.split('/')[-1]}-{version}.tgz"
        self.tarballs[path] = data
        self.packuments.setdefault(name.replace("/", "%2f"), {"name": name, "versions": {}})["versions"][version] = {
            "name": name, "version": version,
            "dist": {"tarball": self.url.rstrip("/") + path, "integrity": integrity or sri(data)}}

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    reg = FakeRegistry()
    yield reg
    reg.stop()


def test_versions_tarball_and_integrity(fake, tmp_path):
    good = npm_tarball({"package/package.json": b'{"name":"tool"}', "package/bin/tool.js": b"1"})
    fake.publish("tool", "1.0.0", good)
    fake.publish("tool", "1.1.0-rc.1", good)
    fake.publish("tool", "2.0.0", good, integrity=sri(b"something else"))
    reg = Registry(fake.url, tmp_path, token="t0k")
    versions = reg.versions("tool")
    assert sorted(str(v) for v in versions) == ["1.0.0", "1.1.0-rc.1", "2.0.0"]
    assert fake.requests[0][1]["Authorization"] == "Bearer t0k"
    assert "application/vnd.npm.install-v1+json" in fake.requests[0][1]["Accept"]
    path = reg.tarball(next(m for v, m in versions.items() if str(v) == "1.0.0"))
    assert path.read_bytes() == good
    root = extract_package(path, tmp_path / "x")
    assert (root / "bin" / "tool.js").read_text() == "1"
    with pytest.raises(VerificationError, match="integrity check failed"):
        reg.tarball(next(m for v, m in versions.items() if str(v) == "2.0.0"))
    assert not list((tmp_path / "tarballs").glob("tool@2.0.0*"))  # nothing unverified is kept


def test_metadata_is_revalidated_and_used_offline(fake, tmp_path):
    fake.publish("@scope/pkg", "1.0.0", npm_tarball({"package/a": b"a"}))
    reg = Registry(fake.url, tmp_path)
    assert reg.packument("@scope/pkg")["name"] == "@scope/pkg"
    assert fake.requests[-1][0].lower() == "/@scope%2fpkg"
    assert reg.packument("@scope/pkg")["name"] == "@scope/pkg"
    assert fake.requests[-1][1].get("If-None-Match") == '"v1"'
    fake.stop()
    assert reg.packument("@scope/pkg")["name"] == "@scope/pkg"  # offline: the cached copy
    with pytest.raises(NetworkError, match="cannot reach the npm registry"):
        reg.packument("never-fetched")


def test_unknown_package_is_a_clear_error(fake, tmp_path):
    with pytest.raises(PybuildError, match="package 'nope' was not found in the npm registry"):
        Registry(fake.url, tmp_path).packument("nope")


def test_extraction_refuses_paths_outside_the_package(tmp_path):
    evil = npm_tarball({"package/ok.txt": b"ok", "package/../../escape.txt": b"x"})
    src = tmp_path / "evil.tgz"
    src.write_bytes(evil)
    with pytest.raises(tarfile.TarError):
        extract_package(src, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
