"""Write scenes in ScanNet v2's raw layout (DESIGN.md section 2), one scene folder at a time.

scans/<scene>/<scene>_vh_clean_2.ply                     binary mesh, xyz + rgba, triangles
scans/<scene>/<scene>_vh_clean_2.0.010000.segs.json      segIndices: one segment id per vertex
scans/<scene>/<scene>.aggregation.json                   segGroups: objects as unions of segments
scans/<scene>/<scene>.txt                                meta, with axisAlignment
scans_test/<scene>/...                                   test scenes: no aggregation, no alignment
scannetv2-labels.combined.tsv, scannetv2_{train,val,test}.txt
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from beep3d.data.ply import write_ply
from beep3d.data.synthetic.categories import scannet_label_tsv
from beep3d.data.synthetic.scene import SCANNET_SCENE_TYPES, SyntheticScene
from beep3d.io import write_text_atomic

SEGS_SUFFIX = "_vh_clean_2.0.010000.segs.json"
# The over-segmentation parameters ScanNet records; ours are emulated, kept for a familiar file.
SEGS_PARAMS = {
    "kThresh": "0.01",
    "segMinVerts": "20",
    "minPoints": "750",
    "maxPoints": "5000",
    "thinThresh": "0.05",
    "flatThresh": "0.001",
    "minLength": "0.02",
    "maxLength": "1",
}


def scene_dir(root: Path, scene: SyntheticScene) -> Path:
    return Path(root) / ("scans_test" if scene.split == "test" else "scans") / scene.scene_id


def _meta_text(scene: SyntheticScene) -> str:
    lines = []
    if scene.split != "test":
        lines.append("axisAlignment = " + " ".join(f"{v:.6f}" for v in scene.axis_alignment.ravel()) + " ")
    # Camera figures of ScanNet's capture rig, as a real meta file carries them.
    lines += [
        "colorHeight = 968", "colorWidth = 1296", "depthHeight = 480", "depthWidth = 640",
        "fx_color = 1170.187988", "fx_depth = 571.623718", "fy_color = 1170.187988", "fy_depth = 571.623718",
        "mx_color = 647.750000", "mx_depth = 319.500000", "my_color = 483.750000", "my_depth = 239.500000",
        f"sceneType = {SCANNET_SCENE_TYPES[scene.room_type]}",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _aggregation(scene: SyntheticScene) -> dict:
    """segGroups in objectId order; each object = the segments whose vertices it labels."""
    annotated = scene.instance > 0
    pairs = np.unique(np.stack([scene.instance[annotated], scene.segment[annotated]], axis=1), axis=0)
    groups = []
    for it in scene.items:
        if it.object_id < 0:
            continue
        segs = pairs[pairs[:, 0] == it.object_id + 1, 1]
        groups.append(
            {
                "id": it.object_id,
                "objectId": it.object_id,
                "segments": [int(s) for s in segs],
                "label": it.raw_category,
            }
        )
    return {
        "sceneId": f"scannet.{scene.scene_id}",
        "appId": "Aggregator.v2",
        "segGroups": groups,
        "segmentsFile": f"scannet.{scene.scene_id}{SEGS_SUFFIX}",
    }


def write_scene(root: Path, scene: SyntheticScene) -> Path:
    """Write one scene's files (atomically each); returns its folder."""
    folder = scene_dir(root, scene)
    sid = scene.scene_id
    write_ply(folder / f"{sid}_vh_clean_2.ply", scene.xyz_stored, scene.rgb, scene.faces)
    segs = {"params": SEGS_PARAMS, "sceneId": sid, "segIndices": scene.segment.tolist()}
    write_text_atomic(folder / f"{sid}{SEGS_SUFFIX}", json.dumps(segs))
    if scene.split != "test":
        write_text_atomic(folder / f"{sid}.aggregation.json", json.dumps(_aggregation(scene)))
    write_text_atomic(folder / f"{sid}.txt", _meta_text(scene))
    return folder


def write_index(root: Path, splits: dict[str, list[str]], raw_counts: dict[str, int]) -> None:
    """The label table and the three split lists."""
    root = Path(root)
    write_text_atomic(root / "scannetv2-labels.combined.tsv", scannet_label_tsv(raw_counts))
    for split in ("train", "val", "test"):
        ids = splits.get(split, [])
        write_text_atomic(root / f"scannetv2_{split}.txt", "".join(f"{s}\n" for s in ids))
