"""What a buildpack is and what it gets: the public API for built-in and third-party buildpacks.

A buildpack subclasses `Buildpack`, sets `id` (and `version`), implements `detect(ctx)`
returning `DetectResult.passed(...)` / `.failed(reason)` / `.error(message)`, and
`build(ctx)`, which adds cached layers, launch environment and processes through `BuildContext`.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from . import config
from .errors import PybuildError
from .oci.blobs import BlobStore, atomic_dir, atomic_write, file_lock
from .oci.image import Layer
from .oci.tarball import TarWriter

if TYPE_CHECKING:  # pragma: no cover
    from .stacks.assemble import Stack

APP_DIR = "/workspace"
LAYERS_DIR = "/layers"
RUN_UID = 65532
KEEP_GENERATIONS = 8


@dataclass
class DetectResult:
    """pass / fail (with the reason shown when nothing passes) / error (stops detection)."""

    status: str
    reason: str = ""
    stack: str | None = None  # the run stack this buildpack wants, e.g. "python-3.13"
    plan: dict = field(default_factory=dict)  # handed to build(): versions, tools, rules that fired

    @classmethod
    def passed(cls, reason: str = "", stack: str | None = None, **plan: Any) -> "DetectResult":
        return cls("pass", reason, stack, plan)

    @classmethod
    def failed(cls, reason: str) -> "DetectResult":
        return cls("fail", reason)

    @classmethod
    def error(cls, reason: str) -> "DetectResult":
        return cls("error", reason)


@dataclass
class Process:
    type: str
    command: list[str]
    default: bool = False
    working_dir: str = APP_DIR


class DetectContext:
    """What detect() may look at: the (filtered) source tree and the user's settings."""

    def __init__(self, app_dir: Path, env: Mapping[str, str], project: Mapping[str, Any] | None = None):
        self.app_dir = Path(app_dir)
        self.env = dict(env)
        self.project = dict(project or {})

    def setting(self, name: str, default: str | None = None) -> str | None:
        return config.setting(name, self.env, default)

    def exists(self, *names: str) -> bool:
        return any((self.app_dir / n).exists() for n in names)

    def read_text(self, name: str) -> str:
        path = self.app_dir / name
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PybuildError(f"{name}: not UTF-8 text")


def cache_key(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(p.read_bytes() if p.is_file() else str(p).encode())
        elif isinstance(p, bytes):
            h.update(p)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


class BuildContext(DetectContext):
    """What build() gets: a writable copy of the app, the run stack, the plan from detect,
    cached layers, launch env and processes."""

    def __init__(self, buildpack: "Buildpack", app_dir: Path, env: Mapping[str, str], stack: "Stack",
                 plan: dict, log: Callable[[str], None], epoch: int, project: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None):
        super().__init__(app_dir, env, project)
        self.buildpack = buildpack
        self.stack = stack
        self.plan = plan
        self.log_fn = log
        self.epoch = epoch
        self.options = dict(options or {})
        self.layers: list[Layer] = []
        self.launch_env: dict[str, str] = {}
        self.processes: list[Process] = []
        self.labels: dict[str, str] = {}
        self.include_app = True
        self.app_uid = 0
        self.reused: list[str] = []
        self._added: dict[str, Path] = {}
        self.store = BlobStore(config.cache_dir() / "blobs")

    def log(self, message: str) -> None:
        self.log_fn(f"[{self.buildpack.id}] {message}")

    @property
    def cache_dir(self) -> Path:
        """A folder kept between builds for this buildpack (tool caches, downloads)."""
        path = config.cache_dir() / "buildpacks" / self.buildpack.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def add_process(self, type: str, command: list[str], default: bool = False) -> None:
        self.processes.append(Process(type, command, default))

    def _cached_layer(self, meta_path: Path, content: Path) -> Layer | None:
        if not (meta_path.exists() and content.is_dir()):
            return None
        layer = Layer.from_json(json.loads(meta_path.read_text()), self.store)
        return layer if self.store.has(layer.digest) else None

    def layer(self, name: str, key: str, populate: Callable[[Path], None], *, image_path: str | None = None,
              uid: int = 0) -> Path:
        """A cached layer at `image_path` (default /layers/<buildpack>/<name>).

        When a layer with the same `key` was built before, it is reused untouched and
        `populate` is not called; otherwise `populate(dir)` fills a fresh folder, which is
        kept (for later builds and tools) and turned into a layer. Returns the folder.
        """
        if name in self._added:  # asked again in the same build: the layer is already in
            return self._added[name]
        image_path = image_path or f"{LAYERS_DIR}/{self.buildpack.id}/{name}"
        base = config.cache_dir() / "layers" / self.buildpack.id / name
        meta_path = base / f"{key}.json"
        content = base / key
        with file_lock(base / f".{key}.lock"):
            cached = self._cached_layer(meta_path, content)
            if cached is not None:
                self.log(f"reusing layer {name} ({key[:12]})")
                self.reused.append(name)
                self.layers.append(cached)
                self._added[name] = content
                return content
            with atomic_dir(content) as tmp:
                populate(tmp)
                tw = TarWriter(mtime=self.epoch)
                tw.add_dir(image_path, 0o755)
                tw.add_tree(tmp, image_path.lstrip("/"), uid=uid, gid=uid)
                layer = Layer.from_tar_writer(tw, self.store,
                                              created_by=f"pybuild buildpack {self.buildpack.id}: {name}")
            with atomic_write(meta_path, "w") as fh:  # type: ignore[arg-type]
                fh.write(json.dumps(layer.to_json()))
        # keep the newest few generations per layer name (several projects share one cache)
        for old in sorted(base.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)[KEEP_GENERATIONS:]:
            old.unlink(missing_ok=True)
            shutil.rmtree(base / old.stem, ignore_errors=True)
        self.layers.append(layer)
        self._added[name] = content
        return content


class Buildpack:
    """Base class for buildpacks. Subclasses set `id`, `version`, `description`."""

    id: str = ""
    version: str = "0.0.0"
    description: str = ""

    def detect(self, ctx: DetectContext) -> DetectResult:  # pragma: no cover - overridden
        return DetectResult.failed("detect() is not implemented")

    def build(self, ctx: BuildContext) -> None:  # pragma: no cover - overridden
        raise PybuildError(f"buildpack {self.id} has no build step")

    def process_argv(self, ctx: BuildContext, command: list[str]) -> list[str]:
        """The argv the image runs for a command the user gave (`--entrypoint`, project.toml
        processes), e.g. through this buildpack's launcher, which expands `$VAR` (images have no
        shell). Called after `build`; it may add layers to `ctx`. Default: the command as given."""
        return command
