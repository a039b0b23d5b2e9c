"""Issue 2's acceptance: the Flask example, source to a running, reproducible distroless image."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import EXAMPLES, build_image, pybuild, require, run_image, unpacked

pytestmark = pytest.mark.slow
FLASK = EXAMPLES / "python-flask"


@pytest.fixture(scope="module")
def flask_image(tmp_path_factory):
    out = tmp_path_factory.mktemp("flask") / "oci"
    digest = build_image(FLASK, out, "flask")
    return out, digest


def test_runs_as_nonroot_without_a_shell(flask_image, tmp_path):
    out, digest = flask_image
    assert digest.startswith("sha256:") and len(digest) == 71
    with run_image(out, "flask", tmp_path) as app:
        resp = app.get("/")
        assert resp.status_code == 200
        assert resp.text == "Hello from pybuild! uid=65532\n"
        status = Path(f"/proc/{app.pid()}/status").read_text()
        uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
        assert uid_line.split()[1:] == ["65532"] * 4
        rootfs = app.bundle / "rootfs"
        for shell in ("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/dash"):
            assert not os.path.lexists(rootfs / shell), shell
        for tool in ("pip", "pip3", "gcc", "cc", "apt", "dpkg"):
            assert not os.path.lexists(rootfs / "usr/bin" / tool), tool
        assert (rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
        assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
        assert "nonroot:x:65532:65532" in (rootfs / "etc/passwd").read_text()
        assert (rootfs / "usr/share/zoneinfo/Europe/Paris").exists()
        assert (rootfs / "var/lib/dpkg/status.d/libc6").read_text().startswith("Package: libc6")
        assert not list((rootfs / "usr/share/man").glob("**/*.gz")) if (rootfs / "usr/share/man").exists() else True


def test_skopeo_and_umoci_read_the_layout(flask_image, tmp_path):
    require("skopeo")
    out, digest = flask_image
    info = json.loads(subprocess.run(["skopeo", "inspect", f"oci:{out}:flask"], capture_output=True, text=True,
                                     check=True).stdout)
    assert info["Digest"] == digest
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out}:flask"], capture_output=True,
                                    text=True, check=True).stdout)
    assert cfg["config"]["User"] == "65532:65532"
    assert "PORT=8080" in cfg["config"]["Env"]
    assert cfg["config"]["WorkingDir"] == "/workspace"
    assert cfg["config"]["Entrypoint"][0] == "/usr/bin/python3.13"
    assert cfg["config"]["Labels"]["io.pybuild.stack"] == "python-3.13"
    assert cfg["config"]["Labels"]["io.pybuild.source.digest"].startswith("sha256:")
    # stack layer, dependency layer, launcher, app layer: deps and app apart
    assert [h["created_by"] for h in cfg["history"]] == [
        "pybuild stack python-3.13", "pybuild buildpack python: deps", "pybuild buildpack python: launcher",
        "pybuild app"]
    with unpacked(out, "flask", tmp_path) as bundle:
        assert (bundle / "rootfs/layers/python/deps/flask/__init__.py").exists()
        assert list((bundle / "rootfs/layers/python/deps/flask/__pycache__").glob("*.cpython-313.pyc"))
        assert not (bundle / "rootfs/layers/python/deps/pip").exists()


def _copy_with(src: Path, dest: Path, umask: int, mtime: int) -> None:
    old = os.umask(umask)
    try:
        dest.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                (dest / f.name).write_bytes(f.read_bytes())
                os.utime(dest / f.name, (mtime, mtime))
    finally:
        os.umask(old)


def test_reproducible_across_folders_mtimes_umask_and_caches(tmp_path):
    a, b = tmp_path / "a" / "shop", tmp_path / "elsewhere" / "b" / "shop"
    _copy_with(FLASK, a, 0o022, 1_600_000_000)
    _copy_with(FLASK, b, 0o007, 1_700_000_000)
    d1 = build_image(a, tmp_path / "out1", "x")
    # the second build has an empty cache of its own: every layer is made again from scratch
    d2 = build_image(b, tmp_path / "out2", "x", env={"PYBUILD_CACHE_DIR": str(tmp_path / "fresh-cache")})
    assert d1 == d2


def test_warm_rebuild_reuses_stack_and_deps_and_downloads_nothing(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(FLASK, app)
    build_image(app, tmp_path / "out", "v1")
    (app / "app.py").write_text((app / "app.py").read_text().replace("Hello from pybuild!", "Hello again!"))
    # an unreachable archive proves nothing is fetched on the warm path
    proc = pybuild("build", str(app), "-o", f"oci:{tmp_path / 'out'}:v2", "--json",
                   env={"PYBUILD_DEBIAN_MIRROR": "http://127.0.0.1:9", "PYBUILD_DEBIAN_SECURITY_MIRROR": "http://127.0.0.1:9"})
    summary = json.loads(proc.stdout)
    assert "deps" in summary["reused_layers"]
    with run_image(tmp_path / "out", "v2", tmp_path) as running:
        assert running.get("/").text.startswith("Hello again!")
    # both images live side by side in one layout
    with run_image(tmp_path / "out", "v1", tmp_path) as running:
        assert running.get("/").text.startswith("Hello from pybuild!")


def test_no_recognisable_app_lists_what_each_buildpack_looked_for(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README.txt").write_text("nothing to build\n")
    proc = pybuild("build", str(tmp_path / "src"), "-o", f"oci:{tmp_path / 'out'}", check=False)
    assert proc.returncode == 1
    assert "python: no requirements.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_requirement_names_the_package_and_writes_nothing(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(FLASK, app)
    (app / "requirements.txt").write_text("flask\nthis-package-does-not-exist-pybuild-xyz==1.0\n")
    proc = pybuild("build", str(app), "-o", f"oci:{tmp_path / 'out'}:x", check=False)
    assert proc.returncode == 1, proc.stderr
    error = next(l for l in proc.stderr.splitlines() if l.startswith("error:"))
    assert "this-package-does-not-exist-pybuild-xyz" in error and "requirements.txt" in error
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_usage_errors_exit_2(tmp_path):
    proc = pybuild("build", str(FLASK), "-o", "nowhere:/x", check=False)
    assert proc.returncode == 2 and "unknown output" in proc.stderr
    proc = pybuild("build", str(FLASK), "--no-such-flag", check=False)
    assert proc.returncode == 2


def test_entrypoint_option_runs_console_scripts_and_expands_port(tmp_path):
    # no shell in the image: the Python launcher finds gunicorn's console script and expands $PORT
    out = tmp_path / "out"
    build_image(FLASK, out, "ep", "--entrypoint", "gunicorn --bind 0.0.0.0:$PORT --workers 2 app:app")
    with run_image(out, "ep", tmp_path) as app:
        assert app.get("/").text.startswith("Hello from pybuild!")
        assert f"Listening at: http://0.0.0.0:{app.port}" in app.output()
