"""Training / evaluation data: processed Parquet scenes -> augmented, voxelized batches.

`SceneDataset` reads one scene per item from `points/<scene>.parquet` (memory stays bounded by
the largest scene), with its boxes from `boxes.parquet` and the scene list from `scenes.parquet`.
`collate` concatenates scenes into the batch dict the model consumes; `make_loader` wraps both
in a DataLoader whose order depends only on (seed, epoch).

No label leakage: the per-point `label` / `instance` columns are read only when the dataset is
built with `with_ground_truth=True`. Everything else (crop, augmentation, RNG use, ordering)
depends on geometry, colour, superpoints and boxes alone, so permuting those two columns cannot
change a box-supervised run.

Determinism: each item's RNG is seeded from (seed, epoch, scene index) and the sampler's order
from (seed, epoch); `dataset.set_epoch(epoch)` sets the epoch for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from beep3d.classes import CLASS_SETS, ClassSet
from beep3d.data.augment import AugmentConfig, augment_colors, augment_scene
from beep3d.data.boxes import Boxes, points_in_boxes
from beep3d.data.schema import points_path, read_scene_points, read_table
from beep3d.data.voxelize import voxelize
from beep3d.errors import DataError

# Independent random streams drawn from the same user seed (SeedSequence entropy tags).
_AUGMENT_STREAM = 0xA06
_SAMPLER_STREAM = 0x5A3

_SUPERPOINT_COLUMN = {"dataset": "superpoint", "computed": "superpoint_computed"}
# The supervision key of the `fixed_labels` a dataset is given (two_stage's labels).
FIXED_LABELS = "fixed_box_id"


@dataclass(frozen=True)
class DataConfig:
    """How the training loader reads and augments scenes (params.yaml `data_loader`)."""

    voxel_size: float  # training voxel edge in metres; may differ from preprocess's voxel size
    superpoints: Literal["dataset", "computed"]  # `superpoint` (source segments) or `superpoint_computed`
    max_points: int  # training crop: keep this many points nearest a random point in xy; 0 = all
    augment: AugmentConfig  # training-time augmentation; never applied when train=False

    def __post_init__(self) -> None:
        if not self.voxel_size > 0:
            raise ValueError(f"data_loader.voxel_size must be > 0, got {self.voxel_size}")
        if self.max_points < 0:
            raise ValueError(f"data_loader.max_points must be >= 0 (0 = no crop), got {self.max_points}")
        if self.superpoints not in _SUPERPOINT_COLUMN:
            raise ValueError(
                f"data_loader.superpoints must be 'dataset' or 'computed', got {self.superpoints!r}"
            )


@dataclass
class SceneSample:
    """One scene, ready for `collate` (all numpy; P points, V voxels, S superpoints, T boxes)."""

    scene_id: str
    coords: np.ndarray  # (V, 3) int32 voxel coordinates, >= 0
    feats: np.ndarray  # (V, 6) float32 per-voxel mean of [rgb in [-1, 1], xyz metres]
    point_voxel: np.ndarray  # (P,) int64 row of each point's voxel in `coords`
    superpoint: np.ndarray  # (P,) int64 scene-local superpoint id, contiguous 0..S-1
    sp_xyz: np.ndarray  # (S, 3) float32 superpoint centroids, augmented frame
    scene_min: np.ndarray  # (3,) float32, augmented frame
    scene_max: np.ndarray  # (3,) float32, augmented frame
    supervision: dict[str, np.ndarray]  # see `SceneDataset.__getitem__`
    ground_truth: dict[str, np.ndarray] | None  # label (P,) int16, instance (P,) int32; None if withheld


def split_sizes(processed_dir: str | Path) -> dict[str, int]:
    """Scenes per split in a processed dataset (splits without scenes are absent)."""
    splits = read_table(Path(processed_dir) / "scenes.parquet").column("split").to_pylist()
    return {split: splits.count(split) for split in sorted(set(splits))}


class SceneDataset(Dataset):
    """Scenes of one split, sorted by scene id; item i is `SceneSample` of the i-th scene.

    processed_dir: the preprocess output (points/, boxes.parquet, scenes.parquet).
    with_ground_truth: read per-point label/instance (full-mask training, evaluation, monitoring).
    train: apply the crop and augmentation; with train=False every original vertex is kept in
        its original frame, so predictions map back through `point_voxel` / `superpoint`.
    seed: seeds augmentation and crops together with the epoch and the scene index.
    max_scenes: keep only the first N scenes of the split (by scene id); 0 = all.
    fixed_labels: scene id -> (n_points,) integer per-point labels of every original point in
        file order (two_stage's box ids, beep3d/two_stage.py; negative: background / unresolved).
        Cropped with the points and put into supervision[FIXED_LABELS], so that no caller has
        to assume an order of the points. Every scene of the split needs its labels.
    """

    def __init__(
        self,
        processed_dir: str | Path,
        split: str,
        cfg: DataConfig,
        with_ground_truth: bool,
        train: bool,
        *,
        seed: int = 0,
        max_scenes: int = 0,
        fixed_labels: Mapping[str, np.ndarray] | None = None,
    ):
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.processed_dir = Path(processed_dir)
        self.split = split
        self.cfg = cfg
        self.with_ground_truth = with_ground_truth
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.fixed_labels = fixed_labels

        scenes_file = self.processed_dir / "scenes.parquet"
        scenes = read_table(scenes_file).sort_by("scene_id")
        scenes = scenes.filter(pc.equal(scenes.column("split"), split))
        if scenes.num_rows == 0:
            raise DataError(f"no scenes in split {split!r}", path=scenes_file)
        if max_scenes > 0:  # e.g. a fixed subset of training scenes for monitoring
            scenes = scenes.slice(0, max_scenes)
        self.scene_ids: list[str] = scenes.column("scene_id").to_pylist()
        names = sorted(set(scenes.column("class_set").to_pylist()))
        if len(names) != 1 or names[0] not in CLASS_SETS:
            raise DataError(f"split {split!r} needs one known class set, found {names}", path=scenes_file)
        self.class_set: ClassSet = CLASS_SETS[names[0]]
        self._n_points = dict(zip(self.scene_ids, scenes.column("n_points").to_pylist(), strict=True))
        n_boxes = dict(zip(self.scene_ids, scenes.column("n_boxes").to_pylist(), strict=True))
        self._boxes = _load_boxes(self.processed_dir / "boxes.parquet", n_boxes)
        if fixed_labels is not None:
            missing = [s for s in self.scene_ids if s not in fixed_labels]
            if missing:
                raise DataError(
                    f"fixed labels lack {len(missing)} scene(s) of split {split!r}: {missing[:5]}"
                )

    def __len__(self) -> int:
        return len(self.scene_ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch for augmentation and for `make_loader`'s sampler order."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def rng(self, index: int) -> np.random.Generator:
        """The generator item `index` uses in the current epoch."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, index, _AUGMENT_STREAM]))

    def __getitem__(self, index: int) -> SceneSample:
        """Load, crop (train), augment (train) and voxelize one scene.

        `supervision` holds what a box-supervised loss may see, for the T boxes of the scene:
        box_id (T,) int64, box_label (T,) int64 class index (-1 for background boxes),
        box_is_background (T,) bool, box_min / box_max (T, 3) float32 in the ORIGINAL frame,
        box_center and box_size (T, 3) float32 in the AUGMENTED frame, point_in_box (P, T) bool decided in
        the original frame, superpoint (P,) int64 scene-local ids; with `fixed_labels`, also
        fixed_box_id (P,) int64: the points' labels, cropped with them (boxes they name may be gone).
        """
        scene_id = self.scene_ids[index]
        path = points_path(self.processed_dir, scene_id)
        sp_column = _SUPERPOINT_COLUMN[self.cfg.superpoints]
        columns = ["x", "y", "z", "r", "g", "b", sp_column]
        if self.with_ground_truth:
            columns += ["label", "instance"]
        cols = read_scene_points(self.processed_dir, scene_id, columns)
        xyz = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)
        rgb = np.stack([cols["r"], cols["g"], cols["b"]], axis=1)
        superpoint = cols[sp_column]
        _check_points(xyz, superpoint, self._n_points[scene_id], sp_column, scene_id, path)
        boxes = self._boxes[scene_id]
        fixed = self._fixed_labels(scene_id, boxes, path)
        rng = self.rng(index) if self.train else None

        keep = None
        if rng is not None and 0 < self.cfg.max_points < len(xyz):
            keep = crop_nearest_xy(xyz, self.cfg.max_points, rng)
            xyz, rgb, superpoint = xyz[keep], rgb[keep], superpoint[keep]
            fixed = None if fixed is None else fixed[keep]
        inside = points_in_boxes(xyz, boxes)  # (P, T): before augmentation, boxes axis-aligned
        if keep is not None:  # a box with none of its points left in the crop cannot be a target
            present = inside.any(axis=0)
            boxes, inside = boxes.select(present), inside[:, present]
        superpoint = np.unique(superpoint, return_inverse=True)[1].astype(np.int64).reshape(-1)

        if rng is not None:
            xyz, centres, sizes = augment_scene(
                self.cfg.augment, xyz, boxes.center, boxes.size, rng
            )
            rgb = augment_colors(self.cfg.augment, rgb, rng)
        else:
            centres, sizes = boxes.center.astype(np.float32), boxes.size.astype(np.float32)
        supervision = {
            "box_id": boxes.box_id.astype(np.int64),
            "box_label": self.class_set.class_index(boxes.label),
            "box_is_background": boxes.is_background.astype(bool),
            "box_min": boxes.min.astype(np.float32),
            "box_max": boxes.max.astype(np.float32),
            "box_center": centres,
            "box_size": sizes.reshape(-1, 3),
            "point_in_box": inside,
            "superpoint": superpoint,
        }
        if fixed is not None:
            supervision[FIXED_LABELS] = fixed
        ground_truth = None
        if self.with_ground_truth:
            label, instance = cols["label"], cols["instance"]
            if keep is not None:
                label, instance = label[keep], instance[keep]
            ground_truth = {"label": label.astype(np.int16), "instance": instance.astype(np.int32)}
        return make_sample(scene_id, xyz, rgb, superpoint, self.cfg.voxel_size, supervision, ground_truth)

    def _fixed_labels(self, scene_id: str, boxes: Boxes, path: Path) -> np.ndarray | None:
        """(P,) int64 fixed labels of the scene's original points; None without fixed labels.
        Labels of another scene or dataset (wrong length, a box id this scene lacks) are refused."""
        if self.fixed_labels is None:
            return None
        fixed = np.asarray(self.fixed_labels[scene_id]).astype(np.int64).reshape(-1)
        n_points = self._n_points[scene_id]
        if len(fixed) != n_points:
            raise DataError(f"{len(fixed)} fixed labels for {n_points} points", path=path, scene_id=scene_id)
        named = np.unique(fixed[fixed >= 0])
        unknown = named[~np.isin(named, boxes.box_id)].tolist()
        if unknown:
            message = f"fixed labels name box ids the scene lacks: {unknown[:5]}"
            raise DataError(message, path=path, scene_id=scene_id)
        return fixed


