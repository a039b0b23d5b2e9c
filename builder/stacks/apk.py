"""APK repositories (Wolfi, Alpine) as a package source.

Trust chain: each repository's `APKINDEX.tar.gz` carries an RSA signature (first gzip stream)
over the rest of the file, checked against the configured public keys; the index pins each
package's control stream by SHA-1 (`C:Q1...`); the control stream's `.PKGINFO` pins the data
stream by SHA-256 (`datahash`), and the package's own signature covers the control stream.
All of that is checked once, when a package is locked; from then on the lockfile's sha256 of
the whole `.apk` pins it, and nothing that did not verify is ever kept in the cache.
"""
from __future__ import annotations

import base64
import contextlib
import functools
import gc
import hashlib
import io
import json
import platform
import re
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..config import setting
from ..errors import NetworkError, PybuildError, VerificationError
from ..oci.blobs import CHUNK, BlobStore, atomic_write
from ..oci.tarball import TarWriter, normalise_path
from .resolve import Constraint, PackageRecord, _satisfies

ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64", "x86_64": "x86_64", "aarch64": "aarch64"}
SIGNATURE_HASHES = {"RSA": hashes.SHA1, "RSA256": hashes.SHA256, "RSA512": hashes.SHA512}
MAX_INFLATE = 4 * CHUNK  # bound on what one decompress call may return (gzip bombs)

# ---------------------------------------------------------------------------------------------
# versions (apk-tools rules)

_PRE_SUFFIXES = {"alpha": -4, "beta": -3, "pre": -2, "rc": -1}
_POST_SUFFIXES = {"cvs": 0, "svn": 1, "git": 2, "hg": 3, "p": 4}
# Token kinds, in the order apk ranks them when two versions differ in shape at some point:
# the version whose next token has the *lower* kind is the greater one (1.2.1 > 1.2a > 1.2_p1 > 1.2-r1 > 1.2),
# except that a pre-release suffix (_alpha, _beta, _pre, _rc) makes its version the lesser.
_INVALID, _DIGIT, _LETTER, _SUFFIX, _SUFFIX_NO, _HASH, _REVISION, _END = range(-1, 7)
_TOKEN = re.compile(r"\.(?P<digit>\d+)|(?P<letter>[a-z])(?![a-z])|_(?P<suffix>[a-z]+?)(?P<suffix_no>\d*)(?=[_~.-]|$)"
                    r"|~(?P<hash>[0-9a-f]+)|-r(?P<rev>\d+)$")


@functools.lru_cache(maxsize=1 << 18)
def _version_tokens(version: str) -> tuple[tuple[int, object], ...]:
    m = re.match(r"\d+", version)
    if not m:
        return ((_INVALID, version),)
    out: list[tuple[int, object]] = [(_DIGIT, int(m.group()))]
    pos = m.end()
    while pos < len(version):
        t = _TOKEN.match(version, pos)
        if not t:
            out.append((_INVALID, version[pos:]))
            break
        if t.group("digit") is not None:
            out.append((_DIGIT, t.group("digit")))
        elif t.group("letter"):
            out.append((_LETTER, t.group("letter")))
        elif t.group("suffix"):
            name = t.group("suffix")
            value = _PRE_SUFFIXES.get(name, _POST_SUFFIXES.get(name))
            if value is None:
                out.append((_INVALID, version[pos:]))
                break
            out.append((_SUFFIX, value))
            if t.group("suffix_no"):
                out.append((_SUFFIX_NO, int(t.group("suffix_no"))))
        elif t.group("hash"):
            out.append((_HASH, t.group("hash")))
        else:
            out.append((_REVISION, int(t.group("rev"))))
        pos = t.end()
    return tuple(out)


def _digits_key(text: str) -> tuple:
    """Components after the first: a leading zero makes them compare as strings (decimal
    fractions), which always sort below numbers without one; others compare as numbers."""
    return (0, text) if text.startswith("0") else (1, len(text), text)


# Rank of a token where two versions first differ in shape: the higher rank is the newer version.
_RANK = {_INVALID: 8, _DIGIT: 7, _LETTER: 6, _SUFFIX: 5, _SUFFIX_NO: 4, _HASH: 3, _REVISION: 2, _END: 1}


