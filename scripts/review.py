"""`make review BASE=main`: review/report.md comparing the workspace with BASE, ready for a pull request.

Holds `dvc metrics diff --md`, `dvc params diff --md` and the key plots of `dvc plots diff` (base
and workspace overlaid, the same Vega-Lite specs the browser page shows) rendered to PNG offline
by vl-convert, which embeds its own JavaScript engine: no browser, no network.

    python scripts/review.py main               # -> review/report.md, review/plots/*.png (and *.vl.json)
    python scripts/review.py HEAD~1 --out /tmp/r
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

# the plots a reviewer looks at first; the full set is in `dvc plots diff` (dvc_plots/index.html)
KEY_PLOTS = (
    "train/plots/metrics/train/val/loss",  # train and validation loss, one plot
    "train/plots/metrics/val/",
    "eval/plots/custom/roc.json",
    "eval/plots/custom/rejection.json",
    "eval/plots/custom/score_distribution.json",
    "eval/plots/custom/pred_vs_true.json",
    "eval/plots/custom/resolution_vs_true_mass.json",
    "eval/plots/custom/resolution_vs_pt.json",
    "eval/plots/custom/residuals.json",
    # performance in the bins of params.yaml evaluate.bins, one plot per variable
    "eval/plots/custom/rejection_vs_",
    "eval/plots/custom/efficiency_vs_",
    "eval/plots/custom/response_vs_",
)
VEGA_LITE = "5.21"  # the v5 line that DVC's templates are written for


def dvc(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(f"error: dvc {' '.join(args)} failed: {last}")
    return proc.stdout


def slug(plot_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(Path(plot_id.removeprefix("metrics/")).with_suffix(""))).strip("_")


def is_key(plot_id: str) -> bool:
    return any(key in plot_id for key in KEY_PLOTS)


def render_plots(base: str, out: Path) -> list[tuple[str, str]]:
    """(title, relative png path) of every key plot, base and workspace on the same axes."""
    try:
        import vl_convert
    except ImportError:
        sys.exit("error: vl-convert-python is missing; run `make install` or pip install 'e2e[test]'")

    plots_dir = out / "plots"
    shutil.rmtree(plots_dir, ignore_errors=True)
    plots_dir.mkdir(parents=True)
    # -o: image plots get copied there rather than into ./dvc_plots
    found = json.loads(dvc("plots", "diff", base, "--json", "-o", str(out / ".dvc_plots")))["data"]
    shutil.rmtree(out / ".dvc_plots", ignore_errors=True)
    rendered = []
    for plot_id, items in found.items():
        for item in items:
            if item["type"] != "vega" or not is_key(plot_id):
                continue
            spec = item["content"]
            png = vl_convert.vegalite_to_png(spec, vl_version=VEGA_LITE, scale=1.5, allowed_base_urls=[])
            path = plots_dir / f"{slug(plot_id)}.png"
            path.write_bytes(png)
            # the spec beside the picture: its data says which revisions the plot holds; opens in any Vega editor
            path.with_suffix(".vl.json").write_text(json.dumps(spec), encoding="utf-8")
            title = spec.get("title", {}).get("text") if isinstance(spec.get("title"), dict) else None
            rendered.append((title or plot_id, path.relative_to(out).as_posix()))
    return rendered


def report(base: str, out: Path) -> str:
    metrics = dvc("metrics", "diff", base, "--md").strip() or "No metric changed."
    params = dvc("params", "diff", base, "--md").strip() or "No parameter changed."
    lines = [f"# Review: workspace vs `{base}`", "",
             f"## Metrics (`dvc metrics diff {base}`)", "", metrics, "",
             f"## Parameters (`dvc params diff {base}`)", "", params, "",
             f"## Key plots (`dvc plots diff {base}`; all plots: `dvc plots diff {base} --open`)", ""]
    for title, png in render_plots(base, out):
        alt = title.replace("[", "(").replace("]", ")")  # brackets would end Markdown's alt text early
        lines += [f"### {title}", "", f"![{alt}]({png})", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="git revision to compare with, e.g. main")
    p.add_argument("--out", type=Path, default=Path("review"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(args.base, args.out)
    tmp = args.out / "report.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out / "report.md")
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
