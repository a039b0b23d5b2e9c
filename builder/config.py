"""Process-wide settings read in exactly one place: cache dir, SOURCE_DATE_EPOCH, user settings."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

FIXED_EPOCH = 315532800  # 1980-01-01T00:00:00Z: the oldest time a zip/wheel can carry


def cache_dir() -> Path:
    """Where downloads, stack layers and build caches live (`PYBUILD_CACHE_DIR` overrides)."""
    env = os.environ.get("PYBUILD_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "pybuild"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def source_date_epoch(source: Path | None = None) -> int:
    """The build time: SOURCE_DATE_EPOCH, else the commit time of a clean git checkout, else a fixed epoch."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            return int(env)
        except ValueError:
            from .errors import UsageError

            raise UsageError(f"SOURCE_DATE_EPOCH={env!r} is not a whole number of seconds")
    if source is not None and (source / ".git").exists():
        try:
            dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain"],
                                   capture_output=True, text=True, timeout=30)
            if dirty.returncode == 0 and not dirty.stdout.strip():
                ts = subprocess.run(["git", "-C", str(source), "log", "-1", "--format=%ct"],
                                    capture_output=True, text=True, timeout=30)
                if ts.returncode == 0 and ts.stdout.strip().isdigit():
                    return int(ts.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return FIXED_EPOCH


def setting(name: str, env: dict[str, str] | None = None, default: str | None = None) -> str | None:
    """A user setting: `-e NAME=VALUE` first, then the process environment."""
    if env and name in env:
        return env[name]
    return os.environ.get(name, default)
