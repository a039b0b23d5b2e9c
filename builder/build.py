"""The phases: detect → build → export → publish. Phases talk through small typed values."""
from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import config, plugins
from .buildpack import APP_DIR, RUN_UID, BuildContext, Buildpack, DetectContext, DetectResult, Process
from .errors import DetectError, PybuildError, UsageError
from .oci.blobs import BlobStore, atomic_write
from .oci.image import Image, Layer
from .oci.tarball import TarWriter
from .source import SourceTree

DEFAULT_PORT = "8080"
BUILTIN_ORDER = ["python", "node", "go"]


@dataclass
class Member:
    id: str
    optional: bool = False


@dataclass
class DetectOutcome:
    group: list[tuple[Buildpack, DetectResult]]
    tried: list[list[tuple[str, DetectResult]]] = field(default_factory=list)

    @property
    def stack(self) -> str | None:
        return next((r.stack for _, r in self.group if r.stack), None)

    def to_json(self) -> dict:
        return {"buildpacks": [{"id": bp.id, "version": bp.version, "reason": r.reason, "stack": r.stack,
                                "plan": r.plan} for bp, r in self.group],
                "stack": self.stack}


def default_order(registry: plugins.Registry) -> list[list[Member]]:
    ids = sorted(registry.buildpacks, key=lambda i: (BUILTIN_ORDER.index(i) if i in BUILTIN_ORDER else 99, i))
    return [[Member(i)] for i in ids]


def detect(ctx: DetectContext, registry: plugins.Registry, order: list[list[Member]] | None = None) -> DetectOutcome:
    """The first group whose non-optional members all pass wins (optional members that fail drop out)."""
    order = order or default_order(registry)
    tried: list[list[tuple[str, DetectResult]]] = []
    for group in order:
        results: list[tuple[Buildpack, DetectResult]] = []
        log: list[tuple[str, DetectResult]] = []
        ok = True
        for member in group:
            bp = registry.get(member.id)
            try:
                res = bp.detect(ctx)
            except PybuildError:
                raise
            except Exception as exc:
                res = DetectResult.error(f"detect raised {exc.__class__.__name__}: {exc}")
            log.append((bp.id, res))
            if res.status == "error":
                raise DetectError(f"buildpack {bp.id} failed during detection: {res.reason}")
            if res.status == "pass":
                results.append((bp, res))
            elif not member.optional:
                ok = False
                break
        if ok and results:
            from .cnb import resolve_plans

            resolved, why = resolve_plans(results, {m.id for m in group if m.optional})
            if resolved:
                tried.append(log)
                return DetectOutcome(resolved, tried)
            log.append(("(group " + "+".join(m.id for m in group) + ")", DetectResult.failed(why)))
        tried.append(log)
    lines = [f"  {bp_id}: {res.reason or 'did not pass'}" for log in tried for bp_id, res in log
             if res.status != "pass"]
    raise DetectError(f"no buildpack recognised an app in {ctx.project.get('_source', ctx.app_dir)}",
                      details="what each buildpack looked for:\n" + "\n".join(lines),
                      hint="add the files a buildpack needs, or name one with project.toml [[io.buildpacks.group]]")


@dataclass
class BuildOptions:
    path: Path
    tag: str | None = None
    outputs: list[str] = field(default_factory=list)
    digest_file: Path | None = None
    stack: str | None = None
    run_image: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: str | None = None
    process: str | None = None


@dataclass
class BuildResult:
    image: Image
    tag: str
    outputs: list[str]
    stack: str
    buildpacks: list[str]
    reused: list[str]
    seconds: float
    warnings: list[str]

    def to_json(self) -> dict:
        return {"digest": self.image.digest, "tag": self.tag, "outputs": self.outputs, "stack": self.stack,
                "buildpacks": self.buildpacks, "reused_layers": self.reused, "seconds": round(self.seconds, 3),
                "size": sum(l.size for l in self.image.layers),
                "uncompressed_size": sum(l.uncompressed_size for l in self.image.layers if l.uncompressed_size > 0),
                "layers": [{"digest": l.digest, "size": l.size, "uncompressed_size": l.uncompressed_size,
                            "created_by": l.created_by} for l in self.image.layers],
                "config": self.image.config, "warnings": self.warnings}


