"""`beep3d evaluate`: score a folder of predictions against one's own ScanNet-layout ground truth.

Predictions come in either format this project writes:

    json        <stem>_instances.json from `beep3d predict` (class_index, score, point_indices);
                the scene id is the scan's stem without ScanNet's mesh suffix, so
                scene0707_00_vh_clean_2_instances.json scores scene0707_00
    submission  the ScanNet benchmark format (`<scene>.txt` + predicted_masks/), as the evaluate
                stage writes it (beep3d/eval/submission.py)

Ground truth is a ScanNet-layout folder (README "Real data"): `scans/<scene>/` with the mesh,
segs.json and aggregation.json, and `scannetv2-labels.combined.tsv`; it is read with the same
reader as preprocessing, so labels map to the 18 benchmark classes exactly as in training. Scores
come from the project's evaluator (the ScanNet protocol, on every mesh vertex), one scene at a
time, so memory is bounded by the largest scene.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse

from beep3d.classes import CLASS_SETS, SCANNET, ClassSet
from beep3d.data.scannet import SCENE_ID_RE, read_label_map, read_scannet_scene, read_splits, split_file
from beep3d.errors import DataError
from beep3d.eval import Evaluator, SceneGT, ScenePred, read_submission
from pipeline.report import gt_counts_per_class

# ScanNet's meshes are <scene><suffix>.ply; the scene's meta file is <scene>.txt.
MESH_SUFFIXES = ("_vh_clean_2", "_vh_clean")
JSON_SUFFIX = "_instances.json"
Format = Literal["json", "submission"]


def scene_name(stem: str) -> str:
    """A mesh's scene name: `scene0000_00_vh_clean_2` -> `scene0000_00`; other stems unchanged."""
    for suffix in MESH_SUFFIXES:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def find_predictions(folder: Path, fmt: Format | Literal["auto"] = "auto") -> tuple[Format, dict[str, Path]]:
    """The format and {scene id: file} of the predictions in `folder`; DataError if none or mixed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("predictions folder not found", path=folder)
    found: dict[Format, dict[str, Path]] = {"json": {}, "submission": {}}
    for path in sorted(folder.glob(f"*{JSON_SUFFIX}")):
        scene_id = scene_name(path.name[: -len(JSON_SUFFIX)])
        if scene_id in found["json"]:
            raise DataError(
                f"two prediction files for scene {scene_id}: {found['json'][scene_id].name}", path=path
            )
        found["json"][scene_id] = path
    for path in sorted(folder.glob("*.txt")):
        if SCENE_ID_RE.match(path.stem):
            found["submission"][path.stem] = path
    if fmt == "auto":
        present = [name for name, scenes in found.items() if scenes]
        if len(present) > 1:
            raise DataError(
                "folder holds both *_instances.json and submission files; pass --format", path=folder
            )
        if not present:
            raise DataError(
                f"no predictions: neither *{JSON_SUFFIX} (beep3d predict) nor sceneXXXX_YY.txt "
                "(ScanNet submission format) files",
                path=folder,
            )
        fmt = present[0]
    if not found[fmt]:
        raise DataError(f"no predictions in the {fmt} format", path=folder)
    for scene_id in found[fmt]:
        if not SCENE_ID_RE.match(scene_id):
            raise DataError(
                f"{scene_id!r} is not a ScanNet scene id (sceneXXXX_YY)", path=found[fmt][scene_id]
            )
    return fmt, found[fmt]


def read_instances_json(path: Path, scene_id: str, class_set: ClassSet, n_vertices: int) -> ScenePred:
    """A `beep3d predict` JSON as a ScenePred with (K, N) CSR masks; DataError naming the file."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read predictions JSON: {err}", path=path, scene_id=scene_id) from err
    if not isinstance(doc, dict) or not isinstance(doc.get("instances"), list):
        raise DataError("not a beep3d predict file (no 'instances' list)", path=path, scene_id=scene_id)
    if CLASS_SETS.get(doc.get("class_set")) is not class_set:
        raise DataError(
            f"predictions use class set {doc.get('class_set')!r}, the ground truth {class_set.name!r}",
            path=path,
            scene_id=scene_id,
        )
    if doc.get("n_points") != n_vertices:
        raise DataError(
            f"predictions cover {doc.get('n_points')} points but the scene's mesh has {n_vertices} vertices "
            "(predict on the scene's own _vh_clean_2.ply)",
            path=path,
            scene_id=scene_id,
        )
    rows, cols, classes, scores = [], [], [], []
    for k, inst in enumerate(doc["instances"]):
        try:
            idx = np.asarray(inst["point_indices"], np.int64)
            c, score = int(inst["class_index"]), float(inst["score"])
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"instance {k}: unreadable ({err})", path=path, scene_id=scene_id) from err
        if idx.ndim != 1 or (len(idx) and (idx.min() < 0 or idx.max() >= n_vertices)):
            raise DataError(
                f"instance {k}: point indices outside 0..{n_vertices - 1}", path=path, scene_id=scene_id
            )
        if not 0 <= c < class_set.num_classes:
            raise DataError(
                f"instance {k}: class_index {c} outside the class set", path=path, scene_id=scene_id
            )
        rows.append(np.full(len(idx), k, np.int64))
        cols.append(idx)
        classes.append(c)
        scores.append(score)
    k = len(classes)
    masks = scipy.sparse.csr_matrix(
        (np.ones(sum(map(len, cols)), bool), (np.concatenate(rows or [[]]), np.concatenate(cols or [[]]))),
        shape=(k, n_vertices),
    )
    return ScenePred(scene_id, masks, np.asarray(classes, np.int64), np.asarray(scores, np.float64))


