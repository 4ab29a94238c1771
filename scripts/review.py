"""`make review BASE=main`: review/report.md comparing the workspace with BASE, ready for a pull request.

Only the tasks whose results changed: per task its headline metrics at BASE and in the workspace with a
paired-bootstrap verdict on the primary metric (src/e2e/reports/review.py), its params that changed, and at most
six key plots; then under Details every metric that changed and the task's other plots as linked PNGs.
BASE's results are read from git or the DVC cache (or its remote). The plots are `dvc plots diff`'s
Vega-Lite specs (base and workspace overlaid) rendered to PNG offline by vl-convert, which embeds its own
JavaScript engine: no browser, no network.

    python scripts/review.py main               # -> review/report.md, review/plots/*.png (and *.vl.json)
    python scripts/review.py HEAD~1 --out /tmp/r
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from e2e.config import load_params
from e2e.errors import E2EError
from e2e.reports.review import changed, paired, read_results, revision_reader
from e2e.reports.review_report import TaskSection, compose, params_by_task, split_plots
from e2e.tasks import TASKS

VEGA_LITE = "5.21"  # the v5 line that DVC's templates are written for


def dvc(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        sys.exit(f"error: dvc {' '.join(args)} failed: {last}")
    return proc.stdout


def slug(plot_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", str(Path(plot_id.removeprefix("metrics/")).with_suffix(""))).strip("_")


def render(plot_id: str, items: list[dict], out: Path) -> list[tuple[str, str]]:
    """(title, path relative to out) of the plot's PNGs: a Vega-Lite spec rendered (its spec beside it, whose
    data says which revisions it holds), or the image each revision logged."""
    import vl_convert

    made = []
    for item in items:
        if item["type"] == "image":  # `dvc plots diff -o` copied it to out/.dvc_plots as <rev>_<id>
            path = out / "plots" / Path(item["url"]).name
            shutil.copy(item["url"], path)
            made.append((f"{plot_id} ({', '.join(item['revisions'])})", path.relative_to(out).as_posix()))
            continue
        spec = item["content"]
        path = out / "plots" / f"{slug(plot_id)}.png"
        path.write_bytes(vl_convert.vegalite_to_png(spec, vl_version=VEGA_LITE, scale=1.5, allowed_base_urls=[]))
        path.with_suffix(".vl.json").write_text(json.dumps(spec), encoding="utf-8")
        title = spec.get("title", {}).get("text") if isinstance(spec.get("title"), dict) else spec.get("title")
        made.append((title or plot_id, path.relative_to(out).as_posix()))
    return made


def review(base: str, out: Path) -> str:
    diff = params_by_task(json.loads(dvc("params", "diff", base, "--json") or "{}"))  # also checks that base exists
    n_boot = load_params().evaluate.bootstrap
    read_base, read_head = revision_reader(base), revision_reader(None)
    sections, unchanged, absent, shared = [], [], [], dict(diff.get(None, {}))
    for task in TASKS.values():
        old, new = read_results(task, read_base), read_results(task, read_head)
        if changed(old, new):
            sections.append(
                TaskSection(task, old, new, paired(task, old, new, n_boot=n_boot), params=diff.get(task.name, {}))
            )
            continue
        (unchanged if new.exists else absent).append(task.name)
        shared.update(diff.get(task.name, {}))  # shown once with the shared ones: results that did not follow
    if sections:
        sections = with_plots(base, sections, out)
    return compose(base, sections, unchanged=unchanged, absent=absent, shared_params=shared, n_boot=n_boot)


def with_plots(base: str, sections: list[TaskSection], out: Path) -> list[TaskSection]:
    try:
        import vl_convert  # noqa: F401
    except ImportError:
        sys.exit("error: vl-convert-python is missing; run `make install` or pip install 'e2e[test]'")
    shutil.rmtree(out / "plots", ignore_errors=True)
    (out / "plots").mkdir(parents=True)
    # -o: image plots get copied there rather than into ./dvc_plots
    found = json.loads(dvc("plots", "diff", base, "--json", "-o", str(out / ".dvc_plots")))["data"]
    done = []
    for section in sections:
        key, other = split_plots(section.task, list(found))
        done.append(
            dataclasses.replace(
                section,
                key_plots=[p for i in key for p in render(i, found[i], out)],
                other_plots=[p for i in other for p in render(i, found[i], out)],
            )
        )
    shutil.rmtree(out / ".dvc_plots", ignore_errors=True)
    return done


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", help="git revision to compare with, e.g. main")
    p.add_argument("--out", type=Path, default=Path("review"))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        text = review(args.base, args.out)
    except E2EError as exc:
        sys.exit(f"error: {exc}")
    tmp = args.out / "report.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out / "report.md")
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
