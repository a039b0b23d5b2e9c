"""Destinations (`-o`) and image sources (inspect, `--run-image`): one interface, many transports.

A destination spec is `TRANSPORT:REST`. Each transport is a small class; `parse_destination`
picks it. Sources (`open_image`) use the same spellings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .errors import UsageError
from .oci.image import Image
from .oci.layout import StoredImage, read_layout, write_layout

if TYPE_CHECKING:
    from .oci.registry import Reference, RegistryClient


class Destination(Protocol):
    spec: str

    def publish(self, image: Image) -> str:
        """Write/push `image`; return a one-line description of where it went."""


def split_ref(rest: str) -> tuple[str, str | None]:
    """`DIR[:REF]` -> (DIR, REF), split at the first colon as skopeo does, so REF may be `name:tag`."""
    path, _, ref = rest.partition(":")
    return path, ref or None


@dataclass
class OCILayoutDestination:
    spec: str
    directory: Path
    ref: str | None

    def publish(self, image: Image) -> str:
        write_layout(image, self.directory, self.ref)
        return f"oci:{self.directory}" + (f":{self.ref}" if self.ref else "")


@dataclass
class OCIArchiveDestination:
    spec: str
    path: Path
    ref: str | None

    def publish(self, image: Image) -> str:
        from .oci.archive import write_oci_archive

        write_oci_archive(image, self.path, self.ref)
        return f"oci-archive:{self.path}" + (f":{self.ref}" if self.ref else "")


@dataclass
class DockerArchiveDestination:
    spec: str
    path: Path
    name: str

    def publish(self, image: Image) -> str:
        from .oci.archive import write_docker_archive

        write_docker_archive(image, self.path, self.name)
        return f"docker-archive:{self.path}:{self.name}"


@dataclass
class DaemonDestination:
    spec: str
    name: str

    def publish(self, image: Image) -> str:
        from .oci.daemon import load_into_daemon

        image_id = load_into_daemon(image, self.name)
        return f"docker-daemon:{self.name} (image id {image_id})"


@dataclass
class RegistryDestination:
    spec: str
    ref: "Reference"

    def client(self) -> "RegistryClient":
        from .oci.registry import RegistryClient

        return RegistryClient(self.ref.host)

    def publish(self, image: Image) -> str:
        client = self.client()
        digest = client.push_image(self.ref.repo, image, self.ref.reference)
        return f"{self.ref}@{digest} ({client.stats.summary()})"

    def publish_index(self, images: list[Image]) -> str:
        """Several platforms of one image, pushed with an image index under the tag."""
        client = self.client()
        digest = client.push_index(self.ref.repo, images, self.ref.reference)
        return f"{self.ref}@{digest} ({client.stats.summary()})"


def docker_name(name: str | None, default_tag: str) -> str:
    """`NAME[:TAG]` with `:latest` added; the `-t` value stands in when the spec names none."""
    from .oci.daemon import normalise_name

    return normalise_name(name or default_tag)


def _split_archive(rest: str) -> tuple[Path, str | None]:
    path, _, name = rest.partition(":")
    return Path(path), name or None


def _registry_ref(rest: str, default_tag: str | None) -> "Reference":
    from .oci.registry import Reference

    return Reference.parse(rest, default_tag)


def tag_part(tag: str) -> str:
    """`name:1` → `1`; `name` → `latest` (the default ref inside a layout or archive)."""
    last = tag.rpartition("/")[2]
    return last.rpartition(":")[2] if ":" in last else "latest"


TRANSPORTS = {
    "oci": lambda spec, rest, tag: OCILayoutDestination(spec, Path(split_ref(rest)[0]),
                                                        split_ref(rest)[1] or tag_part(tag)),
    "oci-archive": lambda spec, rest, tag: OCIArchiveDestination(spec, Path(split_ref(rest)[0]),
                                                                 split_ref(rest)[1] or tag_part(tag)),
    "docker-archive": lambda spec, rest, tag: DockerArchiveDestination(
        spec, _split_archive(rest)[0], docker_name(_split_archive(rest)[1], tag)),
    "docker-daemon": lambda spec, rest, tag: DaemonDestination(spec, docker_name(rest, tag)),
    "docker": lambda spec, rest, tag: RegistryDestination(spec, _registry_ref(rest, tag)),
}


def _spellings(table: dict) -> str:
    return ", ".join("docker://HOST/REPO[:TAG]" if t == "docker" else f"{t}:..." for t in table)


def parse_destination(spec: str, default_tag: str) -> Destination:
    """Parse `-o` SPEC. `default_tag` (from `-t`) names the image where the spec does not."""
    transport, sep, rest = spec.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise UsageError(f"unknown output {spec!r}", hint="use one of: " + _spellings(TRANSPORTS))
    if not rest or rest in ("//", "/"):
        raise UsageError(f"output {spec!r} names no path")
    return TRANSPORTS[transport](spec, rest, default_tag)


def _pull(rest: str, platform: str) -> StoredImage:
    from .config import cache_dir
    from .oci.blobs import BlobStore
    from .oci.registry import RegistryClient

    ref = _registry_ref(rest, None)
    return RegistryClient(ref.host).pull(ref.repo, ref.reference, BlobStore(cache_dir() / "blobs"), platform,
                                         str(ref))


def _read_oci_archive(rest: str, platform: str) -> StoredImage:
    from .oci.archive import read_oci_archive

    return read_oci_archive(Path(split_ref(rest)[0]), split_ref(rest)[1], platform)


def _read_docker_archive(rest: str, platform: str) -> StoredImage:
    from .oci.archive import read_docker_archive

    path, name = _split_archive(rest)
    return read_docker_archive(path, docker_name(name, "") if name else None, platform)


def _read_daemon(rest: str, platform: str) -> StoredImage:
    from .oci.daemon import read_from_daemon

    return read_from_daemon(rest)


SOURCES = {
    "oci": lambda rest, platform: read_layout(Path(split_ref(rest)[0]), split_ref(rest)[1], platform),
    "oci-archive": _read_oci_archive,
    "docker-archive": _read_docker_archive,
    "docker-daemon": _read_daemon,
    "docker": _pull,
}


def open_image(ref: str, platform: str = "linux/amd64") -> StoredImage:
    """Read an image from any supported transport (`oci:DIR[:REF]`, `docker://HOST/REPO:TAG`, ...)."""
    transport, sep, rest = ref.partition(":")
    if not sep or transport not in SOURCES:
        raise UsageError(f"unknown image reference {ref!r}", hint="use one of: " + _spellings(SOURCES))
    if not rest:
        raise UsageError(f"image reference {ref!r} names nothing after the transport")
    return SOURCES[transport](rest, platform)
