#!/usr/bin/env python3
"""Which top-level modules of src/ import which (`crate::x` paths), and any circles.

    python3 scripts/import_graph.py          # edges, then circles (exit 1 if any)
    python3 scripts/import_graph.py --dot    # Graphviz

A module's own tests (`#[cfg(test)] mod tests` to the end of the file) are left out:
they may reach across layers to build fixtures. `main.rs` and `lib.rs` are the roots.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def top(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code(path: pathlib.Path) -> str:
    text = path.read_text()
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    text = text[: cut.start()] if cut else text
    # Doc comments and comments name modules without importing them.
    return "\n".join(l.split("//")[0] for l in text.splitlines())


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for f in sorted(SRC.rglob("*.rs")):
        src = top(f)
        if src in ("main", "lib"):
            continue
        for m in PATH.findall(code(f)):
            if m != src:
                edges.setdefault(src, set()).add(m)
        edges.setdefault(src, set())
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    edges = graph()
    if "--dot" in sys.argv:
        print("digraph hotline {")
        for s, ts in sorted(edges.items()):
            for t in sorted(ts):
                print(f"  {s} -> {t};")
        print("}")
        return 0
    for s, ts in sorted(edges.items()):
        print(f"{s:12} -> {', '.join(sorted(ts)) or '-'}")
    found = circles(edges)
    for c in found:
        print("circle:", " <-> ".join(c))
    if not found:
        print("no circles")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
