"""A writer killed with SIGKILL at random moments leaves every destination readable, previous image intact."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from builder.publish import open_image, parse_destination

from .conftest import make_image, need

WRITER = r"""
import random, sys
from pathlib import Path
from builder.oci.blobs import BlobStore
from builder.oci.image import Image, Layer
from builder.oci.tarball import TarWriter
from builder.publish import parse_destination

store = BlobStore(Path(sys.argv[1]))
tw = TarWriter()
tw.add_bytes("big.bin", random.Random(int(sys.argv[2])).randbytes(6 << 20))
layer = Layer.from_tar_writer(tw, store, "killed writer", level=1)
image = Image(config={"Entrypoint": ["/big.bin"]}).with_layers(layer)
print("ready", image.digest, flush=True)
for spec in sys.argv[3:]:
    parse_destination(spec, "app:1").publish(image)
"""


def check_layout(directory: Path) -> None:
    """Every blob reachable from index.json exists and matches its digest."""
    index = json.loads((directory / "index.json").read_text())
    todo = [m["digest"] for m in index["manifests"]]
    while todo:
        digest = todo.pop()
        blob = directory / "blobs" / digest.replace(":", "/")
        data = blob.read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"{blob} is damaged"
        doc = json.loads(data) if blob.stat().st_size < 1 << 20 and data[:1] == b"{" else {}
        if "layers" in doc:
            todo += [doc["config"]["digest"]] + [l["digest"] for l in doc["layers"]]


def check_archive(path: Path) -> None:
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile():
                tar.extractfile(member).read()


@pytest.mark.slow
def test_sigkill_at_random_points_leaves_previous_image_readable(store, tmp_path):
    need("skopeo")
    image = make_image(store)
    layout, oci_tar, docker_tar = tmp_path / "layout", tmp_path / "image.tar", tmp_path / "docker.tar"
    specs = [f"oci:{layout}:app", f"oci-archive:{oci_tar}:app", f"docker-archive:{docker_tar}:app:1"]
    for spec in specs:
        parse_destination(spec, "x").publish(image)
    known = {image.digest}
    rng = random.Random(1234)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    kills = round_ = 0
    window = 0.25
    while kills < 5:  # rounds go on until five writers were really killed mid-write
        round_ += 1
        assert round_ <= 40, f"only {kills} of {round_} writers were still running when killed"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"wstore{round_}"), str(round_), *specs],
                                stdout=subprocess.PIPE, text=True, env=env)
        word, digest = proc.stdout.readline().split()
        assert word == "ready"
        known.add(digest)
        started = time.monotonic()
        time.sleep(rng.uniform(0.0, window))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:  # it finished first: aim the next kill inside the time a write takes here
            window = max(0.01, min(window, (time.monotonic() - started) * 0.8))
        proc.communicate()
        check_layout(layout)
        check_archive(oci_tar)
        check_archive(docker_tar)
        for ref in (f"oci:{layout}:app", f"oci-archive:{oci_tar}:app", f"docker-archive:{docker_tar}"):
            info = subprocess.run(["skopeo", "inspect", ref], capture_output=True, text=True, timeout=60)
            assert info.returncode == 0, f"round {round_}: {ref}: {info.stderr}"
        assert open_image(f"oci:{layout}:app").digest in known
        assert open_image(f"oci-archive:{oci_tar}:app").digest in known
    if shutil.which("umoci"):
        proc = subprocess.run(["umoci", "unpack", "--image", f"{layout}:app", str(tmp_path / "bundle")],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr


def test_leftovers_of_killed_writers_are_swept(image, tmp_path):
    import os

    target = tmp_path / "image.tar"
    old = tmp_path / ".image.tar.abc123.tmp"
    young = tmp_path / ".image.tar.def456.tmp"
    for f in (old, young):
        f.write_bytes(b"half an archive")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    parse_destination(f"oci-archive:{target}:app", "x").publish(image)
    assert not old.exists() and young.exists()
    assert open_image(f"oci-archive:{target}:app").digest == image.digest
