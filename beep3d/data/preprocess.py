"""Preprocessing: raw scenes -> the Parquet tables of `beep3d.data.schema`.

Per scene (`process_scene`, no I/O): superpoints (the source's segments, or our own when it has
none), our own superpoints again for the audit column when asked, voxels at `voxel_size`,
axis-aligned boxes and the overlap counts behind the box-supervision difficulty figures.

The driver (`run_preprocess`) finds the raw layout, runs one job per scene in a process pool
(each worker reads one scene, processes it and writes its points file itself, so the parent
only receives small results: box rows, the scene row, counts) and finally writes, atomically,
`boxes.parquet`, `scenes.parquet`, `stats.json` and `skipped.json`. Output does not depend on
the worker count: every table is ordered by scene id.

Sharding splits the scene list across machines: `run_preprocess(..., shard=Shard(i, n))` processes
every n-th scene of the sorted list starting at the i-th (1-based) into its own folder, which is a
complete output for that subset plus `shard.json` (the params, the full scene list's digest and the
per-scene figures that stats.json needs but no table holds). `merge_shards` checks that the n
folders are one run's shards and writes what an unsharded run would have written, byte for byte.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import errno
import hashlib
import json
import multiprocessing
import os
import re
import shutil
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
from beep3d.data.schema import (
    BOXES_SCHEMA,
    POINTS_SCHEMA,
    SCENES_SCHEMA,
    points_path,
    read_table,
    write_table,
)
from beep3d.data.superpoints import SuperpointConfig, compute_superpoints
from beep3d.data.voxelize import voxelize
from beep3d.errors import DataError
from beep3d.io import atomic_path, write_json_atomic

SUMMARY_FILES = ("boxes.parquet", "scenes.parquet", "stats.json", "skipped.json")
SHARD_FILE = "shard.json"  # written last by a sharded run: its presence marks a finished shard
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


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`, 1-based ("shard 2 of 4"): every count-th scene of the sorted scene
    list, starting at the index-th. Striding instead of cutting the list into blocks gives every
    shard scenes of every split and scan era, so the shards take about the same time.
    """

    index: int  # 1..count
    count: int  # number of shards, >= 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be >= 1, got {self}")
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard index must be in 1..{self.count} (1-based), got {self}")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'2/4' -> Shard(2, 4); anything else is a ValueError that shows the expected form."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise ValueError(f"shard must be i/n with 1 <= i <= n, e.g. 1/4; got {text!r}")
        return cls(int(match[1]), int(match[2]))

    def select(self, jobs: list[SceneJob]) -> list[SceneJob]:
        return jobs[self.index - 1 :: self.count]


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


