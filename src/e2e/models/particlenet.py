"""ParticleNet (Qu and Gouskos, arXiv:1902.08570), after weaver-core's ParticleNet.py: a dynamic graph CNN.

Each EdgeConv block takes every point's k nearest neighbours (the first block by position, the later ones by
the previous block's features, recomputed per block), runs the edge features [x_i, x_j - x_i] through an
MLP, averages over the neighbours and adds a shortcut. The blocks' outputs are fused per point, averaged
over the real points, and an MLP head gives the outputs. Differences from weaver-core, for the padding: the
norms are masked (MaskedBatchNorm, or LayerNorm), no input BatchNorm (the features arrive standardised),
and a point's own position joins its features (weaver-core's inputs list the relative eta, phi among them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from e2e.models.points import (
    PointModel,
    gather_neighbours,
    knn,
    make_norm,
    masked_mean,
    neighbour_valid,
    point_rank,
)


class EdgeConv(nn.Module):
    """EdgeConv (Wang et al., arXiv:1801.07829) as ParticleNet's block: MLP on [x_i, x_j - x_i], mean over
    the real neighbours, shortcut (a linear map when the width changes), ReLU."""

    def __init__(self, in_channels: int, widths: Sequence[int], norm: str) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.first = nn.Linear(2 * in_channels, widths[0], bias=False)  # on [x_i, x_j - x_i]
        self.linears = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(make_norm(norm, w) for w in widths)
        self.shortcut = None if in_channels == widths[-1] else nn.Linear(in_channels, widths[-1], bias=False)
        self.shortcut_norm = None if self.shortcut is None else make_norm(norm, widths[-1])

    def forward(self, fts: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = neighbour_valid(index)
        # The first layer on [x_i, x_j - x_i] with W = [W_i | W_j] is (W_i - W_j) x_i + W_j x_j: two per-point
        # products, the second gathered, so the (B, P, k, 2C) edge tensor is never built.
        w_i, w_j = self.first.weight.split(self.in_channels, dim=1)
        h = F.linear(fts, w_i - w_j).unsqueeze(2) + gather_neighbours(F.linear(fts, w_j), index)
        h = F.relu(self.norms[0](h, valid))
        for linear, norm in zip(self.linears, self.norms[1:]):
            h = F.relu(norm(linear(h), valid))
        aggregated = masked_mean(h, valid, dim=2)
        shortcut = fts
        if self.shortcut is not None and self.shortcut_norm is not None:
            shortcut = self.shortcut_norm(self.shortcut(fts), mask)
        return F.relu(shortcut + aggregated) * mask.unsqueeze(-1).to(aggregated.dtype)


class ParticleNet(PointModel):
    """ParticleNet: EdgeConv blocks of `blocks` widths on k neighbours, fusion, masked mean, MLP head.

    Defaults are a small ParticleNet (weaver-core's ParticleNet-Lite: two blocks of 32 and 64 channels, k 7;
    the full model has k 16); norm "batch" is ParticleNet's BatchNorm with masked statistics, "layer" a
    LayerNorm."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],  # unused: positions arrive relative to the image centre
        *,
        k: int = 7,
        blocks: Sequence[Sequence[int]] = ((32, 32, 32), (64, 64, 64)),
        fusion: bool = True,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.1,
        norm: str = "layer",
        global_inputs: int = 0,
    ) -> None:
        if k < 1 or not blocks:
            raise ValueError(f"particlenet: needs k >= 1 and at least one block, got k={k}, blocks={blocks}")
        fused = sum(b[-1] for b in blocks)
        # weaver-core's fusion width: the blocks' channels rounded down to a multiple of 128, within 128..1024
        fusion_width = min(max(fused // 128 * 128, 128), 1024)
        pooled = fusion_width if fusion else blocks[-1][-1]
        super().__init__(
            global_inputs=global_inputs, pooled=pooled, hidden=hidden, num_outputs=num_outputs, dropout=dropout
        )
        self.k = k
        widths_in = [in_channels + 2, *(b[-1] for b in blocks[:-1])]
        self.blocks = nn.ModuleList(EdgeConv(c, b, norm) for c, b in zip(widths_in, blocks))
        self.fusion = nn.Linear(fused, fusion_width, bias=False) if fusion else None
        self.fusion_norm = make_norm(norm, fusion_width) if fusion else None

    def forward(
        self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, globals_: torch.Tensor | None = None
    ) -> torch.Tensor:
        points, features, weight = self.masked_inputs(points, features, mask)
        code = point_rank(points, mask)  # equal distances, in any space, resolved by position
        fts = torch.cat([features, points], dim=-1)
        outputs = []
        for i, block in enumerate(self.blocks):
            index = knn(points if i == 0 else fts, mask, self.k, code=code)
            fts = block(fts, index, mask)
            outputs.append(fts)
        if self.fusion is not None and self.fusion_norm is not None:
            fts = F.relu(self.fusion_norm(self.fusion(torch.cat(outputs, dim=-1)), mask)) * weight
        return self.predict(masked_mean(fts, mask, dim=1), globals_)
