"""Cloud Native Buildpacks run unchanged: a bash buildpack written to the spec (Buildpack API
0.10) builds an app that runs with runc; plan files, layer types, launch.toml, env files, the
cache between builds, and build layers handed to the next buildpack."""
from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from helpers import pybuild, require, run_image, unpacked

from builder.buildpack import DetectResult
from builder.cnb import CNBBuildpack, apply_env_dir, resolve_plans
from builder.errors import PybuildError

DETECT = r"""#!/usr/bin/env bash
set -euo pipefail
if [[ ! -f index.html ]]; then
  echo "no index.html at the root"
  exit 100
fi
cat >> "$CNB_BUILD_PLAN_PATH" <<EOF
[[provides]]
name = "html-server"

[[requires]]
name = "html-server"
[requires.metadata]
greeting = "$(cat "$CNB_PLATFORM_DIR/env/GREETING" 2>/dev/null || echo hello)"
EOF
"""

BUILD = r"""#!/usr/bin/env bash
set -euo pipefail
echo "layers=$CNB_LAYERS_DIR platform=$CNB_PLATFORM_DIR buildpack=$CNB_BUILDPACK_DIR"
greeting=$(sed -n 's/^greeting = "\(.*\)"$/\1/p' "$CNB_BP_PLAN_PATH")
echo "plan greeting: $greeting"

cache="$CNB_LAYERS_DIR/downloads"
if [[ -f "$cache/stamp" ]]; then
  echo "cache hit: $(cat "$cache/stamp")"
else
  mkdir -p "$cache"
  echo "stamp-$RANDOM$RANDOM" > "$cache/stamp"
  echo "cache miss"
fi
printf '[types]\ncache = true\n' > "$CNB_LAYERS_DIR/downloads.toml"

server="$CNB_LAYERS_DIR/server"
if grep -q 'version = "1"' "$CNB_LAYERS_DIR/server.toml" 2>/dev/null; then
  echo "server layer unchanged"
else
mkdir -p "$server/env.launch" "$server/env"
echo -n "$greeting" > "$server/greeting.txt"
echo -n "from-cnb" > "$server/env.launch/SERVED_BY.default"
echo -n ":/extra" > "$server/env/PYTHONPATH.append"
cat > "$server/serve.py" <<'EOF'
import functools, http.server, os, pathlib
here = pathlib.Path(__file__).parent
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/about":
            body = f"{here.joinpath('greeting.txt').read_text()} {os.environ.get('SERVED_BY')} {os.environ.get('PYTHONPATH')}"
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())
            return
        super().do_GET()
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])),
    functools.partial(Handler, directory="/workspace")).serve_forever()
EOF
fi
printf '[types]\nlaunch = true\n[metadata]\nversion = "1"\n' > "$CNB_LAYERS_DIR/server.toml"
cat > "$CNB_LAYERS_DIR/launch.toml" <<EOF
[[processes]]
type = "web"
command = ["/usr/bin/python3.13", "$server/serve.py"]
default = true

[[labels]]
key = "org.example.built-by"
value = "bash-cnb"
EOF
"""


def write_buildpack(folder: Path, bp_id: str, detect: str | None, build: str, api: str = "0.10") -> Path:
    (folder / "bin").mkdir(parents=True)
    (folder / "buildpack.toml").write_text(textwrap.dedent(f"""\
        api = "{api}"
        [buildpack]
        id = "{bp_id}"
        version = "1.2.3"
        name = "Test buildpack {bp_id}"
        [[targets]]
        os = "linux"
        arch = "amd64"
        """))
    for name, text in (("detect", detect), ("build", build)):
        if text is not None:
            (folder / "bin" / name).write_text(text)
            (folder / "bin" / name).chmod(0o755)
    return folder


def make_app(root: Path, project: str) -> Path:
    app = root / "site"
    app.mkdir()
    (app / "index.html").write_text("<h1>hello from a CNB</h1>\n")
    (app / "project.toml").write_text(project)
    return app


