"""The npm registry, as the user's npm configuration names it: package metadata (cached and
revalidated with ETags), and tarballs checked against the registry's `dist.integrity`."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from builder.errors import NetworkError, PybuildError, VerificationError
from builder.oci.blobs import atomic_write

from .semver import Version

ABBREVIATED = "application/vnd.npm.install-v1+json; q=1.0, application/json; q=0.8"
_ENV_REF = re.compile(r"\$\{([^}]+)\}")


def _read_npmrc(path: Path) -> dict[str, str]:
    """`key=value` lines of an .npmrc, with ${ENV} references expanded."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return out
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value.strip().strip('"'))
        out[key.strip()] = value
    return out


def _npm_config_get(key: str) -> str | None:
    npm = shutil.which("npm")
    if not npm:
        return None
    try:
        proc = subprocess.run([npm, "config", "get", key], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    value = proc.stdout.strip().splitlines()[-1].strip() if proc.returncode == 0 and proc.stdout.strip() else ""
    return value if value.startswith(("http://", "https://")) else None


def npmrc_files(app_dir: Path | None) -> list[Path]:
    """The .npmrc files npm reads, lowest precedence first: global, user, project."""
    files = []
    given = os.environ.get("NPM_CONFIG_GLOBALCONFIG") or os.environ.get("npm_config_globalconfig")
    found = [p for p in ("/usr/local/etc/npmrc", "/usr/etc/npmrc", "/etc/npmrc") if os.path.isfile(p)]
    files.append(Path(given or (found[0] if found else "/usr/local/etc/npmrc")))
    files.append(Path(os.environ.get("NPM_CONFIG_USERCONFIG") or os.environ.get("npm_config_userconfig")
                      or os.path.expanduser("~/.npmrc")))
    if app_dir is not None:
        files.append(Path(app_dir) / ".npmrc")
    return files


def configured_registry(app_dir: Path | None = None) -> str:
    """The registry URL from the user's npm configuration: NPM_CONFIG_REGISTRY, the project's
    .npmrc, `npm config get registry`, else ~/.npmrc and the global npmrc."""
    for var in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        if os.environ.get(var):
            return os.environ[var].rstrip("/") + "/"
    if app_dir is not None and _read_npmrc(Path(app_dir) / ".npmrc").get("registry"):
        return _read_npmrc(Path(app_dir) / ".npmrc")["registry"].rstrip("/") + "/"
    from_npm = _npm_config_get("registry")
    if from_npm:
        return from_npm.rstrip("/") + "/"
    for path in reversed(npmrc_files(None)):
        if _read_npmrc(path).get("registry"):
            return _read_npmrc(path)["registry"].rstrip("/") + "/"
    raise PybuildError("no npm registry is configured",
                       hint="set NPM_CONFIG_REGISTRY, or `registry=URL` in ~/.npmrc or the project's .npmrc")


def auth_token(registry: str, app_dir: Path | None = None) -> str | None:
    """A `//host/path/:_authToken=` for the registry from the npmrc files, if any."""
    parts = urlsplit(registry)
    wanted = f"//{parts.netloc}{parts.path}"
    token = None
    for path in npmrc_files(app_dir):
        for key, value in _read_npmrc(path).items():
            if key.endswith(":_authToken") and wanted.startswith(key[: -len(":_authToken")].rstrip("/")):
                token = value
    return token


def check_integrity(data_path: Path, integrity: str, what: str) -> None:
    """Check a file against an SRI string (`sha512-<base64>`, several may be listed: the strongest wins)."""
    best = None
    for item in (integrity or "").split():
        algo, _, digest = item.partition("-")
        if algo in ("sha512", "sha384", "sha256", "sha1"):
            rank = ("sha1", "sha256", "sha384", "sha512").index(algo)
            if best is None or rank > best[0]:
                best = (rank, algo, digest)
    if best is None:
        raise VerificationError(f"{what}: the registry gives no usable integrity hash ({integrity!r})")
    _, algo, digest = best
    h = hashlib.new(algo)
    with open(data_path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    got = base64.b64encode(h.digest()).decode()
    if got != digest:
        raise VerificationError(f"{what}: integrity check failed: expected {algo}-{digest}, got {algo}-{got}",
                                hint="the download or the registry's copy is corrupt; try again")


@dataclass
class Registry:
    url: str
    cache: Path
    token: str | None = None

    @classmethod
    def from_config(cls, cache: Path, app_dir: Path | None = None) -> "Registry":
        url = configured_registry(app_dir)
        return cls(url, cache, auth_token(url, app_dir))

    def _headers(self, extra: dict | None = None) -> dict:
        h = {"User-Agent": "pybuild-node"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    def packument(self, name: str) -> dict:
        """The package's (abbreviated) metadata; cached, revalidated with its ETag, and used
        from the cache when the registry cannot be reached."""
        safe = name.replace("/", "%2f")
        path = self.cache / "metadata" / f"{safe}.json"
        cached = None
        if path.exists():
            try:
                cached = json.loads(path.read_text())
            except ValueError:
                cached = None
        headers = {"Accept": ABBREVIATED}
        if cached and cached.get("_etag"):
            headers["If-None-Match"] = cached["_etag"]
        url = self.url + quote(name, safe="@/").replace("/", "%2f")  # as npm escapes scoped names
        try:
            resp = requests.get(url, headers=self._headers(headers), timeout=60)
        except requests.RequestException as exc:
            if cached:
                return cached
            raise NetworkError(f"cannot reach the npm registry for {name}: {exc}",
                               hint="check the network and the registry in your npm configuration")
        if resp.status_code == 304 and cached:
            return cached
        if resp.status_code == 404:
            raise PybuildError(f"package {name!r} was not found in the npm registry")
        if resp.status_code != 200:
            raise NetworkError(f"npm registry: GET {name} answered HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            raise NetworkError(f"npm registry: the metadata of {name} is not JSON")
        data["_etag"] = resp.headers.get("ETag", "")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "w") as fh:  # type: ignore[arg-type]
            fh.write(json.dumps(data))
        return data

    def versions(self, name: str) -> dict[Version, dict]:
        """Published versions (release and prerelease) with their manifests."""
        out = {}
        for text, manifest in self.packument(name).get("versions", {}).items():
            v = Version.try_parse(text)
            if v is not None:
                out[v] = manifest
        return out

    def tarball(self, manifest: dict) -> Path:
        """The package tarball, downloaded once into the cache and checked against dist.integrity
        (or dist.shasum for very old packages) every time it is used."""
        dist = manifest.get("dist") or {}
        what = f"{manifest.get('name')}@{manifest.get('version')}"
        integrity = dist.get("integrity") or (
            "sha1-" + base64.b64encode(bytes.fromhex(dist["shasum"])).decode() if dist.get("shasum") else "")
        if not dist.get("tarball"):
            raise PybuildError(f"{what}: the registry lists no tarball")
        safe = what.replace("/", "+")
        path = self.cache / "tarballs" / f"{safe}.tgz"
        if path.exists():
            try:
                check_integrity(path, integrity, what)
                return path
            except VerificationError:
                path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkstemp(prefix=".dl-", dir=path.parent)[1])
        try:
            try:
                with requests.get(dist["tarball"], headers=self._headers(), stream=True, timeout=120) as resp:
                    if resp.status_code != 200:
                        raise NetworkError(f"downloading {what}: HTTP {resp.status_code}")
                    with open(tmp, "wb") as fh:
                        for chunk in resp.iter_content(1 << 20):
                            fh.write(chunk)
            except requests.RequestException as exc:
                raise NetworkError(f"downloading {what}: {exc}")
            check_integrity(tmp, integrity, what)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def extract_package(tarball: Path, dest: Path) -> Path:
    """Unpack an npm tarball (members under `package/`) into `dest` once; returns the package root."""
    marker = dest / ".complete"
    if marker.exists():
        return dest / "package"
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".x-", dir=dest.parent))
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            members = []
            for m in tf.getmembers():
                top, _, rest = m.name.lstrip("./").partition("/")
                if not rest:
                    continue
                m.name = "package/" + rest  # a few packages use another top folder than package/
                members.append(m)
            tf.extractall(tmp, members=members, filter="data")
        (tmp / ".complete").write_text("")
        os.rename(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / "package"
