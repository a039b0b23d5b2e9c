"""pybuild-static-site: registers `StaticSiteBuildpack` through the `pybuild` hook."""
from builder import hookimpl

from .buildpack import StaticSiteBuildpack


@hookimpl
def pybuild_register_buildpacks():
    return [StaticSiteBuildpack]
