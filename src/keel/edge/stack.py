"""Worst-case stack of a C entry point from GCC's `-fcallgraph-info=su` files (`.ci`, VCG text).

`-fstack-usage` alone gives each function's own frame; the call graph adds who calls whom, so the
figure is the deepest path from the entry point. Functions without a figure (library calls such as
`expf`, or code compiled elsewhere) count 0 and are listed, so the reader knows the bound is partial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from keel.errors import InvalidInputError

__all__ = ["StackUse", "worst_stack"]

_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_BYTES = re.compile(r"\\n(\d+) bytes \(([a-z,]+)\)")


@dataclass(frozen=True)
class StackUse:
    bytes: int
    unknown: tuple[str, ...]  # callees on the deepest paths with no stack figure
    dynamic: bool  # some frame on the path has a dynamic (alloca/VLA) part


def worst_stack(ci_files: list[Path], entry: str) -> StackUse:
    """Deepest stack path from `entry` over the call graphs in `ci_files`; recursion is an error."""
    frames: dict[str, tuple[int, bool]] = {}
    calls: dict[str, list[str]] = {}
    for path in ci_files:
        text = path.read_text(encoding="utf-8")
        for title, label in _NODE.findall(text):
            found = _BYTES.search(label)
            if found:
                frames[title] = (int(found.group(1)), found.group(2) != "static")
        for source, target in _EDGE.findall(text):
            calls.setdefault(source, []).append(target)
    if entry not in frames:
        raise InvalidInputError(f"No stack figure for {entry!r} in {[p.name for p in ci_files]}; is it defined?")
    unknown: set[str] = set()
    dynamic = False
    done: dict[str, int] = {}

    def depth(name: str, path: tuple[str, ...]) -> int:
        nonlocal dynamic
        if name in path:
            raise InvalidInputError(f"Recursion {' -> '.join((*path, name))}: the stack of {entry!r} is unbounded.")
        if name in done:
            return done[name]
        if name not in frames:
            unknown.add(name.split(":")[-1])
            return 0
        own, is_dynamic = frames[name]
        dynamic |= is_dynamic
        done[name] = own + max((depth(callee, (*path, name)) for callee in calls.get(name, [])), default=0)
        return done[name]

    total = depth(entry, ())
    return StackUse(bytes=total, unknown=tuple(sorted(unknown)), dynamic=dynamic)
