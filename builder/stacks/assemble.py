"""Stack definitions → lockfiles → one verified, reproducible run-stack layer (and a rootfs
folder the build stage can run the stack's own tools in)."""
from __future__ import annotations

import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pathspec
import toml

from .. import config
from ..errors import PybuildError
from ..oci.blobs import BlobStore, atomic_dir, atomic_write, file_lock
from ..oci.image import Layer
from ..oci.tarball import TarWriter
from ..tomlfile import load_toml, load_validated
from .resolve import Resolver
from .source import PackageSource

ASSEMBLER_VERSION = "5"
LOCK_VERSION = 1
DEFAULT_USERS = [
    {"name": "root", "uid": 0, "gid": 0, "home": "/root"},
    {"name": "nonroot", "uid": 65532, "gid": 65532, "home": "/home/nonroot"},
    {"name": "nobody", "uid": 65534, "gid": 65534, "home": "/nonexistent"},
]
DEFAULT_DROP = ["usr/share/doc/**", "usr/share/man/**", "usr/share/info/**", "usr/share/locale/**",
                "usr/share/lintian/**", "usr/share/bug/**", "usr/share/gcc/**", "usr/share/gdb/**"]
DEFAULT_KEEP = ["usr/share/doc/*/copyright"]


def stack_dirs() -> list[Path]:
    from stacks import DATA_DIR

    dirs = [Path(p) for p in (config.setting("PYBUILD_STACKS_PATH") or "").split(os.pathsep) if p]
    return dirs + [DATA_DIR]


@dataclass
class StackDefinition:
    name: str
    path: Path
    data: dict

    @property
    def lock_path(self) -> Path:
        return self.path.with_suffix(".lock")

    @property
    def source(self) -> dict:
        return self.data["source"]

    @property
    def provides(self) -> dict:
        return self.data.get("provides", {})

    @property
    def env(self) -> dict:
        return self.data.get("env", {})

    @property
    def description(self) -> str:
        return self.data.get("description", "")

    def resolve_fingerprint(self) -> str:
        """What the lockfile depends on: the source and the package lists."""
        relevant = {"source": self.source, "packages": self.data["packages"]}
        return "sha256:" + hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()

    def make_source(self) -> PackageSource:
        cache = config.cache_dir() / self.source["type"]
        here = self.path.parent
        source = dict(self.source)  # key and keyring paths are relative to the definition's folder
        if source.get("keyring"):
            source["keyring"] = str(here / source["keyring"])
        if source.get("keys"):
            source["keys"] = [str(here / k) for k in source["keys"]]
        if self.source["type"] == "debian":
            from .debian import DebianSource

            return DebianSource(source, cache)
        from .apk import ApkSource  # type: ignore[import-not-found]

        return ApkSource(source, cache)


def all_definitions() -> dict[str, StackDefinition]:
    found: dict[str, StackDefinition] = {}
    for d in stack_dirs():
        for path in sorted(Path(d).glob("*.toml")):
            name = path.stem
            if name not in found:
                found[name] = StackDefinition(name, path, {})
    return found


def load_definition(name_or_path: str) -> StackDefinition:
    """A stack by name (from the stack folders) or by path to its TOML."""
    path = Path(name_or_path)
    if not (name_or_path.endswith(".toml") and path.exists()):
        defs = all_definitions()
        if name_or_path not in defs:
            import difflib

            close = difflib.get_close_matches(name_or_path, list(defs), n=3)
            raise PybuildError(f"unknown stack {name_or_path!r}",
                               hint=(f"did you mean {', '.join(close)}? " if close else "")
                               + f"stacks: {', '.join(sorted(defs))} (`pybuild stacks list`)")
        path = defs[name_or_path].path
    data = load_validated(path, "stack.schema.json", "stack definition")
    if data["name"] != path.stem:
        raise PybuildError(f"{path}: name = {data['name']!r} must match the file name {path.stem!r}")
    return StackDefinition(data["name"], path.resolve(), data)


# --------------------------------------------------------------------------------------------
# lockfiles


def read_lock(defn: StackDefinition) -> dict:
    path = defn.lock_path
    if not path.exists():
        raise PybuildError(f"stack {defn.name} has no lockfile ({path})",
                           hint=f"create it with `pybuild stacks lock {defn.name}`")
    lock = load_toml(path, "stack lockfile")
    try:
        if lock["version"] != LOCK_VERSION or lock["stack"] != defn.name:
            raise KeyError("version")
        for p in lock["package"]:
            for k in ("name", "version", "architecture"):
                if not isinstance(p[k], str):
                    raise KeyError(k)
    except (KeyError, TypeError) as exc:
        raise PybuildError(f"{path}: corrupt stack lockfile (bad or missing {exc})",
                           hint=f"regenerate it with `pybuild stacks lock {defn.name} --update`")
    if lock.get("definition") != defn.resolve_fingerprint():
        raise PybuildError(f"{path} is out of date with {defn.path} (the package list or source changed)",
                           hint=f"run `pybuild stacks lock {defn.name} --update`")
    return lock


