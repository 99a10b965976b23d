"""Knobs of the synthetic dataset generator; `default_config()` is what params.yaml carries."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

ROOM_TYPES = ("bedroom", "office", "kitchen", "bathroom", "living_room")


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides the generated dataset; equal configs give byte-identical files."""

    layout: Literal["scannet", "s3dis"]  # which raw layout the files are written in
    seed: int  # master seed; scene i is drawn from (seed, i) alone
    n_train: int  # scenes in the train split
    n_val: int  # scenes in the val split (S3DIS layout: Area_5)
    n_test: int  # ScanNet layout only: unlabelled scenes under scans_test/
    room_types: tuple[str, ...]  # room types to draw from, cycled so each block of scenes is balanced
    room_size_scale: float  # multiplies every room's floor dimensions (1.0 = real apartment sizes)
    vertex_spacing: float  # metres between neighbouring mesh vertices on furniture (ScanNet: 0.02-0.05)
    background_spacing_factor: float  # walls/floor are meshed this much coarser (decimation flattens planes)
    underside_spacing_factor: float  # faces seen only from below (table tops, seats) mesh sparser
    spacing_jitter: float  # log-normal spread of the spacing from one surface to the next (uneven density)
    vertex_jitter: float  # in-plane jitter of each vertex as a fraction of the local spacing
    noise_normal: float  # metres, std of sensor noise along the surface normal
    noise_tangent: float  # metres, std of sensor noise in the surface plane
    color_noise: float  # std of per-vertex colour noise, in 0..255 units
    wall_height_min: float  # metres, lowest scanned wall top (hand-held scans rarely reach the ceiling)
    wall_height_max: float  # metres, highest scanned wall top; the S3DIS layout puts its ceiling there
    segment_size: float  # metres, target extent of one mesh segment (superpoint) on large surfaces
    segment_min_vertices: int  # smaller segments are merged into their part's segment
    carve_margin: float  # metres: surfaces this close inside a solid are hidden from the scanner
    wall_gap_max: float  # metres: furniture against a wall stands 0..this far from it
    adjacency_probability: float  # chance furniture along a wall is pushed flush against a neighbour
    yaw_jitter_deg: float  # std of furniture rotation off the wall direction (free-standing: twice this)
    chair_tuck_probability: float  # chance a chair stands pushed in under its table or desk
    door_open_probability: float  # chance a door stands ajar (its box then sweeps the floor)
    curtain_probability: float  # chance a window gets curtains (the curtain box swallows the window)
    clutter_per_surface: float  # mean number of small items per support surface (desk, counter, shelf)
    clutter_unannotated_fraction: float  # share of small items left unannotated, as in real scans
    floor_clutter: float  # mean number of boxes/bags standing on the floor per room
    missed_segment_fraction: float  # share of an object's segments annotators skipped (stay unlabelled)

    def __post_init__(self) -> None:
        if self.layout not in ("scannet", "s3dis"):
            raise ValueError(f"layout must be 'scannet' or 's3dis', got {self.layout!r}")
        for name in ("n_train", "n_val", "n_test", "segment_min_vertices"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.layout == "s3dis" and self.n_test:
            raise ValueError("the S3DIS layout has no test split; set n_test to 0")
        unknown = sorted(set(self.room_types) - set(ROOM_TYPES))
        if unknown or not self.room_types:
            raise ValueError(f"room_types must be a non-empty subset of {ROOM_TYPES}, got {self.room_types}")
        positive = ("room_size_scale", "vertex_spacing", "background_spacing_factor", "segment_size")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.wall_height_min <= self.wall_height_max:
            raise ValueError("need 0 < wall_height_min <= wall_height_max")
        for f in fields(self):
            if f.name.endswith("probability") or f.name.endswith("fraction"):
                value = getattr(self, f.name)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"{f.name} must lie in [0, 1], got {value}")

    @property
    def n_scenes(self) -> int:
        return self.n_train + self.n_val + self.n_test


def default_config() -> SyntheticConfig:
    """The default dataset: 192 labelled rooms (72 train, 120 val, 1,740 val instances), ScanNet layout.

    Scene i is generated from (seed, i), so a larger val split leaves the training scenes as they are.

    About 37k vertices a room (15k-85k) at 4 cm spacing; `scannet_size_config()` meshes the same
    kind of rooms at ScanNet's density (about 150k vertices a room).
    """
    return SyntheticConfig(
        layout="scannet",
        seed=0,
        n_train=72,
        n_val=120,
        n_test=0,
        room_types=ROOM_TYPES,
        room_size_scale=1.0,
        vertex_spacing=0.04,
        background_spacing_factor=1.5,
        underside_spacing_factor=2.5,
        spacing_jitter=0.2,
        vertex_jitter=0.3,
        noise_normal=0.01,
        noise_tangent=0.003,
        color_noise=6.0,
        wall_height_min=1.9,
        wall_height_max=2.5,
        segment_size=0.6,
        segment_min_vertices=20,
        carve_margin=0.015,
        wall_gap_max=0.015,
        adjacency_probability=0.5,
        yaw_jitter_deg=4.0,
        chair_tuck_probability=0.85,
        door_open_probability=0.35,
        curtain_probability=0.5,
        clutter_per_surface=2.5,
        clutter_unannotated_fraction=0.4,
        floor_clutter=2.5,
        missed_segment_fraction=0.16,
    )


def scannet_size_config(cfg: SyntheticConfig | None = None) -> SyntheticConfig:
    """`cfg` (default: `default_config()`) meshed densely enough for ScanNet-size scenes.

    At 1.9 cm vertex spacing the default rooms have about 150k vertices on average (bathrooms
    ~70k, offices up to ~280k), the size of a real `_vh_clean_2.ply`: for preprocessing benchmarks.
    """
    return replace(cfg or default_config(), vertex_spacing=0.019)
