"""`pybuild inspect REF [--json]`: layers, sizes, history, config, packages and dive's efficiency figure.

The efficiency figure follows dive's definition: for every path that is a leaf of some layer's tree,
add up the sizes it has across layers (a whiteout counts the size of the directory tree it removes,
0 for a file) and the smallest of them; the score is the sum of smallest over the sum of all, and the
wasted bytes are the summed sizes of the paths that appear in two or more layers.
"""
from __future__ import annotations

import json
import posixpath
import sys
import tarfile
from dataclasses import dataclass, field

from .errors import PybuildError
from .oci.archive import open_uncompressed
from .oci.layout import StoredImage

WHITEOUT = ".wh."
OPAQUE = ".wh..wh."
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
DPKG_STATUS = "var/lib/dpkg/status"
APK_INSTALLED = "lib/apk/db/installed"


@dataclass
class _Node:
    size: int = 0
    is_dir: bool = False


@dataclass
class LayerScan:
    """What one pass over a layer's tar learns."""

    nodes: dict[str, _Node] = field(default_factory=dict)  # path (".wh." kept) -> data; parents implicit
    uncompressed: int = 0
    package_files: dict[str, bytes | None] = field(default_factory=dict)  # None: removed by a whiteout


def _clean(name: str) -> str:
    path = posixpath.normpath("/" + name).lstrip("/")
    return "" if path == "." else path


def _is_package_db(path: str) -> bool:
    return path.startswith(DPKG_STATUS_D) or path in (DPKG_STATUS, APK_INSTALLED)


def scan_layer(fileobj) -> LayerScan:
    scan = LayerScan()
    counter = _Counter(open_uncompressed(fileobj))
    with tarfile.open(fileobj=counter, mode="r|") as tar:  # type: ignore[arg-type]
        for member in tar:
            path = _clean(member.name)
            if not path:
                continue
            parts = path.split("/")
            prefix = ""
            for i, part in enumerate(parts):
                if part.startswith(OPAQUE):
                    break  # dive drops opaque markers; their parents still become nodes
                prefix = f"{prefix}/{part}" if prefix else part
                if i == len(parts) - 1:
                    scan.nodes[prefix] = _Node(member.size if not member.isdir() else 0, member.isdir())
                elif prefix not in scan.nodes:
                    scan.nodes[prefix] = _Node()
            base = parts[-1]
            if base.startswith(WHITEOUT) and not base.startswith(OPAQUE):
                target = "/".join(parts[:-1] + [base[len(WHITEOUT):]])
                scan.package_files.update({k: None for k in _package_paths_under(target)})
            elif _is_package_db(path) and member.isfile():
                f = tar.extractfile(member)
                scan.package_files[path] = f.read() if f else b""
        counter.drain()
    scan.uncompressed = counter.count
    return scan


def _package_paths_under(target: str) -> list[str]:
    if _is_package_db(target):
        return [target]
    if (target + "/").startswith(DPKG_STATUS_D) or DPKG_STATUS_D.startswith(target + "/"):
        return [target + "/"]  # a directory of package files: prefix marker
    return []


class _Counter:
    def __init__(self, inner):
        self.inner = inner
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.inner.read(n)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


# -- dive's efficiency ----------------------------------------------------------------------------------
def _leaves(nodes: dict[str, _Node]) -> list[str]:
    parents = {p.rsplit("/", 1)[0] for p in nodes if "/" in p}
    return [p for p in nodes if p not in parents]


def _target(path: str) -> tuple[str, bool]:
    head, _, base = path.rpartition("/")
    if base.startswith(WHITEOUT):
        base = base[len(WHITEOUT):]
        return (f"{head}/{base}" if head else base), True
    return path, False


def efficiency(scans: list[LayerScan]) -> dict:
    stacked: dict[str, _Node] = {}
    cumulative: dict[str, int] = {}
    minimum: dict[str, int] = {}
    counts: dict[str, int] = {}
    for scan in scans:
        for leaf in _leaves(scan.nodes):
            path, whiteout = _target(leaf)
            if whiteout:
                prev = stacked.get(path)
                size = 0
                if prev is not None and prev.is_dir:
                    size = sum(n.size for p, n in stacked.items() if p == path or p.startswith(path + "/"))
            else:
                size = scan.nodes[leaf].size
            cumulative[path] = cumulative.get(path, 0) + size
            minimum[path] = size if path not in minimum else min(minimum[path], size)
            counts[path] = counts.get(path, 0) + 1
        for raw, node in scan.nodes.items():
            path, whiteout = _target(raw)
            if whiteout:
                for p in [p for p in stacked if p == path or p.startswith(path + "/")]:
                    del stacked[p]
            else:
                stacked[path] = node
    discovered = sum(cumulative.values())
    score = 1.0 if discovered == 0 else sum(minimum.values()) / discovered
    wasteful = sorted((p for p in counts if counts[p] > 1), key=lambda p: (-cumulative[p], p))
    wasted = sum(cumulative[p] for p in wasteful)
    user_size = sum(sum(n.size for n in s.nodes.values()) for s in scans[1:])
    return {
        "score": score,
        "wastedBytes": wasted,
        "userSizeBytes": user_size,
        "userWastedPercent": (wasted / user_size) if user_size else 0.0,
        "inefficientFiles": [{"path": "/" + p, "count": counts[p], "wastedBytes": cumulative[p]}
                             for p in wasteful],
    }


# -- packages -------------------------------------------------------------------------------------------
def _paragraphs(text: str) -> list[dict[str, str]]:
    out, cur, last = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                out.append(cur)
            cur, last = {}, None
        elif line[0] in " \t" and last:
            cur[last] += "\n" + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            cur[last] = value.strip()
    if cur:
        out.append(cur)
    return out


