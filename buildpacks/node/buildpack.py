"""Node.js apps: the node binary from the npm registry on the `cc` stack, dependencies installed
by the project's package manager into their own cached layer, the build script, devDependencies
pruned, and a start command that needs neither a shell nor npm in the image.

The package managers and build scripts run on the host with the downloaded node binary, in a
bubblewrap sandbox that shows the host's tools read-only and puts the app at /workspace and
its dependencies at their image paths: paths baked in at install time (Yarn PnP maps, pnpm
links, native addons' build files) stay valid in the image, and node-gyp finds the host's
python3, make and g++ while compiling addons against the downloaded node's headers.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import tempfile
from pathlib import Path

from builder import BuildContext, Buildpack, DetectContext, DetectResult
from builder.buildpack import APP_DIR, cache_key
from builder.errors import PybuildError
from builder.sandbox import run_in_rootfs

from . import entrypoint, managers, runtime
from .registry import Registry, npmrc_files

STACK = "cc-nossl"  # Node carries its own OpenSSL: the system one would be dead weight
RUNTIME = "/layers/node/runtime"
NODE = f"{RUNTIME}/bin/node"
LAUNCHER_DIR = "/layers/node/launcher"
SANDBOX_NODE, SANDBOX_PM, SANDBOX_BIN, SANDBOX_CACHE = "/pybuild/node", "/pybuild/pm", "/pybuild/bin", "/pybuild/cache"
PNP_FILES = (".pnp.cjs", ".pnp.loader.mjs", ".pnp.data.json", ".yarn/unplugged", ".yarn/install-state.gz")
CONFIG_FILES = (".npmrc", ".yarnrc", ".yarnrc.yml", ".pnpmfile.cjs", "pnpm-workspace.yaml")
DEPS_LAYOUT = 2  # bump when what goes into the deps layer changes: part of its cache key
PASS_ENV = ("NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
            "http_proxy", "https_proxy", "no_proxy")
DEP_FIELDS = ("dependencies", "devDependencies", "optionalDependencies", "peerDependencies", "bundleDependencies",
              "overrides", "resolutions", "pnpm", "workspaces", "packageManager", "engines", "allowScripts",
              "trustedDependencies")


def load_package_json(path: Path) -> dict:
    """package.json as a dict; invalid JSON is an error naming the file and the position."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PybuildError(f"{path.name}: not UTF-8 text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if 0 < exc.lineno <= len(text.splitlines()) else ""
        raise PybuildError(f"{path.name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                           details=f"  {exc.lineno} | {line}\n  {' ' * len(str(exc.lineno))} | {' ' * (exc.colno - 1)}^")
    if not isinstance(data, dict):
        raise PybuildError(f"{path.name}: expected a JSON object, found {type(data).__name__}")
    return data


class NodeBuildpack(Buildpack):
    id = "node"
    version = "0.1.0"
    description = "Node.js apps: npm, Yarn (classic and Berry/PnP), pnpm; node binary only on the cc-nossl stack"

    def detect(self, ctx: DetectContext) -> DetectResult:
        if ctx.exists("package.json"):
            pkg = load_package_json(ctx.app_dir / "package.json")
            mgr = managers.choose(ctx.app_dir, pkg)
            req = runtime.requested(ctx.setting("PYBUILD_NODE_VERSION"), pkg, lambda n: self._text(ctx, n))
            return DetectResult.passed(f"found package.json ({mgr.label}, {mgr.reason})", stack=STACK,
                                       node_version=req.spec, version_from=req.origin, package_manager=mgr.name)
        scripts = [n for n in entrypoint.CONVENTION_FILES if ctx.exists(n)]
        if scripts:
            req = runtime.requested(ctx.setting("PYBUILD_NODE_VERSION"), None, lambda n: self._text(ctx, n))
            return DetectResult.passed(f"found {scripts[0]} (no package.json)", stack=STACK,
                                       node_version=req.spec, version_from=req.origin, package_manager=None)
        return DetectResult.failed("no package.json, server.js, index.js or app.js at the root")

    @staticmethod
    def _text(ctx: DetectContext, name: str) -> str | None:
        return ctx.read_text(name) if ctx.exists(name) else None

    # -- build -------------------------------------------------------------------------------
    def build(self, ctx: BuildContext) -> None:
        app = ctx.app_dir
        pkg = load_package_json(app / "package.json") if (app / "package.json").exists() else None
        registry = Registry.from_config(ctx.cache_dir, app)
        arch = getattr(ctx.stack, "architecture", "amd64")
        host = platform.machine()
        if runtime.package_name(arch) != runtime.package_name(host):
            raise PybuildError(f"the {ctx.stack.name} stack is {arch}, but this machine is {host}",
                               hint="package managers and native addons run on the build machine: "
                                    "build on a machine of the stack's architecture")
        resolver = runtime.NodeResolver(registry, ctx.cache_dir, ctx.log, arch=arch)
        req = runtime.requested(ctx.setting("PYBUILD_NODE_VERSION"), pkg, lambda n: self._text(ctx, n))
        node = resolver.resolve(req)
        ctx.log(f"Node.js {node.version} ({req.origin}: {req.spec})")
        self._runtime_layer(ctx, resolver, node)
        deps_dir = None
        launch_env = {"NODE_ENV": "production",
                      "PATH": f"{RUNTIME}/bin:" + ctx.stack.env.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        if pkg is not None:
            deps_dir, mgr = Installer(ctx, registry, resolver, node.version, pkg).run()
            if mgr.pnp:
                opts = f"--require {APP_DIR}/.pnp.cjs"
                if (app / ".pnp.loader.mjs").exists():
                    opts += f" --experimental-loader file://{APP_DIR}/.pnp.loader.mjs"
                launch_env["NODE_OPTIONS"] = opts
        ctx.launch_env.update(launch_env)
        try:
            ep = entrypoint.choose(app, pkg, ctx.options.get("process"),
                                   bin_dir=deps_dir / ".bin" if deps_dir is not None else None)
        except PybuildError:
            if ctx.options.get("entrypoint"):  # the user's --entrypoint is the start command
                return
            raise
        for w in ep.warnings:
            ctx.log(f"warning: {w}")
        ctx.log(f"start: {ep.rule}")
        ctx.add_process("web", self._argv(ctx, ep.command), default=True)
        for name, cmd in ep.processes.items():
            ctx.add_process(name, self._argv(ctx, cmd))

    def process_argv(self, ctx: BuildContext, command: list[str]) -> list[str]:
        """User commands (`--entrypoint`, project.toml processes): `node` is the shipped binary,
        and $VAR goes through the launcher as in Procfile lines."""
        return self._argv(ctx, command)

    @staticmethod
    def _argv(ctx: BuildContext, command: list[str]) -> list[str]:
        if any("$" in a for a in command):
            src = Path(__file__).with_name("launch.js")
            ctx.layer("launcher", cache_key("launcher", src.read_bytes()),
                      lambda d: shutil.copyfile(src, d / "launch.js"), image_path=LAUNCHER_DIR)
            return [NODE, f"{LAUNCHER_DIR}/launch.js", *command]
        return [NODE if command[0] == "node" else command[0], *command[1:]]

    def _runtime_layer(self, ctx: BuildContext, resolver: runtime.NodeResolver, node: runtime.Resolved) -> None:
        binary = resolver.runtime_binary(node.version)

        def populate(target: Path) -> None:
            (target / "bin").mkdir()
            shutil.copyfile(binary, target / "bin" / "node")
            (target / "bin" / "node").chmod(0o755)

        key = cache_key("runtime", str(node.version), node.manifest.get("dist", {}).get("integrity"),
                        runtime.STRIP_RULE)
        layer_dir = ctx.layer("runtime", key, populate, image_path=RUNTIME)
        checked = ctx.cache_dir / "runs-on" / f"{key}-{ctx.stack.key}"
        if not checked.exists():  # once per runtime and stack: this node runs on the run stack
            try:
                run_in_rootfs(ctx.stack.rootfs(), [NODE, "-e", "process.exit(0)"], ro_binds={layer_dir: RUNTIME},
                              what=f"running Node.js {node.version} on the {ctx.stack.name} stack")
            except PybuildError as exc:
                raise PybuildError(f"Node.js {node.version} does not run on the {ctx.stack.name} stack",
                                   details=exc.details,
                                   hint="the stack may lack a shared library this node needs; "
                                        "pick another Node.js version (PYBUILD_NODE_VERSION) or stack")
            checked.parent.mkdir(parents=True, exist_ok=True)
            checked.write_text(str(node.version))


class Installer:
    """Installs dependencies with the project's package manager, runs the build script, and
    leaves production dependencies in the `deps` layer (node_modules, or Yarn PnP's cache)."""

    def __init__(self, ctx: BuildContext, registry: Registry, resolver: runtime.NodeResolver, node_version,
                 pkg: dict):
        self.ctx, self.registry, self.resolver, self.node_version, self.pkg = ctx, registry, resolver, node_version, pkg
        self.app = ctx.app_dir
        self.mgr = managers.choose(self.app, pkg)
        self.mount = f"{APP_DIR}/.yarn/cache" if self.mgr.pnp else f"{APP_DIR}/node_modules"
        self.host_mount = self.app / self.mount[len(APP_DIR) + 1:]

    def run(self) -> tuple[Path, managers.Manager]:
        ctx, mgr = self.ctx, self.mgr
        for w in mgr.warnings:
            ctx.log(f"warning: {w}")
        seed = None
        if self.host_mount.is_symlink() or self.host_mount.is_file():
            self.host_mount.unlink()
        elif self.host_mount.is_dir():
            if mgr.pnp:  # a committed Yarn cache (zero-install): the install starts from it
                seed = Path(tempfile.mkdtemp(prefix="yarn-cache-", dir=ctx.cache_dir))
                shutil.rmtree(seed)
                shutil.move(self.host_mount, seed)
            else:
                ctx.log("warning: the source has a node_modules folder; it is ignored and installed afresh")
                shutil.rmtree(self.host_mount)
        self.tool = managers.fetch(mgr, self.registry, self.node_version, ctx.cache_dir, self.app)
        self.node_pkg = self.resolver.package(self.node_version)
        ctx.log(f"{mgr.label} {self.tool.version} ({mgr.reason})")
        scripts = self.pkg.get("scripts") if isinstance(self.pkg.get("scripts"), dict) else {}
        has_build = isinstance(scripts.get("build"), str) and bool(scripts["build"].strip())
        key = self._key()
        stash = ctx.cache_dir / "pnp" / key
        try:
            if has_build:
                dev = self._dev_install(key, seed)
                ctx.log(f"running the build script: {scripts['build']}")
                self._restore(dev.with_suffix(".pnp"))
                self._pm(["run", "build"], dev, what="the build script", env={"NODE_ENV": "production"},
                         fail=f"the build script `{scripts['build']}` failed")

                def populate(target: Path) -> None:
                    shutil.rmtree(target)
                    shutil.copytree(dev, target, symlinks=True)
                    self._pm(self._prune_args(), target, what="removing devDependencies")
                    self._tidy(target)
                    self._keep_pnp(stash)
            else:
                def populate(target: Path) -> None:
                    if seed is not None:
                        shutil.rmtree(target)
                        shutil.copytree(seed, target, symlinks=True)
                    self._install(target, production=True)
                    self._tidy(target)
                    self._keep_pnp(stash)
            deps = ctx.layer("deps", key, populate, image_path=self.mount)
            self._restore(stash)
        finally:
            if seed is not None:
                shutil.rmtree(seed, ignore_errors=True)
        if self.host_mount.is_dir() and not any(self.host_mount.iterdir()):
            self.host_mount.rmdir()  # the empty mount point; the deps layer provides this folder
        return deps, mgr

    # -- steps ---------------------------------------------------------------------------------
    def _key(self) -> str:
        lock = self.app / self.mgr.lockfile if self.mgr.lockfile else None
        configs = {n: (self.app / n).read_text(encoding="utf-8", errors="replace")
                   for n in CONFIG_FILES if (self.app / n).is_file()}
        deps = {f: self.pkg.get(f) for f in DEP_FIELDS if f in self.pkg}
        local = {}
        for spec in (self.pkg.get("dependencies") or {}).values():  # local `file:` packages
            if isinstance(spec, str) and spec.startswith("file:") and (self.app / spec[5:]).is_dir():
                local[spec] = sorted((str(p.relative_to(self.app)), p.read_bytes()) for p in (self.app / spec[5:]).rglob("*")
                                     if p.is_file())
        return cache_key("deps", NodeBuildpack.version, DEPS_LAYOUT, lock.read_bytes() if lock else b"", deps, configs, local,
                         str(self.node_version), self.ctx.stack.key, self.mgr.name, self.tool.version,
                         self.registry.url, self.mgr.pnp)

    def _dev_install(self, key: str, seed: Path | None) -> Path:
        """All dependencies, devDependencies included, for the build script; kept in the cache
        (one generation) so a rebuild after a source change skips the install."""
        base = self.ctx.cache_dir / "devdeps"
        dev = base / key
        if (base / f"{key}.done").exists() and dev.is_dir():
            self.ctx.log("reusing the installed devDependencies")
            return dev
        if base.is_dir():
            for old in base.iterdir():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        base.mkdir(parents=True, exist_ok=True)
        if seed is not None:
            shutil.copytree(seed, dev, symlinks=True)
        else:
            dev.mkdir()
        self._install(dev, production=False)
        self._keep_pnp(dev.with_suffix(".pnp"))
        (base / f"{key}.done").write_text("")
        return dev

    def _install(self, target: Path, production: bool) -> None:
        name, locked = self.mgr.name, bool(self.mgr.lockfile)
        if name == "npm":
            args = ["ci" if locked else "install", "--include=dev" if not production else "--omit=dev"]
        elif name == "yarn":
            args = ["install", "--non-interactive", "--no-progress"] + (["--frozen-lockfile"] if locked else [])
            args += ["--production=true"] if production else ["--production=false"]
        elif name == "pnpm":
            args = ["install", "--frozen-lockfile" if locked else "--no-frozen-lockfile"] + (["--prod"] if production else [])
        else:
            args = ["install"] + (["--immutable"] if locked else [])
        self._pm(args, target, what=f"installing dependencies ({' '.join([self.tool.name] + args[:2])})",
                 fail="installing dependencies failed")
        if production and name == "berry":
            self._pm(self._prune_args(), target, what="removing devDependencies")

    def _prune_args(self) -> list[str]:
        return {"npm": ["prune", "--omit=dev"], "pnpm": ["prune", "--prod"],
                "yarn": ["install", "--frozen-lockfile", "--non-interactive", "--production=true"],
                "berry": ["workspaces", "focus", "--all", "--production"]}[self.mgr.name]

    def _keep_pnp(self, dest: Path) -> None:
        """Copy Yarn PnP's files (they live in the app, beside the cache layer) to `dest`."""
        if not self.mgr.pnp:
            return
        if dest.parent.is_dir():  # one generation
            for old in dest.parent.iterdir():
                if old.is_dir() and old.name != dest.name and old.parent.name == "pnp":
                    shutil.rmtree(old)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for rel in PNP_FILES:
            src = self.app / rel
            if src.is_dir():
                shutil.copytree(src, dest / rel, symlinks=True)
            elif src.exists():
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)

    def _restore(self, src: Path) -> None:
        if not self.mgr.pnp or not src.is_dir():
            return
        for rel in PNP_FILES:
            dst = self.app / rel
            if dst.is_dir():
                shutil.rmtree(dst)
            elif dst.exists():
                dst.unlink()
            if (src / rel).is_dir():
                shutil.copytree(src / rel, dst, symlinks=True)
            elif (src / rel).exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, dst)

    def _tidy(self, target: Path) -> None:
        """Drop install bookkeeping that differs from run to run and is not needed at run time."""
        for name in (".yarn-integrity", ".modules.yaml.lock"):
            (target / name).unlink(missing_ok=True)
        for scope in target.glob("@*"):  # scopes left empty by pruning
            if scope.is_dir() and not scope.is_symlink() and not any(scope.iterdir()):
                scope.rmdir()

    def _pm(self, args: list[str], deps: Path, *, what: str, env: dict | None = None, fail: str | None = None) -> None:
        ctx = self.ctx
        shims = Path(tempfile.mkdtemp(prefix="bin-", dir=ctx.cache_dir))
        script = (f"{APP_DIR}/{self.tool.script}" if self.tool.root == self.app
                  else f"{SANDBOX_PM}/{self.tool.script}")
        try:
            cmd = {"npm": "npm", "yarn": "yarn", "berry": "yarn", "pnpm": "pnpm"}[self.tool.name]
            shim = shims / cmd
            shim.write_text(f'#!/bin/sh\nexec {SANDBOX_NODE}/bin/node {script} "$@"\n')
            shim.chmod(0o755)
            cache = ctx.cache_dir / "pm-cache"
            (cache / "home").mkdir(parents=True, exist_ok=True)
            self.host_mount.mkdir(parents=True, exist_ok=True)
            full_env = self._env()
            full_env.update(env or {})
            ro = {self.node_pkg: SANDBOX_NODE, shims: SANDBOX_BIN}
            if self.tool.root != self.app:
                ro[self.tool.root] = SANDBOX_PM
            # the whole output goes to a log (read back on failure); the runner keeps only its tail
            (cache / "logs").mkdir(exist_ok=True)
            log = Path(tempfile.mkstemp(prefix="pm-", suffix=".log", dir=cache / "logs")[1])
            argv = ["/bin/sh", "-c", 'log=$1; shift; "$@" >"$log" 2>&1; rc=$?; tail -n 40 "$log"; exit $rc', "sh",
                    f"{SANDBOX_CACHE}/logs/{log.name}", f"{SANDBOX_NODE}/bin/node", script, *args]
            try:
                run_in_rootfs(Path("/"), argv, ro_binds=ro,
                              binds={self.app: APP_DIR, deps: self.mount, cache: SANDBOX_CACHE},
                              env=full_env, cwd=APP_DIR, network=True, what=what)
            except PybuildError as exc:
                full = log.read_text(errors="replace") if log.exists() else (exc.details or "")
                raise self._explain(exc, full, fail or f"{what} failed")
            finally:
                log.unlink(missing_ok=True)
        finally:
            shutil.rmtree(shims, ignore_errors=True)

    def _env(self) -> dict[str, str]:
        c = SANDBOX_CACHE
        env = {
            "PATH": f"{SANDBOX_BIN}:{SANDBOX_NODE}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": f"{c}/home", "LANG": "C.UTF-8", "CI": "true", "XDG_CACHE_HOME": f"{c}/xdg",
            "npm_config_registry": self.registry.url, "npm_config_cache": f"{c}/npm",
            "npm_config_nodedir": SANDBOX_NODE, "npm_config_update_notifier": "false", "npm_config_fund": "false",
            "npm_config_audit": "false",
            "YARN_REGISTRY": self.registry.url, "YARN_CACHE_FOLDER": f"{c}/yarn",
            "YARN_NPM_REGISTRY_SERVER": self.registry.url.rstrip("/"), "YARN_GLOBAL_FOLDER": f"{c}/berry",
            "YARN_ENABLE_TELEMETRY": "0", "YARN_ENABLE_PROGRESS_BARS": "0", "COREPACK_ENABLE_STRICT": "0",
            "NODE_ENV": "development",
        }
        if self.mgr.name == "npm":  # local `file:` packages are copied into node_modules (the deps layer)
            env["npm_config_install_links"] = "true"
        if self.mgr.name == "pnpm":
            env.update({"npm_config_store_dir": f"{c}/pnpm-store", "npm_config_package_import_method": "copy"})
        if self.mgr.name == "berry":
            env.pop("YARN_REGISTRY")
            env.pop("YARN_CACHE_FOLDER")
            if self.mgr.pnp:
                env.update({"YARN_CACHE_FOLDER": self.mount, "YARN_ENABLE_GLOBAL_CACHE": "false"})
            if self.registry.token:
                env["YARN_NPM_AUTH_TOKEN"] = self.registry.token
        global_rc, user_rc = npmrc_files(None)[:2]
        if user_rc.is_file():
            env["npm_config_userconfig"] = str(user_rc)
        if global_rc.is_file():
            env["npm_config_globalconfig"] = str(global_rc)
        # the host's TLS trust and proxy settings (a corporate CA, an egress proxy)
        env.update({k: v for k, v in os.environ.items()
                    if k in PASS_ENV or k.lower().startswith("npm_config_") and k.lower() != "npm_config_registry"})
        env.update({k: v for k, v in self.ctx.env.items() if k not in ("PATH", "HOME")})
        return env

    def _explain(self, exc: PybuildError, out: str, message: str) -> PybuildError:
        """The package manager's failure as one clear message (lockfile out of step, unknown package),
        with the lines that say why and the last lines of its output."""
        low = out.lower()
        lines = [l for l in out.splitlines() if l.strip() and "Unknown env config" not in l
                 and "Unknown user config" not in l]
        lock = self.mgr.lockfile or "the lockfile"

        def details(*needles: str, tail: bool = True) -> str:
            if not tail:
                return "\n".join("  | " + l for l in [l for l in lines if any(n in l.lower() for n in needles)][:12])
            picked = [l for l in lines[:-15] if any(n in l.lower() for n in needles)][:12]
            return "\n".join("  | " + l for l in picked + (["  ..."] if picked else []) + lines[-15:])

        stale = ("can only install packages when your package.json and", "err_pnpm_outdated_lockfile",
                 "your lockfile needs to be updated", "the lockfile would have been modified", "yn0028",
                 "missing: ", "invalid: lock file")
        if any(s in low for s in stale):
            return PybuildError(f"{lock} is out of step with package.json", details=details(*stale, "missing", "invalid", tail=False),
                                hint=f"run `{self.tool.name if self.tool.name != 'berry' else 'yarn'} install` "
                                     f"and commit the updated {lock}")
        m = (re.search(r"404 Not Found - GET \S+/(@?[^/\s]+(?:%2f[^/\s]+)?)(?:\s|$)", out)
             or re.search(r"requested resource '(@?[^@'\s]+)@", out)
             or re.search(r"ERR_PNPM_FETCH_404[^\n]*?/(@?[\w.-]+(?:%2f[\w.-]+)?):", out)
             or re.search(r"YN0035: (?:│ )?(\S+?)@\S*: Package not found", out)
             or re.search(r"\"(\S+?)@\S*\" not found", out))
        if m or "e404" in low or "404 not found" in low:
            name = m.group(1).replace("%2f", "/").replace("%2F", "/") if m else "a dependency"
            return PybuildError(f"package.json: package {name!r} was not found in the npm registry",
                                details=details("404", "not found"),
                                hint="check the name for typos, and the registry in your npm configuration")
        return PybuildError(message, details=details("error", "err!"), hint=exc.hint)