@dataclass
class FolderScores:
    result: dict  # Evaluator.result()
    gt_counts: dict[str, int]  # class name -> ground-truth instances the evaluator counted
    fmt: Format
    scene_ids: list[str]  # scored, sorted
    ignored: list[str]  # predicted scenes outside the requested split


def score_folder(
    predictions: Path, gt_root: Path, fmt: Format | Literal["auto"] = "auto", split: str | None = None
) -> FolderScores:
    """Score every predicted scene (or, with `split`, every scene of `scannetv2_<split>.txt` in
    gt_root, each of which then needs a prediction) against gt_root's annotation."""
    gt_root = Path(gt_root)
    fmt, files = find_predictions(Path(predictions), fmt)
    label_map = read_label_map(gt_root / "scannetv2-labels.combined.tsv")
    splits = read_splits(gt_root)
    if split is None:
        scene_ids = sorted(files)
    else:
        if not split_file(gt_root, split).is_file():
            raise DataError(f"no split file for {split!r}", path=split_file(gt_root, split))
        scene_ids = sorted(s for s, which in splits.items() if which == split)
        missing = [s for s in scene_ids if s not in files]
        if missing:
            raise DataError(
                f"{len(missing)} scene(s) of the {split} split have no prediction: {', '.join(missing[:5])}"
                + (", ..." if len(missing) > 5 else ""),
                path=predictions,
            )
    evaluator = Evaluator(SCANNET)
    counts = np.zeros(SCANNET.num_classes, np.int64)
    for scene_id in scene_ids:
        which = splits.get(scene_id, "val")  # a scene no split file lists is read from scans/ as val
        if which == "test":
            raise DataError(
                "test scenes have no annotation to score against", path=gt_root, scene_id=scene_id
            )
        scene = read_scannet_scene(gt_root, scene_id, which, label_map)
        gt = SceneGT(scene_id, scene.label.astype(np.int64), scene.instance.astype(np.int64))
        if fmt == "json":
            pred = read_instances_json(files[scene_id], scene_id, SCANNET, gt.n_vertices)
        else:
            pred = read_submission(Path(predictions), scene_id, SCANNET, n_vertices=gt.n_vertices)
        evaluator.add(gt, pred)
        counts += gt_counts_per_class(gt.label, gt.instance, SCANNET)
    names = dict(zip(SCANNET.instance_names, counts.tolist(), strict=True))
    ignored = sorted(set(files) - set(scene_ids))
    return FolderScores(evaluator.result(), names, fmt, scene_ids, ignored)
