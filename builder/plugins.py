"""Finding buildpacks: entry points in the `pybuild` group (built-ins included), loaded safely."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from .buildpack import Buildpack
from .errors import PybuildError

GROUP = "pybuild"


@dataclass
class BuildpackInfo:
    buildpack: Buildpack
    plugin: str
    dist: str
    origin: str


@dataclass
class Registry:
    pm: pluggy.PluginManager
    buildpacks: dict[str, BuildpackInfo] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def get(self, bp_id: str) -> Buildpack:
        if bp_id not in self.buildpacks:
            raise PybuildError(f"no buildpack with id {bp_id!r}",
                               hint=f"installed: {', '.join(sorted(self.buildpacks)) or 'none'}")
        return self.buildpacks[bp_id].buildpack


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("PYBUILD_DISABLE_PLUGINS", "").split(",") if n.strip()}


def load(required: set[str] | None = None, warn=lambda msg: print(msg, file=sys.stderr)) -> Registry:
    """Load every plugin of the `pybuild` entry-point group.

    A plugin that fails to load is reported as `Error loading plugin "NAME" (DIST VERSION): ...`
    and skipped, unless it is in `required`, which makes it an error.
    """
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    reg = Registry(pm)
    disabled = _disabled()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else "unknown distribution"
        if ep.name in disabled or "all" in disabled:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
            classes = [cls for impl in pm.hook.pybuild_register_buildpacks.get_hookimpls()
                       if impl.plugin_name == ep.name for cls in (impl.function() or [])]
            for cls in classes:
                bp = cls() if isinstance(cls, type) else cls
                if not isinstance(bp, Buildpack) or not bp.id:
                    raise TypeError(f"{cls!r} is not a Buildpack subclass with an id")
                if bp.id in reg.buildpacks:
                    other = reg.buildpacks[bp.id]
                    raise PybuildError(f"two buildpacks have the id {bp.id!r}: plugin {other.plugin!r} "
                                       f"({other.dist}) and plugin {ep.name!r} ({dist})",
                                       hint="uninstall one, or switch one off with PYBUILD_DISABLE_PLUGINS=NAME")
                reg.buildpacks[bp.id] = BuildpackInfo(bp, ep.name, dist, ep.value)
        except PybuildError:
            raise
        except Exception as exc:  # a broken third-party plugin must not take pybuild down
            msg = f'Error loading plugin "{ep.name}" ({dist}): {exc.__class__.__name__}: {exc}'
            if pm.has_plugin(ep.name):
                pm.unregister(name=ep.name)
            if required and ep.name in required:
                raise PybuildError(msg)
            reg.errors.append(msg)
            warn(msg)
    return reg
