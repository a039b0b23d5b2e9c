"""Fast unit tests of the core: tar normalisation, dpkg versions, relations, the resolver,
apt source discovery, TOML validation errors."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from builder.errors import PybuildError, VerificationError
from builder.oci.blobs import BlobStore
from builder.oci.image import Image, Layer
from builder.oci.tarball import TarWriter
from builder.stacks.debian import (_apt_source_entries, compare_versions, debian_mirrors, merged_usr,
                                   parse_relations, parse_stanza, verify_inrelease)
from builder.stacks.resolve import Constraint, PackageRecord, ResolveError, Resolver


def _layer_from_tree(tmp: Path, src: Path) -> Layer:
    tw = TarWriter(mtime=0)
    tw.add_tree(src, "workspace")
    return Layer.from_tar_writer(tw, BlobStore(tmp / "blobs"))


def _make_tree(root: Path, umask: int, mtime: int) -> None:
    old = os.umask(umask)
    try:
        (root / "pkg").mkdir(parents=True)
        (root / "pkg" / "a.py").write_text("print('a')\n")
        (root / "run.sh").write_text("#!/bin/sh\n")
        os.chmod(root / "run.sh", 0o777 & ~umask)
        (root / "link").symlink_to("pkg/a.py")
        for p in [root / "pkg" / "a.py", root / "run.sh", root / "pkg"]:
            os.utime(p, (mtime, mtime))
    finally:
        os.umask(old)


def test_layers_are_byte_identical_whatever_umask_mtime_and_path(tmp_path):
    a, b = tmp_path / "one" / "src", tmp_path / "two" / "deeper" / "src"
    _make_tree(a, 0o022, 1_000_000)
    _make_tree(b, 0o002, 2_000_000)
    la, lb = _layer_from_tree(tmp_path / "s1", a), _layer_from_tree(tmp_path / "s2", b)
    assert la.digest == lb.digest and la.diff_id == lb.diff_id
    with tarfile.open(la.path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert list(members) == sorted(members)
    assert members["workspace/run.sh"].mode == 0o755
    assert members["workspace/pkg/a.py"].mode == 0o644
    assert members["workspace/link"].issym() and members["workspace/link"].linkname == "pkg/a.py"
    assert {m.mtime for m in members.values()} == {0}
    assert {(m.uid, m.gid, m.uname) for m in members.values()} == {(0, 0, "")}


def test_gzip_header_carries_no_name_or_time(tmp_path):
    tw = TarWriter()
    tw.add_bytes("x", b"y")
    layer = Layer.from_tar_writer(tw, BlobStore(tmp_path))
    head = layer.path.read_bytes()[:10]
    assert head[3] & 0x08 == 0  # FNAME flag unset
    assert head[4:8] == b"\0\0\0\0"  # MTIME zero


def test_image_digest_depends_on_content_only(tmp_path):
    tw = TarWriter()
    tw.add_bytes("hello", b"world")
    layer = Layer.from_tar_writer(tw, BlobStore(tmp_path))
    img = Image(config={"User": "65532"}, layers=(layer,))
    assert img.digest == Image(config={"User": "65532"}, layers=(layer,)).digest
    assert img.digest != img.with_config(User="0").digest
    assert img.manifest_json()["layers"][0]["digest"] == layer.digest
    assert img.config_json()["rootfs"]["diff_ids"] == [layer.diff_id]


def test_tar_refuses_paths_that_climb_out():
    with pytest.raises(PybuildError):
        TarWriter().add_bytes("../etc/passwd", b"x")


@pytest.mark.parametrize("a,b,expected", [
    ("1.0", "1.0", 0), ("1.0~rc1", "1.0", -1), ("1:0.1", "2.0", 1), ("2.41-12", "2.41-12+deb13u1", -1),
    ("1.2a", "1.2", 1), ("1.10", "1.9", 1), ("3.5.7-1~deb13u3", "3.5.7-1", -1), ("0", "0.0", -1),
])
def test_dpkg_version_order(a, b, expected):
    assert compare_versions(a, b) == expected
    assert compare_versions(b, a) == -expected


def test_relations_parse_alternatives_versions_and_qualifiers():
    rel = parse_relations("libc6 (>= 2.38), libssl3t64 (>= 3.0.0) | libssl3, python3:any, foo [amd64]")
    assert rel[0] == [Constraint("libc6", ">=", "2.38")]
    assert rel[1] == [Constraint("libssl3t64", ">=", "3.0.0"), Constraint("libssl3")]
    assert rel[2] == [Constraint("python3")] and rel[3] == [Constraint("foo")]


def test_stanza_continuation_lines():
    f = parse_stanza("Package: a\nDescription: x\n more\n .\nSHA256:\n abc 1 f\n")
    assert f["Description"] == "x\n more\n ." and f["SHA256"].split() == ["abc", "1", "f"]


def _rec(name, version, deps="", provides="", suite="s"):
    return PackageRecord(name, version, "amd64", parse_relations(deps), [a[0] for a in parse_relations(provides)],
                         suite=suite)


def test_resolver_versions_alternatives_virtuals_and_excludes():
    r = Resolver([
        _rec("app", "1", "libfoo (>= 2), awk | gawk, mail-transport-agent, debconf"),
        _rec("libfoo", "1"), _rec("libfoo", "2", suite="updates"), _rec("libfoo", "2~rc1"),
        _rec("gawk", "5"), _rec("postfix", "3", provides="mail-transport-agent"),
        _rec("debconf", "1", "perl-base"), _rec("perl-base", "5"),
    ], compare_versions, {"s": 0, "updates": 1})
    got = {p.name: p.version for p in r.resolve(["app"], exclude=["debconf"])}
    assert got == {"app": "1", "libfoo": "2", "gawk": "5", "postfix": "3"}


def test_resolver_prefers_newest_then_first_suite():
    r = Resolver([_rec("a", "1", suite="sec"), _rec("a", "1", suite="main"), _rec("a", "0.9", suite="main")],
                 compare_versions, {"main": 0, "sec": 1})
    (only,) = r.resolve(["a"])
    assert (only.version, only.suite) == ("1", "main")


def test_resolver_reports_the_chain_and_unknown_names():
    r = Resolver([_rec("top", "1", "mid"), _rec("mid", "1", "leaf (>= 9)"), _rec("leaf", "1")], compare_versions)
    with pytest.raises(ResolveError) as exc:
        r.resolve(["top"])
    assert "top 1 -> mid 1 -> leaf (>= 9)" in exc.value.message
    with pytest.raises(ResolveError) as exc:
        r.resolve(["lef"])
    assert "unknown package 'lef'" in exc.value.message and "leaf" in (exc.value.hint or "")


def test_apt_sources_read_from_deb822_and_one_line(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://mirror.invalid/deb bookworm main\n")
    (tmp_path / "sources.list.d" / "d.sources").write_text(
        "Types: deb\nURIs: http://sec.invalid/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://other.invalid/x\nSuites: nodistro\nComponents: main\n")
    entries = list(_apt_source_entries(str(tmp_path)))
    assert ("http://mirror.invalid/deb", ["bookworm"]) in entries
    assert debian_mirrors(str(tmp_path)) == ("http://mirror.invalid/deb", "http://sec.invalid/debian-security")


def test_merged_usr_mapping():
    assert merged_usr("lib/x86_64-linux-gnu/libc.so.6") == "usr/lib/x86_64-linux-gnu/libc.so.6"
    assert merged_usr("bin") == "usr/bin" and merged_usr("etc/passwd") == "etc/passwd"


def test_unsigned_or_tampered_release_is_refused():
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    if not os.path.exists(keyring):
        pytest.skip("debian-archive-keyring is not installed")
    with pytest.raises(VerificationError):
        verify_inrelease(b"Origin: Debian\nSuite: trixie\n", keyring, "test")
    forged = (b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n"
              b"-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n=abcd\n-----END PGP SIGNATURE-----\n")
    with pytest.raises(VerificationError):
        verify_inrelease(forged, keyring, "test")


def test_stack_definition_errors_name_file_key_line_and_suggest(tmp_path, monkeypatch):
    from builder.stacks.assemble import load_definition

    path = tmp_path / "mine.toml"
    path.write_text('schema = 1\nname = "mine"\n[source]\ntype = "debian"\n[packages]\ninstal = ["libc6"]\n')
    with pytest.raises(PybuildError) as exc:
        load_definition(str(path))
    msg = exc.value.render()
    assert str(path) in msg and "line 6" in msg and "'instal'" in msg and "did you mean 'install'" in msg
    path.write_text('name = "mine"\n[source]\ntype = "debian"\n[packages]\ninstall = [\n')
    with pytest.raises(PybuildError) as exc:
        load_definition(str(path))
    assert "invalid TOML" in exc.value.message and "line" in exc.value.message


def test_corrupt_and_stale_lockfiles_are_refused(tmp_path):
    from builder.stacks.assemble import load_definition, read_lock

    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\n[source]\ntype = "debian"\n[packages]\ninstall = ["libc6"]\n')
    defn = load_definition(str(path))
    with pytest.raises(PybuildError, match="has no lockfile"):
        read_lock(defn)
    defn.lock_path.write_text("version = 1\nstack = 'mine'\n[[package]]\nname = 3\n")
    with pytest.raises(PybuildError, match="corrupt stack lockfile"):
        read_lock(defn)
    defn.lock_path.write_text("version = 1\nstack = 'mine'\ndefinition = 'sha256:old'\n"
                              "[[package]]\nname = 'a'\nversion = '1'\narchitecture = 'amd64'\n")
    with pytest.raises(PybuildError, match="out of date"):
        read_lock(defn)
