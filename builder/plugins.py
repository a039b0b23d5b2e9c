"""Finding buildpacks: entry points in the `pybuild` group (built-ins included), loaded safely;
local buildpacks by path (a Python file or package folder, or a Cloud Native Buildpack folder);
CNB buildpacks on `PYBUILD_CNB_PATH`."""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Callable

import pluggy

from . import config, hookspecs
from .buildpack import Buildpack
from .errors import PybuildError

GROUP = "pybuild"


class DuplicateBuildpackError(PybuildError):
    """Two buildpacks claim one id: always an error, whichever plugin is at fault."""


@dataclass
class BuildpackInfo:
    buildpack: Buildpack
    plugin: str  # entry-point name, or the path a local buildpack was loaded from
    dist: str  # "DIST VERSION", "local path", "PYBUILD_CNB_PATH"
    origin: str  # module path or folder
    hooks: list[str] = field(default_factory=list)


@dataclass
class Registry:
    pm: pluggy.PluginManager
    buildpacks: dict[str, BuildpackInfo] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, bp_id: str) -> Buildpack:
        if bp_id not in self.buildpacks:
            raise PybuildError(f"no buildpack with id {bp_id!r}",
                               details="\n".join(f"  {e}" for e in self.errors) or None,
                               hint=f"installed: {', '.join(sorted(self.buildpacks)) or 'none'}; a buildpack "
                                    "outside an installed plugin can be named by path with `uri` in project.toml")
        return self.buildpacks[bp_id].buildpack

    def add(self, bp: Buildpack, plugin: str, dist: str, origin: str, hooks: list[str]) -> None:
        if not isinstance(bp, Buildpack) or not bp.id:
            raise TypeError(f"{bp!r} is not a Buildpack subclass with an id")
        if bp.id in self.buildpacks:
            other = self.buildpacks[bp.id]
            if other.origin == origin and other.plugin == plugin:
                return
            raise DuplicateBuildpackError(f"two buildpacks have the id {bp.id!r}: {other.plugin!r} ({other.dist}) "
                               f"and {plugin!r} ({dist})",
                               hint="uninstall one, rename one, or switch a plugin off with "
                                    "PYBUILD_DISABLE_PLUGINS=NAME")
        self.buildpacks[bp.id] = BuildpackInfo(bp, plugin, dist, origin, hooks)

    def describe(self) -> list[dict]:
        """One row per buildpack, for `pybuild plugins`."""
        return [{"id": i.buildpack.id, "version": i.buildpack.version, "plugin": i.plugin, "distribution": i.dist,
                 "module": i.origin, "description": i.buildpack.description, "hooks": i.hooks,
                 "kind": "cnb" if getattr(i.buildpack, "cnb_api", None) else "python"}
                for i in sorted(self.buildpacks.values(), key=lambda i: i.buildpack.id)]


def _disabled() -> set[str]:
    return {n.strip() for n in (config.setting("PYBUILD_DISABLE_PLUGINS") or "").split(",") if n.strip()}


def _hook_names(pm: pluggy.PluginManager, name: str) -> list[str]:
    plugin = pm.get_plugin(name)
    return sorted(h.name for h in (pm.get_hookcallers(plugin) or [])) if plugin is not None else []


def _classes_from(pm: pluggy.PluginManager, name: str, module: object) -> list:
    impls = [impl for impl in pm.hook.pybuild_register_buildpacks.get_hookimpls() if impl.plugin_name == name]
    if impls:
        return [cls for impl in impls for cls in (impl.function() or [])]
    if isinstance(module, ModuleType):  # a local file without the hook: its Buildpack subclasses
        return [obj for _, obj in sorted(vars(module).items()) if inspect.isclass(obj)
                and issubclass(obj, Buildpack) and obj is not Buildpack and obj.__module__ == module.__name__
                and obj.id]
    return []


def _instances(classes: list) -> list[Buildpack]:
    return [cls() if isinstance(cls, type) else cls for cls in classes]


