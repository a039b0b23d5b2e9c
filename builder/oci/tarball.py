"""A normalising tar writer: sorted entries, fixed owner and mtime, normalised modes, no xattrs.

Same inputs give byte-identical tars whatever the umask, the file mtimes or the path of the source.
"""
from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable

from ..errors import PybuildError


@dataclass
class Entry:
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    data: bytes | None = None
    source: Path | None = None  # file content read from here at write time
    target: str = ""  # symlink / hardlink target
    size: int = 0


def normalise_path(path: str) -> str:
    p = PurePosixPath("/" + path.lstrip("/"))
    parts: list[str] = []
    for part in p.parts[1:]:
        if part in ("", "."):
            continue
        if part == "..":
            raise PybuildError(f"path {path!r} climbs out of the layer root")
        parts.append(part)
    return "/".join(parts)


class TarWriter:
    """Collect entries, then write them sorted and normalised."""

    def __init__(self, mtime: int = 0, uid: int = 0, gid: int = 0):
        self.mtime = mtime
        self.uid = uid
        self.gid = gid
        self.entries: dict[str, Entry] = {}

    # -- adding ------------------------------------------------------------------------------
    def _parents(self, path: str) -> None:
        parent = PurePosixPath(path).parent
        chain = []
        while str(parent) not in (".", "/", ""):
            chain.append(str(parent))
            parent = parent.parent
        for p in reversed(chain):
            if p not in self.entries:
                self.entries[p] = Entry("dir", 0o755, self.uid, self.gid)

    def _put(self, path: str, entry: Entry) -> None:
        path = normalise_path(path)
        if not path:
            return
        self._parents(path)
        self.entries[path] = entry

    def add_dir(self, path: str, mode: int = 0o755, uid: int | None = None, gid: int | None = None) -> None:
        self._put(path, Entry("dir", mode, self.uid if uid is None else uid, self.gid if gid is None else gid))

    def add_bytes(self, path: str, data: bytes, mode: int = 0o644, uid: int | None = None, gid: int | None = None) -> None:
        self._put(path, Entry("file", mode, self.uid if uid is None else uid, self.gid if gid is None else gid,
                              data=data, size=len(data)))

    def add_file(self, path: str, source: Path, mode: int | None = None, uid: int | None = None,
                 gid: int | None = None) -> None:
        st = source.stat()
        if mode is None:
            mode = 0o755 if st.st_mode & 0o111 else 0o644
        self._put(path, Entry("file", mode, self.uid if uid is None else uid, self.gid if gid is None else gid,
                              source=source, size=st.st_size))

    def add_symlink(self, path: str, target: str) -> None:
        self._put(path, Entry("symlink", 0o777, self.uid, self.gid, target=target))

    def add_hardlink(self, path: str, target: str) -> None:
        self._put(path, Entry("hardlink", 0o644, self.uid, self.gid, target=normalise_path(target)))

    def remove(self, path: str) -> None:
        path = normalise_path(path)
        for key in [k for k in self.entries if k == path or k.startswith(path + "/")]:
            del self.entries[key]

    def add_tree(self, root: Path, prefix: str = "", *, uid: int | None = None, gid: int | None = None,
                 keep: Callable[[str], bool] | None = None, writable: bool = False) -> None:
        """Add everything below `root` at `prefix`. Symlinks are kept as links (never followed).

        Modes are normalised: directories and executables 0755, other files 0644
        (0775/0664 style group-write is dropped); `writable` keeps the owner's write bit only.
        """
        root = Path(root)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(dirnames) + sorted(filenames):
                full = Path(dirpath) / name
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if keep is not None and not keep(rel):
                    continue
                dest = f"{prefix}/{rel}" if prefix else rel
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(dest, os.readlink(full))
                elif stat.S_ISDIR(st.st_mode):
                    self.add_dir(dest, 0o755, uid, gid)
                elif stat.S_ISREG(st.st_mode):
                    self.add_file(dest, full, 0o755 if st.st_mode & 0o111 else 0o644, uid, gid)
                # sockets, fifos and devices are never put in a layer

    # -- writing -----------------------------------------------------------------------------
    def paths(self) -> Iterable[str]:
        return sorted(self.entries)

    def write(self, fileobj: BinaryIO) -> None:
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8") as tar:
            for path in sorted(self.entries):
                e = self.entries[path]
                info = tarfile.TarInfo(path)
                info.mtime = self.mtime
                info.uid, info.gid = e.uid, e.gid
                info.uname = info.gname = ""
                info.mode = e.mode
                if e.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif e.kind == "symlink":
                    info.type = tarfile.SYMTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                elif e.kind == "hardlink":
                    info.type = tarfile.LNKTYPE
                    info.linkname = e.target
                    tar.addfile(info)
                elif e.data is not None:
                    info.size = len(e.data)
                    tar.addfile(info, io.BytesIO(e.data))
                else:
                    assert e.source is not None
                    with open(e.source, "rb") as fh:
                        info.size = os.fstat(fh.fileno()).st_size
                        tar.addfile(info, fh)
