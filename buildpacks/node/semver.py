"""npm-style semantic versions and ranges, as the npm registry and `engines` fields use them.

Supports the grammar of npm's node-semver: `||` alternatives; hyphen ranges (`1.2 - 2.3.4`);
comparators (`<`, `<=`, `>`, `>=`, `=`); tilde (`~1.2.3`, `~>1.2`); caret (`^0.2.3`);
x-ranges (`1.x`, `1.2.*`, `*`, `""`); a leading `v` or `=`. A prerelease version only
satisfies a comparator set in which some comparator names the same major.minor.patch with a
prerelease, as in npm.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

_NUM = r"0|[1-9]\d*"
_PART = r"[xX*]|\d+"
_VERSION = re.compile(rf"^\s*[v=]*\s*({_NUM})\.({_NUM})\.({_NUM})(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?\s*$")
_PARTIAL = re.compile(rf"^[v=]*\s*({_PART})(?:\.({_PART})(?:\.({_PART})(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?)?)?$")
_HYPHEN = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s*$")
_COMPARATOR = re.compile(r"(<=|>=|<|>|=|~>|~|\^)?\s*([^\s<>=~^]+)")


class SemverError(ValueError):
    """A version or range that does not parse."""


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple = ()

    @classmethod
    def parse(cls, text: str) -> "Version":
        m = _VERSION.match(text)
        if not m:
            raise SemverError(f"{text!r} is not a version")
        pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) else ()
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)), pre)

    @classmethod
    def try_parse(cls, text: str) -> "Version | None":
        try:
            return cls.parse(text)
        except SemverError:
            return None

    def _key(self):
        # a release sorts after its prereleases; numeric identifiers sort before alphanumeric ones
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __lt__(self, other: "Version") -> bool:
        return self._key() < other._key()

    @property
    def release(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base + ("-" + ".".join(str(p) for p in self.prerelease) if self.prerelease else "")


@dataclass(frozen=True)
class Comparator:
    op: str  # one of < <= > >= =
    version: Version

    def test(self, v: Version) -> bool:
        if self.op == "<":
            return v < self.version
        if self.op == "<=":
            return v <= self.version
        if self.op == ">":
            return v > self.version
        if self.op == ">=":
            return v >= self.version
        return v == self.version

    def __str__(self) -> str:
        return f"{'' if self.op == '=' else self.op}{self.version}"


def _floor(major: int, minor: int = 0, patch: int = 0) -> Version:
    """The lowest version at or above major.minor.patch, prereleases included (x.y.z-0)."""
    return Version(major, minor, patch, (0,))


def _partial(text: str) -> tuple[int | None, int | None, int | None, tuple]:
    m = _PARTIAL.match(text.strip())
    if not m:
        raise SemverError(f"{text!r} is not a version or partial version")
    parts: list[int | None] = []
    for g in m.groups()[:3]:
        parts.append(None if g is None or g in ("x", "X", "*") else int(g))
    if parts[0] is None:  # `*.1` means `*`
        parts = [None, None, None]
    elif parts[1] is None:
        parts[2] = None
    pre = tuple(int(p) if p.isdigit() else p for p in m.group(4).split(".")) if m.group(4) and parts[2] is not None else ()
    return parts[0], parts[1], parts[2], pre


def _desugar(op: str, text: str) -> list[Comparator]:
    major, minor, patch, pre = _partial(text)
    if op in ("~", "~>"):
        if major is None:
            return []
        if minor is None:
            return [Comparator(">=", Version(major, 0, 0)), Comparator("<", _floor(major + 1))]
        return [Comparator(">=", Version(major, minor, patch or 0, pre)), Comparator("<", _floor(major, minor + 1))]
    if op == "^":
        if major is None:
            return []
        low = Version(major, minor or 0, patch or 0, pre)
        if major > 0 or minor is None:
            high = _floor(major + 1)
        elif minor > 0 or patch is None:
            high = _floor(0, minor + 1)
        else:
            high = _floor(0, 0, patch + 1)
        return [Comparator(">=", low), Comparator("<", high)]
    if major is None:  # `*`, `x`, `>=*`: anything (`<*` and `>*`: nothing)
        return [Comparator("<", _floor(0))] if op in ("<", ">") else []
    if minor is None or patch is None:  # a partial version is a range of versions
        if minor is None:
            low, high = Version(major, 0, 0), _floor(major + 1)
        else:
            low, high = Version(major, minor, 0), _floor(major, minor + 1)
        if op in ("", "="):
            return [Comparator(">=", low), Comparator("<", high)]
        if op == ">":
            return [Comparator(">=", Version(high.major, high.minor, 0))]
        if op == ">=":
            return [Comparator(">=", low)]
        if op == "<":
            return [Comparator("<", _floor(*low.release))]
        return [Comparator("<", high)]  # <=
    return [Comparator(op or "=", Version(major, minor, patch, pre))]


class Range:
    """A parsed range: alternatives (`||`), each a set of comparators that must all hold."""

    def __init__(self, text: str):
        self.text = text
        self.sets: list[list[Comparator]] = []
        for alt in (text or "").split("||"):
            self.sets.append(self._parse_set(alt.strip()))

    @staticmethod
    def _parse_set(text: str) -> list[Comparator]:
        if text in ("", "*", "x", "X", "latest"):
            return []
        m = _HYPHEN.match(text)
        if m:
            lo, hi = _partial(m.group(1)), _partial(m.group(2))
            out = [Comparator(">=", Version(lo[0] or 0, lo[1] or 0, lo[2] or 0, lo[3]))] if lo[0] is not None else []
            if hi[0] is None:
                return out
            if hi[1] is None:
                return out + [Comparator("<", _floor(hi[0] + 1))]
            if hi[2] is None:
                return out + [Comparator("<", _floor(hi[0], hi[1] + 1))]
            return out + [Comparator("<=", Version(hi[0], hi[1], hi[2], hi[3]))]
        out: list[Comparator] = []
        pos = 0
        text = re.sub(r"(<=|>=|<|>|=|~>|~|\^)\s+", r"\1", text)  # `>= 1.2` means `>=1.2`
        for m in _COMPARATOR.finditer(text):
            if text[pos:m.start()].strip():
                raise SemverError(f"{text!r}: cannot read {text[pos:m.start()].strip()!r}")
            out += _desugar(m.group(1) or "", m.group(2))
            pos = m.end()
        if text[pos:].strip():
            raise SemverError(f"{text!r}: cannot read {text[pos:].strip()!r}")
        return out

    @staticmethod
    def _set_allows(comparators: list[Comparator], v: Version) -> bool:
        if not all(c.test(v) for c in comparators):
            return False
        if v.prerelease:
            return any(c.version.prerelease and c.version.release == v.release and c.version.prerelease != (0,)
                       for c in comparators)
        return True

    def allows(self, v: Version) -> bool:
        return any(self._set_allows(s, v) for s in self.sets)

    def best(self, versions) -> Version | None:
        """The highest version in `versions` (Version values) that satisfies the range."""
        fits = [v for v in versions if self.allows(v)]
        return max(fits) if fits else None

    def bounds(self) -> list[Version]:
        """The versions the range names (for 'nearest versions' messages)."""
        return [c.version for s in self.sets for c in s]

    def __str__(self) -> str:
        return " || ".join(" ".join(str(c) for c in s) or "*" for s in self.sets)


def parse_range(text: str) -> Range:
    return Range(text)


def nearest(range_: Range, versions: list[Version], count: int = 4) -> list[Version]:
    """Published versions closest to what `range_` names: the neighbours of each bound."""
    ordered = sorted(set(versions))
    if not ordered:
        return []
    picks: list[Version] = []
    for b in range_.bounds() or [ordered[-1]]:
        i = next((n for n, v in enumerate(ordered) if v >= b), len(ordered))
        for j in (i - 1, i):
            if 0 <= j < len(ordered) and ordered[j] not in picks:
                picks.append(ordered[j])
    return sorted(picks)[-count:] if len(picks) > count else sorted(picks)
