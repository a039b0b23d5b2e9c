"""End to end: every common Python layout builds with no configuration and runs under runc;
lockfiles are honoured exactly; build tools stay out of the image; the deps layer is reused."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from helpers import pybuild, run_image, run_to_completion, unpacked

from .conftest import APPS

pytestmark = pytest.mark.slow

SERVERS = {
    # app: (text in the HTTP answer, the entrypoint rule that must fire)
    "flask-requirements": ("hello from flask (requirements.txt)", "WSGI app object `app` in app.py"),
    "pep621": ("hello from pep621 1.2.0", "the single [project.scripts] entry 'hello-serve'"),
    "poetry": ("hello from poetry, bottle 0.13.2", "WSGI app object `app` in app.py"),
    "pipenv": ("hello from pipenv, bottle 0.13.2", "WSGI app object `app` in app.py"),
    "uv": ("hello from uv, bottle 0.13.2", "WSGI app object `app` in app.py"),
    "pdm": ("hello from pdm, bottle 0.13.2", "WSGI app object `app` in main.py"),
    "setuppy": ("hello from setuppy, bottle", "WSGI app object `app` in app.py"),
    "fastapi": ('{"hello":"fastapi"}', "ASGI app object `app` in main.py, served by uvicorn"),
    "django": ("hello from django", "Django project (manage.py, mysite.settings)"),
    "procfile": ("hello from the Procfile web process", "Procfile `web:` line"),
}


def _labels(b) -> dict:
    return b.summary["config"]["Labels"]


@pytest.mark.parametrize("app", sorted(SERVERS))
def test_app_builds_and_answers_http(built, tmp_path, app):
    text, rule = SERVERS[app]
    b = built(app)
    assert rule in _labels(b)["io.pybuild.python.entrypoint"]
    with run_image(b.layout, b.ref, tmp_path) as running:
        resp = running.get("/")
        assert resp.status_code == 200, running.output()
        assert text in resp.text


def test_script_prints(built, tmp_path):
    b = built("script")
    assert "main.py at the root" in _labels(b)["io.pybuild.python.entrypoint"]
    assert "hello from a script on Python 3.13" in run_to_completion(b.layout, b.ref, tmp_path)


def test_c_extension_without_wheel_is_built_in_the_build_stage(built, tmp_path):
    b = built("cext")
    out = run_to_completion(b.layout, b.ref, tmp_path)
    assert "fastsum.add(2, 40) = 42" in out
    assert "cpython-313-x86_64-linux-gnu.so" in out
    with unpacked(b.layout, b.ref, tmp_path) as bundle:
        rootfs = bundle / "rootfs"
        assert not list((rootfs / "usr/bin").glob("gcc*")), "the compiler leaked into the run image"
        assert not (rootfs / "usr/include/python3.13/Python.h").exists()


def test_procfile_other_process_by_name(built, tmp_path):
    b = built("procfile", "--process", "worker")
    assert "worker ran: --once" in run_to_completion(b.layout, b.ref, tmp_path)


def _installed(b, tmp_path) -> dict[str, str]:
    found = {}
    with unpacked(b.layout, b.ref, tmp_path) as bundle:
        for d in (bundle / "rootfs/layers/python").glob("*/*.dist-info"):
            meta = (d / "METADATA").read_text(encoding="utf-8")
            name = re.search(r"^Name: (.+)$", meta, re.M).group(1).strip()
            version = re.search(r"^Version: (.+)$", meta, re.M).group(1).strip()
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _uv_locked(app: Path) -> dict[str, str]:
    """The packages uv.lock reaches from the project's runtime dependencies (not its dev group)."""
    lock = tomllib.loads((app / "uv.lock").read_text())
    by_name = {_norm(p["name"]): p for p in lock["package"]}
    root = next(p for p in lock["package"] if "virtual" in p["source"] or "editable" in p["source"])
    todo = [_norm(d["name"]) for d in root.get("dependencies", [])]
    found: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name not in found:
            found[name] = by_name[name]["version"]
            todo += [_norm(d["name"]) for d in by_name[name].get("dependencies", [])]
    return found


def _poetry_locked(app: Path) -> dict[str, str]:
    """The main group, less packages whose markers exclude Linux (colorama is locked for win32 only)."""
    from packaging.markers import Marker

    lock = tomllib.loads((app / "poetry.lock").read_text())
    return {_norm(p["name"]): p["version"] for p in lock["package"] if "main" in p.get("groups", ["main"])
            and ("markers" not in p or Marker(p["markers"]).evaluate({"sys_platform": "linux"}))}


