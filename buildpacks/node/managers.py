"""Package managers: which one a project uses (lockfile, `packageManager`, .yarnrc.yml), which
version, where it comes from (the npm registry, or the project's own yarnPath), and the
commands for a frozen install, the build script and pruning devDependencies."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import PybuildError, VerificationError

from .registry import Registry, extract_package
from .semver import Range, SemverError, Version

LOCKFILES = {"npm": ("package-lock.json", "npm-shrinkwrap.json"), "yarn": ("yarn.lock",),
             "pnpm": ("pnpm-lock.yaml",)}
REGISTRY_PACKAGE = {"npm": "npm", "yarn": "yarn", "berry": "@yarnpkg/cli-dist", "pnpm": "pnpm"}
# default version ranges when nothing pins one (pnpm: by lockfile format)
PNPM_BY_LOCKFILE = {"9": ">=9 <11", "6": "8.x", "5": "7.x"}
_PM_FIELD = re.compile(r"^(npm|yarn|pnpm)@([^+\s]+)(?:\+(sha\d+)\.([0-9a-fA-F]+))?$")


@dataclass
class Manager:
    """The package manager chosen for a project (before its tool is fetched)."""

    name: str  # npm | yarn | berry | pnpm
    lockfile: str | None
    version_spec: str  # a semver range or an exact version
    reason: str
    hash: tuple[str, str] | None = None  # from packageManager: (algorithm, hex digest of the tarball)
    yarn_path: str | None = None  # Yarn Berry release file checked into the project
    pnp: bool = False  # Yarn Plug'n'Play (no node_modules)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return {"npm": "npm", "yarn": "Yarn classic", "berry": "Yarn Berry", "pnpm": "pnpm"}[self.name]


def _yarnrc(app: Path) -> dict[str, str]:
    """Top-level `key: value` pairs of .yarnrc.yml (enough for yarnPath and nodeLinker)."""
    path = app / ".yarnrc.yml"
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^([A-Za-z][\w-]*)\s*:\s*(.*?)\s*$", line)
            if m:
                out[m.group(1)] = m.group(2).strip("'\"")
    return out


def choose(app: Path, package: dict | None) -> Manager:
    """npm / Yarn classic / Yarn Berry / pnpm, from the lockfile, `packageManager` and .yarnrc.yml."""
    found = {pm: name for pm, names in LOCKFILES.items() for name in names if (app / name).is_file()}
    field_value = (package or {}).get("packageManager")
    pinned = None
    if field_value is not None:
        m = _PM_FIELD.match(str(field_value).strip()) if isinstance(field_value, str) else None
        if not m:
            raise PybuildError(f"package.json: packageManager {field_value!r} is not NAME@VERSION",
                               hint="e.g. \"packageManager\": \"pnpm@9.15.0\" (npm, yarn or pnpm)")
        pinned = m
    warnings: list[str] = []
    if pinned:
        name = pinned.group(1)
        if found and name not in found:
            raise PybuildError(f"package.json says packageManager {field_value}, but the lockfile is "
                               f"{', '.join(sorted(found.values()))}",
                               hint=f"commit the {name} lockfile, or change packageManager")
        reason = f"packageManager {field_value.split('+')[0]}"
    elif len(found) > 1:
        raise PybuildError(f"several lockfiles: {', '.join(sorted(found.values()))}",
                           hint="keep the one of the package manager you use, or set packageManager in package.json")
    elif found:
        name = next(iter(found))
        reason = found[name]
    else:
        name = "npm"
        reason = "no lockfile"
        warnings.append("no lockfile (package-lock.json, yarn.lock, pnpm-lock.yaml): dependencies are resolved "
                        "afresh with `npm install`; commit a lockfile for repeatable builds")
    lockfile = found.get(name)
    rc = _yarnrc(app)
    mgr = Manager(name, lockfile, "", reason, warnings=warnings)
    if pinned and pinned.group(3):
        mgr.hash = (pinned.group(3), pinned.group(4).lower())
    if name == "yarn":
        lock_text = (app / "yarn.lock").read_text(encoding="utf-8") if lockfile else ""
        if pinned:
            berry = not pinned.group(2).startswith("1.")
        elif rc.get("yarnPath") or "__metadata:" in lock_text:
            berry = True
        else:
            berry = "# yarn lockfile v1" not in lock_text and (app / ".yarnrc.yml").is_file()
        if berry:
            mgr.name = "berry"
            mgr.yarn_path = rc.get("yarnPath")
            mgr.pnp = rc.get("nodeLinker", "pnp") == "pnp"
    if pinned:
        mgr.version_spec = pinned.group(2)
    elif mgr.name == "npm":
        mgr.version_spec = "*"  # the newest npm that supports the chosen Node.js
    elif mgr.name == "yarn":
        mgr.version_spec = "1.x"
    elif mgr.name == "berry":
        mgr.version_spec = "*"
    else:
        m = re.search(r"^lockfileVersion:\s*'?(\d+)", (app / "pnpm-lock.yaml").read_text(encoding="utf-8"), re.M)
        mgr.version_spec = PNPM_BY_LOCKFILE.get(m.group(1) if m else "", "*")
    return mgr


@dataclass
class Tool:
    """A package manager ready to run: `argv` prefix (node + its JS entry point) and version."""

    name: str
    version: str
    root: Path  # the unpacked package (or the folder of a yarnPath release)
    script: str  # the JS file, relative to root


def _satisfies_node(manifest: dict, node: Version) -> bool:
    wanted = (manifest.get("engines") or {}).get("node")
    if not isinstance(wanted, str):
        return True
    try:
        return Range(wanted).allows(node)
    except SemverError:
        return True


def fetch(mgr: Manager, registry: Registry, node: Version, cache: Path, app: Path) -> Tool:
    """The package manager's JS entry point: from the project (yarnPath) or the npm registry."""
    if mgr.name == "berry" and mgr.yarn_path:
        path = app / mgr.yarn_path
        if not path.is_file():
            raise PybuildError(f".yarnrc.yml: yarnPath {mgr.yarn_path} does not exist")
        return Tool("berry", mgr.version_spec or "yarnPath", app, mgr.yarn_path)
    pkg = REGISTRY_PACKAGE[mgr.name]
    versions = {v: m for v, m in registry.versions(pkg).items() if not v.prerelease}
    try:
        rng = Range(mgr.version_spec)
    except SemverError:
        raise PybuildError(f"{mgr.reason}: {mgr.version_spec!r} is not a version of {mgr.label}")
    fits = [v for v in versions if rng.allows(v) and _satisfies_node(versions[v], node)]
    if mgr.name == "berry" and mgr.version_spec == "*":
        fits = [v for v in fits if v.major >= 2]
    if not fits:
        raise PybuildError(f"no {mgr.label} version matches {mgr.version_spec!r} and runs on Node.js {node}",
                           hint=f"({mgr.reason}) pick another version, or another Node.js version")
    best = max(fits)
    manifest = versions[best]
    tarball = registry.tarball(manifest)
    if mgr.hash:
        algo, want = mgr.hash
        got = hashlib.new(algo, tarball.read_bytes()).hexdigest()
        if got != want:
            raise VerificationError(f"package.json packageManager: the {algo} of {pkg}@{best} is {got}, "
                                    f"not the {want} it pins")
    root = extract_package(tarball, cache / "tools" / f"{pkg.replace('/', '+')}-{best}")
    bins = manifest.get("bin") or {}
    if isinstance(bins, str):
        bins = {pkg: bins}
    wanted = {"npm": "npm", "yarn": "yarn", "berry": "yarn", "pnpm": "pnpm"}[mgr.name]
    script = bins.get(wanted)
    if not script:
        raise PybuildError(f"{pkg}@{best} has no `{wanted}` program in its package.json bin")
    return Tool(mgr.name, str(best), root, script.removeprefix("./"))
