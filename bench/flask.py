#!/usr/bin/env python3
"""Flask example: image size (compressed/uncompressed, per layer), cold build with an empty
cache, and warm rebuild after a one-line change to app.py. The warm rebuild is shown as a
ratio of the cold build measured in the same run.

    python bench/flask.py
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from _common import ROOT, mb, pybuild_json, ratio


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pybuild-bench-") as tmp:
        tmp = Path(tmp)
        app = tmp / "python-flask"
        shutil.copytree(ROOT / "examples" / "python-flask", app)
        env = {"PYBUILD_CACHE_DIR": str(tmp / "cache"), "UV_CACHE_DIR": str(tmp / "uv-cache")}
        out = f"oci:{tmp / 'oci'}:bench"
        cold, cold_s = pybuild_json(str(app), "-o", out, env=env)
        (app / "app.py").write_text((app / "app.py").read_text().replace("Hello from pybuild!", "Hello, bench!"))
        warm, warm_s = pybuild_json(str(app), "-o", out, env=env)
        same, same_s = pybuild_json(str(app), "-o", out, env=env)
    print("Flask example (examples/python-flask)")
    print(f"  image: {mb(cold['size'])} compressed, {mb(cold['uncompressed_size'])} uncompressed")
    for layer in cold["layers"]:
        print(f"    {layer['created_by']:<40} {mb(layer['size'])} gz  {mb(layer['uncompressed_size'])} raw")
    print(f"  cold build (empty cache, downloads included): {cold_s:6.2f} s   1.000x")
    print(f"  warm rebuild after a one-line app.py change:  {warm_s:6.2f} s  {ratio(warm_s, cold_s)} of cold;"
          f" reused: {', '.join(warm['reused_layers'])}")
    print(f"  no-change rebuild:                            {same_s:6.2f} s  {ratio(same_s, cold_s)} of cold;"
          f" digest unchanged: {same['digest'] == warm['digest']}")


if __name__ == "__main__":
    main()
