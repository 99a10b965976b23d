"""Benchmark class sets: which label values are instance classes, which are background stuff.

The `label` column of the processed data holds nyu40 ids for ScanNet-layout sources and class
indices (0..12) for S3DIS. A `ClassSet` tells every consumer (box extraction, training targets,
evaluation) how to read those values, so the mapping lives in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassSet:
    name: str
    instance_ids: tuple[int, ...]  # label values of evaluated instance classes, in class-index order
    instance_names: tuple[str, ...]  # one name per instance id
    background_ids: tuple[int, ...]  # label values that get background boxes (walls, floor)

    @property
    def num_classes(self) -> int:
        return len(self.instance_ids)

    def class_index(self, labels: np.ndarray) -> np.ndarray:
        """Map raw label values to 0..num_classes-1; -1 for anything that is not an instance class."""
        lut = np.full(max(max(self.instance_ids), max(self.background_ids, default=0)) + 2, -1, np.int64)
        lut[list(self.instance_ids)] = np.arange(self.num_classes)
        labels = np.asarray(labels, dtype=np.int64)
        out = np.full(labels.shape, -1, np.int64)
        ok = (labels >= 0) & (labels < len(lut))
        out[ok] = lut[labels[ok]]
        return out

    def is_instance(self, labels: np.ndarray) -> np.ndarray:
        return np.isin(labels, self.instance_ids)

    def is_background(self, labels: np.ndarray) -> np.ndarray:
        return np.isin(labels, self.background_ids)


SCANNET_WALL = 1
SCANNET_FLOOR = 2

# ScanNet v2 benchmark: 18 instance classes as nyu40 ids (DESIGN.md section 2).
SCANNET = ClassSet(
    name="scannet",
    instance_ids=(3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39),
    instance_names=(
        "cabinet",
        "bed",
        "chair",
        "sofa",
        "table",
        "door",
        "window",
        "bookshelf",
        "picture",
        "counter",
        "desk",
        "curtain",
        "refrigerator",
        "shower curtain",
        "toilet",
        "sink",
        "bathtub",
        "otherfurniture",
    ),
    background_ids=(SCANNET_WALL, SCANNET_FLOOR),
)

# S3DIS: 13 classes, label value = index. Every class is evaluated as instances, so no
# background boxes; ceiling, floor and wall instances get ordinary boxes.
S3DIS_NAMES = (
    "ceiling",
    "floor",
    "wall",
    "beam",
    "column",
    "window",
    "door",
    "table",
    "chair",
    "sofa",
    "bookcase",
    "board",
    "clutter",
)
S3DIS = ClassSet(
    name="s3dis",
    instance_ids=tuple(range(len(S3DIS_NAMES))),
    instance_names=S3DIS_NAMES,
    background_ids=(),
)

CLASS_SETS = {"scannet": SCANNET, "s3dis": S3DIS}
