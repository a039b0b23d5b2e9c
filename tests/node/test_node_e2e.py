"""End to end: Node.js apps built with the pybuild command line (downloads through the npm
registry of the user's npm configuration, cached in the pybuild cache), run with runc and
answering HTTP on $PORT; bad input fails with exit 1, one clear message and no output."""
from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from helpers import EXAMPLES, answer, pybuild, unpacked
from helpers import build_json as build

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent / "apps"


def copy_app(name: str, tmp: Path) -> Path:
    dest = tmp / name
    shutil.copytree(APPS / name, dest)
    return dest


@pytest.mark.parametrize("app, expect", [
    ("no-package-json", "hello from node v24."),
    ("npm-express", "npm-express on node v24."),
    ("yarn-classic", "hello from yarn-classic on node v24."),
    ("yarn-berry", "yarn-berry (pnp: true) on node v24."),
    ("pnpm-express", "pnpm-express on node v24."),
    ("typescript", "typescript on node v24."),
    ("native-addon", "hello from a native addon"),
])
def test_app_builds_and_answers(app, expect, tmp_path):
    summary = build(APPS / app, tmp_path / "oci")
    assert summary["stack"] == "cc-nossl"
    text = answer(tmp_path / "oci", tmp_path)
    assert text.startswith(expect), text
    assert summary["config"]["Env"].count("NODE_ENV=production") == 1


def files_in(layout: Path, tmp: Path) -> dict[str, Path]:
    with unpacked(layout, "app", tmp) as bundle:
        root = bundle / "rootfs"
        keep = tmp / "rootfs"
        shutil.copytree(root, keep, symlinks=True)
    return {p.relative_to(keep).as_posix(): p for p in keep.rglob("*")}


def test_run_image_has_node_only_and_installed_versions_equal_the_lockfile(tmp_path):
    build(APPS / "npm-express", tmp_path / "oci")
    files = files_in(tmp_path / "oci", tmp_path)
    runtime = sorted(p for p in files if p.startswith("layers/node/runtime/"))
    assert runtime == ["layers/node/runtime/bin", "layers/node/runtime/bin/node"]
    assert not [p for p in files if p.endswith(("npm-cli.js", "corepack.js", "node_api.h", "node.1"))]
    assert not [p for p in files if p.split("/")[-1] in ("npm", "npx", "yarn", "pnpm", "corepack", "sh", "bash")]
    lock = json.loads((APPS / "npm-express" / "package-lock.json").read_text())
    locked = {k: v["version"] for k, v in lock["packages"].items() if k.startswith("node_modules/")}
    installed = {}
    for path, p in files.items():
        if path.startswith("workspace/node_modules/") and path.endswith("/package.json"):
            rel = path[len("workspace/"):-len("/package.json")]
            if rel in locked:
                installed[rel] = json.loads(p.read_text())["version"]
    assert installed == locked


def test_pnpm_installs_exactly_the_locked_versions(tmp_path):
    build(APPS / "pnpm-express", tmp_path / "oci")
    files = files_in(tmp_path / "oci", tmp_path)
    text = (APPS / "pnpm-express" / "pnpm-lock.yaml").read_text()
    section = text.split("\npackages:\n", 1)[1].split("\nsnapshots:\n", 1)[0]
    locked = {(m.group(1), m.group(2)) for m in re.finditer(r"^  '?(@?[^@\s']+)@([^(:'\s]+)'?:$", section, re.M)}
    installed = set()
    for path, p in files.items():
        m = re.fullmatch(r"workspace/node_modules/\.pnpm/[^/]+/node_modules/(@[^/]+/[^/]+|[^@/][^/]*)/package\.json", path)
        if m and not p.is_symlink() and p.parent.is_dir() and not p.parent.is_symlink():
            installed.add((m.group(1), json.loads(p.read_text())["version"]))
    assert locked and installed == locked


def test_typescript_build_output_ships_without_dev_dependencies(tmp_path):
    build(APPS / "typescript", tmp_path / "oci")
    files = files_in(tmp_path / "oci", tmp_path)
    assert "workspace/dist/server.js" in files
    assert not [p for p in files if p.startswith(("workspace/node_modules/typescript", "workspace/node_modules/@types"))]


def test_warm_rebuild_after_a_one_line_change_reuses_every_layer_but_the_app(tmp_path):
    app = copy_app("npm-express", tmp_path)
    build(app, tmp_path / "oci1")
    server = app / "server.js"
    server.write_text(server.read_text().replace("npm-express on node", "npm-express (changed) on node"))
    started = time.monotonic()
    summary = build(app, tmp_path / "oci2")
    seconds = time.monotonic() - started
    assert set(summary["reused_layers"]) >= {"runtime", "deps"}, summary["log"]
    print(f"warm rebuild after a one-line change: {seconds:.1f} s")
    assert seconds < 60
    assert "changed" in answer(tmp_path / "oci2", tmp_path)