@pytest.mark.slow
def test_bash_cnb_builds_an_app_that_runs(tmp_path):
    require("bwrap")
    write_buildpack(tmp_path / "html-cnb", "examples/html", DETECT, BUILD)
    app = make_app(tmp_path, textwrap.dedent("""\
        [_]
        schema-version = "0.2"
        [io.pybuild]
        stack = "python-3.13"
        [[io.buildpacks.group]]
        uri = "../html-cnb"
        [[io.buildpacks.build.env]]
        name = "GREETING"
        value = "bonjour"
        """))
    out = tmp_path / "oci"
    first = pybuild("build", str(app), "-o", f"oci:{out}:app")
    assert "cache miss" in first.stderr
    assert "plan greeting: bonjour" in first.stderr
    assert "layers=/layers/examples_html platform=/platform buildpack=/cnb/buildpacks/examples_html/1.2.3" \
        in first.stderr
    second = pybuild("build", str(app), "-o", f"oci:{out}:app")
    assert "cache hit: stamp-" in second.stderr  # the cache = true layer came back
    assert "server layer unchanged" in second.stderr  # launch layer metadata came back...
    assert "reusing layer server" in second.stderr  # ...and its image layer is reused
    with unpacked(out, "app", tmp_path) as bundle:
        cfg = json.loads((bundle / "config.json").read_text())
        env = dict(e.split("=", 1) for e in cfg["process"]["env"])
        assert env["SERVED_BY"] == "from-cnb"
        assert cfg["process"]["args"][0] == "/usr/bin/python3.13"
        rootfs = bundle / "rootfs"
        assert (rootfs / "layers/examples_html/server/serve.py").is_file()
        assert not (rootfs / "layers/examples_html/downloads").exists()  # cache-only: not in the image
    with run_image(out, "app", tmp_path) as running:
        assert "hello from a CNB" in running.get("/index.html").text
        about = running.get("/about").text
        assert about.startswith("bonjour from-cnb ")
        assert about.endswith(":/extra")
    labels = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out}:app"], capture_output=True,
                                       text=True, check=True).stdout)["config"]["Labels"]
    assert labels["org.example.built-by"] == "bash-cnb"


PROVIDER_BUILD = r"""#!/usr/bin/env bash
set -euo pipefail
tool="$CNB_LAYERS_DIR/tool"
mkdir -p "$tool/bin" "$tool/env.build"
printf '#!/bin/sh\necho "tool says $TOOL_MODE"\n' > "$tool/bin/mytool"
chmod +x "$tool/bin/mytool"
echo -n "loud" > "$tool/env.build/TOOL_MODE.override"
printf '[types]\nbuild = true\n' > "$CNB_LAYERS_DIR/tool.toml"
"""

PROVIDER_DETECT = r"""#!/usr/bin/env bash
printf '[[provides]]\nname = "mytool"\n' > "$CNB_BUILD_PLAN_PATH"
"""

CONSUMER_DETECT = r"""#!/usr/bin/env bash
printf '[[requires]]\nname = "mytool"\n[requires.metadata]\nmin = "2"\n' > "$CNB_BUILD_PLAN_PATH"
"""

CONSUMER_BUILD = r"""#!/usr/bin/env bash
set -euo pipefail
mytool > built-by-consumer.txt
cat built-by-consumer.txt
"""


def test_build_layers_and_plan_reach_the_next_buildpack(tmp_path):
    require("bwrap")
    bps = tmp_path / "cnbs"
    write_buildpack(bps / "provider", "test/provider", PROVIDER_DETECT, PROVIDER_BUILD, api="0.9")
    write_buildpack(bps / "consumer", "test/consumer", CONSUMER_DETECT, CONSUMER_BUILD, api="0.11")
    app = make_app(tmp_path, textwrap.dedent("""\
        [_]
        schema-version = "0.2"
        [io.pybuild]
        stack = "python-3.13"
        [[io.buildpacks.group]]
        id = "test/provider"
        [[io.buildpacks.group]]
        id = "test/consumer"
        """))
    out = tmp_path / "oci"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app", env={"PYBUILD_CNB_PATH": str(bps)})
    assert "tool says loud" in proc.stderr
    with unpacked(out, "app", tmp_path) as bundle:
        assert (bundle / "rootfs/workspace/built-by-consumer.txt").read_text() == "tool says loud\n"
        assert not (bundle / "rootfs/layers/test_provider").exists()  # build-only layer stays out
    # the consumer alone: its requirement is unmet, so detection fails and says why
    (app / "project.toml").write_text('[[io.buildpacks.group]]\nid = "test/consumer"\n')
    fail = pybuild("detect", str(app), env={"PYBUILD_CNB_PATH": str(bps)}, check=False)
    assert fail.returncode == 1
    assert "test/consumer requires 'mytool', which no buildpack before it provides" in fail.stderr


def test_pybuild_plugins_lists_cnb_buildpacks(tmp_path):
    write_buildpack(tmp_path / "cnbs" / "a", "test/a", PROVIDER_DETECT, PROVIDER_BUILD)
    proc = pybuild("plugins", "--json", env={"PYBUILD_CNB_PATH": str(tmp_path / "cnbs")})
    rows = {r["id"]: r for r in json.loads(proc.stdout)["buildpacks"]}
    assert rows["test/a"]["kind"] == "cnb"
    assert rows["test/a"]["version"] == "1.2.3"
    assert rows["test/a"]["distribution"] == "PYBUILD_CNB_PATH"
    assert rows["test/a"]["hooks"] == ["bin/detect", "bin/build"]


def test_detect_exit_codes(tmp_path):
    require("bwrap")
    from builder.buildpack import DetectContext

    app = tmp_path / "app"
    app.mkdir()
    bp = CNBBuildpack(write_buildpack(tmp_path / "bp", "t/d", DETECT, BUILD))
    res = bp.detect(DetectContext(app, {}))
    assert (res.status, res.reason) == ("fail", "no index.html at the root")
    (app / "index.html").write_text("x")
    res = bp.detect(DetectContext(app, {"GREETING": "hej"}))
    assert res.status == "pass"
    assert res.plan["cnb_plan"]["requires"] == [{"name": "html-server", "metadata": {"greeting": "hej"}}]
    broken = CNBBuildpack(write_buildpack(tmp_path / "broken", "t/b", "#!/bin/sh\necho boom >&2\nexit 3\n", BUILD))
    res = broken.detect(DetectContext(app, {}))
    assert res.status == "error" and "exited 3" in res.reason and "boom" in res.reason


