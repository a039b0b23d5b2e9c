#!/usr/bin/env python3
"""The three language examples side by side: image size (compressed / uncompressed), cold
build (empty cache: stack, toolchain and dependency downloads included) and warm rebuild
after a one-line source change, plus a size baseline measured in the same run: the same app
on a heavier stack, i.e. what the image would weigh without pybuild's choice of base.

    python bench/examples.py [python-flask node-express go-hello]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _common import ROOT, mb, pybuild_json, ratio

# example: (file to touch, text to replace, replacement, baseline stack, why that baseline)
EXAMPLES = {
    "python-flask": ("app.py", "Hello from pybuild!", "Hello, bench!", None,
                     "see bench/stack_sizes.py for the stack against Debian's own closure"),
    "node-express": ("server.js", "Hello", "Hi", "cc", "glibc base with OpenSSL"),
    "go-hello": ("main.go", "Hello from Go!", "Hi from Go!", "cc", "glibc base (what a cgo binary would need)"),
}
GOALS = {"node-express": ("compressed", 45e6), "go-hello": ("uncompressed", 8e6)}


def main(names: list[str]) -> None:
    for name in names or list(EXAMPLES):
        touch, old, new, base_stack, why = EXAMPLES[name]
        with tempfile.TemporaryDirectory(prefix="pybuild-bench-") as tmp:
            tmp = Path(tmp)
            app = tmp / name
            shutil.copytree(ROOT / "examples" / name, app)
            env = {"PYBUILD_CACHE_DIR": str(tmp / "cache"), "UV_CACHE_DIR": str(tmp / "uv-cache")}
            out = f"oci:{tmp / 'oci'}:bench"
            cold, cold_s = pybuild_json(str(app), "-o", out, env=env)
            (app / touch).write_text((app / touch).read_text().replace(old, new))
            warm, warm_s = pybuild_json(str(app), "-o", out, env=env)
            heavy = pybuild_json(str(app), "-o", out, "--stack", base_stack, env=env)[0] if base_stack else None
        print(f"{name} (stack {cold['stack']})")
        print(f"  image        {mb(cold['size'])} compressed  {mb(cold['uncompressed_size'])} uncompressed")
        if heavy:
            print(f"  on {base_stack:<9} {mb(heavy['size'])} compressed  {mb(heavy['uncompressed_size'])} uncompressed"
                  f"  ({why}); ours is {ratio(cold['size'], heavy['size'])} of it")
        else:
            print(f"  baseline     {why}")
        print(f"  cold build   {cold_s:7.2f} s   warm rebuild {warm_s:6.2f} s ({ratio(warm_s, cold_s)} of cold);"
              f" reused: {', '.join(warm['reused_layers']) or '-'}")
        if name in GOALS:
            kind, limit = GOALS[name]
            value = cold["size"] if kind == "compressed" else cold["uncompressed_size"]
            print(f"  goal         {kind} under {mb(limit)}: {'met' if value < limit else 'NOT met'}"
                  f" ({ratio(value, limit)} of the limit)")


if __name__ == "__main__":
    main(sys.argv[1:])
