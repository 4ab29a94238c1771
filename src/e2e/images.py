"""PNG views of the detector images: the mean image per class and channel, and a few example events.

Images are read from the converted sparse format by the `row` column of the predictions: mean images
are summed from the non-zero entries, and only the few example events are densified. Matplotlib
figures are built without pyplot (no global state, no display).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure

MAX_MEAN_EVENTS = 20000  # per group: far more than a mean image needs to be smooth
EXAMPLES_PER_GROUP = 3


def groups(test: pd.DataFrame, names: tuple[str, str] | None) -> dict[str, np.ndarray]:
    """Rows of the converted dataset per class; for regression, per third of the true-mass range."""
    rows, truth = test["row"].to_numpy(), test["truth"].to_numpy()
    order = np.random.default_rng(0).permutation(len(rows))  # the same events on every run
    rows, truth = rows[order], truth[order]
    if names is not None:
        return {name: rows[truth == k] for k, name in enumerate(names)}
    cuts = np.quantile(truth, [0, 1 / 3, 2 / 3, 1]).round()
    bins = np.clip(np.searchsorted(cuts, truth, side="right") - 1, 0, 2)
    return {f"m {cuts[k]:.0f}-{cuts[k + 1]:.0f} GeV": rows[bins == k] for k in range(3)}


def mean_image(images, channels: list[int], rows: np.ndarray) -> np.ndarray:
    rows = np.sort(rows[:MAX_MEAN_EVENTS])  # sorted reads are sequential on a memmap
    return images.pixel_sum(rows)[channels] / max(len(rows), 1)


def _norm(values: np.ndarray) -> SymLogNorm:
    """Symmetric log colours: showers span orders of magnitude, and time/impact channels go negative."""
    top = float(np.max(np.abs(values))) or 1.0
    bottom = -top if float(np.min(values)) < 0 else 0.0
    return SymLogNorm(linthresh=top * 1e-2, vmin=bottom, vmax=top)


def _grid(n_rows: int, n_cols: int) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(2.4 * n_cols + 0.6, 2.2 * n_rows + 0.4), dpi=80, layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig, axes


def mean_figure(images, channels: list[int], grouped: dict[str, np.ndarray], channel_names: list[str]) -> Figure:
    means = {name: mean_image(images, channels, rows) for name, rows in grouped.items() if len(rows)}
    fig, axes = _grid(len(means), len(channel_names))
    for c, channel in enumerate(channel_names):
        norm = _norm(np.stack([m[c] for m in means.values()]))  # one scale per channel: classes compare
        for r, (name, m) in enumerate(means.items()):
            im = axes[r, c].imshow(m[c], cmap="viridis", norm=norm)
            axes[r, c].set_title(f"{name}: {channel}", fontsize=9)
        fig.colorbar(im, ax=axes[:, c], shrink=0.6)
    fig.suptitle("mean image per class and channel", fontsize=10)
    return fig


def examples_figure(images, channels: list[int], grouped: dict[str, np.ndarray], test: pd.DataFrame,
                    channel_names: list[str], classification: bool) -> Figure:
    picked = [(name, int(row)) for name, rows in grouped.items() for row in rows[:EXAMPLES_PER_GROUP]]
    by_row = test.set_index("row")
    fig, axes = _grid(len(picked), len(channel_names))
    for r, (name, row) in enumerate(picked):
        event = images[row][channels]
        truth, pred = by_row.at[row, "truth"], by_row.at[row, "prediction"]
        shown = f"score {pred:.2f}" if classification else f"true {truth:.0f}, predicted {pred:.0f} GeV"
        for c, channel in enumerate(channel_names):
            axes[r, c].imshow(event[c], cmap="viridis", norm=_norm(event[c]))
            axes[r, c].set_title(f"{shown}: {channel}" if c == 0 else channel, fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("example events", fontsize=10)
    return fig
