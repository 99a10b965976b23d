"""PLY meshes and point clouds: ScanNet's `_vh_clean_2.ply` and plain xyz+rgb clouds.

Faces are parsed with a known list length (triangles): plyfile otherwise parses them one by one,
which took 0.39 s instead of 1 ms on a real ScanNet scene (DESIGN.md section 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from beep3d.errors import DataError
from beep3d.io import atomic_path


@dataclass
class PlyCloud:
    xyz: np.ndarray  # (N, 3) float32
    rgb: np.ndarray  # (N, 3) uint8
    faces: np.ndarray | None  # (F, 3) int32 vertex indices, None for a point cloud


def read_ply(path: str | Path, *, scene_id: str | None = None, require_color: bool = True) -> PlyCloud:
    """Read vertices (x, y, z, red, green, blue) and triangle faces, validating all of them."""
    path = Path(path)
    if not path.exists():
        raise DataError("PLY file not found", path=path, scene_id=scene_id)
    try:
        with open(path, "rb") as fh:
            ply = PlyData.read(fh, known_list_len={"face": {"vertex_indices": 3}})
            vertex = np.array(ply["vertex"].data)  # copy out of the memory map before the file closes
            faces = None
            if "face" in ply and len(ply["face"].data):
                # With a known list length this is already an (F, 3) array, no per-face parsing.
                faces = np.asarray(ply["face"].data["vertex_indices"], dtype=np.int64).reshape(-1, 3)
    except (PlyParseError, ValueError, KeyError, EOFError, OSError, IndexError, TypeError) as err:
        raise DataError(f"corrupt or truncated PLY: {err}", path=path, scene_id=scene_id) from err
    names = vertex.dtype.names or ()
    for axis in ("x", "y", "z"):
        if axis not in names:
            raise DataError(f"PLY vertices have no '{axis}' property", path=path, scene_id=scene_id)
    xyz = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
    if not np.isfinite(xyz).all():
        bad = int((~np.isfinite(xyz).all(axis=1)).sum())
        raise DataError(f"{bad} vertices have NaN or infinite coordinates", path=path, scene_id=scene_id)
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1)
        if rgb.dtype != np.uint8:
            if rgb.min() < 0 or rgb.max() > 255:
                raise DataError("colours outside 0..255", path=path, scene_id=scene_id)
            rgb = rgb.astype(np.uint8)
    elif require_color:
        raise DataError(
            "PLY vertices have no red/green/blue properties; the model needs colours",
            path=path,
            scene_id=scene_id,
        )
    else:
        rgb = np.full((len(xyz), 3), 128, np.uint8)
    if faces is not None and len(faces) and (faces.min() < 0 or faces.max() >= len(xyz)):
        raise DataError("face refers to a vertex that does not exist", path=path, scene_id=scene_id)
    return PlyCloud(xyz, np.ascontiguousarray(rgb), None if faces is None else faces.astype(np.int32))


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray, faces: np.ndarray | None = None) -> None:
    """Binary little-endian PLY in ScanNet's vertex layout (x y z float, red green blue alpha uchar)."""
    n = len(xyz)
    vertex = np.empty(
        n,
        dtype=[
            ("x", "<f4"),
            ("y", "<f4"),
            ("z", "<f4"),
            ("red", "u1"),
            ("green", "u1"),
            ("blue", "u1"),
            ("alpha", "u1"),
        ],
    )
    vertex["x"], vertex["y"], vertex["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    vertex["red"], vertex["green"], vertex["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    vertex["alpha"] = 255
    elements = [PlyElement.describe(vertex, "vertex")]
    face_bytes = b""
    if faces is not None:
        face = np.empty(len(faces), dtype=[("vertex_indices", "<i4", (3,))])
        face["vertex_indices"] = faces
        elements.append(PlyElement.describe(face, "face", len_types={"vertex_indices": "u1"}))
        # plyfile writes list rows one by one (0.3 s for 70k faces); triangles have a fixed
        # length, so the same bytes (count 3, three int32) come from one packed array.
        packed = np.empty(len(faces), dtype=[("n", "u1"), ("v", "<i4", (3,))])
        packed["n"] = 3
        packed["v"] = faces
        face_bytes = packed.tobytes()
    header = PlyData(elements, text=False, byte_order="<").header
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write((header + "\n").encode("ascii"))
        fh.write(vertex.tobytes())
        fh.write(face_bytes)