def parse_dpkg(text: str) -> list[dict]:
    return [{"type": "deb", "name": p["Package"], "version": p.get("Version", ""),
             "arch": p.get("Architecture", "")}
            for p in _paragraphs(text) if "Package" in p and "not-installed" not in p.get("Status", "")]


def parse_apk(text: str) -> list[dict]:
    pkgs = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":":
                fields.setdefault(line[0], line[2:])
        if "P" in fields:
            pkgs.append({"type": "apk", "name": fields["P"], "version": fields.get("V", ""),
                         "arch": fields.get("A", "")})
    return pkgs


def packages(scans: list[LayerScan]) -> list[dict]:
    files: dict[str, tuple[bytes, int]] = {}
    for index, scan in enumerate(scans):
        for path, data in scan.package_files.items():
            if data is None:
                for p in [p for p in files if p == path or (path.endswith("/") and p.startswith(path))]:
                    del files[p]
            else:
                files[path] = (data, index)
    found: dict[tuple[str, str], dict] = {}
    for path in sorted(files):
        data, index = files[path]
        text = data.decode("utf-8", "replace")
        for pkg in parse_apk(text) if path == APK_INSTALLED else parse_dpkg(text):
            pkg["layer"] = index
            found[(pkg["type"], pkg["name"])] = pkg
    return sorted(found.values(), key=lambda p: (p["type"], p["name"]))


# -- report ---------------------------------------------------------------------------------------------
def inspect_image(stored: StoredImage) -> dict:
    scans = []
    for layer in stored.layers:
        try:
            with layer.open() as fh:
                scans.append(scan_layer(fh))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PybuildError(f"{stored.source}: layer {layer.digest} is not a readable tar ({exc})") from exc
    cfg = stored.config
    c = cfg.get("config") or {}
    history = [h for h in cfg.get("history", []) if not h.get("empty_layer")]
    layers = []
    for i, (layer, scan) in enumerate(zip(stored.layers, scans)):
        h = history[i] if i < len(history) else {}
        layers.append({"digest": layer.digest, "diffId": layer.diff_id, "mediaType": layer.media_type,
                       "size": layer.size, "uncompressedSize": scan.uncompressed,
                       "createdBy": h.get("created_by", ""), "comment": h.get("comment", "")})
    labels = c.get("Labels") or {}
    return {
        "reference": stored.source,
        "digest": stored.digest,
        "mediaType": stored.manifest.get("mediaType", ""),
        "platform": "/".join(filter(None, [cfg.get("os"), cfg.get("architecture"), cfg.get("variant")])),
        "created": cfg.get("created", ""),
        "config": {"user": c.get("User", ""), "entrypoint": c.get("Entrypoint") or [], "cmd": c.get("Cmd") or [],
                   "workingDir": c.get("WorkingDir", ""), "env": c.get("Env") or [], "labels": labels,
                   "exposedPorts": sorted((c.get("ExposedPorts") or {}).keys())},
        "layers": layers,
        "size": sum(l["size"] for l in layers),
        "uncompressedSize": sum(l["uncompressedSize"] for l in layers),
        "packages": packages(scans),
        "efficiency": efficiency(scans),
    }


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def render(report: dict) -> str:
    c = report["config"]
    out = [f"Image      {report['reference']}",
           f"Digest     {report['digest']}",
           f"Platform   {report['platform']}    created {report['created']}",
           "", "Config",
           f"  User        {c['user'] or '(root)'}",
           f"  Entrypoint  {json.dumps(c['entrypoint'])}",
           f"  Cmd         {json.dumps(c['cmd'])}",
           f"  WorkingDir  {c['workingDir'] or '/'}"]
    if c["exposedPorts"]:
        out.append(f"  Ports       {', '.join(c['exposedPorts'])}")
    out.append("  Env" + ("" if c["env"] else "         (none)"))
    out += [f"    {e}" for e in c["env"]]
    out.append("  Labels" + ("" if c["labels"] else "      (none)"))
    out += [f"    {k}={v}" for k, v in sorted(c["labels"].items())]
    out += ["", f"Layers ({len(report['layers'])}: {human_size(report['size'])} compressed, "
                f"{human_size(report['uncompressedSize'])} uncompressed)",
            f"  {'#':>2}  {'digest':<19}  {'compressed':>10}  {'uncompressed':>12}  created by"]
    for i, l in enumerate(report["layers"]):
        out.append(f"  {i:>2}  {l['digest'][:19]:<19}  {human_size(l['size']):>10}  "
                   f"{human_size(l['uncompressedSize']):>12}  {l['createdBy']}")
    pkgs = report["packages"]
    out += ["", f"Packages ({len(pkgs)})" + ("" if pkgs else ": no dpkg or apk database found")]
    out += [f"  {p['type']:<3}  {p['name']} {p['version']}" + (f" ({p['arch']})" if p["arch"] else "")
            + f"  [layer {p['layer']}]" for p in pkgs]
    eff = report["efficiency"]
    out += ["", f"Efficiency {eff['score'] * 100:.2f} %   wasted {human_size(eff['wastedBytes'])} "
                f"({eff['userWastedPercent'] * 100:.2f} % of the layers above the first)"]
    out += [f"  {f['count']}x  {human_size(f['wastedBytes']):>9}  {f['path']}" for f in eff["inefficientFiles"][:10]]
    return "\n".join(out)


def run_inspect(ref: str, as_json: bool) -> int:
    """Print what `ref` holds; 0 on success (errors are raised as PybuildError for the CLI to show)."""
    from .publish import open_image

    report = inspect_image(open_image(ref))
    if as_json:
        sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render(report) + "\n")
    return 0
