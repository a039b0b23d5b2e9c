"""Issue 8: project.toml, the CNB project descriptor 0.2 plus [io.pybuild]: validation with
file, key, line and did-you-mean; order groups with optional members and pre/post; local
buildpacks by path; inline script buildpacks; pybuild's own settings in the image."""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from helpers import pybuild

from builder.errors import PybuildError
from builder.project import load

HEAD = '[_]\nschema-version = "0.2"\nid = "com.example.app"\n'


def project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "project.toml").write_text(HEAD + textwrap.dedent(body))
    return tmp_path


def error_of(tmp_path: Path, body: str) -> PybuildError:
    with pytest.raises(PybuildError) as info:
        load(project(tmp_path, body))
    return info.value


def test_valid_descriptor_loads(tmp_path):
    data = load(project(tmp_path, """
        [_.metadata]
        anything = { goes = [1, 2] }
        [[_.licenses]]
        type = "MIT"
        [io.buildpacks]
        exclude = ["tests/"]
        [[io.buildpacks.group]]
        id = "python"
        optional = true
        [[io.buildpacks.build.env]]
        name = "PIP_NO_COLOR"
        value = "1"
        [io.pybuild]
        stack = "python-3.13"
        entrypoint = ["python", "main.py"]
        [io.pybuild.processes]
        worker = "python worker.py"
        [io.pybuild.env]
        MODE = "prod"
        [com.example.tool]
        own = "table"
        """))
    assert data["io"]["pybuild"]["env"] == {"MODE": "prod"}
    assert load(tmp_path / "nowhere") == {}


def test_mistyped_key_names_file_key_line_and_suggestion(tmp_path):
    err = error_of(tmp_path, """
        [io.buildpacks]
        exlude = ["tests/"]
        """)
    assert err.message == (f"{tmp_path / 'project.toml'}, line 6: invalid project descriptor: "
                           "unknown key io.buildpacks.'exlude'")
    assert err.hint == "did you mean 'exclude'?"
    err = error_of(tmp_path, """
        [[io.buildpacks.group]]
        id = "python"

        [[io.buildpacks.group]]
        id = "node"
        optinal = true
        """)
    assert "line 10" in err.message and "optinal" in err.message and err.hint == "did you mean 'optional'?"
    err = error_of(tmp_path, '[io.pybuild]\nstak = "cc"\n')
    assert "line 5" in err.message and err.hint == "did you mean 'stack'?"


def test_mistyped_table_and_values(tmp_path):
    err = error_of(tmp_path, '[io.pybuld]\nstack = "cc"\n')
    assert "line 4" in err.message and "[io.pybuld]" in err.message and err.hint == "did you mean [io.pybuild]?"
    err = error_of(tmp_path, '[io.pybuild]\nstack = 3\n')
    assert "line 5" in err.message and "io.pybuild.stack: 3 is not of type 'string'" in err.message
    err = error_of(tmp_path, '[io.buildpacks]\ninclude = ["a"]\nexclude = ["b"]\n')
    assert "cannot both be set" in err.message and "line 6" in err.message
    err = error_of(tmp_path, '[[io.buildpacks.group]]\noptional = true\n')
    assert "io.buildpacks.group.0" in err.message
    with pytest.raises(PybuildError, match="schema 0.1 layout"):
        (tmp_path / "project.toml").write_text('[project]\nid = "x"\n[build]\nexclude = ["y"]\n')
        load(tmp_path)
    with pytest.raises(PybuildError, match="'0.3' is not one of"):
        (tmp_path / "project.toml").write_text('[_]\nschema-version = "0.3"\n')
        load(tmp_path)


LOCAL = """
from builder import Buildpack, DetectResult


class {cls}(Buildpack):
    id = "{id}"
    version = "0.0.1"

    def detect(self, ctx):
        if ctx.exists("{needs}"):
            return DetectResult.passed("found {needs}", stack="python-3.13")
        return DetectResult.failed("no {needs}")

    def build(self, ctx):
        ctx.log("{id} build sees GREETING=" + str(ctx.env.get("GREETING")))
"""


def local_bp(path: Path, bp_id: str, needs: str) -> None:
    path.write_text(LOCAL.format(cls=bp_id.title().replace("-", ""), id=bp_id, needs=needs))


def detect_ids(app: Path) -> list[str]:
    return [b["id"] for b in json.loads(pybuild("detect", str(app), "--json").stdout)["buildpacks"]]


def test_order_groups_pre_post_and_optional_members(tmp_path):
    bps = tmp_path / "bps"
    (bps / "pkg").mkdir(parents=True)
    local_bp(bps / "prep.py", "prep", "main.py")
    local_bp(bps / "post.py", "post", "main.py")
    local_bp(bps / "maybe.py", "maybe", "missing.txt")
    local_bp(bps / "pkg" / "__init__.py", "packaged", "main.py")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print(1)\n")
    project(app, """
        [[io.buildpacks.pre.group]]
        uri = "../bps/prep.py"
        [[io.buildpacks.group]]
        uri = "../bps/maybe.py"
        optional = true
        [[io.buildpacks.group]]
        uri = "../bps/pkg"
        [[io.buildpacks.post.group]]
        uri = "../bps/post.py"
        """)
    assert detect_ids(app) == ["prep", "packaged", "post"]
    # pre/post around pybuild's default order when the project names no group
    project(app, '[[io.buildpacks.pre.group]]\nuri = "../bps/prep.py"\n')
    assert detect_ids(app) == ["prep", "python"]
    # [[io.pybuild.order]]: several groups, the first that passes wins
    project(app, """
        [[io.pybuild.order]]
        [[io.pybuild.order.group]]
        uri = "../bps/maybe.py"
        [[io.pybuild.order]]
        [[io.pybuild.order.group]]
        id = "python"
        """)
    assert detect_ids(app) == ["python"]
    # a required member that fails: nothing passes, and the reasons are listed
    project(app, '[[io.buildpacks.group]]\nuri = "../bps/maybe.py"\n')
    proc = pybuild("detect", str(app), check=False)
    assert proc.returncode == 1 and "maybe: no missing.txt" in proc.stderr