@functools.lru_cache(maxsize=1 << 18)
def version_key(version: str) -> tuple:
    """A sort key for an APK version: comparing keys compares versions as apk-tools does."""
    key = []
    for i, (kind, value) in enumerate(_version_tokens(version)):
        if kind == _SUFFIX and value < 0:  # type: ignore[operator]
            key.append((0, value))  # a pre-release suffix: older than anything else at this point
        elif kind == _DIGIT and i:
            key.append((7, _digits_key(value)))  # type: ignore[arg-type]
        else:
            key.append((_RANK[kind], value))
    key.append((1, 0))
    return tuple(key)


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as APK version `a` is older than, equal to or newer than `b`."""
    if a == b:
        return 0
    ka, kb = version_key(a), version_key(b)
    return (ka > kb) - (ka < kb)


def fuzzy_match(version: str, prefix: str) -> bool:
    """APK's `~` operator: `version` starts with all the components of `prefix` (1.2.5-r0 ~ 1.2)."""
    ta, tp = _version_tokens(version), _version_tokens(prefix)
    return len(tp) <= len(ta) and version_key(prefix)[:-1] == version_key(version)[:len(tp)]


# ---------------------------------------------------------------------------------------------
# dependencies

_DEP = re.compile(r"^(?P<conflict>!)?(?P<name>[^<>=~!\s]+?)(?:(?P<op>>=|<=|=~|>~|<~|><|=|<|>|~)(?P<version>\S+))?$")
_OPS = {"=": "=", "<": "<<", ">": ">>", "<=": "<=", ">=": ">="}
_FUZZY_OPS = ("~", "=~", ">~", "<~")


def parse_dependency(text: str) -> tuple[bool, str, str, str]:
    """`!name`, `name`, `so:libc.so.6`, `name>=1.2`, `name~1.2` -> (conflict, name, apk op, version)."""
    if not any(ch in text for ch in "<>=~!@"):
        return False, text, "", ""
    m = _DEP.match(text)
    if not m:
        raise PybuildError(f"cannot parse APK dependency {text!r}")
    name = m.group("name").split("@", 1)[0]  # `name@tag` pins a tagged repository; the name is what counts
    return bool(m.group("conflict")), name, m.group("op") or "", m.group("version") or ""


@functools.lru_cache(maxsize=1 << 18)
def _dependency(text: str) -> Constraint | None:
    """A `D:` item as the Resolver's constraint (None for a `!conflict`); cached, as indexes repeat them."""
    conflict, name, op, version = parse_dependency(text)
    if conflict:
        return None
    return Constraint(name, _OPS.get(op, op), version)


def _provide(text: str) -> Constraint:
    name, _, version = text.partition("=")
    return Constraint(name, "=" if version else "", version)


def _expand_fuzzy(c: Constraint, versions: dict[str, set[str]]) -> list[Constraint]:
    """The Resolver has no fuzzy operator: `name~V` becomes `name=v1 | name=v2 ...` over the
    versions the index knows (newest first), which is exact and keeps the choice deterministic."""
    name, op, version = c.name, c.op, c.version
    matching = [v for v in versions.get(name, ())
                if fuzzy_match(v, version) or (op == ">~" and compare_versions(v, version) > 0)
                or (op == "<~" and compare_versions(v, version) < 0)]
    matching.sort(key=version_key, reverse=True)
    return [Constraint(name, "=", v) for v in matching] or [Constraint(name, "=", version)]


def _ranked_providers(records: list[PackageRecord]) -> dict[str, list[tuple[PackageRecord, Constraint]]]:
    """Virtual names (`cmd:sh`) offered by several packages of which one sets a provider
    priority (`k:`): their providers, best first (priority, then name, then newest)."""
    providers: dict[str, list[tuple[PackageRecord, Constraint]]] = {}
    for r in records:
        for p in r.provides:
            providers.setdefault(p.name, []).append((r, p))
    real = {r.name for r in records}
    ranked = {}
    for name, provs in providers.items():
        if name in real or len({r.name for r, _ in provs}) < 2 or not any(
                r.extra.get("provider-priority") for r, _ in provs):
            continue
        provs.sort(key=lambda rp: version_key(rp[0].version), reverse=True)
        provs.sort(key=lambda rp: (-rp[0].extra.get("provider-priority", 0), rp[0].name))
        ranked[name] = provs
    return ranked


