"""Reader for the ScanNet v2 raw layout (DESIGN.md section 2).

    <root>/scannetv2-labels.combined.tsv          raw_category -> nyu40id
    <root>/scannetv2_{train,val,test}.txt         one scene id per line
    <root>/scans/<scene>/                         train and val scenes
        <scene>_vh_clean_2.ply                    mesh: vertices xyz + rgb(a), faces
        <scene>_vh_clean_2.0.010000.segs.json     segIndices: one segment id per vertex
        <scene>.aggregation.json                  segGroups: objectId, label, segments
        <scene>.txt                               meta, `axisAlignment = 16 floats`
    <root>/scans_test/<scene>/                    test scenes: the same minus the aggregation

Everything read is validated; bad input raises `DataError` naming the scene and the file, never
a bare KeyError / JSONDecodeError / IndexError, because preprocessing runs this in worker
processes where a bare traceback would not say which of 1500 scenes is broken.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path

import numpy as np

from beep3d.classes import SCANNET
from beep3d.data.ply import read_ply
from beep3d.data.scene import RawScene
from beep3d.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
LABEL_MAP_NAME = "scannetv2-labels.combined.tsv"
SCENE_ID_RE = re.compile(r"^scene\d{4}_\d{2}$")

# A segment-id lookup table is used instead of a sort when the ids are this dense; ScanNet's ids
# are vertex indices of each segment's seed, so they are always < N and the table is tiny.
_LUT_MAX_RATIO = 8
# Instance ids are objectId + 1 in an int32 column; a larger objectId would wrap to a negative id.
_MAX_OBJECT_ID = np.iinfo(np.int32).max - 1


def split_file(root: Path, split: str) -> Path:
    return Path(root) / f"scannetv2_{split}.txt"


def check_scene_id(scene_id: str, *, path: Path | None = None) -> str:
    """Refuse anything but `sceneXXXX_YY`: ids become path components, so this guards traversal."""
    if not isinstance(scene_id, str) or not SCENE_ID_RE.match(scene_id):
        raise DataError(
            f"invalid ScanNet scene id {scene_id!r}: expected sceneXXXX_YY (e.g. scene0000_00)", path=path
        )
    return scene_id


def read_label_map(tsv_path: Path) -> dict[str, int]:
    """raw_category -> nyu40id from `scannetv2-labels.combined.tsv` (tab-separated, header row)."""
    tsv_path = Path(tsv_path)
    try:
        with open(tsv_path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except FileNotFoundError as err:
        raise DataError("label map (scannetv2-labels.combined.tsv) not found", path=tsv_path) from err
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot read label map: {err}", path=tsv_path) from err
    if not rows:
        raise DataError("label map is empty", path=tsv_path)
    header = rows[0]
    for column in ("raw_category", "nyu40id"):
        if column not in header:
            raise DataError(f"label map header has no '{column}' column (header: {header})", path=tsv_path)
    i_raw, i_nyu = header.index("raw_category"), header.index("nyu40id")
    mapping: dict[str, int] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= max(i_raw, i_nyu):
            raise DataError(f"line {line_no} has {len(row)} columns, header has {len(header)}", path=tsv_path)
        raw, nyu_text = row[i_raw], row[i_nyu].strip()
        try:
            nyu = int(nyu_text)
        except ValueError:
            raise DataError(
                f"line {line_no}: nyu40id {nyu_text!r} of {raw!r} is not an integer", path=tsv_path
            ) from None
        if not 0 <= nyu <= np.iinfo(np.int16).max:
            raise DataError(f"line {line_no}: nyu40id {nyu} of {raw!r} out of range", path=tsv_path)
        if mapping.get(raw, nyu) != nyu:
            raise DataError(
                f"line {line_no}: raw category {raw!r} mapped twice ({mapping[raw]} and {nyu})", path=tsv_path
            )
        mapping[raw] = nyu
    if not mapping:
        raise DataError("label map has a header but no rows", path=tsv_path)
    return mapping


def read_splits(root: Path) -> dict[str, str]:
    """scene_id -> "train" | "val" | "test"; a missing split file means no scenes of that split."""
    splits: dict[str, str] = {}
    for split in SPLITS:
        path = split_file(root, split)
        if not path.exists():
            continue
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read split file: {err}", path=path) from err
        for line_no, line in enumerate(lines, start=1):
            scene_id = line.strip()
            if not scene_id:
                continue
            if not SCENE_ID_RE.match(scene_id):
                raise DataError(f"line {line_no}: invalid scene id {scene_id!r}", path=path)
            if scene_id in splits and splits[scene_id] != split:
                raise DataError(
                    f"line {line_no}: {scene_id} is listed in both {splits[scene_id]} and {split}", path=path
                )
            splits[scene_id] = split
    return splits


def scene_files(root: Path, scene_id: str, split: str) -> dict[str, Path]:
    """Paths of one scene's files: keys ply, segs, meta, and aggregation (train/val only).

    Test scenes live under `scans_test/` and have no aggregation (no annotation is released).
    """
    check_scene_id(scene_id, path=Path(root))
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}", path=root, scene_id=scene_id)
    folder = Path(root) / ("scans_test" if split == "test" else "scans") / scene_id
    files = {
        "ply": folder / f"{scene_id}_vh_clean_2.ply",
        "segs": folder / f"{scene_id}_vh_clean_2.0.010000.segs.json",
        "meta": folder / f"{scene_id}.txt",
    }
    if split != "test":
        files["aggregation"] = folder / f"{scene_id}.aggregation.json"
    return files


def read_axis_alignment(meta_path: Path, scene_id: str) -> np.ndarray:
    """(4, 4) float64 from the meta file's `axisAlignment` line (row-major, aligned = M @ [x y z 1]).

    Identity when the line is absent (test scenes ship none). A missing meta file is an error.
    """
    meta_path = Path(meta_path)
    try:
        text = meta_path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DataError("meta file not found", path=meta_path, scene_id=scene_id) from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read meta file: {err}", path=meta_path, scene_id=scene_id) from err
    values = [
        value
        for key, sep, value in (line.partition("=") for line in text.splitlines())
        if sep and key.strip() == "axisAlignment"
    ]
    if not values:
        return np.eye(4)
    if len(values) > 1:
        raise DataError("meta file has more than one axisAlignment line", path=meta_path, scene_id=scene_id)
    try:
        matrix = np.array([float(tok) for tok in values[0].split()], dtype=np.float64)
    except ValueError:
        raise DataError(
            f"axisAlignment is not a list of numbers: {values[0].strip()!r}",
            path=meta_path,
            scene_id=scene_id,
        ) from None
    if matrix.size != 16 or not np.isfinite(matrix).all():
        raise DataError(
            f"axisAlignment must be 16 finite numbers, got {values[0].strip()!r}",
            path=meta_path,
            scene_id=scene_id,
        )
    matrix = matrix.reshape(4, 4)
    # A rigid transform's last row is 0 0 0 1; anything else would scale the homogeneous coordinate.
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0]):
        raise DataError(
            f"axisAlignment last row is {matrix[3].tolist()}, expected [0, 0, 0, 1]",
            path=meta_path,
            scene_id=scene_id,
        )
    return matrix


def apply_axis_alignment(xyz: np.ndarray, matrix: np.ndarray, meta_path: Path, scene_id: str) -> np.ndarray:
    """(N, 3) float32 `matrix` @ [x y z 1] of (N, 3) points; DataError naming the meta file if the
    result is not finite in float32."""
    # einsum, not `@`: a (N, 3) x (3, 3) product gains nothing from BLAS threads, and those threads
    # stalled it by tens of ms when preprocessing workers already keep every core busy.
    out = np.einsum("ij,nj->ni", matrix[:3, :3], np.asarray(xyz, np.float64)) + matrix[:3, 3]  # (N, 3)
    if not np.isfinite(out).all() or np.abs(out).max(initial=0.0) > np.finfo(np.float32).max:
        raise DataError("aligned coordinates are not finite", path=meta_path, scene_id=scene_id)
    return out.astype(np.float32)


def _load_json(path: Path, scene_id: str, what: str) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = json.load(fh)
    except FileNotFoundError as err:
        raise DataError(f"{what} file not found", path=path, scene_id=scene_id) from err
    # JSONDecodeError and UnicodeDecodeError are ValueErrors; RecursionError: absurdly deep nesting.
    except (OSError, ValueError, RecursionError) as err:
        raise DataError(f"malformed or truncated {what} JSON: {err}", path=path, scene_id=scene_id) from err
    if not isinstance(obj, dict):
        raise DataError(
            f"{what} JSON is a {type(obj).__name__}, expected an object", path=path, scene_id=scene_id
        )
    return obj


def _int_array(values: object, path: Path, scene_id: str, what: str) -> np.ndarray:
    """A JSON list of integers as int64, refusing floats, strings, bools, nesting and nulls."""
    if not isinstance(values, list):
        raise DataError(
            f"{what} is a {type(values).__name__}, expected a list of integers", path=path, scene_id=scene_id
        )
    # Checking the element types first is as fast as letting numpy infer a dtype, and unlike that
    # it refuses bools (numpy would read True as 1) and mixed int/float lists.
    if not set(map(type, values)) <= {int}:
        raise DataError(f"{what} must be a flat list of integers", path=path, scene_id=scene_id)
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        raise DataError(f"{what} holds integers too large for int64", path=path, scene_id=scene_id) from None


class SegmentIndex:
    """Maps original segment ids to contiguous 0..S-1 (sorted by original id)."""

    def __init__(self, seg: np.ndarray):
        n = len(seg)
        self.lut: np.ndarray | None = None  # (max id + 1,) original id -> contiguous index or -1
        self.ids: np.ndarray | None = None  # (S,) sorted original ids, when no table is used
        lo, hi = (int(seg.min()), int(seg.max())) if n else (0, -1)
        if lo >= 0 and hi < _LUT_MAX_RATIO * n + 1024:
            present = np.zeros(hi + 1, dtype=bool)
            present[seg] = True
            self.lut = np.cumsum(present, dtype=np.int64) - 1
            self.lut[~present] = -1
            self.contiguous = self.lut[seg]
            self.n_segments = int(present.sum())
        else:
            self.ids, inverse = np.unique(seg, return_inverse=True)
            self.contiguous = inverse.reshape(-1)
            self.n_segments = len(self.ids)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Contiguous index of each original id; -1 where the id is not a segment of this scene."""
        out = np.full(len(ids), -1, np.int64)
        if self.lut is not None:
            ok = (ids >= 0) & (ids < len(self.lut))
            out[ok] = self.lut[ids[ok]]
        elif self.ids is not None and self.n_segments:
            pos = np.clip(np.searchsorted(self.ids, ids), 0, self.n_segments - 1)
            hit = self.ids[pos] == ids
            out[hit] = pos[hit]
        return out


