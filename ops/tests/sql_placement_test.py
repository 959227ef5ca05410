#!/usr/bin/env python3
"""SQL lives with its store: no SQL text in Sources/ outside the store modules.

TallyStore owns every query of Tally's tables, behind named functions; PostgresClient speaks
the protocol (its BEGIN, COMMIT and SAVEPOINT). Every other target calls their functions.
This scans the string literals of every other target's Swift sources (single-line and
multi-line, comments left out) for SQL statements and fails naming each file and line.

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
    """Yields (line number, content) for each line of every string literal, comments skipped."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            i = end
        elif c == "#" or c == '"':
            hashes = 0
            j = i
            while j < n and text[j] == "#":
                hashes += 1
                j += 1
            if j >= n or text[j] != '"':
                i = j if j > i else i + 1
                continue
            multi = text.startswith('"""', j)
            opener = '"""' if multi else '"'
            closer = opener + "#" * hashes
            start = j + len(opener)
            k = start
            while True:
                end = text.find(closer, k)
                if end < 0:
                    end = n
                    break
                # A quote escaped with a backslash (and no hashes) does not close the literal.
                if hashes == 0 and end > 0 and text[end - 1] == "\\" and (end - start < 2 or text[end - 2] != "\\"):
                    k = end + 1
                    continue
                break
            body = text[start:end]
            for offset, content in enumerate(body.split("\n")):
                yield line + offset, content
            line += body.count("\n")
            i = end + len(closer)
        else:
            i += 1


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
                for number, content in string_literals(text):
                    if lines[number - 1].rstrip().endswith("// shown, not run"):
                        continue
                    match = SQL.search(content)
                    if match:
                        problems.append(f"{os.path.relpath(path, ROOT)}:{number}: SQL ({match.group(0).strip()}) outside the store modules")
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
