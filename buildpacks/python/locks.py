"""Python lockfiles → one exact, hash-pinned requirements list.

Each reader checks that the lock is current with its manifest (the tools' own content hashes,
then the manifest's requirements against the locked versions) and turns the lock's packages
for the runtime group into `name==version ; marker --hash=...` lines. The installer then runs
with `--no-deps --require-hashes`, so exactly the locked files land; markers are evaluated by
the installer against the stack's own interpreter.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.errors import PybuildError

LOCKFILES = ("uv.lock", "poetry.lock", "pdm.lock", "Pipfile.lock")
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")
MAX_MARKER_PATHS = 8


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _text(app_dir: Path, name: str) -> str:
    try:
        return (Path(app_dir) / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PybuildError(f"{name}: not UTF-8 text")


def read_toml(app_dir: Path, name: str) -> dict:
    """A TOML file of the app; a syntax error names the file and the line."""
    text = _text(app_dir, name)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_AT.search(str(exc))
        where = f"{name}, line {m.group(1)}, column {m.group(2)}" if m else name
        raise PybuildError(f"{where}: invalid TOML: {_TOML_AT.sub('', str(exc))}",
                           details=_excerpt(text, int(m.group(1))) if m else None, hint=f"fix the syntax of {name}")


def read_json(app_dir: Path, name: str) -> dict:
    """A JSON file of the app; a syntax error names the file and the line."""
    text = _text(app_dir, name)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PybuildError(f"{name}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}",
                           details=_excerpt(text, exc.lineno), hint=f"fix {name}, or regenerate it (`pipenv lock`)")
    if not isinstance(data, dict):
        raise PybuildError(f"{name}: expected a JSON object at the top level")
    return data


def workspace_url(relative: str) -> str:
    """A path inside the app as the URL the installer sees in the build sandbox."""
    path = posixpath.normpath(posixpath.join("/workspace", str(relative)))
    if not path.startswith("/workspace"):
        raise PybuildError(f"a locked path dependency ({relative}) lies outside the app folder",
                           hint="vendor it inside the app folder, or publish it to an index")
    return "file://" + path


def _direct_url(entry: dict, ref_key: str, url_key: str) -> str | None:
    """A locked git, path or URL dependency (Pipfile.lock and pdm.lock spellings) as a URL."""
    if entry.get("git"):
        return f"git+{entry['git']}@{entry.get(ref_key, 'HEAD')}"
    if entry.get("path"):
        return workspace_url(entry["path"])
    return entry.get(url_key) or None


def _excerpt(text: str, line: int) -> str:
    lines = text.splitlines()
    lo = max(1, line - 2)
    return "\n".join(f"  {n:4} | {lines[n - 1]}" for n in range(lo, min(len(lines), line) + 1))


@dataclass
class Locked:
    """The runtime packages a lockfile pins, as installer input."""

    source: str  # the lockfile's name
    lines: list[str] = field(default_factory=list)  # requirement lines (hashes and markers included)
    pins: dict[str, str] = field(default_factory=dict)  # normalized name -> version
    indexes: list[str] = field(default_factory=list)  # package indexes the lock names
    hashed: bool = True  # every line carries a hash: installed with --require-hashes

    def add(self, name: str, version: str, hashes: list[str], marker: str | None = None,
            extras: list[str] | None = None, url: str | None = None) -> None:
        spec = name + (f"[{','.join(sorted(extras))}]" if extras else "")
        line = f"{spec} @ {url}" if url else f"{spec}=={version}"
        if marker:
            line += f" ; {marker}"
        for h in hashes:
            line += f" --hash={h}"
        if not hashes:
            self.hashed = False
        self.lines.append(line)
        self.pins[normalize(name)] = version

    def add_index(self, url: str | None) -> None:
        if url and url.rstrip("/") not in (u.rstrip("/") for u in self.indexes):
            self.indexes.append(url)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def _stale(lock: str, manifest: str, why: str, fix: str) -> PybuildError:
    return PybuildError(f"{lock} is out of date with {manifest} ({why})",
                        hint=f"regenerate it with `{fix}` and commit it")


def check_requirements(locked: Locked, requirements: list[str], manifest: str, fix: str,
                       python_version: str) -> None:
    """Each runtime requirement of the manifest is met by a locked version."""
    from packaging.markers import default_environment
    from packaging.requirements import InvalidRequirement, Requirement

    env = default_environment()
    env.update({"python_version": python_version, "python_full_version": f"{python_version}.0",
                "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                "platform_machine": "x86_64", "implementation_name": "cpython",
                "platform_python_implementation": "CPython", "extra": ""})
    for raw in requirements:
        try:
            req = Requirement(raw)
        except InvalidRequirement as exc:
            raise PybuildError(f"{manifest}: invalid requirement {raw!r}: {exc}")
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = normalize(req.name)
        if name not in locked.pins:
            raise _stale(locked.source, manifest, f"{req.name} is required but not locked", fix)
        if req.specifier and not req.specifier.contains(locked.pins[name], prereleases=True):
            raise _stale(locked.source, manifest,
                         f"{manifest} wants {req}, the lock has {req.name} {locked.pins[name]}", fix)


# --- poetry.lock ------------------------------------------------------------------------------

_POETRY_LEGACY_KEYS = ["dependencies", "source", "extras", "dev-dependencies"]
_POETRY_PROJECT_KEYS = ["requires-python", "dependencies", "optional-dependencies"]


def poetry_content_hash(pyproject: dict, with_groups: bool = True) -> str:
    """Poetry's `content-hash`: sha256 of the dependency-relevant parts of pyproject.toml."""
    project = pyproject.get("project", {})
    groups = pyproject.get("dependency-groups", {}) if with_groups else {}
    poetry = pyproject.get("tool", {}).get("poetry", {})
    relevant_project = {k: project[k] for k in _POETRY_PROJECT_KEYS if project.get(k) is not None}
    relevant_poetry = {}
    for key in _POETRY_LEGACY_KEYS + ["group"]:
        value = poetry.get(key)
        if value is None and (key not in _POETRY_LEGACY_KEYS or relevant_project or groups):
            continue
        relevant_poetry[key] = value
    content: dict[str, Any] = {}
    if relevant_project:
        content["project"] = relevant_project
    if groups:
        content["dependency-groups"] = groups
    if content:
        content["tool"] = {"poetry": relevant_poetry}
    else:
        content = relevant_poetry
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _and(a: str | None, b: str | None) -> str | None:
    if not a:
        return b or None
    if not b:
        return a
    return f"({a}) and ({b})"


