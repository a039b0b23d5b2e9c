"""Which Node.js: the requested range (setting, engines.node, .nvmrc, .node-version) or the
current LTS, resolved against the `node-linux-<arch>` builds the npm registry publishes."""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from builder.errors import PybuildError
from builder.oci.blobs import atomic_write

from .registry import Registry, extract_package
from .semver import Range, SemverError, Version, nearest

# LTS codenames (nvm's `lts/<name>`), by major version
LTS_CODENAMES = {"argon": 4, "boron": 6, "carbon": 8, "dubnium": 10, "erbium": 12, "fermium": 14,
                 "gallium": 16, "hydrogen": 18, "iron": 20, "jod": 22, "krypton": 24}
ARCHES = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
STRIP_RULE = "strip-unneeded-1"  # part of the runtime layer's cache key


@dataclass
class Request:
    spec: str  # a semver range or an alias (lts/*, lts/<codename>, node, latest)
    origin: str  # where it came from, for messages


def requested(setting: str | None, package: dict | None, read_file: Callable[[str], str | None]) -> Request:
    if setting and setting.strip():
        return Request(setting.strip(), "PYBUILD_NODE_VERSION")
    engines = (package or {}).get("engines")
    if isinstance(engines, dict) and isinstance(engines.get("node"), str) and engines["node"].strip():
        return Request(engines["node"].strip(), "package.json engines.node")
    for name in (".nvmrc", ".node-version"):
        text = read_file(name)
        if text is None:
            continue
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                return Request(line, name)
    return Request("lts/*", "default (current LTS)")


def package_name(arch: str | None = None) -> str:
    machine = arch or platform.machine()
    return f"node-linux-{ARCHES.get(machine.lower(), machine)}"


def lts_since(major: int) -> _dt.date:
    """When an even major entered Active LTS under the Node.js release plan (late October of
    the year it came out: Node 20 in 2023, 22 in 2024, ...)."""
    return _dt.date(2013 + major // 2, 10, 28)


@dataclass
class Resolved:
    version: Version
    manifest: dict
    request: Request


class NodeResolver:
    def __init__(self, registry: Registry, cache: Path, log: Callable[[str], None], arch: str | None = None):
        self.registry = registry
        self.cache = cache
        self.log = log
        self.name = package_name(arch)
        self._versions: dict[Version, dict] | None = None

    @property
    def versions(self) -> dict[Version, dict]:
        if self._versions is None:
            self._versions = {v: m for v, m in self.registry.versions(self.name).items() if not v.prerelease}
            if not self._versions:
                raise PybuildError(f"the npm registry lists no versions of {self.name}")
        return self._versions

    def resolve(self, req: Request, today: _dt.date | None = None) -> Resolved:
        spec = req.spec.strip()
        low = spec.lower()
        if low in ("lts/*", "lts", "lts/-0", "--lts"):
            return self._lts(req, today or _dt.date.today())
        if low.startswith("lts/"):
            codename = low[4:]
            if codename not in LTS_CODENAMES:
                raise PybuildError(f"{req.origin}: unknown LTS name {spec!r}",
                                   hint="known: " + ", ".join(f"lts/{n}" for n in LTS_CODENAMES) + ", lts/*")
            spec = f"{LTS_CODENAMES[codename]}.x"
        elif low in ("node", "latest", "current", "stable"):
            spec = "*"
        try:
            rng = Range(spec)
        except SemverError as exc:
            raise PybuildError(f"{req.origin}: {req.spec!r} is not a Node.js version or semver range ({exc})",
                               hint="write e.g. 22, 22.11.0, ^22.11, >=20 <23 or lts/*")
        best = rng.best(self.versions)
        if best is None:
            near = ", ".join(str(v) for v in nearest(rng, list(self.versions)))
            raise PybuildError(f"{req.origin}: no published Node.js version satisfies {req.spec!r}",
                               hint=f"nearest published versions: {near}")
        return Resolved(best, self.versions[best], req)

    def _lts(self, req: Request, today: _dt.date) -> Resolved:
        """The newest even major already in Active LTS; its newest build must say so itself
        (process.release.lts), else the registry has no LTS build of it yet and the line before wins."""
        majors = sorted({v.major for v in self.versions if v.major % 2 == 0 and v.major >= 4
                         and lts_since(v.major) <= today}, reverse=True)
        for major in majors:
            best = max(v for v in self.versions if v.major == major)
            if self.lts_name(best):
                return Resolved(best, self.versions[best], req)
            self.log(f"Node.js {best} is not an LTS build yet; trying the previous LTS line")
        raise PybuildError("the npm registry lists no Node.js LTS build",
                           hint="set PYBUILD_NODE_VERSION or engines.node in package.json")

    def lts_name(self, version: Version) -> str:
        """The LTS codename the build reports (remembered in the cache), or ''."""
        path = self.cache / "lts.json"
        known = json.loads(path.read_text()) if path.exists() else {}
        if str(version) not in known:
            pkg = self.package(version)
            try:
                out = subprocess.run([str(pkg / "bin" / "node"), "-p", "process.release.lts || ''"],
                                     capture_output=True, text=True, timeout=60)
            except OSError as exc:
                raise PybuildError(f"cannot run Node.js {version} on this machine: {exc}")
            if out.returncode != 0:
                raise PybuildError(f"Node.js {version} does not run on this machine",
                                   details=out.stderr[-2000:])
            known[str(version)] = out.stdout.strip()
            with atomic_write(path, "w") as fh:  # type: ignore[arg-type]
                fh.write(json.dumps(known, indent=1, sort_keys=True))
        return known[str(version)]

    def package(self, version: Version) -> Path:
        """The unpacked node-linux-* package (bin/node, include/node for native addons)."""
        manifest = self.versions[version]
        dest = self.cache / "node" / str(version)
        if not (dest / ".complete").exists():
            self.log(f"downloading Node.js {version}")
        tarball = self.registry.tarball(manifest)
        return extract_package(tarball, dest)

    def runtime_binary(self, version: Version) -> Path:
        """The node binary for the run image: the published one with its debug info and static
        symbol table stripped (the dynamic symbols native addons link against stay)."""
        out = self.cache / "node" / str(version) / f"node.{STRIP_RULE}"
        if out.exists():
            return out
        src = self.package(version) / "bin" / "node"
        tmp = out.with_name(out.name + ".tmp")
        strip = shutil.which("strip")
        if strip and subprocess.run([strip, "--strip-unneeded", "-o", str(tmp), str(src)],
                                    capture_output=True).returncode == 0:
            tmp.chmod(0o755)
        else:
            self.log("strip (binutils) is not available: the node binary keeps its debug info")
            shutil.copyfile(src, tmp)
            tmp.chmod(0o755)
        tmp.rename(out)
        return out
