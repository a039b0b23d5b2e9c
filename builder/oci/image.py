"""Immutable Layer and Image values (go-containerregistry style: changes return new values)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from .blobs import BlobStore, HashingWriter, gzip_writer, sha256_bytes
from .tarball import TarWriter

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

ANNOTATION_REF = "org.opencontainers.image.ref.name"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Layer:
    """One compressed layer blob stored in a BlobStore."""

    digest: str
    size: int
    diff_id: str
    uncompressed_size: int
    store: BlobStore = field(compare=False, repr=False)
    media_type: str = OCI_LAYER_GZIP
    created_by: str = ""  # history entry: which stack or buildpack made it
    comment: str = ""

    @property
    def path(self) -> Path:
        return self.store.path(self.digest)

    def open(self) -> BinaryIO:
        return open(self.path, "rb")

    def with_history(self, created_by: str, comment: str = "") -> "Layer":
        return replace(self, created_by=created_by, comment=comment)

    def to_json(self) -> dict:
        return {"digest": self.digest, "size": self.size, "diff_id": self.diff_id,
                "uncompressed_size": self.uncompressed_size, "media_type": self.media_type,
                "created_by": self.created_by, "comment": self.comment}

    @classmethod
    def from_json(cls, data: dict, store: BlobStore) -> "Layer":
        return cls(data["digest"], data["size"], data["diff_id"], data["uncompressed_size"], store,
                   data.get("media_type", OCI_LAYER_GZIP), data.get("created_by", ""), data.get("comment", ""))

    @classmethod
    def from_tar_writer(cls, tw: TarWriter, store: BlobStore, created_by: str = "", comment: str = "",
                        level: int = 6) -> "Layer":
        """Serialise `tw` as a gzip layer: one pass computes diff_id, digest and sizes."""
        with store.writer() as compressed:
            gz = gzip_writer(compressed, level)
            raw = HashingWriter(gz)
            tw.write(raw)  # type: ignore[arg-type]
            gz.close()
        return cls(compressed.digest, compressed.size, raw.digest, raw.size, store, OCI_LAYER_GZIP,
                   created_by, comment)


@dataclass(frozen=True)
class Image:
    """A single-platform image: its config (without rootfs/history, which come from the layers) and layers."""

    config: dict
    layers: tuple[Layer, ...] = ()
    annotations: dict = field(default_factory=dict)
    created: str = "1980-01-01T00:00:00Z"
    architecture: str = "amd64"
    os: str = "linux"
    variant: str | None = None

    def with_layers(self, *layers: Layer) -> "Image":
        return replace(self, layers=self.layers + tuple(layers))

    def with_config(self, **changes: Any) -> "Image":
        cfg = dict(self.config)
        cfg.update(changes)
        return replace(self, config=cfg)

    def config_json(self) -> dict:
        doc: dict[str, Any] = {
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in self.layers]},
            "history": [
                {"created": self.created, "created_by": l.created_by or "pybuild",
                 **({"comment": l.comment} if l.comment else {})}
                for l in self.layers
            ],
        }
        if self.variant:
            doc["variant"] = self.variant
        return doc

    def config_bytes(self) -> bytes:
        return canonical_json(self.config_json())

    @property
    def config_digest(self) -> str:
        return sha256_bytes(self.config_bytes())

    def manifest_json(self) -> dict:
        cfg = self.config_bytes()
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256_bytes(cfg), "size": len(cfg)},
            "layers": [{"mediaType": l.media_type, "digest": l.digest, "size": l.size} for l in self.layers],
        }
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc

    def manifest_bytes(self) -> bytes:
        return canonical_json(self.manifest_json())

    @property
    def digest(self) -> str:
        return sha256_bytes(self.manifest_bytes())

    @property
    def platform(self) -> dict:
        p = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            p["variant"] = self.variant
        return p

    def descriptor(self, annotations: dict | None = None) -> dict:
        m = self.manifest_bytes()
        d: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": sha256_bytes(m), "size": len(m),
                             "platform": self.platform}
        if annotations:
            d["annotations"] = annotations
        return d
