"""Reader for the S3DIS layout (DESIGN.md section 2).

    Stanford3dDataset_v1.2_Aligned_Version/Area_<k>/<room>/Annotations/<class>_<n>.txt

Each annotation file is one instance, one point per line `x y z r g b`. A room is the union of its
annotation files (the room-level txt repeats the same points and is not read). Coordinates are
already aligned and S3DIS ships no superpoints, so `superpoint` is None.

The real release has one corrupt line (Area_5/hallway_6/Annotations/ceiling_1.txt, line 180389,
a stray control byte next to a number). Files are parsed with pandas' C parser. A file that fails
it is parsed again with its control bytes deleted: a line that becomes six valid numbers that way
is accepted and counted. Only a file that still fails is read line by line, to name the bad line.
"""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from beep3d.classes import S3DIS_NAMES
from beep3d.data.scene import RawScene
from beep3d.errors import DataError

log = logging.getLogger(__name__)

S3DIS_ROOT_NAME = "Stanford3dDataset_v1.2_Aligned_Version"
AREA_RE = re.compile(r"^Area_(\d+)$")
ROOM_RE = re.compile(r"^[A-Za-z]+_\d+$")
ANNOTATION_RE = re.compile(r"^([A-Za-z]+)_(\d+)\.txt$")

# `stairs` appears in a few real rooms but is not one of the 13 benchmark classes; everyone
# folds it into clutter.
CLASS_ALIASES = {"stairs": "clutter"}
CLASS_INDEX = {name: i for i, name in enumerate(S3DIS_NAMES)}

# Control bytes (not the whitespace a tokenizer splits on) that may be deleted from a bad line.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])
_CONTROL_RE = re.compile(b"[" + re.escape(_CONTROL_BYTES) + b"]")


@dataclass
class AnnotationPoints:
    xyz: np.ndarray  # (M, 3) float64
    rgb: np.ndarray  # (M, 3) uint8
    repaired_lines: int  # lines accepted only after deleting control characters


def s3dis_scene_id(area: str, room: str) -> str:
    """Scene id of a room, e.g. ("Area_1", "office_1") -> "Area_1_office_1"."""
    return f"{area}_{room}"


def _check_names(area: str, room: str, path: Path | None = None) -> None:
    # Both become path components, so anything but the S3DIS naming is refused (traversal guard).
    if not isinstance(area, str) or not AREA_RE.match(area):
        raise DataError(f"invalid S3DIS area {area!r}: expected Area_<k>", path=path)
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise DataError(f"invalid S3DIS room {room!r}: expected <type>_<n>, e.g. office_1", path=path)


def list_rooms(root: Path) -> list[tuple[str, str]]:
    """All (area, room) pairs under `root` (the Stanford3dDataset_v1.2_Aligned_Version folder), sorted.

    Files beside the rooms (e.g. Area_k_alignmentAngle.txt) and hidden entries are ignored; a room
    folder without an Annotations folder is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("S3DIS root folder not found", path=root)
    areas = [p for p in root.iterdir() if p.is_dir() and AREA_RE.match(p.name)]
    if not areas:
        raise DataError(f"no Area_<k> folders: is this the {S3DIS_ROOT_NAME} folder?", path=root)
    rooms = []
    for area in areas:
        for entry in area.iterdir():
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if not ROOM_RE.match(entry.name):
                raise DataError("unexpected folder in an area: rooms are named <type>_<n>", path=entry)
            if not (entry / "Annotations").is_dir():
                raise DataError("room has no Annotations folder", path=entry)
            rooms.append((area.name, entry.name))
    if not rooms:
        raise DataError("no rooms found under any Area_<k> folder", path=root)
    return sorted(rooms)


def _class_of(path: Path, scene_id: str) -> int:
    match = ANNOTATION_RE.match(path.name)
    if not match:
        raise DataError("annotation file name is not <class>_<n>.txt", path=path, scene_id=scene_id)
    name = CLASS_ALIASES.get(match.group(1), match.group(1))
    if name not in CLASS_INDEX:
        raise DataError(
            f"unknown S3DIS class {match.group(1)!r}; known: {', '.join(S3DIS_NAMES)} (and stairs -> clutter)",
            path=path,
            scene_id=scene_id,
        )
    return CLASS_INDEX[name]


def _parse_fast(data: bytes) -> np.ndarray | None:
    """(M, 6) float64 via pandas' C parser, or None if the file is not clean `x y z r g b` lines."""
    try:
        table = pd.read_csv(
            io.BytesIO(data), sep=r"\s+", header=None, dtype=np.float64, engine="c", na_filter=False
        ).to_numpy()
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None
    if table.ndim != 2 or table.shape[1] != 6 or not np.isfinite(table).all():
        return None
    return table


