"""pybuild's Python launcher, copied into the image: expands $VAR / ${VAR} / ${VAR:-default}
in the command (there is no shell in the image), maps console-script names of the installed
dependencies to their entry points, and execs the result."""
import os
import re
import sys

_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def _expand(arg):
    return _VAR.sub(lambda m: os.environ.get(m.group(1) or m.group(3), m.group(2) or ""), arg)


def _console_script(name):
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for d in sorted(os.listdir(entry)):
            if not d.endswith(".dist-info"):
                continue
            path = os.path.join(entry, d, "entry_points.txt")
            if not os.path.exists(path):
                continue
            section = None
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line.startswith("["):
                        section = line.strip("[]")
                    elif section == "console_scripts" and "=" in line:
                        key, _, value = line.partition("=")
                        if key.strip() == name:
                            return value.strip().split()[0]
    return None


def main():
    argv = [_expand(a) for a in sys.argv[1:]]
    if not argv:
        sys.exit("launch: no command")
    prog = argv[0]
    if prog in ("python", "python3") or re.fullmatch(r"python3\.\d+", prog):
        os.execv(sys.executable, [sys.executable] + argv[1:])
    if "/" not in prog:
        target = _console_script(prog)
        if target:
            module, _, attr = target.partition(":")
            sys.argv = argv
            import importlib

            obj = importlib.import_module(module)
            for part in filter(None, attr.split(".")):
                obj = getattr(obj, part)
            sys.exit(obj())
    os.execvp(prog, argv)


if __name__ == "__main__":
    main()
