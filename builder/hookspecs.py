"""The pybuild plugin interface (pluggy). Hooks are prefixed `pybuild_`.

A plugin is a module (or object) with functions decorated by `builder.hookimpl`, exposed in the
`pybuild` entry-point group of a Python distribution:

    [project.entry-points.pybuild]
    static-site = "pybuild_static_site"      # name it after the buildpack id

The built-in buildpacks are registered the same way. Hooks are called once, while plugins are
loaded, only to learn what exists: pybuild then runs each buildpack's `detect` and `build`
itself, in the order groups it resolved. See docs/plugins.md.
"""
from __future__ import annotations

from pathlib import Path

import pluggy

hookspec = pluggy.HookspecMarker("pybuild")
hookimpl = pluggy.HookimplMarker("pybuild")


@hookspec
def pybuild_register_buildpacks() -> list[type]:
    """Return the buildpack classes this plugin provides (subclasses of `builder.Buildpack`).

    pybuild instantiates each class once (no arguments) and runs its `detect(ctx)` and
    `build(ctx)` itself. Each class needs a unique `id`; two buildpacks with the same id are an
    error. Raising here, or returning something that is not a Buildpack class, is reported as
    `Error loading plugin "NAME" (DIST VERSION): ...` and the plugin is skipped.
    """


@hookspec
def pybuild_cnb_buildpack_dirs() -> list[Path]:
    """Return folders holding Cloud Native Buildpacks (`buildpack.toml` + `bin/`) this plugin ships.

    Each folder is a buildpack, or holds buildpacks one or two levels down (`<id>/` or
    `<id>/<version>/`). They are registered like `PYBUILD_CNB_PATH` entries, under this
    plugin's name and distribution, so a platform team can distribute CNB buildpacks with pip.
    """
