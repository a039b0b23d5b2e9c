"""Tar archives of images: `oci-archive:FILE[:REF]` (a tarred OCI layout) and `docker-archive:FILE[:NAME:TAG]`
(the `docker save` format: manifest.json, repositories, the config and one uncompressed tar per layer).

Writes go to a temporary file beside the target and are renamed into place, so a killed build leaves the
previous archive intact. Reads verify every blob against its digest and keep the blobs in a BlobStore.
"""
from __future__ import annotations

import gzip
import json
import shutil
import tarfile
import time
from pathlib import Path
from typing import BinaryIO, Iterator

import zstandard

from ..errors import PybuildError
from .blobs import CHUNK, BlobStore, HashingWriter, atomic_write
from .image import (ANNOTATION_REF, DOCKER_LIST, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR,
                    OCI_MANIFEST, Image, canonical_json)
from .layout import LAYOUT_VERSION, StoredImage, select_platform, stored_image_from_blobs

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# -- helpers shared by both formats -----------------------------------------------------------------
def open_uncompressed(fh: BinaryIO) -> BinaryIO:
    """A reader of the tar inside `fh`, whatever its compression (gzip, zstd or none), found by magic bytes."""
    head = fh.read(4)
    fh.seek(0)
    if head[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[return-value]
    if head == ZSTD_MAGIC:
        return zstandard.ZstdDecompressor().stream_reader(fh)  # type: ignore[return-value]
    return fh


def uncompressed_size(path: Path) -> int:
    with open(path, "rb") as fh:
        inner = open_uncompressed(fh)
        total = 0
        for chunk in iter(lambda: inner.read(CHUNK), b""):
            total += len(chunk)
        return total


class _ArchiveWriter:
    """Adds members with normalised headers (fixed mtime, uid/gid 0, sorted by the caller)."""

    def __init__(self, fileobj: BinaryIO):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8")
        self.dirs: set[str] = set()

    def _info(self, name: str) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                info = self._info(d)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                self.tar.addfile(info)

    def add_bytes(self, name: str, data: bytes) -> None:
        self._parents(name)
        info = self._info(name)
        info.mode = 0o644
        info.size = len(data)
        self.tar.addfile(info, _BytesReader(data))

    def add_stream(self, name: str, fileobj: BinaryIO, size: int) -> None:
        self._parents(name)
        info = self._info(name)
        info.mode = 0o644
        info.size = size
        self.tar.addfile(info, fileobj)

    def add_file(self, name: str, path: Path) -> None:
        with open(path, "rb") as fh:
            self.add_stream(name, fh, path.stat().st_size)

    def close(self) -> None:
        self.tar.close()


class _BytesReader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else min(len(self.data), self.pos + n)
        out = bytes(self.data[self.pos:end])
        self.pos = end
        return out


STALE_SECONDS = 3600


def sweep_stale_temps(path: Path) -> None:
    """Remove what killed writers left beside `path` (`.NAME.*.tmp` older than an hour; younger ones may
    belong to a writer still running)."""
    now = time.time()
    for tmp in Path(path).parent.glob(f".{Path(path).name}.*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
        except OSError:
            pass


def _archive_cache() -> BlobStore:
    from ..config import cache_dir

    return BlobStore(cache_dir() / "blobs")


def _read_member(tar: tarfile.TarFile, name: str, source: str) -> bytes:
    try:
        member = tar.extractfile(name)
    except KeyError:
        member = None
    if member is None:
        raise PybuildError(f"{source}: the archive has no {name}",
                           hint="is this the right kind of archive (oci-archive vs docker-archive)?")
    return member.read()


def _open_tar(path: Path, source: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:")
    except FileNotFoundError:
        raise PybuildError(f"{source}: no such file", hint="check the path") from None
    except (tarfile.TarError, OSError) as exc:
        raise PybuildError(f"{source}: not a readable tar archive ({exc})") from exc


def _store_member(tar: tarfile.TarFile, name: str, store: BlobStore, expected: str | None, source: str) -> str:
    member = tar.extractfile(name)
    if member is None:
        raise PybuildError(f"{source}: {name} is missing from the archive")
    with store.writer(expected) as out:
        shutil.copyfileobj(member, out, CHUNK)  # type: ignore[misc]
    return out.digest


# -- oci-archive ----------------------------------------------------------------------------------
def write_oci_archive(image: Image, path: Path, ref: str | None) -> None:
    """A tar of an OCI layout holding `image` (tagged `ref`), written atomically."""
    cfg, manifest = image.config_bytes(), image.manifest_bytes()
    annotations = {ANNOTATION_REF: ref} if ref else None
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image.descriptor(annotations)]}
    sweep_stale_temps(path)
    blobs: dict[str, Path | bytes] = {image.config_digest: cfg, image.digest: manifest}
    for layer in image.layers:
        blobs[layer.digest] = layer.path
    with atomic_write(Path(path)) as fh:
        w = _ArchiveWriter(fh)
        for digest in sorted(blobs):
            name = "blobs/" + digest.replace(":", "/")
            item = blobs[digest]
            if isinstance(item, bytes):
                w.add_bytes(name, item)
            else:
                w.add_file(name, item)
        w.add_bytes("index.json", json.dumps(index, indent=2, sort_keys=True).encode() + b"\n")
        w.add_bytes("oci-layout", canonical_json(LAYOUT_VERSION))
        w.close()


def _read_oci_tar(tar: tarfile.TarFile, ref: str | None, platform: str, source: str) -> StoredImage:
    index = json.loads(_read_member(tar, "index.json", source))
    manifests = index.get("manifests", [])
    if ref:
        manifests = [m for m in manifests if m.get("annotations", {}).get(ANNOTATION_REF) == ref]
        if not manifests:
            raise PybuildError(f"{source}: no image tagged {ref!r} in the archive")
    if not manifests:
        raise PybuildError(f"{source}: the archive holds no image")
    store = _archive_cache()
    desc = manifests[-1]

    def blob(digest: str) -> bytes:
        if not store.has(digest):
            _store_member(tar, "blobs/" + digest.replace(":", "/"), store, digest, source)
        return store.path(digest).read_bytes()

    if desc.get("mediaType") in (OCI_INDEX, DOCKER_LIST):
        desc = select_platform(json.loads(blob(desc["digest"])), platform)
    manifest = json.loads(blob(desc["digest"]))
    blob(manifest["config"]["digest"])
    for layer in manifest.get("layers", []):
        blob(layer["digest"])
    return stored_image_from_blobs(store, desc["digest"], source)


def read_oci_archive(path: Path, ref: str | None = None, platform: str = "linux/amd64") -> StoredImage:
    source = f"oci-archive:{path}" + (f":{ref}" if ref else "")
    with _open_tar(Path(path), source) as tar:
        return _read_oci_tar(tar, ref, platform, source)


# -- docker-archive -------------------------------------------------------------------------------
def _docker_layers(image: Image) -> Iterator[tuple[str, object, int]]:
    for layer in image.layers:
        size = layer.uncompressed_size if layer.uncompressed_size >= 0 else uncompressed_size(layer.path)
        yield layer.diff_id.split(":", 1)[1], layer, size


def write_docker_archive(image: Image, path: Path, repo_tag: str | None) -> None:
    """`docker save` format, written atomically: what `docker load` and `podman load` accept."""
    cfg = image.config_bytes()
    config_name = image.config_digest.split(":", 1)[1] + ".json"
    layer_names: list[str] = []
    sweep_stale_temps(path)
    with atomic_write(Path(path)) as fh:
        w = _ArchiveWriter(fh)
        w.add_bytes(config_name, cfg)
        for hexd, layer, size in _docker_layers(image):
            name = f"{hexd}/layer.tar"
            layer_names.append(name)
            if name in w.dirs or hexd in w.dirs:
                continue  # the same layer twice in one image: stored once
            w.add_bytes(f"{hexd}/VERSION", b"1.0")
            with layer.open() as raw:  # type: ignore[attr-defined]
                inner = open_uncompressed(raw)
                check = _VerifyingReader(inner, layer.diff_id, str(path))  # type: ignore[attr-defined]
                w.add_stream(name, check, size)  # type: ignore[arg-type]
                check.verify()
        entry = {"Config": config_name, "RepoTags": [repo_tag] if repo_tag else [], "Layers": layer_names}
        w.add_bytes("manifest.json", json.dumps([entry]).encode())
        if repo_tag and image.layers:
            name, _, tag = repo_tag.rpartition(":")
            w.add_bytes("repositories",
                        json.dumps({name: {tag: image.layers[-1].diff_id.split(":", 1)[1]}}).encode())
        w.close()


class _VerifyingReader:
    """Passes reads through while hashing, so a layer whose content is not its diff_id is caught."""

    def __init__(self, inner: BinaryIO, expected: str, source: str):
        self.inner, self.expected, self.source = inner, expected, source
        self.hw = HashingWriter()

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.hw.write(data)
        return data

    def verify(self) -> None:
        if self.expected and self.hw.digest != self.expected:
            raise PybuildError(f"{self.source}: a layer's content {self.hw.digest} does not match "
                               f"its diff_id {self.expected}", hint="the blob cache may be damaged; rebuild")


def read_docker_archive(path: Path, name: str | None = None, platform: str = "linux/amd64") -> StoredImage:
    """Read a `docker save` archive (or the OCI layout newer Docker versions put inside it)."""
    source = f"docker-archive:{path}" + (f":{name}" if name else "")
    with _open_tar(Path(path), source) as tar:
        entries = json.loads(_read_member(tar, "manifest.json", source))
        if not isinstance(entries, list) or not entries:
            raise PybuildError(f"{source}: manifest.json lists no image")
        entry = entries[0]
        if name:
            # tools may qualify names with a registry host: `app:1` matches `HOST/app:1` as well
            wanted = [e for e in entries
                      if any(t == name or t.endswith("/" + name) for t in (e.get("RepoTags") or []))]
            if not wanted:
                tags = sorted(t for e in entries for t in (e.get("RepoTags") or []))
                raise PybuildError(f"{source}: no image named {name!r}",
                                   hint=f"names here: {', '.join(tags) or 'none'}")
            entry = wanted[0]
        store = _archive_cache()
        config_name = entry.get("Config", "")
        named = config_name.rsplit("/", 1)[-1].removesuffix(".json")
        expected = "sha256:" + named if len(named) == 64 and all(c in "0123456789abcdef" for c in named) else None
        config_digest = _store_member(tar, config_name, store, expected, source)
        config_bytes = store.path(config_digest).read_bytes()
        config = json.loads(config_bytes)
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        layers = []
        for i, member in enumerate(entry.get("Layers", [])):
            digest = _store_member(tar, member, store, None, source)
            with open(store.path(digest), "rb") as fh:
                compressed = fh.read(2) == GZIP_MAGIC
            if not compressed and i < len(diff_ids) and diff_ids[i] != digest:
                raise PybuildError(f"{source}: layer {member} is {digest}, the config says {diff_ids[i]}")
            layers.append({"mediaType": OCI_LAYER_GZIP if compressed else OCI_LAYER_TAR,
                           "digest": digest, "size": store.path(digest).stat().st_size})
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
                "layers": layers}
    mdigest = store.put_bytes(canonical_json(manifest))
    return stored_image_from_blobs(store, mdigest, source)
