"""Destinations (`-o`) and image sources (inspect, `--run-image`): one interface, many transports.

A destination spec is `TRANSPORT:REST`. Each transport is a small class; `parse_destination`
picks it. Sources (`open_image`) use the same spellings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import UsageError
from .oci.image import Image
from .oci.layout import StoredImage, read_layout, write_layout


class Destination(Protocol):
    spec: str

    def publish(self, image: Image) -> str:
        """Write/push `image`; return a one-line description of where it went."""


def split_ref(rest: str) -> tuple[str, str | None]:
    """`DIR[:REF]` → (DIR, REF). A colon inside a path component that looks like a drive or port is kept."""
    if ":" in rest:
        path, _, ref = rest.rpartition(":")
        if path and "/" not in ref:
            return path, ref or None
    return rest, None


@dataclass
class OCILayoutDestination:
    spec: str
    directory: Path
    ref: str | None

    def publish(self, image: Image) -> str:
        write_layout(image, self.directory, self.ref)
        return f"oci:{self.directory}" + (f":{self.ref}" if self.ref else "")


TRANSPORTS = {
    "oci": lambda spec, rest, tag: OCILayoutDestination(spec, Path(split_ref(rest)[0]),
                                                        split_ref(rest)[1] or tag),
}


def parse_destination(spec: str, default_tag: str) -> Destination:
    """Parse `-o` SPEC. `default_tag` (from `-t`) names the image where the spec does not."""
    transport, sep, rest = spec.partition(":")
    if not sep or transport not in TRANSPORTS:
        raise UsageError(f"unknown output {spec!r}",
                         hint="use one of: " + ", ".join(f"{t}:..." for t in TRANSPORTS))
    if not rest:
        raise UsageError(f"output {spec!r} names no path")
    return TRANSPORTS[transport](spec, rest, default_tag)


SOURCES = {
    "oci": lambda rest, platform: read_layout(Path(split_ref(rest)[0]), split_ref(rest)[1], platform),
}


def open_image(ref: str, platform: str = "linux/amd64") -> StoredImage:
    """Read an image from any supported transport (`oci:DIR[:REF]`, ...)."""
    transport, sep, rest = ref.partition(":")
    if not sep or transport not in SOURCES:
        raise UsageError(f"unknown image reference {ref!r}",
                         hint="use one of: " + ", ".join(f"{t}:..." for t in SOURCES))
    return SOURCES[transport](rest, platform)