def resolve(defn: StackDefinition) -> list[dict]:
    src = defn.make_source()
    records, compare, rank = src.load_index()
    resolver = Resolver(records, compare, rank)
    chosen = resolver.resolve(defn.data["packages"]["install"], defn.data["packages"].get("exclude", []))
    return [src.lock_entry(r) for r in chosen]


def lock(defn: StackDefinition, update: bool = False) -> tuple[dict, list[str]]:
    """Resolve and write the lockfile. Without `update`, an existing up-to-date lock is kept.
    Returns the lock and the changes as lines (`+ name version`, `~ name old -> new`, `- name`)."""
    old: dict = {}
    if defn.lock_path.exists():
        try:
            old = load_toml(defn.lock_path, "stack lockfile")
        except PybuildError:
            old = {}
    if old and not update and old.get("definition") == defn.resolve_fingerprint():
        return old, []
    entries = resolve(defn)
    new = {"version": LOCK_VERSION, "stack": defn.name, "definition": defn.resolve_fingerprint(),
           "package": entries}
    before = {p["name"]: p["version"] for p in old.get("package", [])}
    after = {p["name"]: p["version"] for p in entries}
    changes = [f"+ {n} {after[n]}" for n in sorted(after.keys() - before.keys())]
    changes += [f"~ {n} {before[n]} -> {after[n]}" for n in sorted(after.keys() & before.keys()) if before[n] != after[n]]
    changes += [f"- {n} {before[n]}" for n in sorted(before.keys() - after.keys())]
    header = (f"# pybuild stack lockfile for {defn.name}: written by `pybuild stacks lock {defn.name}`.\n"
              "# Every package file is checked against the sha256 pinned here. Do not edit by hand.\n")
    with atomic_write(defn.lock_path, "w") as fh:  # type: ignore[arg-type]
        fh.write(header + toml.dumps(new))
    return new, changes


# --------------------------------------------------------------------------------------------
# assembly


@dataclass
class Stack:
    """An assembled run stack: its layer, and what it offers buildpacks."""

    definition: StackDefinition
    lock: dict
    layer: Layer
    key: str
    packages: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def provides(self) -> dict:
        return self.definition.provides

    @property
    def env(self) -> dict:
        return self.definition.env

    @property
    def architecture(self) -> str:
        """The OCI architecture name of the stack's packages (amd64, arm64)."""
        arch = self.definition.source.get("architecture", "amd64")
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(arch, arch)

    def rootfs(self) -> Path:
        """The stack unpacked into a folder (cached), for running its own tools in the build stage."""
        root = config.cache_dir() / "rootfs" / self.key
        if (root / ".complete").exists():
            return root
        with file_lock(root.parent / f".{self.key}.lock"):
            if not (root / ".complete").exists():
                with atomic_dir(root) as tmp:
                    with tarfile.open(self.layer.path, "r:gz") as tar:
                        tar.extractall(tmp, filter="fully_trusted")
                    (tmp / ".complete").write_text(self.layer.diff_id)
        return root


def _passwd(users: list[dict]) -> tuple[bytes, bytes]:
    pw = "".join(f"{u['name']}:x:{u['uid']}:{u.get('gid', u['uid'])}:{u['name']}:{u.get('home', '/nonexistent')}"
                 f":/sbin/nologin\n" for u in users)
    gr = "".join(f"{u['name']}:x:{u.get('gid', u['uid'])}:\n" for u in users)
    return pw.encode(), gr.encode()


def _ca_bundle(tw: TarWriter) -> None:
    certs = sorted(p for p, e in tw.entries.items()
                   if p.startswith("usr/share/ca-certificates/") and p.endswith(".crt") and e.kind == "file")
    if not certs:
        return
    bundle = b"".join(tw.entries[p].data or b"" for p in certs)
    tw.add_bytes("etc/ssl/certs/ca-certificates.crt", bundle)


