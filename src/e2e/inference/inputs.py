"""A model's named inputs from a batch of stored images, in numpy (onnxruntime needs no torch): the images
themselves, or a point model's points, features and mask, and either's jet-level inputs.

The points are built as training builds them from the sparse entries (e2e.runtime.points.to_points), here
from the dense images that predict already makes: every pixel where any channel is non-zero, ordered by
energy descending (the sum of the energy channels in float32, left to right; |value| over all channels when
none), ties by ascending pixel, the first `max_points` kept, padded to the batch's largest event.
tests/unit/test_points.py checks that both give the same bits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from e2e.errors import E2EError

# the model's inputs by name, in the order of its forward and of the ONNX graph's inputs (e2e.stages.export);
# `globals` only where the model takes jet-level inputs
IMAGE_INPUTS = ("images", "globals")
POINT_INPUTS = ("points", "features", "mask", "globals")


@dataclass(frozen=True, kw_only=True)
class InputLayout:
    """What a trained model takes: points or not, the cap and energy channels (positions among the model's
    channels) of a point model, and the jet-level inputs (the readers' observer names) of either."""

    points: bool = False
    max_points: int | None = None
    energy_channels: tuple[int, ...] = ()
    global_inputs: tuple[str, ...] = ()

    def build(self, images: np.ndarray, observers: Mapping[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        """The graph's inputs by name (export's names) for float32 images (N, C, H, W) and their observers."""
        if self.points:
            named = point_arrays(images, max_points=self.max_points, energy_channels=self.energy_channels)
        else:
            named = {"images": images}
        if self.global_inputs:
            missing = [g for g in self.global_inputs if g not in observers]
            if missing:
                raise E2EError(
                    f"{where}: the model takes jet-level input {missing[0]!r}, which the file lacks "
                    f"(it has {', '.join(observers) or 'no observers'})"
                )
            named["globals"] = finite_globals(
                {g: np.asarray(observers[g], np.float32) for g in self.global_inputs}, where
            )
        return named


def finite_globals(columns: Mapping[str, np.ndarray], where: str) -> np.ndarray:
    """(N, G) float32 of the named jet-level inputs; a NaN or infinity is refused naming the input and the count
    (one would make the input's moments, then every prediction, NaN without an error)."""
    for name, values in columns.items():
        bad = int(np.count_nonzero(~np.isfinite(values)))
        if bad:
            raise E2EError(f"{where}: jet-level input {name!r} has {bad} non-finite value(s) (NaN or infinity)")
    return np.stack(list(columns.values()), 1).astype(np.float32)


def positions(h: int, w: int) -> np.ndarray:
    """(H*W, 2) float32 pixel positions, as e2e.runtime.points.positions computes them (float64, then rounded)."""
    rows = (np.arange(h, dtype=np.float64) - (h - 1) / 2) / (h / 2)
    columns = (np.arange(w, dtype=np.float64) - (w - 1) / 2) / (w / 2)
    return np.stack(np.meshgrid(rows, columns, indexing="ij"), -1).reshape(h * w, 2).astype(np.float32)


def point_arrays(
    images: np.ndarray, *, max_points: int | None, energy_channels: Sequence[int]
) -> dict[str, np.ndarray]:
    """points (N, P, 2), features (N, P, C), mask (N, P) of float32 images (N, C, H, W)."""
    n, c, h, w = images.shape
    flat = np.ascontiguousarray(images, np.float32).reshape(n, c, h * w)
    real = (flat != 0).any(1)  # (N, H*W)
    columns = [flat[:, k] for k in energy_channels] or [np.abs(flat[:, k]) for k in range(c)]
    energy = columns[0]
    for column in columns[1:]:
        energy = energy + column  # float32, one channel at a time: training's order of additions
    pixel = np.broadcast_to(np.arange(h * w), (n, h * w))
    # real pixels first, then by energy descending (-0.0 and +0.0 tie: -x compares them equal), then by pixel
    order = np.lexsort((pixel, -energy, ~real), axis=-1)
    p = max(int(real.sum(1).max(initial=0)), 1)
    order = order[:, : p if max_points is None else min(p, max_points)]
    mask = np.take_along_axis(real, order, 1)
    features = np.where(mask[..., None], np.take_along_axis(flat.transpose(0, 2, 1), order[..., None], 1), 0)
    points = np.where(mask[..., None], positions(h, w)[order], np.float32(0))
    return {"points": points, "features": features.astype(np.float32), "mask": mask}
