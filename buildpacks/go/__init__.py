"""The Go buildpack plugin: registers `GoBuildpack` through the `pybuild` hook."""
from builder import hookimpl

from .buildpack import GoBuildpack


@hookimpl
def pybuild_register_buildpacks():
    return [GoBuildpack]
