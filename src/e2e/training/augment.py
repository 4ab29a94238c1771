"""Augmentations from the detector's symmetries, as a registry of batch functions applied on the device.

Images are (ieta, iphi): rows run along eta, columns along phi. The barrel is symmetric under
eta -> -eta, and phi -> -phi flips the magnetic bending, i.e. swaps e+ and e- (both in the sample).
A phi *rotation* (roll) is physical only for full-azimuth images, not for crops centred on a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from e2e.errors import E2EError
from e2e.runtime.batches import ImageBatch, Inputs


def _flip_where(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Flip a random half of the batch along `dim` (each sample independently)."""
    mask = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(dim), x)


def _roll_phi(x: torch.Tensor) -> torch.Tensor:
    shift = int(torch.randint(x.shape[-1], ()))
    return x.roll(shift, dims=-1)


AUGMENTATIONS = {
    "flip_eta": lambda x: _flip_where(x, -2),
    "flip_phi": lambda x: _flip_where(x, -1),
    "roll_phi": _roll_phi,
}


def make_augment(names) -> Callable[[Inputs], Inputs]:
    """The batch function applying `names` in order; an ImageBatch's images only (jet-level inputs are
    invariant under these symmetries)."""
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise E2EError(f"params.yaml train.*.augment: unknown {unknown}; choices: {sorted(AUGMENTATIONS)}")
    fns = [AUGMENTATIONS[n] for n in names]

    def transform(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x

    def augment(x: Inputs) -> Inputs:
        if not fns:  # a point model's batches too (config.schema refuses augmentations for those)
            return x
        if isinstance(x, ImageBatch):
            return x._replace(images=transform(x.images))
        assert isinstance(x, torch.Tensor), type(x)  # point models take no augmentation (config.schema)
        return transform(x)

    return augment
