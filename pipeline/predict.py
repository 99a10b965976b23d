"""`beep3d predict`: run a trained model on one scan of one's own and write what it found.

Input: a PLY mesh (ScanNet's `_vh_clean_2.ply` or any triangle mesh) or a plain xyz + rgb point
cloud (binary or ASCII; float or double coordinates; uchar colours). Superpoints come from, in
this order: an explicit segs file; the ScanNet-style sibling `<stem>.0.010000.segs.json` (unless
the model was trained on computed superpoints, whose kind it should see again); our own
over-segmentation (`compute_superpoints`, with the params.yaml defaults below).

Axis alignment: the model's input features include xyz in metres, so the scan must be in the
frame of the training data (metres, z up, floor near z = 0, near the origin). ScanNet meshes are
stored in the scanner's frame; their meta file `<scene>.txt` carries the `axisAlignment` matrix
that the training data was aligned with. It is applied, in this order, from: an explicit file
(`--align`); the ScanNet-style sibling `<scene>.txt` of `<scene>_vh_clean_2.ply` (or `<stem>.txt`
of any other `<stem>.ply`); else none, and coordinates are used as stored (`--no-align` forces
that). On real ScanNet scene0000_00 the default model matched 3 real objects at IoU >= 0.5
without the alignment and 5 with it. A scan that still lies far from the training frame earns a
warning. The alignment only feeds the model: the output PLY keeps the input's own coordinates.

Output, per scan, in the output folder (each file written atomically; both or neither):
    <stem>_instances.ply   the input vertices (faces too, if any) coloured by instance: instance
                           k (k = rank by score) gets `instance_palette()[k]`, no instance grey;
                           a vertex in several masks takes the colour of the best-scoring one.
    <stem>_instances.json  {"input", "checkpoint", "n_points", "class_set", ..., "axis_alignment":
                           {"source", "matrix"}, "instances": [{"id", "class", "class_index",
                           "score", "n_points", "point_indices"}]} sorted by score (best first);
                           every mask keeps its full index list.

Several scans: `expand_scans` turns folders (their `*.ply` files) and glob patterns into files.
"""

from __future__ import annotations

import colorsys
import dataclasses
import glob
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beep3d.classes import CLASS_SETS, ClassSet
from beep3d.data.dataset import collate, make_sample
from beep3d.data.ply import PlyCloud, read_ply, write_ply
from beep3d.data.scannet import apply_axis_alignment, read_axis_alignment
from beep3d.data.scannet import read_segments as read_scannet_segments
from beep3d.data.superpoints import SuperpointConfig, compute_superpoints
from beep3d.engine import InferenceConfig, batch_to, predict_scenes
from beep3d.errors import DataError
from beep3d.eval import ScenePred
from beep3d.io import write_text_atomic
from pipeline.checkpoint import CheckpointError
from pipeline.scoring import scene_name
from pipeline.training import load_model

# params.yaml `preprocess.superpoints`: the over-segmentation the computed-superpoint data used.
DEFAULT_SUPERPOINTS = SuperpointConfig(
    voxel_size=0.04, k=0.3, normal_weight=1.0, color_weight=2.0, min_size=20
)
# ScanNet names its segment file after the mesh: <scene>_vh_clean_2.0.010000.segs.json.
SEGS_SUFFIX = ".0.010000.segs.json"
GLOB_CHARS = frozenset("*?[")
OUTPUT_PLY = "_instances.ply"
NO_INSTANCE_RGB = (128, 128, 128)
# Training scenes (ScanNet after axis alignment, the synthetic rooms) lie within a few metres of
# the origin with the floor at z ~ 0, and the model's input features include xyz: a trained model
# found 45 instances (AP50 0.10) on an aligned val room, but 11 (AP50 0.00) on the same room in
# its scanner frame (turned 129 degrees, centre 7.4 m from the origin, floor at z = 0.3 m).
# These bounds only decide when to warn.
_FAR_XY_M = 6.0
_FAR_FLOOR_M = 0.25
_TRAINED_MODEL_KEYS = ("model", "class_set", "data_loader", "inference")