def read_segments(path: Path, scene_id: str, n_vertices: int) -> SegmentIndex:
    obj = _load_json(path, scene_id, "segs")
    if "segIndices" not in obj:
        raise DataError("segs JSON has no 'segIndices'", path=path, scene_id=scene_id)
    seg = _int_array(obj["segIndices"], path, scene_id, "segIndices")
    if len(seg) != n_vertices:
        raise DataError(
            f"segIndices has {len(seg)} entries but the mesh has {n_vertices} vertices",
            path=path,
            scene_id=scene_id,
        )
    return SegmentIndex(seg)


def _read_aggregation(
    path: Path, scene_id: str, segments: SegmentIndex, label_map: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment (label, instance), each (S,): nyu40 id or -1, objectId + 1 or 0."""
    obj = _load_json(path, scene_id, "aggregation")
    groups = obj.get("segGroups")
    if not isinstance(groups, list):
        raise DataError("aggregation JSON has no 'segGroups' list", path=path, scene_id=scene_id)
    seg_label = np.full(segments.n_segments, -1, np.int64)
    seg_instance = np.zeros(segments.n_segments, np.int64)
    seen_objects: set[int] = set()
    for k, group in enumerate(groups):
        where = f"segGroups[{k}]"
        if not isinstance(group, dict):
            raise DataError(f"{where} is not an object", path=path, scene_id=scene_id)
        object_id, raw_label = group.get("objectId"), group.get("label")
        if (
            isinstance(object_id, bool)
            or not isinstance(object_id, int)
            or not 0 <= object_id <= _MAX_OBJECT_ID
        ):
            raise DataError(
                f"{where}.objectId {object_id!r} is not an integer 0..{_MAX_OBJECT_ID}",
                path=path,
                scene_id=scene_id,
            )
        if object_id in seen_objects:
            raise DataError(f"{where}: objectId {object_id} used by two groups", path=path, scene_id=scene_id)
        seen_objects.add(object_id)
        if not isinstance(raw_label, str):
            raise DataError(f"{where}.label {raw_label!r} is not a string", path=path, scene_id=scene_id)
        if raw_label not in label_map:
            raise DataError(
                f"{where}: raw label {raw_label!r} is not in {LABEL_MAP_NAME}", path=path, scene_id=scene_id
            )
        ids = _int_array(group.get("segments"), path, scene_id, f"{where}.segments")
        idx = segments.lookup(ids)
        if (idx < 0).any():
            missing = ids[idx < 0][:5].tolist()
            raise DataError(
                f"{where} (objectId {object_id}) refers to segment ids {missing} that are not in the segs file",
                path=path,
                scene_id=scene_id,
            )
        # Real ScanNet aggregations list a few segments in two groups. The first group's claim is
        # kept so that instances stay disjoint (one instance id per point) and the result does not
        # depend on anything but file order; failing would lose whole scenes over a few segments.
        idx = idx[seg_instance[idx] == 0]
        seg_instance[idx] = object_id + 1
        seg_label[idx] = label_map[raw_label]
    return seg_label, seg_instance


def read_scannet_scene(root: Path, scene_id: str, split: str, label_map: dict[str, int]) -> RawScene:
    """One ScanNet-layout scene as a RawScene (N = mesh vertices), axis-aligned.

    label: nyu40 id per vertex, -1 where no annotated segment covers it (and on test scenes);
    instance: objectId + 1, 0 for none; superpoint: segs.json ids made contiguous 0..S-1.
    """
    files = scene_files(root, scene_id, split)
    cloud = read_ply(files["ply"], scene_id=scene_id)
    n = len(cloud.xyz)
    if n == 0:
        raise DataError("mesh has no vertices", path=files["ply"], scene_id=scene_id)
    matrix = read_axis_alignment(files["meta"], scene_id)
    has_alignment = not np.array_equal(matrix, np.eye(4))
    if split != "test" and not has_alignment:
        log.warning("%s: no axisAlignment in %s; using identity", scene_id, files["meta"])
    xyz = apply_axis_alignment(cloud.xyz, matrix, files["meta"], scene_id)  # (N, 3)
    segments = read_segments(files["segs"], scene_id, n)
    superpoint = segments.contiguous  # (N,)
    if split == "test":
        label = np.full(n, -1, np.int16)
        instance = np.zeros(n, np.int32)
    else:
        seg_label, seg_instance = _read_aggregation(files["aggregation"], scene_id, segments, label_map)
        label = seg_label[superpoint].astype(np.int16)
        instance = seg_instance[superpoint].astype(np.int32)
        # Checked per segment (every segment has at least one vertex): same answer, S << N.
        if not ((seg_instance > 0) & SCANNET.is_instance(seg_label)).any():
            raise DataError(
                "scene has no objects of the 18 ScanNet instance classes",
                path=files["aggregation"],
                scene_id=scene_id,
            )
    return RawScene(
        scene_id=scene_id,
        xyz=xyz,
        rgb=cloud.rgb,
        label=label,
        instance=instance,
        superpoint=superpoint.astype(np.int32),
        split=split,
        class_set="scannet",
    )
