"""Reading TOML data files with errors that name the file, the key and the line."""
from __future__ import annotations

import difflib
import json
import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from .errors import PybuildError

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@lru_cache(maxsize=None)
def schema(name: str) -> dict:
    return json.loads((SCHEMA_DIR / name).read_text())


def load_toml(path: Path, what: str = "file") -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PybuildError(f"{path}: cannot read the {what} ({exc.strerror})")
    except UnicodeDecodeError:
        raise PybuildError(f"{path}: the {what} is not UTF-8 text")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        detail = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", detail)
        if m:
            where = f"line {m.group(1)}, column {m.group(2)}"
            detail = detail[:m.start()].strip()
        else:
            where = f"line {max(1, len(text.splitlines()))} (end of file)"
            detail = re.sub(r"\s*\(at end of document\)", "", detail)
        raise PybuildError(f"{path}, {where}: invalid TOML: {detail}",
                           hint=f"fix the syntax of the {what} at the line shown")


def _line_of(text: str, key: str) -> int | None:
    pat = re.compile(rf'^\s*(\[+\s*)?("?)([\w.-]*\.)?{re.escape(key)}\2\s*(=|\])', re.M)
    m = pat.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def validate(data: dict, schema_name: str, path: Path, what: str = "file") -> None:
    """Validate against a JSON schema; the first error names the key, its line and a did-you-mean."""
    validator = jsonschema.Draft202012Validator(schema(schema_name))
    errors = sorted(validator.iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if not errors:
        return
    err = errors[0]
    text = Path(path).read_text(encoding="utf-8") if Path(path).exists() else ""
    where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    hint = None
    key = str(err.absolute_path[-1]) if err.absolute_path else ""
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        key = extra[0] if extra else key
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"allowed keys: {', '.join(allowed)}"
        prefix = where + "." if err.absolute_path else ""
        message = f"unknown key {prefix}{key!r}"
    elif err.validator == "required":
        message = f"{where}: {err.message}"
    else:
        message = f"{where}: {err.message}"
    line = _line_of(text, key) if key and text else None
    loc = f"{path}" + (f", line {line}" if line else "")
    raise PybuildError(f"{loc}: invalid {what}: {message}", hint=hint)


def load_validated(path: Path, schema_name: str, what: str) -> dict:
    data = load_toml(path, what)
    validate(data, schema_name, path, what)
    return data


def plain(obj: Any) -> Any:
    """TOML values as plain JSON-able values (dates as strings)."""
    return json.loads(json.dumps(obj, default=str))
