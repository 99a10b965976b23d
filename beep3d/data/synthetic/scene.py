"""One synthetic scene: furnish a room, mesh it, label it, and put it in a scanner's frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beep3d.data.scene import RawScene
from beep3d.data.synthetic.assemble import build_mesh, structure_items
from beep3d.data.synthetic.categories import nyu40_id, s3dis_class
from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.layout import Room
from beep3d.data.synthetic.primitives import rotation_z
from beep3d.data.synthetic.recipes import RECIPES, ROOM_SIZES

SCANNET_SCENE_TYPES = {
    "bedroom": "Bedroom / Hotel",
    "office": "Office",
    "kitchen": "Kitchen",
    "bathroom": "Bathroom",
    "living_room": "Living room / Lounge",
}


@dataclass(frozen=True)
class SceneItem:
    """One item of a scene as annotated: ScanNet object id and S3DIS class/instance."""

    raw_category: str | None  # None: in the scan but never annotated
    nyu40: int  # -1 when unannotated
    object_id: int  # ScanNet aggregation objectId (0-based); -1 when unannotated or not in the mesh
    s3dis_class: int  # index into beep3d.classes.S3DIS_NAMES
    n_vertices: int


@dataclass
class SyntheticScene:
    """A generated scene with everything each raw layout needs (N vertices, F faces).

    `xyz` is aligned: it is exactly what a reader gets by applying `axis_alignment` to the stored
    `xyz_stored` in float64 and rounding to float32, so generator and reader agree on boxes.
    `instance` follows RawScene: ScanNet objectId + 1 for annotated items, 0 otherwise.
    """

    scene_id: str
    split: str  # "train" | "val" | "test"
    room_type: str  # one of config.ROOM_TYPES
    xyz: np.ndarray  # (N, 3) float32, aligned frame (floor at z = 0, walls axis-parallel)
    xyz_stored: np.ndarray  # (N, 3) float32, the frame written to disk (a scanner's frame for ScanNet)
    rgb: np.ndarray  # (N, 3) uint8
    faces: np.ndarray  # (F, 3) int32
    segment: np.ndarray  # (N,) int32 segment id per vertex (ScanNet segIndices: arbitrary ints)
    item: np.ndarray  # (N,) int32 index into `items`
    items: tuple[SceneItem, ...]
    label: np.ndarray  # (N,) int16 nyu40 id, -1 unannotated
    instance: np.ndarray  # (N,) int32 objectId + 1, 0 unannotated
    s3dis_label: np.ndarray  # (N,) int16 S3DIS class index (unannotated -> clutter)
    s3dis_instance: np.ndarray  # (N,) int32 item index + 1: in S3DIS every point belongs to an instance
    axis_alignment: np.ndarray  # (4, 4) float64: aligned = M @ [x y z 1] of xyz_stored

    @property
    def n_points(self) -> int:
        return len(self.xyz)

    def to_raw_scene(self, class_set: str = "scannet") -> RawScene:
        """The scene as a RawScene, with the source segments as superpoints (contiguous ids)."""
        _, superpoint = np.unique(self.segment, return_inverse=True)
        if class_set == "scannet":
            label, instance, sp = self.label, self.instance, superpoint.astype(np.int32)
        else:
            label, instance, sp = self.s3dis_label, self.s3dis_instance, None
        return RawScene(self.scene_id, self.xyz, self.rgb, label, instance, sp, self.split, class_set)


def split_of(cfg: SyntheticConfig, scene_index: int) -> str:
    if scene_index < cfg.n_train:
        return "train"
    return "val" if scene_index < cfg.n_train + cfg.n_val else "test"


def room_type_of(cfg: SyntheticConfig, scene_index: int) -> str:
    """Room types in shuffled blocks of one of each, so any few consecutive scenes cover all types."""
    n = len(cfg.room_types)
    block = np.random.default_rng([cfg.seed, scene_index // n, 1]).permutation(n)
    return cfg.room_types[int(block[scene_index % n])]


def scene_id_of(scene_index: int) -> str:
    return f"scene{scene_index:04d}_00"


def _missed_segments(
    segment: np.ndarray, item: np.ndarray, placed: list, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """(N,) bool: vertices of segments the ScanNet annotators skipped (objects only, never a whole one).

    Real aggregations leave fringe segments of many objects unlabelled; those points are
    non-object points inside the object's box, one of the things that make box supervision hard.
    """
    seg_ids, first, inverse = np.unique(segment, return_index=True, return_inverse=True)
    seg_item = item[first]
    is_object = np.array([p.model.kind == "object" for p in placed])[seg_item]
    drop = is_object & (rng.random(len(seg_ids)) < fraction)
    # Keep each object's largest segment so no annotated object vanishes.
    sizes = np.bincount(inverse, minlength=len(seg_ids))
    order = np.lexsort((-sizes, seg_item))
    largest = order[np.r_[True, seg_item[order][1:] != seg_item[order][:-1]]]
    drop[largest] = False
    return drop[inverse]


def generate_scene(cfg: SyntheticConfig, scene_index: int) -> SyntheticScene:
    """Scene `scene_index` of the dataset `cfg` describes; depends on (cfg, scene_index) only."""
    room_type = room_type_of(cfg, scene_index)
    rng = np.random.default_rng([cfg.seed, scene_index, 0])
    w0, w1, d0, d1 = ROOM_SIZES[room_type]
    room = Room(
        rng.uniform(w0, w1) * cfg.room_size_scale,
        rng.uniform(d0, d1) * cfg.room_size_scale,
        rng.uniform(cfg.wall_height_min, cfg.wall_height_max),
        adjacency=cfg.adjacency_probability,
        yaw_jitter=float(np.deg2rad(cfg.yaw_jitter_deg)),
    )
    RECIPES[room_type](room, rng, cfg)
    structure, ceiling = structure_items(room, rng)
    # The ceiling goes last so the ScanNet layout (which drops it) keeps every other id unchanged.
    placed = [*structure, *room.items, ceiling]
    mesh = build_mesh(placed, room, cfg, np.random.default_rng([cfg.seed, scene_index, 1]))
    if cfg.layout == "scannet":
        keep = mesh.item != len(placed) - 1
        mesh.xyz, mesh.rgb, mesh.item, mesh.segment = (
            mesh.xyz[keep],
            mesh.rgb[keep],
            mesh.item[keep],
            mesh.segment[keep],
        )
        mesh.faces = mesh.faces[keep[mesh.faces].all(axis=1)]
    counts = np.bincount(mesh.item, minlength=len(placed))
    items, next_id = [], 0
    for index, p in enumerate(placed):
        raw = p.model.raw_category
        annotated = raw is not None and raw != "ceiling" and counts[index] > 0
        nyu = nyu40_id(raw) if raw is not None else -1
        items.append(
            SceneItem(
                raw, nyu, next_id if annotated else -1, s3dis_class(nyu if raw else None), int(counts[index])
            )
        )
        next_id += int(annotated)
    nyu_of = np.array([it.nyu40 if it.object_id >= 0 else -1 for it in items], np.int16)
    inst_of = np.array([it.object_id + 1 for it in items], np.int32)
    s3_of = np.array([it.s3dis_class for it in items], np.int16)
    label, instance = nyu_of[mesh.item], inst_of[mesh.item]
    missed = _missed_segments(
        mesh.segment,
        mesh.item,
        placed,
        cfg.missed_segment_fraction,
        np.random.default_rng([cfg.seed, scene_index, 3]),
    )
    label[missed], instance[missed] = -1, 0

    align_rng = np.random.default_rng([cfg.seed, scene_index, 2])
    if cfg.layout == "scannet":
        # Stored in a scanner's frame: turned about z and shifted; M maps it back.
        rot = rotation_z(align_rng.uniform(0, 2 * np.pi))
        shift = np.array([align_rng.uniform(-4, 4), align_rng.uniform(-4, 4), align_rng.uniform(-0.3, 1.5)])
        stored = (mesh.xyz @ rot.T + shift).astype(np.float32)
        m = np.eye(4)
        m[:3, :3] = rot.T
        m[:3, 3] = -rot.T @ shift
        m = np.round(m, 6)  # the meta file carries 6 decimals: use exactly the matrix a reader gets
    else:
        stored, m = mesh.xyz.astype(np.float32), np.eye(4)
    aligned = (stored.astype(np.float64) @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
    return SyntheticScene(
        scene_id=scene_id_of(scene_index),
        split=split_of(cfg, scene_index),
        room_type=room_type,
        xyz=aligned,
        xyz_stored=stored,
        rgb=mesh.rgb,
        faces=mesh.faces,
        segment=mesh.segment,
        item=mesh.item,
        items=tuple(items),
        label=label,
        instance=instance,
        s3dis_label=s3_of[mesh.item],
        s3dis_instance=(mesh.item + 1).astype(np.int32),
        axis_alignment=m,
    )
