#!/usr/bin/env python3
"""Import circles between the source files of each crate.

Reads every `src/**/*.rs` of each workspace crate, resolves `crate::`,
`super::` and `self::` paths (in `use` items and inline) to the file that
defines the module, follows the root's `pub use` re-exports, and prints
each strongly connected component larger than one file. Unit-test modules
(`#[cfg(test)] mod ...`) are left out: they are not part of the graph a
reader has to hold.

    tools/import_cycles.py [--max N] [crate_dir ...]

Exits 1 if a circle has more than N files (default 4), so CI can hold the
line ARCHITECTURE.md draws.
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = ["actors", "runtime", "carrier", "workers", "loadtest", "bench"]

USE_RE = re.compile(r"\buse\s+((?:crate|super|self)::[^;]*);", re.S)
INLINE_RE = re.compile(r"\b((?:crate|super|self)(?:::\w+)+)")
TEST_MOD_RE = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")


def module_path(src: pathlib.Path, file: pathlib.Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    m = TEST_MOD_RE.search(text)
    if not m:
        return text
    # Drop the braced block that follows.
    depth, i = 0, m.end() - 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[: m.start()] + strip_tests(text[i + 1 :])
        i += 1
    return text[: m.start()]


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix: str, s: str):
        brace = s.find("{")
        if brace < 0:
            for part in split_top(s):
                out.append(prefix + part)
            return
        head, body = s[:brace], s[brace + 1 : s.rfind("}")]
        for part in split_top(body):
            walk(prefix + head, part)

    def split_top(s: str) -> list:
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        return parts

    walk("", tree)
    return [re.sub(r"\bas\s*\w+$|as\w+$", "", p) for p in out]


def resolve(path: str, here: tuple, modules: set, reexports: dict) -> tuple | None:
    parts = [p for p in path.split("::") if p]
    if not parts:
        return None
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] == "self":
        base, rest = here, parts[1:]
    else:
        base, i = here, 0
        while i < len(parts) and parts[i] == "super":
            base, i = base[:-1], i + 1
        rest = parts[i:]
    full = base + tuple(rest)
    for n in range(len(full), -1, -1):
        if full[:n] in modules:
            target = full[:n]
            if target == () and len(full) > 0 and full[0] in reexports:
                return reexports[full[0]]
            return target
    return None


def crate_graph(crate: pathlib.Path) -> dict:
    src = crate / "src"
    files = {module_path(src, f): f for f in src.rglob("*.rs") if "bin" not in f.relative_to(src).parts}
    modules = set(files)
    texts = {m: strip_comments(strip_tests(f.read_text())) for m, f in files.items()}
    # The root's `pub use a::b::Item;` re-exports: `crate::Item` means a::b.
    reexports = {}
    for stmt in re.findall(r"\bpub\s+use\s+([^;]*);", texts.get((), ""), re.S):
        for p in expand(stmt):
            item = p.split("::")[-1]
            target = resolve("crate::" + p.removeprefix("crate::"), (), modules, {})
            if target:
                reexports[item] = target
    graph = {m: set() for m in modules}
    for m, text in texts.items():
        paths = []
        for stmt in USE_RE.findall(text):
            paths += expand(stmt)
        text_wo_use = USE_RE.sub("", text)
        paths += INLINE_RE.findall(text_wo_use)
        for p in paths:
            t = resolve(p, m, modules, reexports if m != () else {})
            if t is not None and t != m and not (m[: len(t)] == t):
                graph[m].add(t)
    return graph


def sccs(graph: dict) -> list:
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max", type=int, default=4)
    ap.add_argument("crates", nargs="*", default=CRATES)
    args = ap.parse_args()
    worst = 0
    for name in args.crates:
        crate = ROOT / name
        if not (crate / "src").is_dir():
            continue
        for comp in sccs(crate_graph(crate)):
            if len(comp) > 1:
                worst = max(worst, len(comp))
                mods = sorted("::".join(c) or "(root)" for c in comp)
                print(f"{name}: {len(comp)} files: {', '.join(mods)}")
    print(f"largest import circle: {worst} files (limit {args.max})")
    return 1 if worst > args.max else 0


if __name__ == "__main__":
    sys.exit(main())
