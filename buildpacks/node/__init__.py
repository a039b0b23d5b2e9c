"""The Node.js buildpack plugin: registers `NodeBuildpack` through the `pybuild` hook."""
from builder import hookimpl

from .buildpack import NodeBuildpack


@hookimpl
def pybuild_register_buildpacks():
    return [NodeBuildpack]
