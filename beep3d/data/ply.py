"""PLY meshes and point clouds: ScanNet's `_vh_clean_2.ply` and plain xyz+rgb clouds.

Faces are parsed with a known list length (triangles): plyfile otherwise parses them one by one,
which took 0.39 s instead of 1 ms on a real ScanNet scene (DESIGN.md section 5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from beep3d.errors import DataError
from beep3d.io import atomic_path

# The header is read on its own first; ScanNet's is 250 bytes, comments can make one longer.
_HEADER_BYTES = 1 << 16
# What plyfile and numpy raise on a broken file. OverflowError: an ASCII value out of its
# property's range (300 for a uchar).
_PARSE_ERRORS = (PlyParseError, ValueError, KeyError, EOFError, OSError, IndexError, TypeError, OverflowError)


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
            _check_counts(fh, path, scene_id)
            ply = PlyData.read(fh, known_list_len={"face": {"vertex_indices": 3}})
            vertex = np.array(ply["vertex"].data)  # copy out of the memory map before the file closes
            faces = None
            if "face" in ply and len(ply["face"].data):
                faces = np.array(ply["face"].data["vertex_indices"])
    except DataError:
        raise  # DataError is a ValueError: keep _check_counts' message out of the wrapping below
    except _PARSE_ERRORS as err:
        raise DataError(f"corrupt or truncated PLY: {err}", path=path, scene_id=scene_id) from err
    if faces is not None:
        faces = _triangles(faces, path, scene_id)
    names = vertex.dtype.names or ()
    for axis in ("x", "y", "z", "red", "green", "blue"):
        # A list property reads as an object array, which numpy would fail to stack or compare.
        if axis in names and vertex.dtype[axis].kind not in "iuf":
            raise DataError(
                f"PLY vertex property '{axis}' is {vertex.dtype[axis]}, expected a number",
                path=path,
                scene_id=scene_id,
            )
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
            # Float colours are accepted only when they hold whole numbers 0..255: a NaN or a 0..1
            # scale would otherwise be cast to garbage or to black without a word.
            if not ((rgb >= 0) & (rgb <= 255) & (rgb == np.round(rgb))).all():
                raise DataError("colours must be integers 0..255", path=path, scene_id=scene_id)
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


def _check_counts(fh: BinaryIO, path: Path, scene_id: str | None) -> None:
    """Refuse an element count larger than the file, before plyfile allocates that many rows.

    A row takes at least a byte (a binary value, or a line in ASCII), so such a count is a corrupt
    header; plyfile would first ask for the memory (MemoryError for 10**12 vertices, gigabytes of
    object pointers for an ASCII face count of 10**9). Anything else wrong is left to plyfile.
    """
    size = os.fstat(fh.fileno()).st_size
    if size == 0:  # plyfile would say "line 1: expected 'ply'", which hides what is wrong
        raise DataError("empty file (0 bytes): not a PLY", path=path, scene_id=scene_id)
    head = fh.read(_HEADER_BYTES)
    fh.seek(0)
    for line in head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
        fields = line.split()
        if fields == [b"end_header"]:
            return
        if len(fields) != 3 or fields[0] != b"element":
            continue
        try:
            count = int(fields[2])
        except ValueError:
            continue
        if count > size:
            name = fields[1].decode("ascii", "replace")
            raise DataError(
                f"header declares {count} '{name}' rows but the file has only {size} bytes",
                path=path,
                scene_id=scene_id,
            )
    if len(head) == _HEADER_BYTES:  # a shorter file without end_header: plyfile says where it ends
        raise DataError(f"no end_header in the first {_HEADER_BYTES} bytes", path=path, scene_id=scene_id)


def _triangles(indices: np.ndarray, path: Path, scene_id: str | None) -> np.ndarray:
    """(F, 3) integer vertex indices from the face element's `vertex_indices`.

    A binary file with no other list property is memory-mapped with the known length, so this is
    already an (F, 3) array with no per-face parsing; ASCII faces come as an object array of rows.
    """
    if indices.dtype == object and all(np.shape(row) == (3,) for row in indices):
        indices = np.stack(list(indices))
    if indices.ndim != 2 or indices.shape[1] != 3:
        raise DataError("faces must be lists of 3 vertex indices", path=path, scene_id=scene_id)
    if indices.dtype.kind not in "iu":
        raise DataError(
            f"face vertex indices are {indices.dtype}, expected integers", path=path, scene_id=scene_id
        )
    return indices


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
