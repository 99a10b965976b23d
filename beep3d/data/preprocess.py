"""Preprocessing: raw scenes -> the Parquet tables of `beep3d.data.schema`.

Per scene (`process_scene`, no I/O): superpoints (the source's segments, or our own when it has
none), our own superpoints again for the audit column when asked, voxels at `voxel_size`,
axis-aligned boxes and the overlap counts behind the box-supervision difficulty figures.

The driver (`run_preprocess`) finds the raw layout, runs one job per scene in a process pool
(each worker reads one scene, processes it and writes its points file itself, so the parent
only receives small results: box rows, the scene row, counts) and finally writes, atomically,
`boxes.parquet`, `scenes.parquet`, `stats.json` and `skipped.json`. Output does not depend on
the worker count: every table is ordered by scene id.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from beep3d.classes import CLASS_SETS
from beep3d.data import s3dis, scannet
from beep3d.data.boxes import Boxes, OverlapCounts, extract_boxes, overlap_counts
from beep3d.data.scene import RawScene
from beep3d.data.schema import BOXES_SCHEMA, POINTS_SCHEMA, SCENES_SCHEMA, points_path, write_table
from beep3d.data.superpoints import SuperpointConfig, compute_superpoints
from beep3d.data.voxelize import voxelize
from beep3d.errors import DataError
from beep3d.io import write_json_atomic

SUMMARY_FILES = ("boxes.parquet", "scenes.parquet", "stats.json", "skipped.json")
S3DIS_VAL_AREA = 5  # the standard S3DIS protocol: Area 5 is held out


@dataclass(frozen=True)
class PreprocessConfig:
    """params.yaml `preprocess`."""

    voxel_size: float  # metres; the `voxel` column indexes voxels of this size (0.02 for ScanNet)
    workers: int  # scene-parallel processes; 1 runs in-process (easiest to debug), 0 = one per CPU
    on_error: Literal["fail", "skip"]  # a bad scene aborts the stage, or is listed in skipped.json
    computed_superpoints: bool  # fill `superpoint_computed` with our own segments (else -1 everywhere)
    superpoints: SuperpointConfig  # our over-segmentation: sources without segments, and the audit column

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"preprocess.voxel_size must be > 0, got {self.voxel_size}")
        if self.workers < 0:
            raise ValueError(f"preprocess.workers must be >= 0 (0 = one per CPU), got {self.workers}")


@dataclass
class ScenePiece:
    """Everything preprocessing derives from one scene."""

    scene_id: str
    split: str
    points: pa.Table  # (N rows) POINTS_SCHEMA, one row per original vertex
    boxes: pa.Table  # (B rows) BOXES_SCHEMA, sorted by box_id
    scene_row: dict[str, object]  # one SCENES_SCHEMA row
    overlap: OverlapCounts  # object-class boxes only, see `overlap_counts`
    n_superpoints_computed: int  # 0 when `superpoint_computed` is not filled


def process_scene(scene: RawScene, cfg: PreprocessConfig) -> ScenePiece:
    """One RawScene -> its points table, box rows, scene row and overlap counts (no I/O)."""
    if scene.n_points == 0:
        raise DataError("scene has no points", scene_id=scene.scene_id)
    computed = None
    if cfg.computed_superpoints or scene.superpoint is None:
        computed = compute_superpoints(scene.xyz, scene.rgb, cfg.superpoints)  # (N,)
    superpoint = scene.superpoint if scene.superpoint is not None else computed
    audit = computed if cfg.computed_superpoints else np.full(scene.n_points, -1, np.int32)
    coords, voxel = voxelize(scene.xyz, cfg.voxel_size)  # (V, 3), (N,)
    if scene.class_set not in CLASS_SETS:
        raise ValueError(
            f"scene {scene.scene_id}: unknown class set {scene.class_set!r}; expected {list(CLASS_SETS)}"
        )
    class_set = CLASS_SETS[scene.class_set]
    boxes = extract_boxes(scene.xyz, scene.label, scene.instance, class_set)
    overlap = overlap_counts(scene.xyz, scene.label, scene.instance, class_set, boxes=boxes)
    row = {
        "scene_id": scene.scene_id,
        "split": scene.split,
        "class_set": scene.class_set,
        "n_points": scene.n_points,
        "n_voxels": len(coords),
        "n_superpoints": int(superpoint.max()) + 1,
        "n_boxes": len(boxes),
    }
    return ScenePiece(
        scene_id=scene.scene_id,
        split=scene.split,
        points=points_table(scene, superpoint, audit, voxel),
        boxes=boxes_table(scene.scene_id, boxes),
        scene_row=row,
        overlap=overlap,
        n_superpoints_computed=int(audit.max()) + 1 if cfg.computed_superpoints else 0,
    )


def points_table(
    scene: RawScene, superpoint: np.ndarray, superpoint_computed: np.ndarray, voxel: np.ndarray
) -> pa.Table:
    """The POINTS_SCHEMA table of one scene; superpoint, superpoint_computed, voxel: (N,)."""
    n = scene.n_points
    columns = {
        "scene_id": _repeated_string(scene.scene_id, n),
        "x": pa.array(np.ascontiguousarray(scene.xyz[:, 0])),
        "y": pa.array(np.ascontiguousarray(scene.xyz[:, 1])),
        "z": pa.array(np.ascontiguousarray(scene.xyz[:, 2])),
        "r": pa.array(np.ascontiguousarray(scene.rgb[:, 0])),
        "g": pa.array(np.ascontiguousarray(scene.rgb[:, 1])),
        "b": pa.array(np.ascontiguousarray(scene.rgb[:, 2])),
        "superpoint": pa.array(superpoint.astype(np.int32, copy=False)),
        "superpoint_computed": pa.array(superpoint_computed.astype(np.int32, copy=False)),
        "label": pa.array(scene.label),
        "instance": pa.array(scene.instance),
        "voxel": pa.array(voxel.astype(np.int32)),
    }
    return pa.table(columns, schema=POINTS_SCHEMA)


def _repeated_string(value: str, n: int) -> pa.Array:
    """A string column holding `value` n times, built from buffers (pa.array on a list is ~100x slower)."""
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data * n))


def boxes_table(scene_id: str, boxes: Boxes) -> pa.Table:
    """The BOXES_SCHEMA rows of one scene's boxes."""
    columns = {
        "scene_id": _repeated_string(scene_id, len(boxes)),
        "box_id": pa.array(boxes.box_id),
        "label": pa.array(boxes.label),
        "is_background": pa.array(boxes.is_background),
        **{name: pa.array(boxes.center[:, i].copy()) for i, name in enumerate(("cx", "cy", "cz"))},
        **{name: pa.array(boxes.size[:, i].copy()) for i, name in enumerate(("dx", "dy", "dz"))},
        "n_points": pa.array(boxes.n_points),
    }
    return pa.table(columns, schema=BOXES_SCHEMA)


