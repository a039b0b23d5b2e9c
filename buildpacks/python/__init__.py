"""The Python buildpack plugin: registers `PythonBuildpack` through the `pybuild` hook."""
from builder import hookimpl

from .buildpack import PythonBuildpack


@hookimpl
def pybuild_register_buildpacks():
    return [PythonBuildpack]
