"""The interface every package source (Debian archive, APK repository) implements."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

from ..oci.tarball import TarWriter
from .resolve import PackageRecord


class PackageSource(Protocol):
    """A signed package repository a stack is assembled from.

    `definition` is the stack's `[source]` table. Implementations verify the repository's
    signature chain in `load_index`, verify every package file against the lock entry in
    `fetch`, and never leave an unverified file in the cache.
    """

    kind: str

    def load_index(self) -> tuple[list[PackageRecord], Callable[[str, str], int], dict[str, int]]:
        """Fetch and verify the index: (records, version compare, suite rank)."""

    def lock_entry(self, record: PackageRecord) -> dict:
        """The lockfile entry for a resolved record (name, version, architecture, digest, size, ...)."""

    def fetch(self, entry: dict) -> Path:
        """Download (or take from the cache) the package file of a lock entry, verified."""

    def unpack(self, path: Path, entry: dict, tw: TarWriter, keep: Callable[[str], bool]) -> None:
        """Add the package's files (those `keep(path)` accepts) and its scanner record to `tw`."""

    def finish(self, tw: TarWriter, entries: list[dict]) -> None:
        """Write whatever spans all packages (e.g. /lib/apk/db/installed)."""