def _pipenv_locked(app: Path) -> dict[str, str]:
    lock = json.loads((app / "Pipfile.lock").read_text())
    return {_norm(n): e["version"].lstrip("=") for n, e in lock["default"].items()}


def _pdm_locked(app: Path) -> dict[str, str]:
    lock = tomllib.loads((app / "pdm.lock").read_text())
    return {_norm(p["name"]): p["version"] for p in lock["package"] if "default" in p.get("groups", [])}


@pytest.mark.parametrize("app,read", [("uv", _uv_locked), ("poetry", _poetry_locked),
                                      ("pipenv", _pipenv_locked), ("pdm", _pdm_locked)])
def test_installed_versions_equal_the_lockfile(built, tmp_path, app, read):
    locked = read(APPS / app)
    installed = _installed(built(app), tmp_path)
    assert locked, "the lockfile lists no runtime packages"
    assert installed == locked  # exactly the locked set: nothing newer, no dev group (six), no extras
    assert locked["bottle"] == "0.13.2" and "six" not in installed
    assert "colorama" not in installed  # poetry.lock: only for sys_platform == "win32"


def test_no_build_tools_in_the_run_image(built, tmp_path):
    for app in ("flask-requirements", "setuppy", "pep621"):
        installed = _installed(built(app), tmp_path)
        assert not {"pip", "setuptools", "wheel"} & set(installed), (app, sorted(installed))


def test_project_with_build_system_is_installed(built, tmp_path):
    installed = _installed(built("pep621"), tmp_path)
    assert installed["hello-pep621"] == "1.2.0"
    assert installed["bottle"]
    assert _installed(built("setuppy"), tmp_path)["hello-setuppy"] == "0.3.0"


def test_django_collectstatic_ran_at_build_time(built, tmp_path):
    b = built("django")
    with unpacked(b.layout, b.ref, tmp_path) as bundle:
        static = bundle / "rootfs/workspace/staticfiles"
        assert (static / "site.css").read_text().startswith("body")
    assert not (APPS / "django" / "staticfiles").exists(), "collectstatic wrote into the source folder"


def test_bytecode_is_deterministic(built, tmp_path):
    b = built("poetry")
    with unpacked(b.layout, b.ref, tmp_path) as bundle:
        pycs = list((bundle / "rootfs/layers/python/deps").rglob("*.pyc"))
        assert pycs
        for pyc in pycs[:20]:
            flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
            assert flags == 0b01, f"{pyc.name}: not an unchecked-hash pyc (flags {flags})"


def test_warm_rebuild_reuses_the_deps_layer(app_copy, tmp_path):
    app = app_copy("uv")
    out = tmp_path / "oci"
    first = json.loads(pybuild("build", str(app), "-o", f"oci:{out}:app", "--json").stdout)
    app.joinpath("app.py").write_text(app.joinpath("app.py").read_text().replace("hello from", "hi from"))
    second = json.loads(pybuild("build", str(app), "-o", f"oci:{out}:app", "--json").stdout)
    assert "deps" in second["reused_layers"]
    assert second["digest"] != first["digest"]
    deps = lambda s: [l["digest"] for l in s["layers"] if l["created_by"].endswith(": deps")]  # noqa: E731
    assert deps(first) == deps(second)
    print(f"warm rebuild of the uv app after an app-code change: {second['seconds']:.2f} s "
          f"(cold-ish {first['seconds']:.2f} s)")
    with run_image(out, "app", tmp_path) as running:
        assert "hi from uv" in running.get("/").text


def test_image_sizes(built, capsys):
    rows = []
    for app in sorted(SERVERS) + ["script", "cext"]:
        s = built(app).summary
        rows.append(f"{app:20} {s['size'] / 1e6:6.1f} MB compressed {s['uncompressed_size'] / 1e6:6.1f} MB")
        assert s["size"] < 60e6, f"{app} image is {s['size'] / 1e6:.1f} MB"
    with capsys.disabled():
        print("\n" + "\n".join(rows))


BOTTLE_WHEEL_SHA256 = "27569ab8d1332fbba3e400b3baab2227ab4efb4882ff147af05a7c00ed73409c"