def test_typescript_warm_rebuild_reruns_the_build_with_cached_dev_dependencies(tmp_path):
    app = copy_app("typescript", tmp_path)
    build(app, tmp_path / "oci1")
    src = app / "src" / "server.ts"
    src.write_text(src.read_text().replace("typescript on node", "typescript v2 on node"))
    summary = build(app, tmp_path / "oci2")
    assert "reusing the installed devDependencies" in summary["log"]
    assert "deps" in summary["reused_layers"]
    assert answer(tmp_path / "oci2", tmp_path).startswith("typescript v2 on node")


def test_example_express_size(tmp_path):
    summary = build(EXAMPLES / "node-express", tmp_path / "oci")
    size, raw = summary["size"], summary["uncompressed_size"]
    print(f"node-express: {size / 1e6:.1f} MB compressed, {raw / 1e6:.1f} MB uncompressed")
    assert size < 45e6  # issue 6: an Express hello-world under 45 MB compressed
    assert answer(tmp_path / "oci", tmp_path).startswith("Hello from pybuild")


# -- bad input: exit 1, one clear message, nothing written ------------------------------------------
def fails(app: Path, tmp: Path, env: dict | None = None) -> str:
    out = tmp / "never"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app", check=False, env=env)
    assert proc.returncode == 1, proc.stderr
    assert not out.exists()
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_invalid_package_json(tmp_path):
    app = copy_app("npm-express", tmp_path)
    (app / "package.json").write_text('{\n  "name": "x",\n  "dependencies": {"express": "^5.1.0",}\n}\n')
    err = fails(app, tmp_path)
    assert "package.json: invalid JSON at line 3, column 40" in err


@pytest.mark.parametrize("app, dep, spec, message", [
    ("npm-express", "cookie", "^1.0.0", "package-lock.json is out of step with package.json"),
    ("pnpm-express", "express", "^4.0.0", "pnpm-lock.yaml is out of step with package.json"),
    ("yarn-berry", "express", "^4.0.0", "yarn.lock is out of step with package.json"),
])
def test_lockfile_out_of_step_with_package_json(app, dep, spec, message, tmp_path):
    app_dir = copy_app(app, tmp_path)
    pkg = json.loads((app_dir / "package.json").read_text())
    pkg["dependencies"][dep] = spec
    (app_dir / "package.json").write_text(json.dumps(pkg, indent=2))
    err = fails(app_dir, tmp_path)
    assert message in err and "hint: run `" in err


def test_unknown_package(tmp_path):
    app = tmp_path / "unknown"
    app.mkdir()
    (app / "package.json").write_text(json.dumps({"name": "u", "dependencies": {
        "pybuild-test-no-such-package-7f3a9c": "^1.0.0"}}))
    (app / "index.js").write_text("")
    err = fails(app, tmp_path)
    assert "package 'pybuild-test-no-such-package-7f3a9c' was not found in the npm registry" in err


def test_failing_build_script_shows_its_output(tmp_path):
    app = copy_app("no-package-json", tmp_path)
    (app / "package.json").write_text(json.dumps({"name": "b", "scripts": {
        "build": "node -e \"console.error('BUILD-BROKE-HERE'); process.exit(3)\""}}))
    err = fails(app, tmp_path)
    assert "the build script" in err and "failed" in err
    assert "BUILD-BROKE-HERE" in err


def test_node_range_nothing_satisfies(tmp_path):
    err = fails(APPS / "no-package-json", tmp_path, env={"PYBUILD_NODE_VERSION": "^15.99"})
    assert "PYBUILD_NODE_VERSION: no published Node.js version satisfies '^15.99'" in err
    assert "nearest published versions: 15." in err and "16.0.0" in err


def test_entrypoint_option_for_an_app_no_rule_can_start(tmp_path):
    app = tmp_path / "custom"
    (app / "dist").mkdir(parents=True)
    (app / "package.json").write_text(json.dumps({"name": "custom", "version": "1.0.0"}))
    shutil.copy(APPS / "no-package-json" / "server.js", app / "dist" / "main.js")
    err = fails(app, tmp_path)
    assert "cannot tell how to start this Node.js app" in err
    build(app, tmp_path / "oci", "--entrypoint", "node dist/main.js")
    assert answer(tmp_path / "oci", tmp_path).startswith("hello from node v24.")
    # a $VAR in the user's command: no shell in the image, so it goes through the node launcher
    summary = build(app, tmp_path / "oci2", "--entrypoint", "node dist/main.js --port=$PORT")
    assert summary["config"]["Entrypoint"][:2] == ["/layers/node/runtime/bin/node", "/layers/node/launcher/launch.js"]
    assert answer(tmp_path / "oci2", tmp_path).startswith("hello from node v24.")