def test_unsupported_api_and_composites_are_refused(tmp_path):
    with pytest.raises(PybuildError, match="Buildpack API 0.6 is not supported"):
        CNBBuildpack(write_buildpack(tmp_path / "old", "t/old", DETECT, BUILD, api="0.6"))
    comp = write_buildpack(tmp_path / "meta", "t/meta", None, BUILD)
    with open(comp / "buildpack.toml", "a") as fh:
        fh.write('[[order]]\n[[order.group]]\nid = "t/old"\nversion = "1"\n')
    with pytest.raises(PybuildError, match="composite buildpacks"):
        CNBBuildpack(comp)


class _BP:
    def __init__(self, bp_id):
        self.id = bp_id


def _passed(plan):
    return DetectResult.passed("ok", cnb_plan=plan)


def test_plan_resolution_with_alternatives_and_optional_members():
    node = {"provides": [{"name": "node"}]}
    npm = {"requires": [{"name": "node", "metadata": {"version": "22"}}], "provides": [{"name": "npm"}],
           "or": [{"requires": [{"name": "node"}]}]}
    group = [(_BP("node"), _passed(node)), (_BP("npm"), _passed(npm))]
    resolved, why = resolve_plans(group, set())
    assert why == "" and [bp.id for bp, _ in resolved] == ["node", "npm"]
    # the first alternative provides npm, which nobody requires; the [[or]] alternative fits
    assert resolved[0][1].plan["entries"] == [{"name": "node", "metadata": {}}]
    assert resolved[1][1].plan["entries"] == []
    lonely = [(_BP("npm"), _passed({"requires": [{"name": "node"}]})), (_BP("node"), _passed(node))]
    assert resolve_plans(lonely, set())[0] is None  # requires must come after their provider
    resolved, _ = resolve_plans(lonely, {"npm"})  # ...unless optional: then it drops out
    assert resolved is None  # node's provide is now unrequired, and node is not optional
    resolved, _ = resolve_plans(lonely, {"npm", "node"})
    assert resolved is None
    plain = [(_BP("python"), DetectResult.passed("found app.py"))]
    assert resolve_plans(plain, set()) == (plain, "")


def test_env_files(tmp_path):
    d = tmp_path / "env"
    d.mkdir()
    (d / "A").write_text("plain")
    (d / "B.default").write_text("dflt")
    (d / "C.append").write_text("/x")
    (d / "C.delim").write_text(":")
    (d / "D.prepend").write_text("/y")
    (d / "D.delim").write_text(":")
    (d / "E.override").write_text("new")
    env = {"A": "old", "B": "kept", "C": "/a", "D": "/b", "E": "old"}
    apply_env_dir(env, d)
    assert env == {"A": "plain", "B": "kept", "C": "/a:/x", "D": "/y:/b", "E": "new"}
    env = {}
    apply_env_dir(env, d)
    assert env == {"A": "plain", "B": "dflt", "C": "/x", "D": "/y", "E": "new"}


class _LaunchCtx:
    def __init__(self):
        self.processes, self.labels = [], {}


def test_launch_toml_processes_of_each_api(tmp_path):
    old = CNBBuildpack(write_buildpack(tmp_path / "old", "t/old", None, BUILD, api="0.9"))
    (tmp_path / "launch.toml").write_text(textwrap.dedent("""\
        [[processes]]
        type = "web"
        command = "gunicorn app:app"
        args = ["--bind", "0.0.0.0:8080"]
        [[processes]]
        type = "worker"
        command = "/usr/bin/worker"
        args = ["--once"]
        direct = true
        default = true
        working-dir = "/srv"
        """))
    ctx = _LaunchCtx()
    old._launch_metadata(ctx, tmp_path)
    web, worker = ctx.processes
    assert web.command == ["/bin/sh", "-c", "gunicorn app:app --bind 0.0.0.0:8080"] and not web.default
    assert (worker.command, worker.default, worker.working_dir) == (["/usr/bin/worker", "--once"], True, "/srv")
    new = CNBBuildpack(write_buildpack(tmp_path / "new", "t/new", None, BUILD, api="0.11"))
    (tmp_path / "launch.toml").write_text('[[processes]]\ntype = "web"\ncommand = ["node", "server.js"]\n'
                                          'args = ["--port", "8080"]\n[[labels]]\nkey = "a"\nvalue = "b"\n')
    ctx = _LaunchCtx()
    new._launch_metadata(ctx, tmp_path)
    assert ctx.processes[0].command == ["node", "server.js", "--port", "8080"]
    assert ctx.processes[0].working_dir == "/workspace" and ctx.labels == {"a": "b"}