def write_points(piece: ScenePiece, out_dir: Path) -> Path:
    """Write `out_dir/points/<scene_id>.parquet` atomically; returns its path."""
    path = points_path(out_dir, piece.scene_id)
    write_table(piece.points, path, POINTS_SCHEMA)
    return path


# --- the driver --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneJob:
    """What a worker needs to read one scene (small and picklable)."""

    scene_id: str
    layout: Literal["scannet", "s3dis"]
    root: Path  # the ScanNet root, or the Stanford3dDataset_v1.2_Aligned_Version folder
    split: str = ""  # ScanNet: from the split files; S3DIS: decided by the reader from the area
    area: str = ""  # S3DIS only
    room: str = ""  # S3DIS only
    label_map: dict[str, int] = field(default_factory=dict)  # ScanNet raw category -> nyu40 id


@dataclass
class SceneOutcome:
    """A worker's answer: the small per-scene results, or the error that stopped the scene."""

    scene_id: str
    split: str = ""
    boxes: pa.Table | None = None
    scene_row: dict[str, object] | None = None
    overlap: OverlapCounts = field(default_factory=OverlapCounts)
    n_superpoints_computed: int = 0
    error: str | None = None  # DataError.reason
    error_path: str | None = None


def find_jobs(raw_dir: Path) -> list[SceneJob]:
    """One job per scene of the raw layout found in raw_dir, sorted by scene id."""
    raw_dir = Path(raw_dir)
    is_scannet = (raw_dir / "scans").is_dir() or any(
        scannet.split_file(raw_dir, split).exists() for split in scannet.SPLITS
    )
    s3dis_root = raw_dir / s3dis.S3DIS_ROOT_NAME
    is_s3dis = s3dis_root.is_dir()
    if is_scannet and is_s3dis:
        raise DataError(
            f"raw folder holds both a ScanNet layout (scans/, scannetv2_*.txt) and {s3dis.S3DIS_ROOT_NAME}/; "
            "keep one source per raw folder",
            path=raw_dir,
        )
    if is_scannet:
        label_map = scannet.read_label_map(raw_dir / scannet.LABEL_MAP_NAME)
        splits = scannet.read_splits(raw_dir)
        if not splits:
            raise DataError("no scenes listed: scannetv2_{train,val,test}.txt missing or empty", path=raw_dir)
        return [
            SceneJob(sid, "scannet", raw_dir, split=splits[sid], label_map=label_map)
            for sid in sorted(splits)
        ]
    if is_s3dis:
        rooms = s3dis.list_rooms(s3dis_root)
        jobs = [SceneJob(s3dis.s3dis_scene_id(a, r), "s3dis", s3dis_root, area=a, room=r) for a, r in rooms]
        return sorted(jobs, key=lambda job: job.scene_id)
    raise DataError(
        f"no raw data found: expected a ScanNet layout (scans/ or scannetv2_*.txt) or {s3dis.S3DIS_ROOT_NAME}/",
        path=raw_dir,
    )


