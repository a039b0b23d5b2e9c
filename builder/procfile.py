"""Procfiles (`name: command` per line), shared by every buildpack that honours them."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from .errors import PybuildError


def parse_procfile(path: Path) -> dict[str, list[str]]:
    """{process type: argv}. Commands are split as a shell would split words; there is no shell
    in the image, so `$VAR` is expanded by each runtime's launcher at start."""
    out: dict[str, list[str]] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PybuildError(f"{Path(path).name}: not UTF-8 text")
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z0-9_-]+)\s*:\s*(.+)$", line)
        if not m:
            raise PybuildError(f"{Path(path).name}, line {n}: expected `name: command`",
                               hint="e.g. `web: gunicorn app:app`")
        try:
            out[m.group(1)] = shlex.split(m.group(2))
        except ValueError as exc:
            raise PybuildError(f"{Path(path).name}, line {n}: {exc}")
    return out
