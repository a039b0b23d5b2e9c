"""The source tree as the build sees it: ignore rules applied, secrets and escaping links left out."""
from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pathspec

from .errors import PybuildError

ALWAYS_EXCLUDE = [".git/", ".hg/", ".svn/", ".pybuild/", "__pycache__/", "*.pyc", ".venv/", "node_modules/",
                  ".DS_Store", ".pytest_cache/", ".mypy_cache/"]
SECRETS = [".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", ".netrc",
           ".pypirc", ".npmrc", ".git-credentials", ".ssh/", ".aws/", ".gnupg/", "*.p12", "*.pfx", "*.jks",
           "*.keystore", ".docker/config.json"]
IGNORE_FILES = [".dockerignore", ".gcloudignore"]
KEY_MARKERS = (b"PRIVATE KEY-----", b"PRIVATE KEY BLOCK-----")  # PEM / OpenSSH / PGP private keys
SNIFF_BYTES = 4096


def _spec(lines: Iterable[str]) -> pathspec.PathSpec:
    return pathspec.GitIgnoreSpec.from_lines([l for l in lines if l.strip() and not l.startswith("#")])


def _read_ignore(root: Path, name: str, seen: set[str]) -> list[str]:
    """An ignore file's lines; `.gcloudignore`'s `#!include:FILE` pulls in another (e.g. .gitignore)."""
    path = root / name
    if name in seen or not path.is_file() or path.is_symlink():
        return []
    seen.add(name)
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#!include:"):
            lines += _read_ignore(root, line[len("#!include:"):].strip(), seen)
        else:
            lines.append(line)
    return lines


def looks_like_private_key(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return False
    return b"-----BEGIN" in head and any(m in head for m in KEY_MARKERS)


@dataclass
class SourceTree:
    root: Path
    include: list[str] = field(default_factory=list)  # project.toml include: only these (plus overrides)
    exclude: list[str] = field(default_factory=list)  # project.toml exclude
    warnings: list[str] = field(default_factory=list)
    skipped_links: list[str] = field(default_factory=list)
    secrets_left_out: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.root.is_dir():
            raise PybuildError(f"{self.root}: no such folder", hint="pass the folder of the app to build")
        ignore_lines: list[str] = []
        seen: set[str] = set()
        for name in IGNORE_FILES:
            ignore_lines += _read_ignore(self.root, name, seen)
        self._ignore = _spec(ignore_lines + self.exclude)
        self._always = _spec(ALWAYS_EXCLUDE)
        self._secrets = _spec(SECRETS)
        self._include = _spec(self.include) if self.include else None
        negated = [l[1:].strip() for l in ignore_lines if l.startswith("!")]
        self._on_purpose = _spec(negated + self.include)

    def _warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def wanted(self, rel: str, is_dir: bool, full: Path | None = None) -> bool:
        """Whether the build sees `rel`; `full` (a regular file) is also checked for key material."""
        probe = rel + "/" if is_dir else rel
        if self._always.match_file(probe):
            return False
        if self._include is not None and not is_dir and not self._include.match_file(probe):
            return False
        if self._ignore.match_file(probe):
            return False
        by_name = self._secrets.match_file(probe)
        if by_name or (full is not None and looks_like_private_key(full)):
            if self._on_purpose.match_file(probe):
                self._warn(f"{rel}: looks like a secret and is included on purpose; it will be in the image")
                return True
            self.secrets_left_out.append(rel)
            if not by_name:
                self._warn(f"{rel}: holds a private key; left out of the image (to ship it anyway, name it "
                           "in project.toml include or with !PATTERN in .dockerignore)")
            return False
        return True

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
                st = full.lstat()
                if self.wanted(rel, False, full if stat.S_ISREG(st.st_mode) else None):
                    yield rel, full, st

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
                    self._warn(f"{rel}: symlink to {os.readlink(full)} points outside the source "
                               "folder; left out of the image")
            elif stat.S_ISDIR(st.st_mode):
                target.mkdir(exist_ok=True)
            elif stat.S_ISREG(st.st_mode):
                shutil.copyfile(full, target)
                os.chmod(target, 0o755 if st.st_mode & 0o111 else 0o644)
