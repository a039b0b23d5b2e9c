"""Fixtures for the Python buildpack tests: each test app is built once per session (the builds
are shared by every test that looks at the same image), with its `pybuild build --json` summary."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import pybuild, require

APPS = Path(__file__).resolve().parent / "apps"


@pytest.fixture(scope="session", autouse=True)
def uv_lock_made_by_uv():
    """The uv test app's uv.lock is made here by the real uv (from its pinned pyproject), not
    committed: uv writes the index URL of every package into it, and no index host is written
    into this repository."""
    import subprocess

    from buildpacks.python.installer import uv_binary

    app = APPS / "uv"
    if not (app / "uv.lock").exists():
        subprocess.run([uv_binary(), "lock", "--no-progress", "--color", "never"], cwd=app, check=True,
                       capture_output=True, text=True, timeout=600)


@dataclass
class Built:
    name: str
    layout: Path
    ref: str
    summary: dict
    stderr: str


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """built(name, *extra_args) -> Built; one build per (app, args) in the session."""
    require("bwrap")
    cache: dict[tuple, Built] = {}
    root = tmp_path_factory.mktemp("python-images")

    def get(name: str, *extra: str) -> Built:
        key = (name, extra)
        if key not in cache:
            layout = root / f"{name}-{len(cache)}"
            proc = pybuild("build", str(APPS / name), "-o", f"oci:{layout}:app", "--json", *extra)
            cache[key] = Built(name, layout, "app", json.loads(proc.stdout), proc.stderr)
        return cache[key]

    return get


@pytest.fixture
def app_copy(tmp_path):
    """copy(name) -> a writable copy of a test app."""
    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(APPS / name, dest)
        return dest

    return copy
