"""A Markdown review report and the Vega-Lite specs beside it taken apart: its sections, tables and images, and
each plot's data rows by revision (test_review, test_pr_review)."""

from __future__ import annotations

import re


def data_rows(spec) -> list[dict]:
    """Every inline data row of a Vega-Lite spec, wherever in the spec (top level, layers, ...) it sits."""
    if isinstance(spec, dict):
        values = spec.get("values")
        rows = values if isinstance(values, list) and all(isinstance(v, dict) for v in values) else []
        return rows + [r for k, v in spec.items() if k != "values" for r in data_rows(v)]
    return [r for v in spec for r in data_rows(v)] if isinstance(spec, list) else []


def rows_by_revision(spec) -> dict[str, list[dict]]:
    """The plot's data rows by revision (DVC adds `rev` to every row it overlays), without `rev`."""
    rows: dict[str, list[dict]] = {}
    for row in data_rows(spec):
        rows.setdefault(row.get("rev"), []).append({k: v for k, v in row.items() if k != "rev"})
    return rows


def image_links(report: str) -> list[str]:
    """The images a Markdown report shows, relative to it."""
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)


def sections(report: str) -> dict[str, str]:
    """The report's `## ` sections by heading."""
    parts = re.split(r"^## (.+)$", report, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table in text: its rows (header first, the --- row left out) as lists of cells."""
    found, rows = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows += [] if set("".join(cells)) <= set("- ") else [cells]
        elif rows:
            found.append(rows)
            rows = []
    return found