def _compile_bytecode(tw: TarWriter, bytecode: dict, store: BlobStore, log) -> None:
    """Compile the stack's Python sources with the stack's own interpreter (inside its root
    file system, so recorded paths are the image's) and add the `.pyc` files: a cold start
    then imports the standard library without compiling it (or failing to cache it)."""
    from ..sandbox import run_in_rootfs

    log(f"compiling {', '.join(bytecode['paths'])} with {bytecode['interpreter']}")
    staged = Layer.from_tar_writer(tw, store)
    with tempfile.TemporaryDirectory(prefix="pybuild-bytecode-", dir=config.cache_dir()) as tmp:
        root = Path(tmp) / "root"
        with tarfile.open(staged.path, "r:gz") as tar:
            tar.extractall(root, filter="fully_trusted")
        binds = {root / p.strip("/"): "/" + p.strip("/") for p in bytecode["paths"]}
        run_in_rootfs(root, [bytecode["interpreter"], "-m", "compileall", "-q", "-j0",
                             "--invalidation-mode", "unchecked-hash", *binds.values()],
                      binds=binds, what="compiling the stack's Python standard library")
        for sub in binds:
            for pyc in sorted(sub.rglob("*.pyc")):
                tw.add_bytes(str(pyc.relative_to(root)), pyc.read_bytes(), 0o644)
    staged.path.unlink(missing_ok=True)


def assemble(defn: StackDefinition, log=lambda msg: None) -> Stack:
    """The stack's layer, from the cache when the lockfile and definition are unchanged."""
    lock = read_lock(defn)
    lock_bytes = defn.lock_path.read_bytes()
    shape = {k: defn.data.get(k) for k in ("files", "users", "bytecode")}
    key = hashlib.sha256(lock_bytes + json.dumps(shape, sort_keys=True).encode()
                         + ASSEMBLER_VERSION.encode()).hexdigest()[:32]
    store = BlobStore(config.cache_dir() / "blobs")
    meta_path = config.cache_dir() / "stacks" / f"{defn.name}-{key}.json"
    with file_lock(meta_path.with_suffix(".lock")):
        return _assemble_locked(defn, lock, key, store, meta_path, log)


def _assemble_locked(defn: StackDefinition, lock: dict, key: str, store: BlobStore, meta_path: Path,
                     log) -> Stack:
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        layer = Layer.from_json(meta["layer"], store)
        if store.has(layer.digest):
            return Stack(defn, lock, layer, key, lock["package"])
    src = defn.make_source()
    tw = TarWriter()
    for entry in lock["package"]:
        log(f"stack {defn.name}: {entry['name']} {entry['version']}")
        path = src.fetch(entry)
        src.unpack(path, entry, tw, lambda p: True)
    src.finish(tw, lock["package"])
    _ca_bundle(tw)
    files = defn.data.get("files", {})
    drop = pathspec.PathSpec.from_lines("gitwildmatch", DEFAULT_DROP + files.get("drop", []))
    keep = pathspec.PathSpec.from_lines("gitwildmatch", DEFAULT_KEEP + files.get("keep", []))
    for path in [p for p in tw.entries if drop.match_file(p) and not keep.match_file(p)]:
        if tw.entries.get(path) and tw.entries[path].kind != "dir":
            del tw.entries[path]
    # hard links whose targets were dropped become nothing rather than dangling
    for path in [p for p, e in tw.entries.items() if e.kind == "hardlink" and e.target not in tw.entries]:
        del tw.entries[path]
    # empty directories left behind by the drop rules go too
    for path in sorted((p for p, e in tw.entries.items() if e.kind == "dir"), reverse=True):
        if drop.match_file(path + "/") and not any(k.startswith(path + "/") for k in tw.entries):
            del tw.entries[path]
    for link, target in sorted(files.get("links", {}).items()):
        tw.add_symlink(link, target)
    users = defn.data.get("users") or DEFAULT_USERS
    pw, gr = _passwd(users)
    tw.add_bytes("etc/passwd", pw)
    tw.add_bytes("etc/group", gr)
    tw.add_bytes("etc/nsswitch.conf", b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
                                      b"networks: files\nprotocols: files\nservices: files\n")
    for u in users:
        home = u.get("home", "/nonexistent")
        if home != "/nonexistent":
            tw.add_dir(home, 0o700, u["uid"], u.get("gid", u["uid"]))
    tw.add_dir("tmp", 0o1777)
    tw.add_dir("var/tmp", 0o1777)
    bytecode = defn.data.get("bytecode")
    if bytecode:
        _compile_bytecode(tw, bytecode, store, log)
    layer = Layer.from_tar_writer(tw, store, created_by=f"pybuild stack {defn.name}",
                                  comment=f"{len(lock['package'])} packages from {defn.source['type']}")
    with atomic_write(meta_path, "w") as fh:  # type: ignore[arg-type]
        fh.write(json.dumps({"layer": layer.to_json(), "stack": defn.name}, indent=1))
    return Stack(defn, lock, layer, key, lock["package"])
