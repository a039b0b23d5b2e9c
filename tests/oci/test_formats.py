"""File destinations (oci:, oci-archive:, docker-archive:) read back by skopeo, umoci and runc."""
from __future__ import annotations

import json
import subprocess
import tarfile

import pytest

from builder.errors import PybuildError, UsageError
from builder.oci.image import OCI_INDEX
from builder.publish import open_image, parse_destination

from .conftest import make_image, need, validate


def skopeo(*args: str) -> str:
    need("skopeo")
    proc = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_documents_validate_against_oci_schemas(image, tmp_path):
    validate(image.manifest_json(), "image-manifest")
    validate(image.config_json(), "image-config")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [image.descriptor()]}
    validate(index, "image-index")
    parse_destination(f"oci-archive:{tmp_path / 'a.tar'}", "app:1").publish(image)
    with tarfile.open(tmp_path / "a.tar") as tar:
        validate(json.load(tar.extractfile("index.json")), "image-index")
        validate(json.load(tar.extractfile("oci-layout")), "image-layout")


def test_schema_rejects_a_broken_manifest(image):
    import jsonschema

    bad = image.manifest_json()
    bad["layers"][0]["digest"] = "sha256:nothex"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, "image-manifest")
    del bad["config"]
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, "image-manifest")


@pytest.mark.parametrize("transport,suffix,skopeo_ref", [
    ("oci", "layout", "oci:{path}:app:1"),
    ("oci-archive", "image.tar", "oci-archive:{path}:app:1"),
    ("docker-archive", "docker.tar", "docker-archive:{path}"),
])
def test_skopeo_reads_every_file_destination(image, tmp_path, transport, suffix, skopeo_ref):
    path = tmp_path / suffix
    where = parse_destination(f"{transport}:{path}:app:1", "ignored:0").publish(image)
    assert str(path) in where
    ref = skopeo_ref.format(path=path)
    info = json.loads(skopeo("inspect", ref))
    assert info["Architecture"] == "amd64" and "PORT=8080" in info["Env"]
    assert len(info["Layers"]) == 2
    if transport != "docker-archive":  # docker-archive manifests are made by the reader, not stored
        assert info["Digest"] == image.digest
    raw = json.loads(skopeo("inspect", "--config", ref))
    assert raw["config"]["User"] == "65532"
    assert raw["rootfs"]["diff_ids"] == [l.diff_id for l in image.layers]
    skopeo("copy", ref, f"oci:{tmp_path / 'copy'}:back")
    back = open_image(f"oci:{tmp_path / 'copy'}:back")
    assert [l.diff_id for l in back.layers] == [l.diff_id for l in image.layers]


def test_every_file_destination_reads_back_with_open_image(image, tmp_path):
    for spec in (f"oci:{tmp_path / 'l'}:app:1", f"oci-archive:{tmp_path / 'a.tar'}:app:1",
                 f"docker-archive:{tmp_path / 'd.tar'}:app:1"):
        parse_destination(spec, "ignored:0").publish(image)
        stored = open_image(spec)
        assert stored.config["rootfs"]["diff_ids"] == [l.diff_id for l in image.layers]
        assert stored.config["config"]["Entrypoint"] == ["/hello"]
        if not spec.startswith("docker-archive"):
            assert stored.digest == image.digest


def test_default_refs_come_from_the_tag(image, tmp_path):
    parse_destination(f"oci:{tmp_path / 'l'}", "app:7").publish(image)
    parse_destination(f"oci-archive:{tmp_path / 'a.tar'}", "app:7").publish(image)
    parse_destination(f"docker-archive:{tmp_path / 'd.tar'}", "app").publish(image)
    assert open_image(f"oci:{tmp_path / 'l'}:7").digest == image.digest
    assert open_image(f"oci-archive:{tmp_path / 'a.tar'}:7").digest == image.digest
    assert open_image(f"docker-archive:{tmp_path / 'd.tar'}:app:latest").config["os"] == "linux"


def test_docker_archive_format(image, tmp_path):
    path = tmp_path / "d.tar"
    parse_destination(f"docker-archive:{path}:registry.test:5000/team/app:2", "x").publish(image)
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        repos = json.load(tar.extractfile("repositories"))
        names = tar.getnames()
    assert manifest[0]["RepoTags"] == ["registry.test:5000/team/app:2"]
    assert manifest[0]["Layers"] == [l.diff_id.split(":")[1] + "/layer.tar" for l in image.layers]
    assert repos == {"registry.test:5000/team/app": {"2": image.layers[-1].diff_id.split(":")[1]}}
    assert image.config_digest.split(":")[1] + ".json" in names


def test_archives_are_reproducible(store, tmp_path):
    a, b = make_image(store), make_image(store)
    for name, img in (("one", a), ("two", b)):
        parse_destination(f"oci-archive:{tmp_path / name}.tar", "app:1").publish(img)
        parse_destination(f"docker-archive:{tmp_path / name}.docker.tar", "app:1").publish(img)
    assert (tmp_path / "one.tar").read_bytes() == (tmp_path / "two.tar").read_bytes()
    assert (tmp_path / "one.docker.tar").read_bytes() == (tmp_path / "two.docker.tar").read_bytes()


def test_clear_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown output"):
        parse_destination("tarball:x", "a")
    with pytest.raises(UsageError, match="names no registry host"):
        parse_destination("docker://app:1", "a")
    with pytest.raises(PybuildError, match="no such file"):
        open_image(f"oci-archive:{tmp_path / 'missing.tar'}")
    (tmp_path / "notar").write_bytes(b"hello")
    with pytest.raises(PybuildError, match="not a readable tar"):
        open_image(f"docker-archive:{tmp_path / 'notar'}")


@pytest.mark.slow
def test_umoci_unpack_and_runc_run(image, tmp_path):
    need("umoci")
    need("runc")
    layout = tmp_path / "layout"
    parse_destination(f"oci:{layout}:app:1", "x").publish(image)
    bundle = tmp_path / "bundle"
    proc = subprocess.run(["umoci", "unpack", "--image", f"{layout}:app:1", str(bundle)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    assert spec["process"]["args"] == ["/hello"]
    assert spec["process"]["user"]["uid"] == 65532
    (bundle / "config.json").write_text(json.dumps(spec))
    name = f"pybuild-test-{tmp_path.name[-12:]}"
    proc = subprocess.run(["runc", "--root", str(tmp_path / "runc"), "run", "--bundle", str(bundle), name],
                          capture_output=True, text=True, timeout=60)
    subprocess.run(["runc", "--root", str(tmp_path / "runc"), "delete", "--force", name], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from pybuild\n"


@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_reads_archives_made_by_skopeo(image, tmp_path, transport):
    parse_destination(f"oci:{tmp_path / 'l'}:app", "x").publish(image)
    target = tmp_path / "skopeo.tar"
    suffix = ":made/by:skopeo" if transport == "docker-archive" else ":app"
    skopeo("copy", f"oci:{tmp_path / 'l'}:app", f"{transport}:{target}{suffix}")
    stored = open_image(f"{transport}:{target}{suffix}")
    assert stored.config["rootfs"]["diff_ids"] == [l.diff_id for l in image.layers]
    assert stored.config["config"]["Env"] == image.config["Env"]
