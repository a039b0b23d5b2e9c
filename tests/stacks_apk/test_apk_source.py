"""The APK package source against real, signed repositories generated and served by the tests."""
from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from builder.errors import NetworkError, PybuildError, VerificationError
from helpers import tar_bytes
from builder.oci.tarball import TarWriter
from builder.stacks.apk import compare_versions, fuzzy_match, parse_dependency
from builder.stacks.resolve import ResolveError, Resolver

from .apkrepo import (Package, SigningKey, build_apk, build_index, gzip_streams, sample_repositories,
                      write_built)


def _resolve(src, names):
    records, compare, rank = src.load_index()
    return Resolver(records, compare, rank).resolve(names)


def _cached_packages(src) -> list[Path]:
    folder = src.cache / "packages" / "sha256"
    return sorted(folder.iterdir()) if folder.exists() else []


# -- versions and dependency syntax ------------------------------------------------------------

ASCENDING = ["0.9", "1.0_alpha", "1.0_alpha2", "1.0_beta", "1.0_pre1", "1.0_rc1", "1.0", "1.0-r1", "1.0-r10",
             "1.0_p1", "1.0_p1-r2", "1.0a", "1.0b", "1.0.0", "1.0.1", "1.2", "1.2.3_rc1-r5", "1.2.3-r0",
             "1.2.3-r1", "1.10", "2.0_rc2", "2.0", "2.0_git20240101", "10.0"]


# (older, newer) pairs where apk-tools' rules differ from a naive reading
PAIRS = [("1.06-r6", "006"), ("1.0", "1.0bc"), ("1.7", "1.7b"), ("2.5.1-r8", "2.5.1a-r1"), ("1.2.07.8", "1.6d"),
         ("1.2.07.8", "1.2.12.04"), ("0.9.28.1", "087-r1"), ("0.1.0_alpha_pre2", "0.1.0_alpha"),
         ("1.0_p9-r0", "1.0_p10-r0"), ("4.5_p1", "4.5_p1-r1"), ("3.0.20060720", "20060720"),
         ("1.0.0_pre20191002222144-r0", "1.0.0_pre20210530193627-r0"), ("1.3_pre1-r1", "1.3.2"),
         ("0.20070118", "0.20070207_rc1"), ("2.12r-r4", "2.12r-r5"), ("4_beta", "23_foo")]


def test_versions_follow_apk_order():
    for older, newer in PAIRS:
        assert compare_versions(older, newer) == -1 and compare_versions(newer, older) == 1, (older, newer)
    for i, a in enumerate(ASCENDING):
        assert compare_versions(a, a) == 0
        for b in ASCENDING[i + 1:]:
            assert compare_versions(a, b) == -1, (a, b)
            assert compare_versions(b, a) == 1, (b, a)
    assert compare_versions("1.01", "1.1") == -1  # leading zero: compared as a fraction
    assert fuzzy_match("1.2.5-r0", "1.2") and fuzzy_match("1.2-r3", "1.2") and fuzzy_match("1.2", "1.2")
    assert not fuzzy_match("1.20", "1.2") and not fuzzy_match("1.3", "1.2") and not fuzzy_match("1", "1.2")


def test_dependency_syntax():
    assert parse_dependency("so:libc.musl-x86_64.so.1") == (False, "so:libc.musl-x86_64.so.1", "", "")
    assert parse_dependency("pc:foo>=1.2") == (False, "pc:foo", ">=", "1.2")
    assert parse_dependency("cmd:footool=2.1-r0") == (False, "cmd:footool", "=", "2.1-r0")
    assert parse_dependency("!legacy-app") == (True, "legacy-app", "", "")
    assert parse_dependency("python3~3.12") == (False, "python3", "~", "3.12")
    assert parse_dependency("busybox<2") == (False, "busybox", "<", "2")


# -- index -------------------------------------------------------------------------------------

