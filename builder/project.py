"""project.toml: the Cloud Native Buildpacks project descriptor (schema 0.2) plus pybuild's own
`[io.pybuild]` table, validated by `schemas/project.schema.json`.

    [_]                                  schema-version = "0.2", id, name, version, licenses, metadata
    [io.buildpacks]                      include = [...] | exclude = [...]  (gitignore syntax)
    [[io.buildpacks.group]]              id = "python" | uri = "./my-buildpack" (CNB folder, .py file,
                                         Python package folder), version, optional = true
    [[io.buildpacks.pre.group]]          run before / after the chosen group
    [[io.buildpacks.post.group]]
    [[io.buildpacks.build.env]]          name = "X", value = "y"   (build time only)
    [io.pybuild]                         stack, run-image, entrypoint, process, [io.pybuild.processes],
                                         [io.pybuild.env] (build and launch, like -e), [[io.pybuild.order]]
"""
from __future__ import annotations

import difflib
import posixpath
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PybuildError
from .tomlfile import _line_of, load_toml, validate

if TYPE_CHECKING:  # pragma: no cover
    from .build import Member
    from .buildpack import Process
    from .plugins import Registry

FILENAME = "project.toml"
SCHEMA = "project.schema.json"
KNOWN_IO = ("buildpacks", "pybuild")


def _fail(path: Path, text: str, key: str, message: str, hint: str | None = None) -> PybuildError:
    line = _line_of(text, key) if text else None
    return PybuildError(f"{path}" + (f", line {line}" if line else "") + f": invalid project descriptor: {message}",
                        hint=hint)


def load(root: Path) -> dict:
    """The validated project.toml of `root`, or {} when there is none."""
    path = Path(root) / FILENAME
    if not path.is_file():
        return {}
    data = load_toml(path, "project descriptor")
    text = path.read_text(encoding="utf-8")
    if "project" in data or "build" in data:
        old = "project" if "project" in data else "build"
        raise _fail(path, text, old, f"[{old}] is the schema 0.1 layout",
                    hint='use schema 0.2: [_] schema-version = "0.2", and [io.buildpacks] for include/exclude/group')
    io = data.get("io", {})
    if isinstance(io, dict):
        for key in io:
            if key not in KNOWN_IO:
                close = difflib.get_close_matches(key, KNOWN_IO, n=1, cutoff=0.7)
                if close:
                    raise _fail(path, text, key, f"unknown table [io.{key}]", hint=f"did you mean [io.{close[0]}]?")
        bp = io.get("buildpacks", {})
        if isinstance(bp, dict) and "include" in bp and "exclude" in bp:
            raise _fail(path, text, "exclude", "io.buildpacks: `include` and `exclude` cannot both be set",
                        hint="keep one: include lists the only files to build, exclude the files to leave out")
        pyb = io.get("pybuild", {})
        if isinstance(pyb, dict) and "stack" in pyb and "run-image" in pyb:
            raise _fail(path, text, "run-image", "io.pybuild: `stack` and `run-image` cannot both be set")
    validate(data, SCHEMA, path, "project descriptor")
    return data


def _table(project: dict, *keys: str) -> Any:
    node: Any = project
    for k in keys:
        node = node.get(k, {}) if isinstance(node, dict) else {}
    return node


def source_rules(project: dict) -> tuple[list[str], list[str]]:
    """(include, exclude) patterns for the source tree. Buildpacks named by a path inside the
    project folder are build inputs, not app files: they are excluded too."""
    bp = _table(project, "io", "buildpacks")
    pre, order, post = _groups(project)
    local = []
    for m in pre + post + [m for g in order for m in g]:
        uri = m.get("uri", "")
        rel = posixpath.normpath(uri[7:] if uri.startswith("file://") else uri)
        if uri and "://" not in rel and not rel.startswith(("/", "..", "~")) and rel != ".":
            local.append("/" + rel)
    return list(bp.get("include", [])), list(bp.get("exclude", [])) + local


def settings(project: dict) -> dict:
    """pybuild's own table, `[io.pybuild]`."""
    return dict(_table(project, "io", "pybuild"))


def build_env(project: dict) -> dict[str, str]:
    """`[[io.buildpacks.build.env]]`: build-time variables."""
    return {e["name"]: e["value"] for e in _table(project, "io", "buildpacks", "build").get("env", [])}


def launch_env(project: dict) -> dict[str, str]:
    """`[io.pybuild.env]`: like `-e`, set at build time and in the image."""
    return dict(settings(project).get("env", {}))


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def entrypoint(project: dict) -> str | None:
    """`[io.pybuild] entrypoint` as a shell-quoted string (the form `--entrypoint` takes)."""
    ep = settings(project).get("entrypoint")
    if ep is None:
        return None
    return ep if isinstance(ep, str) else shlex.join(ep)


def processes(project: dict) -> list["Process"]:
    """`[io.pybuild.processes]`: extra (or replacing) process types."""
    from .buildpack import Process

    return [Process(name, _argv(cmd)) for name, cmd in settings(project).get("processes", {}).items()]


def _groups(project: dict) -> tuple[list[dict], list[list[dict]], list[dict]]:
    bp = _table(project, "io", "buildpacks")
    pre = list(_table(bp, "pre").get("group", []))
    post = list(_table(bp, "post").get("group", []))
    order: list[list[dict]] = []
    if bp.get("group"):
        order.append(list(bp["group"]))
    order += [list(o["group"]) for o in settings(project).get("order", [])]
    return pre, order, post


def requested_ids(project: dict) -> set[str]:
    """Buildpack ids the user named: a plugin providing one of these must load, or the build stops."""
    pre, order, post = _groups(project)
    return {m["id"] for m in pre + post + [m for g in order for m in g] if "id" in m and "uri" not in m}


def order(project: dict, registry: "Registry", root: Path) -> list[list["Member"]] | None:
    """The detection order the project asks for (None: pybuild's default order), with local and
    CNB buildpacks named by `uri` loaded into `registry`, and pre/post members around every group."""
    from .build import Member, default_order
    from .plugins import add_path, add_script

    pre, groups, post = _groups(project)
    if not (pre or groups or post):
        return None

    def member(m: dict) -> Member:
        if "script" in m:
            bp_id = add_script(registry, m, root)
        elif "uri" in m:
            bp_id = add_path(registry, m["uri"], root, want_id=m.get("id"))
        else:
            bp_id = m["id"]
            info = registry.buildpacks.get(bp_id)
            if info is None:
                registry.get(bp_id)  # raises: names what is installed and what failed to load
            want = m.get("version")
            if want and info is not None and info.buildpack.version != want:
                raise PybuildError(f"{FILENAME} asks for buildpack {bp_id} version {want}, "
                                   f"but {info.buildpack.version} is installed ({info.dist})",
                                   hint="install that version, or drop `version` from the group entry")
        return Member(bp_id, bool(m.get("optional", False)))

    pre_m = [member(m) for m in pre]
    post_m = [member(m) for m in post]
    core = [[member(m) for m in g] for g in groups] or default_order(registry)
    named = {m.id for m in pre_m + post_m}
    return [pre_m + [m for m in g if m.id not in named] + post_m for g in core]
