"""Push an image to a local docker-registry, change one line of app code, push again, and print what the
second push sent against the image's total size. Only the new app layer, the config and the manifest
should travel.

    python bench/push_incremental.py                    # image built in-process (stack, deps, app layers)
    python bench/push_incremental.py --source examples/python-flask   # images made by `pybuild build`

The registry (Debian's docker-registry) runs on 127.0.0.1 with its storage in a temporary folder and is
stopped at the end.
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builder.oci.blobs import BlobStore  # noqa: E402
from builder.oci.image import Image, Layer  # noqa: E402
from builder.oci.registry import BlobLocations, RegistryClient  # noqa: E402
from builder.oci.tarball import TarWriter  # noqa: E402
from tests.oci.servers import RegistryServer  # noqa: E402

APP = "import os\nfrom flask import Flask\n\napp = Flask(__name__)\n\n\n@app.get('/')\ndef index():\n    return {}\n"


def text_blob(rng: random.Random, size: int) -> bytes:
    """Compressible, source-like bytes (words drawn from a small vocabulary)."""
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10))) for _ in range(600)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + rng.choice([b" ", b" ", b"(", b")\n", b".", b" = "])
    return bytes(out[:size])


def synthetic_image(store: BlobStore, greeting: str) -> Image:
    rng = random.Random(42)
    stack = TarWriter()
    for i in range(120):
        stack.add_bytes(f"usr/lib/x86_64-linux-gnu/lib{i}.so", rng.randbytes(40_000) + text_blob(rng, 40_000))
    stack.add_bytes("etc/passwd", b"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")
    deps = TarWriter()
    for i in range(300):
        deps.add_bytes(f"layers/python/deps/lib/site-packages/pkg{i // 20}/mod{i}.py", text_blob(rng, 12_000))
    app = TarWriter(uid=65532, gid=65532)
    app.add_bytes("workspace/app.py", (APP + f"GREETING = {greeting!r}\n").encode())
    app.add_bytes("workspace/requirements.txt", b"flask==3.0.3\n")
    for i in range(10):
        app.add_bytes(f"workspace/templates/page{i}.html", text_blob(rng, 3_000))
    layers = [Layer.from_tar_writer(stack, store, "pybuild stack: python-3.13"),
              Layer.from_tar_writer(deps, store, "pybuild buildpack: python (dependencies)"),
              Layer.from_tar_writer(app, store, "pybuild buildpack: python (app)")]
    return Image(config={"User": "65532", "Entrypoint": ["/workspace/app.py"], "Env": ["PORT=8080"]}).with_layers(*layers)


def built_image(source: Path, work: Path, greeting: str) -> Image:
    """Copy `source`, append one line to its first .py file, build it with pybuild into an OCI layout."""
    from builder.oci.layout import read_layout

    app = work / f"app-{abs(hash(greeting))}"
    if app.exists():
        shutil.rmtree(app)
    shutil.copytree(source, app)
    target = sorted(app.glob("*.py"))[0]
    target.write_text(target.read_text() + f"\nGREETING = {greeting!r}\n")
    layout = work / "layout"
    proc = subprocess.run([sys.executable, "-m", "builder.cli", "build", str(app), "-t", "bench:1",
                           "-o", f"oci:{layout}:bench"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"pybuild build {source} failed:\n{proc.stderr[-2000:]}")
    return read_layout(layout, "bench").to_image()


def image_size(image: Image) -> int:
    return sum(l.size for l in image.layers) + len(image.config_bytes()) + len(image.manifest_bytes())


def push(host: str, image: Image, work: Path) -> tuple[RegistryClient, float]:
    client = RegistryClient(host, locations=BlobLocations(work / "registry-blobs.json"))
    start = time.perf_counter()
    client.push_image("bench/app", image, "latest")
    return client, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="build this app folder with `pybuild build` instead")
    args = parser.parse_args()
    if not shutil.which("docker-registry"):
        sys.exit("docker-registry is not installed (apt-get install docker-registry)")
    with tempfile.TemporaryDirectory(prefix="pybuild-bench-") as tmp:
        work = Path(tmp)
        (work / "registry").mkdir()
        server = RegistryServer(work / "registry")
        try:
            store = BlobStore(work / "store")
            make = (lambda g: built_image(args.source, work, g)) if args.source else \
                (lambda g: synthetic_image(store, g))
            first = make("hello")
            c1, t1 = push(server.host, first, work)
            second = make("hello, world")
            c2, t2 = push(server.host, second, work)
        finally:
            server.stop()
    total = image_size(second)
    sent = c2.stats.bytes_uploaded + len(second.manifest_bytes())
    changed = [l for l in second.layers if l.digest not in {x.digest for x in first.layers}]
    print(f"image: {len(second.layers)} layers, {total:,} bytes compressed (config and manifest included)")
    print(f"first push:  {c1.stats.bytes_uploaded + len(first.manifest_bytes()):,} bytes in {t1:.2f} s, "
          f"{c1.stats.requests} requests")
    print(f"second push: {sent:,} bytes in {t2:.2f} s, {c2.stats.requests} requests; "
          f"{len(c2.stats.skipped)} blobs skipped, {len(c2.stats.uploaded)} uploaded "
          f"(changed layers: {len(changed)}, {sum(l.size for l in changed):,} bytes)")
    print(f"ratio second push / image size: {sent / total:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