def test_index_signatures_verify_and_parse(apk_url, make_source):
    src = make_source([f"{apk_url}/main", f"{apk_url}/community"])
    records, compare, rank = src.load_index()
    by = {(r.name, r.version): r for r in records}
    assert len(records) == 18 and rank == {f"{apk_url}/main": 0, f"{apk_url}/community": 1}
    libfoo = by[("libfoo", "1.2.3-r1")]
    assert [str(p) for p in libfoo.provides] == ["so:libfoo.so.1 (= 1.2.3)", "pc:foo (= 1.2.3)"]
    assert libfoo.filename == "x86_64/libfoo-1.2.3-r1.apk" and libfoo.extra["checksum"].startswith("Q1")
    app = by[("app", "0.1-r0")]
    assert [[str(c) for c in g] for g in app.depends] == [["cmd:footool"], ["pc:foo (>= 1.2)"], ["baselayout"]]
    assert app.extra["conflicts"] == ["legacy-app"]
    # the fuzzy `foo-tools~2.0` became the index's matching versions, newest first
    assert [[str(c) for c in g] for g in by[("plugin", "1.0-r0")].depends] == [["foo-tools (= 2.0-r0)"]]
    assert by[("extra-tool", "3.4.5_p2-r1")].suite == f"{apk_url}/community"  # signed with RSA256


def test_index_signed_by_an_untrusted_key(apk_url, apk_repos, make_source):
    src = make_source([f"{apk_url}/main", f"{apk_url}/community"], keys=[apk_repos["key_paths"][0]])
    with pytest.raises(VerificationError) as err:
        src.load_index()
    assert f"{apk_url}/community" in err.value.message
    assert "pybuild-test-community.rsa.pub" in err.value.message and "not among the trusted keys" in err.value.message


def test_tampered_index_is_refused(repo_copy, make_source):
    root, url = repo_copy
    index = root / "main" / "x86_64" / "APKINDEX.tar.gz"
    signature, body = gzip_streams(index.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar}
    files["APKINDEX"] = files["APKINDEX"].replace(b"V:1.2.3-r1", b"V:1.2.3-r9")
    index.write_bytes(signature + gzip.compress(tar_bytes(files), mtime=0))
    with pytest.raises(VerificationError) as err:
        make_source([f"{url}/main"]).load_index()
    assert f"{url}/main" in err.value.message
    assert "pybuild-test-main.rsa.pub does not verify" in err.value.message


def test_unsigned_index_is_refused(repo_copy, make_source):
    root, url = repo_copy
    index = root / "main" / "x86_64" / "APKINDEX.tar.gz"
    index.write_bytes(gzip_streams(index.read_bytes())[1])
    with pytest.raises(VerificationError, match="not signed"):
        make_source([f"{url}/main"]).load_index()


def test_unreachable_repository(make_source, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError, match=f"cannot reach the APK repository at http://127.0.0.1:{port}/main"):
        make_source([f"http://127.0.0.1:{port}/main"]).load_index()


def test_repositories_and_keys_from_settings(apk_url, apk_repos, make_source, monkeypatch, tmp_path):
    monkeypatch.setenv("PYBUILD_TEST_APK_REPOSITORIES", f"{apk_url}/main, {apk_url}/community")
    pem = tmp_path / "pybuild-test-community.rsa.pub.pem"  # a .pem suffix is allowed
    pem.write_bytes(apk_repos["community"].public_pem())
    monkeypatch.setenv("PYBUILD_TEST_APK_KEYS", f"{apk_repos['key_paths'][0]}, {pem}")
    src = make_source(["http://127.0.0.1:9/unused"], keys=[], **{
        "repositories-setting": "PYBUILD_TEST_APK_REPOSITORIES", "keys-setting": "PYBUILD_TEST_APK_KEYS"})
    assert len(src.load_index()[0]) == 18
    monkeypatch.delenv("PYBUILD_TEST_APK_REPOSITORIES")
    with pytest.raises(PybuildError, match="names no repository"):
        make_source([], **{"repositories-setting": "PYBUILD_TEST_APK_REPOSITORIES"})


def test_local_repository_and_credentials_kept_out_of_the_lock(apk_url, apk_repos, make_source):
    local = make_source([f"file://{apk_repos['root']}/main"])
    rec = next(r for r in local.load_index()[0] if r.name == "musl")
    assert local.lock_entry(rec)["repository"] == f"file://{apk_repos['root']}/main"
    authed = make_source([apk_url.replace("http://", "http://user:secret@") + "/main"])
    rec = next(r for r in authed.load_index()[0] if r.name == "musl")
    entry = authed.lock_entry(rec)
    assert entry["repository"] == f"{apk_url}/main" and "secret" not in str(entry)
    tw = TarWriter()
    authed.finish(tw, [entry])
    assert b"secret" not in tw.entries["etc/apk/repositories"].data


