"""The in-memory scene every raw reader returns and preprocessing consumes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawScene:
    """One scan, axis-aligned, one entry per original vertex (N vertices).

    Readers (ScanNet layout, S3DIS layout) produce this; they validate everything they read
    and raise `beep3d.errors.DataError` naming the scene and file on bad input.
    """

    scene_id: str
    xyz: np.ndarray  # (N, 3) float32, metres, axis alignment already applied
    rgb: np.ndarray  # (N, 3) uint8
    label: np.ndarray  # (N,) int16: nyu40 id (ScanNet layout) or class index (S3DIS); -1 unlabelled
    instance: np.ndarray  # (N,) int32: instance id >= 1, 0 = no instance
    superpoint: np.ndarray | None  # (N,) int32 contiguous 0..S-1 from the source, None if it has none
    split: str  # "train" | "val" | "test"
    class_set: str  # "scannet" | "s3dis": how to read `label`

    def __post_init__(self) -> None:
        n = len(self.xyz)
        assert self.xyz.shape == (n, 3) and self.xyz.dtype == np.float32, self.xyz.dtype
        assert self.rgb.shape == (n, 3) and self.rgb.dtype == np.uint8, self.rgb.dtype
        assert self.label.shape == (n,) and self.label.dtype == np.int16, self.label.dtype
        assert self.instance.shape == (n,) and self.instance.dtype == np.int32, self.instance.dtype
        if self.superpoint is not None:
            assert self.superpoint.shape == (n,) and self.superpoint.dtype == np.int32
        assert self.split in ("train", "val", "test"), self.split

    @property
    def n_points(self) -> int:
        return len(self.xyz)
