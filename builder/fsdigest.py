"""Content digests of folders, for cache keys that follow what is in a tree, not where it is."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def folder_digest(root: Path) -> str:
    """sha256 over the relative paths, executable bits, file bytes and symlink targets under
    `root`, walked in sorted order: equal for equal trees wherever they lie and whatever their mtimes."""
    root = Path(root)
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            mode = path.lstat().st_mode
            h.update(f"{path.relative_to(root).as_posix()}\0{mode & 0o111:o}\0".encode())
            if path.is_symlink():
                h.update(b"link\0" + os.readlink(path).encode())
            elif path.is_file():
                with open(path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()
