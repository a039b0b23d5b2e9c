"""Python apps: detection, the Python version, dependencies installed exactly (lockfiles with
hashes) for the stack's own CPython in a cached layer, the project itself built into a wheel in
the build stage, deterministic bytecode, Django's collectstatic, and a zero-config entrypoint."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from builder import BuildContext, Buildpack, DetectContext, DetectResult
from builder.buildpack import cache_key
from builder.errors import PybuildError
from builder.fsdigest import folder_digest

from . import entrypoint, locks
from . import project as projects
from .installer import SANDBOX, WORKSPACE, Sandbox, explain_install_error, index_settings, uv_version

DEPS = "/layers/python/deps"
PROJECT = "/layers/python/project"
LAUNCHER = "/layers/python/launcher/launch.py"
DEFAULT_VERSION = "3.13"


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
        text = ctx.read_text("runtime.txt").strip()
        m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
        if not m:
            raise PybuildError(f"runtime.txt: {text!r} names no Python version", hint="write e.g. python-3.13")
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
        m = re.match(r"^(?:python-?|cpython-?|py)?(\d+)\.(\d+)", raw.strip())
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
            raise PybuildError(f"requires-python = {requires_python!r} is not a valid specifier")
        fits = [v for v in versions if spec.contains(f"{v}.0", prereleases=True) or spec.contains(f"{v}.99")]
        if not fits:
            raise PybuildError(f"requires-python {requires_python} matches no stack",
                               hint=f"available Python versions: {', '.join(versions)}")
        best = DEFAULT_VERSION if DEFAULT_VERSION in fits else fits[-1]
        return best, "requires-python"
    if DEFAULT_VERSION not in versions and versions:
        return versions[-1], "default"
    return DEFAULT_VERSION, "default"


def read_lock(proj: projects.Project, version: str) -> locks.Locked | None:
    """The lockfile's runtime packages (uv.lock is exported by uv itself at build time)."""
    if proj.lock == "poetry.lock":
        return locks.poetry_lock(proj.app_dir, proj.pyproject, version)
    if proj.lock == "pdm.lock":
        return locks.pdm_lock(proj.app_dir, proj.pyproject, version)
    if proj.lock == "Pipfile.lock":
        return locks.pipfile_lock(proj.app_dir, version)
    if proj.lock == "uv.lock":
        locks.uv_lock_indexes(proj.app_dir)
    return None


def installed_names(target: Path) -> set[str]:
    return {dist_name(d) for d in target.glob("*.dist-info")}


def drop_install_stamps(target: Path) -> None:
    """uv records when it built a local project (uv_cache.json); that timestamp would make
    every build of the same source differ, so it goes (and its RECORD line with it). So does
    the installer's own lock file in the target folder."""
    (target / ".lock").unlink(missing_ok=True)
    for stamp in target.glob("*.dist-info/uv_cache.json"):
        record = stamp.parent / "RECORD"
        if record.is_file():
            lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
            record.write_text("".join(l for l in lines if not l.startswith(f"{stamp.parent.name}/uv_cache.json,")),
                              encoding="utf-8")
        stamp.unlink()


def dist_name(dist_info: Path) -> str:
    """The normalized project name of a `name-version.dist-info` folder."""
    return locks.normalize(dist_info.name[: -len(".dist-info")].rsplit("-", 1)[0])


