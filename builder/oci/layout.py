"""OCI image layout (`oci:DIR[:REF]`): write atomically without losing other images; read by ref."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import PybuildError
from .blobs import BlobStore, atomic_dir, atomic_write, link_or_copy, sha256_bytes
from .image import (ANNOTATION_REF, DOCKER_LAYER_GZIP, DOCKER_LIST, OCI_INDEX, OCI_LAYER_GZIP, Image, Layer,
                    canonical_json)

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def _write_blobs(image: Image, root: Path) -> None:
    store = BlobStore(root / "blobs")
    for layer in image.layers:
        dest = store.path(layer.digest)
        if not dest.exists():
            link_or_copy(layer.path, dest)
    store.put_bytes(image.config_bytes())
    store.put_bytes(image.manifest_bytes())


def _load_index(root: Path) -> dict:
    index_path = root / "index.json"
    if not index_path.exists():
        return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    try:
        return json.loads(index_path.read_text())
    except (OSError, ValueError) as exc:
        raise PybuildError(f"{index_path}: not a readable OCI index ({exc})",
                           hint="point -o oci: at an empty folder or a valid OCI image layout")


def write_layout(image: Image, directory: Path, ref: str | None) -> None:
    """Add `image` to the layout at `directory` (created if missing), tagged `ref`.

    A new folder is assembled beside the target and renamed into place; an existing layout
    gets its blobs first and its index.json replaced atomically last, so a build killed at
    any moment leaves the previous image readable.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise PybuildError(f"{directory} exists and is not a folder", hint="choose another -o oci: path")
    fresh = not directory.exists() or not any(directory.iterdir())
    if fresh:
        with atomic_dir(directory) as tmp:
            _write_into(image, tmp, ref)
    else:
        if not (directory / "oci-layout").exists():
            raise PybuildError(f"{directory} is not empty and is not an OCI image layout",
                               hint="choose an empty or new folder for -o oci:")
        _write_into(image, directory, ref)


def _write_into(image: Image, root: Path, ref: str | None) -> None:
    _write_blobs(image, root)
    with atomic_write(root / "oci-layout") as fh:
        fh.write(canonical_json(LAYOUT_VERSION))
    index = _load_index(root)
    annotations = {ANNOTATION_REF: ref} if ref else None
    manifests = [m for m in index.get("manifests", [])
                 if not (ref and m.get("annotations", {}).get(ANNOTATION_REF) == ref)]
    manifests.append(image.descriptor(annotations))
    index["manifests"] = manifests
    index.setdefault("schemaVersion", 2)
    index["mediaType"] = OCI_INDEX
    with atomic_write(root / "index.json") as fh:
        fh.write(json.dumps(index, indent=2, sort_keys=True).encode() + b"\n")


@dataclass
class StoredImage:
    """An image read from somewhere (a layout, an archive, a registry): raw manifest and config."""

    manifest: dict
    manifest_bytes: bytes
    config: dict
    config_bytes: bytes
    layers: list[Layer]
    source: str = ""

    @property
    def digest(self) -> str:
        return sha256_bytes(self.manifest_bytes)

    def to_image(self) -> Image:
        """As an Image value that can be extended with more layers (history kept per layer)."""
        hist = [h for h in self.config.get("history", []) if not h.get("empty_layer")]
        layers = []
        for i, layer in enumerate(self.layers):
            created_by = hist[i].get("created_by", "") if i < len(hist) else ""
            comment = hist[i].get("comment", "") if i < len(hist) else ""
            layer = layer.with_history(created_by or f"base image {self.source}", comment)
            if layer.media_type == DOCKER_LAYER_GZIP:  # the same bytes, named as OCI names them
                layer = replace(layer, media_type=OCI_LAYER_GZIP)
            layers.append(layer)
        return Image(config=dict(self.config.get("config", {})), layers=tuple(layers),
                     created=self.config.get("created", "1980-01-01T00:00:00Z"),
                     architecture=self.config.get("architecture", "amd64"), os=self.config.get("os", "linux"),
                     variant=self.config.get("variant"))


def stored_image_from_blobs(store: BlobStore, manifest_digest: str, source: str = "") -> StoredImage:
    mpath = store.path(manifest_digest)
    if not mpath.exists():
        raise PybuildError(f"{source}: manifest {manifest_digest} is missing from the blobs")
    mbytes = mpath.read_bytes()
    if sha256_bytes(mbytes) != manifest_digest:
        raise PybuildError(f"{source}: manifest blob {manifest_digest} does not match its digest")
    manifest = json.loads(mbytes)
    cdesc = manifest["config"]
    cbytes = store.path(cdesc["digest"]).read_bytes()
    if sha256_bytes(cbytes) != cdesc["digest"]:
        raise PybuildError(f"{source}: config blob {cdesc['digest']} does not match its digest")
    config = json.loads(cbytes)
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    layers = []
    for i, desc in enumerate(manifest.get("layers", [])):
        layers.append(Layer(desc["digest"], desc["size"], diff_ids[i] if i < len(diff_ids) else "",
                            -1, store, desc["mediaType"]))
    return StoredImage(manifest, mbytes, config, cbytes, layers, source)


def select_platform(index: dict, platform: str = "linux/amd64") -> dict:
    """Pick the manifest descriptor for `platform` (os/arch[/variant]) from an index."""
    want = platform.split("/")
    for desc in index.get("manifests", []):
        p = desc.get("platform")
        if not p:
            continue
        have = [p.get("os"), p.get("architecture")] + ([p["variant"]] if p.get("variant") else [])
        if have[: len(want)] == want or have[:2] == want[:2] and len(want) == 2:
            return desc
    raise PybuildError(f"no image for platform {platform} in the index",
                       hint="available: " + ", ".join(
                           "/".join(filter(None, [d.get('platform', {}).get('os'),
                                                  d.get('platform', {}).get('architecture'),
                                                  d.get('platform', {}).get('variant')]))
                           for d in index.get("manifests", [])))


def read_layout(directory: Path, ref: str | None = None, platform: str = "linux/amd64") -> StoredImage:
    directory = Path(directory)
    source = f"oci:{directory}" + (f":{ref}" if ref else "")
    if not (directory / "index.json").exists():
        raise PybuildError(f"{directory} is not an OCI image layout (no index.json)")
    index = _load_index(directory)
    manifests = index.get("manifests", [])
    if ref:
        matches = [m for m in manifests if m.get("annotations", {}).get(ANNOTATION_REF) == ref]
        if not matches:
            refs = sorted({m.get("annotations", {}).get(ANNOTATION_REF, "") for m in manifests} - {""})
            raise PybuildError(f"{source}: no image tagged {ref!r}", hint=f"tags here: {', '.join(refs) or 'none'}")
        desc = matches[-1]
    else:
        if not manifests:
            raise PybuildError(f"{source}: the layout holds no image")
        desc = manifests[-1]
    store = BlobStore(directory / "blobs")
    if desc.get("mediaType") in (OCI_INDEX, DOCKER_LIST):
        sub = json.loads(store.path(desc["digest"]).read_bytes())
        desc = select_platform(sub, platform)
    return stored_image_from_blobs(store, desc["digest"], source)
