"""A client for the OCI distribution API: push (skip, mount, monolithic or chunked upload) and pull.

Every request goes through `RegistryClient.request`, which adds credentials after the registry's
challenge and retries with backoff on 5xx, 429 and dropped connections. Uploads that fail half-way
ask the registry how much it holds (GET on the upload URL) and go on from there; when the registry
has lost the upload, it starts again. Blobs known to live in another repository of the same registry
(from earlier pushes and pulls, remembered in the cache dir) are mounted instead of uploaded.
"""
from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable
from urllib.parse import urlencode, urljoin, urlsplit

import requests
import urllib3

from ..errors import NetworkError, PybuildError, UsageError, VerificationError
from .auth import LOGIN_HINT, Credentials, basic_header, credentials_for, parse_challenge
from .blobs import CHUNK, BlobStore, atomic_write, sha256_bytes
from .image import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Image, canonical_json
from .layout import StoredImage, select_platform, stored_image_from_blobs

MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
RETRY_STATUS = {429, 500, 502, 503, 504}
TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
DEFAULT_CHUNK = 32 << 20


# -- references and hosts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    host: str
    repo: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, rest: str, default_tag: str | None = None) -> "Reference":
        """`HOST[:PORT]/REPO[:TAG][@sha256:...]` (what follows `docker://`)."""
        spec = rest[2:] if rest.startswith("//") else rest
        digest = None
        if "@" in spec:
            spec, _, digest = spec.partition("@")
        host, sep, path = spec.partition("/")
        if not sep or not path or not ("." in host or ":" in host or host == "localhost"):
            raise UsageError(f"docker://{spec} names no registry host",
                             hint="write docker://HOST[:PORT]/REPO[:TAG], e.g. docker://localhost:5000/app:1")
        tag = None
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, _, tag = path.rpartition(":")
        if path != path.lower() or not path:
            raise UsageError(f"docker://{rest}: repository names must be lower case")
        if not digest and not tag:
            tag = default_tag.rpartition(":")[2] if default_tag and ":" in default_tag else (default_tag or "latest")
        return cls(host, path, tag, digest)

    @property
    def reference(self) -> str:
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        return f"docker://{self.host}/{self.repo}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


def hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].split("]")[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = hostname(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def insecure_allowed(host: str) -> bool:
    """Plain HTTP is used only for loopback and for hosts named in PYBUILD_INSECURE_REGISTRIES."""
    from ..config import setting

    listed = {h.strip() for h in (setting("PYBUILD_INSECURE_REGISTRIES") or "").split(",") if h.strip()}
    return is_loopback(host) or host in listed or hostname(host) in listed


# -- where blobs were seen, for cross-repository mounts ---------------------------------------------
class BlobLocations:
    """`{host: {digest: [repo, ...]}}` in a small JSON file: repositories known to hold a blob."""

    MAX_REPOS = 8
    _lock = threading.Lock()

    def __init__(self, path: Path | None = None):
        if path is None:
            from ..config import cache_dir

            path = cache_dir() / "registry-blobs.json"
        self.path = Path(path)

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def repos(self, host: str, digest: str) -> list[str]:
        with self._lock:
            return list(self._load().get(host, {}).get(digest, []))

    def record(self, host: str, repo: str, digests: Iterable[str]) -> None:
        with self._lock:
            data = self._load()
            per_host = data.setdefault(host, {})
            for d in digests:
                repos = [r for r in per_host.get(d, []) if r != repo]
                per_host[d] = ([repo] + repos)[: self.MAX_REPOS]
            with atomic_write(self.path) as fh:
                fh.write(canonical_json(data))


# -- blobs to push ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    opener: Callable[[], BinaryIO]

    @classmethod
    def from_bytes(cls, data: bytes) -> "Blob":
        import io

        return cls(sha256_bytes(data), len(data), lambda: io.BytesIO(data))

    @classmethod
    def from_path(cls, digest: str, size: int, path: Path) -> "Blob":
        return cls(digest, size, lambda: open(path, "rb"))


def image_blobs(image: Image) -> list[Blob]:
    blobs = {layer.digest: Blob.from_path(layer.digest, layer.size, layer.path) for layer in image.layers}
    cfg = Blob.from_bytes(image.config_bytes())
    blobs[cfg.digest] = cfg
    return list(blobs.values())


@dataclass
class PushStats:
    requests: int = 0
    bytes_uploaded: int = 0
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    retries: int = 0
    resumed: int = 0
    restarted: int = 0

    def summary(self) -> str:
        return (f"{len(self.uploaded)} blobs uploaded ({self.bytes_uploaded:,} bytes), "
                f"{len(self.skipped)} already there, {len(self.mounted)} mounted")


class _UploadLost(Exception):
    """The registry no longer knows an upload session: start a new one."""


# -- the client ----------------------------------------------------------------------------------------
class RegistryClient:
    def __init__(self, host: str, *, credentials: Credentials | None = None, chunk_size: int | None = None,
                 workers: int = 4, retries: int = 6, backoff: float = 0.2, timeout: float = 300,
                 locations: BlobLocations | None = None):
        self.host = host
        self.credentials = credentials
        self.chunk_size = chunk_size or int(os.environ.get("PYBUILD_REGISTRY_CHUNK_SIZE") or DEFAULT_CHUNK)
        self.workers = workers
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.locations = locations or BlobLocations()
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=workers, pool_maxsize=workers * 2)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.stats = PushStats()
        self._lock = threading.Lock()
        self._base: str | None = None
        self._verify = True
        self._auth: dict[tuple[str, ...], str] = {}  # scope -> Authorization header
        self._basic: str | None = None  # the Basic header, once the registry asked for it

    # -- transport ----------------------------------------------------------------------------------
    @property
    def base(self) -> str:
        if self._base is None:
            self._base = self._ping()
        return self._base

    def _ping(self) -> str:
        candidates = [("https", True)]
        if is_loopback(self.host):  # traffic that never leaves the machine: the cheap probe first
            candidates = [("http", True), ("https", True), ("https", False)]
        elif insecure_allowed(self.host):  # verified TLS first; then a self-signed cert; then plain HTTP
            candidates += [("https", False), ("http", True)]
        tls_error: Exception | None = None
        for n, (scheme, verify) in enumerate(candidates):
            url = f"{scheme}://{self.host}/v2/"
            for attempt in range(3):
                try:
                    if not verify:  # only for loopback or hosts the user listed as insecure
                        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
                    r = self.session.get(url, timeout=(10, 30), verify=verify)
                    r.close()
                    # a TLS server answers plain HTTP with 400: then it is the next scheme's turn
                    if r.status_code not in (200, 401, 403) and n < len(candidates) - 1:
                        break
                    self._verify = verify
                    return f"{scheme}://{self.host}"
                except requests.exceptions.SSLError as exc:
                    tls_error = exc
                    break
                except TRANSIENT as exc:
                    if attempt == 2:  # refused or timing out whatever the scheme: no use trying another
                        raise NetworkError(f"cannot reach registry {self.host} ({_short(exc)})",
                                           hint="check the host and port and that the registry is running; a "
                                                "registry on plain HTTP must be on loopback or listed in "
                                                "PYBUILD_INSECURE_REGISTRIES") from exc
                    time.sleep(self.backoff * (2 ** attempt))
        raise NetworkError(f"registry {self.host}: TLS failed ({_short(tls_error)})",
                           hint="give the registry's CA with REQUESTS_CA_BUNDLE, or, for a test registry, "
                                "add it to PYBUILD_INSECURE_REGISTRIES")

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith("http") else path

    def _creds(self, repo: str | None) -> Credentials:
        if self.credentials is None:
            self.credentials = credentials_for(self.host, repo)
        return self.credentials

    def _token(self, params: dict[str, str], scope: tuple[str, ...], repo: str | None) -> str:
        realm = params.get("realm")
        if not realm:
            raise PybuildError(f"registry {self.host} asked for a Bearer token but named no realm")
        creds = self._creds(repo)
        verify = self._verify if insecure_allowed(urlsplit(realm).netloc) else True
        query: list[tuple[str, str]] = [("service", params["service"])] if params.get("service") else []
        query += [("scope", s) for s in scope]
        try:
            if creds.identity_token:
                r = self.session.post(realm, data=query + [("grant_type", "refresh_token"), ("client_id", "pybuild"),
                                                            ("refresh_token", creds.identity_token)],
                                      timeout=(10, 60), verify=verify)
            else:
                auth = (creds.username, creds.password) if not creds.anonymous else None
                r = self.session.get(realm, params=query, auth=auth, timeout=(10, 60), verify=verify)
        except TRANSIENT as exc:
            raise NetworkError(f"cannot reach the token service {realm} of registry {self.host} "
                               f"({_short(exc)})") from exc
        if r.status_code in (401, 403):
            raise PybuildError(f"registry {self.host} refused the credentials for {', '.join(scope)}",
                               hint=LOGIN_HINT.replace("HOST", self.host))
        if r.status_code != 200:
            raise PybuildError(f"token service {realm} of registry {self.host} answered {r.status_code}")
        body = r.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise PybuildError(f"token service {realm} of registry {self.host} returned no token")
        return "Bearer " + token

    def _authorize(self, response: requests.Response, scope: tuple[str, ...], repo: str | None,
                   sent: str | None) -> bool:
        """Answer a 401 challenge; False when there is nothing new to try."""
        with self._lock:
            current = self._auth.get(scope) or self._basic
        if current and current != sent:
            return True  # another thread has already answered the challenge
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "bearer":
            header = self._token(params, scope, repo)
        elif scheme == "basic":
            creds = self._creds(repo)
            if creds.anonymous:
                return False
            header = basic_header(creds)
        else:
            return False
        if header == sent:
            return False
        with self._lock:
            if scheme == "basic":
                self._basic = header
            else:
                self._auth[scope] = header
        return True

    def request(self, method: str, path: str, *, scope: tuple[str, ...] = (), repo: str | None = None,
                body: Callable[[], object] | None = None, headers: dict | None = None, stream: bool = False,
                retry: bool = True, allow_redirects: bool = True) -> requests.Response:
        """One API call: credentials after a challenge, retries with backoff on 5xx/429/resets."""
        url = self.url(path)
        attempts = self.retries + 1 if retry else 1
        last: Exception | None = None
        response = None
        auth_tries = 0
        attempt = 0
        while attempt < attempts:
            hdrs = dict(headers or {})
            with self._lock:
                auth = self._auth.get(scope) or self._basic
                self.stats.requests += 1
            if auth:
                hdrs["Authorization"] = auth
            data = body() if body else None
            try:
                response = self.session.request(method, url, data=data, headers=hdrs, stream=stream,
                                                timeout=(10, self.timeout), verify=self._verify,
                                                allow_redirects=allow_redirects)
            except TRANSIENT as exc:
                last, response = exc, None
            finally:
                if hasattr(data, "close"):
                    data.close()  # type: ignore[union-attr]
            if response is not None and response.status_code == 401 and auth_tries < 2:
                auth_tries += 1
                if self._authorize(response, scope, repo, auth):
                    response.close()
                    continue
            if response is not None and response.status_code not in RETRY_STATUS:
                return response
            attempt += 1
            if response is not None and attempt < attempts:
                response.close()
            if attempt < attempts:
                with self._lock:
                    self.stats.retries += 1
                time.sleep(self._delay(attempt, response))
        if response is not None:
            return response
        raise NetworkError(f"registry {self.host}: {method} {urlsplit(url).path} failed after {attempts} "
                           f"attempt(s) ({_short(last)})",
                           hint="check the network and that the registry is up, then try again")

    def _delay(self, attempt: int, response: requests.Response | None) -> float:
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            return min(float(response.headers["Retry-After"]), 30.0)
        return min(self.backoff * (2 ** (attempt - 1)), 5.0) * (0.5 + random.random())

    def fail(self, response: requests.Response, what: str) -> PybuildError:
        """One clear error for an unexpected answer."""
        detail = ""
        try:
            errors = response.json().get("errors") or []
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except ValueError:
            detail = response.text[:200].strip()
        msg = f"registry {self.host}: {what} answered {response.status_code}" + (f" ({detail})" if detail else "")
        if response.status_code == 401:
            return PybuildError(msg, hint=LOGIN_HINT.replace("HOST", self.host))
        if response.status_code == 403:
            return PybuildError(msg, hint="the credentials have no push/pull right on this repository")
        if response.status_code == 404:
            return PybuildError(msg, hint="check the repository name and tag")
        return PybuildError(msg)

    # -- push -----------------------------------------------------------------------------------------
    def has_blob(self, repo: str, digest: str) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=(f"repository:{repo}:pull,push",), repo=repo)
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self.fail(r, f"HEAD blob {digest[:19]} in {repo}")

    def push_blobs(self, repo: str, blobs: list[Blob]) -> None:
        """Upload what the registry lacks, several blobs at a time."""
        if self.workers <= 1 or len(blobs) <= 1:
            for b in blobs:
                self.push_blob(repo, b)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for fut in [pool.submit(self.push_blob, repo, b) for b in blobs]:
                fut.result()

    def push_blob(self, repo: str, blob: Blob) -> None:
        scope = (f"repository:{repo}:pull,push",)
        if self.has_blob(repo, blob.digest):
            self._note("skipped", blob)
        else:
            location = None
            for other in self.locations.repos(self.host, blob.digest):
                if other == repo:
                    continue
                mount = urlencode({"mount": blob.digest, "from": other})
                r = self.request("POST", f"/v2/{repo}/blobs/uploads/?{mount}",
                                 scope=scope + (f"repository:{other}:pull",), repo=repo)
                if r.status_code == 201:
                    self._note("mounted", blob)
                    break
                if r.status_code == 202:
                    location = r.headers.get("Location")
                    break
            else:
                self._upload(repo, blob, location)
                self._note("uploaded", blob)
        self.locations.record(self.host, repo, [blob.digest])

    def _note(self, kind: str, blob: Blob) -> None:
        with self._lock:
            getattr(self.stats, kind).append(blob.digest)

    def _start_upload(self, repo: str) -> str:
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=(f"repository:{repo}:pull,push",), repo=repo)
        if r.status_code != 202 or not r.headers.get("Location"):
            raise self.fail(r, f"starting an upload to {repo}")
        return r.headers["Location"]

    def _upload(self, repo: str, blob: Blob, location: str | None) -> None:
        restarts = self.retries + 2
        for attempt in range(restarts):
            if attempt:
                with self._lock:
                    self.stats.restarted += 1
                if self.has_blob(repo, blob.digest):
                    return
            try:
                loc = location or self._start_upload(repo)
                location = None
                if blob.size <= self.chunk_size:
                    self._put_whole(repo, blob, loc)
                else:
                    self._put_chunks(repo, blob, loc)
                return
            except (_UploadLost, NetworkError):
                if attempt == restarts - 1:
                    break
        raise NetworkError(f"registry {self.host}: the upload of {blob.digest[:19]} to {repo} kept failing "
                           f"({restarts} attempts)", hint="check the network and the registry's log, then try again")

    def _finish_url(self, loc: str, digest: str) -> str:
        return loc + ("&" if "?" in loc else "?") + urlencode({"digest": digest})

    def _put_whole(self, repo: str, blob: Blob, loc: str) -> None:
        r = self.request("PUT", self._finish_url(loc, blob.digest), scope=(f"repository:{repo}:pull,push",),
                         repo=repo, body=blob.opener,
                         headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)})
        if r.status_code == 201:
            with self._lock:
                self.stats.bytes_uploaded += blob.size
            return
        if r.status_code in (404, 400, 416):
            raise _UploadLost()
        raise self.fail(r, f"uploading blob {blob.digest[:19]} to {repo}")

    def _put_chunks(self, repo: str, blob: Blob, loc: str) -> None:
        scope = (f"repository:{repo}:pull,push",)
        offset, stalls = 0, 0
        with blob.opener() as fh:
            while offset < blob.size:
                fh.seek(offset)
                data = fh.read(min(self.chunk_size, blob.size - offset))
                end = offset + len(data)
                try:
                    r = self.request("PATCH", loc, scope=scope, repo=repo, body=lambda d=data: d, retry=False,
                                     headers={"Content-Type": "application/octet-stream",
                                              "Content-Range": f"{offset}-{end - 1}",
                                              "Content-Length": str(len(data))})
                except NetworkError:
                    r = None
                if r is not None and r.status_code == 202 and r.headers.get("Location"):
                    loc, offset, stalls = r.headers["Location"], end, 0
                    with self._lock:
                        self.stats.bytes_uploaded += len(data)
                    continue
                if r is not None and r.status_code not in RETRY_STATUS | {400, 404, 416}:
                    raise self.fail(r, f"uploading a chunk of {blob.digest[:19]} to {repo}")
                stalls += 1
                if stalls > self.retries:
                    raise _UploadLost()
                time.sleep(self._delay(stalls, r))
                loc, offset = self._upload_status(repo, loc)
                with self._lock:
                    self.stats.resumed += 1
        r = self.request("PUT", self._finish_url(loc, blob.digest), scope=scope, repo=repo,
                         headers={"Content-Length": "0"})
        if r.status_code != 201:
            if r.status_code in (400, 404, 416):
                raise _UploadLost()
            raise self.fail(r, f"finishing the upload of {blob.digest[:19]} to {repo}")

    def _upload_status(self, repo: str, loc: str) -> tuple[str, int]:
        """Ask how much of an upload the registry holds: (next location, offset to send from)."""
        r = self.request("GET", loc, scope=(f"repository:{repo}:pull,push",), repo=repo)
        if r.status_code != 204:
            raise _UploadLost()
        rng = r.headers.get("Range", "0--1").replace("bytes=", "")
        try:
            end = int(rng.split("-", 1)[1])
        except (IndexError, ValueError):
            raise _UploadLost() from None
        # "0-0" is what an empty upload reports too; a 1-byte chunk never goes this way (it is monolithic)
        offset = end + 1 if end > 0 else 0
        return r.headers.get("Location") or loc, offset

    def put_manifest(self, repo: str, reference: str, data: bytes, media_type: str) -> str:
        digest = sha256_bytes(data)
        r = self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope=(f"repository:{repo}:pull,push",),
                         repo=repo, body=lambda: data, headers={"Content-Type": media_type})
        if r.status_code not in (200, 201):
            raise self.fail(r, f"PUT manifest {repo}:{reference}")
        echoed = r.headers.get("Docker-Content-Digest")
        if echoed and echoed != digest:
            raise VerificationError(f"registry {self.host} stored manifest {repo}:{reference} as {echoed}, "
                                    f"pybuild sent {digest}")
        return digest

    def push_image(self, repo: str, image: Image, reference: str | None) -> str:
        self.push_blobs(repo, image_blobs(image))
        return self.put_manifest(repo, reference or image.digest, image.manifest_bytes(), OCI_MANIFEST)

    def push_index(self, repo: str, images: list[Image], reference: str) -> str:
        """A multi-platform image: each image by digest, then an index under `reference`."""
        blobs: dict[str, Blob] = {}
        for img in images:
            for b in image_blobs(img):
                blobs[b.digest] = b
        self.push_blobs(repo, list(blobs.values()))
        for img in images:
            self.put_manifest(repo, img.digest, img.manifest_bytes(), OCI_MANIFEST)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [img.descriptor() for img in images]}
        return self.put_manifest(repo, reference, canonical_json(index), OCI_INDEX)

    # -- pull -----------------------------------------------------------------------------------------
    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        r = self.request("GET", f"/v2/{repo}/manifests/{reference}", scope=(f"repository:{repo}:pull",), repo=repo,
                         headers={"Accept": ", ".join(MANIFEST_TYPES)})
        if r.status_code != 200:
            raise self.fail(r, f"GET manifest {repo}:{reference}")
        data = r.content
        digest = sha256_bytes(data)
        expected = reference if reference.startswith("sha256:") else r.headers.get("Docker-Content-Digest")
        if expected and expected != digest:
            raise VerificationError(f"registry {self.host}: manifest {repo}:{reference} is {digest}, "
                                    f"expected {expected}")
        media_type = r.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            doc = json.loads(data)
        except ValueError:
            raise PybuildError(f"registry {self.host}: manifest {repo}:{reference} is not JSON") from None
        media_type = doc.get("mediaType") or media_type
        if doc.get("schemaVersion") == 1:
            raise PybuildError(f"registry {self.host}: {repo}:{reference} is a schema 1 manifest, which pybuild "
                               "does not read", hint="push the image again with a current tool")
        return data, media_type

    def fetch_blob(self, repo: str, digest: str, store: BlobStore) -> None:
        if store.has(digest):
            return
        for attempt in range(self.retries + 1):
            r = self.request("GET", f"/v2/{repo}/blobs/{digest}", scope=(f"repository:{repo}:pull",), repo=repo,
                             stream=True)
            if r.status_code != 200:
                raise self.fail(r, f"GET blob {digest[:19]} from {repo}")
            try:
                with store.writer(expected=digest) as out:
                    for chunk in r.iter_content(CHUNK):
                        out.write(chunk)
                return
            except TRANSIENT:
                time.sleep(self._delay(attempt + 1, None))
            finally:
                r.close()
        raise NetworkError(f"registry {self.host}: downloading blob {digest} from {repo} kept failing")

    def pull(self, repo: str, reference: str, store: BlobStore, platform: str = "linux/amd64",
             source: str = "") -> StoredImage:
        data, media_type = self.get_manifest(repo, reference)
        if media_type in INDEX_TYPES:
            store.put_bytes(data)
            desc = select_platform(json.loads(data), platform)
            data, media_type = self.get_manifest(repo, desc["digest"])
        digest = store.put_bytes(data)
        manifest = json.loads(data)
        digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest.get("layers", [])]
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            for fut in [pool.submit(self.fetch_blob, repo, d, store) for d in digests]:
                fut.result()
        self.locations.record(self.host, repo, digests)
        return stored_image_from_blobs(store, digest, source or f"docker://{self.host}/{repo}:{reference}")


def _short(exc: object) -> str:
    """The root cause of a requests error ("[Errno 111] Connection refused"), not urllib3's whole chain."""
    text = str(exc)
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+|Read timed out|CERTIFICATE_VERIFY_FAILED[^'\")]*|"
                      r"WRONG_VERSION_NUMBER|Connection aborted|RemoteDisconnected[^'\")]*", text)
    if found:
        return found.group(0).strip()
    return text if len(text) < 200 else text[:200] + "..."
