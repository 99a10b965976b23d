"""Turn a furnished room into one scanned-looking mesh.

Steps: sample every part's faces as grid patches (spacing varies per surface), drop faces the
scanner cannot see (against the floor or a wall), carve away surfaces hidden inside solids or
cut by openings, add sensor noise, colour the vertices, and cut segments (superpoints) that
never cross an item, merging tiny ones the way ScanNet's segmentation enforces a minimum size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from beep3d.data.synthetic.config import SyntheticConfig
from beep3d.data.synthetic.furniture import box
from beep3d.data.synthetic.layout import Placed, Room
from beep3d.data.synthetic.model import ObjectModel, material
from beep3d.data.synthetic.primitives import Box, Cylinder, Part, sample_part

CONTACT_TOL = 0.04  # metres: a face this close to the floor or a wall, facing it, is never seen
LARGE_PLANE = 0.6  # metres: a box part whose two larger sides both exceed this counts as a plane


@dataclass
class Mesh:
    xyz: np.ndarray  # (N, 3) float64, room frame, noisy
    rgb: np.ndarray  # (N, 3) uint8
    faces: np.ndarray  # (F, 3) int32
    item: np.ndarray  # (N,) int32 index into the item list the mesh was built from
    segment: np.ndarray  # (N,) int32 ScanNet-style segment id: the smallest vertex index in it


@dataclass
class _CarveBox:
    center: np.ndarray  # (3,)
    half: np.ndarray  # (3,)
    yaw: float
    exclude_item: int  # -1: none; surfaces of this item are never hidden by this box
    exclude_part: int  # -1: none


def _hidden_by_contact(xyz: np.ndarray, normal: np.ndarray, room: Room) -> bool:
    """A patch lying on the floor or on a wall and facing it (a bed's underside, a cabinet's back)."""
    c = xyz.mean(axis=0)
    n = normal.mean(axis=0)
    n = n / max(np.linalg.norm(n), 1e-9)
    if n[2] < -0.9 and c[2] < CONTACT_TOL:
        return True
    for wall in room.walls:
        if (c[:2] - wall.start) @ wall.normal < CONTACT_TOL and n[:2] @ wall.normal < -0.9:
            return True
    return False


def _is_large_plane(part: Part) -> bool:
    """Big flat panels (door leaves, table tops, wardrobe sides) are meshed coarser, as mesh
    decimation does to every large planar region, walls and floor included."""
    return isinstance(part, Box) and sorted(part.size)[1] > LARGE_PLANE


def _part_carve(placed: Placed, part: Part, margin: float, part_id: int) -> _CarveBox | None:
    """The volume a solid part hides (grown by `margin`); None for hollow parts and cloth.

    A cylinder hides a box at 0.8 of its radii, roughly its inscribed square, so that it does
    not eat into neighbours beside its round side.
    """
    if isinstance(part, Box) and part.solid:
        center = placed.to_world(np.asarray(part.center, np.float64)[None])[0]
        return _CarveBox(center, np.asarray(part.size) / 2 + margin, placed.yaw + part.yaw, -1, part_id)
    if isinstance(part, Cylinder) and part.solid:
        local = np.array([[part.center[0], part.center[1], (part.z0 + part.z1) / 2]])
        half = np.array([part.radii[0] * 0.8, part.radii[1] * 0.8, (part.z1 - part.z0) / 2]) + margin
        return _CarveBox(placed.to_world(local)[0], half, placed.yaw, -1, part_id)
    return None


def _carve(xyz: np.ndarray, item: np.ndarray, part: np.ndarray, boxes: list[_CarveBox]) -> np.ndarray:
    """(N,) bool keep-mask: False for vertices inside any carve box that may hide them."""
    keep = np.ones(len(xyz), bool)
    order = np.argsort(xyz[:, 0], kind="stable")
    xs = xyz[order, 0]
    for b in boxes:
        c, s = np.cos(b.yaw), np.sin(b.yaw)
        reach = abs(c) * b.half[0] + abs(s) * b.half[1]
        lo, hi = (
            np.searchsorted(xs, b.center[0] - reach, "left"),
            np.searchsorted(xs, b.center[0] + reach, "right"),
        )
        idx = order[lo:hi]
        d = xyz[idx] - b.center
        inside = (
            (np.abs(c * d[:, 0] + s * d[:, 1]) <= b.half[0])
            & (np.abs(-s * d[:, 0] + c * d[:, 1]) <= b.half[1])
            & (np.abs(d[:, 2]) <= b.half[2])
        )
        if b.exclude_item >= 0:
            inside &= item[idx] != b.exclude_item
        if b.exclude_part >= 0:
            inside &= part[idx] != b.exclude_part
        keep[idx[inside]] = False
    return keep


def _segments(seg: np.ndarray, part: np.ndarray, item: np.ndarray, min_vertices: int) -> np.ndarray:
    """Merge segments under `min_vertices` into their part, then into their item; ids = first vertex."""
    seg = seg.copy()
    for fallback in (part, item):
        _, inv, counts = np.unique(seg, return_inverse=True, return_counts=True)
        small = counts[inv] < min_vertices
        seg[small] = seg.max() + 1 + fallback[small]
    _, inv = np.unique(seg, return_inverse=True)
    first = np.full(inv.max() + 1, len(seg), np.int64)
    np.minimum.at(first, inv, np.arange(len(seg)))
    return first[inv].astype(np.int32)


def _colours(
    xyz: np.ndarray,
    normal: np.ndarray,
    base: np.ndarray,
    texture: np.ndarray,
    rng: np.random.Generator,
    cfg: SyntheticConfig,
) -> np.ndarray:
    """Base colour x soft shading from a scene light, picture texture, per-vertex noise, scene tint."""
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
    light /= np.linalg.norm(light)
    col = base * (0.78 + 0.22 * (normal @ light))[:, None]
    if texture.any():
        freq = rng.uniform(4.0, 14.0, (3, 3))
        phase = rng.uniform(0, 2 * np.pi, 3)
        col[texture] += 70.0 * np.sin(xyz[texture] @ freq + phase)
    col += rng.normal(0.0, cfg.color_noise, col.shape)
    col *= 1.0 + rng.normal(0.0, 0.03, 3)  # white balance of this scan
    return np.clip(np.rint(col), 0, 255).astype(np.uint8)


def build_mesh(items: list[Placed], room: Room, cfg: SyntheticConfig, rng: np.random.Generator) -> Mesh:
    """Sample, hide, carve, perturb, colour and segment all items of one room."""
    xyzs, normals, faces, items_v, parts_v, segs, bases, textures = [], [], [], [], [], [], [], []
    carves: list[_CarveBox] = []
    n_vertices = seg_offset = part_id = 0
    for item_index, placed in enumerate(items):
        model = placed.model
        structure = model.kind == "structure"
        spacing = cfg.vertex_spacing * (cfg.background_spacing_factor if structure else 1.0)
        seg_size = cfg.segment_size * (1.5 if structure else 1.0)
        rot = placed.rotation
        item_tint = rng.normal(1.0, 0.04)
        for part in model.parts:
            part_spacing = spacing * float(np.exp(rng.normal(0.0, cfg.spacing_jitter)))
            if not structure and _is_large_plane(part):
                part_spacing *= cfg.background_spacing_factor
            colour = model.palette[part.color] * item_tint * rng.normal(1.0, 0.03, 3)
            underside = 1.0 if structure else cfg.underside_spacing_factor
            for patch in sample_part(part, part_spacing, rng, cfg.vertex_jitter, seg_size, underside):
                xyz = placed.to_world(patch.xyz)
                nrm = patch.normal @ rot.T
                if len(xyz) == 0 or (not structure and _hidden_by_contact(xyz, nrm, room)):
                    continue
                xyzs.append(xyz)
                normals.append(nrm)
                faces.append(patch.faces + n_vertices)
                items_v.append(np.full(len(xyz), item_index, np.int32))
                parts_v.append(np.full(len(xyz), part_id, np.int32))
                segs.append(patch.block + seg_offset)
                bases.append(np.broadcast_to(colour, xyz.shape))
                textures.append(np.full(len(xyz), model.texture == "picture"))
                n_vertices += len(xyz)
                seg_offset += int(patch.block.max()) + 1
            carve = _part_carve(placed, part, cfg.carve_margin, part_id)
            if carve is not None:
                carves.append(carve)
            part_id += 1
        for c in model.carves:
            center = placed.to_world(np.asarray(c.center, np.float64)[None])[0]
            carves.append(_CarveBox(center, np.asarray(c.size) / 2, placed.yaw + c.yaw, item_index, -1))
    xyz = np.concatenate(xyzs)
    normal = np.concatenate(normals)
    item = np.concatenate(items_v)
    part = np.concatenate(parts_v)
    keep = _carve(xyz, item, part, carves)
    remap = np.full(len(xyz), -1, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    tri = remap[np.concatenate(faces)]
    tri = tri[(tri >= 0).all(axis=1)]
    xyz, normal, item, part = xyz[keep], normal[keep], item[keep], part[keep]
    seg = np.concatenate(segs)[keep]
    base = np.concatenate(bases)[keep]
    texture = np.concatenate(textures)[keep]
    # Sensor noise: mostly along the normal (depth error), a little in the surface plane.
    tangent = rng.normal(0.0, cfg.noise_tangent, xyz.shape)
    tangent -= (tangent * normal).sum(axis=1, keepdims=True) * normal
    xyz = xyz + normal * rng.normal(0.0, cfg.noise_normal, (len(xyz), 1)) + tangent
    rgb = _colours(xyz, normal, base, texture, rng, cfg)
    segment = _segments(seg, part, item, cfg.segment_min_vertices)
    return Mesh(xyz, rgb, tri.astype(np.int32), item, segment)


def structure_items(room: Room, rng: np.random.Generator) -> tuple[list[Placed], Placed]:
    """(floor and four walls, ceiling) as placed items; walls and floor show their inner face only."""
    w, d, h = room.width, room.depth, room.height
    keep_top = frozenset({"-z", "+x", "-x", "+y", "-y"})
    floor = ObjectModel(
        "floor",
        [box(0, w, 0, d, -0.1, 0.0, 0, omit=keep_top, solid=False)],
        [material(rng, "floor")],
        kind="structure",
    )
    paint = material(rng, "paint")
    items = [Placed(floor, 0.0, 0.0, 0.0, 0.0)]
    for wall in room.walls:
        face = box(
            -wall.length / 2,
            wall.length / 2,
            0.0,
            0.1,
            0.0,
            h,
            0,
            omit=frozenset({"+y", "+x", "-x", "+z", "-z"}),
            solid=False,
        )
        model = ObjectModel("wall", [face], [paint * rng.normal(1.0, 0.02, 3)], mount_y=0.0, kind="structure")
        items.append(room.against(model, wall.index, wall.length / 2))
    keep_bottom = frozenset({"+z", "+x", "-x", "+y", "-y"})
    ceiling = ObjectModel(
        "ceiling", [box(0, w, 0, d, h, h + 0.1, 0, omit=keep_bottom, solid=False)], [paint], kind="structure"
    )
    return items, Placed(ceiling, 0.0, 0.0, 0.0, 0.0)
