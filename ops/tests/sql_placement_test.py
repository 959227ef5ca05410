#!/usr/bin/env python3
"""SQL lives with its store: no SQL text in Sources/ outside the store modules.

TallyStore owns every query of Tally's tables, behind named functions; PostgresClient speaks
the protocol (its BEGIN, COMMIT and SAVEPOINT). Every other target calls their functions.
This scans the string literals of every other target's Swift sources (single-line and
multi-line, raw, with their interpolations scanned as code; comments left out) for SQL
statements, written as Tally writes SQL (keywords in upper case, possibly across lines), and
fails naming each file and line.

A line that only shows SQL to a person (an operator's next step) says so with a trailing
`// shown, not run` comment, and is skipped.

TallyBench is the one exception: like the tests, it fabricates fixtures (thousands of
tenants, pre-filled periods) straight into the tables, which no production code may do.

Run by `./ops/local.sh check` and `./ops/local.sh test`; takes well under a second.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STORES = {"TallyStore", "PostgresClient"}
EXEMPT = {"TallyBench": "benchmark fixtures, written like the tests' own"}

SQL = re.compile(
    r"\b(SELECT\s+\S|INSERT\s+INTO|UPDATE\s+\w+\s+(AS\s+\w+\s+)?SET|DELETE\s+FROM|COPY\s+\w+|"
    r"CREATE\s+(TEMP\s+|UNIQUE\s+|UNLOGGED\s+)?(TABLE|INDEX|VIEW)|ALTER\s+(TABLE|ROLE)|DROP\s+(TABLE|INDEX)|TRUNCATE\s+\w|"
    r"LOCK\s+TABLE|SAVEPOINT\s+\w|SET\s+LOCAL|RESET\s+\w+|LISTEN\s+\w|NOTIFY\s+\w|pg_advisory\w*|pg_notify|ON\s+CONFLICT|RETURNING\s+\w)"
)


def string_literals(text):
    """Yields (offset, content) for every piece of every string literal in `text` (Swift),
    comments skipped; a literal's interpolations are scanned as code (their own string
    literals are yielded too) and split it into pieces."""
    pieces = []
    n = len(text)

    def code(i, in_interpolation):
        depth = 0
        while i < n:
            c = text[i]
            if text.startswith("//", i):
                while i < n and text[i] != "\n":
                    i += 1
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                i = n if end < 0 else end + 2
            elif c == "#" or c == '"':
                j = i
                while j < n and text[j] == "#":
                    j += 1
                if j < n and text[j] == '"':
                    i = literal(i, j - i)
                else:
                    i = max(j, i + 1)
            elif in_interpolation and c == "(":
                depth += 1
                i += 1
            elif in_interpolation and c == ")":
                if depth == 0:
                    return i + 1
                depth -= 1
                i += 1
            else:
                i += 1
        return i

    def literal(i, hashes):
        j = i + hashes
        multi = text.startswith('"""', j)
        closer = ('"""' if multi else '"') + "#" * hashes
        escape = "\\" + "#" * hashes
        j += 3 if multi else 1
        start = j
        while j < n:
            if text.startswith(closer, j):
                pieces.append((start, text[start:j]))
                return j + len(closer)
            if text.startswith(escape, j):
                after = j + len(escape)
                if after < n and text[after] == "(":
                    pieces.append((start, text[start:j]))
                    j = code(after + 1, True)
                    start = j
                else:
                    j = after + 1  # the escaped character, whatever it is
                continue
            if not multi and text[j] == "\n":
                break  # an unterminated single-line literal: stop at the line's end
            j += 1
        pieces.append((start, text[start:j]))
        return j

    code(0, False)
    return pieces


def main():
    problems = []
    sources = os.path.join(ROOT, "Sources")
    for target in sorted(os.listdir(sources)):
        if target in STORES or target in EXEMPT:
            continue
        for directory, _, files in os.walk(os.path.join(sources, target)):
            for file in sorted(files):
                if not file.endswith(".swift"):
                    continue
                path = os.path.join(directory, file)
                text = open(path, encoding="utf-8").read()
                lines = text.split("\n")
                for offset, content in string_literals(text):
                    for match in SQL.finditer(content):
                        number = text.count("\n", 0, offset + match.start()) + 1
                        if lines[number - 1].rstrip().endswith("// shown, not run"):
                            continue
                        keyword = " ".join(match.group(0).split())
                        problems.append(f"{os.path.relpath(path, ROOT)}:{number}: SQL ({keyword}) outside the store modules")
    if problems:
        print(f"SQL placement test: FAILED, {len(problems)} lines of SQL outside {', '.join(sorted(STORES))}; "
              "move each query into a store type of TallyStore, behind a named function:", file=sys.stderr)
        for problem in problems:
            print(" - " + problem, file=sys.stderr)
        return 1
    print(f"SQL placement test: no SQL in Sources/ outside {', '.join(sorted(STORES))} "
          f"(exempt: {', '.join(f'{k}, {v}' for k, v in EXEMPT.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
