"""A static k-NN graph network, as the public jet-mass GNN (ML4SCI E2E_GNN_Regression: GraphGPS with GatedGCN
on the non-zero pixels) without the global attention: every point's k nearest real points by (eta, phi)
position, once; node features (channel values and position) and edge features (relative position and dR),
message-passing layers, mean and max over the real points, jet-level inputs, MLP head.

Layers (conv=...), written in plain torch on the (B, P, k) neighbour lists, each residual:
- "gated": the residual gated graph convolution with edge features (Bresson and Laurent, arXiv:1711.07553)
  in the GatedGCN form of Dwivedi et al.'s benchmark and GraphGPS: e'_ij = D h_i + E h_j + C e_ij,
  h_i <- h_i + ReLU(norm(A h_i + sum_j sigmoid(e'_ij) * B h_j / (sum_j sigmoid(e'_ij) + eps))),
  e_ij <- e_ij + ReLU(norm(e'_ij)) (torch_geometric's ResGatedGraphConv is the same gate without the
  normalisation and the edge features);
- "gatv2": GATv2 attention (Brody et al., arXiv:2105.14491) as torch_geometric's GATv2Conv with edge
  features, a self loop (without edge features) and concatenated heads: score_ij = a . LeakyReLU(W_s h_j +
  W_t h_i + W_e e_ij), softmax over j, h_i <- h_i + ReLU(norm(sum_j alpha_ij W_s h_j + b)).
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
    masked_max,
    masked_mean,
    neighbour_valid,
)


class GatedGCN(nn.Module):
    def __init__(self, dim: int, heads: int, norm: str, dropout: float, *, update_edges: bool = True) -> None:
        super().__init__()
        self.target = nn.Linear(dim, 2 * dim)  # A h_i, D h_i
        self.source = nn.Linear(dim, 2 * dim)  # B h_j, E h_j
        self.edge = nn.Linear(dim, dim)  # C e_ij
        self.norm_h = make_norm(norm, dim)
        self.norm_e = make_norm(norm, dim) if update_edges else None  # none in the last layer: nothing reads its edges
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, e: torch.Tensor, index: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor):
        a_i, d_i = self.target(h).chunk(2, dim=-1)
        b_j, e_j = gather_neighbours(self.source(h), index).chunk(2, dim=-1)
        # e'_ij = C e_ij + (E h_j + D h_i) as one GEMM with the node terms as its addend: a pass over the
        # (B, P, k, dim) edges costs about as much as the layer's matmuls on CPU
        node_terms = (e_j + (d_i + self.edge.bias).unsqueeze(2)).reshape(-1, e.shape[-1])
        e_hat = torch.addmm(node_terms, e.reshape(-1, e.shape[-1]), self.edge.weight.t()).view(e.shape)
        gate = torch.sigmoid(e_hat) * valid.unsqueeze(-1).to(e_hat.dtype)
        h_new = a_i + (gate * b_j).sum(2) / (gate.sum(2) + 1e-6)
        h = h + self.dropout(F.relu(self.norm_h(h_new, mask)))
        if self.norm_e is not None:  # no dropout on the edges; their empty slots only meet the masked gate and norm
            e = e + F.relu(self.norm_e(e_hat, valid))
        return h * mask.unsqueeze(-1).to(h.dtype), e


class GATv2(nn.Module):
    def __init__(self, dim: int, heads: int, norm: str, dropout: float, *, update_edges: bool = False) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"gnn: dim {dim} is not a multiple of heads {heads}")
        self.heads = heads
        self.source, self.target = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.edge = nn.Linear(dim, dim, bias=False)
        self.att = nn.Parameter(torch.empty(heads, dim // heads))
        nn.init.xavier_uniform_(self.att)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.norm = make_norm(norm, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, e: torch.Tensor, index: torch.Tensor, valid: torch.Tensor, mask: torch.Tensor):
        x_s = self.source(h)
        # the self loop as one more neighbour slot, valid for every real point, no edge features
        x_j = torch.cat([gather_neighbours(x_s, index), x_s.unsqueeze(2)], dim=2)
        edges = F.pad(self.edge(e), (0, 0, 0, 1))
        slots = torch.cat([valid, mask.unsqueeze(-1)], dim=2)
        shape = (*x_j.shape[:3], self.heads, -1)  # (B, P, k + 1, heads, dim / heads)
        score = F.leaky_relu(x_j + self.target(h).unsqueeze(2) + edges, 0.2).reshape(shape)
        score = (score * self.att).sum(-1).masked_fill(~slots.unsqueeze(-1), torch.finfo(score.dtype).min)
        alpha = self.dropout(score.softmax(dim=2))
        out = (alpha.unsqueeze(-1) * x_j.reshape(shape)).sum(2).flatten(2) + self.bias
        h = h + self.dropout(F.relu(self.norm(out, mask)))
        return h * mask.unsqueeze(-1).to(h.dtype), e


CONVS = {"gated": GatedGCN, "gatv2": GATv2}


class GNN(PointModel):
    """Static k-NN graph (k neighbours by position), `layers` layers of `conv` at width `dim`, mean+max
    pooling, MLP head; norm "batch" (masked statistics, as GatedGCN's BatchNorm) or "layer"."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],  # unused: positions arrive relative to the image centre
        *,
        k: int = 8,
        dim: int = 64,
        layers: int = 3,
        conv: str = "gated",
        heads: int = 4,
        norm: str = "layer",
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        global_inputs: int = 0,
    ) -> None:
        if conv not in CONVS:
            raise ValueError(f"gnn: conv must be one of {sorted(CONVS)}, got {conv!r}")
        if k < 1:
            raise ValueError(f"gnn: needs k >= 1, got {k}")
        super().__init__(
            global_inputs=global_inputs, pooled=2 * dim, hidden=hidden, num_outputs=num_outputs, dropout=dropout
        )
        self.k = k
        self.node = nn.Linear(in_channels + 2, dim)
        self.edge = nn.Linear(3, dim)  # d_eta, d_phi, dR
        self.layers = nn.ModuleList(
            CONVS[conv](dim, heads, norm, dropout, update_edges=i < layers - 1) for i in range(layers)
        )

    def forward(
        self, points: torch.Tensor, features: torch.Tensor, mask: torch.Tensor, globals_: torch.Tensor | None = None
    ) -> torch.Tensor:
        points, features, weight = self.masked_inputs(points, features, mask)
        index = knn(points, mask, self.k)
        valid = neighbour_valid(index)
        relative = gather_neighbours(points, index) - points.unsqueeze(2)
        # dR from a clamped square: sqrt's gradient at 0 (the empty slots) would be infinite
        dr = relative.square().sum(-1, keepdim=True).clamp(min=1e-12).sqrt()
        e = self.edge(torch.cat([relative, dr], dim=-1))  # an empty slot's edge (to itself) is masked in the layers
        h = self.node(torch.cat([features, points], dim=-1)) * weight
        for layer in self.layers:
            h, e = layer(h, e, index, valid, mask)
        return self.predict(torch.cat([masked_mean(h, mask, dim=1), masked_max(h, mask, dim=1)], dim=-1), globals_)
