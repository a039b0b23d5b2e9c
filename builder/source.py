"""The source tree as the build sees it: ignore rules applied, secrets and escaping links left out."""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pathspec

from .errors import PybuildError

ALWAYS_EXCLUDE = [".git/", ".hg/", ".svn/", ".pybuild/", "__pycache__/", "*.pyc", ".venv/", "node_modules/",
                  ".DS_Store", ".pytest_cache/", ".mypy_cache/"]
SECRETS = [".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc",
           ".pypirc", ".ssh/", ".aws/", ".gnupg/", "*.p12", "*.pfx", ".docker/config.json"]
IGNORE_FILES = [".dockerignore", ".gcloudignore"]


def _spec(lines: Iterable[str]) -> pathspec.PathSpec:
    return pathspec.PathSpec.from_lines("gitwildmatch", [l for l in lines if l.strip() and not l.startswith("#")])


@dataclass
class SourceTree:
    root: Path
    include: list[str] = field(default_factory=list)  # project.toml include: only these (plus overrides)
    exclude: list[str] = field(default_factory=list)  # project.toml exclude
    warnings: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.root.is_dir():
            raise PybuildError(f"{self.root}: no such folder", hint="pass the folder of the app to build")
        ignore_lines: list[str] = []
        for name in IGNORE_FILES:
            f = self.root / name
            if f.is_file():
                ignore_lines += f.read_text(encoding="utf-8", errors="replace").splitlines()
        self._ignore = _spec(ignore_lines + self.exclude)
        self._always = _spec(ALWAYS_EXCLUDE)
        self._secrets = _spec(SECRETS)
        self._include = _spec(self.include) if self.include else None
        negated = [l[1:].strip() for l in ignore_lines if l.startswith("!")]
        self._on_purpose = _spec(negated + self.include)

    def wanted(self, rel: str, is_dir: bool) -> bool:
        probe = rel + "/" if is_dir else rel
        if self._always.match_file(probe):
            return False
        if self._secrets.match_file(probe):
            if self._on_purpose.match_file(probe):
                self.warnings.append(f"{rel}: looks like a secret and is included on purpose; it will be in the image")
                return True
            return False
        if self._include is not None and not is_dir and not self._include.match_file(probe):
            return False
        return not self._ignore.match_file(probe)

    def files(self) -> Iterable[tuple[str, Path, os.stat_result]]:
        """(relative path, absolute path, lstat) of everything the build may see, sorted."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            keep_dirs = []
            for d in sorted(dirnames):
                rel = f"{rel_dir}/{d}" if rel_dir else d
                full = Path(dirpath) / d
                if full.is_symlink():
                    filenames.append(d)
                    continue
                if self.wanted(rel, True):
                    keep_dirs.append(d)
                    yield rel, full, full.lstat()
            dirnames[:] = keep_dirs
            for f in sorted(filenames):
                rel = f"{rel_dir}/{f}" if rel_dir else f
                full = Path(dirpath) / f
                if self.wanted(rel, False):
                    yield rel, full, full.lstat()

    def _link_inside(self, full: Path) -> bool:
        target = os.readlink(full)
        resolved = Path(os.path.normpath(os.path.join(os.path.dirname(full), target)))
        try:
            resolved.relative_to(self.root)
        except ValueError:
            return False
        return not os.path.isabs(target)

    def copy_to(self, dest: Path) -> None:
        """Copy the visible tree to `dest` (which must not exist). Links stay links, and only
        when they point inside the tree; others are left out with a warning."""
        dest.mkdir(parents=True)
        for rel, full, st in self.files():
            target = dest / rel
            if stat.S_ISLNK(st.st_mode):
                if self._link_inside(full):
                    os.symlink(os.readlink(full), target)
                else:
                    self.skipped_links.append(rel)
                    self.warnings.append(f"{rel}: symlink to {os.readlink(full)} points outside the source "
                                         "folder; left out of the image")
            elif stat.S_ISDIR(st.st_mode):
                target.mkdir(exist_ok=True)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(full, target)
                os.chmod(target, 0o755 if st.st_mode & 0o111 else 0o644)
