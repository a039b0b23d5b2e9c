"""The Python buildpack without building images: lockfile readers against the real tools'
lockfiles, freshness checks, syntax errors with lines, versions, entrypoint rules, index settings."""
from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from builder.buildpack import DetectContext
from builder.errors import PybuildError
from buildpacks.python import entrypoint, locks
from buildpacks.python import project as projects
from buildpacks.python.buildpack import PythonBuildpack, available_versions, choose_version, dist_name
from buildpacks.python.installer import index_settings

from .conftest import APPS


def copy(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(APPS / name, dest)
    return dest


def detect(app: Path, **env):
    return PythonBuildpack().detect(DetectContext(app, env))


# -- lockfiles -----------------------------------------------------------------------------------

def test_poetry_lock_pins_main_group_with_hashes_and_its_index():
    pyproject = tomllib.loads((APPS / "poetry/pyproject.toml").read_text())
    locked = locks.poetry_lock(APPS / "poetry", pyproject, "3.13")
    assert set(locked.pins) == {"bottle", "gunicorn", "packaging", "colorama"}
    assert locked.pins["bottle"] == "0.13.2" and locked.pins["gunicorn"] == "22.0.0"
    assert locked.hashed and all("--hash=sha256:" in line for line in locked.lines)
    colorama = next(line for line in locked.lines if line.startswith("colorama=="))
    assert ' ; sys_platform == "win32" --hash=' in colorama  # left for the installer to evaluate
    assert "six" not in locked.pins  # dev group
    assert locked.indexes == []  # the lock names no index of its own: the user's configuration decides


def test_poetry_lock_keeps_the_index_a_package_came_from(tmp_path):
    app = copy(tmp_path, "poetry")
    mirror = "https://mirror.example.invalid/simple"
    text = (app / "poetry.lock").read_text().replace(
        'name = "bottle"\n', 'name = "bottle"\n', 1)
    text = text.replace("\n[[package]]\nname = \"colorama\"",
                        f'\n[package.source]\ntype = "legacy"\nurl = "{mirror}"\nreference = "company"\n'
                        '\n[[package]]\nname = "colorama"', 1)
    (app / "poetry.lock").write_text(text)
    pyproject = tomllib.loads((app / "pyproject.toml").read_text())
    assert locks.poetry_lock(app, pyproject, "3.13").indexes == [mirror]


def test_pipfile_source_urls_expand_environment_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example.invalid/simple")
    assert locks.pipfile_lock(APPS / "pipenv", "3.13").indexes == ["https://mirror.example.invalid/simple"]
    monkeypatch.delenv("PIP_INDEX_URL")
    assert locks.pipfile_lock(APPS / "pipenv", "3.13").indexes == []  # unset: the user's configuration


def test_poetry_old_lock_format_walks_the_graph(tmp_path):
    app = copy(tmp_path, "poetry")
    lock = tomllib.loads((app / "poetry.lock").read_text())
    text = (app / "poetry.lock").read_text()
    for pkg in lock["package"]:  # a lock-version 2.0 file: no groups, no markers
        text = text.replace(f'groups = {json.dumps(pkg["groups"])}\n', "")
    (app / "poetry.lock").write_text(text)
    pyproject = tomllib.loads((app / "pyproject.toml").read_text())
    locked = locks.poetry_lock(app, pyproject, "3.13")
    assert set(locked.pins) == {"bottle", "gunicorn", "packaging", "colorama"}
    colorama = next(line for line in locked.lines if line.startswith("colorama=="))
    assert "; (sys_platform == 'win32') --hash=" in colorama  # the marker of the pyproject edge


def test_pipfile_lock_default_section_only():
    locked = locks.pipfile_lock(APPS / "pipenv", "3.13")
    assert locked.pins["bottle"] == "0.13.2" and locked.pins["gunicorn"] == "22.0.0"
    assert "six" not in locked.pins and locked.hashed


def test_pdm_lock_default_group_only():
    pyproject = tomllib.loads((APPS / "pdm/pyproject.toml").read_text())
    locked = locks.pdm_lock(APPS / "pdm", pyproject, "3.13")
    assert set(locked.pins) == {"bottle", "gunicorn", "packaging"} and locked.hashed


def test_content_hashes_match_the_tools():
    poetry = tomllib.loads((APPS / "poetry/pyproject.toml").read_text())
    assert tomllib.loads((APPS / "poetry/poetry.lock").read_text())["metadata"]["content-hash"] \
        == locks.poetry_content_hash(poetry)
    pipfile = tomllib.loads((APPS / "pipenv/Pipfile").read_text())
    assert json.loads((APPS / "pipenv/Pipfile.lock").read_text())["_meta"]["hash"]["sha256"] \
        == locks.pipfile_hash(pipfile)
    pdm = tomllib.loads((APPS / "pdm/pyproject.toml").read_text())
    assert tomllib.loads((APPS / "pdm/pdm.lock").read_text())["metadata"]["content_hash"] \
        == "sha256:" + locks.pdm_content_hash(pdm)


def test_exported_requirements_parse():
    text = ("bottle==0.13.2 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n"
            "colorama==0.4.6 ; sys_platform == 'win32' \\\n    --hash=sha256:cc\n")
    locked = locks.from_exported(text)
    assert locked.pins == {"bottle": "0.13.2", "colorama": "0.4.6"} and locked.hashed
    assert locked.lines[1].startswith("colorama==0.4.6 ; sys_platform == 'win32'")


@pytest.mark.parametrize("app,manifest,edit,lockname", [
    ("poetry", "pyproject.toml", ('gunicorn = "^22.0"', 'gunicorn = "^23.0"'), "poetry.lock"),
    ("pipenv", "Pipfile", ('gunicorn = "==22.0.0"', 'gunicorn = "==23.0.0"'), "Pipfile.lock"),
    ("pdm", "pyproject.toml", ('"gunicorn>=22,<23"', '"gunicorn>=23"'), "pdm.lock"),
])
def test_stale_lockfile_is_an_error(tmp_path, app, manifest, edit, lockname):
    path = copy(tmp_path, app)
    text = (path / manifest).read_text()
    assert edit[0] in text
    (path / manifest).write_text(text.replace(*edit))
    with pytest.raises(PybuildError, match=rf"{lockname} is out of date with {manifest}"):
        detect(path)


def test_lock_check_against_requirements_without_a_content_hash(tmp_path):
    app = copy(tmp_path, "pdm")
    text = (app / "pdm.lock").read_text()
    (app / "pdm.lock").write_text("\n".join(l for l in text.splitlines() if not l.startswith("content_hash")))
    pyproject = (app / "pyproject.toml").read_text().replace('"bottle==0.13.2"', '"bottle>=0.13.3"')
    (app / "pyproject.toml").write_text(pyproject)
    with pytest.raises(PybuildError, match=r"wants bottle>=0.13.3, the lock has bottle 0.13.2"):
        detect(app)


def test_pyproject_syntax_error_names_file_and_line(tmp_path):
    app = copy(tmp_path, "uv")
    (app / "pyproject.toml").write_text('[project]\nname = "x"\nversion = \n')
    with pytest.raises(PybuildError) as info:
        detect(app)
    assert info.value.message.startswith("pyproject.toml, line 3, column")
    assert "version =" in info.value.details


def test_pipfile_lock_syntax_error_names_file_and_line(tmp_path):
    app = copy(tmp_path, "pipenv")
    lines = (app / "Pipfile.lock").read_text().splitlines()
    lines[5] = lines[5] + ","  # a trailing comma is not JSON
    (app / "Pipfile.lock").write_text("\n".join(lines) + "\n")
    with pytest.raises(PybuildError, match=r"^Pipfile.lock, line \d+, column \d+: invalid JSON"):
        detect(app)


# -- versions ------------------------------------------------------------------------------------

def test_version_sources_in_order(tmp_path):
    (tmp_path / "main.py").write_text("print(1)\n")
    (tmp_path / ".python-version").write_text("# pinned for prod\n3.13.1  # patch ignored\n")
    (tmp_path / "runtime.txt").write_text("python-3.7.3\n")
    ctx = DetectContext(tmp_path, {})
    assert choose_version(ctx, ">=3.9") == ("3.13", ".python-version")
    (tmp_path / ".python-version").unlink()
    with pytest.raises(PybuildError, match=r"runtime.txt asks for Python 3.7.3, which no stack has") as info:
        choose_version(ctx, None)
    assert "3.13" in info.value.hint and info.value.hint.startswith("available Python versions:")
    assert choose_version(DetectContext(tmp_path, {"PYBUILD_PYTHON_VERSION": "3.13"}), None)[1] \
        == "PYBUILD_PYTHON_VERSION"


def test_requires_python_picks_a_stack_or_fails():
    ctx = DetectContext(APPS / "fastapi", {})
    assert choose_version(ctx, ">=3.10")[0] in available_versions()
    with pytest.raises(PybuildError, match="requires-python <3.6 matches no stack"):
        choose_version(ctx, "<3.6")


# -- entrypoints ---------------------------------------------------------------------------------

@pytest.mark.parametrize("app,rule", [
    ("flask-requirements", "WSGI app object `app` in app.py, served by gunicorn"),
    ("fastapi", "ASGI app object `app` in main.py, served by uvicorn"),
    ("django", "Django project (manage.py, mysite.settings), mysite.wsgi:application served by gunicorn; "
               "collectstatic at build time"),
    ("procfile", "Procfile `web:` line"),
    ("script", "main.py at the root, run with python"),
    ("pep621", "the single [project.scripts] entry 'hello-serve' (hello_pep621.server:main)"),
])
def test_detect_reports_the_entrypoint_rule(app, rule):
    res = detect(APPS / app)
    assert res.status == "pass" and res.plan["entrypoint_rule"] == rule


def test_procfile_beats_conventions_and_names_other_processes(tmp_path):
    app = copy(tmp_path, "flask-requirements")
    (app / "Procfile").write_text("web: gunicorn app:app\nrelease: python migrate.py\n")
    ep = entrypoint.choose(app)
    assert ep.rule == "Procfile `web:` line" and ep.processes == {"release": ["python", "migrate.py"]}
    assert ep.needs == ["gunicorn"]  # named by the Procfile, not listed by the app: added
    ep = entrypoint.choose(app, "release")
    assert ep.type == "release" and ep.command == ["python", "migrate.py"]
    with pytest.raises(PybuildError, match="Procfile has no process 'worker'"):
        entrypoint.choose(app, "worker")


def test_two_scripts_fall_through_to_conventions():
    assert entrypoint.choose(APPS / "fastapi", scripts={"a": "x:a", "b": "x:b"}).needs == ["uvicorn"]


# -- projects ------------------------------------------------------------------------------------

def test_project_installability():
    assert projects.load(APPS / "pep621").installable  # [build-system]
    assert projects.load(APPS / "setuppy").installable  # setup.py
    assert not projects.load(APPS / "poetry").installable  # package-mode = false
    assert not projects.load(APPS / "pdm").installable  # distribution = false
    assert not projects.load(APPS / "uv").installable  # no [build-system]: a virtual project


def test_poetry_constraints_without_a_lock():
    assert projects.poetry_specifier("^1.2.3") == ">=1.2.3,<2"
    assert projects.poetry_specifier("^0.2") == ">=0.2,<0.3"
    assert projects.poetry_specifier("~1.2") == ">=1.2,<1.3"
    assert projects.poetry_specifier("2.0") == "==2.0"
    reqs = projects.poetry_requirements({"tool": {"poetry": {"dependencies": {
        "python": "^3.11", "bottle": "^0.13", "uvicorn": {"version": "*", "extras": ["standard"], "python": ">=3.9"}}}}})
    assert reqs == ["bottle>=0.13,<0.14", "uvicorn[standard] ; (python_version >= '3.9')"]


def test_pipfile_without_a_lock():
    assert projects.pipfile_requirements({"packages": {"bottle": "==0.13.2", "six": "*",
                                                       "rich": {"version": ">=13", "markers": "os_name == 'posix'"}}}) \
        == ["bottle==0.13.2", "six", "rich>=13 ; os_name == 'posix'"]


def test_dist_name():
    assert dist_name(Path("Flask_SQLAlchemy-3.1.1.dist-info")) == "flask-sqlalchemy"


# -- index settings ------------------------------------------------------------------------------

def test_index_settings_from_pip_and_uv_config(tmp_path, monkeypatch):
    simple = tmp_path / "mirror" / "simple"
    simple.mkdir(parents=True)
    uv_toml = tmp_path / "uv.toml"
    uv_toml.write_text('[[index]]\nurl = "https://private.example/simple"\ndefault = true\n')
    monkeypatch.setenv("UV_CONFIG_FILE", str(uv_toml))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", f"file://{simple} https://extra.example/simple")
    monkeypatch.setenv("PIP_INDEX_URL", "https://ignored-when-uv-sets-one.example/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", "https://uv-extra.example/simple")
    s = index_settings(["https://lock.example/simple"])
    args = s.args
    assert args[:2] == ["--index-url", "https://private.example/simple"]
    extras = [args[i + 1] for i, a in enumerate(args) if a == "--extra-index-url"]
    assert extras == ["file:///pybuild/local/0/simple", "https://extra.example/simple",
                      "https://uv-extra.example/simple", "https://lock.example/simple"]
    assert s.binds[tmp_path / "mirror"] == "/pybuild/local/0"  # the parent: ../../files links resolve
    assert args[-2:] == ["--index-strategy", "unsafe-best-match"]


def test_local_requirement_inputs_are_part_of_the_key(tmp_path):
    app = copy(tmp_path, "cext")
    (app / "requirements.txt").write_text("-r requirements/base.txt\n")
    (app / "requirements").mkdir()
    (app / "requirements/base.txt").write_text("-e ./vendor/fastsum  # local\nflask\n")
    found = projects.load(app).local_inputs()
    assert [p.name for p in found] == ["requirements.txt", "base.txt", "fastsum"]


def test_setup_cfg_alone_gives_dependencies(tmp_path):
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = svc\nversion = 1\n\n[options]\npy_modules = svc\n"
                                        "install_requires =\n    bottle>=0.13  # web\n    six\n")
    (tmp_path / "main.py").write_text("print(1)\n")
    proj = projects.load(tmp_path)
    assert not proj.installable  # no setup.py: no frontend can build it
    assert projects.unlocked_requirements(proj) == ([], ["bottle>=0.13", "six"])
    (tmp_path / "setup.py").write_text("from setuptools import setup\nsetup()\n")
    proj = projects.load(tmp_path)
    assert proj.installable and projects.unlocked_requirements(proj) == (["-r", "setup.py"], [])


def test_lockfile_path_dependencies_are_part_of_the_key(tmp_path):
    app = copy(tmp_path, "uv")
    lock = (app / "uv.lock").read_text()
    (app / "libs/greet").mkdir(parents=True)
    (app / "uv.lock").write_text(lock + '\n[[package]]\nname = "greet"\nversion = "0.2.0"\n'
                                        'source = { editable = "libs/greet" }\n')
    assert projects.load(app).local_inputs() == [(app / "libs/greet").resolve()]