def test_local_buildpack_errors(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "bad.py").write_text("def broken(:\n")
    project(app, '[[io.buildpacks.group]]\nuri = "bad.py"\n')
    proc = pybuild("detect", str(app), check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f'error: Error loading plugin "bad.py" (local path {app / "bad.py"}): SyntaxError')
    project(app, '[[io.buildpacks.group]]\nuri = "nothere"\n')
    assert "does not exist" in pybuild("detect", str(app), check=False).stderr
    project(app, '[[io.buildpacks.group]]\nid = "python"\nversion = "9.9.9"\n')
    assert "asks for buildpack python version 9.9.9" in pybuild("detect", str(app), check=False).stderr
    project(app, '[[io.buildpacks.group]]\nid = "nobody"\n')
    assert "no buildpack with id 'nobody'" in pybuild("detect", str(app), check=False).stderr


def config_of(layout: Path, ref: str) -> dict:
    return json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{layout}:{ref}"], capture_output=True,
                                     text=True, check=True).stdout)["config"]


@pytest.mark.slow
def test_pybuild_table_sets_stack_entrypoint_processes_and_env(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "serve.txt").write_text("x")
    local_bp(tmp_path / "bp.py", "local-bp", "serve.txt")
    project(app, """
        [[io.buildpacks.group]]
        uri = "../bp.py"
        [[io.buildpacks.group]]
        id = "inline-step"
        [io.buildpacks.group.script]
        api = "0.10"
        inline = "echo inline sees GREETING=$GREETING; echo made > made-inline.txt"
        [[io.buildpacks.build.env]]
        name = "GREETING"
        value = "build-only"
        [io.pybuild]
        stack = "python-3.13"
        entrypoint = ["/usr/bin/python3.13", "-m", "http.server"]
        [io.pybuild.processes]
        worker = ["/usr/bin/python3.13", "-c", "print('work')"]
        [io.pybuild.env]
        MODE = "prod"
        """)
    out = tmp_path / "oci"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app")
    assert "local-bp build sees GREETING=build-only" in proc.stderr
    assert "inline sees GREETING=build-only" in proc.stderr
    cfg = config_of(out, "app")
    assert cfg["Entrypoint"] == ["/usr/bin/python3.13", "-m", "http.server"]
    assert "MODE=prod" in cfg["Env"] and not any(e.startswith("GREETING=") for e in cfg["Env"])
    procs = {p["type"]: p["command"] for p in json.loads(cfg["Labels"]["io.pybuild.processes"])}
    assert procs["worker"] == ["/usr/bin/python3.13", "-c", "print('work')"]
    assert cfg["Labels"]["io.pybuild.stack"] == "python-3.13"
    # the command line wins over the project
    proc = pybuild("build", str(app), "-o", f"oci:{out}:cli", "--process", "worker", "-e", "MODE=dev")
    cfg = config_of(out, "cli")
    assert cfg["Entrypoint"] == ["/usr/bin/python3.13", "-c", "print('work')"]
    assert "MODE=dev" in cfg["Env"]


def test_buildpacks_inside_the_project_stay_out_of_the_app(tmp_path):
    from builder.project import source_rules
    from builder.source import SourceTree

    app = tmp_path / "app"
    (app / "tools" / "cnb").mkdir(parents=True)
    (app / "tools" / "cnb" / "buildpack.toml").write_text("")
    (app / "tools" / "keep.txt").write_text("")
    (app / "bp.py").write_text("")
    (app / "main.py").write_text("")
    project(app, """
        [io.buildpacks]
        exclude = ["*.md"]
        [[io.buildpacks.group]]
        uri = "./tools/cnb"
        [[io.buildpacks.group]]
        uri = "bp.py"
        [[io.buildpacks.post.group]]
        uri = "../outside.py"
        """)
    include, exclude = source_rules(load(app))
    assert (include, exclude) == ([], ["*.md", "/tools/cnb", "/bp.py"])
    files = {rel for rel, _, _ in SourceTree(app, include=include, exclude=exclude).files()}
    assert files == {"main.py", "project.toml", "tools", "tools/keep.txt"}


def test_plugins_command_lists_a_projects_local_buildpacks(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    local_bp(app / "mine.py", "mine", "x")
    project(app, '[[io.buildpacks.group]]\nuri = "mine.py"\n')
    found = {r["id"]: r for r in json.loads(pybuild("plugins", str(app), "--json").stdout)["buildpacks"]}
    assert (found["mine"]["distribution"], found["mine"]["module"]) == ("local path", str(app / "mine.py"))
    assert "mine" not in {r["id"] for r in json.loads(pybuild("plugins", "--json").stdout)["buildpacks"]}
