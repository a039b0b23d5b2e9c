"""Registry credentials and the token dance.

Credentials come from, in order: `REGISTRY_AUTH_FILE` (containers-auth.json format), then
`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. In each file `credHelpers[host]` wins,
then `auths[host]` (plain `auth` base64 or `identitytoken`), then `credsStore`. A credential helper is
the `docker-credential-NAME get` program, fed the host on stdin.

The registry says how to authenticate in its `WWW-Authenticate` challenge: `Basic` sends the
credentials; `Bearer realm=...,service=...,scope=...` exchanges them (or nothing, for anonymous
pulls) for a token at the realm.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import PybuildError

LOGIN_HINT = ("log in with `docker login HOST` or `podman login HOST`, or point REGISTRY_AUTH_FILE "
              "at an auth.json that has credentials for it")


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token (docker config `identitytoken`, helper user `<token>`)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token)


ANONYMOUS = Credentials()


def config_files() -> list[Path]:
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    files.append(Path(docker_dir) / "config.json")
    return files


def _host_keys(host: str) -> list[str]:
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _lookup(mapping: dict, host: str, repo: str | None) -> object | None:
    """Entries may be keyed by host, by URL, or (auth.json) by host/repo path prefixes, most specific first."""
    if repo:
        parts = repo.split("/")
        for i in range(len(parts), 0, -1):
            key = f"{host}/{'/'.join(parts[:i])}"
            if key in mapping:
                return mapping[key]
    for key in _host_keys(host):
        if key in mapping:
            return mapping[key]
    return None


def _run_helper(helper: str, host: str, source: Path) -> Credentials:
    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, "get"], input=host, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise PybuildError(f"{source} names the credential helper {helper!r} for {host}, but {program} is not on PATH",
                           hint=f"install {program}, or remove it from {source}") from None
    except subprocess.TimeoutExpired:
        raise PybuildError(f"credential helper {program} did not answer for {host} within 60 s") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return ANONYMOUS
        raise PybuildError(f"credential helper {program} failed for {host}: {(proc.stderr or proc.stdout).strip()}",
                           hint=LOGIN_HINT)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise PybuildError(f"credential helper {program} printed something that is not JSON for {host}") from None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def _from_entry(entry: dict, host: str, source: Path) -> Credentials | None:
    if entry.get("identitytoken"):
        return Credentials(identity_token=entry["identitytoken"])
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise PybuildError(f"{source}: the `auth` entry for {host} is not base64 of user:password",
                               hint="log in again to rewrite it") from None
        return Credentials(user, password)
    if entry.get("username") or entry.get("password"):
        return Credentials(entry.get("username", ""), entry.get("password", ""))
    return None


def credentials_for(host: str, repo: str | None = None) -> Credentials:
    """The credentials the user's config files hold for `host` (and `repo`), or anonymous."""
    for path in config_files():
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise PybuildError(f"{path}: not readable as JSON ({exc})", hint="fix or remove the file") from exc
        helper = _lookup(data.get("credHelpers") or {}, host, repo)
        if isinstance(helper, str) and helper:
            return _run_helper(helper, host, path)
        entry = _lookup(data.get("auths") or {}, host, repo)
        if isinstance(entry, dict):
            creds = _from_entry(entry, host, path)
            if creds is not None:
                return creds
        if data.get("credsStore"):
            creds = _run_helper(data["credsStore"], host, path)
            if not creds.anonymous:
                return creds
    return ANONYMOUS


_CHALLENGE = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="..."` -> ("bearer", {"realm": ..., "service": ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _CHALLENGE.finditer(rest)}
    return scheme.lower(), params


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