def test_missing_architecture_is_named(apk_url, make_source):
    src = make_source([f"{apk_url}/main"], architecture="aarch64")
    with pytest.raises(NetworkError, match=f"APK repository {apk_url}/main has no aarch64/APKINDEX.tar.gz"):
        src.load_index()


# -- resolution --------------------------------------------------------------------------------

def test_resolves_so_cmd_and_pc_dependencies(apk_url, make_source):
    src = make_source([f"{apk_url}/main", f"{apk_url}/community"])
    chosen = {r.name: r.version for r in _resolve(src, ["app", "extra-tool"])}
    assert chosen == {"app": "0.1-r0", "baselayout": "1.0-r0", "extra-tool": "3.4.5_p2-r1",
                      "foo-tools": "2.1-r0",  # cmd:footool, newest provider
                      "libfoo": "1.2.3-r1",   # so:libfoo.so.1 and pc:foo>=1.2; not the _rc1 pre-release
                      "musl": "1.2.5-r0"}     # so:libc.musl-x86_64.so.1, cmd:ldd (across repositories)


def test_fuzzy_dependency_pins_the_matching_series(apk_url, make_source):
    src = make_source([f"{apk_url}/main"])
    assert {r.name: r.version for r in _resolve(src, ["plugin"])}["foo-tools"] == "2.0-r0"


def test_provider_priority_picks_among_providers(apk_url, make_source):
    src = make_source([f"{apk_url}/main"])
    chosen = {r.name: r.version for r in _resolve(src, ["needs-sh"])}
    assert chosen == {"needs-sh": "1.0-r0", "busybox": "1.36.1-r2"}  # not ash-shell, first by name
    assert {r.name for r in _resolve(src, ["ash-shell", "needs-sh"])} == {"ash-shell", "needs-sh"}


def test_unsatisfiable_dependency_prints_the_chain(apk_url, make_source):
    src = make_source([f"{apk_url}/main"])
    with pytest.raises(ResolveError) as err:
        _resolve(src, ["broken-app"])
    assert "broken-app 1.0-r0 -> broken-lib 1.0-r0 -> so:libmissing.so.3" in err.value.message


def test_conflicting_packages_are_refused_at_lock(apk_url, make_source):
    src = make_source([f"{apk_url}/main"])
    with pytest.raises(PybuildError, match=r"app 0.1-r0 conflicts with legacy-app 0.9-r0 \(!legacy-app\)"):
        for rec in _resolve(src, ["wants-both"]):
            src.lock_entry(rec)


# -- packages ----------------------------------------------------------------------------------

def test_lock_pins_verified_packages_and_fetch_reuses_them(apk_url, apk_repos, make_source, tmp_path):
    src = make_source([f"{apk_url}/main", f"{apk_url}/community"])
    entries = [src.lock_entry(r) for r in _resolve(src, ["app", "extra-tool"])]
    tools = next(e for e in entries if e["name"] == "foo-tools")
    apk = (apk_repos["root"] / "main" / "x86_64" / "foo-tools-2.1-r0.apk").read_bytes()
    assert tools == {"name": "foo-tools", "version": "2.1-r0", "architecture": "x86_64",
                     "repository": f"{apk_url}/main", "filename": "x86_64/foo-tools-2.1-r0.apk",
                     "checksum": "Q1" + base64.b64encode(hashlib.sha1(gzip_streams(apk)[1]).digest()).decode(),
                     "sha256": hashlib.sha256(apk).hexdigest(), "size": len(apk), "origin": "foo-tools"}
    assert len(_cached_packages(src)) == 6
    # a fresh cache fetches by the lock alone, and checks the sha256
    other = make_source([f"{apk_url}/main", f"{apk_url}/community"])
    other.cache = tmp_path / "cache2"
    other.packages = type(src.packages)(other.cache / "packages")
    path = other.fetch(tools)
    assert path.read_bytes() == apk and other.fetch(tools) == path


