"""Stage `evaluate`: predictions of the best model on val and test, metrics and plots derived from them.

Everything downstream reads `predictions.parquet`, so no plot needs the model again.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from . import metrics
from .atomic import atomic_path
from .config import Params, Paths
from .data import Converted, make_batches
from .engine import predict, select_device
from .modelio import load_checkpoint
from .split import load_split
from .tasks import Task, get_task


def predictions(model, data: Converted, split: dict, params: Params, device) -> pd.DataFrame:
    frames = []
    for part in ("val", "test"):
        idx = split[part]
        batches = make_batches(data, idx, params.evaluate.batch_size, device, False, 0, params.runtime)
        raw, truth = predict(model, batches, device, params.runtime.amp)
        import torch

        est = model.decode(torch.from_numpy(raw).to(device)).cpu().numpy()
        cols = {"split": part, "row": idx, "truth": truth, "prediction": est}
        cols.update({k: v[idx] for k, v in data.observers.items()})
        cols.update({f"truth_{k}": v[idx] for k, v in data.truth.items()})
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def classification_metrics(df: pd.DataFrame) -> dict:
    y, s = df["truth"].to_numpy(), df["prediction"].to_numpy()
    out = {name: fn(y, s) for name, fn in metrics.CLASSIFICATION.items()}
    for eff in (0.5, 0.8):
        out[f"rejection_at_{int(eff * 100)}"] = metrics.background_rejection(y, s, eff)
    if "truth_oracle" in df:
        out["oracle_auc"] = metrics.roc_auc(y, df["truth_oracle"].to_numpy())
        out["gap_to_oracle"] = out["oracle_auc"] - out["roc_auc"]
    return out


def regression_metrics(df: pd.DataFrame, train_mean: float) -> dict:
    t, p = df["truth"].to_numpy(), df["prediction"].to_numpy()
    out = {name: fn(t, p) for name, fn in metrics.REGRESSION.items()}
    out["mae_of_training_mean"] = metrics.mae(t, np.full_like(t, train_mean))
    out["mae_ratio_to_mean"] = out["mae"] / out["mae_of_training_mean"]
    return out


def log_classification_plots(live, test: pd.DataFrame) -> None:
    # float64: DVCLive cannot serialise the float32 thresholds sklearn returns for float32 scores
    y, s = test["truth"].to_numpy().astype(int), test["prediction"].to_numpy().astype(np.float64)
    live.log_sklearn_plot("roc", y, s, name="roc.json")
    live.log_sklearn_plot("precision_recall", y, s, name="precision_recall.json")
    live.log_sklearn_plot("calibration", y, s, name="calibration.json")
    edges = np.linspace(0, 1, 41)
    hist = [{"score": float(c), **{f"class_{k}": float(np.histogram(s[y == k], edges, density=True)[0][i])
                                   for k in (0, 1)}} for i, c in enumerate((edges[:-1] + edges[1:]) / 2)]
    live.log_plot("score_distribution", hist, x="score", y=["class_0", "class_1"], template="linear",
                  title="score per class (density)")


def log_regression_plots(live, test: pd.DataFrame) -> None:
    pts = test[["truth", "prediction"]].rename(columns={"truth": "true_mass", "prediction": "predicted_mass"})
    live.log_plot("pred_vs_true", pts.to_dict("records"), x="true_mass", y="predicted_mass", template="scatter",
                  title="predicted vs true")
    r = (test["prediction"] - test["truth"]).to_numpy()
    counts, edges = np.histogram(r, bins=40)
    rows = [{"residual": float((a + b) / 2), "count": int(c)} for a, b, c in zip(edges[:-1], edges[1:], counts)]
    live.log_plot("residuals", rows, x="residual", y="count", template="linear",
                  title="prediction - true")


def summarise(task: Task, df: pd.DataFrame, train_mean: float) -> dict:
    out = {}
    for part, frame in df.groupby("split"):
        values = classification_metrics(frame) if task.is_classification else regression_metrics(frame, train_mean)
        # JSON has no Infinity (a rejection with no background passing): DVC shows None as "-"
        out[part] = {k: (float(v) if np.isfinite(v) else None) for k, v in values.items()}
    return out


def main(params: Params, task_name: str, paths: Paths) -> None:
    from .train import open_live

    task = get_task(task_name)
    device = select_device(params.runtime.device)
    model, ckpt = load_checkpoint(paths.models(task_name) / "model.pt", device)
    data, split = Converted(paths.converted(task.dataset)), load_split(paths.splits(task_name))
    df = predictions(model, data, split, params, device)
    train_mean = float(data.target[split["train"]].mean())
    results = summarise(task, df, train_mean)
    with atomic_path(paths.eval_metrics(task_name), is_dir=True) as tmp:
        df.to_parquet(tmp / "predictions.parquet", index=False)
        with open_live(tmp) as live:
            live.summary.update(results)
            live.summary["best_epoch"] = int(ckpt["epoch"]) + 1
            test = df[df["split"] == "test"]
            (log_classification_plots if task.is_classification else log_regression_plots)(live, test)
    print(json.dumps({task_name: results["test"]}, indent=2))
