"""Shared helpers for end-to-end tests: run pybuild as a user would, and run built images with
umoci + runc on the host's loopback."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def require(tool: str) -> str:
    """The path of a system tool the test needs. In CI (`CI` set) a missing tool fails the test."""
    path = shutil.which(tool)
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run must install it")
        pytest.skip(f"{tool} is not installed")
    return path


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Write {relative path: text} under `root` (folders made as needed); return `root`."""
    for rel, text in files.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Path(root)


def tar_bytes(files: dict[str, bytes], gz: bool = False) -> bytes:
    """A tar (gzip-compressed when `gz`) holding `files` as given: names are not normalised, so
    tests can craft hostile entries."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pybuild(*args: str, cwd: Path | None = None, env: dict | None = None, check: bool = True,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the `pybuild` command line in a subprocess, as a user would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "builder.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"pybuild {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def build_image(app: Path, out: Path, ref: str = "app", *extra: str, env: dict | None = None) -> str:
    """Build `app` into the OCI layout `out` tagged `ref`; return the digest (last stdout line)."""
    proc = pybuild("build", str(app), "-o", f"oci:{out}:{ref}", *extra, env=env)
    return proc.stdout.strip().splitlines()[-1]


def build_json(app: Path, out: Path, *extra: str, env: dict | None = None, ref: str = "app") -> dict:
    """Build into the OCI layout `out` (tagged `ref`); the `--json` summary, with the build log
    (stderr) added as "log"."""
    proc = pybuild("build", str(app), "-o", f"oci:{out}:{ref}", "--json", *extra, env=env)
    summary = json.loads(proc.stdout)
    summary["log"] = proc.stderr
    return summary


def answer(layout: Path, tmp: Path, path: str = "/", ref: str = "app", **kw) -> str:
    """Run the image, GET `path`, assert 200, return the stripped body."""
    with run_image(layout, ref, tmp, **kw) as running:
        resp = running.get(path)
        assert resp.status_code == 200, resp.text
        return resp.text.strip()


@contextmanager
def unpacked(layout: Path, ref: str, tmp: Path):
    """`umoci unpack` the image into a runc bundle; yields the bundle folder."""
    require("umoci")
    bundle = tmp / f"bundle-{uuid.uuid4().hex[:8]}"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{ref}", str(bundle)], check=True,
                   capture_output=True, text=True)
    try:
        yield bundle
    finally:
        shutil.rmtree(bundle, ignore_errors=True)


class Running:
    def __init__(self, name: str, bundle: Path, port: int, log: Path):
        self.name, self.bundle, self.port, self.log = name, bundle, port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str = "/", timeout: float = 60) -> requests.Response:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                return requests.get(self.url + path, timeout=5)
            except requests.RequestException as exc:
                last = exc
                state = subprocess.run(["runc", "state", self.name], capture_output=True, text=True)
                if state.returncode != 0 or '"stopped"' in state.stdout:
                    break
                time.sleep(0.3)
        raise AssertionError(f"no HTTP answer from {self.name} on port {self.port}: {last}\n"
                             f"container output:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def pid(self) -> int:
        state = json.loads(subprocess.run(["runc", "state", self.name], capture_output=True, text=True,
                                          check=True).stdout)
        return state["pid"]


@contextmanager
def run_image(layout: Path, ref: str, tmp: Path, env: dict | None = None, args: list[str] | None = None):
    """Run the image with runc, sharing the host network namespace so the app listens on
    127.0.0.1; PORT is set to a free port. Yields a `Running`; kills and deletes after."""
    require("runc")
    port = free_port()
    with unpacked(layout, ref, tmp) as bundle:
        cfg_path = bundle / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["terminal"] = False
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        envs = [e for e in cfg["process"].get("env", []) if not e.startswith("PORT=")]
        envs.append(f"PORT={port}")
        for k, v in (env or {}).items():
            envs = [e for e in envs if not e.startswith(k + "=")] + [f"{k}={v}"]
        cfg["process"]["env"] = envs
        if args is not None:
            cfg["process"]["args"] = args
        cfg_path.write_text(json.dumps(cfg))
        name = f"pybuild-test-{uuid.uuid4().hex[:10]}"
        log = tmp / f"{name}.log"
        with open(log, "wb") as fh:
            subprocess.run(["runc", "run", "-d", "--bundle", str(bundle), name], stdout=fh, stderr=fh,
                           stdin=subprocess.DEVNULL, check=True, timeout=60)
        try:
            yield Running(name, bundle, port, log)
        finally:
            subprocess.run(["runc", "kill", name, "KILL"], capture_output=True)
            for _ in range(50):
                if subprocess.run(["runc", "delete", "-f", name], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)


def run_to_completion(layout: Path, ref: str, tmp: Path, timeout: float = 60) -> str:
    """Run a non-server image (a script) and return what it printed."""
    require("runc")
    with unpacked(layout, ref, tmp) as bundle:
        cfg_path = bundle / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["process"]["terminal"] = False
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
        cfg_path.write_text(json.dumps(cfg))
        name = f"pybuild-test-{uuid.uuid4().hex[:10]}"
        proc = subprocess.run(["runc", "run", "--bundle", str(bundle), name], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=timeout)
        subprocess.run(["runc", "delete", "-f", name], capture_output=True)
        return proc.stdout + proc.stderr