def make_sample(
    scene_id: str,
    xyz: np.ndarray,
    rgb: np.ndarray,
    superpoint: np.ndarray,
    voxel_size: float,
    supervision: dict[str, np.ndarray] | None = None,
    ground_truth: dict[str, np.ndarray] | None = None,
) -> SceneSample:
    """Voxelize one scene's P points into the `SceneSample` the model consumes.

    xyz: (P, 3) float32 metres in the frame the model sees (augmented for training, as stored
    for evaluation and inference); rgb: (P, 3) uint8; superpoint: (P,) int64 contiguous 0..S-1.
    supervision: the box dict of `SceneDataset.__getitem__`; None (inference on a user's scan)
    gives an empty one (T = 0 boxes) so that `collate` treats the scene like any other.
    """
    if superpoint.shape != (len(xyz),) or len(xyz) == 0:
        raise ValueError(f"need P > 0 points and one superpoint each, got {len(xyz)} and {superpoint.shape}")
    coords, point_voxel = voxelize(xyz, voxel_size)
    point_feats = np.concatenate([rgb.astype(np.float32) / 127.5 - 1.0, xyz], axis=1)  # (P, 6)
    n_sp = int(superpoint.max()) + 1
    if supervision is None:
        supervision = {
            "box_id": np.zeros(0, np.int64),
            "box_label": np.zeros(0, np.int64),
            "box_is_background": np.zeros(0, bool),
            "box_min": np.zeros((0, 3), np.float32),
            "box_max": np.zeros((0, 3), np.float32),
            "box_center": np.zeros((0, 3), np.float32),
            "box_size": np.zeros((0, 3), np.float32),
            "point_in_box": np.zeros((len(xyz), 0), bool),
            "superpoint": superpoint,
        }
    return SceneSample(
        scene_id=scene_id,
        coords=coords,
        feats=segment_mean(point_feats, point_voxel, len(coords)),
        point_voxel=point_voxel,
        superpoint=superpoint,
        sp_xyz=segment_mean(xyz, superpoint, n_sp),
        scene_min=xyz.min(axis=0),
        scene_max=xyz.max(axis=0),
        supervision=supervision,
        ground_truth=ground_truth,
    )


