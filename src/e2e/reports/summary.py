"""`python -m e2e summary`: where the results are, and the headline test metrics of each task."""

from __future__ import annotations

import json

from e2e.config import Paths
from e2e.evaluation.metrics import HEADLINE
from e2e.tasks import TASKS


def main(paths: Paths) -> None:
    print("\nResults (test split):")
    for name in TASKS:
        path = paths.eval_metrics(name) / "metrics.json"
        if not path.is_file():
            print(f"  {name:16s} not evaluated yet ({path} missing)")
            continue
        test = json.loads(path.read_text()).get("test", {})
        shown = "  ".join(f"{k} {test[k]:.4g}" for k in HEADLINE if k in test)
        print(f"  {name:16s} {shown}")
    print("\nHeadline:    metrics/<task>/eval/headline.json            (dvc metrics show, dvc exp show, make compare)")
    print("Metrics:     metrics/<task>/{train,eval}/metrics.json       (every metric: val, test, binned, members)")
    print("Predictions: metrics/<task>/eval/predictions.parquet")
    print("Plots:       metrics/<task>/{train,eval}/plots/          (dvc plots show -> dvc_plots/index.html)")
    print("Models:      models/<task>/model.pt, model.onnx          (dvc push to share them)")
    print("Binned:      test.binned.<variable>.<bin> in metrics/<task>/eval/metrics.json (evaluate.bins)")
