"""Particle Transformer (Qu, Li and Qian, arXiv:2202.03772), after weaver-core's ParticleTransformer.py.

Each point is embedded by an MLP, then transformer blocks attend over the real points (padded keys masked),
optionally with pairwise features as an attention bias: ln dR between the two points (ParT's lnDelta; its
other pair features need four-momenta) through a small MLP to one bias per head, computed once and added in
every block. Class-attention blocks (CaiT, as ParT) pool the points into a class token; or pool="mean", a
masked mean. The blocks are ParT's: pre-norm attention and feed-forward with the extra norms after the
attention and inside the feed-forward; no dropout on the attention weights (see Attention). Only
LayerNorms (ParT's BatchNorm on the inputs and pair features would count the padding; the features arrive
standardised).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from e2e.models.points import PointModel, masked_mean, pair_sq_distances


def attention_bias(key_valid: torch.Tensor, pair: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """The additive attention mask, built once per forward: the pair bias (B, heads, P, P) or zeros (B, 1, 1, P),
    with a large finite negative on the padded keys. Finite, not -inf: a row with no valid key (an event
    without points) stays finite, and its values (zeroed padding) contribute nothing anyway; 1e9 outweighs
    any score and is finite in bfloat16 too."""
    blocked = ~key_valid[:, None, None, :]
    if pair is None:
        return torch.zeros(blocked.shape, dtype=dtype, device=key_valid.device).masked_fill(blocked, -1e9)
    return pair.to(dtype).masked_fill(blocked, -1e9)


class Attention(nn.Module):
    """Multi-head attention of `query` (B, Q, D) over `context` (B, N, D) with an additive mask `bias`
    (attention_bias). No dropout on the attention weights:
    it would draw a (B, heads, P, P) mask per block, the costliest op of a CPU step."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"particle_transformer: dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.query, self.key_value, self.out = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, queries, dim = query.shape
        q = self.query(query).reshape(batch, queries, self.heads, -1).transpose(1, 2)
        k, v = self.key_value(context).reshape(batch, -1, 2, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        # written out rather than F.scaled_dot_product_attention: with a float mask on CPU that takes the same
        # math path, and the ONNX exporter's decomposition of it breaks the reshape after it (torch 2.14)
        weights = ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 + bias.to(q.dtype)).softmax(dim=-1)
        return self.out((weights @ v).transpose(1, 2).reshape(batch, queries, dim))


class Block(nn.Module):
    """ParT's block: x + norm(attn(norm(x))), then x + fc2(norm(gelu(fc1(norm(x))))); with `cls`, class
    attention: the class token (B, 1, D) attends over itself and the points, and only it is updated."""

    def __init__(self, dim: int, heads: int, ffn_ratio: int, dropout: float) -> None:
        super().__init__()
        self.pre_attn_norm, self.post_attn_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.pre_fc_norm, self.post_fc_norm = nn.LayerNorm(dim), nn.LayerNorm(dim * ffn_ratio)
        self.fc1, self.fc2 = nn.Linear(dim, dim * ffn_ratio), nn.Linear(dim * ffn_ratio, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        if cls is None:
            residual = x
            h = self.pre_attn_norm(x)
            h = self.attn(h, h, bias)
        else:
            residual = cls
            u = self.pre_attn_norm(torch.cat([cls, x], dim=1))
            h = self.attn(u[:, :1], u, bias)
        x = residual + self.dropout(self.post_attn_norm(h))
        h = self.post_fc_norm(F.gelu(self.fc1(self.pre_fc_norm(x))))
        return x + self.dropout(self.fc2(self.dropout(h)))


class PairBias(nn.Module):
    """(B, heads, P, P) attention bias from ln dR of each pair of points (dR clamped at eps, as ParT)."""

    def __init__(self, heads: int, hidden: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.GELU(), nn.Linear(hidden, heads))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        ln_dr = 0.5 * torch.log(pair_sq_distances(points).clamp(min=self.eps**2))
        return self.mlp(ln_dr.unsqueeze(-1)).permute(0, 3, 1, 2).contiguous()


class ParticleTransformer(PointModel):
    """A small ParT: embedding MLP (`embed` hidden widths, then `dim`), `layers` blocks with `heads` heads and
    the ln dR bias (pair_bias), `cls_layers` class-attention blocks (pool="cls") or a masked mean
    (pool="mean"), a final LayerNorm, then the MLP head."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],  # unused: positions arrive relative to the image centre
        *,
        dim: int = 64,
        embed: Sequence[int] = (128,),
        heads: int = 4,
        layers: int = 3,
        cls_layers: int = 1,
        ffn_ratio: int = 4,
        dropout: float = 0.1,
        pair_bias: bool = True,
        pair_hidden: int = 8,
        pool: str = "cls",
        hidden: Sequence[int] = (64,),
        global_inputs: int = 0,
    ) -> None:
        if pool not in ("cls", "mean"):
            raise ValueError(f"particle_transformer: pool must be 'cls' or 'mean', got {pool!r}")
        if pool == "cls" and cls_layers < 1:
            raise ValueError(
                "particle_transformer: pool 'cls' needs cls_layers >= 1 (else the output ignores the points)"
            )
        super().__init__(
            global_inputs=global_inputs, pooled=dim, hidden=hidden, num_outputs=num_outputs, dropout=dropout
        )
        # ParT's embedding is LayerNorm -> Linear -> GELU per width; the first LayerNorm is left out here: on
        # 3 to 10 inputs it would take away the event's energy scale
        sizes = [in_channels + 2, *embed, dim]
        layers_embed: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers_embed += ([nn.LayerNorm(a)] if i else []) + [nn.Linear(a, b), nn.GELU()]
        self.embed = nn.Sequential(*layers_embed)
        self.pair = PairBias(heads, pair_hidden) if pair_bias else None
        self.blocks = nn.ModuleList(Block(dim, heads, ffn_ratio, dropout) for _ in range(layers))
        self.cls_blocks = nn.ModuleList(
            Block(dim, heads, ffn_ratio, 0.0) for _ in range(cls_layers if pool == "cls" else 0)
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, globals_: torch.Tensor | None = None
    ) -> torch.Tensor:
        points, features, weight = self.masked_inputs(points, features, mask)
        x = self.embed(torch.cat([features, points], dim=-1)) * weight
        bias = attention_bias(mask, None if self.pair is None else self.pair(points), x.dtype)
        for block in self.blocks:
            x = block(x, bias) * weight
        if self.cls_token is None:
            return self.predict(self.norm(masked_mean(x, mask, dim=1)), globals_)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        cls_bias = attention_bias(torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1), None, x.dtype)
        for block in self.cls_blocks:
            cls = block(x, cls_bias, cls=cls)
        return self.predict(self.norm(cls[:, 0]), globals_)
