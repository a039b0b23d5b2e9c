"""The npm-style range matcher against node-semver's documented desugaring."""
from __future__ import annotations

import pytest

from buildpacks.node.semver import Range, SemverError, Version, nearest

V = Version.parse


@pytest.mark.parametrize("rng, yes, no", [
    ("^1.2.3", ["1.2.3", "1.9.0"], ["1.2.2", "2.0.0", "2.0.0-0", "1.3.0-beta"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
    ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
    ("^0.x", ["0.0.1", "0.9.9"], ["1.0.0"]),
    ("^1.x", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.0"]),
    ("~1.2.3", ["1.2.3", "1.2.99"], ["1.3.0", "1.2.2"]),
    ("~1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
    ("~1", ["1.0.0", "1.9.9"], ["2.0.0"]),
    ("~>1.2", ["1.2.5"], ["1.3.0"]),
    ("1.x", ["1.0.0", "1.5.5"], ["2.0.0", "0.9.9"]),
    ("1.2.*", ["1.2.0", "1.2.7"], ["1.3.0"]),
    ("22", ["22.0.0", "22.11.1"], ["23.0.0", "21.9.9"]),
    ("*", ["0.0.0", "26.1.0"], ["1.0.0-rc.1"]),
    ("", ["3.0.0"], []),
    ("1.2.3 - 2.3.4", ["1.2.3", "2.3.4"], ["2.3.5", "1.2.2"]),
    ("1.2 - 2.3.4", ["1.2.0"], ["1.1.9"]),
    ("1.2.3 - 2.3", ["2.3.9"], ["2.4.0"]),
    ("1.2.3 - 2", ["2.9.9"], ["3.0.0"]),
    (">=1.2.7 <1.3.0", ["1.2.7", "1.2.8"], ["1.2.6", "1.3.0", "1.3.0-beta"]),
    (">= 18 < 21", ["18.0.0", "20.99.0"], ["21.0.0", "17.9.9"]),
    (">1", ["2.0.0"], ["1.9.9"]),
    (">1.2", ["1.3.0"], ["1.2.9"]),
    ("<1.2", ["1.1.9"], ["1.2.0", "1.2.0-0"]),
    ("<=1.2", ["1.2.9"], ["1.3.0"]),
    ("=1.2.3", ["1.2.3"], ["1.2.4"]),
    ("v20.11.1", ["20.11.1"], ["20.11.0"]),
    ("^20.17.0 || >=22.9.0", ["20.17.0", "22.9.0", "26.0.0"], ["21.0.0", "22.8.0", "20.16.0"]),
    (">1.2.3-alpha.3", ["1.2.3-alpha.7", "3.4.5"], ["3.4.5-alpha.9", "1.2.3-alpha.2"]),
    ("^1.2.3-beta.2", ["1.2.3-beta.4", "1.2.4"], ["1.2.4-beta.2", "1.2.3-beta.1"]),
])
def test_ranges(rng, yes, no):
    r = Range(rng)
    for v in yes:
        assert r.allows(V(v)), f"{rng} should allow {v}"
    for v in no:
        assert not r.allows(V(v)), f"{rng} should not allow {v}"


def test_ordering_follows_semver():
    order = ["1.0.0-0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
             "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.10.0", "2.0.0"]
    assert sorted(order, key=V) == order
    assert str(V("v1.2.3-rc.1+build.5")) == "1.2.3-rc.1"


def test_best_picks_the_highest_match():
    versions = [V(s) for s in ("20.18.0", "22.11.0", "22.12.0", "23.0.0", "24.1.0")]
    assert Range("22").best(versions) == V("22.12.0")
    assert Range(">=20 <23").best(versions) == V("22.12.0")
    assert Range("^25").best(versions) is None


@pytest.mark.parametrize("bad", ["abc", "1.2.3.4.5", ">=1.2 <<3", "~~1"])
def test_bad_ranges_raise(bad):
    with pytest.raises(SemverError):
        Range(bad)


def test_nearest_names_neighbours_of_the_bounds():
    versions = [V(s) for s in ("14.21.3", "16.0.0", "16.20.2", "18.0.0", "24.21.0", "26.10.0")]
    assert nearest(Range("^15.3"), versions) == [V("14.21.3"), V("16.0.0")]
    assert nearest(Range(">=99"), versions) == [V("26.10.0")]
