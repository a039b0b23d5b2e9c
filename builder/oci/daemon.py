"""`docker-daemon:NAME[:TAG]`: load into (or read from) whatever Docker API the user has.

The `docker` package finds the API the usual way (`DOCKER_HOST`, else the default socket), so a
podman service (`podman system service unix:///path.sock`) works as well as dockerd. The image travels
as a docker-archive, streamed from a temporary file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import NetworkError, PybuildError
from .archive import read_docker_archive, write_docker_archive
from .image import Image
from .layout import StoredImage

DAEMON_HINT = ("start Docker (or `podman system service unix:///run/podman/podman.sock`) and set DOCKER_HOST "
               "to its socket, e.g. DOCKER_HOST=unix:///run/podman/podman.sock")


def _client():
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST", "the default Docker socket")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        raise NetworkError(f"cannot reach the Docker API at {where} ({exc})", hint=DAEMON_HINT) from exc
    except OSError as exc:
        raise NetworkError(f"cannot reach the Docker API at {where} ({exc})", hint=DAEMON_HINT) from exc
    return client


def normalise_name(name: str) -> str:
    """`app` -> `app:latest`; a trailing `:TAG` (not a registry port) is kept."""
    last = name.rsplit("/", 1)[-1]
    return name if ":" in last else f"{name}:latest"


def load_into_daemon(image: Image, name: str, tmp_dir: Path | None = None) -> str:
    """Load `image` tagged `name` into the Docker API; returns the image ID the daemon reports."""
    from docker.errors import APIError

    name = normalise_name(name)
    client = _client()
    with tempfile.TemporaryDirectory(prefix="pybuild-daemon-", dir=tmp_dir) as tmp:
        archive = Path(tmp) / "image.tar"
        write_docker_archive(image, archive, name)
        try:
            with open(archive, "rb") as fh:
                loaded = client.images.load(fh)
        except APIError as exc:
            raise PybuildError(f"the Docker API refused the image {name} ({exc.explanation or exc})",
                               hint="check the daemon's log; `docker load -i` of a docker-archive: output "
                                    "shows the same error") from exc
    ids = [img.id for img in loaded]
    return ids[0] if ids else image.config_digest


def read_from_daemon(name: str, tmp_dir: Path | None = None) -> StoredImage:
    """Save `name` from the Docker API and read it like a docker-archive."""
    from docker.errors import APIError, ImageNotFound

    name = normalise_name(name)
    client = _client()
    try:
        img = client.images.get(name)
    except ImageNotFound:
        raise PybuildError(f"docker-daemon:{name}: no such image in the Docker API",
                           hint="`docker images` (or `podman images`) lists what is there") from None
    except APIError as exc:
        raise PybuildError(f"docker-daemon:{name}: the Docker API answered {exc.explanation or exc}") from exc
    with tempfile.TemporaryDirectory(prefix="pybuild-daemon-", dir=tmp_dir) as tmp:
        archive = Path(tmp) / "image.tar"
        with open(archive, "wb") as fh:
            for chunk in img.save(named=True):
                fh.write(chunk)
        stored = read_docker_archive(archive)
    stored.source = f"docker-daemon:{name}"
    return stored
