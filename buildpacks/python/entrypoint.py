"""Choosing how a Python app starts, with no configuration. Each rule says why it fired."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from builder.errors import PybuildError
from builder.procfile import parse_procfile

WSGI_FACTORIES = {"Flask", "Bottle", "Falcon", "App", "Pyramid", "Configurator"}
ASGI_FACTORIES = {"FastAPI", "Starlette", "Quart", "Litestar", "Sanic", "Starlite"}
ASGI_MODULES = {"fastapi", "starlette", "quart", "litestar", "sanic", "falcon.asgi", "django.core.asgi"}
APP_NAMES = ("app", "application", "api", "server")
SERVERS = ("gunicorn", "uvicorn")  # added to the image when a start command names one the app does not list
CONVENTION_FILES = ("main.py", "app.py", "wsgi.py", "asgi.py", "server.py")


@dataclass
class Entrypoint:
    rule: str  # which rule fired, shown by `pybuild detect`
    command: list[str]  # argv; `python` means the stack's interpreter
    needs: list[str] = field(default_factory=list)  # servers to install when the app does not list them
    processes: dict[str, list[str]] = field(default_factory=dict)  # other Procfile processes
    type: str = "web"  # the process type of `command` (a Procfile name)


def _servers(commands) -> list[str]:
    """gunicorn/uvicorn named by Procfile commands (`gunicorn ...` or `python -m gunicorn ...`)."""
    found = []
    for cmd in commands:
        prog = cmd[2] if len(cmd) > 2 and cmd[0].startswith("python") and cmd[1] == "-m" else cmd[0] if cmd else ""
        if prog in SERVERS and prog not in found:
            found.append(prog)
    return found


def find_app_object(path: Path) -> tuple[str, str] | None:
    """(variable, "wsgi"|"asgi") for a module-level web app object in `path`, else None."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        return None
    imports: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            imports.add(node.module)
        elif isinstance(node, ast.Import):
            imports.update(a.name for a in node.names)
    asgi_imports = any(m == a or m.startswith(a + ".") for m in imports for a in ASGI_MODULES)
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            targets, value = [node.target.id], node.value
        else:
            continue
        for name in targets:
            if name not in APP_NAMES:
                continue
            factory = ""
            if isinstance(value, ast.Call):
                func = value.func
                factory = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute) and func.value.attr == "asgi":
                    return name, "asgi"
            if factory in ASGI_FACTORIES or (factory not in WSGI_FACTORIES and asgi_imports):
                return name, "asgi"
            if factory == "get_asgi_application":
                return name, "asgi"
            return name, "wsgi"
    return None


@dataclass
class Django:
    settings: str  # settings module, e.g. mysite.settings
    wsgi: str  # module:attribute of the WSGI application
    static_root: bool  # STATIC_ROOT is set: collectstatic runs at build time


def find_django(app_dir: Path) -> Django | None:
    """A Django project: manage.py naming its settings module, which names its WSGI application."""
    manage = app_dir / "manage.py"
    if not manage.is_file():
        return None
    text = manage.read_text(encoding="utf-8", errors="replace")
    m = re.search(r"DJANGO_SETTINGS_MODULE[\"']\s*,\s*[\"']([\w.]+)[\"']", text)
    if not m:
        return None
    settings = m.group(1)
    path = app_dir / (settings.replace(".", "/") + ".py")
    if not path.is_file():
        path = app_dir / settings.replace(".", "/") / "__init__.py"
    conf = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
    w = re.search(r"^WSGI_APPLICATION\s*=\s*[\"']([\w.]+)[\"']", conf, re.M)
    if w:
        module, _, attr = w.group(1).rpartition(".")
    else:
        module, attr = settings.rpartition(".")[0] + ".wsgi" if "." in settings else "wsgi", "application"
    static = re.search(r"^STATIC_ROOT\s*=\s*(?!None\b)\S", conf, re.M) is not None
    return Django(settings, f"{module}:{attr}", static)


def _gunicorn(target: str) -> list[str]:
    return ["python", "-m", "gunicorn", "--bind", "0.0.0.0:${PORT}", "--access-logfile", "-", target]


def choose(app_dir: Path, process: str | None = None, scripts: dict[str, str] | None = None) -> Entrypoint:
    """Procfile > a single [project.scripts] entry > a WSGI/ASGI app object in main.py, app.py,
    wsgi.py, asgi.py or server.py > Django (manage.py) > python main.py > the only *.py file."""
    procfile = app_dir / "Procfile"
    if procfile.is_file():
        procs = parse_procfile(procfile)
        if process and process not in procs:
            raise PybuildError(f"Procfile has no process {process!r}", hint=f"processes: {', '.join(procs)}")
        name = process or ("web" if "web" in procs else next(iter(procs), None))
        if name:
            return Entrypoint(f"Procfile `{name}:` line", procs[name], _servers(procs.values()),
                              processes={k: v for k, v in procs.items() if k != name}, type=name)
    if scripts and len(scripts) == 1:
        (name, target), = scripts.items()
        return Entrypoint(f"the single [project.scripts] entry {name!r} ({target})", [name])
    for fname in CONVENTION_FILES:
        path = app_dir / fname
        if not path.is_file():
            continue
        found = find_app_object(path)
        if not found:
            continue
        var, kind = found
        module = fname[:-3]
        if kind == "asgi":
            return Entrypoint(f"ASGI app object `{var}` in {fname}, served by uvicorn",
                              ["python", "-m", "uvicorn", f"{module}:{var}", "--host", "0.0.0.0", "--port", "${PORT}"],
                              ["uvicorn"])
        return Entrypoint(f"WSGI app object `{var}` in {fname}, served by gunicorn", _gunicorn(f"{module}:{var}"),
                          ["gunicorn"])
    django = find_django(app_dir)
    if django:
        static = "; collectstatic at build time" if django.static_root else ""
        return Entrypoint(f"Django project (manage.py, {django.settings}), {django.wsgi} served by gunicorn{static}",
                          _gunicorn(django.wsgi), ["gunicorn"])
    if (app_dir / "main.py").is_file():
        return Entrypoint("main.py at the root, run with python", ["python", "main.py"])
    singles = sorted(p.name for p in app_dir.glob("*.py"))
    if len(singles) == 1:
        return Entrypoint(f"the only Python file, {singles[0]}, run with python", ["python", singles[0]])
    raise PybuildError("cannot tell how to start this Python app",
                       hint="add a Procfile (`web: gunicorn app:app`), a main.py, or pass --entrypoint")
