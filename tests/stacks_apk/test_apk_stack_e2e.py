"""End to end: a stack definition over the generated APK repositories, locked with the
`pybuild stacks lock` command line, assembled into a layer, written as an OCI layout, and
scanned by syft, which must list every locked package with its locked version."""
from __future__ import annotations

import json
import platform
import subprocess
import tomllib

import pytest

from builder.oci.image import Image
from builder.oci.layout import write_layout
from builder.stacks.assemble import assemble, load_definition
from helpers import pybuild, require, run_to_completion

STACK = """\
schema = 1
name = "apktest"
description = "APK stack over the test repositories"

[source]
type = "apk"
repositories-setting = "PYBUILD_TEST_APK_REPOSITORIES"
keys-setting = "PYBUILD_TEST_APK_KEYS"
architecture = "x86_64"

[packages]
install = ["app", "extra-tool"]
"""


@pytest.fixture
def stack(apk_url, apk_repos, tmp_path, monkeypatch):
    return _stack(STACK, apk_url, apk_repos, tmp_path, monkeypatch)


def _stack(text, apk_url, apk_repos, tmp_path, monkeypatch):
    path = tmp_path / "stacks" / "apktest.toml"
    path.parent.mkdir()
    path.write_text(text)
    env = {"PYBUILD_CACHE_DIR": str(tmp_path / "cache"), "SOURCE_DATE_EPOCH": "1700000000",
           "PYBUILD_TEST_APK_REPOSITORIES": f"{apk_url}/main,{apk_url}/community",
           "PYBUILD_TEST_APK_KEYS": ",".join(str(k) for k in apk_repos["key_paths"])}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return path, env


def test_apk_stack_lock_assemble_and_scan(stack, tmp_path, monkeypatch):
    syft = require("syft")
    path, env = stack
    proc = pybuild("stacks", "lock", str(path), env=env)
    assert "+ foo-tools 2.1-r0" in proc.stdout.splitlines()
    lock = tomllib.loads(path.with_suffix(".lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"]}
    assert locked == {"app": "0.1-r0", "baselayout": "1.0-r0", "extra-tool": "3.4.5_p2-r1",
                      "foo-tools": "2.1-r0", "libfoo": "1.2.3-r1", "musl": "1.2.5-r0"}
    assert all(len(p["sha256"]) == 64 and p["checksum"].startswith("Q1") for p in lock["package"])

    stk = assemble(load_definition(str(path)))
    layout = tmp_path / "oci"
    assert stk.architecture == "amd64"
    image = Image(config={"Env": ["PATH=/usr/bin:/bin"]}, architecture=stk.architecture).with_layers(stk.layer)
    write_layout(image, layout, "apktest")

    out = subprocess.run([syft, "scan", f"oci-dir:{layout}", "-o", "json", "-q"], capture_output=True,
                         text=True, timeout=300, env={**env, "SYFT_CHECK_FOR_APP_UPDATE": "false"})
    assert out.returncode == 0, out.stderr
    found = {a["name"]: a["version"] for a in json.loads(out.stdout)["artifacts"] if a["type"] == "apk"}
    assert found == locked

    report = json.loads(pybuild("inspect", f"oci:{layout}:apktest", "--json", env=env).stdout)
    assert {p["name"]: p["version"] for p in report["packages"] if p["type"] == "apk"} == locked

    # same lockfile, empty cache: the same layer, byte for byte
    monkeypatch.setenv("PYBUILD_CACHE_DIR", str(tmp_path / "cache2"))
    assert assemble(load_definition(str(path))).layer.digest == stk.layer.digest


def test_apk_stack_with_an_untrusted_repository_fails_cleanly(stack, apk_repos, tmp_path):
    path, env = stack
    env = {**env, "PYBUILD_TEST_APK_KEYS": str(apk_repos["key_paths"][0])}
    proc = pybuild("stacks", "lock", str(path), env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: APK repository ") and "pybuild-test-community.rsa.pub" in proc.stderr
    assert "Traceback" not in proc.stderr and not path.with_suffix(".lock").exists()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the test program is x86-64 machine code")
def test_program_from_an_apk_stack_runs_in_a_container(apk_url, apk_repos, tmp_path, monkeypatch):
    """The stack's layer is a working root file system: a static program from a package runs as
    the stack's nonroot user under runc."""
    require("umoci")
    path, env = _stack(STACK.replace('install = ["app", "extra-tool"]', 'install = ["cmd:hello"]'),
                       apk_url, apk_repos, tmp_path, monkeypatch)
    pybuild("stacks", "lock", str(path), env=env)
    stk = assemble(load_definition(str(path)))
    assert {p["name"] for p in stk.packages} == {"hello", "baselayout"}
    image = Image(config={"Entrypoint": ["/usr/bin/hello"], "User": "65532:65532"},
                  architecture=stk.architecture).with_layers(stk.layer)
    write_layout(image, tmp_path / "oci", "hello")
    assert "hello from an APK stack" in run_to_completion(tmp_path / "oci", "hello", tmp_path)
