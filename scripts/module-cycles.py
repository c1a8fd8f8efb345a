#!/usr/bin/env python3
"""Cycles among the modules of core/src (issue 26).

The house rule (shared DESIGN.md, "Growing the house"): no core module imports
a module that imports it, directly or through others. This maps every
`crate::<module>` reference in core/src - `use crate::x::...`, grouped
`use crate::{x, y::Z}` and fully qualified `crate::x::f()` paths - to an edge
between top-level modules (a folder such as core/src/community/ is one node),
prints each cycle (each strongly connected component of more than one module,
and one shortest cycle through it) and exits 1 when there is one, 0 otherwise.

References to the crate root's re-exports (`crate::Error`, `crate::Context`,
...) count as references to the module they come from (`pub use x::Y;` in
lib.rs), so a re-export cannot hide a cycle.

    scripts/module-cycles.py            # cycles, exit 1 if any
    scripts/module-cycles.py --graph    # also print every module's imports
    scripts/module-cycles.py --root DIR # another crate's src/ (default core/src)

Only the standard library.
"""
import os
import re
import sys
from collections import deque

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments_and_strings(text):
    """Source without comments (line, doc and block) and string/char literals,
    so a `crate::x` in a doc link or a message is not an import."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not re.match(r"[A-Za-z0-9_]", text[i - 1])):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'":
            # a char literal ('a', '\n', '\u{..}') or a lifetime ('a)
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                i += len(m.group(0))
                out.append("' '")
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(text, start):
    """The first path segment of each item in the brace group opening at
    text[start] == '{' (`{a, b::C, d::{e, f}}` -> a, b, d)."""
    heads, depth, i, item_start = [], 0, start, start + 1
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if (c == "," and depth == 1) or depth == 0:
            m = re.match(r"\s*(" + IDENT + ")", text[item_start:i])
            if m:
                heads.append(m.group(1))
            item_start = i + 1
            if depth == 0:
                break
        i += 1
    return heads


def module_files(root):
    """{module: [files]} for the top-level modules declared under root."""
    mods = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
            mods.setdefault(name[:-3], []).append(path)
        elif os.path.isdir(path):
            for dirpath, _, files in os.walk(path):
                mods.setdefault(name, []).extend(
                    os.path.join(dirpath, f) for f in sorted(files) if f.endswith(".rs"))
    return mods


def root_reexports(root, mods):
    """{Name: module} for `pub use module::Name;` / `pub use module::{A, B};` in lib.rs."""
    lib = os.path.join(root, "lib.rs")
    found = {}
    if not os.path.exists(lib):
        return found
    text = strip_comments_and_strings(open(lib, encoding="utf-8").read())
    for m in re.finditer(r"pub\s+use\s+(?:crate::)?(" + IDENT + r")::(\{[^}]*\}|" + IDENT + ")", text):
        module, names = m.group(1), m.group(2)
        if module not in mods:
            continue
        for name in re.findall(r"(" + IDENT + r")(?:\s+as\s+(" + IDENT + "))?", names.strip("{}")):
            found[name[1] or name[0]] = module
    return found


def graph(root):
    mods = module_files(root)
    reexports = root_reexports(root, mods)
    edges = {m: {} for m in mods}  # module -> {imported module: first file:line}
    for mod, files in mods.items():
        for path in files:
            text = strip_comments_and_strings(open(path, encoding="utf-8").read())
            for m in re.finditer(r"(?<![\w$])crate\s*::\s*(\{|" + IDENT + ")", text):
                heads = group_heads(text, m.start(1)) if m.group(1) == "{" else [m.group(1)]
                line = text.count("\n", 0, m.start()) + 1
                for head in heads:
                    target = head if head in mods else reexports.get(head)
                    if target and target != mod:
                        edges[mod].setdefault(target, f"{os.path.relpath(path)}:{line}")
    return mods, reexports, edges


def strongly_connected(edges):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
            out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def shortest_cycle(edges, comp, start):
    """A shortest path start -> ... -> start inside comp (breadth first)."""
    inside = set(comp)
    prev, queue = {}, deque([start])
    seen = {start}
    while queue:
        v = queue.popleft()
        for w in sorted(edges[v]):
            if w not in inside:
                continue
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [start] + list(reversed(path[:-1])) + [start]
            if w not in seen:
                seen.add(w)
                prev[w] = v
                queue.append(w)
    return None


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(here, "..", "core", "src")
    show_graph = "--graph" in argv
    if "--root" in argv:
        root = argv[argv.index("--root") + 1]
    root = os.path.normpath(root)
    os.chdir(os.path.join(root, "..", ".."))
    root = os.path.relpath(root)
    mods, reexports, edges = graph(root)

    if show_graph:
        for mod in sorted(edges):
            print(f"{mod}: {' '.join(sorted(edges[mod])) or '-'}")
        print()
    if reexports:
        notes = []
        for name, mod in sorted(reexports.items()):
            deps = sorted(edges[mod])
            notes.append(f"crate::{name} = {mod}" + (f" (imports {', '.join(deps)})" if deps else " (leaf)"))
        print("root re-exports: " + "; ".join(notes))

    cycles = [c for c in strongly_connected(edges) if len(c) > 1]
    if not cycles:
        print(f"module-cycles: no cycle among {len(mods)} modules of {root}")
        return 0
    print(f"module-cycles: {len(cycles)} group(s) of modules that import each other in {root}:")
    for comp in sorted(cycles, key=lambda c: (-len(c), c)):
        print(f"\n  {len(comp)} modules: {', '.join(comp)}")
        # one shortest cycle through each member, without repeating a cycle
        shown = set()
        for start in comp:
            cyc = shortest_cycle(edges, comp, start)
            if not cyc:
                continue
            body = cyc[:-1]
            k = body.index(min(body))
            key = tuple(body[k:] + body[:k])
            if key in shown:
                continue
            shown.add(key)
            steps = [f"{a} -> {b} ({edges[a][b]})" for a, b in zip(key, key[1:] + key[:1])]
            print("    cycle: " + " -> ".join(key + (key[0],)))
            for s in steps:
                print("      " + s)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
