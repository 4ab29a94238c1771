"""Stage `evaluate`: predictions of the best model on val and test, metrics and plots derived from them.

Everything downstream reads `predictions.parquet`, so no plot needs the model again (the image
views read the converted images by the `row` column).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from e2e.config import EvaluateParams, Params, Paths
from e2e.evaluation import binned, images, metrics, plots
from e2e.evaluation.binned_plots import binned_plots
from e2e.evaluation.headline import headline
from e2e.evaluation.members import ensemble_columns
from e2e.models.wrappers import Ensemble, ModelSpec, Standardized
from e2e.runtime.batches import Converted
from e2e.runtime.device import prepare, select_device
from e2e.runtime.forward import predict
from e2e.runtime.points import batches_for
from e2e.store.atomic import atomic_path
from e2e.store.checkpoints import load_checkpoint
from e2e.store.live import open_live
from e2e.store.splits import load_split
from e2e.tasks import Task, get_task

if TYPE_CHECKING:
    from dvclive import Live


def event_columns(data: Converted, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of `rows` that come from the dataset, not the model: observers, truth_*, and the crop
    energies where a channel is named "energy" (e/gamma files have no observers to bin in)."""
    cols = {k: v[rows] for k, v in data.observers.items()}
    cols.update({f"truth_{k}": v[rows] for k, v in data.truth.items()})
    cols.update(binned.crop_energies(data.images, data.meta["channel_names"], rows))
    return cols


def member_columns(model: Standardized | Ensemble, raw: torch.Tensor) -> dict[str, np.ndarray]:
    """An ensemble's per-event spread (`uncertainty`: the std of its members' predictions) and each member's
    prediction (`prediction_member<k>`); nothing for a single model."""
    if not isinstance(model, Ensemble):
        return {}
    return ensemble_columns(model.decode_members(raw).cpu().numpy())


def predictions(
    model: Standardized | Ensemble,
    data: Converted,
    split: dict[str, np.ndarray],
    *,
    spec: ModelSpec,
    params: Params,
    device: torch.device,
) -> pd.DataFrame:
    frames = []
    for part in ("val", "test"):
        batches = batches_for(  # point batches for a point model, images otherwise
            spec,
            data,
            split[part],
            batch_size=params.evaluate.batch_size,
            device=device,
            shuffle=False,
            seed=0,
            runtime=params.runtime,
        )
        idx = batches.rows  # the order of the predictions
        raw, target = predict(model, batches, device)
        est, truth = model.decode(raw).cpu().numpy(), target.cpu().numpy()
        cols: dict[str, Any] = {"split": part, "row": idx, "truth": truth, "prediction": est}
        cols.update(member_columns(model, raw))
        cols.update(event_columns(data, idx))
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def classification_metrics(df: pd.DataFrame, n_boot: int, working_points: Sequence[float]) -> dict[str, Any]:
    y, s = df["truth"].to_numpy(np.float64), df["prediction"].to_numpy(np.float64)
    out: dict[str, Any] = {name: fn(y, s) for name, fn in metrics.CLASSIFICATION.items()}
    out["roc_auc_ci_lo"], out["roc_auc_ci_hi"] = metrics.roc_auc_interval(y, s, n_boot=n_boot)
    for eff in working_points:
        out[binned.rejection_key(eff)] = metrics.background_rejection(y, s, eff)
    if "truth_oracle" in df:
        out["oracle_auc"] = metrics.roc_auc(y, df["truth_oracle"].to_numpy(np.float64))
        out["gap_to_oracle"] = out["oracle_auc"] - out["roc_auc"]
    out["n"] = len(y)
    return out


def binned_resolution(t: np.ndarray, p: np.ndarray, by: np.ndarray, edges: np.ndarray) -> dict[str, float]:
    """{"lo-hi": resolution} with whole-unit keys, so `dvc exp show` columns line up across experiments."""
    return {f"{b['lo']:.0f}-{b['hi']:.0f}": b["value"] for b in metrics.binned(metrics.resolution, t, p, by, edges)}


def regression_metrics(
    df: pd.DataFrame, train_mean: float, edges: dict[str, np.ndarray], n_boot: int
) -> dict[str, Any]:
    t, p = df["truth"].to_numpy(np.float64), df["prediction"].to_numpy(np.float64)
    out: dict[str, Any] = {name: fn(t, p) for name, fn in metrics.REGRESSION.items()}
    out["mae_ci_lo"], out["mae_ci_hi"] = metrics.mae_interval(t, p, n_boot=n_boot)
    out["resolution_ci_lo"], out["resolution_ci_hi"] = metrics.resolution_interval(t, p, n_boot=n_boot)
    out["mae_of_training_mean"] = metrics.mae(t, np.full_like(t, train_mean))
    out["mae_ratio_to_mean"] = out["mae"] / out["mae_of_training_mean"]
    out["response"] = metrics.response(t, p)
    out["resolution_by_mass"] = binned_resolution(t, p, t, edges["truth"])
    if "pt" in edges:
        out["resolution_by_pt"] = binned_resolution(t, p, df["pt"].to_numpy(np.float64), edges["pt"])
    out["n"] = len(t)
    return out