def _poetry_edges(pkg: dict) -> list[tuple[str, str | None]]:
    out = []
    for name, spec in (pkg.get("dependencies") or {}).items():
        for one in spec if isinstance(spec, list) else [spec]:
            if isinstance(one, dict):
                if one.get("optional"):
                    continue
                out.append((normalize(name), one.get("markers")))
            else:
                out.append((normalize(name), None))
    return out


def _poetry_reachable(pyproject: dict, packages: list[dict]) -> dict[str, str | None]:
    """Old lock formats (no per-package groups): walk the graph from the main dependencies;
    a package's marker is the OR over the paths that reach it."""
    from packaging.requirements import InvalidRequirement, Requirement

    by_name = {normalize(p["name"]): p for p in packages}
    roots: list[tuple[str, str | None]] = []
    for name, spec in pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}).items():
        if name.lower() == "python":
            continue
        specs = spec if isinstance(spec, list) else [spec]
        for one in specs:
            if isinstance(one, dict) and one.get("optional"):
                continue
            roots.append((normalize(name), one.get("markers") if isinstance(one, dict) else None))
    for raw in pyproject.get("project", {}).get("dependencies", []):
        try:
            req = Requirement(raw)
        except InvalidRequirement:
            continue
        roots.append((normalize(req.name), str(req.marker) if req.marker else None))
    paths: dict[str, set[str | None]] = {}
    todo = list(roots)
    while todo:
        name, marker = todo.pop()
        seen = paths.setdefault(name, set())
        if marker in seen or None in seen or len(seen) >= MAX_MARKER_PATHS:
            if len(seen) >= MAX_MARKER_PATHS:
                seen.add(None)
            continue
        seen.add(marker)
        for dep, edge in _poetry_edges(by_name.get(name, {})):
            todo.append((dep, _and(marker, edge)))
    return {n: None if None in ms else " or ".join(f"({m})" for m in sorted(ms)) for n, ms in paths.items()}


