"""pybuild: daemonless, buildpack-style builder of minimal, reproducible OCI images.

Public API for plugin authors: `Buildpack`, `DetectResult`, `DetectContext`, `BuildContext`,
`hookimpl`. Everything else is private.
"""
__version__ = "0.1.0"

from .buildpack import BuildContext, Buildpack, DetectContext, DetectResult, Process  # noqa: E402,F401
from .hookspecs import hookimpl  # noqa: E402,F401
