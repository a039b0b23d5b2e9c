"""Helpers shared by the benchmarks: run pybuild as a user would, time it, format sizes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pybuild_json(*args: str, env: dict | None = None) -> tuple[dict, float]:
    """Run `pybuild build ... --json`; return (summary, wall seconds)."""
    full = dict(os.environ)
    full.update(env or {})
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "builder.cli", "build", *args, "--json"], env=full,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"pybuild failed:\n{proc.stderr}")
    return json.loads(proc.stdout), seconds


def mb(n: int | float) -> str:
    return f"{n / 1e6:7.2f} MB"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:6.3f}x" if baseline else "   n/a"
