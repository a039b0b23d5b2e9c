"""Reading a Go source tree without the toolchain: go.mod directives, which folders hold a
`main` package (with file-name and //go:build constraints for the target platform), and the
build targets the app asks for."""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import PybuildError

KNOWN_OS = {"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js", "linux", "nacl",
            "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos"}
KNOWN_ARCH = {"386", "amd64", "amd64p32", "arm", "armbe", "arm64", "arm64be", "loong64", "mips", "mipsle", "mips64",
              "mips64le", "mips64p32", "mips64p32le", "ppc", "ppc64", "ppc64le", "riscv", "riscv64", "s390",
              "s390x", "sparc", "sparc64", "wasm"}
UNIX_OS = {"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "linux", "netbsd",
           "openbsd", "solaris"}
SKIP_DIRS = {"vendor", "testdata", "node_modules"}


@dataclass
class GoMod:
    module: str = ""
    go: str | None = None
    toolchain: str | None = None
    requires: list[tuple[str, str]] = field(default_factory=list)
    replaces: dict[str, str] = field(default_factory=dict)  # module path -> target (folder or module@version)


def _strip_line_comment(line: str) -> str:
    out, quoted = [], False
    i = 0
    while i < len(line):
        c = line[i]
        if c == '"':
            quoted = not quoted
        if not quoted and line.startswith("//", i):
            break
        out.append(c)
        i += 1
    return "".join(out).strip()


def parse_gomod(text: str) -> GoMod:
    """The directives pybuild needs from go.mod (module, go, toolchain, require, replace)."""
    mod = GoMod()
    block: str | None = None
    for raw in text.splitlines():
        line = _strip_line_comment(raw)
        if not line:
            continue
        if block:
            if line == ")":
                block = None
                continue
            verb, rest = block, line
        else:
            verb, _, rest = line.partition(" ")
            rest = rest.strip()
            if rest == "(":
                block = verb
                continue
        words = [w.strip('"') for w in rest.split()]
        if verb == "module" and words:
            mod.module = words[0]
        elif verb == "go" and words:
            mod.go = words[0]
        elif verb == "toolchain" and words:
            mod.toolchain = words[0]
        elif verb == "require" and len(words) >= 2:
            mod.requires.append((words[0], words[1]))
        elif verb == "replace" and "=>" in words:
            i = words.index("=>")
            if i >= 1 and len(words) > i + 1:
                mod.replaces[words[0]] = " ".join(words[i + 1:])
    return mod


# -- build constraints -------------------------------------------------------------------------
def _tags(goos: str, goarch: str, go_minor: int) -> set[str]:
    tags = {goos, goarch, "gc"} | {f"go1.{i}" for i in range(1, go_minor + 1)}
    if goos in UNIX_OS:
        tags.add("unix")
    return tags  # cgo is off: CGO_ENABLED=0


def eval_constraint(expr: str, tags: set[str]) -> bool:
    """Evaluate a //go:build expression (||, &&, !, parentheses, tags)."""
    tokens = re.findall(r"\|\||&&|!|\(|\)|[\w.\-]+", expr)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("unexpected end")
        pos += 1
        return tokens[pos - 1]

    def chain(op: str, operand: Callable[[], bool]) -> bool:
        values = [operand()]
        while peek() == op:
            take()
            values.append(operand())
        return any(values) if op == "||" else all(values)

    def or_expr() -> bool:
        return chain("||", lambda: chain("&&", unary))

    def unary() -> bool:
        tok = take()
        if tok == "!":
            return not unary()
        if tok == "(":
            value = or_expr()
            if take() != ")":
                raise ValueError("missing )")
            return value
        if tok in ("||", "&&", ")"):
            raise ValueError(f"unexpected {tok}")
        return tok in tags

    result = or_expr()
    if pos != len(tokens):
        raise ValueError("trailing tokens")
    return result


def _filename_ok(name: str, goos: str, goarch: str) -> bool:
    parts = name[:-3].split("_")
    if len(parts) >= 3 and parts[-2] in KNOWN_OS and parts[-1] in KNOWN_ARCH:
        return parts[-2] == goos and parts[-1] == goarch
    if len(parts) >= 2 and parts[-1] in KNOWN_OS:
        return parts[-1] == goos
    if len(parts) >= 2 and parts[-1] in KNOWN_ARCH:
        return parts[-1] == goarch
    return True


_HEADER = re.compile(r"\A(?:\s*(?://[^\n]*|/\*.*?\*/))*\s*package\s+(\w+)", re.DOTALL)


def package_of(path: Path, goos: str = "linux", goarch: str = "amd64", go_minor: int = 99) -> str | None:
    """The package name a .go file declares, or None when the file is excluded from the build
    for this platform (file name suffix, //go:build line) or is a test."""
    name = path.name
    if not name.endswith(".go") or name.endswith("_test.go") or name.startswith(("_", ".")):
        return None
    if not _filename_ok(name, goos, goarch):
        return None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    m = _HEADER.match(text)
    if not m:
        return None
    header = text[:m.start(1)]
    build = re.search(r"^//go:build\s+(.+)$", header, re.MULTILINE)
    if build:
        try:
            if not eval_constraint(build.group(1).strip(), _tags(goos, goarch, go_minor)):
                return None
        except ValueError:
            raise PybuildError(f"{path.name}: cannot read its //go:build line {build.group(1).strip()!r}")
    return m.group(1)