def _load_boxes(path: Path, n_boxes: dict[str, int]) -> dict[str, Boxes]:
    """Boxes of the scenes in `n_boxes` (scene id -> expected count), each sorted by box id."""
    table = read_table(path)
    table = table.filter(pc.is_in(table.column("scene_id"), pa.array(list(n_boxes), pa.string())))
    table = table.sort_by([("scene_id", "ascending"), ("box_id", "ascending")])
    scene = np.asarray(table.column("scene_id").to_pylist(), dtype=object)
    col = {name: table.column(name).to_numpy() for name in table.column_names if name != "scene_id"}
    # Rows are sorted by scene: each scene's boxes are one contiguous run [a, b).
    starts = np.flatnonzero(np.r_[True, scene[1:] != scene[:-1]]) if len(scene) else np.zeros(0, np.int64)
    ends = np.r_[starts[1:], len(scene)]
    found = {scene[a]: (a, b) for a, b in zip(starts, ends, strict=True)}
    out = {}
    for scene_id, expected in n_boxes.items():
        a, b = found.get(scene_id, (0, 0))
        if b - a != expected:
            raise DataError(f"{b - a} boxes but scenes.parquet says {expected}", path=path, scene_id=scene_id)
        out[scene_id] = Boxes(
            box_id=col["box_id"][a:b].astype(np.int32),
            label=col["label"][a:b].astype(np.int16),
            is_background=col["is_background"][a:b].astype(bool),
            center=np.stack([col["cx"][a:b], col["cy"][a:b], col["cz"][a:b]], axis=1).astype(np.float32),
            size=np.stack([col["dx"][a:b], col["dy"][a:b], col["dz"][a:b]], axis=1).astype(np.float32),
            n_points=col["n_points"][a:b].astype(np.int32),
        )
    return out


