"""Running build-stage commands: on the host, or inside a stack's root file system with bubblewrap."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from .errors import PybuildError

TAIL_LINES = 25


def _tail(text: str, n: int = TAIL_LINES) -> str:
    lines = [l for l in text.splitlines() if l.strip()]
    return "\n".join("  | " + l for l in lines[-n:])


def run(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        what: str = "", hint: str | None = None, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run a command; on failure raise one PybuildError with the last lines of its output."""
    try:
        proc = subprocess.run(list(argv), cwd=cwd, env=dict(env) if env is not None else None,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise PybuildError(f"{what or argv[0]}: the program {argv[0]!r} is not installed",
                           hint=hint or f"install {argv[0]} and try again")
    except subprocess.TimeoutExpired:
        raise PybuildError(f"{what or argv[0]} did not finish within {int(timeout)} s")
    if proc.returncode != 0:
        raise PybuildError(f"{what or ' '.join(argv[:3])} failed (exit {proc.returncode})",
                           details=_tail(proc.stdout + "\n" + proc.stderr), hint=hint)
    return proc


def run_in_rootfs(rootfs: Path, argv: Sequence[str], *, binds: Mapping[Path, str] = (),  # type: ignore[assignment]
                  ro_binds: Mapping[Path, str] = (), env: Mapping[str, str] | None = None,  # type: ignore[assignment]
                  cwd: str = "/", network: bool = False, what: str = "", hint: str | None = None,
                  timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run `argv` with `rootfs` as `/` (read-only) using bubblewrap; `binds` map host folders
    (writable) onto paths inside. Nothing the command does reaches the rootfs itself."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        raise PybuildError("the build stage needs bubblewrap (bwrap) to run the stack's tools",
                           hint="install it: apt-get install bubblewrap")
    # a tmpfs root with the stack's top-level folders bound read-only, so that mount points
    # for the binds (e.g. /layers/...) can be made without touching the cached rootfs
    cmd = [bwrap, "--tmpfs", "/"]
    host_net_files = ("resolv.conf", "hosts") if network else ()

    def bind_children(folder: Path, inside: str, skip: tuple[str, ...] = ()) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.name in skip or entry.name.startswith("."):
                continue
            if entry.is_symlink():
                cmd.extend(["--symlink", os.readlink(entry), f"{inside}/{entry.name}"])
            else:
                cmd.extend(["--ro-bind", str(entry), f"{inside}/{entry.name}"])

    bind_children(Path(rootfs), "", ("proc", "dev", "tmp", "etc" if network else ""))
    if network:
        # /etc entry by entry, so the host's resolver files can be placed even where the
        # stack has none (distroless stacks ship no resolv.conf)
        cmd += ["--dir", "/etc"]
        if (Path(rootfs) / "etc").is_dir():
            bind_children(Path(rootfs) / "etc", "/etc", host_net_files)
        for name in host_net_files:
            if os.path.exists(f"/etc/{name}"):
                cmd += ["--ro-bind", os.path.realpath(f"/etc/{name}"), f"/etc/{name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if not network:
        cmd.append("--unshare-net")
    for host, inside in dict(ro_binds or {}).items():
        cmd += ["--ro-bind", str(host), inside]
    for host, inside in dict(binds or {}).items():
        cmd += ["--bind", str(host), inside]
    cmd += ["--chdir", cwd, "--clearenv"]
    for k, v in (env or {}).items():
        cmd += ["--setenv", k, v]
    cmd += ["--", *argv]
    return run(cmd, what=what or argv[0], hint=hint, timeout=timeout)
