"""Running directory-based Cloud Native Buildpacks (Buildpack API 0.9-0.11) unchanged.

A CNB is a folder with `buildpack.toml`, `bin/detect` and `bin/build`. pybuild plays the
lifecycle's part: `CNBBuildpack` adapts one to the core `Buildpack` interface, so it joins order
groups like any plugin. Its programs run in the build environment (the host's tools, so bash
and curl are there) inside a bubblewrap sandbox laid out as the lifecycle lays it out:

    /workspace                  the app (writable during build)
    /layers/<id>/               CNB_LAYERS_DIR: <layer>/, <layer>.toml, launch.toml, build.toml, store.toml
    /platform/env/<NAME>        the user's build environment (-e, [[io.buildpacks.build.env]])
    /cnb/buildpacks/<id>/<ver>  CNB_BUILDPACK_DIR (read-only)
    /cnb/io/plan.toml           CNB_BUILD_PLAN_PATH (detect) / CNB_BP_PLAN_PATH (build)

Detect: exit 0 passes, 100 fails, anything else is an error; the build plan (provides /
requires / `[[or]]`) is resolved across the group. Build: layers with `launch = true` become
image layers at the same path; `build = true` layers give later buildpacks their env/, bin/
and lib/; `cache = true` layers (and launch layers' metadata) are kept for the next build of
the same source folder. `launch.toml` processes and labels go into the image config; env/,
env.launch/ files (override, default, append, prepend, delim) are applied to the image's
environment at export, because the run stacks carry no launcher or shell.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Mapping, Sequence

import toml

from . import config
from .buildpack import APP_DIR, LAYERS_DIR, BuildContext, Buildpack, DetectContext, DetectResult, Process
from .errors import PybuildError
from .oci.image import Layer
from .oci.tarball import TarWriter

SUPPORTED_APIS = ("0.9", "0.10", "0.11")
PLATFORM_DIR = "/platform"
IO_DIR = "/cnb/io"
BUILDPACKS_DIR = "/cnb/buildpacks"
RESERVED = {"launch.toml", "build.toml", "store.toml"}
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MAX_TRIALS = 256
HIDDEN = {"proc", "dev", "tmp", "root", "home", "run"}  # made fresh, or kept from buildpacks
OUTPUT_LINES = 40


def find_buildpack_dirs(path: Path) -> list[Path]:
    """`path` itself when it is a buildpack, else the buildpacks one or two levels below it
    (`<id>/` or `<id>/<version>/`, the layout of a builder's /cnb/buildpacks)."""
    path = Path(path)
    if (path / "buildpack.toml").is_file():
        return [path.resolve()]
    found = []
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if (child / "buildpack.toml").is_file():
                found.append(child.resolve())
            elif child.is_dir():
                found += [c.resolve() for c in sorted(child.iterdir()) if (c / "buildpack.toml").is_file()]
    return found


def escape_id(bp_id: str) -> str:
    return bp_id.replace("/", "_")


# -- the sandbox ---------------------------------------------------------------------------------
def run_sandboxed(argv: Sequence[str], *, binds: Mapping[Path, str], ro_binds: Mapping[Path, str],
                  env: Mapping[str, str], cwd: str = APP_DIR, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run `argv` with the host's file system read-only as the build environment (but not the
    users' homes), the CNB paths bound on top, a private /tmp, and network access (buildpacks
    download their dependencies). Returns the finished process whatever its exit status."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise PybuildError("running Cloud Native Buildpacks needs bubblewrap (bwrap)",
                           hint="install it: apt-get install bubblewrap")
    tops = {p.strip("/").split("/")[0] for p in list(binds.values()) + list(ro_binds.values())}
    cmd = [bwrap, "--tmpfs", "/"]
    for entry in sorted(Path("/").iterdir()):
        if entry.name in HIDDEN or entry.name in tops:
            continue
        if entry.is_symlink():
            cmd += ["--symlink", os.readlink(entry), f"/{entry.name}"]
        elif entry.is_dir():
            cmd += ["--ro-bind", str(entry), f"/{entry.name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--die-with-parent", "--unshare-pid",
            "--unshare-ipc", "--unshare-uts"]
    for host, inside in ro_binds.items():
        cmd += ["--ro-bind", str(host), inside]
    for host, inside in binds.items():
        cmd += ["--bind", str(host), inside]
    cmd += ["--chdir", cwd, "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    cmd += ["--", *argv]
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PybuildError(f"{argv[0]} did not finish within {int(timeout)} s")


def _output(proc: subprocess.CompletedProcess) -> list[str]:
    return [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]


# -- environment files ---------------------------------------------------------------------------
def apply_env_dir(env: dict[str, str], folder: Path) -> None:
    """Apply a CNB env directory: NAME / NAME.override set, NAME.default sets when unset,
    NAME.append / NAME.prepend join with NAME.delim (none when absent)."""
    if not folder.is_dir():
        return
    files = {f.name: f for f in folder.iterdir() if f.is_file()}
    for fname in sorted(files):
        name, _, suffix = fname.rpartition(".") if "." in fname else (fname, "", "")
        if suffix not in ("override", "default", "append", "prepend", "delim"):
            name, suffix = fname, "override"
        if suffix == "delim":
            continue
        value = files[fname].read_text(encoding="utf-8", errors="replace")
        delim = files[f"{name}.delim"].read_text() if f"{name}.delim" in files else ""
        old = env.get(name)
        if suffix == "override":
            env[name] = value
        elif suffix == "default":
            env.setdefault(name, value)
        elif suffix == "append":
            env[name] = value if not old else old + delim + value
        else:
            env[name] = value if not old else value + delim + old


def _prepend(env: dict[str, str], name: str, value: str) -> None:
    env[name] = value + (":" + env[name] if env.get(name) else "")


def apply_layer_env(env: dict[str, str], layer_dir: Path, inside: str, phase: str) -> None:
    """A layer's contribution to the `phase` ("build" or "launch") environment."""
    if (layer_dir / "bin").is_dir():
        _prepend(env, "PATH", f"{inside}/bin")
    if (layer_dir / "lib").is_dir():
        _prepend(env, "LD_LIBRARY_PATH", f"{inside}/lib")
        if phase == "build":
            _prepend(env, "LIBRARY_PATH", f"{inside}/lib")
    if phase == "build":
        if (layer_dir / "include").is_dir():
            _prepend(env, "CPATH", f"{inside}/include")
        if (layer_dir / "pkgconfig").is_dir():
            _prepend(env, "PKG_CONFIG_PATH", f"{inside}/pkgconfig")
    apply_env_dir(env, layer_dir / "env")
    apply_env_dir(env, layer_dir / f"env.{phase}")


def _read_toml(path: Path, what: str) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PybuildError(f"{path}: invalid {what}: {exc}")


def layer_types(meta: dict) -> dict[str, bool]:
    types = meta.get("types", {}) if isinstance(meta.get("types"), dict) else {}
    return {k: bool(types.get(k, False)) for k in ("launch", "build", "cache")}


# -- the adapter ---------------------------------------------------------------------------------
class CNBBuildpack(Buildpack):
    """A Cloud Native Buildpack folder as a pybuild `Buildpack`."""

    def __init__(self, path: Path):
        self.path = Path(path).resolve()
        desc = _read_toml(self.path / "buildpack.toml", "buildpack.toml")
        api = str(desc.get("api", ""))
        info = desc.get("buildpack", {})
        where = self.path / "buildpack.toml"
        if not isinstance(info, dict) or not info.get("id") or not info.get("version"):
            raise PybuildError(f"{where}: [buildpack] needs an id and a version")
        if api not in SUPPORTED_APIS:
            raise PybuildError(f"{where}: Buildpack API {api or '(missing)'} is not supported",
                               hint=f"pybuild runs Buildpack API {', '.join(SUPPORTED_APIS)}")
        if desc.get("order"):
            raise PybuildError(f"{where}: composite buildpacks ([[order]]) are not run directly",
                               hint="name their component buildpacks in project.toml [[io.buildpacks.group]]")
        if not (self.path / "bin" / "build").is_file():
            raise PybuildError(f"{self.path}: no bin/build program")
        self.cnb_api = api
        self.id = str(info["id"])
        self.version = str(info["version"])
        self.description = str(info.get("name") or info.get("description") or f"Cloud Native Buildpack {self.id}")
        self.clear_env = bool(info.get("clear-env", False))
        self.targets = desc.get("targets", [])

    @property
    def api_minor(self) -> int:
        return int(self.cnb_api.split(".")[1])

    @property
    def inside_dir(self) -> str:
        return f"{BUILDPACKS_DIR}/{escape_id(self.id)}/{self.version}"

    def _check_program(self, name: str) -> Path:
        prog = self.path / "bin" / name
        if not os.access(prog, os.X_OK):
            raise PybuildError(f"{prog}: not executable", hint=f"chmod +x {prog}")
        return prog

    def _base_env(self, user_env: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
        env = {"PATH": HOST_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "CNB_PLATFORM_DIR": PLATFORM_DIR,
               "CNB_BUILDPACK_DIR": self.inside_dir, "CNB_TARGET_OS": "linux", "CNB_TARGET_ARCH": "amd64"}
        for k in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
            if k in os.environ:
                env[k] = os.environ[k]
        if not self.clear_env:
            env.update(user_env)
        env.update(extra)
        return env

    @staticmethod
    def _platform(where: Path, user_env: Mapping[str, str]) -> Path:
        plat = where / "platform"
        (plat / "env").mkdir(parents=True, exist_ok=True)
        for k, v in user_env.items():
            (plat / "env" / k).write_text(v)
        return plat

    def _targets_match(self) -> str | None:
        if not self.targets:
            return None
        for t in self.targets:
            if t.get("os", "linux") == "linux" and t.get("arch", "amd64") in ("amd64", "*"):
                return None
        return "buildpack.toml [[targets]] lists no linux/amd64 target"

    # -- detect ----------------------------------------------------------------------------------
    def detect(self, ctx: DetectContext) -> DetectResult:
        mismatch = self._targets_match()
        if mismatch:
            return DetectResult.failed(mismatch)
        if not (self.path / "bin" / "detect").exists():
            return DetectResult.passed("no bin/detect (always passes)", cnb_plan={})
        prog = self._check_program("detect")
        user_env = _user_env(ctx.env)
        with tempfile.TemporaryDirectory(prefix="cnb-detect-", dir=config.cache_dir()) as tmp:
            where = Path(tmp)
            plat = self._platform(where, user_env)
            io_dir = where / "io"
            io_dir.mkdir()
            plan_path = f"{IO_DIR}/plan.toml"
            env = self._base_env(user_env, {"CNB_BUILD_PLAN_PATH": plan_path})
            proc = run_sandboxed([f"{self.inside_dir}/bin/{prog.name}", PLATFORM_DIR, plan_path],
                                 binds={io_dir: IO_DIR},
                                 ro_binds={ctx.app_dir: APP_DIR, plat: PLATFORM_DIR, self.path: self.inside_dir},
                                 env=env, timeout=600)
            out = _output(proc)
            if proc.returncode == 100:
                return DetectResult.failed(out[-1] if out else "bin/detect did not pass")
            if proc.returncode != 0:
                return DetectResult.error(f"bin/detect exited {proc.returncode}"
                                          + ("\n" + "\n".join("  | " + l for l in out[-OUTPUT_LINES:]) if out else ""))
            plan_file = io_dir / "plan.toml"
            plan = _read_toml(plan_file, "build plan") if plan_file.exists() else {}
        return DetectResult.passed("bin/detect passed" + (f": {out[-1]}" if out else ""), cnb_plan=plan)

    # -- build -----------------------------------------------------------------------------------
    def build(self, ctx: BuildContext) -> None:
        self._check_program("build")
        esc = escape_id(self.id)
        scratch = ctx.app_dir.parent / ".cnb"  # shared by the CNB buildpacks of one build
        layers_root = scratch / "layers"
        mine = layers_root / esc
        mine.mkdir(parents=True, exist_ok=True)
        state = _State(scratch)
        keep = self._cache_dir(ctx)
        reusable = self._restore(keep, mine)
        user_env = _user_env(ctx.env)
        work = scratch / f"bp-{esc}"
        work.mkdir(parents=True, exist_ok=True)
        plat = self._platform(work, user_env)
        io_dir = work / "io"
        io_dir.mkdir(exist_ok=True)
        entries = ctx.plan.get("entries", [])
        (io_dir / "plan.toml").write_text(toml.dumps({"entries": entries}))
        extra = {"CNB_LAYERS_DIR": f"{LAYERS_DIR}/{esc}", "CNB_BP_PLAN_PATH": f"{IO_DIR}/plan.toml",
                 "CNB_STACK_ID": f"io.pybuild.stacks.{ctx.stack.name}"}
        distro = str(ctx.stack.provides.get("distro", ""))
        if "-" in distro:
            extra["CNB_TARGET_DISTRO_NAME"], extra["CNB_TARGET_DISTRO_VERSION"] = distro.split("-", 1)
        env = self._base_env(user_env, extra)
        for bp_esc, name in state.build_layers:  # what earlier buildpacks left for later ones
            apply_layer_env(env, layers_root / bp_esc / name, f"{LAYERS_DIR}/{bp_esc}/{name}", "build")
        ctx.log(f"running bin/build (Buildpack API {self.cnb_api})")
        proc = run_sandboxed([f"{self.inside_dir}/bin/build", f"{LAYERS_DIR}/{esc}", PLATFORM_DIR,
                              f"{IO_DIR}/plan.toml"],
                             binds={ctx.app_dir: APP_DIR, layers_root: LAYERS_DIR, io_dir: IO_DIR},
                             ro_binds={plat: PLATFORM_DIR, self.path: self.inside_dir}, env=env)
        out = _output(proc)
        for line in out:
            ctx.log(line)
        if proc.returncode != 0:
            raise PybuildError(f"buildpack {self.id}: bin/build failed (exit {proc.returncode})",
                               details="\n".join("  | " + l for l in out[-OUTPUT_LINES:]) or None)
        self._export(ctx, mine, keep, reusable, state)

    def _cache_dir(self, ctx: BuildContext) -> Path:
        source = str(ctx.project.get("_source") or ctx.app_dir)
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        path = config.cache_dir() / "cnb" / key / escape_id(self.id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @staticmethod
    def _restore(keep: Path, mine: Path) -> dict[str, Path]:
        """Put back what the last build left: cache layers whole, launch layers' metadata only
        (their image layer is reused when the buildpack keeps the metadata and makes no folder)."""
        reusable: dict[str, Path] = {}
        if (keep / "store.toml").is_file():
            shutil.copyfile(keep / "store.toml", mine / "store.toml")
        for meta_file in sorted(keep.glob("*.toml")):
            name = meta_file.stem
            if meta_file.name in RESERVED:
                continue
            types = layer_types(_read_toml(meta_file, "layer metadata"))
            if types["cache"] and (keep / name).is_dir():
                shutil.copytree(keep / name, mine / name, symlinks=True)
                shutil.copyfile(meta_file, mine / meta_file.name)
            elif types["launch"] and (keep / f"{name}.layer.json").is_file():
                shutil.copyfile(meta_file, mine / meta_file.name)
                reusable[name] = keep / f"{name}.layer.json"
        return reusable

    def _export(self, ctx: BuildContext, mine: Path, keep: Path, reusable: dict[str, Path], state: "_State") -> None:
        esc = escape_id(self.id)
        launch_env = dict(ctx.stack.env)
        launch_env.update(state.launch_env)
        kept: set[str] = set()
        for meta_file in sorted(mine.glob("*.toml")):
            if meta_file.name in RESERVED:
                continue
            name = meta_file.stem
            layer_dir = mine / name
            inside = f"{LAYERS_DIR}/{esc}/{name}"
            types = layer_types(_read_toml(meta_file, "layer metadata"))
            if types["launch"]:
                env_copy = keep / f"{name}.launch"  # what the layer adds to the environment, for reuse
                if layer_dir.is_dir():
                    tw = TarWriter(mtime=ctx.epoch)
                    tw.add_dir(inside, 0o755)
                    tw.add_tree(layer_dir, inside.lstrip("/"))
                    layer = Layer.from_tar_writer(tw, ctx.store, created_by=f"pybuild cnb {self.id}: {name}")
                    shutil.rmtree(env_copy, ignore_errors=True)
                    env_copy.mkdir()
                    for sub in ("bin", "lib"):
                        if (layer_dir / sub).is_dir():
                            (env_copy / sub).mkdir()
                    for sub in ("env", "env.launch"):
                        if (layer_dir / sub).is_dir():
                            shutil.copytree(layer_dir / sub, env_copy / sub, symlinks=True)
                elif name in reusable:
                    layer = Layer.from_json(json.loads(reusable[name].read_text()), ctx.store)
                    if not ctx.store.has(layer.digest):
                        raise PybuildError(f"buildpack {self.id}: layer {name} was kept from the last build, "
                                           "but its blob is gone from the cache",
                                           hint=f"delete {keep} and build again")
                    ctx.reused.append(name)
                    ctx.log(f"reusing layer {name}")
                else:
                    raise PybuildError(f"buildpack {self.id}: {name}.toml says launch = true, "
                                       f"but there is no {name}/ folder")
                ctx.layers.append(layer)
                apply_layer_env(launch_env, env_copy, inside, "launch")
                for d in ("profile.d", "exec.d"):
                    if (layer_dir / d).is_dir() or (layer_dir / "env.launch" / d).is_dir():
                        ctx.log(f"warning: layer {name}: {d}/ is not run (the run image has no launcher)")
                (keep / f"{name}.layer.json").write_text(json.dumps(layer.to_json()))
                kept.add(name)
            if types["build"] and layer_dir.is_dir():
                state.build_layers.append((esc, name))
            if types["cache"] and layer_dir.is_dir():
                shutil.rmtree(keep / name, ignore_errors=True)
                shutil.copytree(layer_dir, keep / name, symlinks=True)
                kept.add(name)
            if name in kept:
                shutil.copyfile(meta_file, keep / meta_file.name)
        for old in keep.iterdir():  # layers the buildpack dropped are forgotten
            stem = (old.name.removesuffix(".layer.json").removesuffix(".toml") if old.is_file()
                    else old.name.removesuffix(".launch"))
            if old.name != "store.toml" and stem not in kept:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        if (mine / "store.toml").is_file():
            shutil.copyfile(mine / "store.toml", keep / "store.toml")
        self._launch_metadata(ctx, mine)
        base = dict(ctx.stack.env)
        for k, v in launch_env.items():
            if base.get(k) != v:
                ctx.launch_env[k] = v
        state.launch_env.update({k: v for k, v in launch_env.items() if base.get(k) != v})
        state.save()
        build_toml = mine / "build.toml"
        if build_toml.is_file():
            for unmet in _read_toml(build_toml, "build.toml").get("unmet", []):
                ctx.log(f"warning: plan entry {unmet.get('name')!r} was not met")

    def _launch_metadata(self, ctx: BuildContext, mine: Path) -> None:
        launch = mine / "launch.toml"
        if not launch.is_file():
            return
        data = _read_toml(launch, "launch.toml")
        for p in data.get("processes", []):
            ptype = str(p.get("type") or "web")
            command = p.get("command", [])
            args = [str(a) for a in p.get("args", [])]
            if isinstance(command, str):  # Buildpack API 0.9: a string, run by a shell unless direct
                argv = [command, *args] if p.get("direct") else ["/bin/sh", "-c", " ".join([command] + [
                    shlex.quote(a) for a in args])]
            else:
                argv = [str(c) for c in command] + args
            if not argv:
                raise PybuildError(f"buildpack {self.id}: launch.toml process {ptype!r} has no command")
            ctx.processes.append(Process(ptype, argv, bool(p.get("default", False)),
                                         str(p.get("working-dir") or APP_DIR)))
        for label in data.get("labels", []):
            if "key" in label:
                ctx.labels[str(label["key"])] = str(label.get("value", ""))


class _State:
    """What the CNB buildpacks of one build pass along: build layers in order, launch env."""

    def __init__(self, scratch: Path):
        self.file = scratch / "state.json"
        data = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.build_layers: list[tuple[str, str]] = [tuple(x) for x in data.get("build_layers", [])]  # type: ignore
        self.launch_env: dict[str, str] = data.get("launch_env", {})

    def save(self) -> None:
        self.file.write_text(json.dumps({"build_layers": self.build_layers, "launch_env": self.launch_env}))


def _user_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k and "/" not in k and "=" not in k}


# -- build plan resolution -----------------------------------------------------------------------
def _alternatives(plan: dict) -> list[dict]:
    first = {"provides": plan.get("provides", []), "requires": plan.get("requires", [])}
    return [first] + [{"provides": o.get("provides", []), "requires": o.get("requires", [])}
                      for o in plan.get("or", [])]


def _check(chosen: list[tuple[Buildpack, dict]]) -> tuple[list[int], str]:
    """Indices whose plan is unmet, and why (requires need an earlier-or-same provider,
    provides need a same-or-later requirer)."""
    bad, why = [], ""
    for i, (bp, alt) in enumerate(chosen):
        for req in alt["requires"]:
            if not any(p.get("name") == req.get("name") for _, a in chosen[:i + 1] for p in a["provides"]):
                bad.append(i)
                why = why or f"{bp.id} requires {req.get('name')!r}, which no buildpack before it provides"
                break
        else:
            for prov in alt["provides"]:
                if not any(r.get("name") == prov.get("name") for _, a in chosen[i:] for r in a["requires"]):
                    bad.append(i)
                    why = why or f"{bp.id} provides {prov.get('name')!r}, which no buildpack after it requires"
                    break
    return bad, why


def resolve_plans(results: list[tuple[Buildpack, DetectResult]], optional: set[str]
                  ) -> tuple[list[tuple[Buildpack, DetectResult]] | None, str]:
    """Resolve the CNB build plans of a passing group: try each combination of `[[or]]`
    alternatives; optional buildpacks whose plan is unmet drop out. On success each CNB
    buildpack's `plan["entries"]` holds the requirements it is to provide."""
    cnb = [i for i, (_, r) in enumerate(results) if "cnb_plan" in r.plan]
    if not cnb:
        return results, ""
    options = [_alternatives(results[i][1].plan["cnb_plan"]) for i in cnb]
    reason = ""
    for trial in itertools.islice(itertools.product(*options), MAX_TRIALS):
        alts = dict(zip(cnb, trial))
        members = [(bp, res, alts.get(i, {"provides": [], "requires": []})) for i, (bp, res) in enumerate(results)]
        while True:
            bad, why = _check([(bp, alt) for bp, _, alt in members])
            if not bad:
                break
            if any(members[i][0].id not in optional for i in bad):
                reason = reason or why
                members = []
                break
            members = [m for i, m in enumerate(members) if i not in bad]
        if not members:
            continue
        out = []
        for bp, res, alt in members:
            if "cnb_plan" in res.plan:
                names = {p.get("name") for p in alt["provides"]}
                entries = [{"name": r["name"], "metadata": r.get("metadata", {})}
                           for _, _, a in members for r in a["requires"] if r.get("name") in names]
                res = DetectResult(res.status, res.reason, res.stack, dict(res.plan, entries=entries))
            out.append((bp, res))
        return out, ""
    return None, f"build plan not satisfied: {reason}"


# -- inline buildpacks ---------------------------------------------------------------------------
def inline_buildpack(member: dict, root: Path) -> CNBBuildpack:
    """A project.toml `[io.buildpacks.group.script]` entry as a CNB whose bin/build runs the script."""
    script = member["script"]
    bp_id = member.get("id")
    if not bp_id:
        raise PybuildError(f"{root / 'project.toml'}: an inline buildpack ([io.buildpacks.group.script]) needs an id")
    api = str(script["api"])
    shell = script.get("shell", "/bin/bash")
    version = member.get("version", "0.0.0")
    digest = hashlib.sha256(json.dumps([bp_id, version, api, shell, script["inline"]]).encode()).hexdigest()[:16]
    folder = config.cache_dir() / "inline-buildpacks" / digest
    if not (folder / "buildpack.toml").is_file():
        tmp = Path(tempfile.mkdtemp(prefix=".inline-", dir=config.cache_dir()))
        (tmp / "bin").mkdir()
        (tmp / "bin" / "build").write_text(f"#!{shell}\nset -e\n{script['inline']}\n")
        (tmp / "bin" / "build").chmod(0o755)
        (tmp / "buildpack.toml").write_text(toml.dumps({"api": api, "buildpack": {"id": bp_id, "version": version}}))
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another build made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return CNBBuildpack(folder)