def _hashed_app(tmp_path: Path, digest: str) -> Path:
    app = tmp_path / "hashed"
    app.mkdir(parents=True)
    (app / "requirements.txt").write_text(f"bottle==0.13.2 --hash=sha256:{digest}\n")
    (app / "main.py").write_text("import bottle\nprint('bottle', bottle.__version__)\n")
    return app


def test_requirements_with_hash_pins(tmp_path):
    app = _hashed_app(tmp_path, BOTTLE_WHEEL_SHA256)
    out = tmp_path / "oci"
    pybuild("build", str(app), "-o", f"oci:{out}:app")
    assert "bottle 0.13.2" in run_to_completion(out, "app", tmp_path)
    bad = _hashed_app(tmp_path / "bad", "0" * 64)
    proc = pybuild("build", str(bad), "-o", f"oci:{tmp_path / 'bad-oci'}:app", check=False)
    assert proc.returncode == 1 and not (tmp_path / "bad-oci").exists()
    assert "does not match the hash pinned in requirements.txt" in proc.stderr


def test_python_version_file_chooses_another_stack(app_copy, tmp_path):
    app = app_copy("script")
    (app / ".python-version").write_text("3.11  # the Debian 12 stack\n")
    out = tmp_path / "oci"
    summary = json.loads(pybuild("build", str(app), "-o", f"oci:{out}:app", "--json").stdout)
    assert summary["stack"] == "python-3.11"
    assert "hello from a script on Python 3.11" in run_to_completion(out, "app", tmp_path)


def test_project_and_deps_layers_are_reproducible(tmp_path):
    """Built from scratch twice (project wheel and dependency layers not cached): same digest."""
    import shutil

    from builder import config

    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    digests = []
    for n in range(2):
        for name in ("project", "deps"):
            shutil.rmtree(config.cache_dir() / "layers" / "python" / name, ignore_errors=True)
        proc = pybuild("build", str(APPS / "pep621"), "-o", f"oci:{tmp_path / str(n)}:app", env=env)
        assert "building the project into a wheel" in proc.stderr
        digests.append(proc.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]


def _private_index(root: Path) -> Path:
    """A PEP 503 index in a folder, laid out like a mirror: simple/<name>/ links to ../../files/."""
    import hashlib
    import zipfile

    files = root / "files"
    files.mkdir(parents=True)
    wheel = files / "privpkg-1.0-py3-none-any.whl"
    members = {
        "privpkg/__init__.py": "GREETING = 'hello from a private index'\n",
        "privpkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: privpkg\nVersion: 1.0\n",
        "privpkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
        zf.writestr("privpkg-1.0.dist-info/RECORD", "".join(f"{n},,\n" for n in members)
                    + "privpkg-1.0.dist-info/RECORD,,\n")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / "privpkg"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel.name}#sha256={digest}">{wheel.name}</a></body></html>\n')
    return root / "simple"


def test_private_index_from_the_users_uv_settings(tmp_path):
    simple = _private_index(tmp_path / "mirror")
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("privpkg==1.0\n")
    (app / "main.py").write_text("import privpkg\nprint(privpkg.GREETING)\n")
    out = tmp_path / "oci"
    pybuild("build", str(app), "-o", f"oci:{out}:app", env={"UV_EXTRA_INDEX_URL": f"file://{simple}"})
    assert "hello from a private index" in run_to_completion(out, "app", tmp_path)


def test_layers_hold_no_installer_leftovers(built, tmp_path):
    for app in ("poetry", "pep621"):
        b = built(app)
        with unpacked(b.layout, b.ref, tmp_path) as bundle:
            layers = bundle / "rootfs/layers/python"
            assert not list(layers.glob("*/.lock")), app
            assert not list(layers.glob("*/*.dist-info/uv_cache.json")), app
            writable = [p for p in layers.rglob("*") if not p.is_symlink() and p.stat().st_mode & 0o002]
            assert not writable, writable[:3]


def test_nothing_to_install_adds_no_deps_layer(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "requirements.txt").write_text("# nothing yet\n")
    (app / "main.py").write_text("print('no dependencies')\n")
    summary = json.loads(pybuild("build", str(app), "-o", f"oci:{tmp_path / 'oci'}:app", "--json").stdout)
    assert [l["created_by"] for l in summary["layers"]][1:] == ["pybuild buildpack python: launcher", "pybuild app"]
    assert not any(e.startswith("PYTHONPATH=") for e in summary["config"]["Env"])