class PythonBuildpack(Buildpack):
    id = "python"
    version = "0.2.1"
    description = ("Python apps: requirements.txt, pyproject.toml (PEP 621, Poetry, PDM, Hatch, uv), Pipfile, "
                   "setup.py; exact lockfiles; gunicorn/uvicorn/Django/Procfile entrypoints")

    def detect(self, ctx: DetectContext) -> DetectResult:
        found = [m for m in projects.MANIFESTS if ctx.exists(m)]
        py_files = sorted(p.name for p in ctx.app_dir.glob("*.py"))
        if not found and not py_files:
            return DetectResult.failed("no requirements.txt, pyproject.toml, Pipfile, lockfile, setup.py "
                                       "or *.py at the root")
        proj = projects.load(ctx.app_dir)
        version, origin = choose_version(ctx, proj.requires_python)
        read_lock(proj, version)  # a stale or broken lockfile is reported now
        ep = entrypoint.choose(ctx.app_dir, ctx.setting("PYBUILD_PROCESS"),
                               proj.scripts if proj.installable else None)
        why = ", ".join(found or py_files[:3])
        return DetectResult.passed(f"found {why}", stack=f"python-{version}", python_version=version,
                                   version_from=origin, entrypoint_rule=ep.rule, manifests=found,
                                   dependencies=proj.describe())

    # -- build -------------------------------------------------------------------------------
    def build(self, ctx: BuildContext) -> None:
        version = ctx.stack.provides.get("python", ctx.plan["python_version"])
        python = f"/usr/bin/python{version}"
        proj = projects.load(ctx.app_dir)
        ep = entrypoint.choose(ctx.app_dir, ctx.options.get("process") or ctx.setting("PYBUILD_PROCESS"),
                               proj.scripts if proj.installable else None)
        ctx.log(f"Python {version} ({ctx.plan.get('version_from')}); dependencies: {proj.describe()}")
        ctx.log(f"start: {ep.rule}")
        locked = read_lock(proj, version)
        wants_deps = bool(proj.lock or any(projects.unlocked_requirements(proj)) or ep.needs)
        paths: list[str] = []
        dirs: dict[str, Path] = {}
        sandbox = None
        if wants_deps or proj.installable:
            build_stack = self._build_stack(ctx)
            index = index_settings(locked.indexes if locked else [])
            sandbox = Sandbox(build_stack.rootfs(), python, ctx.cache_dir / "uv", ctx.epoch, ctx.log, index)
            common = [self.version, version, ctx.stack.key, build_stack.key, index.config, uv_version(sandbox.uv)]
        if wants_deps and sandbox:
            inputs = {n: (ctx.app_dir / n).read_bytes() for n in proj.lock_inputs()}
            for path in proj.local_inputs():
                rel = path.resolve().relative_to(ctx.app_dir.resolve()).as_posix()
                inputs[rel] = folder_digest(path) if path.is_dir() else path.read_bytes()

            def populate_deps(target: Path) -> None:
                self._install_deps(ctx, sandbox, proj, locked, target, ep.needs)
                drop_install_stamps(target)
                sandbox.compile(target, DEPS)

            deps_dir = ctx.layer("deps", cache_key("deps", *common, inputs, ep.needs), populate_deps,
                                 image_path=DEPS)
            if any(deps_dir.iterdir()):
                dirs[DEPS] = deps_dir
                paths.append(DEPS)
            else:  # the manifests list nothing to install: no empty layer in the image
                ctx.layers.pop()
        if proj.installable and sandbox:
            def populate_project(target: Path) -> None:
                self._install_project(ctx, sandbox, target)
                drop_install_stamps(target)
                sandbox.compile(target, PROJECT)

            dirs[PROJECT] = ctx.layer("project", cache_key("project", *common, folder_digest(ctx.app_dir)),
                                      populate_project, image_path=PROJECT)
            paths.insert(0, PROJECT)
        django = entrypoint.find_django(ctx.app_dir)
        if django and django.static_root and "Django" in ep.rule and sandbox:
            self._collectstatic(ctx, sandbox, django, dirs)
        launcher_src = Path(__file__).with_name("launch.py")
        ctx.layer("launcher", cache_key("launcher", launcher_src.read_bytes()),
                  lambda d: shutil.copyfile(launcher_src, d / "launch.py"),
                  image_path=os.path.dirname(LAUNCHER))
        env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        if paths:
            env["PYTHONPATH"] = ":".join(paths)
        ctx.launch_env.update(env)
        ctx.labels["io.pybuild.python.entrypoint"] = ep.rule
        ctx.add_process(ep.type, self._argv(python, ep.command), default=True)
        for name, cmd in ep.processes.items():
            ctx.add_process(name, self._argv(python, cmd))

    @staticmethod
    def _build_stack(ctx: BuildContext):
        from builder.stacks.assemble import all_definitions, assemble, load_definition

        name = ctx.stack.definition.data.get("build-stack") or f"{ctx.stack.name}-build"
        if name not in all_definitions():
            raise PybuildError(f"the run stack {ctx.stack.name} has no build stack ({name})",
                               hint=f"add stacks/{name}.toml (the run stack's packages plus python3.X-dev, gcc, "
                                    f"libc6-dev, make) and lock it with `pybuild stacks lock {name}`")
        stack = assemble(load_definition(name), ctx.log)
        if stack.provides.get("python") != ctx.stack.provides.get("python"):
            raise PybuildError(f"build stack {name} provides Python {stack.provides.get('python')}, "
                               f"but the run stack {ctx.stack.name} has {ctx.stack.provides.get('python')}")
        return stack

    def process_argv(self, ctx: BuildContext, command: list[str]) -> list[str]:
        """User commands (`--entrypoint`, project.toml processes) start like Procfile lines: the
        launcher expands $VAR and finds console scripts of the dependencies."""
        return self._argv(f"/usr/bin/python{ctx.stack.provides.get('python', DEFAULT_VERSION)}", command)

    @staticmethod
    def _argv(python: str, command: list[str]) -> list[str]:
        if command and command[0] in ("python", "python3") and not any("$" in a for a in command):
            return [python] + command[1:]
        return [python, LAUNCHER] + command

    @staticmethod
    def _source_copy(ctx: BuildContext) -> Path:
        """A scratch copy of the app for the installer (build backends write into the source tree)."""
        scratch = Path(tempfile.mkdtemp(prefix="src-", dir=ctx.cache_dir))
        shutil.copytree(ctx.app_dir, scratch / "src", symlinks=True)
        return scratch

    def _install_deps(self, ctx: BuildContext, sandbox: Sandbox, proj: projects.Project,
                      locked: locks.Locked | None, target: Path, needs: list[str]) -> None:
        scratch = self._source_copy(ctx)
        src = scratch / "src"
        inputs = scratch / "inputs"
        inputs.mkdir()
        base = ["pip", "install", "--target", DEPS, "--python", sandbox.python, *sandbox.index.args]
        binds = {target: DEPS}
        ro = {inputs: f"{SANDBOX}/inputs"}
        source = proj.lock or "requirements.txt"
        try:
            if proj.lock == "uv.lock":
                out = sandbox.uv_run(["export", "--locked", "--format", "requirements-txt", "--no-dev",
                                      "--no-emit-project", "--no-editable", "--no-header", "--no-annotate",
                                      "--python", sandbox.python], src=src, what="exporting uv.lock")
                locked = locks.from_exported(out.stdout)
            if locked is not None:
                (inputs / "locked.txt").write_text(locked.text(), encoding="utf-8")
                ctx.log(f"installing {len(locked.lines)} locked packages from {locked.source}"
                        + (" (hashes required)" if locked.hashed else ""))
                if locked.lines:
                    sandbox.uv_run(base + ["--no-deps", "-r", f"{SANDBOX}/inputs/locked.txt"]
                                   + (["--require-hashes"] if locked.hashed else []),
                                   src=src, binds=binds, inputs=ro, what=f"installing {locked.source}")
            else:
                files, lines = projects.unlocked_requirements(proj)
                if lines:
                    (inputs / "requirements.txt").write_text("".join(l + "\n" for l in lines), encoding="utf-8")
                    files = ["-r", f"{SANDBOX}/inputs/requirements.txt"]
                    source = proj.manifests[0]
                elif files:
                    source = files[1]
                if files:
                    hashed = files[1] == "requirements.txt" and "--hash" in (src / "requirements.txt").read_text(
                        encoding="utf-8")
                    ctx.log(f"installing dependencies from {source}" + (" (hashes required)" if hashed else ""))
                    sandbox.uv_run(base + files + (["--require-hashes"] if hashed else []), src=src, binds=binds,
                                   inputs=ro, what=f"installing {source}")
            have = installed_names(target)
            missing = [n for n in needs if locks.normalize(n) not in have]
            if missing:
                ctx.log(f"adding {', '.join(missing)} (the entrypoint needs it; the app does not list it)")
                sandbox.uv_run(base + missing, src=src, binds=binds, what=f"installing {', '.join(missing)}")
        except PybuildError as exc:
            raise explain_install_error(exc, source)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _install_project(self, ctx: BuildContext, sandbox: Sandbox, target: Path) -> None:
        scratch = self._source_copy(ctx)
        ctx.log("building the project into a wheel and installing it")
        try:
            sandbox.uv_run(["pip", "install", "--target", PROJECT, "--python", sandbox.python, "--no-deps",
                            *sandbox.index.args, WORKSPACE], src=scratch / "src", binds={target: PROJECT},
                           what="building the project")
        except PybuildError as exc:
            raise explain_install_error(exc, "the project")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _collectstatic(self, ctx: BuildContext, sandbox: Sandbox, django: entrypoint.Django,
                       dirs: dict[str, Path]) -> None:
        ctx.log(f"collectstatic ({django.settings}, STATIC_ROOT set)")
        binds = {ctx.app_dir: WORKSPACE, **{host: inside for inside, host in dirs.items()}}
        sandbox.python_run(["manage.py", "collectstatic", "--noinput", "-v", "0"], binds=binds, cwd=WORKSPACE,
                           env={**ctx.env, "PYTHONPATH": ":".join(sorted(dirs, reverse=True)),
                                "DJANGO_SETTINGS_MODULE": django.settings},
                           what="manage.py collectstatic",
                           hint="collectstatic runs at build time, without network or database access; "
                                "settings it needs can be given with -e KEY=VALUE")
