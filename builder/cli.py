"""The `pybuild` command line. Progress goes to stderr; results to stdout (a build's last
stdout line is the manifest digest). Exit 0 ok, 1 build/input error, 2 usage error."""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from . import __version__
from .errors import PybuildError, UsageError

COMMANDS = {"build", "detect", "inspect", "plugins", "stacks"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: exit 2, one line
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _env_pairs(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"-e {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="pybuild", description="Build minimal, reproducible OCI images from source, no daemon needed.")
    p.add_argument("--version", action="version", version=f"pybuild {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    b = sub.add_parser("build", help="build an image from a source folder (the default command)")
    b.add_argument("path", nargs="?", default=".", help="source folder (default: .)")
    b.add_argument("-t", "--tag", help="image name NAME[:TAG] (default: <folder name>:latest)")
    b.add_argument("-o", "--output", action="append", default=[], metavar="DEST",
                   help="oci:DIR[:REF] | oci-archive:FILE[:REF] | docker-archive:FILE[:NAME:TAG] | "
                        "docker-daemon:NAME[:TAG] | docker://HOST[:PORT]/REPO[:TAG] (repeatable; "
                        "default: oci:PATH/.pybuild/oci)")
    b.add_argument("--digest-file", type=Path, help="write the manifest digest (sha256:...) to FILE")
    g = b.add_mutually_exclusive_group()
    g.add_argument("--stack", help="run stack by name or path to a stack TOML (see `pybuild stacks list`)")
    g.add_argument("--run-image", metavar="REF", help="use an existing image (oci:DIR:REF, docker://...) as the run base")
    b.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE",
                   help="build-time and launch environment (repeatable)")
    b.add_argument("--entrypoint", help="the command to start (overrides every detected rule)")
    b.add_argument("--process", help="which process type is the image's entrypoint (default: web or the first)")
    b.add_argument("--json", action="store_true", help="print one JSON summary on stdout")

    d = sub.add_parser("detect", help="what would be built, and why")
    d.add_argument("path", nargs="?", default=".")
    d.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    d.add_argument("--json", action="store_true")

    i = sub.add_parser("inspect", help="layers, sizes, config and packages of an image")
    i.add_argument("ref", help="oci:DIR[:REF], oci-archive:FILE, docker-archive:FILE, docker://..., docker-daemon:...")
    i.add_argument("--json", action="store_true")

    pl = sub.add_parser("plugins", help="registered buildpacks and where they come from")
    pl.add_argument("path", nargs="?", help="also list the buildpacks this project's project.toml names by path")
    pl.add_argument("--json", action="store_true")

    s = sub.add_parser("stacks", help="list, show and lock run stacks")
    ss = s.add_subparsers(dest="stacks_command", parser_class=_Parser, required=True)
    ss.add_parser("list", help="the stacks pybuild knows").add_argument("--json", action="store_true")
    sh = ss.add_parser("show", help="a stack's definition and locked packages")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true")
    lk = ss.add_parser("lock", help="resolve a stack's packages and write its lockfile")
    lk.add_argument("name")
    lk.add_argument("--update", action="store_true", help="re-resolve even when the lock is current; print changes")
    return p


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_build(args) -> int:
    from .build import BuildOptions, build

    opts = BuildOptions(path=Path(args.path), tag=args.tag, outputs=args.output, digest_file=args.digest_file,
                        stack=args.stack, run_image=args.run_image, env=_env_pairs(args.env),
                        entrypoint=args.entrypoint, process=args.process)
    result = build(opts, _log)
    _log(f"built {result.tag} in {result.seconds:.1f} s: "
         f"{sum(l.size for l in result.image.layers) / 1e6:.1f} MB compressed")
    if args.json:
        print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        print(result.image.digest)
    return 0


def cmd_detect(args) -> int:
    import shutil
    import tempfile

    from . import config, plugins
    from . import project as proj
    from .build import detect, load_project
    from .buildpack import DetectContext
    from .source import SourceTree

    root = Path(args.path).resolve()
    project = load_project(root) if root.is_dir() else {}
    include, exclude = proj.source_rules(project)
    tree = SourceTree(root, include=include, exclude=exclude)
    registry = plugins.load(required=proj.requested_ids(project))
    order = proj.order(project, registry, root)
    env = {**proj.build_env(project), **proj.launch_env(project), **_env_pairs(args.env)}
    work = Path(tempfile.mkdtemp(prefix="detect-", dir=config.cache_dir()))
    try:
        tree.copy_to(work / "app")
        for w in tree.warnings:
            _log(f"warning: {w}")
        outcome = detect(DetectContext(work / "app", env, dict(project, _source=str(root))), registry, order)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(outcome.to_json(), indent=2, sort_keys=True, default=str))
    else:
        for bp, res in outcome.group:
            print(f"{bp.id} {bp.version}: {res.reason}")
            for k, v in sorted(res.plan.items()):
                if k != "cnb_plan":
                    print(f"  {k}: {v}")
        print(f"stack: {proj.settings(project).get('stack') or outcome.stack}")
    return 0


def cmd_inspect(args) -> int:
    from .inspect import run_inspect

    return run_inspect(args.ref, args.json)


def cmd_plugins(args) -> int:
    from . import plugins
    from . import project as proj

    reg = plugins.load(warn=lambda msg: None)  # listed below instead
    if args.path:
        root = Path(args.path).resolve()
        proj.order(proj.load(root), reg, root)
    rows = reg.describe()
    if args.json:
        print(json.dumps({"buildpacks": rows, "errors": reg.errors}, indent=2))
    else:
        for r in rows:
            print(f"{r['id']} {r['version']}  from {r['distribution']} ({r['module']})  hooks: {', '.join(r['hooks'])}")
            if r["description"]:
                print(f"    {r['description']}")
        for e in reg.errors:
            print(e)
    return 0


def cmd_stacks(args) -> int:
    from .stacks import assemble as st

    if args.stacks_command == "list":
        rows = []
        for name, d in sorted(st.all_definitions().items()):
            try:
                full = st.load_definition(str(d.path))
                rows.append({"name": name, "description": full.description, "provides": full.provides,
                             "locked": full.lock_path.exists(), "path": str(full.path)})
            except PybuildError as exc:
                rows.append({"name": name, "error": exc.message, "path": str(d.path)})
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['name']:<16} {r.get('description') or r.get('error')}")
        return 0
    defn = st.load_definition(args.name)
    if args.stacks_command == "show":
        lock = st.read_lock(defn)
        if args.json:
            print(json.dumps({"definition": defn.data, "lock": lock}, indent=2, default=str))
        else:
            print(f"{defn.name}: {defn.description}\n  definition: {defn.path}\n  lockfile:   {defn.lock_path}")
            print(f"  provides: {', '.join(f'{k}={v}' for k, v in defn.provides.items())}")
            for p in lock["package"]:
                print(f"  {p['name']:<32} {p['version']:<28} {p['architecture']}")
        return 0
    lock, changes = st.lock(defn, update=args.update)
    for line in changes:
        print(line)
    _log(f"{defn.lock_path}: {len(lock['package'])} packages" + ("" if changes else " (no changes)"))
    return 0


HANDLERS = {"build": cmd_build, "detect": cmd_detect, "inspect": cmd_inspect, "plugins": cmd_plugins,
            "stacks": cmd_stacks}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "build")
    args = make_parser().parse_args(argv)
    try:
        return HANDLERS[args.command](args)
    except PybuildError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as exc:  # a bug in pybuild: say so plainly
        print(f"error: internal error in pybuild: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        if os.environ.get("PYBUILD_DEBUG"):
            traceback.print_exc()
        else:
            print("hint: rerun with PYBUILD_DEBUG=1 for a traceback, and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