def load(required: set[str] | None = None, warn: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)
         ) -> Registry:
    """Load every plugin of the `pybuild` entry-point group, then `PYBUILD_CNB_PATH`.

    A plugin that fails to load is reported as `Error loading plugin "NAME" (DIST VERSION): ...`
    and skipped, unless its name (or a buildpack id the user asked for that it would have
    provided, when known) is in `required`, which makes it an error.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm)
    disabled = _disabled()
    required = set(required or ())
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        if ep.name in disabled or "all" in disabled:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            hooks = _hook_names(pm, ep.name)
            for bp in _instances(_classes_from(pm, ep.name, None)):
                reg.add(bp, ep.name, dist, ep.value, hooks)
            for impl in pm.hook.pybuild_cnb_buildpack_dirs.get_hookimpls():
                if impl.plugin_name == ep.name:
                    for folder in impl.function() or []:
                        for bp_dir in _cnb_dirs(Path(folder)):
                            reg.add(_cnb(bp_dir), ep.name, dist, str(bp_dir), ["bin/detect", "bin/build"])
        except DuplicateBuildpackError:
            raise
        except Exception as exc:  # a broken third-party plugin must not take pybuild down
            what = exc.message if isinstance(exc, PybuildError) else f"{exc.__class__.__name__}: {exc}"
            msg = f'Error loading plugin "{ep.name}" ({dist}): {what}'
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            for bp_id in [i for i, info in reg.buildpacks.items() if info.plugin == ep.name]:
                del reg.buildpacks[bp_id]
            if ep.name in required:
                raise PybuildError(msg, hint=f"fix or reinstall {dist.split()[0]}, or take {ep.name!r} out of "
                                             "project.toml")
            reg.errors.append(msg)
            warn(msg)
    _load_cnb_path(reg, warn, disabled)
    return reg


def _cnb_dirs(path: Path) -> list[Path]:
    from .cnb import find_buildpack_dirs

    return find_buildpack_dirs(path)


def _cnb(path: Path) -> Buildpack:
    from .cnb import CNBBuildpack

    return CNBBuildpack(path)


def _load_cnb_path(reg: Registry, warn: Callable[[str], None], disabled: set[str]) -> None:
    for entry in (config.setting("PYBUILD_CNB_PATH") or "").split(os.pathsep):
        if not entry:
            continue
        for folder in _cnb_dirs(Path(entry)):
            try:
                bp = _cnb(folder)
            except PybuildError as exc:
                msg = f'Error loading plugin "{folder}" (PYBUILD_CNB_PATH): {exc.message}'
                reg.errors.append(msg)
                warn(msg)
                continue
            if bp.id in disabled or "all" in disabled:
                continue
            reg.add(bp, f"cnb:{bp.id}", "PYBUILD_CNB_PATH", str(folder), ["bin/detect", "bin/build"])


def _resolve(uri: str, root: Path) -> Path:
    if "://" in uri and not uri.startswith("file://"):
        raise PybuildError(f"buildpack uri {uri!r}: only local paths are supported",
                           hint="download the buildpack into the project, and name its folder: uri = \"./bp\"")
    path = Path(uri[7:] if uri.startswith("file://") else uri).expanduser()
    return (root / path).resolve() if not path.is_absolute() else path.resolve()


def _import_path(path: Path) -> ModuleType:
    """Import a .py file or a package folder under a private, path-derived module name."""
    tag = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    name = f"pybuild_local_{path.stem.replace('-', '_')}_{tag}"
    if name in sys.modules:
        return sys.modules[name]
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(name, path / "__init__.py", submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def add_path(reg: Registry, uri: str, root: Path, want_id: str | None = None) -> str:
    """Load the buildpack at `uri` (relative to the project folder) into `reg`; return its id.

    A folder with `buildpack.toml` is a Cloud Native Buildpack; a `.py` file or a folder with
    `__init__.py` is a Python buildpack (its `pybuild_register_buildpacks` hook, or else the
    `Buildpack` subclasses it defines). A failure here is an error: the user asked for it.
    """
    path = _resolve(uri, root)
    if not path.exists():
        raise PybuildError(f"project.toml names the buildpack {uri!r}, but {path} does not exist")
    if path.is_dir() and (path / "buildpack.toml").is_file():
        bps: list[Buildpack] = [_cnb(path)]
        plugin, hooks = f"cnb:{path}", ["bin/detect", "bin/build"]
    elif path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").is_file()):
        plugin = str(path)
        try:
            module = _import_path(path)
            if not reg.pm.has_plugin(plugin):
                reg.pm.register(module, name=plugin)
            hooks = _hook_names(reg.pm, plugin)
            bps = _instances(_classes_from(reg.pm, plugin, module))
            for bp in bps:
                if not isinstance(bp, Buildpack) or not bp.id:
                    raise TypeError(f"{bp!r} is not a Buildpack subclass with an id")
        except Exception as exc:
            raise PybuildError(f'Error loading plugin "{uri}" (local path {path}): {exc.__class__.__name__}: {exc}')
        if not bps:
            raise PybuildError(f"{path}: no buildpack found",
                               hint="define a Buildpack subclass with an `id`, or a pybuild_register_buildpacks hook")
    else:
        raise PybuildError(f"{path}: not a buildpack",
                           hint="name a folder with buildpack.toml (a Cloud Native Buildpack), a .py file, "
                                "or a Python package folder")
    if want_id:
        bps = [bp for bp in bps if bp.id == want_id] or bps
        if bps[0].id != want_id:
            raise PybuildError(f"project.toml asks for buildpack {want_id!r} at {uri!r}, "
                               f"but it provides {', '.join(b.id for b in bps)}")
    elif len(bps) > 1:
        raise PybuildError(f"{path} provides several buildpacks ({', '.join(b.id for b in bps)})",
                           hint="add `id = \"...\"` to the group entry to pick one")
    for bp in bps:
        reg.add(bp, plugin, "local path", str(path), hooks)
    return bps[0].id


def add_script(reg: Registry, member: dict, root: Path) -> str:
    """An inline buildpack (`[io.buildpacks.group.script]`): a CNB whose build runs the script."""
    from .cnb import inline_buildpack

    bp = inline_buildpack(member, root)
    reg.add(bp, f"inline:{bp.id}", "project.toml", str(root / "project.toml"), ["bin/build"])
    return bp.id
