"""pybuild's built-in buildpacks. Each is registered through the `pybuild` entry-point group,
exactly as a third-party plugin would be."""
