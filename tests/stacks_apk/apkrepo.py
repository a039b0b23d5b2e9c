"""Make small, real, signed APK v2 repositories, and serve them over HTTP on 127.0.0.1.

Packages are built the way abuild builds them: a data tar.gz whose file entries carry the
`APK-TOOLS.checksum.SHA1` PAX header, a control tar segment (no end-of-archive blocks) with a
`.PKGINFO` naming the data stream's sha256 (`datahash`), and a signature segment holding
`.SIGN.RSA.<key>` (RSA PKCS#1 v1.5 over the control stream's gzip bytes). The index is
`APKINDEX.tar.gz`: a signature segment followed by the gzip'd tar of APKINDEX + DESCRIPTION.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import io
import struct
import tarfile
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HASHES = {"RSA": hashes.SHA1, "RSA256": hashes.SHA256}


@dataclass
class SigningKey:
    name: str  # e.g. "test-signing.rsa.pub": the file name the public key is trusted under
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, name: str) -> "SigningKey":
        return cls(name, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def write_public(self, folder: Path) -> Path:
        path = Path(folder) / self.name
        path.write_bytes(self.public_pem())
        return path

    def signature_segment(self, signed: bytes, algo: str = "RSA") -> bytes:
        sig = self.private.sign(signed, padding.PKCS1v15(), HASHES[algo]())
        return _gzip(_tar_segment([(f".SIGN.{algo}.{self.name}", sig, 0o644)], cut=True))


@dataclass
class Package:
    name: str
    version: str
    files: dict[str, bytes | str | None] = field(default_factory=dict)  # bytes: file, str: symlink, None: dir
    depends: list[str] = field(default_factory=list)
    provides: list[str] = field(default_factory=list)
    executables: set[str] = field(default_factory=set)
    hardlinks: dict[str, str] = field(default_factory=dict)
    origin: str = ""
    description: str = ""
    license: str = "MIT"
    arch: str = "x86_64"
    provider_priority: int = 0


def hello_elf(message: bytes) -> bytes:
    """A tiny static x86-64 Linux program that writes `message` and exits 0 (no toolchain needed)."""
    base, code_at = 0x400000, 64 + 56
    code = (b"\xb8\x01\x00\x00\x00"                         # mov eax, 1 (write)
            b"\xbf\x01\x00\x00\x00"                         # mov edi, 1 (stdout)
            b"\x48\x8d\x35\x10\x00\x00\x00"                 # lea rsi, [rip + 16] (the message)
            + b"\xba" + struct.pack("<I", len(message))    # mov edx, len
            + b"\x0f\x05"                                   # syscall
            b"\xb8\x3c\x00\x00\x00"                         # mov eax, 60 (exit)
            b"\x31\xff"                                     # xor edi, edi
            b"\x0f\x05")                                    # syscall
    size = code_at + len(code) + len(message)
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
              + struct.pack("<HHIQQQIHHHHHH", 2, 0x3E, 1, base + code_at, 64, 0, 0, 64, 56, 1, 0, 0, 0))
    segment = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    return header + segment + code + message


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def _tar_segment(members: list[tuple[str, bytes | str | None, int]], cut: bool, pax: bool = False,
                 hardlinks: dict[str, str] | None = None) -> bytes:
    """A tar of (name, bytes=file | str=symlink target | None=dir, mode); `cut` drops the end blocks."""
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT)
    for name, content, mode in members:
        info = tarfile.TarInfo(name)
        info.mode, info.mtime, info.uname, info.gname = mode, 1700000000, "root", "root"
        if content is None:
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        elif isinstance(content, str):
            info.type = tarfile.SYMTYPE
            info.linkname = content
            if pax:
                info.pax_headers = {"APK-TOOLS.checksum.SHA1": hashlib.sha1(content.encode()).hexdigest()}
            tar.addfile(info)
        else:
            info.size = len(content)
            if pax:
                info.pax_headers = {"APK-TOOLS.checksum.SHA1": hashlib.sha1(content).hexdigest()}
            tar.addfile(info, io.BytesIO(content))
    for name, target in sorted((hardlinks or {}).items()):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode, info.mtime = tarfile.LNKTYPE, target, 0o755, 1700000000
        tar.addfile(info)
    if cut:
        return buf.getvalue()[:tar.offset]
    tar.close()
    return buf.getvalue()


def build_apk(pkg: Package, key: SigningKey, algo: str = "RSA") -> tuple[bytes, dict[str, str]]:
    """The .apk bytes and the index fields (C:, S:, I:, ...) of `pkg`."""
    members: list[tuple[str, bytes | str | None, int]] = []
    for path in sorted(pkg.files):
        content = pkg.files[path]
        mode = 0o755 if content is None or path in pkg.executables else 0o644
        members.append((path, content, 0o777 if isinstance(content, str) else mode))
    data_gz = _gzip(_tar_segment(members, cut=False, pax=True, hardlinks=pkg.hardlinks))
    installed = sum(len(c) for c in pkg.files.values() if isinstance(c, bytes))
    info = [f"pkgname = {pkg.name}", f"pkgver = {pkg.version}", f"pkgdesc = {pkg.description or pkg.name}",
            "url = https://example.invalid/", "builddate = 1700000000", "packager = pybuild tests",
            f"size = {installed}", f"arch = {pkg.arch}", f"origin = {pkg.origin or pkg.name}",
            "maintainer = pybuild tests <tests@example.invalid>", f"license = {pkg.license}"]
    info += [f"depend = {d}" for d in pkg.depends] + [f"provides = {p}" for p in pkg.provides]
    if pkg.provider_priority:
        info.append(f"provider_priority = {pkg.provider_priority}")
    info.append(f"datahash = {hashlib.sha256(data_gz).hexdigest()}")
    pkginfo = ("# Generated by the pybuild test repository generator\n" + "\n".join(info) + "\n").encode()
    control_gz = _gzip(_tar_segment([(".PKGINFO", pkginfo, 0o644)], cut=True))
    apk = key.signature_segment(control_gz, algo) + control_gz + data_gz
    fields = {"C": "Q1" + base64.b64encode(hashlib.sha1(control_gz).digest()).decode(),
              "P": pkg.name, "V": pkg.version, "A": pkg.arch, "S": str(len(apk)), "I": str(installed),
              "T": pkg.description or pkg.name, "U": "https://example.invalid/", "L": pkg.license,
              "o": pkg.origin or pkg.name, "m": "pybuild tests <tests@example.invalid>", "t": "1700000000"}
    if pkg.depends:
        fields["D"] = " ".join(pkg.depends)
    if pkg.provides:
        fields["p"] = " ".join(pkg.provides)
    if pkg.provider_priority:
        fields["k"] = str(pkg.provider_priority)
    return apk, fields


def build_index(entries: list[dict[str, str]], key: SigningKey, algo: str = "RSA") -> bytes:
    text = "".join("".join(f"{k}:{v}\n" for k, v in e.items()) + "\n" for e in entries)
    index_gz = _gzip(_tar_segment([("DESCRIPTION", b"pybuild test repository", 0o644),
                                   ("APKINDEX", text.encode(), 0o644)], cut=False))
    return key.signature_segment(index_gz, algo) + index_gz


def write_repository(root: Path, packages: list[Package], key: SigningKey, arch: str = "x86_64",
                     algo: str = "RSA") -> Path:
    """`root/<arch>/APKINDEX.tar.gz` and `root/<arch>/<name>-<version>.apk` for each package."""
    return write_built(root, [build_apk(pkg, key, algo) for pkg in packages], key, arch, algo)


def write_built(root: Path, built: list[tuple[bytes, dict[str, str]]], key: SigningKey, arch: str = "x86_64",
                algo: str = "RSA") -> Path:
    """A repository of already built (apk bytes, index fields) pairs; `S:` follows the bytes."""
    folder = Path(root) / arch
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for apk, fields in built:
        (folder / f"{fields['P']}-{fields['V']}.apk").write_bytes(apk)
        entries.append({**fields, "S": str(len(apk))})
    (folder / "APKINDEX.tar.gz").write_bytes(build_index(entries, key, algo))
    return Path(root)


def gzip_streams(data: bytes) -> list[bytes]:
    """The concatenated gzip streams of an .apk or APKINDEX.tar.gz, as they are (compressed)."""
    out = []
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        rest = d.unused_data
        out.append(data[:len(data) - len(rest)])
        data = rest
    return out


class RepositoryServer:
    """Serves a folder on 127.0.0.1 at a free port: `with RepositoryServer(dir) as url: ...`."""

    def __init__(self, root: Path):
        root = str(root)

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root, **kwargs)

            def log_message(self, format, *args):  # noqa: A002 - keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        self.thread.start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def sample_repositories(root: Path) -> dict:
    """Two repositories ("main" signed with SHA-1 like abuild-sign, "community" with SHA-256,
    each by its own key) holding a small dependency graph with so:, cmd: and pc: provides."""
    main_key = SigningKey.generate("pybuild-test-main.rsa.pub")
    community_key = SigningKey.generate("pybuild-test-community.rsa.pub")
    libc = "so:libc.musl-x86_64.so.1"
    main = [
        Package("baselayout", "1.0-r0", {"etc/os-release": b'ID=pybuildtest\nNAME="pybuild test"\n',
                                         "etc/motd": b"welcome\n", "var": None, "var/empty": None}),
        Package("musl", "1.2.5-r0", {"lib/ld-musl-x86_64.so.1": b"\x7fELF musl",
                                     "lib/libc.musl-x86_64.so.1": "ld-musl-x86_64.so.1"},
                provides=[f"{libc}=1", "cmd:ldd=1.2.5-r0"], executables={"lib/ld-musl-x86_64.so.1"}),
        Package("libfoo", "1.2.3_rc1-r5", {"usr/lib/libfoo.so.1": b"libfoo rc"},
                depends=[libc], provides=["so:libfoo.so.1=1.2.3", "pc:foo=1.2.3"]),
        Package("libfoo", "1.2.3-r0", {"usr/lib/libfoo.so.1": b"libfoo r0"},
                depends=[libc], provides=["so:libfoo.so.1=1.2.3", "pc:foo=1.2.3"]),
        Package("libfoo", "1.2.3-r1", {"usr/lib/libfoo.so.1.2.3": b"libfoo r1",
                                       "usr/lib/libfoo.so.1": "libfoo.so.1.2.3",
                                       "usr/share/doc/libfoo/README": b"docs\n"},
                depends=[libc], provides=["so:libfoo.so.1=1.2.3", "pc:foo=1.2.3"]),
        Package("foo-tools", "2.0-r0", {"usr/bin/footool": b"#!/bin/sh\necho 2.0\n"},
                depends=["so:libfoo.so.1", libc], provides=["cmd:footool=2.0-r0"],
                executables={"usr/bin/footool"}),
        Package("foo-tools", "2.1-r0", {"usr/bin/footool": b"#!/bin/sh\necho 2.1\n",
                                        "usr/bin/ft": "footool"},
                depends=["so:libfoo.so.1", libc], provides=["cmd:footool=2.1-r0", "cmd:ft=2.1-r0"],
                executables={"usr/bin/footool"}, hardlinks={"usr/bin/footool-hard": "usr/bin/footool"}),
        Package("app", "0.1-r0", {"usr/share/app/data.txt": b"data\n"},
                depends=["cmd:footool", "pc:foo>=1.2", "baselayout", "!legacy-app"]),
        Package("plugin", "1.0-r0", {"usr/lib/plugin.so": b"plugin"}, depends=["foo-tools~2.0"]),
        Package("legacy-app", "0.9-r0", {"usr/share/legacy": b"old"}),
        Package("wants-both", "1.0-r0", {}, depends=["app", "legacy-app"]),
        Package("broken-lib", "1.0-r0", {"usr/lib/libbroken.so.1": b"x"}, depends=["so:libmissing.so.3"]),
        Package("broken-app", "1.0-r0", {"usr/bin/broken": b"x"}, depends=["broken-lib"]),
        # two shells: apk prefers the provider with a priority over the first by name
        Package("ash-shell", "0.9-r0", {"bin/ash": b"ash"}, provides=["cmd:sh=0.9-r0"]),
        Package("busybox", "1.36.1-r2", {"bin/busybox": b"busybox", "bin/sh": "busybox"},
                provides=["cmd:sh=1.36.1-r2"], provider_priority=100),
        Package("needs-sh", "1.0-r0", {}, depends=["cmd:sh"]),
        Package("hello", "1.0-r0", {"usr/bin/hello": hello_elf(b"hello from an APK stack\n")},
                depends=["baselayout"], provides=["cmd:hello=1.0-r0"], executables={"usr/bin/hello"}),
    ]
    community = [
        Package("extra-tool", "3.4.5_p2-r1", {"usr/bin/extra": b"#!/bin/sh\n"}, depends=["cmd:ldd", libc],
                executables={"usr/bin/extra"}, origin="extra"),
    ]
    write_repository(Path(root) / "main", main, main_key, algo="RSA")
    write_repository(Path(root) / "community", community, community_key, algo="RSA256")
    keys = Path(root) / "keys"
    keys.mkdir(exist_ok=True)
    return {"main": main_key, "community": community_key,
            "key_paths": [main_key.write_public(keys), community_key.write_public(keys)]}
