"""`pybuild build` of the Flask sample to every destination at once: one digest everywhere, runs in podman."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import need

ROOT = Path(__file__).resolve().parents[2]
USER_CACHE = os.environ.get("PYBUILD_CACHE_DIR")  # the stack cache the other end-to-end tests share


@pytest.mark.slow
def test_flask_build_to_every_destination(registry, podman, tmp_path):
    need("skopeo")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if USER_CACHE:
        env["PYBUILD_CACHE_DIR"] = USER_CACHE
    else:
        env.pop("PYBUILD_CACHE_DIR", None)
    layout, oci_tar, docker_tar = tmp_path / "layout", tmp_path / "app.oci.tar", tmp_path / "app.docker.tar"
    remote = f"docker://{registry.host}/samples/flask:1"
    proc = subprocess.run([sys.executable, "-m", "builder.cli", "build", str(ROOT / "examples/python-flask"),
                           "-t", "flask:1", "-o", f"oci:{layout}", "-o", f"oci-archive:{oci_tar}",
                           "-o", f"docker-archive:{docker_tar}", "-o", remote,
                           "--digest-file", str(tmp_path / "digest")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest = proc.stdout.strip().splitlines()[-1]
    assert digest.startswith("sha256:") and (tmp_path / "digest").read_text().strip() == digest

    for ref in (f"oci:{layout}:1", f"oci-archive:{oci_tar}:1"):
        info = subprocess.run(["skopeo", "inspect", ref], capture_output=True, text=True, timeout=120)
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["Digest"] == digest
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", remote],
                         capture_output=True, timeout=120).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest

    podman("load", "-i", str(docker_tar))
    run = podman("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                 "--entrypoint", "/usr/bin/python3.13", "flask:1", "-c",
                 "import flask, os; print(flask.__name__, os.getuid())", check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["flask", "65532"]

    report = subprocess.run([sys.executable, "-m", "builder.cli", "inspect", remote, "--json"], cwd=tmp_path,
                            env=dict(env, PYBUILD_CACHE_DIR=str(tmp_path / "inspect-cache")),
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["digest"] == digest
    assert {p["name"] for p in data["packages"]} >= {"libc6", "base-files"}
    assert data["layers"][0]["createdBy"].startswith("pybuild stack")
    assert data["config"]["user"].startswith("65532")