def run_preprocess(
    raw_dir: Path, out_dir: Path, cfg: PreprocessConfig, progress: bool = True, shard: Shard | None = None
) -> dict:
    """Preprocess every scene under raw_dir (or only `shard`'s) into out_dir (which this function owns).

    Returns {"stats": the stats.json content, "skipped": the skipped.json list}. With
    on_error="fail" the first bad scene raises its DataError and no summary table is written.
    A shard also gets `shard.json`, written last, for `merge_shards`; each shard needs its own
    out_dir, since points files of scenes outside the shard are removed as stale.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    all_jobs = find_jobs(raw_dir)
    jobs = all_jobs if shard is None else shard.select(all_jobs)
    _clear_summaries(out_dir)
    outcomes = _run_jobs(jobs, out_dir, cfg, progress)
    failed = [o for o in outcomes if o.error is not None]
    for outcome in failed:  # a failed scene leaves no points file, not even an old one
        points_path(out_dir, outcome.scene_id).unlink(missing_ok=True)
    if failed and cfg.on_error == "fail":
        first = failed[0]
        raise DataError(first.error or "", path=first.error_path, scene_id=first.scene_id)
    done = [o for o in outcomes if o.error is None]
    _remove_stale_points(out_dir, keep={o.scene_id for o in done})
    skipped = [
        {"scene_id": o.scene_id, "file": _relative(o.error_path, raw_dir), "error": o.error} for o in failed
    ]
    result = write_summaries(out_dir, done, skipped, cfg)
    if shard is not None:
        write_json_atomic(out_dir / SHARD_FILE, _shard_record(shard, all_jobs, jobs, done, cfg))
    return result


def _clear_summaries(out_dir: Path) -> None:
    """Summaries of an earlier run must not outlive a failed one next to newer points files."""
    points_dir = out_dir / "points"
    points_dir.mkdir(parents=True, exist_ok=True)
    for name in (*SUMMARY_FILES, SHARD_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for leftover in points_dir.glob(".*.tmp"):  # from a killed worker; atomic writes leave none otherwise
        leftover.unlink()


def _remove_stale_points(out_dir: Path, keep: set[str]) -> None:
    for stale in (out_dir / "points").glob("*.parquet"):
        if stale.stem not in keep:
            stale.unlink()


def write_summaries(
    out_dir: Path, done: list[SceneOutcome], skipped: list[dict], cfg: PreprocessConfig
) -> dict:
    """boxes.parquet, scenes.parquet, stats.json and skipped.json of `done` (in scene-id order)."""
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
    if not jobs:  # a shard of a list shorter than the shard count
        return []
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


# --- shards -------------------------------------------------------------------------------------

# Params that change no byte of a finished shard: shards may differ in them (machines differ in
# cores; a shard re-run with on_error=skip after a failure is as good as one that never failed).
_OUTPUT_NEUTRAL_PARAMS = ("workers", "on_error")


def _shard_record(
    shard: Shard,
    all_jobs: list[SceneJob],
    jobs: list[SceneJob],
    done: list[SceneOutcome],
    cfg: PreprocessConfig,
) -> dict:
    """shard.json: what `merge_shards` checks, and the per-scene figures stats.json needs but no table holds."""
    return {
        "shard": str(shard),
        "params": dataclasses.asdict(cfg),
        "scene_list": {"scenes": len(all_jobs), "sha256": _digest([job.scene_id for job in all_jobs])},
        "scene_ids": [job.scene_id for job in jobs],
        "scenes": {
            o.scene_id: {
                "overlap": dataclasses.asdict(o.overlap),
                "n_superpoints_computed": o.n_superpoints_computed,
            }
            for o in done
        },
    }


def _digest(scene_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(scene_ids).encode()).hexdigest()


@dataclass
class _ShardFolder:
    path: Path
    shard: Shard
    cfg: PreprocessConfig
    record: dict  # the shard.json content


def _read_shard(path: Path) -> _ShardFolder:
    file = path / SHARD_FILE
    if not file.is_file():
        raise DataError(
            f"not a finished preprocess shard: no {SHARD_FILE} (a run with --shard i/n writes it last, "
            "a failed one leaves none)",
            path=path,
        )
    try:
        record = json.loads(file.read_text())
        params = dict(record["params"])
        superpoints = SuperpointConfig(**params.pop("superpoints"))
        cfg = PreprocessConfig(**params, superpoints=superpoints)
        return _ShardFolder(path, Shard.parse(record["shard"]), cfg, record)
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"unreadable {SHARD_FILE}: {err!r}", path=file) from err


def _check_shards(folders: list[_ShardFolder]) -> None:
    """One run's shards: same count, params and raw scene list; every index exactly once."""
    first = folders[0]
    seen: dict[int, Path] = {}
    for folder in folders:
        if folder.shard.count != first.shard.count:
            raise DataError(
                f"shard {folder.shard} does not belong with shard {first.shard} of {first.path}",
                path=folder.path,
            )
        neutral = {name: getattr(first.cfg, name) for name in _OUTPUT_NEUTRAL_PARAMS}
        if dataclasses.replace(folder.cfg, **neutral) != first.cfg:
            differ = [
                f"preprocess.{f.name}"
                for f in dataclasses.fields(PreprocessConfig)
                if f.name not in neutral and getattr(folder.cfg, f.name) != getattr(first.cfg, f.name)
            ]
            raise DataError(
                f"made with other params than {first.path}: {', '.join(differ)}", path=folder.path
            )
        if folder.record["scene_list"] != first.record["scene_list"]:
            raise DataError(f"made from another raw scene list than {first.path}", path=folder.path)
        if folder.shard.index in seen:
            raise DataError(
                f"shard {folder.shard} given twice, also as {seen[folder.shard.index]}", path=folder.path
            )
        seen[folder.shard.index] = folder.path
    count = first.shard.count
    missing = [str(Shard(i, count)) for i in range(1, count + 1) if i not in seen]
    if missing:
        given = ", ".join(f"{f.path} ({f.shard})" for f in folders)
        raise DataError(
            f"shard(s) {', '.join(missing)} missing; merge needs all {count} of one run, got {given}"
        )
    scene_ids = sorted(sid for folder in folders for sid in folder.record["scene_ids"])
    if _digest(scene_ids) != first.record["scene_list"]["sha256"]:
        raise DataError(f"the shards' scene lists do not add up to the raw scene list of {first.path}")


