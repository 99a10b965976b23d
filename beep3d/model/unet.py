"""Sparse-convolution UNet backbone (spconv): per-voxel features for the whole batch.

Layout (MAFT/SPFormer style): a 3x3x3 submanifold stem, then per level `blocks_per_level`
pre-activation residual blocks (BN -> ReLU -> conv, bias-free), a stride-2 `SparseConv3d` down to
the next level, and on the way back a `SparseInverseConv3d` up whose output is concatenated with
the skip of that level and fused by residual blocks. Submanifold convs keep the active set, so
the output rows are the input voxels in input order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from beep3d.backend import import_spconv
from beep3d.distributed import SyncedBatchNorm1d

if TYPE_CHECKING:
    from spconv.pytorch import ConvAlgo, SparseConvTensor

spconv = import_spconv()


class ResidualBlock(spconv.SparseModule):
    """Two BN-ReLU-SubMConv(3) layers plus a shortcut (a bias-free linear map when widths differ)."""

    def __init__(self, c_in: int, c_out: int, algo: ConvAlgo, indice_key: str):
        super().__init__()
        # A 1x1x1 conv on a sparse tensor is a per-voxel linear map: nn.Linear needs no indice pairs.
        self.shortcut = nn.Identity() if c_in == c_out else nn.Linear(c_in, c_out, bias=False)
        self.body = spconv.SparseSequential(
            SyncedBatchNorm1d(c_in),
            nn.ReLU(inplace=True),
            spconv.SubMConv3d(c_in, c_out, 3, padding=1, bias=False, indice_key=indice_key, algo=algo),
            SyncedBatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            spconv.SubMConv3d(c_out, c_out, 3, padding=1, bias=False, indice_key=indice_key, algo=algo),
        )

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        # The shortcut reads x.features before body's in-place ReLU could see them: BN runs first
        # and makes a new tensor, so x.features itself is never modified.
        skip = self.shortcut(x.features)  # (V, c_out)
        out = self.body(x)
        return out.replace_feature(out.features + skip)


def _blocks(c_in: int, c_out: int, n: int, algo: ConvAlgo, indice_key: str) -> spconv.SparseSequential:
    """n residual blocks, the first mapping c_in -> c_out."""
    return spconv.SparseSequential(
        *[ResidualBlock(c_in if i == 0 else c_out, c_out, algo, indice_key) for i in range(n)]
    )


def padded_spatial_shape(spatial_shape: list[int], levels: int) -> list[int]:
    """Round the grid up to a multiple of 2^(levels - 1).

    A kernel-2 stride-2 conv over an odd extent n has n // 2 outputs, so a voxel at coordinate
    n - 1 falls outside the coarser grid: it is silently dropped on the way down and gets zero
    features back from the inverse conv. With the padded grid every voxel survives every level.
    """
    multiple = 2 ** (levels - 1)
    return [-(-int(s) // multiple) * multiple for s in spatial_shape]


class SparseUNet(nn.Module):
    """Sparse UNet over voxels.

    Args:
        in_channels: per-voxel input features (6: rgb in [-1, 1] + xyz in metres).
        widths: channels per level, finest first (MAFT: (32, 64, 96, 128, 160)); len(widths) levels,
            i.e. len(widths) - 1 stride-2 downsamplings.
        blocks_per_level: residual blocks per level on the way down and on the way up (MAFT: 2).
        algo: spconv algorithm for every conv (see `beep3d.backend.conv_algo`).

    forward(x: SparseConvTensor with (V, in_channels) fp32 features) -> (V, widths[0]) features,
    rows aligned with x.indices. x.spatial_shape must be padded by `padded_spatial_shape`.
    """

    def __init__(self, in_channels: int, widths: tuple[int, ...], blocks_per_level: int, algo: ConvAlgo):
        super().__init__()
        if not widths or blocks_per_level < 1:
            raise ValueError(f"need >= 1 level and >= 1 block per level, got {widths}, {blocks_per_level}")
        self.widths = tuple(widths)
        w = self.widths
        self.stem = spconv.SparseSequential(
            spconv.SubMConv3d(in_channels, w[0], 3, padding=1, bias=False, indice_key="subm0", algo=algo)
        )
        self.encoders = nn.ModuleList(
            [_blocks(w[i], w[i], blocks_per_level, algo, f"subm{i}") for i in range(len(w))]
        )
        self.downs = nn.ModuleList(
            [
                spconv.SparseSequential(
                    SyncedBatchNorm1d(w[i]),
                    nn.ReLU(inplace=True),
                    spconv.SparseConv3d(
                        w[i], w[i + 1], 2, stride=2, bias=False, indice_key=f"down{i}", algo=algo
                    ),
                )
                for i in range(len(w) - 1)
            ]
        )
        # The inverse conv reuses the indice pairs of its down conv (same key): its output rows are
        # exactly the finer level's voxels in their original order, ready to concatenate.
        self.ups = nn.ModuleList(
            [
                spconv.SparseSequential(
                    SyncedBatchNorm1d(w[i + 1]),
                    nn.ReLU(inplace=True),
                    spconv.SparseInverseConv3d(
                        w[i + 1], w[i], 2, indice_key=f"down{i}", bias=False, algo=algo
                    ),
                )
                for i in range(len(w) - 1)
            ]
        )
        self.decoders = nn.ModuleList(
            [_blocks(2 * w[i], w[i], blocks_per_level, algo, f"subm{i}") for i in range(len(w) - 1)]
        )
        self.out = spconv.SparseSequential(SyncedBatchNorm1d(w[0]), nn.ReLU(inplace=True))

    def forward(self, x: SparseConvTensor) -> torch.Tensor:
        expected = padded_spatial_shape(list(x.spatial_shape), len(self.widths))
        if list(x.spatial_shape) != expected:
            raise ValueError(
                f"spatial shape {list(x.spatial_shape)} would drop border voxels when "
                f"downsampling; pad it with padded_spatial_shape (-> {expected})"
            )
        x = self.stem(x)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x)
            if level < len(self.downs):
                skips.append(x)
                x = self.downs[level](x)
        for level in reversed(range(len(self.ups))):
            x = self.ups[level](x)
            x = x.replace_feature(torch.cat([skips[level].features, x.features], dim=1))  # (V_l, 2 w_l)
            x = self.decoders[level](x)
        return self.out(x).features  # (V, widths[0])