def _check_points(
    xyz: np.ndarray, superpoint: np.ndarray, expected: int, column: str, scene_id: str, path: Path
):
    if len(xyz) != expected:
        raise DataError(f"{len(xyz)} points but scenes.parquet says {expected}", path=path, scene_id=scene_id)
    if len(xyz) == 0:
        raise DataError("scene has no points", path=path, scene_id=scene_id)
    if not np.isfinite(xyz).all():
        raise DataError("non-finite coordinates", path=path, scene_id=scene_id)
    if (superpoint < 0).any():
        hint = (
            "computed superpoints are absent (-1): run preprocess with superpoint computation enabled "
            "or set data_loader.superpoints: dataset"
            if column == "superpoint_computed"
            else "negative superpoint ids"
        )
        raise DataError(f"column {column}: {hint}", path=path, scene_id=scene_id)


def crop_nearest_xy(xyz: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """(max_points,) sorted indices of the points nearest (in xy) to a randomly chosen point.

    A horizontal disc keeps whole floor-to-ceiling columns of the room, so objects are cut only
    at the crop's rim.
    """
    centre = xyz[rng.integers(len(xyz)), :2].astype(np.float64)
    d2 = np.sum((xyz[:, :2] - centre) ** 2, axis=1)
    return np.sort(np.argpartition(d2, max_points - 1)[:max_points])


def segment_mean(values: np.ndarray, segment: np.ndarray, n_segments: int) -> np.ndarray:
    """(n_segments, C) float32 mean of `values` (N, C) over rows sharing `segment` (N,) id."""
    counts = np.bincount(segment, minlength=n_segments).astype(np.float64)
    sums = np.stack(
        [np.bincount(segment, weights=values[:, c], minlength=n_segments) for c in range(values.shape[1])],
        axis=1,
    )
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def collate(samples: list[SceneSample]) -> dict[str, Any]:
    """Concatenate scenes into the model's batch dict (B scenes, V voxels, P points, S superpoints).

    coords (V, 4) int32 [b, x, y, z]; feats (V, 6) float32; spatial_shape [3] ints; batch_size B;
    point_voxel (P,) int64 row in coords; point_offsets (B+1,) int64; superpoint (P,) int64
    global id; sp_offsets (B+1,) int64; sp_xyz (S, 3) float32; scene_min / scene_max (B, 3)
    float32; scene_ids [B]; supervision [B] dicts of tensors; ground_truth [B] dicts, present
    only when the dataset reads ground truth.
    """
    if not samples:
        raise ValueError("collate needs at least one scene")
    has_gt = {s.ground_truth is not None for s in samples}
    if len(has_gt) != 1:
        raise ValueError("collate: scenes mix with and without ground truth")
    n_vox = np.cumsum([0] + [len(s.coords) for s in samples])
    n_pts = np.cumsum([0] + [len(s.point_voxel) for s in samples])
    n_sp = np.cumsum([0] + [len(s.sp_xyz) for s in samples])
    coords = np.concatenate(
        [
            np.concatenate([np.full((len(s.coords), 1), b, np.int32), s.coords], axis=1)
            for b, s in enumerate(samples)
        ]
    )
    batch: dict[str, Any] = {
        "coords": torch.from_numpy(coords),
        "feats": torch.from_numpy(np.concatenate([s.feats for s in samples])),
        "spatial_shape": [int(v) for v in coords[:, 1:].max(axis=0) + 1],
        "batch_size": len(samples),
        "point_voxel": torch.from_numpy(
            np.concatenate([s.point_voxel + n_vox[b] for b, s in enumerate(samples)])
        ),
        "point_offsets": torch.from_numpy(n_pts.astype(np.int64)),
        "superpoint": torch.from_numpy(
            np.concatenate([s.superpoint + n_sp[b] for b, s in enumerate(samples)])
        ),
        "sp_offsets": torch.from_numpy(n_sp.astype(np.int64)),
        "sp_xyz": torch.from_numpy(np.concatenate([s.sp_xyz for s in samples])),
        "scene_min": torch.from_numpy(np.stack([s.scene_min for s in samples])),
        "scene_max": torch.from_numpy(np.stack([s.scene_max for s in samples])),
        "scene_ids": [s.scene_id for s in samples],
        "supervision": [_to_torch(s.supervision) for s in samples],
    }
    if has_gt == {True}:
        batch["ground_truth"] = [_to_torch(s.ground_truth) for s in samples]
    return batch


def _to_torch(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


class EpochBatchSampler(Sampler[list[int]]):
    """Batches whose scenes depend only on (seed, dataset.epoch): a resumed run sees the same ones.

    `batch_size` scenes make one optimiser step over all ranks together. With `world_size` ranks
    (distributed training) rank r takes scenes r, r + W, r + 2W, ... of every batch, so the ranks'
    shares add up to exactly the batch one process would see; `batch_size` must be >= W so that no
    rank is left without a scene. The last, shorter batch is shared the same way; if it has fewer
    scenes than ranks, a rank without one repeats a scene of it (every rank must step together).
    """

    def __init__(
        self, dataset: SceneDataset, batch_size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        if batch_size < world_size:
            raise ValueError(
                f"batch_size {batch_size} is smaller than the {world_size} ranks: every rank needs a scene "
                "per step (batch_size counts the scenes of one step over all ranks)"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def order(self) -> list[int]:
        """Every scene index once, in this epoch's order."""
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        seq = np.random.SeedSequence([self.seed, self.dataset.epoch, _SAMPLER_STREAM])
        return np.random.default_rng(seq).permutation(n).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            yield batch[self.rank :: self.world_size] or [batch[self.rank % len(batch)]]


def make_loader(
    dataset: SceneDataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader over `dataset` with `collate` and an `EpochBatchSampler` (this rank's share).

    Call `dataset.set_epoch(epoch)` before iterating each epoch. Workers are not persistent, so
    each epoch's workers get a fresh copy of the dataset with the current epoch.
    """
    return DataLoader(
        dataset,
        batch_sampler=EpochBatchSampler(dataset, batch_size, shuffle, seed, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
    )
