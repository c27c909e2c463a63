#!/usr/bin/env python3
"""Source files over the line limit, outside their unit tests.

Counts each `src/**/*.rs` file's lines before its `#[cfg(test)]` module.
A file over the limit must be named (in backticks, by its path) in
ARCHITECTURE.md's "Files over 500 lines" section with the reason it is
one file; otherwise this exits 1.

    tools/file_sizes.py [--limit N]
"""

import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CRATES = ["actors", "runtime", "carrier", "workers", "loadtest", "bench"]


def code_lines(path: pathlib.Path) -> int:
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith("#[cfg(test)]"):
            return i
    return len(lines)


def explained() -> set:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    m = re.search(r"^## Files over 500 lines\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return set(re.findall(r"`([\w./-]+\.rs)`", m.group(1))) if m else set()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=500)
    args = ap.parse_args()
    ok = explained()
    bad = 0
    for crate in CRATES:
        for f in sorted((ROOT / crate / "src").rglob("*.rs")):
            n = code_lines(f)
            if n <= args.limit:
                continue
            rel = str(f.relative_to(ROOT))
            why = "explained in ARCHITECTURE.md" if rel in ok else "NOT EXPLAINED"
            bad += rel not in ok
            print(f"{n:5} {rel}: {why}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
