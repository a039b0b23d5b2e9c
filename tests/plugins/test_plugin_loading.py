"""Issue 8: plugins come from the `pybuild` entry-point group; a broken one is reported and
skipped unless the project asked for it; two buildpacks with one id is an error;
PYBUILD_DISABLE_PLUGINS switches plugins off. Fake distributions live in a folder put on
PYTHONPATH, so nothing is installed into the environment."""
from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from helpers import pybuild


def fake_dist(site: Path, dist: str, version: str, entry: str, module: str, code: str) -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[pybuild]\n{entry} = {module}\n")
    (site / f"{module}.py").write_text(textwrap.dedent(code))


GOOD = """
    from builder import Buildpack, DetectResult, hookimpl

    class Hello(Buildpack):
        id = "hello"
        version = "2.0.0"
        description = "says hello"

        def detect(self, ctx):
            return DetectResult.passed("hello.txt", stack="python-3.13") if ctx.exists("hello.txt") \\
                else DetectResult.failed("no hello.txt")

    @hookimpl
    def pybuild_register_buildpacks():
        return [Hello]
"""

BROKEN = """
    raise RuntimeError("boom at import")
"""

DUPLICATE = """
    from builder import Buildpack, hookimpl

    class NotPython(Buildpack):
        id = "python"

    @hookimpl
    def pybuild_register_buildpacks():
        return [NotPython]
"""

NOT_A_BUILDPACK = """
    from builder import hookimpl

    @hookimpl
    def pybuild_register_buildpacks():
        return [dict]
"""


@pytest.fixture
def site(tmp_path) -> tuple[Path, dict]:
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    return site, env


def rows(proc) -> dict:
    return {r["id"]: r for r in json.loads(proc.stdout)["buildpacks"]}


def test_third_party_plugin_is_listed(site):
    folder, env = site
    fake_dist(folder, "pybuild-hello", "2.0.0", "hello", "pybuild_hello", GOOD)
    proc = pybuild("plugins", env=env)
    assert "hello 2.0.0  from pybuild-hello 2.0.0 (pybuild_hello)  hooks: pybuild_register_buildpacks" in proc.stdout
    assert re.search(r"^python \S+  from pybuild \S+ \(buildpacks.python\)", proc.stdout, re.M)


def test_broken_plugin_is_reported_and_the_others_still_run(site, tmp_path):
    folder, env = site
    fake_dist(folder, "pybuild-broken", "0.3", "broken", "pybuild_broken", BROKEN)
    fake_dist(folder, "pybuild-odd", "1.0", "odd", "pybuild_odd", NOT_A_BUILDPACK)
    fake_dist(folder, "pybuild-hello", "2.0.0", "hello", "pybuild_hello", GOOD)
    proc = pybuild("plugins", "--json", env=env)
    data = json.loads(proc.stdout)
    assert 'Error loading plugin "broken" (pybuild-broken 0.3): RuntimeError: boom at import' in data["errors"]
    assert any(e.startswith('Error loading plugin "odd" (pybuild-odd 1.0): TypeError:') for e in data["errors"])
    assert {"hello", "python"} <= set(rows(proc))
    app = tmp_path / "app"
    app.mkdir()
    (app / "hello.txt").write_text("hi")
    det = pybuild("detect", str(app), "--json", env=env)
    assert 'Error loading plugin "broken" (pybuild-broken 0.3): RuntimeError: boom at import' in det.stderr
    assert [b["id"] for b in json.loads(det.stdout)["buildpacks"]] == ["hello"]


def test_broken_plugin_the_project_asks_for_stops_the_build(site, tmp_path):
    folder, env = site
    fake_dist(folder, "pybuild-broken", "0.3", "broken", "pybuild_broken", BROKEN)
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print(1)\n")
    (app / "project.toml").write_text('[_]\nschema-version = "0.2"\n[[io.buildpacks.group]]\nid = "broken"\n')
    proc = pybuild("build", str(app), "-o", f"oci:{tmp_path / 'oci'}:x", env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith('error: Error loading plugin "broken" (pybuild-broken 0.3): RuntimeError: boom')
    assert "Traceback" not in proc.stderr


def test_two_buildpacks_with_one_id_is_an_error(site):
    folder, env = site
    fake_dist(folder, "pybuild-dup", "1.0", "zz-dup", "pybuild_dup", DUPLICATE)
    proc = pybuild("plugins", env=env, check=False)
    assert proc.returncode == 1
    assert re.search(r"two buildpacks have the id 'python': 'python' \(pybuild \S+\) and 'zz-dup' "
                     r"\(pybuild-dup 1.0\)", proc.stderr)
    assert "PYBUILD_DISABLE_PLUGINS" in proc.stderr
    ok = pybuild("plugins", "--json", env={**env, "PYBUILD_DISABLE_PLUGINS": "zz-dup"})
    assert rows(ok)["python"]["distribution"].startswith("pybuild ")


def test_disable_plugins(site):
    folder, env = site
    fake_dist(folder, "pybuild-hello", "2.0.0", "hello", "pybuild_hello", GOOD)
    assert "hello" in rows(pybuild("plugins", "--json", env=env))
    some = rows(pybuild("plugins", "--json", env={**env, "PYBUILD_DISABLE_PLUGINS": "hello, go"}))
    assert "hello" not in some and "go" not in some and "python" in some
    assert rows(pybuild("plugins", "--json", env={**env, "PYBUILD_DISABLE_PLUGINS": "all"})) == {}


SHIPS_CNB = """
    from pathlib import Path

    from builder import hookimpl

    @hookimpl
    def pybuild_cnb_buildpack_dirs():
        return [Path(__file__).with_name("cnb-buildpacks")]
"""


def test_plugin_can_ship_cloud_native_buildpacks(site):
    folder, env = site
    fake_dist(folder, "acme-buildpacks", "4.1", "acme", "acme_bps", SHIPS_CNB)
    bp = folder / "cnb-buildpacks" / "acme_java" / "1.0.0"
    (bp / "bin").mkdir(parents=True)
    (bp / "buildpack.toml").write_text('api = "0.10"\n[buildpack]\nid = "acme/java"\nversion = "1.0.0"\n')
    (bp / "bin" / "build").write_text("#!/bin/sh\n")
    found = rows(pybuild("plugins", "--json", env=env))["acme/java"]
    assert (found["distribution"], found["plugin"], found["kind"]) == ("acme-buildpacks 4.1", "acme", "cnb")
    (bp / "buildpack.toml").write_text('api = "0.4"\n[buildpack]\nid = "acme/java"\nversion = "1.0.0"\n')
    (err,) = json.loads(pybuild("plugins", "--json", env=env).stdout)["errors"]
    assert err.startswith('Error loading plugin "acme" (acme-buildpacks 4.1): ')
    assert err.endswith("Buildpack API 0.4 is not supported")
