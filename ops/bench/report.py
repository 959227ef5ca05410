#!/usr/bin/env python3
"""Saves one `./ops/local.sh bench` run's figures as JSON and draws them as an SVG chart.

    report.py .local/bench/bench-20261201T120000Z.log   → bench-….json and bench-….svg beside it

The figures are the `bench-json:` lines the benchmarks print beside their sentences
(tally-bench's BenchSupport.record, ops/bench/ingest.lua): phase, figure, value, unit, and
where there is one, the raw limit measured in the same run and the target. In the chart each
figure with a raw limit is a bar in percent of that limit (the limit is the full width); a
figure without one is drawn as a bar of its own length, labelled with its value and target.
"""
import datetime as dt
import html
import json
import os
import re
import sys


def figures_of(log_path):
    figures = []
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for line in log:
            if line.startswith("bench-json: "):
                try:
                    figures.append(json.loads(line[len("bench-json: "):]))
                except json.JSONDecodeError as error:
                    print(f"report: skipped a malformed line ({error}): {line.strip()[:120]}", file=sys.stderr)
    return figures


def number(value):
    if value >= 10_000:
        return f"{value / 1000:,.1f}k"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


LOWER_IS_BETTER = {"ms", "µs", "s", "MiB"}


def lower_is_better(figure):
    return figure["unit"].split(" ")[0] in LOWER_IS_BETTER


def target_bound(figure):
    """A target of the form '≤ 20 µs' or '≥ 50k/s' as (kind, number); None otherwise."""
    match = re.match(r"^\s*([≤≥])\s*([0-9][0-9,.]*)\s*(k?)", figure.get("target", ""))
    if not match or "%" in figure.get("target", "").split(",")[0]:
        return None
    value = float(match.group(2).replace(",", "")) * (1000 if match.group(3) else 1)
    return match.group(1), value


def share_of_raw(figure):
    """How close the figure comes to the raw limit (1.0 = as good as raw)."""
    if lower_is_better(figure):
        return figure["raw"] / figure["value"] if figure["value"] else 0
    return figure["value"] / figure["raw"] if figure["raw"] else 0


def label(figure):
    text = f"{number(figure['value'])} {figure['unit']}"
    if "raw" in figure:
        text += f" vs {figure.get('raw_label', 'raw')} {number(figure['raw'])} = {100 * share_of_raw(figure):.0f} % of raw"
        if lower_is_better(figure):
            text += " (raw time ÷ this time)"
    if "target" in figure:
        text += f" (target {figure['target']})"
    return text


def svg(figures, title):
    width, left, bar, row = 1100, 430, 560, 34
    height = 70 + row * len(figures) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'font-family="DejaVu Sans, sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
             f'<text x="16" y="28" font-size="16" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="16" y="48" fill="#555">Grey track: the raw limit measured in the same run (100 %), or else the target '
             f'(green: met). Blue: to its own scale.</text>']
    by_unit = {}
    for figure in figures:
        by_unit[figure["unit"]] = max(by_unit.get(figure["unit"], 0), figure["value"])
    for index, figure in enumerate(figures):
        y = 70 + index * row
        parts.append(f'<text x="16" y="{y + 15}">{html.escape(figure["phase"] + ": " + figure["figure"])[:70]}</text>')
        bound = target_bound(figure)
        if "raw" in figure and figure["raw"]:
            share = share_of_raw(figure)
            color = "#2e7d32" if share >= 0.75 else "#f9a825" if share >= 0.5 else "#c62828"
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{bar}" height="16" fill="#e3e3e3"/>')
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{bar * min(share, 1.0):.1f}" height="16" fill="{color}"/>')
        elif bound:
            kind, limit = bound
            met = figure["value"] <= limit if kind == "≤" else figure["value"] >= limit
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{bar}" height="16" fill="#e3e3e3"/>')
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{bar * min(figure["value"] / limit, 1.0):.1f}" height="16" '
                         f'fill="{"#2e7d32" if met else "#c62828"}"/>')
        else:
            scale = by_unit.get(figure["unit"]) or 1
            parts.append(f'<rect x="{left}" y="{y + 3}" width="{bar * figure["value"] / scale:.1f}" height="16" fill="#1565c0"/>')
        parts.append(f'<text x="{left + 6}" y="{y + 31}" fill="#333" font-size="11">{html.escape(label(figure))}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) == 2 else 2
    log_path = sys.argv[1]
    figures = figures_of(log_path)
    stem = os.path.splitext(log_path)[0]
    if not figures:
        print(f"report: no bench-json lines in {log_path}: nothing to save", file=sys.stderr)
        return 1
    run = os.path.basename(stem)
    document = {"run": run, "saved_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "machine": {"cores": os.cpu_count()}, "figures": figures}
    with open(stem + ".json", "w") as file:
        json.dump(document, file, indent=2, ensure_ascii=False)
    with open(stem + ".svg", "w") as file:
        file.write(svg(figures, f"Tally benchmarks, {run} ({os.cpu_count()} cores shared by broker, database and Tally)"))
    print(f"report: {len(figures)} figures saved in {stem}.json and drawn in {stem}.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
