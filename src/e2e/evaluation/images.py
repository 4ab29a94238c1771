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
# What a pixel of each channel holds (colour-bar labels), as the dataset notes and the generator in
# src/e2e/sources/synthetic describe the files; a channel not listed is labelled by its name.
CHANNEL_UNITS = {
    "energy": "ECAL energy [crop units, 1 ~ 50 GeV]",
    "time": "ECAL time [as stored]",
    "track_pt": "track pT [GeV]",
    "track_dz": "track dZ [mm]",
    "track_d0": "track d0 [mm]",
    "ecal": "ECAL energy [GeV]",
    "hcal": "HCAL energy [GeV] (tower / 25 per crystal)",
    "pix1": "pixel layer 1 charge [MIP]",
    "pix2": "pixel layer 2 charge [MIP]",
    "pix3": "pixel layer 3 charge [MIP]",
}
ETA_LABEL = r"$i\eta$ (crystal row)"
PHI_LABEL = r"$i\phi$ (crystal column)"
PIXEL = r"one pixel = one ECAL crystal, 0.0174 x 0.0174 in $\eta$ x $\phi$"


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


def channel_label(channel: str) -> str:
    return CHANNEL_UNITS.get(channel, f"{channel} per pixel")


def _grid(
    n_rows: int, n_cols: int, size: tuple[int, int], row_labels: list[str] | None = None
) -> tuple[Figure, np.ndarray]:
    """Panels on the detector's axes: rows are eta, columns phi, one pixel per ECAL crystal (0.0174 x 0.0174);
    tick labels and axis titles on the outer panels only, `row_labels` above the eta title of each row."""
    fig = Figure(figsize=(2.6 * n_cols + 0.8, 2.3 * n_rows + 0.6), dpi=80, layout="constrained")
    axes = np.asarray(fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True))
    height, width = size
    for ax in axes.flat:
        ax.set_xticks([0, width // 2, width - 1])
        ax.set_yticks([0, height // 2, height - 1])
        ax.tick_params(labelsize=7, length=2)
    for ax in axes[-1]:
        ax.set_xlabel(PHI_LABEL, fontsize=8)
    for r, ax in enumerate(axes[:, 0]):
        ax.set_ylabel(f"{row_labels[r]}\n{ETA_LABEL}" if row_labels else ETA_LABEL, fontsize=8)
    for ax in axes.flat:
        ax.label_outer()
    return fig, axes


def _show(ax, image: np.ndarray, norm):
    # origin lower: eta grows upwards, as on any other plot's y axis; signed channels (time, dZ, d0) get a
    # diverging map, so that zero (no hit) is white rather than the middle of viridis
    cmap = "RdBu_r" if norm.vmin < 0 else "viridis"
    return ax.imshow(image, cmap=cmap, norm=norm, origin="lower", interpolation="nearest")


def _colorbar(fig, im, axes, label: str, **size) -> None:
    """One colour scale for a column of panels (one channel), labelled with what a pixel holds."""
    bar = fig.colorbar(im, ax=axes, **size)
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)


def mean_figure(images, channels: list[int], grouped: dict[str, np.ndarray], channel_names: list[str]) -> Figure:
    means = {name: mean_image(images, channels, rows) for name, rows in grouped.items() if len(rows)}
    counts = {name: min(len(rows), MAX_MEAN_EVENTS) for name, rows in grouped.items() if len(rows)}
    fig, axes = _grid(len(means), len(channel_names), next(iter(means.values())).shape[1:])
    for c, channel in enumerate(channel_names):
        norm = _norm(np.stack([m[c] for m in means.values()]))  # one scale per channel: classes compare
        for r, (name, m) in enumerate(means.items()):
            im = _show(axes[r, c], m[c], norm)
            axes[r, c].set_title(f"{name} ({counts[name]} events): {channel}", fontsize=8)
        _colorbar(fig, im, axes[:, c], f"mean {channel_label(channel)}", shrink=0.6)
    fig.suptitle(f"mean test image per class and channel\n({PIXEL})", fontsize=10)
    return fig


def examples_figure(
    images,
    channels: list[int],
    grouped: dict[str, np.ndarray],
    test: pd.DataFrame,
    *,
    channel_names: list[str],
    classification: bool,
) -> Figure:
    picked = [(name, int(row)) for name, rows in grouped.items() for row in rows[:EXAMPLES_PER_GROUP]]
    by_row = test.set_index("row")
    events = np.stack([images[row][channels] for _, row in picked])
    # the score is the probability of class 1, the second group of a classification
    score = f"P({list(grouped)[1]})" if classification and len(grouped) == 2 else "score"
    labels = []
    for name, row in picked:
        truth, pred = by_row.at[row, "truth"], by_row.at[row, "prediction"]
        labels.append(
            f"{name}: {score} = {pred:.2f}" if classification else f"{name}\ntrue {truth:.0f}, predicted {pred:.0f} GeV"
        )
    fig, axes = _grid(len(picked), len(channel_names), events.shape[2:], labels)
    for c, channel in enumerate(channel_names):
        norm = _norm(events[:, c])  # one scale per channel: the events compare
        for r in range(len(picked)):
            im = _show(axes[r, c], events[r, c], norm)
            axes[r, c].set_title(channel, fontsize=8)
        _colorbar(fig, im, axes[:, c], channel_label(channel), shrink=0.5, aspect=40)
    fig.suptitle(
        f"example test events: true {'class' if classification else 'mass range'} and prediction "
        f"left of each row\n({PIXEL})",
        fontsize=10,
    )
    return fig
