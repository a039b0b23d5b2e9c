"""Installing Python packages in the build stage: uv runs inside the build stack's root file
system (bubblewrap) with the stack's own CPython, so wheels are chosen and source
distributions built for exactly the interpreter and libc that ship; compilers and build
backends stay in the build stage. Index settings come from the user's pip and uv configuration."""
from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from builder.errors import PybuildError
from builder.sandbox import run_in_rootfs

SANDBOX = "/pybuild"
WORKSPACE = "/workspace"
PASS_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY")
UV_CREDENTIALS = re.compile(r"^UV_INDEX_[A-Z0-9_]+_(USERNAME|PASSWORD)$")


def uv_binary() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        path = shutil.which("uv")
        if not path:
            raise PybuildError("the Python buildpack needs uv", hint="pip install uv")
        return path


def _pip_config() -> dict[str, list[str]]:
    cp = configparser.ConfigParser()
    files = ["/etc/pip.conf", "/etc/xdg/pip/pip.conf", os.path.expanduser("~/.pip/pip.conf"),
             os.path.expanduser("~/.config/pip/pip.conf")]
    if os.environ.get("PIP_CONFIG_FILE"):
        files.append(os.environ["PIP_CONFIG_FILE"])
    try:
        cp.read([f for f in files if os.path.isfile(f)])
    except configparser.Error as exc:
        raise PybuildError(f"your pip configuration cannot be read: {exc}")
    found: dict[str, list[str]] = {}
    for key in ("index-url", "extra-index-url", "find-links"):
        vals: list[str] = []
        for section in ("global", "install"):
            if cp.has_option(section, key):
                vals = cp.get(section, key).split()
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            vals = env.split()
        found[key] = vals
    return found


