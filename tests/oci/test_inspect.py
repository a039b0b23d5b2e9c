"""`inspect`: layers, config, packages and dive's efficiency figure, for every transport."""
from __future__ import annotations

import json
import subprocess

import pytest

from builder.inspect import run_inspect
from builder.oci.image import Image, Layer
from builder.oci.tarball import TarWriter
from builder.publish import parse_destination

from .conftest import need


def wasteful_image(store) -> Image:
    """Files overwritten, removed, directories removed, an opaque directory and package databases."""
    t1 = TarWriter()
    t1.add_bytes("etc/passwd", b"root:x:0:0::/:/sbin/nologin\n")
    t1.add_bytes("etc/motd", b"m" * 77)
    t1.add_bytes("app/big", b"x" * 5000)
    t1.add_bytes("old.txt", b"o" * 123)
    t1.add_bytes("cache/a", b"a" * 700)
    t1.add_bytes("cache/sub/b", b"b" * 300)
    t1.add_dir("emptyd")
    t1.add_symlink("bin", "usr/bin")
    t1.add_bytes("var/lib/dpkg/status.d/base-files",
                 b"Package: base-files\nVersion: 13.8\nArchitecture: amd64\n\n")
    t1.add_bytes("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2025a-1\nArchitecture: all\n\n")
    t2 = TarWriter()
    t2.add_bytes("app/big", b"y" * 3000)
    t2.add_bytes(".wh.cache", b"")
    t2.add_bytes(".wh.old.txt", b"")
    t2.add_dir("emptyd")
    t2.add_bytes("lib/apk/db/installed",
                 b"C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\nS:1\n\nC:Q1def=\nP:busybox\nV:1.36.1-r2\nA:x86_64\n\n")
    t3 = TarWriter()
    t3.add_bytes("app/big", b"z" * 3500)
    t3.add_bytes("var/lib/dpkg/status.d/.wh.tzdata", b"")
    t3.add_bytes("etc/.wh..wh..opq", b"")
    t3.add_bytes("etc/hostname", b"h\n")
    layers = [Layer.from_tar_writer(t, store, f"pybuild step {i}") for i, t in enumerate((t1, t2, t3))]
    return Image(config={"User": "65532", "Entrypoint": ["/app/big"], "Env": ["A=1"],
                         "Labels": {"io.pybuild.stack": "test"}}).with_layers(*layers)


def inspect_json(ref: str, capsys) -> dict:
    assert run_inspect(ref, True) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    return json.loads(out)


def test_inspect_reports_layers_config_packages(store, tmp_path, capsys):
    image = wasteful_image(store)
    parse_destination(f"oci:{tmp_path / 'l'}:w", "x").publish(image)
    report = inspect_json(f"oci:{tmp_path / 'l'}:w", capsys)
    assert report["digest"] == image.digest
    assert report["platform"] == "linux/amd64"
    assert [l["createdBy"] for l in report["layers"]] == ["pybuild step 0", "pybuild step 1", "pybuild step 2"]
    assert [l["size"] for l in report["layers"]] == [l.size for l in image.layers]
    assert [l["uncompressedSize"] for l in report["layers"]] == [l.uncompressed_size for l in image.layers]
    assert report["config"]["user"] == "65532" and report["config"]["labels"] == {"io.pybuild.stack": "test"}
    names = {(p["type"], p["name"], p["version"]) for p in report["packages"]}
    assert names == {("deb", "base-files", "13.8"), ("apk", "musl", "1.2.5-r0"), ("apk", "busybox", "1.36.1-r2")}
    tzdata = len(b"Package: tzdata\nVersion: 2025a-1\nArchitecture: all\n\n")
    assert report["efficiency"]["wastedBytes"] == 5000 + 3000 + 3500 + 123 + tzdata
    assert [f["path"] for f in report["efficiency"]["inefficientFiles"]][:2] == ["/app/big", "/old.txt"]

    assert run_inspect(f"oci:{tmp_path / 'l'}:w", False) == 0
    text = capsys.readouterr().out
    for needle in ("pybuild step 2", "User        65532", "deb  base-files 13.8", "Efficiency", "/app/big"):
        assert needle in text


@pytest.mark.slow
def test_efficiency_equals_dive(store, tmp_path, capsys):
    need("dive")
    for name, image in (("wasteful", wasteful_image(store)), ("lean", None)):
        if image is None:
            from .conftest import make_image

            image = make_image(store)
        archive = tmp_path / f"{name}.tar"
        parse_destination(f"docker-archive:{archive}:{name}:1", "x").publish(image)
        out = tmp_path / f"{name}.dive.json"
        proc = subprocess.run(["dive", "--source", "docker-archive", str(archive), "--ci", "--json", str(out),
                               "--lowestEfficiency", "0", "--highestUserWastedPercent", "1"],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.exists(), proc.stdout + proc.stderr
        dive = json.loads(out.read_text())["image"]
        ours = inspect_json(f"docker-archive:{archive}", capsys)["efficiency"]
        assert ours["wastedBytes"] == dive["inefficientBytes"], name
        layer_sizes = [l["sizeBytes"] for l in json.loads(out.read_text())["layer"]]
        assert ours["userSizeBytes"] == sum(layer_sizes[1:]), name
        assert ours["score"] == pytest.approx(dive["efficiencyScore"], abs=1e-12), name
        assert {f["path"]: f["wastedBytes"] for f in ours["inefficientFiles"]} == \
               {f["file"]: f["sizeBytes"] for f in dive["fileReference"]}, name


def test_inspect_every_file_transport(image, tmp_path, capsys):
    specs = [f"oci:{tmp_path / 'l'}:app", f"oci-archive:{tmp_path / 'a.tar'}:app",
             f"docker-archive:{tmp_path / 'd.tar'}:app:1"]
    reports = []
    for spec in specs:
        parse_destination(spec, "x").publish(image)
        reports.append(inspect_json(spec, capsys))
    for r in reports:
        assert [l["createdBy"] for l in r["layers"]] == [l.created_by for l in image.layers]
        assert [l["uncompressedSize"] for l in r["layers"]] == [l.uncompressed_size for l in image.layers]
        assert r["config"]["entrypoint"] == ["/hello"] and "PORT=8080" in r["config"]["env"]
        assert r["packages"] == [{"type": "deb", "name": "base-files", "version": "13.8", "arch": "amd64",
                                  "layer": 0}]
        # removing the directory /junk is a leaf only in the app layer: dive counts nothing for it
        assert r["efficiency"]["wastedBytes"] == 0 and r["efficiency"]["score"] == 1.0
    assert reports[0]["digest"] == reports[1]["digest"] == image.digest


def test_inspect_registry_image(registry, image, capsys):
    parse_destination(f"docker://{registry.host}/team/app:1", "x").publish(image)
    report = inspect_json(f"docker://{registry.host}/team/app:1", capsys)
    assert report["digest"] == image.digest
    assert report["reference"] == f"docker://{registry.host}/team/app:1"


def test_cli_inspect_exit_codes(image, tmp_path):
    import os
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root))
    parse_destination(f"oci:{tmp_path / 'l'}:app", "x").publish(image)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "builder.cli", "inspect", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    ok = cli(f"oci:{tmp_path / 'l'}:app", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["digest"] == image.digest
    text = cli(f"oci:{tmp_path / 'l'}:app")
    assert text.returncode == 0 and "Efficiency" in text.stdout
    missing = cli(f"oci:{tmp_path / 'nothing'}")
    assert missing.returncode == 1 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    assert cli("nonsense").returncode == 2
