"""What a Python app declares: its manifests, whether the project itself is installed, its
console scripts, requires-python, and its dependencies when there is no lockfile."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import PybuildError

from .locks import read_json, read_toml, which_lock

MANIFESTS = ("requirements.txt", "pyproject.toml", "Pipfile", "Pipfile.lock", "uv.lock", "poetry.lock",
             "pdm.lock", "setup.py", "setup.cfg")


@dataclass
class Project:
    app_dir: Path
    manifests: list[str]
    pyproject: dict = field(default_factory=dict)
    lock: str | None = None  # the lockfile that decides the dependencies
    installable: bool = False  # built into a wheel and installed (has a build backend)
    scripts: dict[str, str] = field(default_factory=dict)  # console scripts the install provides

    @property
    def requires_python(self) -> str | None:
        return self.pyproject.get("project", {}).get("requires-python") or self._poetry_python()

    def _poetry_python(self) -> str | None:
        spec = self.pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}).get("python")
        return poetry_specifier(spec) if isinstance(spec, str) and spec.strip() != "*" else None

    def lock_inputs(self) -> list[str]:
        """The files whose content decides the dependency layer."""
        names = list(MANIFESTS) + ["uv.toml", ".python-version", "runtime.txt"]
        return [n for n in names if (self.app_dir / n).is_file()]

    def lock_paths(self) -> list[str]:
        """Local folders and files the lockfile installs from (workspace members, path dependencies)."""
        if self.lock == "Pipfile.lock":
            default = read_json(self.app_dir, "Pipfile.lock").get("default") or {}
            return [e["path"] for e in default.values() if isinstance(e, dict) and e.get("path")]
        if not self.lock:
            return []
        out = []
        for pkg in read_toml(self.app_dir, self.lock).get("package", []):
            src = pkg.get("source") or {}
            if self.lock == "uv.lock":
                out += [src[k] for k in ("editable", "directory", "path") if k in src and src[k] != "."]
            elif self.lock == "poetry.lock" and src.get("type") in ("directory", "file"):
                out.append(src["url"])
            elif self.lock == "pdm.lock" and pkg.get("path"):
                out.append(pkg["path"])
        return out

    def local_inputs(self) -> list[Path]:
        """Files and folders the dependencies come from inside the app: requirements.txt's nested
        `-r`/`-c` files and local path requirements, and the lockfile's path dependencies (their
        content decides the dependency layer too)."""
        root = self.app_dir.resolve()
        found: list[Path] = [p for p in ((root / rel).resolve() for rel in self.lock_paths())
                             if p.exists() and (p == root or root in p.parents)]
        todo = [self.app_dir / "requirements.txt"]
        while todo:
            path = todo.pop()
            if not path.is_file() or path in found:
                continue
            found.append(path)
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.split(" #", 1)[0].strip()
                m = re.match(r"^(?:-r|-c|--requirement|--constraint)[\s=]+(\S+)", line)
                local = re.match(r"^(?:-e\s+|--editable[\s=]+)?(\.{1,2}/\S*|file:\S+)", line)
                if m:
                    todo.append((path.parent / m.group(1)).resolve())
                elif local:
                    ref = local.group(1).split("#", 1)[0]
                    ref = ref[5:].lstrip("/") if ref.startswith("file:") and not ref.startswith("file:///") else ref
                    target = (self.app_dir / ref.replace("file:///workspace/", "")).resolve()
                    if target.exists() and (target == root or root in target.parents):
                        found.append(target)
        return found

    def describe(self) -> str:
        if self.lock:
            how = f"{self.lock} (exact, hash-checked)"
        elif (self.app_dir / "requirements.txt").is_file():
            how = "requirements.txt"
        elif self.manifests:
            how = self.manifests[0]
        else:
            how = "no dependencies"
        return how + ("; the project itself is built and installed" if self.installable else "")


def load(app_dir: Path) -> Project:
    app_dir = Path(app_dir)
    found = [m for m in MANIFESTS if (app_dir / m).is_file()]
    pyproject = read_toml(app_dir, "pyproject.toml") if "pyproject.toml" in found else {}
    tool = pyproject.get("tool", {})
    if "Pipfile" in found:
        read_toml(app_dir, "Pipfile")  # a syntax error is reported now, with its line
    if "build-system" in pyproject:
        installable = True
    elif tool.get("poetry") and "project" not in pyproject:
        installable = False  # a Poetry project without [build-system] cannot be built by any frontend
    else:
        installable = "setup.py" in found  # setup.cfg alone: no frontend can build it (no setup.py shim)
    if tool.get("poetry", {}).get("package-mode") is False or tool.get("pdm", {}).get("distribution") is False \
            or tool.get("uv", {}).get("package") is False:
        installable = False
    scripts = dict(pyproject.get("project", {}).get("scripts", {}) or tool.get("poetry", {}).get("scripts", {}) or {})
    if "setup.cfg" in found and not scripts:
        scripts = _setup_cfg_scripts(app_dir / "setup.cfg")
    return Project(app_dir, found, pyproject, which_lock(app_dir), installable,
                   {k: v for k, v in scripts.items() if isinstance(v, str)})


def _setup_cfg(path: Path):
    import configparser

    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read(path, encoding="utf-8")
    except configparser.Error as exc:
        raise PybuildError(f"setup.cfg: {exc}")
    return cp


def _setup_cfg_scripts(path: Path) -> dict[str, str]:
    raw = _setup_cfg(path).get("options.entry_points", "console_scripts", fallback="")
    return {k.strip(): v.strip() for k, _, v in (l.partition("=") for l in raw.splitlines() if "=" in l)}


def _setup_cfg_requirements(path: Path) -> list[str]:
    raw = _setup_cfg(path).get("options", "install_requires", fallback="")
    return [l.split("#", 1)[0].strip() for l in raw.splitlines() if l.split("#", 1)[0].strip()]


def poetry_specifier(spec: str) -> str:
    """A Poetry version constraint (^, ~, *, bare versions, `||`) as a PEP 440 specifier."""
    out = []
    for alt in spec.split("||"):
        parts = []
        for c in re.split(r"\s*,\s*|\s+(?=[<>=!~^])", alt.strip()):
            c = c.strip()
            if not c or c == "*":
                continue
            if c.startswith("^"):
                v = c[1:].strip()
                nums = [int(x) for x in re.findall(r"\d+", v)[:3]] or [0]
                idx = next((i for i, n in enumerate(nums) if n != 0), len(nums) - 1)
                upper = nums[:idx] + [nums[idx] + 1]
                parts += [f">={v}", "<" + ".".join(map(str, upper))]
            elif c.startswith("~") and not c.startswith("~="):
                v = c[1:].strip()
                nums = [int(x) for x in re.findall(r"\d+", v)[:3]]
                upper = [nums[0] + 1] if len(nums) == 1 else [nums[0], nums[1] + 1]
                parts += [f">={v}", "<" + ".".join(map(str, upper))]
            elif re.match(r"^\d", c):
                parts.append(("==" + c) if "*" not in c else f"=={c}")
            else:
                parts.append(c)
        out.append(",".join(parts))
    if len(out) > 1:
        raise PybuildError(f"the Poetry constraint {spec!r} uses `||`, which has no PEP 508 form",
                           hint="lock the project (`poetry lock`) so the exact versions are used")
    return out[0]


def _python_marker(spec: str) -> str:
    conds = []
    for part in poetry_specifier(spec).split(","):
        m = re.match(r"^(===|==|!=|>=|<=|~=|>|<)\s*(.+)$", part.strip())
        if m:
            conds.append(f"python_version {m.group(1)} '{m.group(2)}'")
    return " and ".join(conds) or "python_version >= '0'"


def poetry_requirements(pyproject: dict) -> list[str]:
    """[tool.poetry.dependencies] (no lockfile) as PEP 508 requirement lines."""
    lines = []
    for name, spec in pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}).items():
        if name.lower() == "python":
            continue
        if isinstance(spec, str):
            lines.append(name + poetry_specifier(spec))
            continue
        if not isinstance(spec, dict):
            raise PybuildError(f"pyproject.toml: tool.poetry.dependencies.{name}: use a lockfile for this form",
                               hint="run `poetry lock` and commit poetry.lock")
        if spec.get("optional"):
            continue
        extras = f"[{','.join(spec['extras'])}]" if spec.get("extras") else ""
        markers = [spec["markers"]] if spec.get("markers") else []
        if spec.get("python"):
            markers.append(_python_marker(spec["python"]))
        if spec.get("git"):
            ref = spec.get("rev") or spec.get("tag") or spec.get("branch")
            req = f"{name}{extras} @ git+{spec['git']}" + (f"@{ref}" if ref else "")
        elif spec.get("path"):
            from .locks import workspace_url

            req = f"{name}{extras} @ {workspace_url(spec['path'])}"
        else:
            req = name + extras + poetry_specifier(str(spec.get("version", "*")))
        lines.append(req + (" ; " + " and ".join(f"({m})" for m in markers) if markers else ""))
    return lines


def pipfile_requirements(pipfile: dict) -> list[str]:
    """[packages] of a Pipfile (no lockfile) as PEP 508 requirement lines."""
    lines = []
    for name, spec in (pipfile.get("packages") or {}).items():
        if isinstance(spec, str):
            lines.append(name + ("" if spec.strip() == "*" else spec.strip()))
            continue
        extras = f"[{','.join(spec['extras'])}]" if spec.get("extras") else ""
        if spec.get("git"):
            req = f"{name}{extras} @ git+{spec['git']}" + (f"@{spec['ref']}" if spec.get("ref") else "")
        elif spec.get("path") or spec.get("file"):
            from .locks import workspace_url

            req = f"{name}{extras} @ " + (workspace_url(spec["path"]) if spec.get("path") else spec["file"])
        else:
            version = str(spec.get("version", "*")).strip()
            req = name + extras + ("" if version == "*" else version)
        if spec.get("markers"):
            req += f" ; {spec['markers']}"
        lines.append(req)
    return lines


def unlocked_requirements(project: Project) -> tuple[list[str], list[str]]:
    """Without a lockfile: (installer arguments naming requirement files, requirement lines)."""
    app = project.app_dir
    if (app / "requirements.txt").is_file():
        return ["-r", "requirements.txt"], []
    if (app / "Pipfile").is_file():
        return [], pipfile_requirements(read_toml(app, "Pipfile"))
    py = project.pyproject
    if "project" in py and "dependencies" not in py["project"].get("dynamic", []):
        return [], list(py["project"].get("dependencies", []))
    if py.get("tool", {}).get("poetry") and "project" not in py:
        return [], poetry_requirements(py)
    for name in ("pyproject.toml", "setup.py"):
        if name in project.manifests and project.installable:
            return ["-r", name], []  # the installer asks the build backend for the dependencies
    if "setup.cfg" in project.manifests:
        return [], _setup_cfg_requirements(app / "setup.cfg")
    return [], []
