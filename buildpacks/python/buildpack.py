"""Python apps: detection, the Python version, dependencies installed for the stack's CPython
in their own cached layer, deterministic bytecode, and a zero-config entrypoint."""
from __future__ import annotations

import configparser
import os
import re
import shutil
import sys
from pathlib import Path

from builder import BuildContext, Buildpack, DetectContext, DetectResult
from builder.errors import PybuildError
from builder.sandbox import run, run_in_rootfs
from builder.buildpack import cache_key

from . import entrypoint

DEPS = "/layers/python/deps"
LAUNCHER = "/layers/python/launcher/launch.py"
DEFAULT_VERSION = "3.13"
MANIFESTS = ("requirements.txt", "pyproject.toml", "Pipfile", "Pipfile.lock", "uv.lock", "poetry.lock",
             "pdm.lock", "setup.py", "setup.cfg")


def _version_from_files(ctx: DetectContext) -> tuple[str, str] | None:
    v = ctx.setting("PYBUILD_PYTHON_VERSION")
    if v:
        return v.strip(), "PYBUILD_PYTHON_VERSION"
    if ctx.exists(".python-version"):
        for line in ctx.read_text(".python-version").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                return line, ".python-version"
    if ctx.exists("runtime.txt"):
        m = re.search(r"(\d+\.\d+)", ctx.read_text("runtime.txt"))
        if m:
            return m.group(1), "runtime.txt"
    return None


def available_versions() -> list[str]:
    from builder.stacks.assemble import all_definitions

    return sorted((n.split("-", 1)[1] for n in all_definitions() if re.fullmatch(r"python-\d+\.\d+", n)),
                  key=lambda s: tuple(int(x) for x in s.split(".")))


def choose_version(ctx: DetectContext, requires_python: str | None) -> tuple[str, str]:
    versions = available_versions()
    found = _version_from_files(ctx)
    if found:
        raw, origin = found
        m = re.match(r"^(?:python-?|cpython-?)?(\d+)\.(\d+)", raw.strip())
        if not m:
            raise PybuildError(f"{origin}: {raw!r} is not a Python version", hint="write it as 3.13 or 3.13.5")
        minor = f"{m.group(1)}.{m.group(2)}"
        if minor not in versions:
            raise PybuildError(f"{origin} asks for Python {raw}, which no stack has",
                               hint=f"available Python versions: {', '.join(versions)}")
        return minor, origin
    if requires_python:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            spec = SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise PybuildError(f"pyproject.toml: requires-python = {requires_python!r} is not a valid specifier")
        fits = [v for v in versions if spec.contains(f"{v}.0", prereleases=True) or spec.contains(f"{v}.99")]
        if not fits:
            raise PybuildError(f"pyproject.toml: requires-python {requires_python} matches no stack",
                               hint=f"available Python versions: {', '.join(versions)}")
        best = DEFAULT_VERSION if DEFAULT_VERSION in fits else fits[-1]
        return best, "requires-python"
    return DEFAULT_VERSION, "default"


def pip_index_args() -> tuple[list[str], dict]:
    """Index settings from the user's pip configuration, as uv arguments (and for the cache key)."""
    cp = configparser.ConfigParser()
    files = ["/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.expanduser("~/.pip/pip.conf"),
             os.path.expanduser("~/.config/pip/pip.conf")]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(os.environ["PIP_CONFIG_FILE"])
    cp.read([f for f in files if os.path.isfile(f)])
    found: dict[str, list[str]] = {}
    for key in ("index-url", "extra-index-url", "find-links"):
        vals: list[str] = []
        for section in ("global", "install"):
            if cp.has_option(section, key):
                vals = cp.get(section, key).split()
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            vals = env.split()
        found[key] = vals
    args: list[str] = []
    for key, vals in found.items():
        for v in vals:
            local = v[7:] if v.startswith("file://") else (v if v.startswith("/") else None)
            if local is not None and not os.path.exists(local):
                continue  # a configured local folder that is not on this machine
            args += [f"--{key}", v]
    if args:  # pip weighs every configured index equally; ask uv for the same
        args += ["--index-strategy", "unsafe-best-match"]
    return args, found


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except Exception:
        path = shutil.which("uv")
        if not path:
            raise PybuildError("the Python buildpack needs uv", hint="pip install uv")
        return path