@dataclass(frozen=True)
class PredictOptions:
    """What the command line may change; None keeps the checkpoint's own inference setting."""

    score_threshold: float | None = None  # drop instances scoring at or below this
    topk: int | None = None  # candidates kept per scan (over query x class pairs)
    min_points: int | None = None  # drop masks with fewer vertices
    nms_iou: float | None = None  # same-class mask NMS threshold; 0 = off
    mask_threshold: float | None = None  # mask probability a superpoint needs to join a mask
    superpoints: SuperpointConfig = DEFAULT_SUPERPOINTS  # used when the scan ships no segments


@dataclass
class TrainedModel:
    """A `save_model` file, loaded: the model plus what inference needs to prepare its input."""

    path: Path
    model: torch.nn.Module  # BoxInstanceModel in eval mode, on `device`
    device: torch.device
    class_set: ClassSet
    voxel_size: float  # the training loader's voxel edge (metres)
    superpoints: str  # "dataset" | "computed": which superpoints the model was trained on
    inference: dict[str, Any]  # topk, score_threshold, min_points, nms_iou, mask_threshold


@dataclass
class ScanResult:
    """What `predict_scan` wrote and found."""

    ply_path: Path
    json_path: Path
    n_points: int
    n_instances: int
    superpoint_source: str  # "segments <file>" or "computed"
    alignment_source: str  # "<meta file>" or "none (...)"
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Alignment:
    """The rigid transform applied to a scan before the model sees it."""

    matrix: np.ndarray | None  # (4, 4) float64, aligned = M @ [x y z 1]; None = used as stored
    source: str  # the meta file it came from, or "none (<why>)"


