#!/usr/bin/env python3
"""The map of Sources/ is true, checked from `swift package dump-package` and the sources:

- every target has a layer (LAYERS below), and the README's layer table lists exactly the
  targets of that layer in its row;
- no target depends on a target of a higher layer, and no executable on another executable;
- each target imports exactly what it declares: every `import` of a package target or product
  is a declared dependency, and every declared dependency is imported (a test target may also
  depend on an executable, so that it is built for the test to run).

Run by `./ops/local.sh check` and `./ops/local.sh test`; takes a second or two.
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Lower layers first. A target may depend on its own layer and those below it.
LAYERS = [
    ("C libraries from Debian, wrapped once", ["CRabbitMQ", "CLibPQ", "CCurl", "CCairo", "COpenSSL", "CMalloc"]),
    ("foundations with no I/O of their own", ["BlockingIO", "CivilTime", "Quantities", "ConnectionURLs"]),
    ("thin Swift clients, and pure rules", ["RabbitMQClient", "PostgresClient", "CurlClient", "DiskSpool", "BillingEngine", "UsageEvents"]),
    ("stores, messaging, metering, HTTP and process plumbing",
     ["TallyStore", "TallyMessaging", "TallyOutbox", "Metering", "MeteringHummingbird", "TallyHTTP", "TallyRuntime"]),
    ("domains over the stores", ["Invoicing", "Catalog", "StripeSync", "InvoicePDF", "Notifications"]),
    ("one thin executable per role, and the benchmarks", ["Producer", "Aggregator", "Invoicer", "Notifier", "BillingAPI", "TallyBench"]),
]
TEST_SUPPORT = {"TallyTestSupport"}
SYSTEM = {"Foundation", "FoundationEssentials", "Glibc", "Musl", "Darwin", "Dispatch", "Synchronization", "Testing", "XCTest", "_Concurrency"}
IMPORT = re.compile(r"^(?:@testable\s+|@preconcurrency\s+|@_exported\s+)*import\s+(?:(?:struct|class|enum|protocol|func|typealias|var)\s+)?(\w+)")


def main():
    dump = json.loads(subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    problems = []
    layer_of = {name: index for index, (_, names) in enumerate(LAYERS) for name in names}
    targets = {target["name"]: target for target in dump["targets"]}
    products = set()
    for target in dump["targets"]:
        for dependency in target["dependencies"]:
            if "product" in dependency:
                products.add(dependency["product"][0])

    for name, target in targets.items():
        if target["type"] != "test" and name not in TEST_SUPPORT and name not in layer_of:
            problems.append(f"{name} has no layer: add it to LAYERS in ops/tests/layering_test.py and to the README's table")
    for name in layer_of:
        if name not in targets:
            problems.append(f"LAYERS names {name}, which Package.swift does not have")

    for name, target in targets.items():
        declared = set()
        for dependency in target["dependencies"]:
            for kind in ("byName", "target", "product"):
                if kind in dependency:
                    declared.add(dependency[kind][0])
        is_test = target["type"] == "test" or name in TEST_SUPPORT
        for dependency in declared & set(targets):
            if not is_test and targets[dependency]["type"] == "executable":
                problems.append(f"{name} depends on the executable {dependency}: share code through a library target instead")
            elif not is_test and dependency in layer_of and layer_of[dependency] > layer_of.get(name, 99):
                problems.append(f"{name} ({LAYERS[layer_of[name]][0]}) depends on {dependency}, of a higher layer ({LAYERS[layer_of[dependency]][0]})")
        if target["type"] == "system":
            continue
        path = os.path.join(ROOT, target.get("path") or (("Tests/" if target["type"] == "test" else "Sources/") + name))
        imported = set()
        for directory, _, files in os.walk(path):
            for file in files:
                if not file.endswith(".swift"):
                    continue
                for line in open(os.path.join(directory, file), encoding="utf-8"):
                    stripped = line.strip()
                    if not stripped or stripped.startswith(("//", "#if", "#else", "#endif", "/*", "*")):
                        continue
                    match = IMPORT.match(stripped)
                    if not match:
                        break  # imports come first; later text (strings, code) is not an import
                    imported.add(match.group(1))
        known = set(targets) | products
        for module in sorted(imported - SYSTEM):
            if module not in known:
                problems.append(f"{name} imports {module}, which is neither a target nor a declared product of this package")
            elif module not in declared:
                problems.append(f"{name} imports {module} without declaring it in Package.swift")
        for dependency in sorted(declared - imported):
            if is_test and dependency in targets and targets[dependency]["type"] == "executable":
                continue
            problems.append(f"{name} declares {dependency} but never imports it: drop it from Package.swift")

    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    table = {}
    for line in readme.splitlines():
        if line.startswith("| ") and "`" in line:
            cells = line.split("|")
            if len(cells) >= 3:
                table[cells[1].strip()] = re.findall(r"`([A-Za-z]+)`", cells[2])
    for title, names in LAYERS:
        row = next((listed for label, listed in table.items() if label.startswith(title)), None)
        if row is None:
            problems.append(f"the README's layer table has no row '{title}'")
        else:
            listed = [n for n in row if n in targets]
            if sorted(listed) != sorted(names):
                problems.append(f"the README's row '{title}' lists {sorted(listed)}, the layer holds {sorted(names)}")

    if problems:
        print("layering test: FAILED", file=sys.stderr)
        for problem in problems:
            print(" - " + problem, file=sys.stderr)
        return 1
    print(f"layering test: {len(layer_of)} targets in {len(LAYERS)} layers, none depending upward or on an executable; "
          f"every import declared and every declaration imported; the README's table matches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