def poetry_lock(app_dir: Path, pyproject: dict, python_version: str) -> Locked:
    lock = read_toml(app_dir, "poetry.lock")
    meta = lock.get("metadata", {})
    fix = "poetry lock"
    if "content-hash" in meta and meta["content-hash"] != poetry_content_hash(pyproject):
        first = (Path(app_dir) / "poetry.lock").read_text(encoding="utf-8").split("\n", 1)[0]
        m = re.search(r"Poetry ([\d.]+)", first)
        older = m and tuple(int(x) for x in m.group(1).split(".")[:2]) < (2, 3)
        if not (older and meta["content-hash"] == poetry_content_hash(pyproject, with_groups=False)):
            raise _stale("poetry.lock", "pyproject.toml", "its content-hash does not match", fix)
    packages = lock.get("package", [])
    legacy_files = meta.get("files", {})
    grouped = all("groups" in p for p in packages) and packages
    reach = {} if grouped else _poetry_reachable(pyproject, packages)
    out = Locked("poetry.lock")
    for pkg in packages:
        name = normalize(pkg["name"])
        if grouped:
            if "main" not in pkg["groups"]:
                continue
            markers = pkg.get("markers")
            marker = markers.get("main") if isinstance(markers, dict) else markers
        else:
            if name not in reach:
                continue
            marker = reach[name]
        files = pkg.get("files") or legacy_files.get(pkg["name"], [])
        hashes = sorted({f["hash"] for f in files if f.get("hash")})
        src = pkg.get("source") or {}
        url = None
        kind = src.get("type")
        if kind in ("legacy", None):
            out.add_index(src.get("url"))
        elif kind == "git":
            url = f"git+{src['url']}@{src.get('resolved_reference') or src.get('reference')}"
        elif kind in ("directory", "file"):
            url = workspace_url(src["url"])
        elif kind == "url":
            url = src["url"]
        out.add(pkg["name"], pkg["version"], hashes if kind not in ("git", "directory") else [], marker,
                url=url)
    check_requirements(out, pyproject.get("project", {}).get("dependencies", []), "pyproject.toml", fix,
                       python_version)
    return out


# --- Pipfile.lock -----------------------------------------------------------------------------

def default_index_url() -> str:
    """The index pipenv assumes when a Pipfile names none: pip's own default (asked of pip,
    so no index host is written in pybuild)."""
    try:
        from pip._internal.models.index import PyPI

        return PyPI.simple_url
    except Exception:  # pip missing or reorganised: such a Pipfile's hash cannot match
        return ""


def pipfile_hash(pipfile: dict) -> str:
    """Pipenv's `_meta.hash.sha256` of a Pipfile."""
    sections = {"source", "packages", "dev-packages", "requires", "scripts", "pipfile", "pipenv"}
    data: dict[str, Any] = {
        "_meta": {"sources": pipfile.get("source", [{"name": "pypi", "url": default_index_url(),
                                                     "verify_ssl": True}]),
                  "requires": pipfile.get("requires", {})},
        "default": pipfile.get("packages", {}),
        "develop": pipfile.get("dev-packages", {}),
    }
    for key, value in pipfile.items():
        if key not in sections and key not in ("default", "develop"):
            data[key] = value
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def pipfile_lock(app_dir: Path, python_version: str) -> Locked:
    lock = read_json(app_dir, "Pipfile.lock")
    if (Path(app_dir) / "Pipfile").exists():
        pipfile = read_toml(app_dir, "Pipfile")
        want = lock.get("_meta", {}).get("hash", {}).get("sha256")
        if want and want != pipfile_hash(pipfile):
            raise _stale("Pipfile.lock", "Pipfile", "its _meta.hash does not match the Pipfile", "pipenv lock")
    out = Locked("Pipfile.lock")
    for src in lock.get("_meta", {}).get("sources", []):
        # pipenv expands ${VAR} in source URLs at install time (credentials stay out of the lock);
        # a variable that is not set leaves the index to the user's own configuration
        url = os.path.expandvars(src.get("url") or "")
        out.add_index(url if "$" not in url else None)
    for name, entry in sorted((lock.get("default") or {}).items()):
        if not isinstance(entry, dict):
            raise PybuildError(f"Pipfile.lock: default.{name} should be an object")
        url = _direct_url(entry, "ref", "file")
        version = str(entry.get("version", "")).lstrip("=")
        if not url and not version:
            raise PybuildError(f"Pipfile.lock: default.{name} has no version",
                               hint="regenerate it with `pipenv lock`")
        out.add(name, version, sorted(entry.get("hashes", [])) if not entry.get("git") else [],
                entry.get("markers"), entry.get("extras"), url)
    return out


