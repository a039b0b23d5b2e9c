#!/usr/bin/env python3
"""Run-stack sizes (uncompressed and compressed) against two baselines:
  * the same package set as Debian would install it (the full dependency closure, with docs,
    man pages, locales: the sum of each package's Installed-Size), resolved in this run;
  * Google distroless's published sizes for its Debian 12 images (approximate, compressed).

    python bench/stack_sizes.py [NAME ...]
"""
from __future__ import annotations

import sys

from _common import mb, ratio

from builder.errors import PybuildError
from builder.stacks.assemble import all_definitions, assemble, load_definition
from builder.stacks.resolve import Resolver

TARGETS = {"static": 2.5e6, "cc": 25e6, "python-3.13": 45e6}  # issue 3's goals, uncompressed
DISTROLESS = {"static": ("static-debian12", 2e6), "cc": ("base-debian12 (cc is larger)", 20e6),
              "python-3.11": ("python3-debian12", 50e6), "python-3.13": ("python3-debian12", 50e6)}


def untrimmed_size(defn) -> int:
    src = defn.make_source()
    records, compare, rank = src.load_index()
    chosen = Resolver(records, compare, rank).resolve(defn.data["packages"]["install"])
    return sum(r.extra.get("installed_size", 0) for r in chosen)


def main(names: list[str]) -> None:
    if not names:
        for n in sorted(all_definitions()):
            try:
                if load_definition(n).source["type"] == "debian" and not n.endswith("-build"):
                    names.append(n)
            except PybuildError as exc:
                print(f"skipping {n}: {exc.message}", file=sys.stderr)
    print(f"{'stack':<14}{'uncompressed':>14}{'compressed':>13}{'Debian closure':>17}{'ratio':>9}"
          f"{'goal':>10}   distroless (published, compressed)")
    for name in names:
        defn = load_definition(name)
        stack = assemble(defn)
        raw, gz = stack.layer.uncompressed_size, stack.layer.size
        full = untrimmed_size(defn)
        goal = TARGETS.get(name)
        goal_txt = ("ok " if raw <= goal else "OVER") + f"{goal / 1e6:.1f}" if goal else ""
        dl = DISTROLESS.get(name)
        dl_txt = f"{dl[0]} ~{dl[1] / 1e6:.0f} MB: ours {ratio(gz, dl[1])}" if dl else ""
        print(f"{name:<14}{mb(raw):>14}{mb(gz):>13}{mb(full):>17}{ratio(raw, full):>9}{goal_txt:>10}   {dl_txt}")


if __name__ == "__main__":
    main(sys.argv[1:])