def expand_scans(args: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Scan files from command-line arguments, in order, each once; and (argument, reason) pairs
    for arguments that name nothing.

    A folder gives its `*.ply` files (sorted, not recursive; `*_instances.ply`, predict's own
    outputs, left out); an argument with `*`, `?` or `[`
    that is not itself a file is a glob pattern (`**` crosses folders); anything else is taken as a
    file (a missing one then fails in `predict_scan` with the usual message).
    """
    found: list[Path] = []
    empty: list[tuple[str, str]] = []
    for arg in map(str, args):
        path = Path(arg)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.ply") if p.is_file() and not p.name.endswith(OUTPUT_PLY))
            if not files:
                empty.append((arg, "folder holds no .ply files"))
        elif GLOB_CHARS & set(arg) and not path.exists():
            files = sorted(Path(p) for p in glob.glob(arg, recursive=True) if Path(p).is_file())
            if not files:
                empty.append((arg, "no file matches this pattern"))
        else:
            files = [path]
        found += files
    return list(dict.fromkeys(found)), empty


def sibling_meta(scan: Path) -> Path:
    """Where ScanNet keeps a mesh's meta file: `<scene>.txt` beside `<scene>_vh_clean_2.ply`."""
    return scan.with_name(scene_name(scan.stem) + ".txt")


def scan_alignment(scan: Path, align: Path | bool) -> Alignment:
    """The alignment to apply: `align` a meta file, True (look beside the scan) or False (none)."""
    if align is False:
        return Alignment(None, "none (--no-align)")
    meta = align if isinstance(align, Path) else sibling_meta(scan)
    if align is True and not meta.is_file():
        return Alignment(None, f"none (no {meta.name} beside the scan)")
    matrix = read_axis_alignment(meta, scan.stem)  # the preprocessing's reader: same checks, same errors
    if np.array_equal(matrix, np.eye(4)):
        return Alignment(None, f"none ({meta} has no axisAlignment, or an identity one)")
    return Alignment(matrix, str(meta))


def load_trained_model(path: str | Path, device: torch.device) -> TrainedModel:
    """Load a trained-model file (models/model.pt); CheckpointError naming the file if unusable."""
    path = Path(path)
    try:
        model, payload = load_model(path, device)
    except CheckpointError as err:
        if err.__cause__ is not None:  # torch could not unpickle it; its own text is a page long
            raise CheckpointError(
                f"{path}: not a beep3d checkpoint (torch cannot read it as a weights-only file: "
                f"{type(err.__cause__).__name__})"
            ) from err
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        # Weights or config that do not fit the model this code builds.
        raise CheckpointError(
            f"{path}: not a usable beep3d model file ({type(err).__name__}: {err})"
        ) from err
    missing = [k for k in _TRAINED_MODEL_KEYS if k not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: not a trained-model file (it lacks {', '.join(missing)}); a training resume "
            "state cannot be used for prediction, pass the model the train stage wrote (models/model.pt)"
        )
    class_set = CLASS_SETS.get(payload["class_set"])
    if class_set is None or class_set.num_classes != model.cfg.num_classes:
        raise CheckpointError(
            f"{path}: class set {payload['class_set']!r} does not fit a model with "
            f"{model.cfg.num_classes} classes"
        )
    return TrainedModel(
        path=path,
        model=model,
        device=device,
        class_set=class_set,
        voxel_size=float(payload["data_loader"]["voxel_size"]),
        superpoints=str(payload["data_loader"]["superpoints"]),
        inference=dict(payload["inference"]),
    )


def sibling_segments(scan: Path) -> Path:
    """Where ScanNet keeps a mesh's segments: `<stem>.0.010000.segs.json` beside it."""
    return scan.with_name(scan.stem + SEGS_SUFFIX)


def read_scan(path: Path) -> PlyCloud:
    """The scan's vertices (N, 3) float32 xyz, (N, 3) uint8 rgb, and faces; DataError if unusable."""
    cloud = read_ply(path, scene_id=path.stem)  # refuses missing colours, NaNs, broken files
    if len(cloud.xyz) == 0:
        raise DataError("PLY has no vertices", path=path, scene_id=path.stem)
    return cloud


def read_segments(path: Path, n_vertices: int, scene_id: str) -> np.ndarray:
    """(N,) int64 contiguous superpoint ids from a ScanNet segs file (`segIndices`, one per vertex)."""
    if not path.exists():
        raise DataError("segments file not found", path=path, scene_id=scene_id)
    # The ScanNet reader's own parser: same validation, same messages as in preprocessing.
    return read_scannet_segments(path, scene_id, n_vertices).contiguous.astype(np.int64)


def scan_superpoints(
    scan: Path, cloud: PlyCloud, trained_on: str, segments: Path | None, cfg: SuperpointConfig
) -> tuple[np.ndarray, str]:
    """(N,) int64 superpoint per vertex and where it came from (see the module docstring)."""
    if segments is None and trained_on == "dataset" and sibling_segments(scan).exists():
        segments = sibling_segments(scan)
    if segments is not None:
        return read_segments(segments, len(cloud.xyz), scan.stem), f"segments {segments}"
    return compute_superpoints(cloud.xyz, cloud.rgb, cfg).astype(np.int64), "computed"


def frame_warnings(scan: Path, xyz: np.ndarray) -> list[str]:
    """Warnings when the scan clearly lies outside the frame the model was trained in."""
    centre = (xyz.min(axis=0) + xyz.max(axis=0)) / 2
    out = []
    if float(np.hypot(centre[0], centre[1])) > _FAR_XY_M:
        out.append(
            f"{scan}: the scan's centre is {float(np.hypot(centre[0], centre[1])):.0f} m from the origin "
            "in xy; the model saw rooms near the origin, so shift the scan there first"
        )
    if abs(float(xyz[:, 2].min())) > _FAR_FLOOR_M:
        out.append(
            f"{scan}: the lowest point is at z = {float(xyz[:, 2].min()):.2f} m; the model saw floors "
            "at z = 0 with z up, so align the scan first, e.g. with --align <its ScanNet meta file> "
            "(predictions degrade badly otherwise)"
        )
    return out


def inference_config(trained: TrainedModel, options: PredictOptions) -> InferenceConfig:
    """The checkpoint's inference settings with the command line's overrides applied."""
    saved = trained.inference
    return InferenceConfig(
        topk=int(saved["topk"] if options.topk is None else options.topk),
        score_threshold=float(
            saved["score_threshold"] if options.score_threshold is None else options.score_threshold
        ),
        min_points=int(saved["min_points"] if options.min_points is None else options.min_points),
        # Model files written before NMS existed were evaluated without it: keep that behaviour.
        nms_iou=float(saved.get("nms_iou", 0.0) if options.nms_iou is None else options.nms_iou),
        # Model files written before the threshold was a setting used 0.5.
        mask_threshold=float(
            saved.get("mask_threshold", 0.5) if options.mask_threshold is None else options.mask_threshold
        ),
    )


def run_model(
    trained: TrainedModel, scene_id: str, cloud: PlyCloud, superpoint: np.ndarray, cfg: InferenceConfig
) -> ScenePred:
    """Instances over the scan's N vertices: masks (K, N) CSR bool, classes (K,), scores (K,)."""
    sample = make_sample(scene_id, cloud.xyz, cloud.rgb, superpoint, trained.voxel_size)
    batch = batch_to(collate([sample]), trained.device)
    (pred,) = predict_scenes(trained.model, batch, cfg)
    return pred


def instance_palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours; colour k depends on k alone, consecutive ones far apart in hue.

    Hues step by the golden ratio of the circle, and saturation / brightness cycle through three
    levels, so neighbouring ranks never look alike and no colour is grey.
    """
    out = np.empty((n, 3), np.uint8)
    for k in range(n):
        hue = (k * 0.618033988749895) % 1.0
        sat = (0.85, 0.6, 1.0)[k % 3]
        val = (0.95, 0.8, 0.65)[(k // 3) % 3]
        out[k] = np.round(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255)
    return out


def color_by_instance(n_points: int, masks: Any) -> np.ndarray:
    """(N, 3) uint8: each vertex in the colour of the first (best-scoring) mask holding it.

    masks: (K, N) scipy CSR bool, rows sorted by score, best first.
    """
    owner = np.full(n_points, -1, np.int64)  # (N,) rank of the best mask holding the vertex
    for k in reversed(range(masks.shape[0])):  # best mask painted last, so it wins
        owner[masks.indices[masks.indptr[k] : masks.indptr[k + 1]]] = k
    colors = np.empty((n_points, 3), np.uint8)
    colors[:] = NO_INSTANCE_RGB
    colors[owner >= 0] = instance_palette(masks.shape[0])[owner[owner >= 0]]
    return colors


def instances_json(pred: ScenePred, class_set: ClassSet) -> list[dict[str, Any]]:
    """One dict per mask of `pred` (already best first), with its full sorted vertex index list."""
    masks = pred.masks
    out = []
    for k in range(masks.shape[0]):
        idx = np.sort(masks.indices[masks.indptr[k] : masks.indptr[k + 1]])
        c = int(pred.classes[k])
        out.append(
            {
                "id": k,
                "class": class_set.instance_names[c],
                "class_index": c,
                "score": float(pred.scores[k]),
                "n_points": len(idx),
                "point_indices": idx.tolist(),
            }
        )
    return out


def _json_text(header: dict[str, Any], instances: list[dict[str, Any]]) -> str:
    """Indented header, then one instance per line: millions of indices stay one line each."""
    head = json.dumps(header, indent=2)[:-2]  # without the closing "\n}"
    if not instances:
        return head + ',\n  "instances": []\n}\n'
    body = ",\n".join("    " + json.dumps(inst) for inst in instances)
    return head + ',\n  "instances": [\n' + body + "\n  ]\n}\n"


def _sorted_by_score(pred: ScenePred) -> ScenePred:
    masks = pred.masks.tocsr()
    order = np.argsort(-pred.scores, kind="stable")
    return ScenePred(pred.scene_id, masks[order].tocsr(), pred.classes[order], pred.scores[order])


def output_paths(scan: Path, out_dir: Path) -> tuple[Path, Path]:
    """`<stem>_instances.ply` and `<stem>_instances.json` in out_dir."""
    return out_dir / f"{scan.stem}{OUTPUT_PLY}", out_dir / f"{scan.stem}_instances.json"


def output_clashes(scans: list[Path], out_dir: Path) -> list[str]:
    """Pairs of scans whose outputs would overwrite each other (one file name, two folders)."""
    seen: dict[Path, Path] = {}
    clashes = []
    for scan in scans:
        ply, _ = output_paths(scan, out_dir)
        if ply in seen:
            clashes.append(f"{seen[ply]} and {scan}")
        seen.setdefault(ply, scan)
    return clashes


def predict_scan(
    scan: str | Path,
    trained: TrainedModel,
    out_dir: str | Path,
    options: PredictOptions | None = None,
    segments: str | Path | None = None,
    align: str | Path | bool = True,
) -> ScanResult:
    """Predict instances on one PLY scan and write `<stem>_instances.ply` / `.json` into out_dir.

    align: a ScanNet meta file whose axisAlignment to apply, True to use the scan's sibling
    `<scene>.txt` when there is one, False for none. Raises DataError (naming the file) before
    anything is written; if writing the JSON fails, the PLY just written is removed again.
    """
    started = time.perf_counter()
    options = options or PredictOptions()
    scan, out_dir = Path(scan), Path(out_dir)
    cloud = read_scan(scan)
    alignment = scan_alignment(scan, Path(align) if isinstance(align, str | Path) else align)
    model_cloud = cloud  # the model's input: aligned when there is an alignment
    if alignment.matrix is not None:
        xyz = apply_axis_alignment(cloud.xyz, alignment.matrix, Path(alignment.source), scan.stem)
        model_cloud = dataclasses.replace(cloud, xyz=xyz)
    superpoint, source = scan_superpoints(  # computed ones, like preprocessing's, on aligned points
        scan,
        model_cloud,
        trained.superpoints,
        None if segments is None else Path(segments),
        options.superpoints,
    )
    cfg = inference_config(trained, options)
    pred = _sorted_by_score(run_model(trained, scan.stem, model_cloud, superpoint, cfg))
    n = len(cloud.xyz)
    ply_path, json_path = output_paths(scan, out_dir)
    header = {
        "input": str(scan),
        "checkpoint": str(trained.path),
        "n_points": n,
        "class_set": trained.class_set.name,
        "superpoints": source,
        "n_superpoints": int(superpoint.max()) + 1,
        "voxel_size": trained.voxel_size,
        "device": str(trained.device),
        "inference": dataclasses.asdict(cfg),
        "axis_alignment": {
            "source": alignment.source,
            "matrix": None if alignment.matrix is None else alignment.matrix.tolist(),
        },
    }
    text = _json_text(header, instances_json(pred, trained.class_set))  # built before any write
    write_ply(ply_path, cloud.xyz, color_by_instance(n, pred.masks), cloud.faces)
    try:
        write_text_atomic(json_path, text)
    except BaseException:
        ply_path.unlink(missing_ok=True)  # both outputs or neither
        raise
    return ScanResult(
        ply_path=ply_path,
        json_path=json_path,
        n_points=n,
        n_instances=pred.masks.shape[0],
        superpoint_source=source,
        alignment_source=alignment.source,
        seconds=time.perf_counter() - started,
        warnings=frame_warnings(scan, model_cloud.xyz),
    )
