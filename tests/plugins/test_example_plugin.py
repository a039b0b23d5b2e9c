"""Issue 8: the example plugin package (examples/plugins/static-site) installed with pip into a
fresh virtual environment next to pybuild, listed by `pybuild plugins`, and used to build a
site that runs with runc."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import EXAMPLES, run_image

pytestmark = pytest.mark.slow
PLUGIN = EXAMPLES / "plugins" / "static-site"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv that sees this environment's packages (pybuild itself) plus the plugin, installed
    from a copy so that no build files land in the repository."""
    root = tmp_path_factory.mktemp("plugin-venv")
    src = root / "src"
    shutil.copytree(PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "demo"))
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "venv")],
                   check=True)
    python = root / "venv" / "bin" / "python"
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return python


def pybuild_in(python: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "builder.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_plugin_is_listed_with_its_distribution(venv):
    proc = pybuild_in(venv, "plugins", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)["buildpacks"]}
    assert rows["static-site"]["distribution"] == "pybuild-static-site 0.1.0"
    assert rows["static-site"]["module"] == "pybuild_static_site"
    assert rows["static-site"]["hooks"] == ["pybuild_register_buildpacks"]
    assert "python" in rows  # the built-ins come the same way
    off = pybuild_in(venv, "plugins", "--json", env={"PYBUILD_DISABLE_PLUGINS": "static-site"})
    assert "static-site" not in {r["id"] for r in json.loads(off.stdout)["buildpacks"]}


def test_plugin_builds_a_site_that_runs(venv, tmp_path):
    out = tmp_path / "oci"
    proc = pybuild_in(venv, "build", str(PLUGIN / "demo"), "-o", f"oci:{out}:site")
    assert proc.returncode == 0, proc.stderr
    assert "detected: static-site (index.html in public/)" in proc.stderr
    with run_image(out, "site", tmp_path) as app:
        page = app.get("/")
        assert page.status_code == 200 and "Hello from a pybuild plugin" in page.text
        assert app.get("/style.css").headers["Cache-Control"] == "max-age=3600"
        assert app.get("/missing.html").status_code == 404
    # without the plugin nothing recognises the site, and every buildpack says what it looked for
    plain = subprocess.run([sys.executable, "-m", "builder.cli", "detect", str(PLUGIN / "demo")],
                           capture_output=True, text=True)
    assert plain.returncode == 1 and "\n  python: " in plain.stderr and "  static-site:" not in plain.stderr
