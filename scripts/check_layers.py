#!/usr/bin/env python3
"""Data flows one way: a module never imports from a layer above it.

Reads every `crate::<module>` path in src/ (use lines and inline paths) and
reports each one that names a layer above the file's own, or a different
module of the same layer. Exit 1 when there is any. Run by scripts/test.sh.
"""
import pathlib
import re
import sys

# Lowest first. Modules of one layer do not import each other.
LAYERS = [
    ["mail"],
    ["metrics", "proto", "rules"],
    ["config"],
    ["tls", "auth"],
    ["oauth"],
    ["tickets"],
    ["store"],
    ["ingest"],
    ["inbound"],
    ["outbound"],
    ["http"],
    ["app"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}
PATH = re.compile(r"\bcrate::([a-z_]+)")
# `use crate::{a, b::c}` groups
GROUP = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)


def modules_named(text: str):
    for m in PATH.finditer(text):
        yield m.group(1), text.count("\n", 0, m.start()) + 1
    for g in GROUP.finditer(text):
        for part in re.split(r",\s*", g.group(1)):
            name = part.strip().split("::")[0].strip("{} \n")
            if name:
                yield name, text.count("\n", 0, g.start()) + 1


def main() -> int:
    root = pathlib.Path(__file__).resolve().parent.parent / "src"
    problems = []
    for path in sorted(root.rglob("*.rs")):
        rel = path.relative_to(root)
        own = rel.parts[0].removesuffix(".rs")
        if own in ("lib", "main") or own not in RANK:
            if own not in ("lib", "main"):
                problems.append(f"{rel}: module {own!r} has no layer in scripts/check_layers.py")
            continue
        text = path.read_text()
        seen = set()
        for name, line in modules_named(text):
            if name == own or name in ("self", "super") or (name, line) in seen:
                continue
            seen.add((name, line))
            if name not in RANK:
                continue  # a crate-root item such as crate::now_rfc3339
            if RANK[name] >= RANK[own]:
                problems.append(
                    f"{rel}:{line}: {own} (layer {RANK[own]}) imports {name} (layer {RANK[name]})")
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} import(s) against the layering (see src/lib.rs)")
        return 1
    print("layering OK: no module imports from a layer above it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
