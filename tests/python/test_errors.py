"""Bad input through the command line: exit 1, one clear message, and no output written."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import pybuild

from .conftest import APPS


def build_fails(app: Path, tmp_path: Path) -> str:
    out = tmp_path / "out-oci"
    proc = pybuild("build", str(app), "-o", f"oci:{out}:app", check=False)
    assert proc.returncode == 1, proc.stderr
    assert not out.exists(), "a failed build wrote its output"
    assert "Traceback" not in proc.stderr
    return proc.stderr


def copy(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copytree(APPS / name, dest)
    return dest


def test_pyproject_syntax_error(tmp_path):
    app = copy(tmp_path, "pep621")
    (app / "pyproject.toml").write_text((app / "pyproject.toml").read_text().replace(
        'version = "1.2.0"', 'version = "1.2.0'))
    err = build_fails(app, tmp_path)
    assert "error: pyproject.toml, line 7, column" in err and "invalid TOML" in err


def test_pipfile_lock_syntax_error(tmp_path):
    app = copy(tmp_path, "pipenv")
    text = (app / "Pipfile.lock").read_text()
    (app / "Pipfile.lock").write_text(text.replace('"pipfile-spec": 6,', '"pipfile-spec": 6,,', 1))
    err = build_fails(app, tmp_path)
    assert "error: Pipfile.lock, line 6, column" in err and "invalid JSON" in err


def test_stale_poetry_lock(tmp_path):
    app = copy(tmp_path, "poetry")
    (app / "pyproject.toml").write_text((app / "pyproject.toml").read_text().replace(
        'bottle = "0.13.2"', 'bottle = "0.13.2"\nsix = "*"'))
    assert "error: poetry.lock is out of date with pyproject.toml" in build_fails(app, tmp_path)


def test_python_version_no_stack_has(tmp_path):
    app = copy(tmp_path, "script")
    (app / ".python-version").write_text("3.7\n")
    err = build_fails(app, tmp_path)
    assert "error: .python-version asks for Python 3.7, which no stack has" in err
    assert "hint: available Python versions: " in err and "3.13" in err


@pytest.mark.slow
def test_stale_uv_lock(tmp_path):
    app = copy(tmp_path, "uv")
    (app / "pyproject.toml").write_text((app / "pyproject.toml").read_text().replace(
        '"bottle==0.13.2"', '"bottle==0.13.3"'))
    assert "error: uv.lock is out of date with pyproject.toml" in build_fails(app, tmp_path)


@pytest.mark.slow
def test_failing_source_build_shows_the_build_log(tmp_path):
    app = copy(tmp_path, "cext")
    c = app / "vendor/fastsum/fastsum.c"
    c.write_text(c.read_text().replace("#include <Python.h>", "#include <Python.h>\n#include <libfoo/missing.h>"))
    err = build_fails(app, tmp_path)
    assert "error: requirements.txt: building fastsum" in err and "from source failed" in err
    assert "libfoo/missing.h: No such file or directory" in err  # the compiler's own line, from the log's tail


def test_detect_cli_says_which_rule_fired():
    import json

    out = json.loads(pybuild("detect", str(APPS / "django"), "--json").stdout)
    plan = out["buildpacks"][0]["plan"]
    assert plan["entrypoint_rule"].startswith("Django project (manage.py, mysite.settings)")
    assert plan["python_version"] == "3.13" and out["stack"] == "python-3.13"
    text = pybuild("detect", str(APPS / "poetry")).stdout
    assert "dependencies: poetry.lock (exact, hash-checked)" in text
