"""How a Node.js app starts: Procfile > scripts.start (as a direct `node …` command) > main >
server.js > index.js > app.js. The image has no shell and no npm, so a start script is only
used when it is one plain command."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import PybuildError

# Procfile syntax is shared with the Python buildpack
from builder.procfile import parse_procfile

SHELL_SYNTAX = ("&&", "||", "|", ";", "&", ">", ">>", "<", "2>&1")
CONVENTION_FILES = ("server.js", "index.js", "app.js")


@dataclass
class Entrypoint:
    rule: str  # which rule fired
    command: list[str]  # argv; `node` means the image's node binary
    processes: dict[str, list[str]] = field(default_factory=dict)  # other Procfile processes
    warnings: list[str] = field(default_factory=list)


def translate_script(script: str, bin_dir: Path | None) -> tuple[list[str] | None, str]:
    """A package.json script as a direct argv, or (None, why not)."""
    try:
        tokens = shlex.split(script)
    except ValueError as exc:
        return None, f"it does not parse ({exc})"
    if not tokens:
        return None, "it is empty"
    if any(t in SHELL_SYNTAX for t in tokens) or "`" in script or "$(" in script:
        return None, "it uses shell syntax"
    if "=" in tokens[0] and not tokens[0].startswith(("-", "/", ".")):
        return None, "it sets environment variables (use -e KEY=VALUE instead)"
    if tokens[0] == "node":
        return tokens, ""
    if tokens[0] in ("npm", "yarn", "pnpm", "npx"):
        return None, f"it runs {tokens[0]}, which is not in the image"
    if bin_dir is not None:
        link = bin_dir / tokens[0]
        if link.is_symlink() or link.is_file():
            target = link.resolve()
            try:
                rel = target.relative_to(bin_dir.parent.resolve())
            except ValueError:
                return None, f"{tokens[0]} is not inside node_modules"
            head = target.read_bytes()[:200] if target.is_file() else b""
            if head.startswith(b"#!") and b"node" not in head.split(b"\n", 1)[0]:
                return None, f"{tokens[0]} is not a Node.js program"
            return ["node", f"/workspace/node_modules/{rel.as_posix()}", *tokens[1:]], ""
    return None, f"{tokens[0]!r} is neither node nor a program of the installed packages"


def choose(app: Path, package: dict | None, process: str | None = None,
           bin_dir: Path | None = None) -> Entrypoint:
    warnings: list[str] = []
    procfile = app / "Procfile"
    if procfile.is_file():
        procs = parse_procfile(procfile)
        name = process or ("web" if "web" in procs else next(iter(procs), None))
        if name and name in procs:
            return Entrypoint(f"Procfile `{name}:` line", procs[name],
                              {k: v for k, v in procs.items() if k != name})
    pkg = package or {}
    scripts = pkg.get("scripts") if isinstance(pkg.get("scripts"), dict) else {}
    start = scripts.get("start")
    if isinstance(start, str) and start.strip():
        argv, why = translate_script(start, bin_dir)
        if argv:
            return Entrypoint(f"scripts.start `{start}`", argv)
        warnings.append(f"scripts.start `{start}` is not used: {why}; the image has no shell or npm")
    main = pkg.get("main")
    if isinstance(main, str) and main.strip():
        target = os.path.normpath(main.strip())
        candidates = [target, target + ".js", os.path.join(target, "index.js")]
        found = next((c for c in candidates if (app / c).is_file()), None)
        if found:
            return Entrypoint(f"package.json main ({main})", ["node", found], warnings=warnings)
        warnings.append(f"package.json main {main!r} does not exist")
    for name in CONVENTION_FILES:
        if (app / name).is_file():
            return Entrypoint(f"{name} at the root", ["node", name], warnings=warnings)
    raise PybuildError("cannot tell how to start this Node.js app",
                       details="\n".join("  " + w for w in warnings) or None,
                       hint="add a Procfile (`web: node server.js`), a `start` script that is `node FILE`, "
                            "a main field, a server.js, or pass --entrypoint")
