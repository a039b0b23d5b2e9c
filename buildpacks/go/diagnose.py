"""Turning a failed `go build` into one clear message: module downloads that cannot happen,
stale go.sum or vendor/, and plain compile errors (the compiler's output is shown)."""
from __future__ import annotations

import re

from builder.errors import PybuildError

NETWORK_SIGNS = ("dial tcp", "no such host", "connection refused", "i/o timeout", "proxyconnect",
                 "tls handshake", "network is unreachable", "connection reset", "server misbehaving",
                 "temporary failure in name resolution", "could not resolve host", "unable to access")
FIX_DOWNLOADS = ("vendor the modules (`go mod vendor`, then keep vendor/ with the source), replace them with "
                 "local folders in go.mod, or point GOPROXY at a module proxy this machine can reach "
                 "(-e GOPROXY=https://...)")
_FETCH = re.compile(r"(?P<mod>[\w.\-~/]+)@(?P<ver>v[\w.\-+]+): (?:Get|reading) \"?(?P<url>https?://[^\"\s]+)\"?: "
                    r"(?P<why>.+)")


def _host(url: str) -> str:
    return url.split("//", 1)[-1].split("/", 1)[0]


def explain(output: str, package: str, goproxy: str, gopath_style: bool = False) -> PybuildError:
    """The error to show for `go build` output that ended in failure."""
    text = output.strip()
    details = "\n".join("  | " + l for l in text.splitlines() if l.strip())
    low = text.lower()
    fetch = _FETCH.search(text)
    if fetch and any(s in fetch.group("why").lower() for s in NETWORK_SIGNS):
        return PybuildError(
            f"module {fetch.group('mod')} {fetch.group('ver')} has to be downloaded, but the module proxy "
            f"{_host(fetch.group('url'))} cannot be reached from this machine",
            details=details, hint=f"{FIX_DOWNLOADS}; GOPROXY here is {goproxy}")
    if "module lookup disabled by goproxy=off" in low or "disabled by goproxy=off" in low:
        m = re.search(r"([\w.\-~/]+)@(v[\w.\-+]+)", text)
        what = f"module {m.group(1)} {m.group(2)}" if m else "a module"
        return PybuildError(f"{what} has to be downloaded, but GOPROXY=off forbids downloads",
                            details=details, hint=FIX_DOWNLOADS)
    if any(s in low for s in NETWORK_SIGNS) and ("go: downloading" in low or "git" in low or "proxy" in low):
        return PybuildError("a Go module has to be downloaded, but its source cannot be reached from this machine",
                            details=details, hint=f"{FIX_DOWNLOADS}; GOPROXY here is {goproxy}")
    too_new = re.search(r"(\S+) requires go >= ?([\w.]+) \(running go ([\w.]+)", text)
    if too_new:
        return PybuildError(f"{too_new.group(1)} needs Go {too_new.group(2)}, but the toolchain is Go "
                            f"{too_new.group(3)}", details=details,
                            hint="unset PYBUILD_GO_VERSION (the go.mod directive then picks the toolchain) or "
                                 "raise it to that version")
    if "missing go.sum entry" in low:
        return PybuildError("go.sum lacks entries for modules the app imports", details=details,
                            hint="run `go mod tidy` and keep the updated go.sum with the source")
    if "inconsistent vendoring" in low or "import lookup disabled by -mod=vendor" in low \
            or "is not in vendor/modules.txt" in low:
        return PybuildError("vendor/ does not match go.mod", details=details,
                            hint="run `go mod vendor` and keep the updated vendor/ with the source")
    if "no required module provides package" in low:
        if gopath_style:
            return PybuildError("the app has no go.mod, so it can use only the standard library, but it imports "
                                "another package", details=details,
                                hint="add a go.mod (`go mod init NAME && go mod tidy`), and vendor/ for "
                                     "third-party modules")
        return PybuildError("the app imports a package that no module in go.mod provides", details=details,
                            hint="run `go mod tidy` and keep the updated go.mod and go.sum with the source")
    if "updates to go.mod needed" in low or "go: updates to go.sum needed" in low:
        return PybuildError("go.mod is not up to date with the imports", details=details,
                            hint="run `go mod tidy` and keep the updated go.mod and go.sum with the source")
    return PybuildError(f"compiling {package} failed", details=details,
                        hint="fix the errors the Go compiler reports above")