def packages_in(folder: Path, **platform) -> set[str]:
    return {p for f in sorted(folder.glob("*.go")) if f.is_file() and (p := package_of(f, **platform))}


def is_main(folder: Path, **platform) -> bool:
    return "main" in packages_in(folder, **platform)


def mains_under(root: Path, **platform) -> list[Path]:
    """Folders under `root` (recursively, itself included) holding a main package; vendor,
    testdata and hidden folders are skipped, and so are nested modules (their own go.mod)."""
    found: list[Path] = []
    if not root.is_dir():
        return found

    def walk(folder: Path, top: bool) -> None:
        if not top and (folder / "go.mod").exists():
            return
        if is_main(folder, **platform):
            found.append(folder)
        for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
            if child.name in SKIP_DIRS or child.name.startswith((".", "_")):
                continue
            walk(child, False)

    walk(root, True)
    return found


# -- targets -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str  # binary and process type
    package: str  # "./cmd/web" or "."


def _binary_name(module: str, fallback: str) -> str:
    parts = [p for p in module.split("/") if p]
    if len(parts) >= 2 and re.fullmatch(r"v\d+", parts[-1]):  # example.com/tool/v2 -> tool, as go build does
        parts = parts[:-1]
    name = parts[-1] if parts else fallback
    return clean_name(name) or clean_name(fallback) or "app"


def clean_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", name).strip("-.")


def split_setting(value: str) -> list[str]:
    return [v for v in re.split(r"[,\s]+", value.strip()) if v]


def find_targets(app: Path, module: str, setting: str | None, fallback_name: str, **platform) -> list[Target]:
    """PYBUILD_GO_TARGETS, else the root main package, else the single main package under ./cmd."""
    if setting is not None and setting.strip():
        targets: list[Target] = []
        for item in split_setting(setting):
            rel = item.rstrip("/")
            if rel.startswith("/") or ".." in Path(rel).parts:
                raise PybuildError(f"PYBUILD_GO_TARGETS: {item!r} is outside the app",
                                   hint="name folders relative to the app root, e.g. ./cmd/web")
            folder = (app / rel).resolve()
            pkg = "." if folder == app.resolve() else "./" + folder.relative_to(app.resolve()).as_posix()
            if not folder.is_dir():
                raise PybuildError(f"PYBUILD_GO_TARGETS: {item} is not a folder of the app")
            if not is_main(folder, **platform):
                found = ", ".join(sorted(packages_in(folder, **platform))) or "no Go files"
                raise PybuildError(f"PYBUILD_GO_TARGETS: {item} is not a main package (found: {found})",
                                   hint="each target must be a folder whose Go files say `package main`")
            name = _binary_name(module, fallback_name) if pkg == "." else clean_name(folder.name)
            targets.append(Target(name, pkg))
        names = [t.name for t in targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PybuildError(f"PYBUILD_GO_TARGETS: two targets would make the binary {dupes[0]!r}",
                               hint="binaries are named after their folder; give them different folder names")
        return targets
    if is_main(app, **platform):
        return [Target(_binary_name(module, fallback_name), ".")]
    under_cmd = mains_under(app / "cmd", **platform)
    if len(under_cmd) == 1:
        return [Target(clean_name(under_cmd[0].name), "./" + under_cmd[0].relative_to(app).as_posix())]
    names = sorted(packages_in(app, **platform))
    root_pkgs = f"package {', '.join(names)}" if names else "no Go files"
    if len(under_cmd) > 1:
        listed = ",".join("./" + p.relative_to(app).as_posix() for p in under_cmd)
        raise PybuildError("several main packages under ./cmd and no PYBUILD_GO_TARGETS to choose",
                           details=f"  the root holds: {root_pkgs}\n  main packages: {listed.replace(',', ', ')}",
                           hint=f"build them all as processes with -e PYBUILD_GO_TARGETS={listed} "
                                f"(the first is the default)")
    raise PybuildError("no main package to build", details="  searched:\n" + "\n".join(
        f"    {line}" for line in _searched(app, root_pkgs, **platform)),
        hint="put `package main` with a func main() at the root or in ./cmd/NAME, "
             "or name the folders with -e PYBUILD_GO_TARGETS=./path/to/main")


def _searched(app: Path, root_pkgs: str, **platform) -> list[str]:
    lines = ["PYBUILD_GO_TARGETS: not set", f"the app root: {root_pkgs}"]
    cmd = app / "cmd"
    if not cmd.is_dir():
        return lines + ["./cmd: no such folder"]
    found = []
    for folder in [cmd, *sorted(p for p in cmd.rglob("*") if p.is_dir())]:
        pkgs = packages_in(folder, **platform)
        if pkgs:
            found.append(f"./{folder.relative_to(app).as_posix()} (package {', '.join(sorted(pkgs))})")
    return lines + [f"./cmd/**: {', '.join(found) if found else 'no Go packages'}"]