class PythonBuildpack(Buildpack):
    id = "python"
    version = "0.1.0"
    description = "Python apps: requirements.txt, pyproject.toml; gunicorn/uvicorn/Procfile entrypoints"

    def detect(self, ctx: DetectContext) -> DetectResult:
        found = [m for m in MANIFESTS if ctx.exists(m)]
        py_files = sorted(p.name for p in ctx.app_dir.glob("*.py"))
        if not found and not py_files:
            return DetectResult.failed("no requirements.txt, pyproject.toml, Pipfile, setup.py or *.py at the root")
        requires_python = None
        if ctx.exists("pyproject.toml"):
            from builder.tomlfile import load_toml

            requires_python = load_toml(ctx.app_dir / "pyproject.toml", "pyproject.toml").get("project", {}).get(
                "requires-python")
        version, origin = choose_version(ctx, requires_python)
        ep = entrypoint.choose(ctx.app_dir, ctx.setting("PYBUILD_PROCESS"))
        why = ", ".join(found or py_files[:3])
        return DetectResult.passed(f"found {why}", stack=f"python-{version}", python_version=version,
                                   version_from=origin, entrypoint_rule=ep.rule, manifests=found)

    # -- build -------------------------------------------------------------------------------
    def build(self, ctx: BuildContext) -> None:
        version = ctx.stack.provides.get("python", ctx.plan["python_version"])
        python = f"/usr/bin/python{version}"
        ep = entrypoint.choose(ctx.app_dir, ctx.options.get("process"))
        ctx.log(f"Python {version} ({ctx.plan.get('version_from')}); start: {ep.rule}")
        reqs = ctx.app_dir / "requirements.txt"
        req_text = reqs.read_text(encoding="utf-8") if reqs.exists() else ""
        listed = {re.split(r"[\s\[<>=!~;@]", l.strip(), maxsplit=1)[0].lower().replace("_", "-")
                  for l in req_text.splitlines() if l.strip() and not l.strip().startswith(("#", "-"))}
        extra = [n for n in ep.needs if n not in listed]
        index_args, index_cfg = pip_index_args()
        key = cache_key("deps", self.version, req_text, extra, version, ctx.stack.key, index_cfg)
        if req_text.strip() or extra:
            def populate(target: Path) -> None:
                self._install(ctx, target, version, reqs if req_text.strip() else None, extra, index_args)
                run_in_rootfs(ctx.stack.rootfs(), [python, "-m", "compileall", "-q", "-j0",
                                                   "--invalidation-mode", "unchecked-hash", DEPS],
                              binds={target: DEPS}, what="compiling dependencies to bytecode")
            ctx.layer("deps", key, populate, image_path=DEPS)
        launcher_src = Path(__file__).with_name("launch.py")
        ctx.layer("launcher", cache_key("launcher", launcher_src.read_bytes()),
                  lambda d: shutil.copyfile(launcher_src, d / "launch.py"),
                  image_path=os.path.dirname(LAUNCHER))
        ctx.launch_env.update({"PYTHONPATH": DEPS, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        ctx.add_process("web", self._argv(python, ep.command), default=True)
        for name, cmd in ep.processes.items():
            ctx.add_process(name, self._argv(python, cmd))

    @staticmethod
    def _argv(python: str, command: list[str]) -> list[str]:
        if command and command[0] in ("python", "python3") and not any("$" in a for a in command):
            return [python] + command[1:]
        return [python, LAUNCHER] + command

    def _install(self, ctx: BuildContext, target: Path, version: str, reqs: Path | None, extra: list[str],
                 index_args: list[str]) -> None:
        argv = [uv_binary(), "pip", "install", "--target", str(target), "--python-version", version,
                "--python-platform", "x86_64-manylinux_2_36", "--no-progress", "--color", "never",
                "--cache-dir", str(ctx.cache_dir / "uv"), *index_args]
        if reqs is not None:
            argv += ["-r", str(reqs)]
        argv += extra
        ctx.log("installing dependencies: " + ", ".join(([reqs.name] if reqs else []) + extra))
        env = dict(os.environ)
        env.pop("VIRTUAL_ENV", None)
        try:
            run(argv, cwd=ctx.app_dir, env=env, what="installing dependencies")
        except PybuildError as exc:
            m = re.search(r"Because ([\w.\-\[\]]+) was not found in the package registry", exc.details or "")
            if m:
                raise PybuildError(f"requirements.txt: package {m.group(1)!r} was not found in the package index",
                                   details=exc.details, hint="check the name for typos, or the index settings in pip.conf")
            raise PybuildError("requirements.txt: installing dependencies failed", details=exc.details,
                               hint="see the installer's last lines above")
        bindir = target / "bin"
        if bindir.is_dir():  # console scripts carry the host's interpreter path; point them at the stack's
            for script in bindir.iterdir():
                if script.is_file():
                    data = script.read_bytes()
                    if data.startswith(b"#!") and b"python" in data.split(b"\n", 1)[0]:
                        script.write_bytes(f"#!/usr/bin/python{version}".encode() + b"\n" + data.split(b"\n", 1)[1])
