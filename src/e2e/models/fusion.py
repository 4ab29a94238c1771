"""Jet-level inputs for an image model: the network's output read as an embedding of the image, the
standardised jet-level inputs (train.<task>.global_inputs, e.g. the jet pT) concatenated after it, then a
small MLP head, as the public jet-mass GNN concatenates them after its global pooling.

Any registered image model serves unchanged: built with `embedding` outputs instead of the task's, its last
layer becomes the projection of its pooled (or flattened) features, so no architecture needs a hook."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from e2e.models.classic import _mlp_head

EMBEDDING = 64  # the image network's outputs: wider than any head's input here, small beside its features
HIDDEN = (64,)  # the head after the concatenation


class WithGlobals(nn.Module):
    """`image_net` (B, C, H, W) -> (B, EMBEDDING), then ReLU, the jet-level inputs (B, G), and the head."""

    def __init__(self, image_net: nn.Module, *, global_inputs: int, num_outputs: int, hidden: Sequence[int] = HIDDEN):
        super().__init__()
        if global_inputs < 1:
            raise ValueError(f"WithGlobals takes at least one global input, got {global_inputs}")
        self.image_net, self.global_inputs = image_net, int(global_inputs)
        self.head = nn.Sequential(*_mlp_head([EMBEDDING + self.global_inputs, *hidden, num_outputs], 0.0))

    def forward(self, images: torch.Tensor, globals_: torch.Tensor) -> torch.Tensor:
        if globals_.shape[-1] != self.global_inputs:
            raise ValueError(f"WithGlobals: globals_ has {globals_.shape[-1]} columns, expected {self.global_inputs}")
        embedded = torch.relu(self.image_net(images))
        return self.head(torch.cat([embedded, globals_.to(embedded.dtype)], dim=-1))
