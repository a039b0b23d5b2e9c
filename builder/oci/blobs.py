"""Content-addressed blob storage with atomic writes, and hashing helpers."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import VerificationError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[BinaryIO]:
    """Write to a temporary file beside `path`, fsync, then rename into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the block: concurrent builds sharing one
    cache do a piece of work once, and never replace a folder another build is using."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Fill a temporary folder beside `dest`; on success it replaces `dest` in one rename,
    on failure it is removed. Readers never see a half-made folder."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if dest.exists():
            if dest.is_dir() and not any(dest.iterdir()):
                dest.rmdir()
            else:
                shutil.rmtree(dest)
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class HashingWriter:
    """A file-like sink that hashes and counts what passes through, forwarding to `inner`."""

    def __init__(self, inner: BinaryIO | None = None):
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        if self.inner is not None:
            self.inner.write(data)
        return len(data)

    def flush(self) -> None:
        if self.inner is not None:
            self.inner.flush()

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


class BlobStore:
    """`root/sha256/<hex>` files, written atomically, verified on the way in."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algo, _, hexd = digest.partition(":")
        if algo != "sha256" or len(hexd) != 64:
            raise VerificationError(f"unsupported digest {digest!r}")
        return self.root / algo / hexd

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_bytes(data)
        if not self.has(digest):
            with atomic_write(self.path(digest)) as fh:
                fh.write(data)
        return digest

    def put_file(self, src: Path, expected: str | None = None) -> str:
        digest = sha256_file(src)
        if expected and digest != expected:
            raise VerificationError(f"{src}: digest {digest} does not match the expected {expected}")
        if not self.has(digest):
            dest = self.path(digest)
            with atomic_write(dest) as fh, open(src, "rb") as inp:
                shutil.copyfileobj(inp, fh, CHUNK)
        return digest

    @contextmanager
    def writer(self, expected: str | None = None) -> Iterator[HashingWriter]:
        """Stream a blob in; it lands under its digest only when complete (and matching `expected`)."""
        fd, tmp = tempfile.mkstemp(prefix=".incoming.", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as fh:
                hw = HashingWriter(fh)
                yield hw
                fh.flush()
                os.fsync(fh.fileno())
            if expected and hw.digest != expected:
                raise VerificationError(f"blob digest {hw.digest} does not match the expected {expected}")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path(hw.digest))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def gzip_writer(fileobj: BinaryIO, level: int = 6) -> gzip.GzipFile:
    """A gzip stream with no file name and no time in its header, so output depends on content only."""
    return gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, compresslevel=level, mtime=0)


def link_or_copy(src: Path, dest: Path) -> None:
    """Place `src` at `dest` atomically: a hard link when on the same file system, else a copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as inp, open(tmp, "wb") as out:
            shutil.copyfileobj(inp, out, CHUNK)
            out.flush()
            os.fsync(out.fileno())
    os.replace(tmp, dest)
