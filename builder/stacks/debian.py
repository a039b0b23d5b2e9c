"""Debian archives: the machine's apt sources, the signed InRelease → Packages → .deb chain,
dpkg version comparison, Depends parsing, and unpacking .deb files into a layer.

Trust: InRelease is checked with gpgv against the Debian archive keyring and only the signed
text is read; each Packages index is checked against the sha256 in that text; each .deb
against the sha256 in the index (at lock time) or the lockfile (at build time).
"""
from __future__ import annotations

import glob
import hashlib
import io
import lzma
import os
import pickle
import re
import subprocess
import tarfile
import tempfile
from functools import cmp_to_key
from pathlib import Path
from typing import Callable, Iterator

import requests

from ..config import setting
from ..errors import NetworkError, PybuildError, VerificationError
from ..oci.blobs import BlobStore, atomic_write
from ..oci.tarball import TarWriter, normalise_path
from .resolve import Constraint, PackageRecord

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_SOURCES = "/etc/apt"
MERGED_USR = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
INDEX_FORMAT = 3  # bump when the pickled index layout changes

# --------------------------------------------------------------------------------------------
# apt sources: where the Debian archive is, read from the machine's own configuration


def _apt_source_entries(root: str = APT_SOURCES) -> Iterator[tuple[str, list[str]]]:
    """(uri, suites) for every enabled `deb` source in sources.list(.d), one-line and deb822."""
    one_line = [os.path.join(root, "sources.list")] + sorted(glob.glob(os.path.join(root, "sources.list.d", "*.list")))
    for path in one_line:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            line = line.split("#", 1)[0].strip()
            if not line.startswith("deb "):
                continue
            words = re.sub(r"\[[^\]]*\]", "", line).split()
            if len(words) >= 3:
                yield words[1], [words[2]]
    for path in sorted(glob.glob(os.path.join(root, "sources.list.d", "*.sources"))):
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            fields = parse_stanza("\n".join(l for l in stanza.splitlines() if not l.lstrip().startswith("#")))
            if "deb" not in fields.get("Types", "").split() or fields.get("Enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("URIs", "").split():
                yield uri, fields.get("Suites", "").split()


def debian_mirrors(root: str = APT_SOURCES) -> tuple[str | None, str | None]:
    """(archive URL, security archive URL) from the apt sources: the source carrying a Debian
    release suite, and the one carrying a `-security` suite. Settings override both."""
    main = setting("PYBUILD_DEBIAN_MIRROR")
    security = setting("PYBUILD_DEBIAN_SECURITY_MIRROR")
    releases = {"bookworm", "trixie", "forky", "duke", "sid", "stable", "testing", "unstable", "oldstable"}
    for uri, suites in _apt_source_entries(root):
        bases = {s.split("-")[0].split("/")[0] for s in suites}
        if not bases & releases:
            continue
        if any(s.endswith("-security") or "/updates" in s for s in suites):
            security = security or uri
        else:
            main = main or uri
    if main and not security:
        security = main.rstrip("/") + "-security"
    return (main.rstrip("/") if main else None), (security.rstrip("/") if security else None)


# --------------------------------------------------------------------------------------------
# control files and versions


def parse_stanza(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line:
            continue
        if line[0] in " \t":
            if key:
                fields[key] += "\n" + line
            continue
        k, sep, v = line.partition(":")
        if not sep:
            continue
        key = k.strip()
        fields[key] = v.strip()
    return fields


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_fragment(a: str, b: str) -> int:
    ia = ib = 0
    while ia < len(a) or ib < len(b):
        first_diff = 0
        while (ia < len(a) and not a[ia].isdigit()) or (ib < len(b) and not b[ib].isdigit()):
            ac = _order(a[ia]) if ia < len(a) and not a[ia].isdigit() else 0
            bc = _order(b[ib]) if ib < len(b) and not b[ib].isdigit() else 0
            if ac != bc:
                return ac - bc
            ia += 1
            ib += 1
        while ia < len(a) and a[ia] == "0":
            ia += 1
        while ib < len(b) and b[ib] == "0":
            ib += 1
        while ia < len(a) and a[ia].isdigit() and ib < len(b) and b[ib].isdigit():
            if not first_diff:
                first_diff = ord(a[ia]) - ord(b[ib])
            ia += 1
            ib += 1
        if ia < len(a) and a[ia].isdigit():
            return 1
        if ib < len(b) and b[ib].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _split_version(v: str) -> tuple[int, str, str]:
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        epoch = int(e)
    if "-" in v:
        upstream, revision = v.rsplit("-", 1)
    else:
        upstream, revision = v, "0"
    return epoch, upstream, revision


def compare_versions(a: str, b: str) -> int:
    """dpkg's version ordering (epoch, upstream, revision; `~` sorts before everything)."""
    ea, ua, ra = _split_version(a)
    eb, ub, rb = _split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    r = _cmp_fragment(ua, ub)
    if r:
        return -1 if r < 0 else 1
    r = _cmp_fragment(ra, rb)
    return (r > 0) - (r < 0)


version_key = cmp_to_key(compare_versions)

_DEP = re.compile(r"^\s*([a-z0-9][a-z0-9+.\-]*)(?::[a-z0-9]+)?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?\s*(?:\[[^\]]*\])?\s*(?:<[^>]*>)?\s*$")


def parse_relations(text: str) -> list[list[Constraint]]:
    """`a (>= 1) | b, c` → [[a>=1, b], [c]]. Architecture qualifiers (`:any`) are dropped."""
    groups = []
    for group in text.split(","):
        group = group.strip()
        if not group:
            continue
        alts = []
        for alt in group.split("|"):
            m = _DEP.match(alt)
            if not m:
                continue
            op = {"<": "<=", ">": ">="}.get(m.group(2) or "", m.group(2) or "")
            alts.append(Constraint(m.group(1), op, m.group(3) or ""))
        if alts:
            groups.append(alts)
    return groups


def record_from_stanza(fields: dict[str, str], suite: str) -> PackageRecord:
    depends = parse_relations(fields.get("Pre-Depends", "")) + parse_relations(fields.get("Depends", ""))
    provides = [alts[0] for alts in parse_relations(fields.get("Provides", ""))]
    return PackageRecord(
        name=fields["Package"], version=fields["Version"], architecture=fields.get("Architecture", ""),
        depends=depends, provides=provides, filename=fields.get("Filename", ""),
        sha256=fields.get("SHA256", ""), size=int(fields.get("Size", "0") or 0), suite=suite,
        source=fields.get("Source", ""),
        extra={"installed_size": int(fields.get("Installed-Size", "0") or 0) * 1024})


# --------------------------------------------------------------------------------------------
# the archive


class DebianSource:
    """A Debian archive (release, updates and security suites) as a PackageSource."""

    kind = "debian"

    def __init__(self, source: dict, cache: Path):
        self.suites: list[str] = source.get("suites") or ["trixie", "trixie-updates", "trixie-security"]
        self.components: list[str] = source.get("components") or ["main"]
        self.arch: str = {"x86_64": "amd64", "aarch64": "arm64"}.get(source.get("architecture", "amd64"),
                                                                       source.get("architecture", "amd64"))
        self.keyring = source.get("keyring") or DEFAULT_KEYRING
        main, security = debian_mirrors()
        self.mirror = (setting("PYBUILD_DEBIAN_MIRROR") or source.get("mirror") or main or "").rstrip("/")
        self.security_mirror = (setting("PYBUILD_DEBIAN_SECURITY_MIRROR") or source.get("security-mirror")
                                or security or "").rstrip("/")
        self.cache = Path(cache)
        self.debs = BlobStore(self.cache / "debs")
        self.session = requests.Session()

    # -- transport ---------------------------------------------------------------------------
    def base_for(self, suite: str) -> str:
        url = self.security_mirror if suite.endswith("-security") else self.mirror
        if not url:
            raise PybuildError("no Debian archive is configured",
                               hint="add a Debian source under /etc/apt/sources.list.d, or set PYBUILD_DEBIAN_MIRROR")
        return url

    def _get(self, url: str, stream: bool = False) -> requests.Response:
        try:
            resp = self.session.get(url, timeout=60, stream=stream)
        except requests.RequestException as exc:
            raise NetworkError(f"cannot reach the Debian archive at {url}: {exc.__class__.__name__}",
                               hint="check the network, or point PYBUILD_DEBIAN_MIRROR at a reachable mirror")
        if resp.status_code == 404:
            raise NetworkError(f"{url}: not found (HTTP 404)",
                               hint="the archive no longer has it; re-resolve with `pybuild stacks lock NAME --update`")
        if resp.status_code != 200:
            raise NetworkError(f"{url}: HTTP {resp.status_code} from the Debian archive")
        return resp

    # -- index -------------------------------------------------------------------------------
    def release(self, suite: str) -> dict[str, tuple[str, int]]:
        """The verified Release text of `suite`, as {path: (sha256, size)}."""
        url = f"{self.base_for(suite)}/dists/{suite}/InRelease"
        data = self._get(url).content
        signed = verify_inrelease(data, self.keyring, url)
        fields = parse_stanza(signed)
        files: dict[str, tuple[str, int]] = {}
        for line in fields.get("SHA256", "").splitlines():
            parts = line.split()
            if len(parts) == 3:
                files[parts[2]] = (parts[0], int(parts[1]))
        return files

    def packages(self, suite: str, component: str, files: dict[str, tuple[str, int]]) -> list[PackageRecord]:
        rel = f"{component}/binary-{self.arch}/Packages.xz"
        if rel not in files:
            raise PybuildError(f"the {suite} Release file lists no {rel}",
                               hint=f"check the suite and architecture ({self.arch}) of the stack")
        sha, size = files[rel]
        cached = self.cache / "indexes" / f"{sha}.v{INDEX_FORMAT}.pickle"
        if cached.exists():
            try:
                with open(cached, "rb") as fh:
                    return pickle.load(fh)
            except Exception:
                cached.unlink()
        url = f"{self.base_for(suite)}/dists/{suite}/{rel}"
        raw = self._get(url).content
        got = hashlib.sha256(raw).hexdigest()
        if got != sha or len(raw) != size:
            raise VerificationError(f"{url}: sha256 {got} does not match the signed Release file ({sha})",
                                    hint="the mirror is serving a damaged or tampered index; try again later or another mirror")
        text = lzma.decompress(raw).decode("utf-8", "replace")
        records = []
        for stanza in text.split("\n\n"):
            if stanza.strip():
                f = parse_stanza(stanza)
                if "Package" in f:
                    records.append(record_from_stanza(f, suite))
        with atomic_write(cached) as fh:
            pickle.dump(records, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return records

    def load_index(self):
        records: list[PackageRecord] = []
        for suite in self.suites:
            files = self.release(suite)
            for component in self.components:
                records.extend(self.packages(suite, component, files))
        rank = {s: i for i, s in enumerate(self.suites)}
        return records, compare_versions, rank

    def lock_entry(self, rec: PackageRecord) -> dict:
        entry = {"name": rec.name, "version": rec.version, "architecture": rec.architecture,
                 "suite": rec.suite, "filename": rec.filename, "sha256": rec.sha256, "size": rec.size}
        if rec.source:
            entry["source"] = rec.source
        return entry

    # -- packages ----------------------------------------------------------------------------
    def fetch(self, entry: dict) -> Path:
        digest = "sha256:" + entry["sha256"]
        if self.debs.has(digest):
            return self.debs.path(digest)
        url = f"{self.base_for(entry['suite'])}/{entry['filename']}"
        resp = self._get(url, stream=True)
        try:
            with self.debs.writer(expected=digest) as out:
                for chunk in resp.iter_content(1 << 20):
                    out.write(chunk)
        except VerificationError:
            raise VerificationError(
                f"{url}: the downloaded {entry['name']} {entry['version']} does not match the sha256 pinned "
                f"in the lockfile ({entry['sha256']})",
                hint="the package was tampered with or damaged in transit; nothing was cached")
        except requests.RequestException as exc:
            raise NetworkError(f"download of {url} failed: {exc.__class__.__name__}")
        return self.debs.path(digest)

    def unpack(self, path: Path, entry: dict, tw: TarWriter, keep: Callable[[str], bool]) -> None:
        members = read_ar(path)
        control_name = next((n for n in members if n.startswith("control.tar")), None)
        data_name = next((n for n in members if n.startswith("data.tar")), None)
        if not control_name or not data_name:
            raise PybuildError(f"{entry['name']}: {path} is not a Debian package (no control/data members)")
        control_files = {}
        with open_member_tar(members[control_name], control_name) as tar:
            for m in tar:
                name = normalise_path(m.name)
                if m.isfile() and name in ("control", "md5sums", "conffiles"):
                    control_files[name] = tar.extractfile(m).read()  # type: ignore[union-attr]
        with open_member_tar(members[data_name], data_name) as tar:
            for m in tar:
                rel = merged_usr(normalise_path(m.name))
                if not rel or not keep(rel):
                    continue
                mode = m.mode & 0o7777 & ~0o6000  # never setuid/setgid in a run image
                if m.isdir():
                    tw.add_dir(rel, mode | 0o755 if mode & 0o700 else 0o755)
                elif m.issym():
                    tw.add_symlink(rel, m.linkname)
                elif m.islnk():
                    tw.add_hardlink(rel, merged_usr(normalise_path(m.linkname)))
                elif m.isfile():
                    data = tar.extractfile(m).read()  # type: ignore[union-attr]
                    tw.add_bytes(rel, data, 0o755 if mode & 0o111 else 0o644)
        control = control_files.get("control", b"").decode("utf-8", "replace").rstrip("\n")
        if control:
            # distroless-style scanner record: one file per package under status.d
            status = re.sub(r"^(Package: .*)$", r"\1\nStatus: install ok installed", control, count=1, flags=re.M)
            tw.add_bytes(f"var/lib/dpkg/status.d/{entry['name']}", status.encode() + b"\n")
            if "md5sums" in control_files:
                sums = b"".join(
                    line.split(b"  ", 1)[0] + b"  " + merged_usr(line.split(b"  ", 1)[1].decode()).encode() + b"\n"
                    for line in control_files["md5sums"].splitlines() if b"  " in line)
                tw.add_bytes(f"var/lib/dpkg/status.d/{entry['name']}.md5sums", sums)

    def finish(self, tw: TarWriter, entries: list[dict]) -> None:
        for top in ("bin", "sbin", "lib", "lib64"):
            tw.add_symlink(top, f"usr/{top}")


def merged_usr(path: str) -> str:
    head, _, rest = path.partition("/")
    if head in MERGED_USR:
        return f"usr/{head}" + (f"/{rest}" if rest else "")
    return path


def verify_inrelease(data: bytes, keyring: str, where: str) -> str:
    """Check a clearsigned InRelease with gpgv; return only the text that was signed."""
    if not Path(keyring).exists():
        raise VerificationError(f"the archive keyring {keyring} is missing",
                                hint="install the debian-archive-keyring package")
    with tempfile.TemporaryDirectory(prefix="pybuild-gpgv-") as tmp:
        src = Path(tmp) / "InRelease"
        out = Path(tmp) / "Release"
        src.write_bytes(data)
        proc = subprocess.run(["gpgv", "--status-fd", "1", "--keyring", keyring, "--output", str(out), str(src)],
                              capture_output=True, text=True)
        valid = [l for l in proc.stdout.splitlines() if l.startswith("[GNUPG:] VALIDSIG")]
        bad = [l for l in proc.stdout.splitlines() if l.startswith("[GNUPG:] BADSIG")]
        if proc.returncode != 0 or not valid or bad or not out.exists():
            raise VerificationError(f"{where}: the signature does not verify with {keyring}",
                                    details=proc.stderr.strip()[-2000:],
                                    hint="the archive or something between you and it is serving unsigned or tampered "
                                         "data; nothing was used")
        return out.read_text("utf-8", "replace")


def read_ar(path: Path) -> dict[str, bytes]:
    """The members of an `ar` archive (a .deb)."""
    data = Path(path).read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise PybuildError(f"{path}: not an ar archive")
    pos = 8
    members: dict[str, bytes] = {}
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        pos += 60
        members[name] = data[pos:pos + size]
        pos += size + (size & 1)
    return members


def open_member_tar(blob: bytes, name: str) -> tarfile.TarFile:
    if name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)).read()
        return tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    mode = {".xz": "r:xz", ".gz": "r:gz", ".bz2": "r:bz2"}.get(os.path.splitext(name)[1], "r:")
    return tarfile.open(fileobj=io.BytesIO(blob), mode=mode)
