#!/usr/bin/env python3
"""Per-section statistics of rlhf.h: lines of code, comment lines, blank lines.

A section starts at a line "// >>name". A comment line is a line whose first
non-blank characters are "//", or a line inside a /* ... */ block; a line of
code that ends in a "//" comment counts as code and as a comment. Density is
comment lines per line of code. Lines wider than 120 columns are counted too.

    python3 tools/code_stats.py rlhf.h
"""
import re, sys

def stats(path):
    sections, name = {}, "(preamble)"
    order = [name]
    in_block = False
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        m = re.match(r"// >>(\w+)", line)
        if m:
            name = m.group(1)
            if name not in sections:
                order.append(name)
        s = sections.setdefault(name, dict(code=0, comment=0, blank=0, wide=0, lines=0))
        s["lines"] += 1
        if len(line) > 120:
            s["wide"] += 1
        t = line.strip()
        if in_block:
            s["comment"] += 1
            if "*/" in t:
                in_block = False
            continue
        if not t:
            s["blank"] += 1
        elif t.startswith("//"):
            s["comment"] += 1
        elif t.startswith("/*"):
            s["comment"] += 1
            in_block = "*/" not in t
        else:
            s["code"] += 1
            if re.search(r'//(?![^"]*"\s*[,)])', t) or "/*" in t:
                s["comment"] += 1
    return order, sections

def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "rlhf.h"
    order, sections = stats(path)
    print(f"{'section':<12}{'lines':>7}{'code':>7}{'comment':>9}{'blank':>7}{'comment/code':>14}{'blank %':>9}{'>120 col':>10}")
    tot = dict(code=0, comment=0, blank=0, wide=0, lines=0)
    for n in order:
        s = sections.get(n)
        if not s:
            continue
        for k in tot:
            tot[k] += s[k]
        print(f"{n:<12}{s['lines']:>7}{s['code']:>7}{s['comment']:>9}{s['blank']:>7}"
              f"{s['comment'] / max(s['code'], 1):>14.2f}{100.0 * s['blank'] / s['lines']:>8.1f}%{s['wide']:>10}")
    s = tot
    print(f"{'total':<12}{s['lines']:>7}{s['code']:>7}{s['comment']:>9}{s['blank']:>7}"
          f"{s['comment'] / max(s['code'], 1):>14.2f}{100.0 * s['blank'] / s['lines']:>8.1f}%{s['wide']:>10}")

if __name__ == "__main__":
    main()
