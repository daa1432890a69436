#!/usr/bin/env python3
"""The `use crate::` graph of src/: which box (top-level module) imports which, its circles, and
the largest files. Test modules (`#[cfg(test)] mod …`, and all after them) are left out: they may reach anywhere.

Usage: scripts/imports.py [--files] [--edges]
  --edges  every box-to-box import, with the files and names that make it
  --files  the file-level circles too (strongly connected sets of two or more files)
"""
import re
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_path(f):
    rel = f.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return []
    return parts


def strip(text):
    """The code without comments, string and char literals, and test modules."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if j < 0 else j + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^'\\])'", text[i:]):
            i += re.match(r"'(\\.[^']*|[^'\\])'", text[i:]).end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    code = "".join(out)
    return re.sub(r"#\[cfg\(test\)\]\s*mod \w+\s*\{.*", "", code, flags=re.S)


def targets(text, here):
    """Module paths (lists of idents) named by `crate::…`, `super::…` and `self::…`."""
    found = []

    def expand(prefix, body):
        depth, item, items = 0, "", []
        for ch in body:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(item)
                item = ""
            else:
                item += ch
        items.append(item)
        for it in items:
            it = it.strip()
            if not it:
                continue
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)(?:::\{(.*)\})?$", it, re.S)
            if not m:
                continue
            path = prefix + m.group(1).split("::")
            if m.group(2) is not None:
                expand(path, m.group(2))
            else:
                found.append(path)

    for m in re.finditer(r"\b(crate|super|self)((?:::super)*)::", text):
        if m.group(1) == "crate":
            base = []
        else:
            ups = (1 if m.group(1) == "super" else 0) + m.group(2).count("super")
            base = here[: len(here) - ups] if ups <= len(here) else []
        rest = text[m.end():]
        if rest.startswith("{"):
            depth, end = 0, 0
            for i, ch in enumerate(rest):
                depth += ch == "{"
                depth -= ch == "}"
                if depth == 0:
                    end = i
                    break
            expand(base, rest[1:end])
        else:
            m2 = re.match(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*", rest)
            if m2:
                found.append(base + m2.group(0).split("::"))
    return found


def resolve(path, modules):
    """The longest prefix of `path` that is a module file."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return None


def sccs(nodes, edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    files = sorted(SRC.rglob("*.rs"))
    modules = {tuple(module_path(f)): f for f in files if module_path(f)}
    file_edges = defaultdict(set)
    box_edges = defaultdict(lambda: defaultdict(set))
    for f in files:
        here = module_path(f)
        text = strip(f.read_text())
        for path in targets(text, here):
            target = resolve(path, modules)
            if target is None or list(target) == here:
                continue
            file_edges[tuple(here)].add(target)
            a, b = (here[0] if here else "main"), target[0]
            if a != b:
                box_edges[a][b].add(f"{f.relative_to(SRC)}: {'::'.join(path)}")
    boxes = sorted({m[0] for m in modules} | {"main"})
    circles = sccs(boxes, {a: set(bs) for a, bs in box_edges.items()})
    print(f"boxes: {len(boxes)}; box-to-box arrows: {sum(len(b) for b in box_edges.values())}")
    print(f"circles between boxes: {len(circles)}")
    for c in circles:
        print("  " + " <-> ".join(sorted(c)))
        for a in sorted(c):
            for b in sorted(box_edges[a]):
                if b in c:
                    for why in sorted(box_edges[a][b]):
                        print(f"    {a} -> {b}  ({why})")
    file_circles = sccs(sorted(modules), {k: v for k, v in file_edges.items()})
    print(f"circles between files: {len(file_circles)} "
          f"({sum(len(c) for c in file_circles)} files)")
    if "--files" in sys.argv:
        for c in file_circles:
            print("  " + ", ".join(sorted("::".join(m) for m in c)))
    if "--edges" in sys.argv:
        for a in sorted(box_edges):
            for b in sorted(box_edges[a]):
                print(f"{a} -> {b}: {len(box_edges[a][b])}")
                for why in sorted(box_edges[a][b]):
                    print(f"    {why}")
    sizes = sorted(((len(f.read_text().splitlines()), f.relative_to(SRC)) for f in files),
                   reverse=True)
    print("largest files: " + ", ".join(f"{p} {n}" for n, p in sizes[:8]))


if __name__ == "__main__":
    main()
