"""Stacks: run images (what ships) and build environments, from package archives or base images."""