def default_tag(path: Path) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(path).resolve().name.lower()).strip("-._")
    return f"{name or 'app'}:latest"


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _source_labels(tree_digest: str, root: Path) -> dict[str, str]:
    labels = {"io.pybuild.source.digest": tree_digest}
    if (root / ".git").exists():
        import subprocess

        def git(*args: str) -> str:
            try:
                p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)
                return p.stdout.strip() if p.returncode == 0 else ""
            except OSError:
                return ""
        url, rev = git("remote", "get-url", "origin"), git("rev-parse", "HEAD")
        if url and "@" not in url.split("//")[-1].split("/")[0]:  # never leak credentials in a URL
            labels["org.opencontainers.image.source"] = url
        if rev:
            labels["org.opencontainers.image.revision"] = rev
    return labels


def _tree_digest(tw: TarWriter) -> str:
    h = hashlib.sha256()
    for path in tw.paths():
        e = tw.entries[path]
        h.update(f"{path}\0{e.kind}\0{e.mode:o}\0{e.target}\0".encode())
        if e.kind == "file":
            h.update(e.data if e.data is not None else e.source.read_bytes())  # type: ignore[union-attr]
    return "sha256:" + h.hexdigest()


def pick_process(processes: list[Process], wanted: str | None) -> Process | None:
    if wanted:
        for p in processes:
            if p.type == wanted:
                return p
        raise UsageError(f"no process named {wanted!r}",
                         hint=f"processes: {', '.join(p.type for p in processes) or 'none'}")
    return next((p for p in processes if p.default), processes[0] if processes else None)


def load_project(root: Path) -> dict:
    """project.toml, when present, validated (see builder.project)."""
    from .project import load

    return load(root)


def apply_project(opts: BuildOptions, project: dict) -> BuildOptions:
    """project.toml settings under the command line's: [io.pybuild] stack, run-image, entrypoint,
    process, env (build and launch, like -e) and [[io.buildpacks.build.env]] (build only)."""
    from dataclasses import replace

    from . import project as proj

    pyb = proj.settings(project)
    choose_base = not (opts.stack or opts.run_image)
    return replace(opts, env={**proj.launch_env(project), **opts.env},
                   stack=opts.stack or (pyb.get("stack") if choose_base else None),
                   run_image=opts.run_image or (pyb.get("run-image") if choose_base else None),
                   entrypoint=opts.entrypoint or proj.entrypoint(project),
                   process=opts.process or pyb.get("process"))


