#!/usr/bin/env python3
"""A flame graph in text, from `perf script` output on standard input.

    perf script -i perf.data | bench/flame.py [--min-percent 2] [--depth 14] [--folded out.txt]

Prints where the samples' innermost frames are, by owner (crate, or the kernel), then the
call tree top-down (a flame graph turned on its side): each frame with its share of all
samples, children under their caller, frames below --min-percent left out. --folded also
writes the folded stacks (`frame;frame;frame count`), which any flame-graph renderer reads.
"""

import argparse
import collections
import re
import sys

# Frames that say nothing about where time goes: the runtime's and the thread's own plumbing.
PLUMBING = re.compile(
    r"^(std::sys::|std::thread::|core::ops::function::|std::panicking::|std::panic::|"
    r"__rust_try|start_thread|clone3?|__clone|_start|main$|__libc_start)"
)


def simplify(symbol):
    """A Rust symbol without its hash, closures' numbering and generic arguments."""
    symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
    symbol = re.sub(r"\+0x[0-9a-f]+$", "", symbol)
    depth, out = 0, []
    for char in symbol:
        if char == "<":
            depth += 1
            if depth == 1:
                out.append("<…>")
        elif char == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(char)
    text = "".join(out).replace("{{closure}}", "{closure}")
    text = re.sub(r"^<…>::", "", text)
    return text or symbol


OWNERS_OF_C_SYMBOLS = [
    (re.compile(r"aws_lc|nistz256|ECDSA|^bn_|^ec_|^EVP_|^sha256_|^pkey_"), "aws-lc (ES256 signing)"),
    (re.compile(r"malloc|free|realloc|^_int_|^tcache"), "malloc"),
    (re.compile(r"^__mem|^mem(cpy|move|set|cmp)"), "libc mem*"),
]


def owner(frame, dso):
    if "kernel" in dso:
        return "kernel"
    if "::" in frame:
        head = frame.split("::", 1)[0].replace("<…>", "").strip("<> ")
        return head or "unknown"
    for pattern, name in OWNERS_OF_C_SYMBOLS:
        if pattern.search(frame):
            return name
    return dso.rsplit("/", 1)[-1] or "unknown"


def read_samples(lines):
    """Yields (stack root-first, innermost owner) per sample."""
    stack = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if stack:
                yield stack
            stack = []
            continue
        if not line.startswith(("\t", " ")):
            continue  # the sample's header: command, pid, time, event
        match = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if match:
            stack.append((simplify(match.group(1)), match.group(2)))
    if stack:
        yield stack


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--min-percent", type=float, default=2.0)
    parser.add_argument("--depth", type=int, default=14)
    parser.add_argument("--folded")
    args = parser.parse_args()

    folded = collections.Counter()
    owners = collections.Counter()
    for stack in read_samples(sys.stdin):
        leaf, leaf_dso = stack[0]
        owners[owner(leaf, leaf_dso)] += 1
        frames = [frame for frame, _ in reversed(stack) if not PLUMBING.match(frame)]
        folded[";".join(frames)] += 1
    total = sum(folded.values())
    if not total:
        sys.exit("no samples on standard input")

    print(f"{total} samples\n\ninnermost frame by owner:")
    for name, count in owners.most_common(14):
        print(f"  {100 * count / total:5.1f} %  {name}")

    tree = {}
    for stack, count in folded.items():
        node = tree
        for frame in stack.split(";")[: args.depth]:
            entry = node.setdefault(frame, [0, {}])
            entry[0] += count
            node = entry[1]

    print(f"\ncall tree, top down (frames of at least {args.min_percent} % of samples):")

    def show(node, indent):
        for frame, (count, children) in sorted(node.items(), key=lambda item: -item[1][0]):
            share = 100 * count / total
            if share < args.min_percent:
                continue
            bar = "█" * max(1, round(share / 4))
            print(f"{share:5.1f} % {'  ' * indent}{bar} {frame[:110]}")
            show(children, indent + 1)

    show(tree, 0)
    if args.folded:
        with open(args.folded, "w") as out:
            for stack, count in folded.most_common():
                out.write(f"{stack} {count}\n")


if __name__ == "__main__":
    main()
