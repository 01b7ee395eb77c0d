#!/usr/bin/env python3
"""Checks the module layering of src/: which top-level modules each one imports, the cycles
between them, and imports that run from a lower layer up to a higher one.

Usage: tools/layers.py [--graph] [--sub MODULE]
Exit status 1 when a cycle or an upward import exists. Without --sub it checks the top-level
modules against the layers below, and the files inside every module folder for cycles (the HTTP
codec, `http`, may have them: a request's parser and its field rules call each other). Doc comments and `#[cfg(test)]` modules
are ignored (tests may use anything); `crate::X` and `super::` paths count.

The layers, bottom first (a module may import only modules of its own layer or below; modules
of one layer must not form a cycle):
"""
import re
import sys
from pathlib import Path

LAYERS = [
    ["sys"],
    ["config", "http", "tls", "metrics"],
    ["systemd", "net", "relay", "health", "deploy", "history"],
    ["logging", "listener", "upstream", "policy"],
    ["runtime"],
    ["l4", "l7"],
    ["worker"],
    ["control"],
    ["admin"],
    ["server"],
    ["rollout", "up", "generate", "recovery"],
    ["cli", "fuzzing", "lib"],
]
__doc__ += "\n".join("  " + ", ".join(layer) for layer in LAYERS) + "\n"

SRC = Path(__file__).resolve().parent.parent / "src"


def strip(text: str) -> str:
    """The code of a file without comments and without its `#[cfg(test)]` module."""
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    if cut:
        text = text[:cut.start()]
    return "\n".join(re.sub(r"//.*", "", line) for line in text.splitlines())


def module_of(path: Path, depth: int) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts[:depth]) or "lib"


def edges(depth: int, within: str | None):
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.rs"):
        if "bin" in path.relative_to(SRC).parts:
            continue
        me = module_of(path, depth if within is None else depth + 1)
        if within is not None and not me.startswith(within + "::"):
            continue
        code = strip(path.read_text())
        uses = set()
        for m in re.finditer(r"\bcrate::((?:[a-z_0-9]+::)*[a-z_0-9]+)", code):
            parts = m.group(1).split("::")
            uses.add("::".join(parts[:depth if within is None else depth + 1]))
        if within is not None:
            # siblings named through super:: from a file directly inside the module
            rel = path.relative_to(SRC / within.replace("::", "/"))
            if len(rel.parts) == 1 and rel.name != "mod.rs":
                for m in re.finditer(r"\bsuper::([a-z_0-9]+)", code):
                    uses.add(f"{within}::{m.group(1)}")
        graph.setdefault(me, set()).update(u for u in uses if u != me)
    names = set(graph)
    return {k: {u for u in v if u in names} for k, v in graph.items()}


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


# Folders whose files may call each other in a cycle: one codec.
CYCLES_ALLOWED = {"http"}


def main():
    within = sys.argv[sys.argv.index("--sub") + 1] if "--sub" in sys.argv else None
    graph = edges(1, within)
    bad = False
    if "--graph" in sys.argv:
        for k in sorted(graph):
            print(f"{k} -> {', '.join(sorted(graph[k])) or '-'}")
    for comp in cycles(graph):
        bad = True
        print("cycle: " + " <-> ".join(comp))
    if within is None:
        rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
        for k in sorted(graph):
            if k not in rank:
                bad = True
                print(f"module {k} has no layer in tools/layers.py")
                continue
            for u in sorted(graph[k]):
                if u in rank and rank[u] > rank[k]:
                    bad = True
                    print(f"upward import: {k} (layer {rank[k]}) uses {u} (layer {rank[u]})")
        for folder in sorted(d.name for d in SRC.iterdir() if d.is_dir() and d.name != "bin"):
            if folder in CYCLES_ALLOWED:
                continue
            for comp in cycles(edges(1, folder)):
                bad = True
                print("cycle: " + " <-> ".join(comp))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