def build(opts: BuildOptions, log: Callable[[str], None]) -> BuildResult:
    started = time.monotonic()
    root = Path(opts.path).resolve()
    if not root.is_dir():
        raise PybuildError(f"{opts.path}: no such folder", hint="pass the folder of the app to build")
    tag = opts.tag or default_tag(root)
    project = load_project(root)
    from . import project as proj

    opts = apply_project(opts, project)
    epoch = config.source_date_epoch(root)
    registry = plugins.load(required=proj.requested_ids(project))
    order = proj.order(project, registry, root)
    include, exclude = proj.source_rules(project)
    tree = SourceTree(root, include=include, exclude=exclude)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=config.cache_dir()))
    try:
        app = work / "app"
        tree.copy_to(app)
        for w in tree.warnings:
            log(f"warning: {w}")
        project = dict(project, _source=str(root))
        build_env = {**proj.build_env(project), **opts.env}
        outcome = detect(DetectContext(app, build_env, project), registry, order)
        log("detected: " + ", ".join(f"{bp.id} ({r.reason})" for bp, r in outcome.group))
        stack_name = opts.stack or outcome.stack
        if not stack_name:
            raise PybuildError("no run stack chosen", hint="pass --stack NAME (see `pybuild stacks list`)")
        from .stacks.assemble import assemble, load_definition

        stack = assemble(load_definition(stack_name), log)
        log(f"stack: {stack.name} ({stack.layer.uncompressed_size / 1e6:.1f} MB)")
        contexts: list[BuildContext] = []
        options = {"entrypoint": opts.entrypoint, "process": opts.process}
        for bp, res in outcome.group:
            ctx = BuildContext(bp, app, build_env, stack, res.plan, log, epoch, project, options)
            bp.build(ctx)
            contexts.append(ctx)
        image = export(root, app, stack, contexts, opts, epoch, run_image=opts.run_image,
                       project_processes=proj.processes(project))
        outputs = publish(image, opts.outputs or [f"oci:{root / '.pybuild' / 'oci'}"], tag, log)
        if opts.digest_file:
            with atomic_write(Path(opts.digest_file), "w") as fh:  # type: ignore[arg-type]
                fh.write(image.digest + "\n")
        return BuildResult(image, tag, outputs, stack.name, [f"{bp.id}@{bp.version}" for bp, _ in outcome.group],
                           [r for c in contexts for r in c.reused], time.monotonic() - started, tree.warnings)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def export(root: Path, app: Path, stack, contexts: list[BuildContext], opts: BuildOptions, epoch: int,
           run_image: str | None = None, project_processes: list[Process] | None = None) -> Image:
    store = BlobStore(config.cache_dir() / "blobs")
    env: dict[str, str] = dict(stack.env)
    base_layers: tuple[Layer, ...] = (stack.layer,)
    if run_image:
        from .publish import open_image

        base = open_image(run_image, f"linux/{stack.architecture}").to_image()
        base_layers = base.layers
        for item in base.config.get("Env", []) or []:
            k, _, v = item.partition("=")
            env.setdefault(k, v)
    user_commands = [Process("web", shlex.split(opts.entrypoint), default=True)] if opts.entrypoint else []
    user_commands += list(project_processes or [])
    if user_commands:  # the language buildpack knows how its runtime starts a bare command
        wrapper = next((c for c in reversed(contexts)
                        if type(c.buildpack).process_argv is not Buildpack.process_argv), None)
        for p in user_commands:
            if wrapper is not None:
                p.command = wrapper.buildpack.process_argv(wrapper, p.command)
    layers: list[Layer] = list(base_layers)
    processes: list[Process] = []
    labels: dict[str, str] = {}
    include_app = True
    app_uid = 0
    for ctx in contexts:
        layers += ctx.layers
        env.update(ctx.launch_env)
        processes += ctx.processes
        labels.update(ctx.labels)
        include_app = include_app and ctx.include_app
        app_uid = max(app_uid, ctx.app_uid)
    for extra in user_commands[1:] if opts.entrypoint else user_commands:
        # project.toml [io.pybuild.processes] replace same-named ones
        processes = [p for p in processes if p.type != extra.type] + [extra]
    tw = TarWriter(mtime=epoch)
    tw.add_dir(APP_DIR, 0o755, app_uid, app_uid)
    tw.add_tree(app, APP_DIR.lstrip("/"), uid=app_uid or None, gid=app_uid or None)
    tree_digest = _tree_digest(tw)
    if include_app:
        layers.append(Layer.from_tar_writer(tw, store, created_by="pybuild app", comment="application source"))
    env.setdefault("PORT", DEFAULT_PORT)
    env.update({k: v for k, v in opts.env.items() if not k.startswith("PYBUILD_")})  # settings stay build-time
    if opts.entrypoint:
        processes.insert(0, user_commands[0])
        for p in processes[1:]:
            p.default = False
    proc = pick_process(processes, opts.process)
    labels.update(_source_labels(tree_digest, root))
    labels.update({
        "io.pybuild.stack": stack.name if not run_image else f"{stack.name} (run image {run_image})",
        "io.pybuild.stack.layer": base_layers[-1].diff_id if base_layers else "",
        "io.pybuild.buildpacks": ",".join(f"{c.buildpack.id}@{c.buildpack.version}" for c in contexts),
        "io.pybuild.processes": json.dumps([{"type": p.type, "command": p.command, "default": p is proc}
                                            for p in processes], sort_keys=True),
    })
    port = env.get("PORT", DEFAULT_PORT)
    cfg: dict[str, Any] = {
        "User": f"{RUN_UID}:{RUN_UID}",
        "Env": [f"{k}={v}" for k, v in env.items()],
        "WorkingDir": proc.working_dir if proc else APP_DIR,
        "Labels": labels,
        "ExposedPorts": {f"{port}/tcp": {}},
    }
    if proc:
        cfg["Entrypoint"] = proc.command
    return Image(config=cfg, layers=tuple(layers), created=iso(epoch), architecture=stack.architecture)


def publish(image: Image, outputs: list[str], tag: str, log: Callable[[str], None]) -> list[str]:
    from .publish import parse_destination

    dests = [parse_destination(spec, tag) for spec in outputs]  # all parsed before anything is written
    done = []
    for dest in dests:
        where = dest.publish(image)
        log(f"wrote {where}")
        done.append(where)
    return done
