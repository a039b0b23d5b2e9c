"""The pybuild plugin interface (pluggy). Hooks are prefixed `pybuild_`.

A plugin is a module or object with functions decorated by `builder.hookimpl`, exposed in
the `pybuild` entry-point group of a Python distribution. The built-in buildpacks are
registered the same way.
"""
from __future__ import annotations

from pathlib import Path

import pluggy

hookspec = pluggy.HookspecMarker("pybuild")
hookimpl = pluggy.HookimplMarker("pybuild")


@hookspec
def pybuild_register_buildpacks() -> list[type]:
    """Return the buildpack classes this plugin provides (subclasses of `builder.Buildpack`).

    pybuild instantiates each class once and runs its `detect` and `build` itself; the hook
    is only called to learn what exists. Two buildpacks with the same `id` are an error.
    """


@hookspec
def pybuild_stack_dirs() -> list[Path]:
    """Return folders holding extra stack definitions (`NAME.toml` + `NAME.lock`)."""
