"""Generate the Unicode tables rlhf.h's GPT-2 pre-tokenizer needs.

GPT-2 splits text with a regular expression that uses three character classes:
\\p{L} (letters), \\p{N} (numbers) and \\s (whitespace). The reference
implementation runs that pattern with Python's third-party `regex` module, so
the surest way to agree with it is to ask that very module, code point by code
point, which class each character is in. We then merge consecutive code points
into inclusive [lo, hi] ranges that C can binary-search.

Note: `regex` carries its own Unicode database, which may be newer than the
one in Python's `unicodedata` (e.g. regex 2022.10.31 knows Unicode 15.0 while
Python 3.11's unicodedata is 14.0). We probe a few sentinel letters to report
the version regex really uses.

Run from the repo root (needs Debian's python3-regex):
    /usr/bin/python3 tools/gen_unicode_tables.py            # print the block
    /usr/bin/python3 tools/gen_unicode_tables.py rlhf.h     # rewrite in place
In-place mode replaces everything from the BEGIN marker line to the END marker
line (inclusive) and exits with status 1 if either marker is missing.
"""
import sys
import unicodedata

import regex

BEGIN = "/* BEGIN GENERATED UNICODE TABLES"
END = "/* END GENERATED UNICODE TABLES */"


def regex_unicode_version():
    """Newest Unicode version whose sentinel letter regex classifies as \\p{L}."""
    letter = regex.compile(r"\p{L}")
    sentinels = [("13.0", 0x10FE0), ("14.0", 0x1E290), ("15.0", 0x1E030),
                 ("15.1", 0x2EBF0), ("16.0", 0x1E5D0)]  # letters new in each version
    found = "older than 13.0"
    for version, cp in sentinels:
        if letter.fullmatch(chr(cp)):
            found = version
    return found


def ranges_for(pattern):
    """Inclusive (lo, hi) ranges of every non-surrogate code point matching pattern."""
    rx = regex.compile(pattern)
    out = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue  # surrogates are not characters; UTF-8 cannot encode them
        if rx.fullmatch(chr(c)):
            if out and out[-1][1] == c - 1:
                out[-1][1] = c  # extends the previous range
            else:
                out.append([c, c])
    return out


def c_array(name, comment, ranges):
    """Format one table as a C array, as many pairs per line as fit under 120 chars."""
    lines = [f"static const uint32_t {name}[][2] = {{ /* {comment} */"]
    line = ""
    for lo, hi in ranges:
        pair = f"{{0x{lo:X}, 0x{hi:X}}},"
        if line and len(line) + 1 + len(pair) >= 120:
            lines.append(line)
            line = ""
        line = line + " " + pair if line else "    " + pair
    if line:
        lines.append(line)
    lines.append("};")
    return lines


def in_ranges(cp, ranges):
    return any(lo <= cp <= hi for lo, hi in ranges)


def generate():
    """Return (block text, dict of tables)."""
    tables = {
        "letter": ranges_for(r"\p{L}"),
        "number": ranges_for(r"\p{N}"),
        "space": ranges_for(r"\s"),
    }
    head = (f"{BEGIN}: tools/gen_unicode_tables.py, Python regex {regex.__version__}, "
            f"Unicode {regex_unicode_version()}. Do not edit. */")
    lines = [head]
    lines += c_array("rlhf__uni_letter", "\\p{L}, inclusive ranges", tables["letter"])
    lines += c_array("rlhf__uni_number", "\\p{N}", tables["number"])
    lines += c_array("rlhf__uni_space", "\\s as the regex module sees it (Unicode White_Space)",
                     tables["space"])
    lines.append(END)
    for line in lines:
        assert len(line) < 120, line
    return "\n".join(lines) + "\n", tables


def sanity_report(tables):
    """Print range counts and a few spot checks to stderr."""
    def say(msg):
        print(msg, file=sys.stderr)
    say(f"regex {regex.__version__} uses Unicode {regex_unicode_version()}; "
        f"Python's unicodedata is {unicodedata.unidata_version}")
    for k, v in tables.items():
        say(f"{k}: {len(v)} ranges, {sum(hi - lo + 1 for lo, hi in v)} code points")
    checks = [  # (description, code point, table, expected)
        ("U+0085 NEL in \\s", 0x85, "space", True),
        ("U+FEFF BOM in \\s", 0xFEFF, "space", False),
        ("U+00A0 NBSP in \\s", 0xA0, "space", True),
        ("U+2028 LINE SEP in \\s", 0x2028, "space", True),
        ("U+00E9 'e acute' in L", 0xE9, "letter", True),
        ("U+0663 Arabic-Indic 3 in N", 0x663, "number", True),
        ("U+00B2 superscript 2 in N", 0xB2, "number", True),
    ]
    for desc, cp, table, expected in checks:
        got = in_ranges(cp, tables[table])
        say(f"  {desc}: {'yes' if got else 'no'}")
        assert got == expected, desc
    underscore = [t for t in tables if in_ranges(ord("_"), tables[t])]
    say(f"  '_' in: {underscore or 'none'}")
    assert not underscore
    # Where regex's \s and str.isspace() disagree (informational).
    isspace = {c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isspace()}
    rx = {c for lo, hi in tables["space"] for c in range(lo, hi + 1)}
    say(f"  str.isspace but not regex \\s: {[hex(c) for c in sorted(isspace - rx)]}")
    say(f"  regex \\s but not str.isspace: {[hex(c) for c in sorted(rx - isspace)]}")


def main():
    block, tables = generate()
    sanity_report(tables)
    if len(sys.argv) < 2:
        sys.stdout.write(block)
        return
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    starts = [i for i, l in enumerate(lines) if l.startswith(BEGIN)]
    ends = [i for i, l in enumerate(lines) if l.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        print(f"{path}: need exactly one '{BEGIN} ...' line followed by one '{END}' line",
              file=sys.stderr)
        sys.exit(1)
    new = lines[:starts[0]] + block.rstrip("\n").split("\n") + lines[ends[0] + 1:]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(new))
    print(f"{path}: tables replaced", file=sys.stderr)


if __name__ == "__main__":
    main()