def _rewrite(root: Path, key: SigningKey, change) -> None:
    """Rebuild the main repository with `change(name, apk, fields) -> (apk, fields)` applied;
    the index is signed again with the real key (as a repository that signs what it is given)."""
    built = []
    for path in sorted((root / "main" / "x86_64").glob("*.apk")):
        apk = path.read_bytes()
        path.unlink()
        control = gzip.decompress(gzip_streams(apk)[1]).decode("utf-8", "replace")
        info = dict(line.split(" = ", 1) for line in control.splitlines() if " = " in line)
        name, version = info["pkgname"], info["pkgver"]
        fields = {"C": "Q1" + base64.b64encode(hashlib.sha1(gzip_streams(apk)[1]).digest()).decode(),
                  "P": name, "V": version, "A": "x86_64", "S": str(len(apk))}
        built.append(change(name, apk, fields))
    write_built(root / "main", built, key)


def _swap_data(apk_repos):
    """The data stream of another build of `app` (control and signature untouched)."""
    evil = build_apk(Package("app", "0.1-r0", {"usr/share/app/data.txt": b"evil\n"}), apk_repos["main"])[0]
    return lambda s: s[0] + s[1] + gzip_streams(evil)[2]


def _resign(apk_repos):
    """A signature by another key that carries the trusted key's name."""
    impostor = SigningKey.generate("pybuild-test-main.rsa.pub")
    return lambda s: impostor.signature_segment(s[1]) + s[1] + s[2]


@pytest.mark.parametrize("victim, make_change, message", [
    ("app", _swap_data, "app 0.1-r0 .*does not match the datahash"),
    ("musl", _resign, "musl 1.2.5-r0 .*signature by key pybuild-test-main.rsa.pub does not verify"),
])
def test_tampered_package_is_refused_at_lock(repo_copy, apk_repos, make_source, victim, make_change, message):
    root, url = repo_copy
    change = make_change(apk_repos)

    def tamper(name, apk, fields):
        return (change(gzip_streams(apk)) if name == victim else apk), fields

    _rewrite(root, apk_repos["main"], tamper)
    src = make_source([f"{url}/main"])
    rec = next(r for r in src.load_index()[0] if r.name == victim)
    with pytest.raises(VerificationError, match=message):
        src.lock_entry(rec)
    assert not _cached_packages(src)


def test_package_not_matching_the_index_checksum(repo_copy, apk_repos, make_source):
    root, url = repo_copy
    src = make_source([f"{url}/main"])
    rec = next(r for r in src.load_index()[0] if r.name == "baselayout")
    # the served file changes after the index was signed: same size, other control stream
    path = root / "main" / "x86_64" / "baselayout-1.0-r0.apk"
    other = build_apk(Package("baselayout", "1.0-r0", {"etc/os-release": b"ID=evil\n"}), apk_repos["main"])[0]
    path.write_bytes(other)
    rec.size = len(other)
    with pytest.raises(VerificationError, match="control checksum .* does not match the signed index"):
        src.lock_entry(rec)
    assert not _cached_packages(src)


def test_tampered_package_at_fetch_time(repo_copy, make_source, tmp_path):
    root, url = repo_copy
    src = make_source([f"{url}/main"])
    entry = src.lock_entry(next(r for r in src.load_index()[0] if r.name == "baselayout"))
    for p in _cached_packages(src):
        p.unlink()
    path = root / "main" / "x86_64" / "baselayout-1.0-r0.apk"
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="does not match the sha256 pinned in the lockfile"):
        src.fetch(entry)
    assert not _cached_packages(src)
    assert not [p for p in (src.cache / "packages").iterdir() if p.name != "sha256"]


# -- unpacking and the installed database -------------------------------------------------------

def _installed(db: str) -> dict[str, dict]:
    out = {}
    for block in db.strip().split("\n\n"):
        pkg: dict = {"files": {}}
        folder = ""
        last = ""
        for line in block.splitlines():
            key, value = line[0], line[2:]
            if key == "F":
                folder = value
            elif key == "R":
                last = f"{folder}/{value}" if folder else value
                pkg["files"][last] = None
            elif key == "Z":
                pkg["files"][last] = value
            else:
                pkg[key] = value
        out[pkg["P"]] = pkg
    return out