def member_mean(task: Task, df: pd.DataFrame) -> dict[str, float]:
    """The mean over an ensemble's members of each one's metrics, beside which the ensemble's gain shows."""
    truth, fns = (
        df["truth"].to_numpy(np.float64),
        metrics.CLASSIFICATION if task.is_classification else metrics.REGRESSION,
    )
    members = [df[c].to_numpy(np.float64) for c in df if c.startswith("prediction_member")]
    return {name: float(np.mean([fn(truth, m) for m in members])) for name, fn in fns.items()}


def json_safe(values: dict[str, Any]) -> dict[str, Any]:
    # JSON has no Infinity (a rejection with no background passing): DVC shows None as "-"
    def safe(v: Any) -> Any:
        if isinstance(v, dict):
            return json_safe(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        return float(v) if np.isfinite(v) else None

    return {k: safe(v) for k, v in values.items()}


def summarise(task: Task, df: pd.DataFrame, train_mean: float, ep: EvaluateParams) -> dict[str, dict[str, Any]]:
    # bins from val and test together, so both splits (and every experiment) get the same keys
    edges = {c: plots.axis_edges(df[c].to_numpy(np.float64), ep.summary_bins) for c in ("truth", "pt") if c in df}
    out: dict[str, dict[str, Any]] = {}
    for part, frame in df.groupby("split"):
        out[part] = (
            classification_metrics(frame, ep.bootstrap, ep.working_points)
            if task.is_classification
            else regression_metrics(frame, train_mean, edges, ep.bootstrap)
        )
        if part == "test" and ep.bins.get(task.name):  # val keeps today's keys: the bins judge the final model
            out[part]["binned"] = binned.binned_metrics(frame, task, ep)
        if "uncertainty" in frame:
            out[part]["member_mean"] = member_mean(task, frame)
        out[part] = json_safe(out[part])
    return out


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    # JSON has no Infinity or NaN (a bin where no background passes): null, which Vega leaves undrawn
    return [
        {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()}
        for r in rows.to_dict("records")
    ]


def plot_tables(
    task: Task, test: pd.DataFrame, roc_points: int, ep: EvaluateParams | None = None, measured: dict | None = None
) -> list[plots.Plot]:
    """The plots.Plot tables of the test split; with params `evaluate` (ep) also those in its bins, whose
    per-bin intervals are `measured` (binned.binned_metrics of the same split) when given."""
    made = (
        plots.classification_plots(test, task.name, roc_points)
        if task.is_classification
        else plots.regression_plots(test)
    )
    if ep is not None:
        # resolution_vs_pt stays plots.resolution_profile's (its own bins): an existing plot keeps its axes
        taken = {p.name for p in made}
        made += [p for p in binned_plots(test, task, ep, measured) if p.name not in taken]
    return made


def log_plots(
    live: Live,
    task: Task,
    test: pd.DataFrame,
    *,
    roc_points: int,
    ep: EvaluateParams | None = None,
    measured: dict | None = None,
) -> None:
    for p in plot_tables(task, test, roc_points, ep, measured):
        live.log_plot(p.name, records(p.rows), x=p.x, y=p.y, template=p.template, title=p.title)


def log_images(live: Live, task: Task, data: Converted, test: pd.DataFrame, channels: list[int]) -> None:
    grouped = images.groups(test, plots.class_names(task.name) if task.is_classification else None)
    names = [data.meta["channel_names"][c] for c in channels]
    live.log_image("mean_per_class.png", images.mean_figure(data.images, channels, grouped, names))
    live.log_image(
        "examples.png",
        images.examples_figure(
            data.images, channels, grouped, test, channel_names=names, classification=task.is_classification
        ),
    )


def main(params: Params, task_name: str, paths: Paths) -> None:
    task = get_task(task_name)
    device = select_device(params.runtime.device)
    model, spec, ckpt = load_checkpoint(paths.models(task_name) / "model.pt", device)
    model = prepare(model, device, params.runtime)  # threads, and channels_last on a GPU, as in training
    data, split = Converted(paths.converted(task.dataset)), load_split(paths.splits(task_name))
    channels = data.channels(spec.channels, f"train.{task_name}.channels of {paths.models(task_name)}")
    # a binning variable the predictions will lack fails here, before the model runs (empty rows: names only)
    binned.check_variables(
        task_name,
        params.evaluate.bins.get(task_name, {}),
        ["truth", "prediction", *event_columns(data, np.zeros(0, np.int64))],
    )
    df = predictions(model, data, split, spec=spec, params=params, device=device)
    train_mean = float(data.target[split["train"]].mean())
    results = summarise(task, df, train_mean, params.evaluate)
    with atomic_path(paths.eval_metrics(task_name), is_dir=True) as tmp:
        df.to_parquet(tmp / "predictions.parquet", index=False)
        with open_live(tmp) as live:
            live.summary.update(results)
            live.summary["best_epoch"] = int(ckpt["epoch"]) + 1
            top = headline(task, results, params.evaluate.working_points)
            (tmp / "headline.json").write_text(json.dumps(top, indent=2) + "\n")
            test = df[df["split"] == "test"].reset_index(drop=True)
            measured = results["test"].get("binned")
            log_plots(live, task, test, roc_points=params.evaluate.roc_points, ep=params.evaluate, measured=measured)
            log_images(live, task, data, test, channels)
    test = results["test"]
    shown = "  ".join(f"{k} {test[k]:.4g}" for k in metrics.HEADLINE if k in test)
    print(f"evaluated {task_name} (best epoch {int(ckpt['epoch']) + 1}), test: {shown}  n {test['n']}")