def read_job(job: SceneJob) -> RawScene:
    if job.layout == "scannet":
        return scannet.read_scannet_scene(job.root, job.scene_id, job.split, job.label_map)
    return s3dis.read_s3dis_room(job.root, job.area, job.room, val_area=S3DIS_VAL_AREA)


def run_job(job: SceneJob, out_dir: Path, cfg: PreprocessConfig) -> SceneOutcome:
    """Read, process and write one scene (top level so that spawned workers can import it).

    Bad input (DataError) comes back as an outcome; anything else is a bug and propagates.
    """
    try:
        piece = process_scene(read_job(job), cfg)
        write_points(piece, out_dir)
    except DataError as err:
        path = None if err.path is None else str(err.path)
        return SceneOutcome(job.scene_id, job.split, error=err.reason, error_path=path)
    return SceneOutcome(
        job.scene_id, piece.split, piece.boxes, piece.scene_row, piece.overlap, piece.n_superpoints_computed
    )


def _relative(path: str | None, root: Path) -> str | None:
    """A path relative to the raw folder, so skipped.json is the same on every machine."""
    if path is None:
        return None
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path


def run_preprocess(raw_dir: Path, out_dir: Path, cfg: PreprocessConfig, progress: bool = True) -> dict:
    """Preprocess every scene under raw_dir into out_dir (which this function owns).

    Returns {"stats": the stats.json content, "skipped": the skipped.json list}. With
    on_error="fail" the first bad scene raises its DataError and no summary table is written.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    jobs = find_jobs(raw_dir)
    points_dir = out_dir / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    # Summaries of an earlier run must not outlive a failed one next to newer points files.
    for name in SUMMARY_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for leftover in points_dir.glob(".*.tmp"):  # from a killed worker; atomic writes leave none otherwise
        leftover.unlink()
    outcomes = _run_jobs(jobs, out_dir, cfg, progress)
    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:  # a failed scene leaves no points file, not even an old one
        points_path(out_dir, outcome.scene_id).unlink(missing_ok=True)
    if failed and cfg.on_error == "fail":
        first = failed[0]
        raise DataError(first.error or "", path=first.error_path, scene_id=first.scene_id)
    done = [o for o in outcomes if o.error is None]
    keep = {o.scene_id for o in done}
    for stale in points_dir.glob("*.parquet"):
        if stale.stem not in keep:
            stale.unlink()
    skipped = [
        {"scene_id": o.scene_id, "file": _relative(o.error_path, raw_dir), "error": o.error} for o in failed
    ]
    tables = [o.boxes for o in done if o.boxes is not None]
    write_table(
        pa.concat_tables(tables) if tables else BOXES_SCHEMA.empty_table(),
        out_dir / "boxes.parquet",
        BOXES_SCHEMA,
    )
    scenes = pa.Table.from_pylist([o.scene_row for o in done], schema=SCENES_SCHEMA)
    write_table(scenes, out_dir / "scenes.parquet", SCENES_SCHEMA)
    stats = dataset_stats(done, cfg, n_skipped=len(skipped))
    write_json_atomic(out_dir / "stats.json", stats)
    write_json_atomic(out_dir / "skipped.json", skipped)
    return {"stats": stats, "skipped": skipped}


def _run_jobs(
    jobs: list[SceneJob], out_dir: Path, cfg: PreprocessConfig, progress: bool
) -> list[SceneOutcome]:
    """Outcomes in job order. With on_error="fail", stops at the first failure (those done are kept)."""
    workers = cfg.workers or os.cpu_count() or 1
    bar = tqdm(total=len(jobs), desc="preprocess", unit="scene", disable=not progress)
    outcomes: dict[str, SceneOutcome] = {}
    try:
        if workers == 1:
            for job in jobs:
                outcome = outcomes[job.scene_id] = run_job(job, out_dir, cfg)
                bar.update()
                if outcome.error is not None and cfg.on_error == "fail":
                    break
        else:
            _run_pool(jobs, out_dir, cfg, min(workers, len(jobs)), outcomes, bar)
    finally:
        bar.close()
    return [outcomes[job.scene_id] for job in jobs if job.scene_id in outcomes]


def _run_pool(
    jobs: list[SceneJob],
    out_dir: Path,
    cfg: PreprocessConfig,
    workers: int,
    outcomes: dict[str, SceneOutcome],
    bar: tqdm,
) -> None:
    # "spawn": forking a parent that has started pyarrow/BLAS threads can deadlock the children.
    pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(run_job, job, out_dir, cfg) for job in jobs]
        for future in cf.as_completed(futures):
            outcome = future.result()
            outcomes[outcome.scene_id] = outcome
            bar.update()
            if outcome.error is not None and cfg.on_error == "fail":
                break
    finally:
        # Drop queued scenes at once (on failure or Ctrl-C); running ones finish their scene.
        pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:  # scenes that finished while stopping still count (and may have failed)
        if future.done() and not future.cancelled() and future.exception() is None:
            outcome = future.result()
            outcomes.setdefault(outcome.scene_id, outcome)


def dataset_stats(done: list[SceneOutcome], cfg: PreprocessConfig, n_skipped: int) -> dict:
    """stats.json: per split and overall counts and the box-overlap figures (object boxes only)."""
    groups: dict[str, list[SceneOutcome]] = {}
    for outcome in done:
        groups.setdefault(outcome.split, []).append(outcome)
    stats: dict[str, object] = {
        "voxel_size": cfg.voxel_size,
        "computed_superpoints": cfg.computed_superpoints,
        "scenes": len(done),
        "skipped": n_skipped,
        "splits": {split: _split_stats(groups[split]) for split in sorted(groups)},
        "all": _split_stats(done),
    }
    return stats


def _split_stats(outcomes: list[SceneOutcome]) -> dict:
    rows = [o.scene_row for o in outcomes if o.scene_row is not None]
    tables = [o.boxes for o in outcomes if o.boxes is not None]
    boxes = pa.concat_tables(tables) if tables else BOXES_SCHEMA.empty_table()
    is_background = boxes.column("is_background").to_numpy(zero_copy_only=False)  # (B,)
    object_labels = boxes.column("label").to_numpy()[~is_background]
    names: dict[int, str] = {}
    for class_set in {str(r["class_set"]) for r in rows}:
        names |= dict(
            zip(CLASS_SETS[class_set].instance_ids, CLASS_SETS[class_set].instance_names, strict=True)
        )
    values, counts = np.unique(object_labels, return_counts=True)
    per_class = {names[int(v)]: int(c) for v, c in zip(values, counts, strict=True)}
    overlap = sum((o.overlap for o in outcomes), OverlapCounts()).summary()
    return {
        "scenes": len(outcomes),
        "points": sum(int(r["n_points"]) for r in rows),
        "voxels": sum(int(r["n_voxels"]) for r in rows),
        "superpoints": sum(int(r["n_superpoints"]) for r in rows),
        "superpoints_computed": sum(o.n_superpoints_computed for o in outcomes),
        "boxes": len(is_background),
        "background_boxes": int(np.count_nonzero(is_background)),
        "instances_per_class": dict(sorted(per_class.items())),
        # JSON has no NaN: a split without object instances reports null IoUs.
        "overlap": {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in overlap.items()},
    }