def test_unpack_and_installed_database(apk_url, apk_repos, make_source):
    src = make_source([f"{apk_url}/main", f"{apk_url}/community"])
    entries = [src.lock_entry(r) for r in _resolve(src, ["app", "extra-tool"])]
    tw = TarWriter()
    for e in entries:
        src.unpack(src.fetch(e), e, tw, lambda p: not p.startswith("usr/share/doc/"))
    src.finish(tw, entries)
    ent = tw.entries
    assert ent["usr/bin/footool"].data == b"#!/bin/sh\necho 2.1\n" and ent["usr/bin/footool"].mode == 0o755
    assert ent["usr/lib/libfoo.so.1.2.3"].mode == 0o644 and ent["usr/lib/libfoo.so.1"].kind == "symlink"
    assert ent["usr/lib/libfoo.so.1"].target == "libfoo.so.1.2.3"
    assert ent["usr/bin/footool-hard"].kind == "hardlink" and ent["usr/bin/footool-hard"].target == "usr/bin/footool"
    assert ent["etc/os-release"].data.startswith(b"ID=pybuildtest") and ent["var/empty"].kind == "dir"
    assert "usr/share/doc/libfoo/README" not in ent
    assert all(e.uid == 0 and e.gid == 0 for e in ent.values())
    db = _installed(ent["lib/apk/db/installed"].data.decode())
    assert {n: p["V"] for n, p in db.items()} == {e["name"]: e["version"] for e in entries}
    tools = db["foo-tools"]
    assert tools["C"] == next(e["checksum"] for e in entries if e["name"] == "foo-tools")
    assert tools["p"] == "cmd:footool=2.1-r0 cmd:ft=2.1-r0" and tools["D"].startswith("so:libfoo.so.1")
    sha1 = "Q1" + base64.b64encode(hashlib.sha1(b"#!/bin/sh\necho 2.1\n").digest()).decode()
    assert tools["files"]["usr/bin/footool"] == sha1 and tools["files"]["usr/bin/footool-hard"] == sha1
    assert set(db["libfoo"]["files"]) == {"usr/lib/libfoo.so.1", "usr/lib/libfoo.so.1.2.3"}
    assert db["extra-tool"]["o"] == "extra" and db["app"]["D"].endswith("!legacy-app")
    assert ent["etc/apk/world"].data == b"".join(f"{n}\n".encode() for n in sorted(db))
    assert ent["etc/apk/repositories"].data.decode().split() == [f"{apk_url}/main", f"{apk_url}/community"]
    assert ent["etc/apk/keys/pybuild-test-main.rsa.pub"].data == apk_repos["main"].public_pem()


def test_generator_is_reproducible_in_shape(tmp_path):
    """Two generated repositories differ only by their keys and signatures (the fixtures rely on it)."""
    a, b = sample_repositories(tmp_path / "a"), sample_repositories(tmp_path / "b")
    assert a["main"].name == b["main"].name
    names = sorted(p.name for p in (tmp_path / "a" / "main" / "x86_64").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b" / "main" / "x86_64").iterdir())
    for name in names:
        if name.endswith(".apk"):
            sa = gzip_streams((tmp_path / "a" / "main" / "x86_64" / name).read_bytes())
            sb = gzip_streams((tmp_path / "b" / "main" / "x86_64" / name).read_bytes())
            assert sa[1:] == sb[1:]
    assert build_index([], a["main"])


def test_gzip_stream_seams_across_read_chunks():
    import os

    from builder.stacks.apk import gzip_member_ends

    members = [gzip.compress(b"\0" * (9 << 20), mtime=0), gzip.compress(os.urandom((2 << 20) + 12345), mtime=0),
               gzip.compress(b"x", mtime=0)]
    ends = [sum(len(m) for m in members[:i + 1]) for i in range(3)]
    assert gzip_member_ends(io.BytesIO(b"".join(members))) == ends
    with pytest.raises(PybuildError, match="truncated"):
        gzip_member_ends(io.BytesIO(b"".join(members)[:-5]))


def test_corrupt_lock_entry_is_named(apk_url, make_source):
    src = make_source([f"{apk_url}/main"])
    with pytest.raises(PybuildError, match="corrupt lock entry for musl"):
        src.fetch({"name": "musl", "version": "1.2.5-r0", "filename": "x86_64/musl-1.2.5-r0.apk", "sha256": "abc"})
