"""The dataset report: sizes, class counts and how hard box supervision is on it.

The calibration figures use `beep3d.data.boxes.overlap_counts` (the project's single definition
of "inside a box") on the aligned vertices, pooled over train+val scenes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from beep3d.classes import SCANNET
from beep3d.data.boxes import OverlapCounts, overlap_counts
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.scene import SyntheticScene

# Measured on real ScanNet v2 scenes (DESIGN.md section 2), for comparison in the report.
REAL_SCANNET = {
    "object_points_in_multiple_boxes": (0.11, 0.15),
    "nonobject_points_in_object_box": (0.27, 0.29),
    "smallest_box_mean_instance_iou": (0.73, 0.77),
}


@dataclass
class SceneSummary:
    """What the report needs of one scene (small, so worker processes can send it back)."""

    split: str
    room_type: str
    n_points: int
    n_faces: int
    classes: tuple[str, ...]  # benchmark class name of each annotated object
    raw_categories: tuple[str, ...]  # raw label of each annotated item (walls and floor included)
    overlap: OverlapCounts | None  # None for test scenes

    @classmethod
    def of(cls, scene: SyntheticScene) -> SceneSummary:
        annotated = [it for it in scene.items if it.object_id >= 0]
        names = tuple(
            SCANNET.instance_names[SCANNET.instance_ids.index(it.nyu40)]
            for it in annotated
            if it.nyu40 in SCANNET.instance_ids
        )
        overlap = (
            None if scene.split == "test" else overlap_counts(scene.xyz, scene.label, scene.instance, SCANNET)
        )
        raws = tuple(str(it.raw_category) for it in annotated)
        return cls(scene.split, scene.room_type, scene.n_points, len(scene.faces), names, raws, overlap)


@dataclass
class ReportBuilder:
    """Accumulates scene summaries in scene order; `finish()` gives the JSON-able report."""

    cfg: SyntheticConfig
    scenes: Counter = field(default_factory=Counter)
    room_types: Counter = field(default_factory=Counter)
    vertices: list[int] = field(default_factory=list)
    faces: int = 0
    instances: dict[str, Counter] = field(
        default_factory=lambda: {"train": Counter(), "val": Counter(), "test": Counter()}
    )
    raw_counts: Counter = field(default_factory=Counter)
    overlap: OverlapCounts = field(default_factory=OverlapCounts)

    def add(self, summary: SceneSummary) -> None:
        self.scenes[summary.split] += 1
        self.room_types[summary.room_type] += 1
        self.vertices.append(summary.n_points)
        self.faces += summary.n_faces
        self.instances[summary.split].update(summary.classes)
        self.raw_counts.update(summary.raw_categories)
        if summary.overlap is not None:
            self.overlap = self.overlap + summary.overlap

    def finish(self) -> dict:
        v = np.asarray(self.vertices, np.int64)
        # NaN (no instances at all) is not valid JSON: report it as null.
        calibration = {
            k: (round(float(x), 4) if np.isfinite(x) else None) if isinstance(x, float) else x
            for k, x in self.overlap.summary().items()
        }
        return {
            "layout": self.cfg.layout,
            "seed": self.cfg.seed,
            "scenes": {s: self.scenes[s] for s in ("train", "val", "test")},
            "room_types": dict(sorted(self.room_types.items())),
            "vertices": {
                "total": int(v.sum()),
                "per_scene_min": int(v.min()) if len(v) else 0,
                "per_scene_mean": round(float(v.mean()), 1) if len(v) else 0.0,
                "per_scene_max": int(v.max()) if len(v) else 0,
            },
            "faces_total": self.faces,
            "instances": {
                split: {name: counts[name] for name in SCANNET.instance_names}
                | {"total": sum(counts.values())}
                for split, counts in self.instances.items()
            },
            "calibration": calibration | {"pooled_over": "train+val"},
            "calibration_real_scannet": {k: list(r) for k, r in REAL_SCANNET.items()},
        }
