"""Surface primitives in an object's own frame, and their sampling into triangle-mesh patches.

Frame convention for every object: x = width, y = depth with the back at +y (the side that goes
against a wall), z up with z = 0 on the floor. A `Patch` is one sampled face: a jittered grid of
vertices, two triangles per cell, and a local segment index per vertex (a block of the face).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    """A cuboid part. `solid` parts hide whatever other surface lies inside them."""

    center: Vec3
    size: Vec3
    color: int = 0  # index into the owning object's palette
    yaw: float = 0.0  # radians about its own centre, in the object frame
    omit: frozenset[str] = frozenset()  # faces never sampled: "+x" "-x" "+y" "-y" "+z" "-z"
    solid: bool = True
    inward: bool = False  # a hollow seen from inside (basin, tub): normals point to the centre
    density: float = 1.0  # vertex density multiplier (glass is scanned sparsely)


@dataclass(frozen=True)
class Cylinder:
    """An elliptic cylinder standing on z0 (trash can, toilet bowl, chair column)."""

    center: tuple[float, float]
    radii: tuple[float, float]
    z0: float
    z1: float
    color: int = 0
    caps: tuple[str, ...] = ("top",)  # which end discs are sampled: "top", "bottom"
    solid: bool = True
    density: float = 1.0


@dataclass(frozen=True)
class Sheet:
    """A hanging cloth in the x-z plane at depth y, folded along y (curtains). Seen from -y."""

    x0: float
    x1: float
    z0: float
    z1: float
    y: float
    amplitude: float  # metres, fold depth
    wavelength: float  # metres between folds
    phase: float = 0.0
    color: int = 0


Part = Box | Cylinder | Sheet


@dataclass(frozen=True)
class Carve:
    """An oriented box that hides other items' surfaces (a wall opening, a sink's bowl)."""

    center: Vec3
    size: Vec3
    yaw: float = 0.0


@dataclass
class Patch:
    xyz: np.ndarray  # (n, 3) float64
    normal: np.ndarray  # (n, 3) float64 unit outward normals
    faces: np.ndarray  # (f, 3) int64 indices into this patch
    block: np.ndarray  # (n,) int64 local segment block within the face
    color: int
    face_name: str = ""
    meta: dict = field(default_factory=dict)


def _cells(length: float, spacing: float, minimum: int = 1) -> int:
    return max(minimum, int(np.ceil(length / spacing - 1e-9)))


@functools.lru_cache(maxsize=4096)
def _grid_faces(nu: int, nv: int) -> np.ndarray:
    """(2*nu*nv, 3) triangles of an (nu+1) x (nv+1) vertex grid; cached, read-only."""
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
    v00, v10, v01, v11 = idx[:-1, :-1], idx[1:, :-1], idx[:-1, 1:], idx[1:, 1:]
    faces = np.concatenate(
        [np.stack([v00, v10, v11], -1).reshape(-1, 3), np.stack([v00, v11, v01], -1).reshape(-1, 3)]
    )
    faces.flags.writeable = False
    return faces


def sample_rect(
    origin: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    spacing: float,
    rng: np.random.Generator,
    jitter: float,
    segment_size: float,
    color: int = 0,
    face_name: str = "",
) -> Patch:
    """Grid-mesh the parallelogram origin + a*u + b*v (a, b in [0, 1]); normal = u x v."""
    lu, lv = float(np.sqrt(u @ u)), float(np.sqrt(v @ v))
    nu, nv = _cells(lu, spacing), _cells(lv, spacing)
    A = np.repeat(np.linspace(0.0, 1.0, nu + 1), nv + 1).reshape(nu + 1, nv + 1)
    B = np.tile(np.linspace(0.0, 1.0, nv + 1), nu + 1).reshape(nu + 1, nv + 1)
    if jitter > 0 and nu > 1 and nv > 1:
        # Interior vertices only, so face edges stay straight and neighbouring faces meet.
        A[1:-1, 1:-1] += rng.uniform(-jitter / 2, jitter / 2, (nu - 1, nv - 1)) / nu
        B[1:-1, 1:-1] += rng.uniform(-jitter / 2, jitter / 2, (nu - 1, nv - 1)) / nv
    A, B = A.ravel(), B.ravel()
    xyz = origin + A[:, None] * u + B[:, None] * v
    n = np.array([u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]])
    normal = np.tile(n / np.sqrt(n @ n), (len(xyz), 1))
    # Segments: blocks of about segment_size, offset at random so block edges do not line up.
    nbu, nbv = _cells(lu, segment_size), _cells(lv, segment_size)
    off_u, off_v = rng.uniform(0, 1, 2)
    bu = np.minimum(np.floor(A * nbu + off_u * (nbu > 1)), nbu).astype(np.int64)
    bv = np.minimum(np.floor(B * nbv + off_v * (nbv > 1)), nbv).astype(np.int64)
    return Patch(
        xyz, normal, _grid_faces(nu, nv), bu * (nbv + 1) + bv, color, face_name, {"uv": (A * lu, B * lv)}
    )


# Box faces: (name, origin corner in units of the half size, edge u, edge v); u x v points outward.
_BOX_FACES = (
    ("+z", (-1, -1, 1), (2, 0, 0), (0, 2, 0)),
    ("-z", (-1, -1, -1), (0, 2, 0), (2, 0, 0)),
    ("+x", (1, -1, -1), (0, 2, 0), (0, 0, 2)),
    ("-x", (-1, -1, -1), (0, 0, 2), (0, 2, 0)),
    ("+y", (-1, 1, -1), (0, 0, 2), (2, 0, 0)),
    ("-y", (-1, -1, -1), (2, 0, 0), (0, 0, 2)),
)


def rotation_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def sample_box(
    box: Box,
    spacing: float,
    rng: np.random.Generator,
    jitter: float,
    segment_size: float,
    underside: float = 1.0,
) -> list[Patch]:
    """Mesh each kept face; the downward face (`-z`, seen only from below) at `underside` x spacing."""
    half = np.asarray(box.size, np.float64) / 2
    rot = rotation_z(box.yaw)
    center = np.asarray(box.center, np.float64)
    spacing = spacing / np.sqrt(box.density)
    patches = []
    for name, corner, eu, ev in _BOX_FACES:
        if name in box.omit:
            continue
        if box.inward:
            # Seen from inside: swap the edges so u x v points to the centre.
            eu, ev = ev, eu
        origin = center + rot @ (half * np.asarray(corner, np.float64))
        u = rot @ (half * np.asarray(eu, np.float64))
        v = rot @ (half * np.asarray(ev, np.float64))
        step = spacing * underside if name == "-z" and not box.inward else spacing
        patches.append(sample_rect(origin, u, v, step, rng, jitter, segment_size, box.color, name))
    return patches


def sample_cylinder(
    cyl: Cylinder, spacing: float, rng: np.random.Generator, segment_size: float
) -> list[Patch]:
    rx, ry = cyl.radii
    spacing = spacing / np.sqrt(cyl.density)
    perimeter = np.pi * (3 * (rx + ry) - np.sqrt((3 * rx + ry) * (rx + 3 * ry)))  # Ramanujan
    nt = _cells(perimeter, spacing, minimum=6)
    nz = _cells(cyl.z1 - cyl.z0, spacing)
    theta = np.arange(nt) * (2 * np.pi / nt)
    z = np.linspace(cyl.z0, cyl.z1, nz + 1)
    T, Z = np.meshgrid(theta, z, indexing="ij")  # (nt, nz+1)
    T, Z = T.ravel(), Z.ravel()
    cx, cy = cyl.center
    xyz = np.stack([cx + rx * np.cos(T), cy + ry * np.sin(T), Z], axis=1)
    normal = np.stack([np.cos(T) / rx, np.sin(T) / ry, np.zeros_like(T)], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    idx = np.arange(nt * (nz + 1)).reshape(nt, nz + 1)
    nxt = np.roll(idx, -1, axis=0)  # wraps around the seam
    v00, v10, v01, v11 = idx[:, :-1], nxt[:, :-1], idx[:, 1:], nxt[:, 1:]
    faces = np.concatenate(
        [np.stack([v00, v10, v11], -1).reshape(-1, 3), np.stack([v00, v11, v01], -1).reshape(-1, 3)]
    )
    n_blocks = _cells(perimeter, segment_size)
    block = np.floor(T / (2 * np.pi) * n_blocks).astype(np.int64)
    patches = [Patch(xyz, normal, faces, block, cyl.color, "side")]
    for cap in cyl.caps:
        zc = cyl.z1 if cap == "top" else cyl.z0
        sign = 1.0 if cap == "top" else -1.0
        origin = np.array([cx - rx, cy - ry, zc])
        u, v = np.array([2 * rx, 0.0, 0.0]), np.array([0.0, 2 * ry, 0.0])
        if sign < 0:
            u, v = v, u
        disc = sample_rect(origin, u, v, spacing, rng, 0.0, segment_size, cyl.color, cap)
        inside = ((disc.xyz[:, 0] - cx) / rx) ** 2 + ((disc.xyz[:, 1] - cy) / ry) ** 2 <= 1.0 + 1e-9
        patches.append(keep_vertices(disc, inside))
    return patches


def sample_sheet(sheet: Sheet, spacing: float, rng: np.random.Generator, segment_size: float) -> list[Patch]:
    origin = np.array([sheet.x0, sheet.y, sheet.z0])
    u = np.array([sheet.x1 - sheet.x0, 0.0, 0.0])
    v = np.array([0.0, 0.0, sheet.z1 - sheet.z0])
    patch = sample_rect(origin, u, v, spacing, rng, 0.0, segment_size, sheet.color, "sheet")
    a = patch.meta["uv"][0]  # distance along x from x0
    k = 2 * np.pi / sheet.wavelength
    patch.xyz[:, 1] += sheet.amplitude * np.sin(k * a + sheet.phase)
    slope = sheet.amplitude * k * np.cos(k * a + sheet.phase)  # dy/dx of the folded cloth
    normal = np.stack([slope, -np.ones_like(slope), np.zeros_like(slope)], axis=1)
    patch.normal = normal / np.linalg.norm(normal, axis=1, keepdims=True)
    return [patch]


def sample_part(
    part: Part,
    spacing: float,
    rng: np.random.Generator,
    jitter: float,
    segment_size: float,
    underside: float = 1.0,
) -> list[Patch]:
    if isinstance(part, Box):
        return sample_box(part, spacing, rng, jitter, segment_size, underside)
    if isinstance(part, Cylinder):
        return sample_cylinder(part, spacing, rng, segment_size)
    return sample_sheet(part, spacing, rng, segment_size)


def keep_vertices(patch: Patch, keep: np.ndarray) -> Patch:
    """Drop vertices where `keep` is False and every triangle that used one of them."""
    remap = np.full(len(keep), -1, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    faces = remap[patch.faces]
    faces = faces[(faces >= 0).all(axis=1)]
    return Patch(
        patch.xyz[keep], patch.normal[keep], faces, patch.block[keep], patch.color, patch.face_name, {}
    )


def part_extent(part: Part) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned (lo, hi) of a part in its object's frame."""
    if isinstance(part, Box):
        half = np.asarray(part.size) / 2
        c, s = abs(np.cos(part.yaw)), abs(np.sin(part.yaw))
        ext = np.array([c * half[0] + s * half[1], s * half[0] + c * half[1], half[2]])
        return np.asarray(part.center) - ext, np.asarray(part.center) + ext
    if isinstance(part, Cylinder):
        lo = np.array([part.center[0] - part.radii[0], part.center[1] - part.radii[1], part.z0])
        hi = np.array([part.center[0] + part.radii[0], part.center[1] + part.radii[1], part.z1])
        return lo, hi
    return (
        np.array([part.x0, part.y - part.amplitude, part.z0]),
        np.array([part.x1, part.y + part.amplitude, part.z1]),
    )
