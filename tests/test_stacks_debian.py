"""Debian stacks against the real archive (the one in the machine's apt sources): lock,
assemble, scanners, and every way the trust chain can break."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from builder.stacks.debian import debian_mirrors
from helpers import build_image, pybuild, require, unpacked

pytestmark = pytest.mark.slow

TINY = """schema = 1
name = "tiny"
description = "test stack"
[source]
type = "debian"
suites = ["trixie"]
[packages]
install = {install}
exclude = ["debconf", "debconf-2.0", "gawk", "mawk", "awk"]
"""


def tiny_stack(folder: Path, install: str = '["netbase", "media-types"]') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.toml"
    path.write_text(TINY.format(install=install))
    return path


class TamperingArchive:
    """A real HTTP server on 127.0.0.1 in front of the real Debian archive that can damage
    one kind of file on the way through: "inrelease", "packages" or "deb"."""

    def __init__(self, tamper: str | None = None):
        upstream, _ = debian_mirrors()
        assert upstream, "no Debian archive in the apt sources"
        self.upstream, self.tamper = upstream, tamper
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                resp = requests.get(outer.upstream + self.path, timeout=60)
                body = resp.content
                kind = ("inrelease" if self.path.endswith("/InRelease") else "packages"
                        if "/Packages" in self.path else "deb" if self.path.endswith(".deb") else None)
                if resp.status_code == 200 and kind and kind == outer.tamper:
                    if kind == "inrelease":
                        body = body.replace(b"Origin: Debian", b"Origin: Debiax", 1)
                        assert b"Debiax" in body
                    else:
                        mid = len(body) // 2
                        body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
                self.send_response(resp.status_code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _env(cache: Path, mirror: str | None = None) -> dict:
    env = {"PYBUILD_CACHE_DIR": str(cache)}
    if mirror:
        env["PYBUILD_DEBIAN_MIRROR"] = mirror
    return env


def test_lock_update_prints_changes_and_show_lists_packages(tmp_path):
    path = tiny_stack(tmp_path / "stacks")
    proc = pybuild("stacks", "lock", str(path), "--update")
    assert "+ netbase " in proc.stdout and "+ media-types " in proc.stdout
    lock = (tmp_path / "stacks" / "tiny.lock").read_text()
    assert 'name = "netbase"' in lock and "sha256 = " in lock and 'suite = "trixie"' in lock
    proc = pybuild("stacks", "lock", str(path), "--update")
    assert proc.stdout.strip() == ""  # nothing changed
    proc = pybuild("stacks", "show", str(path), "--json")
    shown = json.loads(proc.stdout)
    assert {p["name"] for p in shown["lock"]["package"]} == {"netbase", "media-types"}


def test_stacks_list_shows_the_shipped_stacks():
    proc = pybuild("stacks", "list", "--json")
    names = {r["name"] for r in json.loads(proc.stdout)}
    assert {"static", "cc", "python-3.11", "python-3.13", "python-3.14"} <= names


def test_unknown_package_and_unsatisfiable_chain(tmp_path):
    path = tiny_stack(tmp_path / "s1", '["netbsae"]')
    proc = pybuild("stacks", "lock", str(path), check=False)
    assert proc.returncode == 1 and "unknown package 'netbsae'" in proc.stderr and "netbase" in proc.stderr
    # contrib alone: firmware-b43-installer needs b43-fwcutter (contrib), which needs libc6 (main)
    path = tiny_stack(tmp_path / "s2", '["firmware-b43-installer"]')
    path.write_text(path.read_text().replace('suites = ["trixie"]', 'suites = ["trixie"]\ncomponents = ["contrib"]')
                    .replace('exclude = ["debconf", ', 'exclude = ["bzip2", "ca-certificates", "pciutils", "wget", "debconf", '))
    proc = pybuild("stacks", "lock", str(path), check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "unsatisfiable dependency: firmware-b43-installer" in proc.stderr
    assert "-> b43-fwcutter 1:019" in proc.stderr and "-> libc6 (>= 2.34)" in proc.stderr
    assert not (tmp_path / "s2" / "tiny.lock").exists()


@pytest.mark.parametrize("tamper,expected", [
    ("inrelease", "signature does not verify"),
    ("packages", "does not match the signed Release file"),
])
def test_tampered_index_is_refused_and_nothing_cached(tmp_path, tamper, expected):
    path = tiny_stack(tmp_path / "stacks")
    with TamperingArchive(tamper) as archive:
        proc = pybuild("stacks", "lock", str(path), check=False, env=_env(tmp_path / "cache", archive.url))
    assert proc.returncode == 1, proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "stacks" / "tiny.lock").exists()
    assert not list((tmp_path / "cache").glob("debian/indexes/*"))


def test_tampered_deb_is_refused_and_not_cached(tmp_path):
    path = tiny_stack(tmp_path / "stacks")
    pybuild("stacks", "lock", str(path))  # honest lock from the real archive
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('hi')\n")
    with TamperingArchive("deb") as archive:
        proc = pybuild("build", str(app), "--stack", str(path), "-o", f"oci:{tmp_path / 'out'}",
                       check=False, env=_env(tmp_path / "cache", archive.url))
    assert proc.returncode == 1
    assert "does not match the sha256 pinned in the lockfile" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in (tmp_path / "cache" / "debian" / "debs" / "sha256").iterdir()]


def test_unreachable_archive_is_one_clear_error(tmp_path):
    path = tiny_stack(tmp_path / "stacks")
    proc = pybuild("stacks", "lock", str(path), check=False, env=_env(tmp_path / "cache", "http://127.0.0.1:9"))
    assert proc.returncode == 1
    assert "cannot reach the Debian archive" in proc.stderr and "Traceback" not in proc.stderr


def test_schema_violation_names_file_and_key(tmp_path):
    path = tiny_stack(tmp_path / "stacks")
    path.write_text(path.read_text().replace("[source]", "[source]\nmirorr = 'x'"))
    proc = pybuild("stacks", "lock", str(path), check=False)
    assert proc.returncode == 1
    assert str(path) in proc.stderr and "mirorr" in proc.stderr and "did you mean 'mirror'" in proc.stderr


@pytest.fixture(scope="module")
def flask_on_each_python(tmp_path_factory):
    out = tmp_path_factory.mktemp("py") / "oci"
    from helpers import EXAMPLES

    build_image(EXAMPLES / "python-flask", out, "py313")
    return out


def test_syft_sees_every_locked_package_with_its_version(flask_on_each_python, tmp_path):
    syft = require("syft")
    out = flask_on_each_python
    proc = subprocess.run([syft, "scan", f"oci-dir:{out}", "-o", "json", "-q"], capture_output=True, text=True,
                          timeout=600, env={"SYFT_CHECK_FOR_APP_UPDATE": "false", "PATH": "/usr/bin:/bin",
                                            "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    found = {(a["name"], a["version"]) for a in doc["artifacts"] if a["type"] == "deb"}
    from builder.stacks.assemble import load_definition, read_lock

    locked = {(p["name"], p["version"]) for p in read_lock(load_definition("python-3.13"))["package"]}
    assert locked <= found, locked - found
    assert doc["distro"]["id"] == "debian" and doc["distro"]["versionID"] == "13"
    pythons = {a["name"] for a in doc["artifacts"] if a["type"] == "python"}
    assert {"flask", "gunicorn"} <= {n.lower() for n in pythons}


def test_arm64_index_resolves_arm64_packages(tmp_path):
    path = tiny_stack(tmp_path / "stacks", '["libc6", "netbase"]')
    path.write_text(path.read_text().replace("[packages]", 'architecture = "arm64"\n\n[packages]'))
    # architecture belongs to [source]: move it there
    text = path.read_text().replace('architecture = "arm64"\n\n[packages]', "[packages]")
    path.write_text(text.replace('suites = ["trixie"]', 'suites = ["trixie"]\narchitecture = "arm64"'))
    pybuild("stacks", "lock", str(path))
    from builder.tomlfile import load_toml

    lock = load_toml(tmp_path / "stacks" / "tiny.lock")
    archs = {p["name"]: p["architecture"] for p in lock["package"]}
    assert archs["libc6"] == "arm64" and archs["netbase"] == "all"
    assert any("_arm64.deb" in p["filename"] for p in lock["package"])
