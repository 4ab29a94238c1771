"""Small modern architectures of the model survey (model_survey_auc_tables.md): a ~0.5M-parameter
ConvNeXt (the survey's had 467k, AUC 0.802 on e/gamma) and a small ViT. Both are sized for 32x32 and
125x125 detector images rather than 224x224 photographs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def _default_patch(image_size: Sequence[int], small: int, large: int) -> int:
    # 32x32 crops are already tight around the shower; 125x125 jets are mostly empty pixels
    return small if max(image_size) <= 64 else large


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's channels_first LayerNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm, 4x inverted bottleneck with GELU, layer scale, residual
    (Liu et al. 2022, arXiv:2201.03545, the survey's CNN reference)."""

    def __init__(self, dim: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtSmall(nn.Module):
    """A small ConvNeXt (not torchvision's 50M convnext_small): patchify stem (patch 2 on 32x32,
    4 on 125x125), stages of dims (32, 64, 128) with depths (2, 2, 3) and 2x2 stride-2 downsampling,
    global average pool, LayerNorm, linear; about 0.5M parameters."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        dims: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (2, 2, 3),
        patch: int | None = None,
        layer_scale: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(dims) != len(depths):
            raise ValueError(f"convnext_small: dims {dims} and depths {depths} differ in length")
        patch = patch or _default_patch(image_size, 2, 4)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], patch, stride=patch), LayerNorm2d(dims[0]))
        stages: list[nn.Module] = []
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i > 0:
                stages += [LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, stride=2)]
            stages += [ConvNeXtBlock(dim, layer_scale) for _ in range(depth)]
        self.stages = nn.Sequential(*stages)
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_outputs)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x)).mean(dim=(2, 3))
        return self.head(self.norm(x))


def _init_weights(module: nn.Module) -> None:
    # truncated normal 0.02 and zero bias, as both ConvNeXt and ViT reference implementations do
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class ViTSmall(nn.Module):
    """A small pre-norm Vision Transformer (Dosovitskiy et al. 2020). The image is zero-padded on the
    right/bottom to a multiple of patch_size (zero is 'no deposit' in every detector channel, so the
    padding adds no signal); the default patch gives an 8x8 token grid (4 on 32x32, 16 on 125x125).
    pool='cls' reads a class token, pool='mean' averages the patch tokens."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        image_size: Sequence[int],
        *,
        patch_size: int | None = None,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"vit_small: pool must be 'cls' or 'mean', got {pool!r}")
        p = patch_size or math.ceil(max(image_size) / 8)
        gh, gw = (math.ceil(n / p) for n in image_size)
        self.pool = pool
        self.pad = nn.ZeroPad2d((0, gw * p - image_size[1], 0, gh * p - image_size[0]))
        self.patch_embed = nn.Conv2d(in_channels, dim, p, stride=p)
        n_tokens = gh * gw + (pool == "cls")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, n_tokens, dim), std=0.02))
        layer = nn.TransformerEncoderLayer(
            dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
        )
        # nested tensors are unsupported with norm_first and would only warn
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_outputs)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(self.pad(x)).flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = self.norm(self.encoder(tokens + self.pos_embed))
        pooled = tokens[:, 0] if self.pool == "cls" else tokens.mean(dim=1)
        return self.head(pooled)
