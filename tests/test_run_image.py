"""Issue 3: a base image by reference as the run stack (`--run-image`), from an OCI layout and
from a real registry, with a multi-platform index resolved to the requested platform."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from builder.oci.blobs import BlobStore, atomic_write
from builder.oci.image import ANNOTATION_REF, OCI_INDEX, Image, Layer, canonical_json
from builder.oci.tarball import TarWriter
from builder.stacks.assemble import assemble, load_definition
from helpers import EXAMPLES, build_image, pybuild, require, run_image, unpacked

pytestmark = pytest.mark.slow


def write_multiplatform_base(layout: Path, ref: str) -> tuple[str, str]:
    """An OCI layout whose `ref` is an image index: linux/amd64 is the python-3.13 stack (a
    distroless-style Python base a user might already trust), linux/arm64 a placeholder.
    Returns (index digest, amd64 stack layer digest)."""
    stack = assemble(load_definition("python-3.13"))
    store = BlobStore(layout / "blobs")
    amd = Image(config={"User": "65532:65532", "Env": ["PATH=/usr/bin:/bin", "BASE_MARK=yes"]},
                layers=(stack.layer.with_history("trusted python base"),))
    tw = TarWriter()
    tw.add_bytes("etc/arm64-only", b"not for amd64\n")
    arm_layer = Layer.from_tar_writer(tw, store)
    arm = Image(config={"User": "65532"}, layers=(arm_layer,), architecture="arm64", variant="v8")
    for img in (arm, amd):
        for l in img.layers:
            if not store.has(l.digest):
                store.put_file(l.path)
        store.put_bytes(img.config_bytes())
        store.put_bytes(img.manifest_bytes())
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [arm.descriptor(), amd.descriptor()]}
    index_bytes = canonical_json(index)
    index_digest = store.put_bytes(index_bytes)
    top = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": index_digest, "size": len(index_bytes),
         "annotations": {ANNOTATION_REF: ref}}]}
    with atomic_write(layout / "index.json") as fh:
        fh.write(json.dumps(top).encode())
    with atomic_write(layout / "oci-layout") as fh:
        fh.write(b'{"imageLayoutVersion":"1.0.0"}')
    return index_digest, stack.layer.digest


def _check_image(out: Path, ref: str, base_layer: str, tmp_path: Path) -> None:
    cfg = json.loads(subprocess.run(["skopeo", "inspect", "--config", f"oci:{out}:{ref}"], capture_output=True,
                                    text=True, check=True).stdout)
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", f"oci:{out}:{ref}"], capture_output=True,
                                         text=True, check=True).stdout)
    assert manifest["layers"][0]["digest"] == base_layer
    assert cfg["architecture"] == "amd64"
    assert "BASE_MARK=yes" in cfg["config"]["Env"]
    assert "run image" in cfg["config"]["Labels"]["io.pybuild.stack"]
    with run_image(out, ref, tmp_path) as app:
        assert app.get("/").text.startswith("Hello from pybuild!")
        assert not (app.bundle / "rootfs/etc/arm64-only").exists()


def test_run_image_from_an_oci_layout_index(tmp_path):
    require("skopeo")
    base = tmp_path / "base"
    _, base_layer = write_multiplatform_base(base, "python")
    out = tmp_path / "out"
    build_image(EXAMPLES / "python-flask", out, "app", "--run-image", f"oci:{base}:python")
    _check_image(out, "app", base_layer, tmp_path)


def test_run_image_pulled_from_a_registry_by_platform(tmp_path):
    require("skopeo")
    require("docker-registry")
    from oci.servers import RegistryServer

    base = tmp_path / "base"
    _, base_layer = write_multiplatform_base(base, "python")
    (tmp_path / "registry").mkdir()
    registry = RegistryServer(tmp_path / "registry")
    try:
        subprocess.run(["skopeo", "copy", "--all", "--dest-tls-verify=false", f"oci:{base}:python",
                        f"docker://{registry.host}/bases/python:3.13"], check=True, capture_output=True)
        out = tmp_path / "out"
        build_image(EXAMPLES / "python-flask", out, "app", "--run-image",
                    f"docker://{registry.host}/bases/python:3.13")
        _check_image(out, "app", base_layer, tmp_path)
        # unreachable registry: one clear error, nothing written
        proc = pybuild("build", str(EXAMPLES / "python-flask"), "-o", f"oci:{tmp_path / 'none'}",
                       "--run-image", "docker://127.0.0.1:9/bases/python:3.13", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr and "127.0.0.1:9" in proc.stderr
        assert not (tmp_path / "none").exists()
    finally:
        registry.stop()