def _uv_config() -> dict[str, list[str]]:
    """Index settings from uv.toml (user and system level) and UV_* variables."""
    found: dict[str, list[str]] = {"index-url": [], "extra-index-url": [], "find-links": []}
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    dirs = [d for d in os.environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") if d] + ["/etc"]
    files = [os.path.join(d, "uv", "uv.toml") for d in dirs] + [os.path.join(xdg, "uv", "uv.toml")]
    if os.environ.get("UV_CONFIG_FILE"):
        files = [os.environ["UV_CONFIG_FILE"]]
    for path in files:
        if not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise PybuildError(f"{path}: invalid TOML: {exc}")
        for table in (data, data.get("pip", {})):
            for key in found:
                val = table.get(key)
                if val:
                    found[key] = [val] if isinstance(val, str) else list(val)
        for index in data.get("index", []):
            if index.get("url"):
                found["index-url" if index.get("default") else "extra-index-url"].append(index["url"])
    env = os.environ
    for var, key in (("UV_INDEX_URL", "index-url"), ("UV_DEFAULT_INDEX", "index-url"),
                     ("UV_EXTRA_INDEX_URL", "extra-index-url"), ("UV_INDEX", "extra-index-url"),
                     ("UV_FIND_LINKS", "find-links")):
        if env.get(var):
            vals = [v.split("=", 1)[-1] if "=" in v and "://" in v.split("=", 1)[-1] else v
                    for v in re.split(r"[\s,]+", env[var].strip()) if v]
            found[key] = vals if key == "index-url" else found[key] + vals
    return found


@dataclass
class IndexSettings:
    """Installer arguments for the configured indexes, with local folders bound into the sandbox."""

    args: list[str] = field(default_factory=list)
    binds: dict[Path, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # what the settings were (part of the cache key)

    def local(self, value: str) -> str | None:
        """A local index or wheel folder as the path the sandbox sees it at (None: not here)."""
        path = value[7:] if value.startswith("file://") else value if value.startswith("/") else None
        if path is None:
            return value
        host = Path(path.rstrip("/") or "/")
        if not host.exists():
            return None
        # bind the parent, so that links like ../../files/x.whl inside a simple index still resolve
        top = host.parent if host.parent != Path("/") else host
        inside = f"{SANDBOX}/local/{len(self.binds)}"
        for known, where in self.binds.items():
            if known == top:
                inside = where
                break
        else:
            self.binds[top] = inside
        rel = host.relative_to(top).as_posix() if top != host else ""
        result = inside + ("/" + rel if rel and rel != "." else "")
        return ("file://" + result) if value.startswith("file://") else result


def index_settings(extra_indexes: list[str] = ()) -> IndexSettings:  # type: ignore[assignment]
    pip, uv = _pip_config(), _uv_config()
    settings = IndexSettings(config={"pip": pip, "uv": uv, "lock": list(extra_indexes)})
    index_url = (uv["index-url"] or pip["index-url"])[-1:]
    extras = pip["extra-index-url"] + uv["extra-index-url"] + list(extra_indexes)
    links = pip["find-links"] + uv["find-links"]
    added = 0
    for key, values in (("--index-url", index_url), ("--extra-index-url", extras), ("--find-links", links)):
        for v in values:
            where = settings.local(v)
            if where is None:
                continue  # a configured local folder that is not on this machine
            if key != "--index-url" and where.rstrip("/") in (a.rstrip("/") for a in settings.args):
                continue
            settings.args += [key, where]
            added += 1
    if added:  # pip weighs every configured index equally; ask uv for the same
        settings.args += ["--index-strategy", "unsafe-best-match"]
    return settings


def _ca_bundle() -> Path | None:
    for cand in (os.environ.get("SSL_CERT_FILE"), os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if cand and os.path.isfile(cand):
            return Path(cand)
    return None


def _netrc() -> Path | None:
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    return Path(path) if os.path.isfile(path) else None


def uv_version(uv: str) -> str:
    try:
        return subprocess.run([uv, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        return "uv"


class Sandbox:
    """uv and the stack's python in the build stack's root file system."""

    def __init__(self, rootfs: Path, python: str, cache: Path, epoch: int, log: Callable[[str], None],
                 index: IndexSettings):
        self.rootfs = rootfs
        self.python = python
        self.cache = cache
        self.epoch = epoch
        self.log = log
        self.index = index
        self.uv = uv_binary()

    def _env(self) -> dict[str, str]:
        env = {"HOME": "/tmp", "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "UV_CACHE_DIR": f"{SANDBOX}/cache", "UV_PYTHON_DOWNLOADS": "never", "UV_LINK_MODE": "copy",
               "UV_NO_PROGRESS": "1", "NO_COLOR": "1", "UV_PYTHON": self.python,
               "SOURCE_DATE_EPOCH": str(self.epoch), "PYTHONHASHSEED": "0"}
        if _ca_bundle():
            env["SSL_CERT_FILE"] = f"{SANDBOX}/ca.crt"
        if _netrc():
            env["NETRC"] = f"{SANDBOX}/netrc"
        for k, v in os.environ.items():
            if k in PASS_ENV or UV_CREDENTIALS.match(k):
                env[k] = v
        return env

    def _binds(self, extra_ro: dict[Path, str] | None = None) -> dict[Path, str]:
        ro = {Path(self.uv): f"{SANDBOX}/uv", **self.index.binds, **(extra_ro or {})}
        ca = _ca_bundle()
        if ca:
            ro[ca] = f"{SANDBOX}/ca.crt"
        netrc = _netrc()
        if netrc:
            ro[netrc] = f"{SANDBOX}/netrc"  # index credentials, as pip and uv read them
        return ro

    def uv_run(self, args: list[str], *, src: Path, binds: dict[Path, str] | None = None,
               inputs: dict[Path, str] | None = None, what: str, hint: str | None = None):
        """`uv ARGS` with `src` as /workspace (writable: build backends write there)."""
        self.cache.mkdir(parents=True, exist_ok=True)
        rw = {src: WORKSPACE, self.cache: f"{SANDBOX}/cache", **(binds or {})}
        return run_in_rootfs(self.rootfs, [f"{SANDBOX}/uv", *args], binds=rw, ro_binds=self._binds(inputs),
                             env=self._env(), cwd=WORKSPACE, network=True, what=what, hint=hint)

    def python_run(self, argv: list[str], *, binds: dict[Path, str], env: dict[str, str] | None = None,
                   cwd: str = "/", what: str, hint: str | None = None):
        """The stack's python, network off."""
        full_env = {"HOME": "/tmp", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
                    "PYTHONDONTWRITEBYTECODE": "1",
                    **(env or {})}
        return run_in_rootfs(self.rootfs, [self.python, *argv], binds=binds, env=full_env, cwd=cwd,
                             network=False, what=what, hint=hint)

    def compile(self, target: Path, inside: str) -> None:
        self.python_run(["-m", "compileall", "-q", "-j0", "--invalidation-mode", "unchecked-hash", inside],
                        binds={target: inside}, what="compiling to bytecode")


def explain_install_error(exc: PybuildError, source: str) -> PybuildError:
    """One clear message for the installer's usual failures; the log's last lines stay attached."""
    text = exc.details or ""
    m = re.search(r"Because ([\w.\-\[\]]+) was not found in the package registry", text)
    if m:
        return PybuildError(f"{source}: package {m.group(1)!r} was not found in the package index",
                            details=text, hint="check the name for typos, or the index settings in pip.conf / uv.toml")
    m = re.search(r"Failed to build `([^`]+)`", text) or re.search(r"Failed to (?:download and )?build:? `?([^`\s]+)", text)
    if m:
        return PybuildError(f"{source}: building {m.group(1)} from source failed (the build log's last lines follow)",
                            details=text, hint="publish a wheel for this platform, or add the system libraries "
                                               "it needs to a build stack")
    if "Hash mismatch" in text or "hash mismatch" in text:
        return PybuildError(f"{source}: a downloaded file does not match the hash pinned in {source}",
                            details=text, hint="the index served a different file than the one locked")
    if "needs to be updated" in text and "--locked" in text:
        return PybuildError("uv.lock is out of date with pyproject.toml", details=text,
                            hint="regenerate it with `uv lock` and commit it")
    return PybuildError(f"{source}: installing dependencies failed", details=text,
                        hint="see the installer's last lines above")
