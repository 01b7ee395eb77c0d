"""Self and inclusive instruction counts per function from a callgrind output file.

callgrind_annotate 3.19 attributes everything to `clone` for files dumped from a multi-threaded
Rust program here, so this reads the format directly: cost lines belong to the current `fn=`
(self cost), except the line right after a `calls=` line, which is the callee's inclusive cost
and is added to the caller's inclusive cost only.
"""

import re
import sys
from collections import defaultdict

NAMED = re.compile(r"^(c?(?:ob|fl|fi|fe|fn))=\((\d+)\)(?: (.*))?$")


def parse(path):
    names = {"ob": {}, "fl": {}, "fn": {}}
    self_cost = defaultdict(int)
    inclusive = defaultdict(int)
    current_fn = current_ob = None
    after_calls = False
    total = 0
    with open(path, errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n")
            match = NAMED.match(line)
            if match:
                key, ident, name = match.groups()
                table = names["fl" if key.lstrip("c") in ("fl", "fi", "fe") else key.lstrip("c")]
                if name is not None:
                    table[ident] = name
                if key == "fn":
                    current_fn = table[ident]
                elif key == "ob":
                    current_ob = table[ident]
                continue
            if line.startswith("calls="):
                after_calls = True
                continue
            if line and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                key = (current_fn, current_ob)
                if after_calls:
                    inclusive[key] += cost
                    after_calls = False
                else:
                    self_cost[key] += cost
                    inclusive[key] += cost
                    total += cost
    return self_cost, inclusive, total


def table(costs, total, limit, title):
    lines = [f"{title} (of {total:,} instructions)", ""]
    for (fn, ob), cost in sorted(costs.items(), key=lambda kv: -kv[1])[:limit]:
        short_ob = (ob or "?").rsplit("/", 1)[-1]
        lines.append(f"{cost / total * 100:6.2f}%  {cost:>14,}  {fn}  [{short_ob}]")
    return "\n".join(lines)


def main():
    path = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    self_cost, inclusive, total = parse(path)
    print(table(self_cost, total, limit, "Self cost"))
    print()
    print(table(inclusive, total, limit, "Inclusive cost"))


if __name__ == "__main__":
    main()
