"""A deterministic dependency resolver shared by the Debian and APK package sources.

Each source turns its index into `PackageRecord`s (with `depends` as groups of alternatives
and `provides`) and supplies its own version comparison. Choices are recorded with the chain
that pulled each package in, so an unsatisfiable dependency is reported as a chain.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import PybuildError


@dataclass(frozen=True)
class Constraint:
    name: str
    op: str = ""  # "", "=", "<<", "<=", ">=", ">>" (APK's "<", ">", "~" are mapped by its parser)
    version: str = ""

    def __str__(self) -> str:
        return f"{self.name} ({self.op} {self.version})" if self.op else self.name


@dataclass
class PackageRecord:
    name: str
    version: str
    architecture: str
    depends: list[list[Constraint]] = field(default_factory=list)  # AND of OR-groups
    provides: list[Constraint] = field(default_factory=list)  # name with optional "=" version
    filename: str = ""  # path relative to the repository base
    sha256: str = ""  # hex digest of the package file (Debian); APK uses its own checksum field
    size: int = 0
    suite: str = ""  # which suite / repository it came from
    source: str = ""  # source package ("name" or "name (version)")
    extra: dict = field(default_factory=dict)  # format-specific fields kept for lockfiles


class ResolveError(PybuildError):
    pass


def _satisfies(version: str, c: Constraint, compare: Callable[[str, str], int]) -> bool:
    if not c.op:
        return True
    if not version:
        return False
    r = compare(version, c.version)
    return {"=": r == 0, "<<": r < 0, "<=": r <= 0, ">=": r >= 0, ">>": r > 0}[c.op]


class Resolver:
    """Greedy, deterministic: the highest version of the first alternative that can be had.

    `index` maps a package name to its records (from every suite); `suite_rank` orders suites
    so that when two suites carry the same version, the earlier-listed one wins.
    """

    def __init__(self, records: Iterable[PackageRecord], compare: Callable[[str, str], int],
                 suite_rank: dict[str, int] | None = None):
        self.compare = compare
        self.by_name: dict[str, list[PackageRecord]] = {}
        self.providers: dict[str, list[tuple[PackageRecord, Constraint]]] = {}
        rank = suite_rank or {}
        key = functools.cmp_to_key(lambda a, b: -compare(a.version, b.version)
                                   or rank.get(a.suite, 99) - rank.get(b.suite, 99))
        for rec in records:
            self.by_name.setdefault(rec.name, []).append(rec)
            for p in rec.provides:
                self.providers.setdefault(p.name, []).append((rec, p))
        for recs in self.by_name.values():
            recs.sort(key=key)
        for provs in self.providers.values():
            provs.sort(key=lambda rp: (rp[0].name, functools.cmp_to_key(
                lambda a, b: -compare(a.version, b.version))(rp[0])))

    def candidates(self, c: Constraint) -> list[PackageRecord]:
        """Records that satisfy `c`: real packages of that name first, then providers."""
        out = [r for r in self.by_name.get(c.name, []) if _satisfies(r.version, c, self.compare)]
        for rec, prov in self.providers.get(c.name, []):
            if not c.op or (prov.version and _satisfies(prov.version, c, self.compare)):
                if rec not in out:
                    out.append(rec)
        return out

    def _chosen_satisfies(self, chosen: dict[str, PackageRecord], c: Constraint) -> bool:
        rec = chosen.get(c.name)
        if rec is not None and _satisfies(rec.version, c, self.compare):
            return True
        for prec, prov in self.providers.get(c.name, []):
            if chosen.get(prec.name) is prec and (not c.op or (prov.version and _satisfies(prov.version, c, self.compare))):
                return True
        return False

    def resolve(self, requested: list[str | Constraint], exclude: Iterable[str] = ()) -> list[PackageRecord]:
        excluded = set(exclude)
        chosen: dict[str, PackageRecord] = {}
        why: dict[str, list[str]] = {}
        queue: list[tuple[list[Constraint], list[str]]] = []
        for item in requested:
            c = item if isinstance(item, Constraint) else Constraint(item)
            if c.name not in self.by_name and c.name not in self.providers:
                raise ResolveError(f"unknown package {c.name!r}: no suite of this stack has it",
                                   hint=self._suggest(c.name))
            queue.append(([c], []))
        while queue:
            group, chain = queue.pop(0)
            if any(a.name in excluded for a in group):
                continue
            if any(self._chosen_satisfies(chosen, a) for a in group):
                continue
            pick = None
            for alt in group:
                cands = self.candidates(alt)
                # prefer a provider already chosen, else the first candidate
                pick = next((r for r in cands if chosen.get(r.name) is r), None) or (cands[0] if cands else None)
                if pick is not None:
                    break
            if pick is None:
                alts = " | ".join(str(a) for a in group)
                path = " -> ".join(chain + [alts])
                raise ResolveError(f"unsatisfiable dependency: {path}",
                                   hint="no package in the stack's suites satisfies it; "
                                        "add a suite, or list the package under exclude if it is not needed at run time")
            if pick.name in chosen and chosen[pick.name] is not pick:
                prev = chosen[pick.name]
                path = " -> ".join(chain + [str(group[0])])
                raise ResolveError(f"version conflict on {pick.name}: {prev.version} was chosen, "
                                   f"but {path} needs another version")
            chosen[pick.name] = pick
            why[pick.name] = chain + [f"{pick.name} {pick.version}"]
            for dep in pick.depends:
                queue.append((dep, why[pick.name]))
        return [chosen[n] for n in sorted(chosen)]

    def _suggest(self, name: str) -> str | None:
        import difflib

        close = difflib.get_close_matches(name, list(self.by_name), n=3)
        return f"did you mean: {', '.join(close)}?" if close else None