def _shard_outcomes(folder: _ShardFolder) -> tuple[list[SceneOutcome], list[dict]]:
    """The outcomes of a shard's finished scenes (tables read back, figures from shard.json) and its skipped list."""
    path, figures = folder.path, folder.record["scenes"]
    rows = read_table(path / "scenes.parquet").to_pylist()
    boxes = read_table(path / "boxes.parquet")
    try:
        skipped = json.loads((path / "skipped.json").read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"unreadable skipped.json: {err}", path=path / "skipped.json") from err
    done_ids = [str(row["scene_id"]) for row in rows]
    if sorted(done_ids + [s["scene_id"] for s in skipped]) != sorted(folder.record["scene_ids"]) or set(
        done_ids
    ) != set(figures):
        raise DataError(
            f"scenes.parquet and skipped.json do not hold the scenes {SHARD_FILE} lists for shard {folder.shard}",
            path=path,
        )
    outcomes, offset = [], 0
    for row in rows:
        scene_id = str(row["scene_id"])
        scene_boxes = boxes.slice(offset, int(row["n_boxes"]))  # boxes.parquet is ordered like scenes.parquet
        offset += scene_boxes.num_rows
        if set(scene_boxes.column("scene_id").to_pylist()) - {scene_id}:
            raise DataError(f"boxes.parquet rows out of step with scenes.parquet at {scene_id}", path=path)
        if not points_path(path, scene_id).is_file():
            raise DataError("points file missing", path=points_path(path, scene_id), scene_id=scene_id)
        figure = figures[scene_id]
        overlap = figure["overlap"]
        counts = OverlapCounts(**(overlap | {"instance_ious": tuple(overlap["instance_ious"])}))
        outcomes.append(
            SceneOutcome(
                scene_id, str(row["split"]), scene_boxes, row, counts, figure["n_superpoints_computed"]
            )
        )
    if offset != boxes.num_rows:
        raise DataError(f"boxes.parquet has {boxes.num_rows} rows, scenes.parquet counts {offset}", path=path)
    return outcomes, skipped


def merge_shards(shard_dirs: list[Path], out_dir: Path, move: bool = False) -> dict:
    """Merge the n folders of one sharded run into out_dir (which this function owns).

    Writes exactly what an unsharded run with the same params writes: points files (copied, or
    moved with `move`), the tables in scene-id order, stats.json recomputed from the per-scene
    figures, skipped.json. Every shard is checked before out_dir is touched; a missing, repeated
    or foreign shard is a DataError naming the folder. Returns what `run_preprocess` returns.
    """
    out_dir = Path(out_dir)
    if not shard_dirs:
        raise ValueError("merge_shards needs at least one shard folder")
    for path in shard_dirs:
        if Path(path).resolve() == out_dir.resolve():
            raise DataError("the merged folder must not be one of the shard folders", path=path)
    folders = [_read_shard(Path(path)) for path in shard_dirs]
    _check_shards(folders)
    done: list[SceneOutcome] = []
    skipped: list[dict] = []
    for folder in folders:
        shard_done, shard_skipped = _shard_outcomes(folder)
        done += shard_done
        skipped += shard_skipped
    done.sort(key=lambda o: o.scene_id)  # the job order of an unsharded run
    skipped.sort(key=lambda s: s["scene_id"])
    _clear_summaries(out_dir)
    _remove_stale_points(out_dir, keep={o.scene_id for o in done})
    for folder in folders:
        for scene_id in folder.record["scenes"]:
            _transfer(points_path(folder.path, scene_id), points_path(out_dir, scene_id), move)
    return write_summaries(out_dir, done, skipped, folders[0].cfg)


def _transfer(src: Path, dst: Path, move: bool) -> None:
    """Copy src to dst atomically, or move it (a rename on the same file system)."""
    if move:
        try:
            os.replace(src, dst)
            return
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    if move:
        src.unlink()