def _parse_without_control_bytes(data: bytes, path: Path, scene_id: str) -> tuple[np.ndarray | None, int]:
    """Fast path again with control bytes deleted; None if there are none or the file still fails.

    Deleting them from the whole buffer is the same as deleting them line by line, and keeps a
    ceiling file of hundreds of thousands of lines on the fast parser instead of a Python loop over every line.
    """
    if not _CONTROL_RE.search(data):
        return None, 0
    table = _parse_fast(data.translate(None, _CONTROL_BYTES))
    if table is None:
        return None, 0
    lines, line_no, last = [], 1, 0
    for match in _CONTROL_RE.finditer(data):  # line numbers of the repaired lines, in one pass
        line_no += data.count(b"\n", last, match.start())
        last = match.start()
        if not lines or lines[-1] != line_no:
            lines.append(line_no)
    log.warning("%s: %s line(s) %s had control bytes; repaired", scene_id, path, lines[:10])
    return table, len(lines)


def _parse_slow(data: bytes, path: Path, scene_id: str) -> tuple[np.ndarray, int]:
    """Line by line, to name the first bad line; repairs lines whose only fault is control bytes.

    Only reached when both fast paths failed, i.e. (almost always) on the way to a DataError.
    """
    rows: list[list[float]] = []
    repaired = 0
    for line_no, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        values = _numbers(line)
        if values is None:
            values = _numbers(line.translate(None, _CONTROL_BYTES))
            if values is None:
                shown = line[:80].decode("latin-1")
                raise DataError(
                    f"line {line_no} is not 6 finite numbers (x y z r g b): {shown!r}",
                    path=path,
                    scene_id=scene_id,
                )
            repaired += 1
            log.warning("%s: %s line %d had control bytes; repaired", scene_id, path, line_no)
        rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(-1, 6), repaired


def _numbers(line: bytes) -> list[float] | None:
    tokens = line.split()
    if len(tokens) != 6:
        return None
    try:
        values = [float(tok) for tok in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def read_annotation(path: Path, scene_id: str) -> AnnotationPoints:
    """Points of one annotation file, validated: coordinates finite as float32, integer colours 0..255."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read annotation file: {err}", path=path, scene_id=scene_id) from err
    table, repaired = _parse_fast(data), 0
    if table is None:
        table, repaired = _parse_without_control_bytes(data, path, scene_id)
    if table is None:
        table, repaired = _parse_slow(data, path, scene_id)
    if len(table) == 0:
        raise DataError("annotation file has no points", path=path, scene_id=scene_id)
    rgb = table[:, 3:]
    if (rgb < 0).any() or (rgb > 255).any() or (rgb != np.round(rgb)).any():
        bad = int(np.flatnonzero(((rgb < 0) | (rgb > 255) | (rgb != np.round(rgb))).any(axis=1))[0])
        raise DataError(
            f"colours must be integers 0..255; line {bad + 1} has {rgb[bad].tolist()}",
            path=path,
            scene_id=scene_id,
        )
    # Finite here, but the room is stored as float32, where 1e39 would become inf.
    too_large = (np.abs(table[:, :3]) > np.finfo(np.float32).max).any(axis=1)
    if too_large.any():
        bad = int(np.flatnonzero(too_large)[0])
        raise DataError(
            f"point {bad + 1} has a coordinate beyond the float32 range: {table[bad, :3].tolist()}",
            path=path,
            scene_id=scene_id,
        )
    return AnnotationPoints(table[:, :3], rgb.astype(np.uint8), repaired)


def read_s3dis_room(root: Path, area: str, room: str, val_area: int = 5) -> RawScene:
    """One room as a RawScene: label = class index 0..12, instance = 1..K in sorted file order.

    split is "val" for Area_<val_area>, else "train"; superpoint is None.
    """
    _check_names(area, room, Path(root))
    scene_id = s3dis_scene_id(area, room)
    folder = Path(root) / area / room / "Annotations"
    if not folder.is_dir():
        raise DataError("room has no Annotations folder", path=folder, scene_id=scene_id)
    files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and not p.name.startswith("."))
    if not files:
        raise DataError("Annotations folder holds no <class>_<n>.txt files", path=folder, scene_id=scene_id)
    classes = [_class_of(p, scene_id) for p in files]  # fail on a bad name before parsing anything
    parts = [read_annotation(p, scene_id) for p in files]
    counts = np.array([len(p.xyz) for p in parts])
    repaired = sum(p.repaired_lines for p in parts)
    if repaired:
        log.warning("%s: accepted %d repaired line(s)", scene_id, repaired)
    return RawScene(
        scene_id=scene_id,
        xyz=np.concatenate([p.xyz for p in parts]).astype(np.float32),
        rgb=np.concatenate([p.rgb for p in parts]),
        label=np.repeat(np.array(classes, np.int16), counts),
        instance=np.repeat(np.arange(1, len(parts) + 1, dtype=np.int32), counts),
        superpoint=None,
        split="val" if area == f"Area_{val_area}" else "train",
        class_set="s3dis",
    )
