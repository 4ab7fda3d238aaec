#!/usr/bin/env python3
"""Every ```cpp block of README.md must be compiled: it must appear, line for line, in a samples/readme_*.cpp
that samples/CMakeLists.txt builds and runs as a test.

A block matches when its lines, each stripped of leading and trailing whitespace, appear as consecutive lines
of the file, stripped the same way (blank lines at the block's ends do not count). Exits 1 naming every block
that is not found (README line, first line of the block), or whose file CMakeLists.txt does not mention.

    check_readme_blocks.py [--readme README.md] [--samples samples/] [--self-test]

--self-test: also checks that the check fails when a block changes (one character of one line of each block in
turn, in memory), so that a check that matched anything could not pass.
"""
import argparse
import pathlib
import re
import sys

FENCE_OPEN = re.compile(r"^\s*```\s*(cpp|c\+\+)\s*$", re.IGNORECASE)
FENCE_CLOSE = re.compile(r"^\s*```\s*$")


def cpp_blocks(readme_text):
    """(line number of the opening fence, [lines]) for each ```cpp block."""
    blocks, current, start = [], None, 0
    for number, line in enumerate(readme_text.splitlines(), 1):
        if current is None:
            if FENCE_OPEN.match(line):
                current, start = [], number
        elif FENCE_CLOSE.match(line):
            blocks.append((start, current))
            current = None
        else:
            current.append(line)
    if current is not None:
        raise SystemExit(f"README: the ```cpp block opened on line {start} is never closed")
    return blocks


def stripped(lines):
    out = [line.strip() for line in lines]
    while out and not out[0]:
        out.pop(0)
    while out and not out[-1]:
        out.pop()
    return out


def find(block, sources):
    """(path, line) of the first source holding the block's lines consecutively, or None."""
    want = stripped(block)
    if not want:
        return None
    for path, lines in sources.items():
        have = [line.strip() for line in lines]
        for i in range(len(have) - len(want) + 1):
            if have[i:i + len(want)] == want:
                return path, i + 1
    return None


def check(readme_name, readme_text, sources, cmake_text, quiet=False):
    """The problems, as sentences (empty: every block is compiled)."""
    problems = []
    for index, (line, block) in enumerate(cpp_blocks(readme_text), 1):
        first = next((l.strip() for l in block if l.strip()), "")
        name = f"{readme_name}:{line}: C++ block {index} (`{first}`)"
        found = find(block, sources)
        if found is None:
            problems.append(f"{name} is not found line for line in any samples/readme_*.cpp")
        elif found[0].name not in cmake_text:
            problems.append(f"{name} is in {found[0].name}, which samples/CMakeLists.txt does not build")
        elif not quiet:
            print(f"{name}: {found[0].name}:{found[1]}")
    return problems


def main():
    here = pathlib.Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=pathlib.Path, default=here.parent / "README.md")
    parser.add_argument("--samples", type=pathlib.Path, default=here)
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()

    readme_text = args.readme.read_text(encoding="utf-8")
    sources = {p: p.read_text(encoding="utf-8").splitlines() for p in sorted(args.samples.glob("readme_*.cpp"))}
    cmake_text = (args.samples / "CMakeLists.txt").read_text(encoding="utf-8")

    problems = check(args.readme.name, readme_text, sources, cmake_text, quiet=args.self_test)
    if args.self_test and not problems:
        # Change one character in the middle line of each block in turn: the check must name that block.
        readme_lines = readme_text.splitlines()
        blocks = cpp_blocks(readme_text)
        for index, (line, block) in enumerate(blocks, 1):
            middle = [i for i, l in enumerate(block) if l.strip()][len([l for l in block if l.strip()]) // 2]
            changed = list(readme_lines)
            target = line + middle  # 0-based index of that block line in the README
            changed[target] = changed[target].rstrip() + " /* changed */"
            found = check(args.readme.name, "\n".join(changed) + "\n", sources, cmake_text, quiet=True)
            if len(found) != 1 or f"C++ block {index} " not in found[0]:
                problems.append(f"self-test: changing line {target + 1} (block {index}) gave {found or 'no problem'}")
        print(f"self-test: each of the {len(blocks)} blocks, changed, is reported")
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"{args.readme.name}: every C++ block is compiled by a samples/readme_*.cpp")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
