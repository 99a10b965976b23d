"""Write scenes in S3DIS's layout: one folder per room, one text file per annotated instance.

    Stanford3dDataset_v1.2_Aligned_Version/Area_<a>/<room>_<k>/<room>_<k>.txt
    Stanford3dDataset_v1.2_Aligned_Version/Area_<a>/<room>_<k>/Annotations/<class>_<i>.txt

Each line is `x y z r g b`. The room file holds the instance files' points, in the same order.
Val scenes go to Area_5 (the usual S3DIS test area), train scenes round-robin to areas 1-4 and 6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from beep3d.classes import S3DIS_NAMES
from beep3d.data.synthetic.scene import SyntheticScene
from beep3d.io import write_text_atomic

S3DIS_ROOT = "Stanford3dDataset_v1.2_Aligned_Version"
TRAIN_AREAS = (1, 2, 3, 4, 6)
VAL_AREA = 5
# Room names follow S3DIS's where it has the room type, our own otherwise.
S3DIS_ROOM_NAMES = {
    "office": "office",
    "kitchen": "pantry",
    "bathroom": "WC",
    "living_room": "lounge",
    "bedroom": "bedroom",
}


def _lines(xyz: np.ndarray, rgb: np.ndarray) -> str:
    """`x y z r g b` text, 6 decimals, vectorised (np.savetxt formats one value at a time)."""
    if len(xyz) == 0:
        return ""
    coords = np.char.mod("%.6f", xyz.astype(np.float64))
    colours = np.char.mod("%d", rgb.astype(np.int64))
    table = np.concatenate([coords, colours], axis=1)
    return "\n".join(" ".join(row) for row in table.tolist()) + "\n"


def write_room(root: Path, scene: SyntheticScene, area: int, room_name: str) -> Path:
    """Write one room; returns its folder."""
    folder = Path(root) / S3DIS_ROOT / f"Area_{area}" / room_name
    order = np.argsort(scene.s3dis_instance, kind="stable")
    inst_sorted = scene.s3dis_instance[order]
    starts = np.flatnonzero(np.r_[True, inst_sorted[1:] != inst_sorted[:-1]])
    ends = np.r_[starts[1:], len(order)]
    per_class: dict[int, int] = {}
    chunks = []
    for a, b in zip(starts, ends, strict=True):
        idx = order[a:b]
        cls = int(scene.s3dis_label[idx[0]])
        per_class[cls] = per_class.get(cls, 0) + 1
        text = _lines(scene.xyz[idx], scene.rgb[idx])
        write_text_atomic(folder / "Annotations" / f"{S3DIS_NAMES[cls]}_{per_class[cls]}.txt", text)
        chunks.append(text)
    write_text_atomic(folder / f"{room_name}.txt", "".join(chunks))
    return folder
