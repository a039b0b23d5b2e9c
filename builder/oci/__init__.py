"""OCI image primitives: deterministic tar layers, a content-addressed blob store, images and layouts."""
from .image import Image, Layer  # noqa: F401