def _prefer_providers(c: Constraint, providers: list[tuple[PackageRecord, Constraint]]) -> list[Constraint]:
    """A dependency on a ranked virtual name, as apk chooses: the providers that satisfy it, as
    exact alternatives in order of preference (the Resolver takes the first it can have)."""
    out = [Constraint(r.name, "=", r.version) for r, p in providers
           if not c.op or (p.version and _satisfies(p.version, c, compare_versions))]
    return out or [c]


# ---------------------------------------------------------------------------------------------
# the binary format: concatenated gzip streams holding tar segments


def gzip_member_ends(fh: BinaryIO) -> list[int]:
    """Offsets where each gzip stream of `fh` ends (the APK format cuts files at these seams)."""
    ends: list[int] = []
    d = zlib.decompressobj(31)
    start = used = 0
    pending = b""
    while True:
        if not pending:
            pending = fh.read(CHUNK)
            if not pending:
                while used and not d.eof and d.decompress(d.unconsumed_tail, MAX_INFLATE):
                    pass
                if used and not d.eof:
                    raise PybuildError("truncated gzip stream")
                return ends
        size = len(pending)
        try:
            d.decompress(pending, MAX_INFLATE)
        except zlib.error as exc:
            raise PybuildError(f"corrupt gzip stream at byte {start + used}: {exc}")
        if d.eof:
            pending = d.unused_data
            start += used + size - len(pending)
            ends.append(start)
            used = 0
            d = zlib.decompressobj(31)
        else:
            pending = d.unconsumed_tail
            used += size - len(pending)


def _inflate(data: bytes, limit: int = 64 * CHUNK) -> bytes:
    d = zlib.decompressobj(31)
    try:
        out = d.decompress(data, limit)
    except zlib.error as exc:
        raise PybuildError(f"corrupt gzip stream: {exc}")
    if d.unconsumed_tail:
        raise PybuildError("gzip stream inflates past the size allowed for APK metadata")
    return out