# --- pdm.lock ---------------------------------------------------------------------------------

def pdm_content_hash(pyproject: dict) -> str:
    """PDM's `content_hash` (lock formats that carry one)."""
    pdm = pyproject.get("tool", {}).get("pdm", {})
    project = pyproject.get("project", {})
    groups: dict[str, list] = {}
    for group, deps in pyproject.get("dependency-groups", {}).items():
        groups[normalize(group)] = list(deps)
    for group, deps in pdm.get("dev-dependencies", {}).items():
        groups.setdefault(normalize(group), []).extend(deps)
    data = {"sources": pdm.get("source", []), "dependencies": project.get("dependencies", []),
            "dev-dependencies": groups, "optional-dependencies": project.get("optional-dependencies", {}),
            "requires-python": project.get("requires-python", ""), "resolution": pdm.get("resolution", {})}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def pdm_lock(app_dir: Path, pyproject: dict, python_version: str) -> Locked:
    lock = read_toml(app_dir, "pdm.lock")
    meta = lock.get("metadata", {})
    fix = "pdm lock"
    algo, _, value = str(meta.get("content_hash", "")).partition(":")
    if algo == "sha256" and value and value != pdm_content_hash(pyproject):
        raise _stale("pdm.lock", "pyproject.toml", "its content_hash does not match", fix)
    if "default" not in meta.get("groups", ["default"]):
        raise PybuildError("pdm.lock has no `default` group: it was locked without the runtime dependencies",
                           hint="run `pdm lock` (without --no-default)")
    out = Locked("pdm.lock")
    for src in pyproject.get("tool", {}).get("pdm", {}).get("source", []):
        out.add_index(src.get("url"))
    for pkg in lock.get("package", []):
        if "default" not in pkg.get("groups", ["default"]):
            continue
        url = _direct_url(pkg, "revision", "url")
        hashes = sorted({f["hash"] for f in pkg.get("files", []) if f.get("hash")})
        out.add(pkg["name"], pkg.get("version", ""), hashes if not (pkg.get("git") or pkg.get("path")) else [],
                pkg.get("marker"), pkg.get("extras"), url)
    check_requirements(out, pyproject.get("project", {}).get("dependencies", []), "pyproject.toml", fix,
                       python_version)
    return out


# --- uv.lock ----------------------------------------------------------------------------------

def uv_lock_indexes(app_dir: Path) -> list[str]:
    """The registries uv.lock names (also a syntax check before uv reads it)."""
    lock = read_toml(app_dir, "uv.lock")
    found: list[str] = []
    for pkg in lock.get("package", []):
        reg = (pkg.get("source") or {}).get("registry")
        if reg and reg.startswith(("http://", "https://")) and reg not in found:
            found.append(reg)
    return found


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def from_exported(text: str, source: str = "uv.lock") -> Locked:
    """`uv export --format requirements-txt` output (continuation lines joined) as a Locked."""
    out = Locked(source)
    joined = re.sub(r"\\\n\s*", " ", text)
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            raise PybuildError(f"{source}: cannot install the entry {line!r} exactly",
                               hint="editable or workspace members are installed from the project itself")
        out.lines.append(line)
        m = _PIN.match(line)
        if m:
            out.pins[normalize(m.group(1))] = m.group(3)
        if "--hash=" not in line:
            out.hashed = False
    return out


def which_lock(app_dir: Path) -> str | None:
    """The lockfile that decides the dependencies, when the app has one."""
    for name in LOCKFILES:
        if (Path(app_dir) / name).is_file():
            return name
    return None
