"""Node buildpack decisions that need no network: detection, Node.js version requests and the
LTS rule, package-manager choice, entrypoint rules, npm configuration, integrity checks, and the
$PORT launcher."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from builder.buildpack import DetectContext
from builder.errors import PybuildError, VerificationError
from buildpacks.node import entrypoint, managers, registry, runtime
from buildpacks.node.buildpack import NodeBuildpack, load_package_json
from buildpacks.node.semver import Version
from helpers import write_tree as write

APPS = Path(__file__).parent / "apps"




def detect(root: Path, env: dict | None = None):
    return NodeBuildpack().detect(DetectContext(root, env or {}))


# -- detection -------------------------------------------------------------------------------
def test_detects_package_json_and_plain_scripts(tmp_path):
    res = detect(APPS / "npm-express")
    assert res.status == "pass" and res.stack == "cc-nossl"
    assert res.plan["package_manager"] == "npm" and res.plan["node_version"] == "24.x"
    res = detect(APPS / "no-package-json")
    assert res.status == "pass" and "server.js" in res.reason and res.plan["version_from"].startswith("default")
    write(tmp_path, {"app.js": "1"})
    assert detect(tmp_path).status == "pass"


def test_fails_with_a_reason_when_nothing_is_there(tmp_path):
    write(tmp_path, {"main.go": "package main"})
    res = detect(tmp_path)
    assert res.status == "fail" and "package.json" in res.reason


def test_invalid_package_json_names_file_and_position(tmp_path):
    write(tmp_path, {"package.json": '{\n  "name": "x"\n  "version": "1.0.0"\n}\n'})
    with pytest.raises(PybuildError) as err:
        load_package_json(tmp_path / "package.json")
    assert "package.json: invalid JSON at line 3, column 3: Expecting ',' delimiter" in err.value.message
    assert '3 |   "version"' in err.value.details and "^" in err.value.details
    write(tmp_path, {"package.json": "[1, 2]"})
    with pytest.raises(PybuildError, match="expected a JSON object"):
        detect(tmp_path)


# -- Node.js version -----------------------------------------------------------------------
def test_version_request_order(tmp_path):
    files = {".nvmrc": "v20.11.1\n", ".node-version": "18\n"}
    read = lambda name: files.get(name)  # noqa: E731
    assert runtime.requested("22", {"engines": {"node": ">=20"}}, read) == runtime.Request("22", "PYBUILD_NODE_VERSION")
    assert runtime.requested(None, {"engines": {"node": ">=20"}}, read).origin == "package.json engines.node"
    assert runtime.requested(None, {}, read) == runtime.Request("v20.11.1", ".nvmrc")
    files.pop(".nvmrc")
    assert runtime.requested(None, None, read) == runtime.Request("18", ".node-version")
    assert runtime.requested(None, None, lambda n: None).spec == "lts/*"


class FakeResolver(runtime.NodeResolver):
    """A resolver over a fixed version list, with the LTS answer of each build given."""

    def __init__(self, versions: list[str], lts: dict[str, str]):
        self.log_lines: list[str] = []
        super().__init__(registry=None, cache=Path("/nonexistent"), log=self.log_lines.append)  # type: ignore[arg-type]
        self._versions = {Version.parse(v): {"version": v} for v in versions}
        self.lts = lts

    def lts_name(self, version):
        return self.lts.get(str(version), "")


VERSIONS = ["18.20.8", "20.19.0", "22.11.0", "22.23.3", "23.11.1", "24.10.0", "24.21.0", "25.9.0", "26.10.0"]


def test_lts_is_newest_even_line_in_active_lts():
    r = FakeResolver(VERSIONS, {"24.21.0": "Krypton", "22.23.3": "Jod"})
    req = runtime.Request("lts/*", "default")
    assert str(r.resolve(req, today=dt.date(2025, 12, 1)).version) == "24.21.0"
    assert str(r.resolve(req, today=dt.date(2025, 6, 1)).version) == "22.23.3"
    # Node 26 is past its LTS date, but the registry's newest 26 build is not an LTS release yet
    assert str(r.resolve(req, today=dt.date(2026, 11, 23)).version) == "24.21.0"
    assert any("26.10.0 is not an LTS build" in line for line in r.log_lines)


def test_aliases_and_ranges():
    r = FakeResolver(VERSIONS, {})
    assert str(r.resolve(runtime.Request("lts/jod", ".nvmrc")).version) == "22.23.3"
    assert str(r.resolve(runtime.Request("node", ".nvmrc")).version) == "26.10.0"
    assert str(r.resolve(runtime.Request(">=20 <24", "engines")).version) == "23.11.1"
    assert str(r.resolve(runtime.Request("v20", ".nvmrc")).version) == "20.19.0"


def test_unsatisfiable_range_names_range_and_nearest():
    r = FakeResolver(VERSIONS, {})
    with pytest.raises(PybuildError) as err:
        r.resolve(runtime.Request("^21.2", "package.json engines.node"))
    assert "package.json engines.node" in err.value.message and "'^21.2'" in err.value.message
    assert "20.19.0" in err.value.hint and "22.11.0" in err.value.hint
    with pytest.raises(PybuildError, match="unknown LTS name"):
        r.resolve(runtime.Request("lts/nope", ".nvmrc"))
    with pytest.raises(PybuildError, match="not a Node.js version"):
        r.resolve(runtime.Request("twenty", ".nvmrc"))


# -- package managers --------------------------------------------------------------------------
@pytest.mark.parametrize("app, name, spec, pnp", [
    ("npm-express", "npm", "*", False),
    ("typescript", "npm", "*", False),
    ("yarn-classic", "yarn", "1.22.22", False),
    ("yarn-berry", "berry", "4.9.4", True),
    ("pnpm-express", "pnpm", ">=9 <11", False),
])
def test_manager_for_test_apps(app, name, spec, pnp):
    pkg = json.loads((APPS / app / "package.json").read_text())
    mgr = managers.choose(APPS / app, pkg)
    assert (mgr.name, mgr.version_spec, mgr.pnp) == (name, spec, pnp)


def test_manager_rules(tmp_path):
    write(tmp_path, {"yarn.lock": "# yarn lockfile v1\n"})
    assert managers.choose(tmp_path, {}).name == "yarn"
    write(tmp_path, {".yarnrc.yml": "yarnPath: .yarn/releases/yarn-4.5.0.cjs\nnodeLinker: node-modules\n"})
    mgr = managers.choose(tmp_path, {})
    assert (mgr.name, mgr.yarn_path, mgr.pnp) == ("berry", ".yarn/releases/yarn-4.5.0.cjs", False)
    mgr = managers.choose(tmp_path, {"packageManager": "yarn@3.6.4+sha512.abcDEF"})
    assert mgr.version_spec == "3.6.4" and mgr.hash == ("sha512", "abcdef")
    with pytest.raises(PybuildError, match="lockfile is yarn.lock"):
        managers.choose(tmp_path, {"packageManager": "pnpm@9.0.0"})
    with pytest.raises(PybuildError, match="not NAME@VERSION"):
        managers.choose(tmp_path, {"packageManager": "bun@1"})
    write(tmp_path, {"package-lock.json": "{}"})
    with pytest.raises(PybuildError, match="several lockfiles"):
        managers.choose(tmp_path, {})
    empty = tmp_path / "empty"
    empty.mkdir()
    mgr = managers.choose(empty, {})
    assert mgr.name == "npm" and mgr.lockfile is None and "npm install" in mgr.warnings[0]


# -- entrypoint --------------------------------------------------------------------------------
def test_entrypoint_order(tmp_path):
    write(tmp_path, {"server.js": "", "index.js": "", "lib/app.js": ""})
    assert entrypoint.choose(tmp_path, {}).command == ["node", "server.js"]
    assert entrypoint.choose(tmp_path, {"main": "lib/app"}).command == ["node", "lib/app.js"]
    ep = entrypoint.choose(tmp_path, {"main": "lib/app.js", "scripts": {"start": "node --enable-source-maps index.js"}})
    assert ep.command == ["node", "--enable-source-maps", "index.js"] and ep.rule.startswith("scripts.start")
    write(tmp_path, {"Procfile": "web: node server.js --port $PORT\nworker: node worker.js\n"})
    ep = entrypoint.choose(tmp_path, {"scripts": {"start": "node index.js"}})
    assert ep.command == ["node", "server.js", "--port", "$PORT"] and ep.processes == {"worker": ["node", "worker.js"]}


def test_start_scripts_that_need_a_shell_fall_through_with_a_warning(tmp_path):
    write(tmp_path, {"index.js": ""})
    for script, why in [("npm run build && node dist/x.js", "shell syntax"), ("NODE_ENV=x node a.js", "environment"),
                        ("npx serve", "npx"), ("nodemon app.js", "neither node")]:
        ep = entrypoint.choose(tmp_path, {"scripts": {"start": script}})
        assert ep.command == ["node", "index.js"] and why in ep.warnings[0], (script, ep.warnings)
    (tmp_path / "index.js").unlink()
    with pytest.raises(PybuildError, match="cannot tell how to start"):
        entrypoint.choose(tmp_path, {"scripts": {"start": "npm run serve"}})


def test_start_script_through_a_program_in_node_modules(tmp_path):
    nm = tmp_path / "node_modules"
    write(nm, {"serve/bin/serve.js": "#!/usr/bin/env node\n", "shell/run.sh": "#!/bin/sh\n"})
    (nm / ".bin").mkdir()
    (nm / ".bin" / "serve").symlink_to("../serve/bin/serve.js")
    (nm / ".bin" / "shelly").symlink_to("../shell/run.sh")
    argv, _ = entrypoint.translate_script("serve -l 8080", nm / ".bin")
    assert argv == ["node", "/workspace/node_modules/serve/bin/serve.js", "-l", "8080"]
    argv, why = entrypoint.translate_script("shelly", nm / ".bin")
    assert argv is None and "not a Node.js program" in why


# -- npm configuration and integrity -------------------------------------------------------------
def test_registry_from_environment_and_npmrc(tmp_path, monkeypatch):
    for var in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "https://npm.example.test/repo")
    assert registry.configured_registry(tmp_path) == "https://npm.example.test/repo/"
    monkeypatch.delenv("NPM_CONFIG_REGISTRY")
    monkeypatch.setenv("MY_TOKEN", "s3cret")
    write(tmp_path, {".npmrc": "registry=https://mirror.example.test/npm/\n"
                               "//mirror.example.test/npm/:_authToken=${MY_TOKEN}\n"})
    url = registry.configured_registry(tmp_path)
    assert url == "https://mirror.example.test/npm/"
    assert registry.auth_token(url, tmp_path) == "s3cret"
    assert registry.auth_token("https://other.example.test/", tmp_path) is None


def test_integrity_check(tmp_path):
    f = tmp_path / "x.tgz"
    f.write_bytes(b"payload")
    good = "sha512-" + base64.b64encode(hashlib.sha512(b"payload").digest()).decode()
    registry.check_integrity(f, "sha1-bogus " + good, "x@1.0.0")  # the strongest algorithm counts
    with pytest.raises(VerificationError, match="integrity check failed"):
        registry.check_integrity(f, "sha512-" + base64.b64encode(b"0" * 64).decode(), "x@1.0.0")
    with pytest.raises(VerificationError, match="no usable integrity"):
        registry.check_integrity(f, "md5-abc", "x@1.0.0")


# -- the launcher ------------------------------------------------------------------------------
def test_launcher_expands_port_and_runs_the_script_in_process(tmp_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("no node on this machine")
    launcher = Path(runtime.__file__).with_name("launch.js")
    write(tmp_path, {"show.js": "console.log(JSON.stringify({argv: process.argv.slice(2), pid: process.pid}))"})
    env = dict(os.environ, PORT="4321", EMPTY="")
    out = subprocess.run([node, str(launcher), "node", "show.js", "--port=$PORT", "${EMPTY:-dflt}", "${PORT}x"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout)["argv"] == ["--port=4321", "dflt", "4321x"]
    out = subprocess.run([node, str(launcher), "node", "-e", "process.exit(Number(process.env.PORT) % 256)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 4321 % 256