def _tar_files(segment: bytes) -> dict[str, bytes]:
    """Regular files of a tar segment (which may lack the end-of-archive blocks)."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(segment + b"\0" * 1024), mode="r:") as tar:
        for m in tar:
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return out


def q1(data: bytes) -> str:
    """APK's checksum notation: `Q1` + base64 of the SHA-1."""
    return "Q1" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def parse_pkginfo(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("#") or " = " not in line:
            continue
        key, _, value = line.partition(" = ")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _clean_url(url: str) -> str:
    """A repository URL without credentials, fit for lockfiles, messages and the image."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts).rstrip("/")


class ApkSource:
    """Signed APK repositories (`<repo>/<arch>/APKINDEX.tar.gz`) as a PackageSource."""

    kind = "apk"

    def __init__(self, source: dict, cache: Path):
        arch = source.get("architecture") or platform.machine()
        self.arch = ARCHITECTURES.get(arch, arch)
        repos_setting = source.get("repositories-setting")
        from_setting = setting(repos_setting) if repos_setting else None
        repos = ([r.strip() for r in from_setting.split(",") if r.strip()] if from_setting
                 else list(source.get("repositories") or []))
        if not repos:
            raise PybuildError("the APK source names no repository",
                               hint=f"set {repos_setting} to the repository URL(s)" if repos_setting
                               else "list repositories under [source] in the stack definition")
        self.urls = {_clean_url(r): r.rstrip("/") for r in repos}  # clean -> with credentials
        keys_setting = source.get("keys-setting")
        from_setting = setting(keys_setting) if keys_setting else None
        key_paths = ([k.strip() for k in from_setting.split(",") if k.strip()] if from_setting
                     else list(source.get("keys") or []))
        self.keys: dict[str, bytes] = {}
        for p in key_paths:
            path = Path(p).expanduser()
            # trusted under its file name, which is how signatures name their key (a .pem suffix aside)
            name = path.name[:-len(".pem")] if path.name.endswith(".pem") else path.name
            try:
                self.keys[name] = path.read_bytes()
            except OSError as exc:
                raise PybuildError(f"cannot read APK signing key {path}: {exc.strerror}",
                                   hint=f"check {keys_setting or 'the keys of the stack source'}")
        self.cache = Path(cache)
        self.packages = BlobStore(self.cache / "packages")
        self.session = requests.Session()
        self._locked: dict[str, PackageRecord] = {}
        self._installed: dict[str, str] = {}  # package name -> its /lib/apk/db/installed block

    # -- transport ----------------------------------------------------------------------------
    def _get(self, url: str) -> Iterator[bytes]:
        shown = _clean_url(url)
        if "://" not in url or url.startswith("file://"):
            path = Path(urlsplit(url).path if url.startswith("file://") else url)
            try:
                with open(path, "rb") as fh:
                    yield from iter(lambda: fh.read(CHUNK), b"")
            except FileNotFoundError:
                raise NetworkError(f"{shown}: not found")
            return
        try:
            resp = self.session.get(url, timeout=60, stream=True)
        except requests.RequestException as exc:
            raise NetworkError(f"cannot reach the APK repository at {shown}: {exc.__class__.__name__}",
                               hint="check the network and the repository URL setting")
        with resp:
            if resp.status_code == 404:
                raise NetworkError(f"{shown}: not found (HTTP 404)",
                                   hint="the repository no longer has it; re-resolve with "
                                        "`pybuild stacks lock NAME --update`")
            if resp.status_code != 200:
                raise NetworkError(f"{shown}: HTTP {resp.status_code} from the APK repository")
            try:
                yield from resp.iter_content(CHUNK)
            except requests.RequestException as exc:
                raise NetworkError(f"download of {shown} failed: {exc.__class__.__name__}")

    # -- signatures ---------------------------------------------------------------------------
    def _verify(self, signatures: dict[str, bytes], signed: bytes | Callable[[], bytes], what: str) -> str:
        """Check the `.SIGN.*` files of a signature segment; returns the name of the key that verified."""
        named = []
        for fname, sig in sorted(signatures.items()):
            algo, _, keyname = fname[len(".SIGN."):].partition(".")
            if not fname.startswith(".SIGN.") or algo not in SIGNATURE_HASHES:
                continue
            named.append(keyname)
            if keyname not in self.keys:
                continue
            try:
                key = serialization.load_pem_public_key(self.keys[keyname])
            except ValueError:
                raise PybuildError(f"APK signing key {keyname} is not a PEM public key")
            if not isinstance(key, rsa.RSAPublicKey):
                raise PybuildError(f"APK signing key {keyname} is not an RSA key")
            data = signed() if callable(signed) else signed
            try:
                key.verify(sig, data, padding.PKCS1v15(), SIGNATURE_HASHES[algo]())
            except InvalidSignature:
                raise VerificationError(f"{what}: the signature by key {keyname} does not verify",
                                        hint="the file was tampered with or damaged; nothing was cached")
            return keyname
        if not named:
            raise VerificationError(f"{what} is not signed")
        raise VerificationError(
            f"{what} is signed by key {', '.join(named)}, which is not among the trusted keys "
            f"({', '.join(sorted(self.keys)) or 'none configured'})",
            hint="add the repository's public key (a file named like the key) to the stack's keys or keys setting")

    # -- index --------------------------------------------------------------------------------
    def load_index(self) -> tuple[list[PackageRecord], Callable[[str, str], int], dict[str, int]]:
        with _no_gc():  # hundreds of thousands of small objects: collection passes would dominate
            records: list[PackageRecord] = []
            for clean, url in self.urls.items():
                records.extend(self._repository(clean, url))
            versions: dict[str, set[str]] = {}
            for r in records:
                versions.setdefault(r.name, set()).add(r.version)
                for p in r.provides:
                    if p.version:
                        versions.setdefault(p.name, set()).add(p.version)
            ranked = _ranked_providers(records)
            for r in records:
                r.depends = [_expand_fuzzy(g[0], versions) if g[0].op in _FUZZY_OPS
                             else _prefer_providers(g[0], ranked[g[0].name]) if g[0].name in ranked else g
                             for g in r.depends]
        return records, compare_versions, {clean: i for i, clean in enumerate(self.urls)}

    def _repository(self, clean: str, url: str) -> list[PackageRecord]:
        where = f"APK repository {clean} ({self.arch}/APKINDEX.tar.gz)"
        try:
            raw = b"".join(self._get(f"{url}/{self.arch}/APKINDEX.tar.gz"))
        except NetworkError as exc:
            if "not found" not in exc.message:
                raise
            raise NetworkError(f"APK repository {clean} has no {self.arch}/APKINDEX.tar.gz",
                               hint="check the repository URL (the folder above the architecture folders) "
                                    "and the stack's architecture")
        try:
            ends = gzip_member_ends(io.BytesIO(raw))
        except PybuildError as exc:
            raise VerificationError(f"{where}: {exc.message}")
        if len(ends) < 2:
            raise VerificationError(f"{where} is not signed (one gzip stream, no signature)")
        try:
            signatures = _tar_files(_inflate(raw[:ends[0]]))
        except (tarfile.TarError, PybuildError) as exc:
            raise VerificationError(f"{where}: unreadable signature stream ({exc})")
        self._verify(signatures, raw[ends[0]:], where)
        index = _tar_files(_inflate(raw[ends[0]:], 1 << 30)).get("APKINDEX")
        if index is None:
            raise PybuildError(f"{where} holds no APKINDEX file")
        return [self._record(block, clean) for block in index.decode("utf-8", "replace").split("\n\n")
                if block.strip()]

    def _record(self, block: str, repo: str) -> PackageRecord:
        f: dict[str, str] = {}
        for line in block.split("\n"):
            if line[1:2] == ":":
                f[line[0]] = line[2:]
        depends: list[list[Constraint]] = []
        conflicts = []
        for dep in f.get("D", "").split():
            c = _dependency(dep)
            if c is None:
                conflicts.append(dep[1:])
            elif c.op != "><":
                depends.append([c])  # fuzzy operators are expanded once all versions are known
        provides = [_provide(p) for p in f.get("p", "").split()]
        name, version, arch = f.get("P", ""), f.get("V", ""), f.get("A", self.arch)
        return PackageRecord(
            name=name, version=version, architecture=arch, depends=depends, provides=provides,
            filename=f"{self.arch}/{name}-{version}.apk", size=int(f.get("S", "0") or 0), suite=repo,
            source=f.get("o", ""),
            extra={"checksum": f.get("C", ""), "installed-size": int(f.get("I", "0") or 0),
                   "conflicts": conflicts, "provider-priority": int(f.get("k", "0") or 0)})

    # -- packages -----------------------------------------------------------------------------
    def lock_entry(self, record: PackageRecord) -> dict:
        """Downloads and verifies the package (index checksum, datahash, signature) to pin its sha256."""
        checksum = record.extra.get("checksum", "")
        self._check_conflicts(record)
        memo = self.cache / "verified" / (hashlib.sha256(
            json.dumps([record.suite, record.filename, checksum]).encode()).hexdigest() + ".json")
        sha256 = ""
        if memo.exists():
            sha256 = json.loads(memo.read_text()).get("sha256", "")
            if not self.packages.has("sha256:" + sha256):
                sha256 = ""
        if not sha256:
            sha256 = self._download_verified(record)
            with atomic_write(memo, "w") as fh:  # type: ignore[arg-type]
                fh.write(json.dumps({"sha256": sha256, "name": record.name, "version": record.version}))
        entry = {"name": record.name, "version": record.version, "architecture": record.architecture,
                 "repository": record.suite, "filename": record.filename, "checksum": checksum,
                 "sha256": sha256, "size": record.size}
        if record.source:
            entry["origin"] = record.source
        return entry

    def _check_conflicts(self, record: PackageRecord) -> None:
        """`!name` dependencies: no two locked packages may exclude each other."""
        def names(r: PackageRecord) -> dict[str, str]:
            return {r.name: r.version, **{p.name: p.version for p in r.provides}}

        def clash(a: PackageRecord, b: PackageRecord) -> str | None:
            have = names(b)
            for text in a.extra.get("conflicts", []):
                _, name, op, version = parse_dependency(text)
                if name in have and (not op or not have[name] or _apk_op_holds(have[name], op, version)):
                    return text
            return None

        for other in self._locked.values():
            for a, b in ((record, other), (other, record)):
                found = clash(a, b)
                if found:
                    raise PybuildError(f"{a.name} {a.version} conflicts with {b.name} {b.version} (!{found})",
                                       hint=f"list one of {a.name}, {b.name} under exclude, or drop what pulls it in")
        self._locked[record.name] = record

    def _download_verified(self, record: PackageRecord) -> str:
        url = f"{self.urls.get(record.suite, record.suite)}/{record.filename}"
        where = f"{record.name} {record.version} ({record.suite}/{record.filename})"
        incoming = self.cache / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=incoming, prefix=".apk.") as tmp:
            for chunk in self._get(url):
                tmp.write(chunk)
            tmp.flush()
            self._verify_package(Path(tmp.name), record, where)
            return self.packages.put_file(Path(tmp.name)).split(":", 1)[1]

    def _verify_package(self, path: Path, record: PackageRecord, where: str) -> None:
        with open(path, "rb") as fh:
            size = path.stat().st_size
            if record.size and size != record.size:
                raise VerificationError(f"{where}: {size} bytes, but the signed index says {record.size}",
                                        hint="the package was tampered with or damaged; nothing was cached")
            try:
                ends = gzip_member_ends(fh)
            except PybuildError as exc:
                raise VerificationError(f"{where}: {exc.message}")
            if len(ends) < 3:
                raise VerificationError(f"{where} is not a signed APK package ({len(ends)} gzip streams)")
            fh.seek(0)
            sig_gz, control_gz = fh.read(ends[0]), fh.read(ends[1] - ends[0])
            checksum = record.extra.get("checksum", "")
            if q1(control_gz) != checksum:
                raise VerificationError(f"{where}: control checksum {q1(control_gz)} does not match the signed "
                                        f"index's {checksum}",
                                        hint="the package was tampered with or damaged; nothing was cached")
            info = _pkginfo(control_gz, where)
            data_hash = hashlib.sha256()
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                data_hash.update(chunk)
            datahash = (info.get("datahash") or [""])[0]
            if datahash and data_hash.hexdigest() != datahash:
                raise VerificationError(f"{where}: the data stream's sha256 {data_hash.hexdigest()} does not match "
                                        f"the datahash {datahash} of its signed .PKGINFO",
                                        hint="the package was tampered with or damaged; nothing was cached")

            def signed() -> bytes:
                fh.seek(ends[0])
                return fh.read() if not datahash else control_gz

            self._verify(_tar_files(_inflate(sig_gz)), signed, where)
            if info.get("pkgname") != [record.name] or info.get("pkgver") != [record.version]:
                raise VerificationError(f"{where}: its .PKGINFO names {info.get('pkgname')} {info.get('pkgver')}")

    def _mirrors(self, entry: dict) -> list[str]:
        repo = entry.get("repository", "")
        urls = list(self.urls.values())
        if repo in self.urls:
            urls.remove(self.urls[repo])
            return [self.urls[repo]] + urls
        return urls + ([repo] if repo else [])

    def fetch(self, entry: dict) -> Path:
        sha256, filename = entry.get("sha256"), entry.get("filename")
        if not (isinstance(sha256, str) and re.fullmatch(r"[0-9a-f]{64}", sha256) and isinstance(filename, str)
                and filename.endswith(".apk")):
            raise PybuildError(f"corrupt lock entry for {entry.get('name')}: it needs a sha256 (64 hex digits) "
                               "and the .apk filename", hint="regenerate it with `pybuild stacks lock NAME --update`")
        digest = "sha256:" + sha256
        if self.packages.has(digest):
            return self.packages.path(digest)
        failures: list[NetworkError] = []
        for base in self._mirrors(entry):
            url = f"{base}/{entry['filename']}"
            try:
                with self.packages.writer(expected=digest) as out:
                    for chunk in self._get(url):
                        out.write(chunk)
                return self.packages.path(digest)
            except NetworkError as exc:
                failures.append(exc)
            except VerificationError:
                raise VerificationError(
                    f"{_clean_url(url)}: the downloaded {entry['name']} {entry['version']} does not match the "
                    f"sha256 pinned in the lockfile ({entry['sha256']})",
                    hint="the package was tampered with or damaged in transit; nothing was cached")
        if failures:
            raise failures[0]
        raise PybuildError(f"no APK repository to fetch {entry['name']} {entry['version']} from")

    def unpack(self, path: Path, entry: dict, tw: TarWriter, keep: Callable[[str], bool]) -> None:
        where = f"{entry['name']} {entry['version']}"
        with open(path, "rb") as fh:
            ends = gzip_member_ends(fh)
            if len(ends) < 3:
                raise PybuildError(f"{where}: {path} is not a signed APK package")
            fh.seek(ends[0])
            info = _pkginfo(fh.read(ends[1] - ends[0]), where)
            dirs: dict[str, list[str]] = {}
            sums: dict[str, str] = {}
            with tarfile.open(fileobj=fh, mode="r|gz") as tar:
                for m in tar:
                    rel = normalise_path(m.name)
                    if not rel or (rel.startswith(".") and "/" not in rel) or not keep(rel):
                        continue
                    parent = rel.rpartition("/")[0]
                    if m.isdir():
                        tw.add_dir(rel, 0o1777 if m.mode & 0o1000 and m.mode & 0o002 else 0o755)
                        dirs.setdefault(rel, [])
                        continue
                    line = f"R:{PurePosixPath(rel).name}\n"
                    if m.issym():
                        tw.add_symlink(rel, m.linkname)
                        sums[rel] = q1(m.linkname.encode())
                    elif m.islnk():
                        target = normalise_path(m.linkname)
                        tw.add_hardlink(rel, target)
                        sums[rel] = sums.get(target, "")
                        if tw.entries.get(target) and tw.entries[target].mode & 0o111:
                            line += "a:0:0:755\n"
                    elif m.isfile():
                        data = tar.extractfile(m).read()  # type: ignore[union-attr]
                        executable = bool(m.mode & 0o111)
                        tw.add_bytes(rel, data, 0o755 if executable else 0o644)
                        sums[rel] = q1(data)
                        line += "a:0:0:755\n" if executable else ""
                    else:
                        continue  # devices and fifos never go in a layer
                    if sums[rel]:
                        line += f"Z:{sums[rel]}\n"
                    dirs.setdefault(parent, []).append(line)
        self._installed[entry["name"]] = _installed_block(entry, info, dirs)

    def finish(self, tw: TarWriter, entries: list[dict]) -> None:
        blocks = []
        for entry in entries:
            if entry["name"] not in self._installed:
                self.unpack(self.fetch(entry), entry, TarWriter(), lambda p: True)
            blocks.append(self._installed[entry["name"]])
        tw.add_bytes("lib/apk/db/installed", "".join(blocks).encode())
        tw.add_bytes("etc/apk/world", "".join(f"{n}\n" for n in sorted(e["name"] for e in entries)).encode())
        repos = list(self.urls) + sorted({e["repository"] for e in entries if e.get("repository")} - set(self.urls))
        tw.add_bytes("etc/apk/repositories", "".join(f"{r}\n" for r in repos).encode())
        tw.add_bytes("etc/apk/arch", f"{self.arch}\n".encode())
        for name, key in sorted(self.keys.items()):
            tw.add_bytes(f"etc/apk/keys/{name}", key)


def _apk_op_holds(version: str, op: str, wanted: str) -> bool:
    if op in _FUZZY_OPS:
        return fuzzy_match(version, wanted) or (op == ">~" and compare_versions(version, wanted) > 0) \
            or (op == "<~" and compare_versions(version, wanted) < 0)
    r = compare_versions(version, wanted)
    return {"=": r == 0, "<": r < 0, ">": r > 0, "<=": r <= 0, ">=": r >= 0}.get(op, False)


def _pkginfo(control_gz: bytes, where: str) -> dict[str, list[str]]:
    try:
        files = _tar_files(_inflate(control_gz))
    except (tarfile.TarError, PybuildError) as exc:
        raise VerificationError(f"{where}: unreadable control stream ({exc})")
    if ".PKGINFO" not in files:
        raise VerificationError(f"{where}: the control stream holds no .PKGINFO")
    return parse_pkginfo(files[".PKGINFO"].decode("utf-8", "replace"))


_INSTALLED_FIELDS = [("T", "pkgdesc"), ("U", "url"), ("L", "license"), ("o", "origin"), ("m", "maintainer"),
                     ("t", "builddate"), ("c", "commit"), ("k", "provider_priority")]


def _installed_block(entry: dict, info: dict[str, list[str]], dirs: dict[str, list[str]]) -> str:
    """One package's record in /lib/apk/db/installed (the format apk-tools and scanners read)."""
    lines = [f"C:{entry.get('checksum', '')}", f"P:{entry['name']}", f"V:{entry['version']}",
             f"A:{entry['architecture']}", f"S:{entry.get('size', 0)}", f"I:{(info.get('size') or ['0'])[0]}"]
    for key, field in _INSTALLED_FIELDS:
        if info.get(field):
            lines.append(f"{key}:{info[field][0]}")
    for key, field in (("D", "depend"), ("p", "provides"), ("r", "replaces"), ("i", "install_if")):
        if info.get(field):
            lines.append(f"{key}:{' '.join(info[field])}")
    out = "\n".join(lines) + "\n"
    for d in list(dirs):
        while "/" in d:
            d = d.rpartition("/")[0]
            dirs.setdefault(d, [])
    for d in sorted(dirs):
        out += (f"F:{d}\n" if d else "") + "".join(sorted(dirs[d]))
    return out + "\n"
