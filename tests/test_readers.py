"""Raw readers on hand-made files: ScanNet v2 layout and S3DIS layout, good and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from beep3d.classes import S3DIS_NAMES
from beep3d.data.ply import write_ply
from beep3d.data.s3dis import list_rooms, read_annotation, read_s3dis_room, s3dis_scene_id
from beep3d.data.scannet import (
    LABEL_MAP_NAME,
    read_axis_alignment,
    read_label_map,
    read_scannet_scene,
    read_splits,
    scene_files,
)
from beep3d.errors import DataError

# ----------------------------------------------------------------------------- ScanNet builders

TSV_ROWS = [  # (raw_category, nyu40id)
    ("chair", 5),
    ("wall", 1),
    ("floor", 2),
    ("table", 7),
    ("kitchen cabinets", 3),
    ("ceiling", 22),
]
# Rotation of 90 degrees about z, then a shift: aligned = (-y + 1, x - 2, z + 0.5).
ALIGN = [0, -1, 0, 1, 1, 0, 0, -2, 0, 0, 1, 0.5, 0, 0, 0, 1]

# 12 vertices in 4 segments with non-contiguous ids; segment 9 belongs to no group.
SEGS = [7, 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9]
GROUPS = [
    {"id": 0, "objectId": 0, "label": "chair", "segments": [7]},
    {"id": 1, "objectId": 1, "label": "wall", "segments": [3]},
    {"id": 2, "objectId": 2, "label": "kitchen cabinets", "segments": [20]},
]


def write_label_map(root: Path, rows=TSV_ROWS) -> Path:
    lines = ["id\traw_category\tcategory\tcount\tnyu40id\teigen13id"]
    lines += [f"{i}\t{raw}\t{raw}\t10\t{nyu}\t1" for i, (raw, nyu) in enumerate(rows, start=1)]
    path = root / LABEL_MAP_NAME
    path.write_text("\n".join(lines) + "\n")
    return path


def write_scene(
    root: Path,
    scene_id: str,
    split: str = "train",
    *,
    segs=SEGS,
    groups=GROUPS,
    align=ALIGN,
    seed: int = 0,
) -> dict[str, Path]:
    """Write one scene's files; returns scene_files(). xyz/rgb are random but seeded."""
    files = scene_files(root, scene_id, split)
    files["ply"].parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = len(segs)
    xyz = rng.uniform(-3, 3, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    faces = np.arange(n - n % 3).reshape(-1, 3)  # triangles over consecutive vertices
    write_ply(files["ply"], xyz, rgb, faces)
    files["segs"].write_text(
        json.dumps({"params": {}, "sceneId": f"{scene_id}_vh_clean_2", "segIndices": segs})
    )
    meta = ["colorHeight = 968", "sceneType = Office"]
    if align is not None:
        meta.insert(0, "axisAlignment = " + " ".join(str(v) for v in align))
    files["meta"].write_text("\n".join(meta) + "\n")
    if "aggregation" in files and groups is not None:
        files["aggregation"].write_text(json.dumps({"sceneId": f"scannet.{scene_id}", "segGroups": groups}))
    return files


def write_scannet_root(
    root: Path, train=("scene0000_00", "scene0001_00"), val=("scene0002_00",), test=()
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_label_map(root)
    for split, ids in (("train", train), ("val", val), ("test", test)):
        if ids or split != "test":
            (root / f"scannetv2_{split}.txt").write_text("".join(f"{s}\n" for s in ids))
        for k, scene_id in enumerate(ids):
            write_scene(root, scene_id, split, seed=k)
    return root


def original_xyz_rgb(seed: int, n: int = len(SEGS)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-3, 3, (n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3)).astype(np.uint8)


def raises_naming(path: Path, *fragments: str, scene_id: str | None = None):
    """Context: a DataError whose message names `path` (and the scene, and each fragment)."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(DataError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            message = str(self.info.value)
            assert str(path) in message, message
            if scene_id is not None:
                assert scene_id in message, message
            for fragment in fragments:
                assert fragment in message, message
            return suppressed

    return _Check()


@pytest.fixture
def label_map(tmp_path: Path) -> dict[str, int]:
    return read_label_map(write_label_map(tmp_path))


# ----------------------------------------------------------------------------- ScanNet: good input


def test_scannet_round_trip(tmp_path: Path, label_map: dict[str, int]) -> None:
    write_scene(tmp_path, "scene0000_00", seed=3)
    scene = read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)
    xyz, rgb = original_xyz_rgb(3)
    expected = np.stack([-xyz[:, 1] + 1, xyz[:, 0] - 2, xyz[:, 2] + 0.5], axis=1)
    np.testing.assert_allclose(scene.xyz, expected, atol=1e-6)
    np.testing.assert_array_equal(scene.rgb, rgb)
    # segments 3, 7, 9, 20 -> 0, 1, 2, 3 (sorted by original id)
    np.testing.assert_array_equal(scene.superpoint, [1, 1, 1, 0, 0, 0, 3, 3, 3, 2, 2, 2])
    np.testing.assert_array_equal(scene.instance, [1, 1, 1, 2, 2, 2, 3, 3, 3, 0, 0, 0])
    np.testing.assert_array_equal(scene.label, [5, 5, 5, 1, 1, 1, 3, 3, 3, -1, -1, -1])
    assert scene.split == "train" and scene.class_set == "scannet" and scene.scene_id == "scene0000_00"
    assert scene.superpoint.dtype == np.int32 and scene.label.dtype == np.int16


def test_scannet_sparse_segment_ids(tmp_path: Path, label_map: dict[str, int]) -> None:
    """Huge / negative segment ids take the sort path instead of the lookup table: same result."""
    big = [10**12, 10**12, -5, -5, 7, 7]
    groups = [
        {"objectId": 4, "label": "table", "segments": [10**12]},
        {"objectId": 0, "label": "floor", "segments": [-5]},
    ]
    write_scene(tmp_path, "scene0003_00", segs=big, groups=groups)
    scene = read_scannet_scene(tmp_path, "scene0003_00", "train", label_map)
    np.testing.assert_array_equal(scene.superpoint, [2, 2, 0, 0, 1, 1])
    np.testing.assert_array_equal(scene.instance, [5, 5, 1, 1, 0, 0])
    np.testing.assert_array_equal(scene.label, [7, 7, 2, 2, -1, -1])


def test_scannet_segment_in_two_groups_keeps_first_claim(tmp_path: Path, label_map: dict[str, int]) -> None:
    groups = [*GROUPS, {"objectId": 3, "label": "table", "segments": [20, 9]}]
    write_scene(tmp_path, "scene0000_00", groups=groups)
    scene = read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)
    np.testing.assert_array_equal(scene.instance, [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    np.testing.assert_array_equal(scene.label, [5, 5, 5, 1, 1, 1, 3, 3, 3, 7, 7, 7])


def test_scannet_test_scene_has_no_labels(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0707_00", "test", align=None, seed=1)
    assert "aggregation" not in files and files["ply"].parent.parent.name == "scans_test"
    scene = read_scannet_scene(tmp_path, "scene0707_00", "test", label_map)
    xyz, _ = original_xyz_rgb(1)
    np.testing.assert_array_equal(scene.xyz, xyz)  # identity alignment
    assert (scene.label == -1).all() and (scene.instance == 0).all() and scene.split == "test"
    assert scene.superpoint.max() == 3


def test_scannet_train_scene_without_alignment_is_noted(tmp_path, label_map, caplog) -> None:
    write_scene(tmp_path, "scene0000_00", align=None)
    with caplog.at_level(logging.WARNING, logger="beep3d.data.scannet"):
        scene = read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)
    np.testing.assert_array_equal(scene.xyz, original_xyz_rgb(0)[0])
    assert "no axisAlignment" in caplog.text


def test_read_axis_alignment(tmp_path: Path) -> None:
    meta = tmp_path / "m.txt"
    meta.write_text("axisAlignment = " + " ".join(map(str, ALIGN)) + "\nsceneType = Bathroom\n")
    np.testing.assert_array_equal(read_axis_alignment(meta, "scene0000_00"), np.array(ALIGN).reshape(4, 4))
    meta.write_text("sceneType = Bathroom\n")
    np.testing.assert_array_equal(read_axis_alignment(meta, "scene0000_00"), np.eye(4))
    meta.write_text("axisAlignment = 1 0 0\n")
    with raises_naming(meta, "16 finite numbers", scene_id="scene0000_00"):
        read_axis_alignment(meta, "scene0000_00")
    meta.write_text("axisAlignment = " + " ".join(["1"] * 15 + ["x"]) + "\n")
    with raises_naming(meta, "not a list of numbers"):
        read_axis_alignment(meta, "scene0000_00")
    meta.write_text("axisAlignment = " + " ".join(map(str, [*ALIGN[:12], 0, 0, 2, 1])) + "\n")
    with raises_naming(meta, "last row"):
        read_axis_alignment(meta, "scene0000_00")
    with raises_naming(tmp_path / "none.txt", "not found"):
        read_axis_alignment(tmp_path / "none.txt", "scene0000_00")


def test_read_label_map_and_its_errors(tmp_path: Path) -> None:
    path = write_label_map(tmp_path)
    assert read_label_map(path) == dict(TSV_ROWS)
    path.write_text("id\traw_category\tcount\n1\tchair\t3\n")
    with raises_naming(path, "nyu40id"):
        read_label_map(path)
    path.write_text("raw_category\tnyu40id\nchair\tfive\n")
    with raises_naming(path, "line 2", "'five'"):
        read_label_map(path)
    path.write_text("raw_category\tnyu40id\nchair\t5\nchair\t6\n")
    with raises_naming(path, "line 3", "mapped twice"):
        read_label_map(path)
    with raises_naming(tmp_path / "missing.tsv", "not found"):
        read_label_map(tmp_path / "missing.tsv")


def test_read_splits(tmp_path: Path) -> None:
    (tmp_path / "scannetv2_train.txt").write_text("scene0000_00\nscene0000_01\n\n")
    (tmp_path / "scannetv2_val.txt").write_text("scene0011_00\n")
    assert read_splits(tmp_path) == {"scene0000_00": "train", "scene0000_01": "train", "scene0011_00": "val"}
    (tmp_path / "scannetv2_test.txt").write_text("scene0707_00\nscene0000_01\n")
    with raises_naming(tmp_path / "scannetv2_test.txt", "line 2", "both train and test"):
        read_splits(tmp_path)
    (tmp_path / "scannetv2_test.txt").write_text("../../etc\n")
    with raises_naming(tmp_path / "scannetv2_test.txt", "invalid scene id"):
        read_splits(tmp_path)


# ----------------------------------------------------------------------------- ScanNet: bad input


@pytest.mark.parametrize(
    "scene_id", ["../scene0000_00", "scene0000_00/../../x", "scene000_00", "Scene0000_00", ""]
)
def test_scannet_bad_scene_id(tmp_path: Path, label_map: dict[str, int], scene_id: str) -> None:
    with raises_naming(tmp_path, "invalid ScanNet scene id"):
        read_scannet_scene(tmp_path, scene_id, "train", label_map)


def test_scannet_bad_split(tmp_path: Path, label_map: dict[str, int]) -> None:
    with raises_naming(tmp_path, "unknown split"):
        read_scannet_scene(tmp_path, "scene0000_00", "training", label_map)


def test_scannet_truncated_ply(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    data = files["ply"].read_bytes()
    files["ply"].write_bytes(data[: len(data) - 60])
    with raises_naming(files["ply"], "truncated", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_empty_ply_says_empty_file(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files["ply"].write_bytes(b"")
    with raises_naming(files["ply"], "empty file", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_corrupt_ply_header(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    data = files["ply"].read_bytes()
    files["ply"].write_bytes(data.replace(b"element vertex 12", b"element vertex twelve", 1))
    with raises_naming(files["ply"], "corrupt", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_missing_ply(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files["ply"].unlink()
    with raises_naming(files["ply"], "not found", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_nan_coordinates(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    xyz, rgb = original_xyz_rgb(0)
    xyz[4, 1] = np.nan
    write_ply(files["ply"], xyz, rgb)
    with raises_naming(files["ply"], "NaN", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


@pytest.mark.parametrize("which", ["segs", "aggregation"])
def test_scannet_missing_json(tmp_path: Path, label_map: dict[str, int], which: str) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files[which].unlink()
    with raises_naming(files[which], "not found", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


@pytest.mark.parametrize("which", ["segs", "aggregation"])
@pytest.mark.parametrize("mangle", ["truncate", "binary", "array"])
def test_scannet_malformed_json(tmp_path: Path, label_map: dict[str, int], which: str, mangle: str) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    text = files[which].read_bytes()
    bad = {"truncate": text[: len(text) // 2], "binary": b"\xff\xfe\x00garbage", "array": b"[1, 2, 3]"}[
        mangle
    ]
    files[which].write_bytes(bad)
    with raises_naming(files[which], scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


@pytest.mark.parametrize(
    "segs",
    [
        [7.0, 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9],  # a float
        ["7", 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9],  # a string
        [True, 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9],  # a bool
        [None, 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9],  # a null
        [[7], 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9],  # nesting
        [2**70, 7, 7, 3, 3, 3, 20, 20, 20, 9, 9, 9],  # beyond int64
        {"0": 7},  # not a list
    ],
)
def test_scannet_seg_indices_wrong_type(tmp_path: Path, label_map: dict[str, int], segs) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files["segs"].write_text(json.dumps({"segIndices": segs}))
    with raises_naming(files["segs"], "segIndices", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_seg_indices_missing_key(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files["segs"].write_text(json.dumps({"segindices": SEGS}))
    with raises_naming(files["segs"], "no 'segIndices'", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_segs_length_mismatch(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files["segs"].write_text(json.dumps({"segIndices": SEGS[:-1]}))
    with raises_naming(files["segs"], "11 entries", "12 vertices", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_unknown_raw_label(tmp_path: Path, label_map: dict[str, int]) -> None:
    groups = [*GROUPS, {"objectId": 3, "label": "flux capacitor", "segments": [9]}]
    files = write_scene(tmp_path, "scene0000_00", groups=groups)
    with raises_naming(files["aggregation"], "'flux capacitor'", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_group_refers_to_missing_segment(tmp_path: Path, label_map: dict[str, int]) -> None:
    groups = [*GROUPS, {"objectId": 3, "label": "table", "segments": [9, 12345]}]
    files = write_scene(tmp_path, "scene0000_00", groups=groups)
    with raises_naming(files["aggregation"], "12345", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


@pytest.mark.parametrize(
    ("group", "fragment"),
    [
        ({"objectId": "3", "label": "table", "segments": [9]}, "objectId"),
        ({"objectId": -1, "label": "table", "segments": [9]}, "objectId"),
        ({"objectId": 0, "label": "table", "segments": [9]}, "used by two groups"),
        ({"objectId": 3, "label": 7, "segments": [9]}, "label"),
        ({"objectId": 3, "label": "table", "segments": "9"}, "segments"),
        ({"objectId": 3, "label": "table", "segments": [9.5]}, "segments"),
        ({"objectId": 3, "label": "table"}, "segments"),
        ("table", "not an object"),
    ],
)
def test_scannet_aggregation_wrong_types(tmp_path, label_map, group, fragment) -> None:
    files = write_scene(tmp_path, "scene0000_00", groups=[*GROUPS, group])
    with raises_naming(files["aggregation"], fragment, scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_aggregation_without_seg_groups(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00")
    files["aggregation"].write_text(json.dumps({"sceneId": "scannet.scene0000_00"}))
    with raises_naming(files["aggregation"], "segGroups", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_scene_with_no_objects(tmp_path: Path, label_map: dict[str, int]) -> None:
    """Only wall, floor and ceiling: not one of the 18 instance classes."""
    groups = [
        {"objectId": 0, "label": "wall", "segments": [7, 3]},
        {"objectId": 1, "label": "floor", "segments": [20]},
        {"objectId": 2, "label": "ceiling", "segments": [9]},
    ]
    files = write_scene(tmp_path, "scene0000_00", groups=groups)
    with raises_naming(files["aggregation"], "scene has no objects", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


def test_scannet_meta_with_bad_alignment_names_meta(tmp_path: Path, label_map: dict[str, int]) -> None:
    files = write_scene(tmp_path, "scene0000_00", align=[1, 0, 0])
    with raises_naming(files["meta"], "axisAlignment", scene_id="scene0000_00"):
        read_scannet_scene(tmp_path, "scene0000_00", "train", label_map)


# ----------------------------------------------------------------------------- S3DIS builders


def write_annotation(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(xyz, rgb, strict=True)]
    path.write_text("\n".join(lines) + "\n")


def write_room(root: Path, area: str, room: str, names: list[str], n: int = 5, seed: int = 0) -> dict:
    """One room; returns {file name: (xyz, rgb)} of what was written."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in names:
        xyz = np.round(rng.uniform(0, 10, (n, 3)), 6)
        rgb = rng.integers(0, 256, (n, 3))
        write_annotation(root / area / room / "Annotations" / name, xyz, rgb)
        written[name] = (xyz, rgb)
    # The room-level file and the alignment angle file are not read; write them as in the release.
    (root / area / room / f"{room}.txt").write_text("not read\n")
    (root / area / f"{area}_alignmentAngle.txt").write_text("## angle\n")
    return written


# ----------------------------------------------------------------------------- S3DIS


def test_s3dis_round_trip(tmp_path: Path) -> None:
    names = ["table_1.txt", "chair_2.txt", "chair_1.txt", "stairs_1.txt", "wall_1.txt"]
    written = write_room(tmp_path, "Area_2", "office_3", names)
    scene = read_s3dis_room(tmp_path, "Area_2", "office_3")
    order = sorted(names)  # chair_1, chair_2, stairs_1, table_1, wall_1
    np.testing.assert_allclose(scene.xyz, np.concatenate([written[n][0] for n in order]), atol=1e-5)
    np.testing.assert_array_equal(scene.rgb, np.concatenate([written[n][1] for n in order]))
    idx = S3DIS_NAMES.index
    expected_label = [idx("chair"), idx("chair"), idx("clutter"), idx("table"), idx("wall")]
    np.testing.assert_array_equal(scene.label, np.repeat(expected_label, 5))
    np.testing.assert_array_equal(scene.instance, np.repeat([1, 2, 3, 4, 5], 5))
    assert scene.superpoint is None and scene.split == "train" and scene.class_set == "s3dis"
    assert scene.scene_id == "Area_2_office_3" == s3dis_scene_id("Area_2", "office_3")
    assert read_s3dis_room(tmp_path, "Area_2", "office_3", val_area=2).split == "val"


def test_s3dis_stairs_is_clutter(tmp_path: Path) -> None:
    write_room(tmp_path, "Area_5", "stairs_1", ["stairs_1.txt"])
    scene = read_s3dis_room(tmp_path, "Area_5", "stairs_1")
    assert (scene.label == S3DIS_NAMES.index("clutter")).all() and scene.split == "val"


def test_list_rooms(tmp_path: Path) -> None:
    write_room(tmp_path, "Area_2", "office_1", ["wall_1.txt"])
    write_room(tmp_path, "Area_1", "hallway_2", ["wall_1.txt"])
    write_room(tmp_path, "Area_1", "WC_1", ["wall_1.txt"])
    (tmp_path / "Area_1" / ".hidden").mkdir()
    (tmp_path / "notes").mkdir()
    assert list_rooms(tmp_path) == [("Area_1", "WC_1"), ("Area_1", "hallway_2"), ("Area_2", "office_1")]
    (tmp_path / "Area_2" / "office_2").mkdir()
    with raises_naming(tmp_path / "Area_2" / "office_2", "no Annotations"):
        list_rooms(tmp_path)
    with raises_naming(tmp_path / "nowhere", "not found"):
        list_rooms(tmp_path / "nowhere")
    with raises_naming(tmp_path / "notes", "no Area_"):
        list_rooms(tmp_path / "notes")


@pytest.mark.parametrize(
    ("area", "room"), [("Area_1/../..", "office_1"), ("Area_1", "../../etc"), ("area_1", "office_1")]
)
def test_s3dis_bad_names(tmp_path: Path, area: str, room: str) -> None:
    with raises_naming(tmp_path, "invalid S3DIS"):
        read_s3dis_room(tmp_path, area, room)


def corrupt_room(tmp_path: Path, n_lines: int = 400, bad_line: int = 300) -> tuple[Path, np.ndarray]:
    """A ceiling file like the real Area_5/hallway_6 one: a \\x10 byte right after a number."""
    rng = np.random.default_rng(1)
    table = np.concatenate(
        [np.round(rng.uniform(0, 5, (n_lines, 3)), 6), rng.integers(0, 256, (n_lines, 3))], 1
    )
    lines = [f"{x:.6f} {y:.6f} {z:.6f} {int(r)} {int(g)} {int(b)}".encode() for x, y, z, r, g, b in table]
    x, y, z, r, g, b = table[bad_line - 1]
    lines[bad_line - 1] = (
        f"{x:.6f} {y:.6f} {z:.6f} {int(r)}".encode() + b"\x10" + f" {int(g)} {int(b)}".encode()
    )
    path = tmp_path / "Area_5" / "hallway_6" / "Annotations" / "ceiling_1.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, table


def test_s3dis_corrupt_byte_is_repaired(tmp_path: Path, caplog) -> None:
    path, table = corrupt_room(tmp_path)
    with caplog.at_level(logging.WARNING, logger="beep3d.data.s3dis"):
        points = read_annotation(path, "Area_5_hallway_6")
    assert points.repaired_lines == 1
    assert "[300]" in caplog.text  # the repaired line is named
    np.testing.assert_allclose(points.xyz, table[:, :3], atol=1e-9)
    np.testing.assert_array_equal(points.rgb, table[:, 3:])
    scene = read_s3dis_room(tmp_path, "Area_5", "hallway_6")
    assert scene.n_points == 400 and (scene.label == 0).all() and scene.split == "val"


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"1.0 2.0 abc 4 5 6", "line 3"),  # a word, not a control byte
        (b"1.0 2.0 3.0 4 5", "line 3"),  # a missing field
        (b"1.0 2.0 3.0 4 5 6 7", "line 3"),  # an extra field
        (b"1.0 nan 3.0 4 5 6", "line 3"),  # not finite
        (b"1.0 2.0 3.0 4 256 6", "line 3"),  # colour out of range
        (b"1.0 2.0 3.0 4 5.5 6", "line 3"),  # colour not an integer
        (b"1.0 2.0 3.0 -4 5 6", "line 3"),  # negative colour
    ],
)
def test_s3dis_bad_line(tmp_path: Path, line: bytes, fragment: str) -> None:
    path = tmp_path / "Area_1" / "office_1" / "Annotations" / "chair_1.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"0 0 0 1 2 3\n1 1 1 4 5 6\n" + line + b"\n2 2 2 7 8 9\n")
    with raises_naming(path, fragment, scene_id="Area_1_office_1"):
        read_s3dis_room(tmp_path, "Area_1", "office_1")


def test_s3dis_unknown_class(tmp_path: Path) -> None:
    write_room(tmp_path, "Area_1", "office_1", ["chair_1.txt", "monster_1.txt"])
    path = tmp_path / "Area_1" / "office_1" / "Annotations" / "monster_1.txt"
    with raises_naming(path, "unknown S3DIS class 'monster'", scene_id="Area_1_office_1"):
        read_s3dis_room(tmp_path, "Area_1", "office_1")


def test_s3dis_bad_annotation_name_and_empty_file(tmp_path: Path) -> None:
    write_room(tmp_path, "Area_1", "office_1", ["chair_1.txt"])
    folder = tmp_path / "Area_1" / "office_1" / "Annotations"
    (folder / "chair.txt").write_text("0 0 0 1 1 1\n")
    with raises_naming(folder / "chair.txt", "<class>_<n>.txt"):
        read_s3dis_room(tmp_path, "Area_1", "office_1")
    (folder / "chair.txt").unlink()
    (folder / "table_1.txt").write_text("\n")
    with raises_naming(folder / "table_1.txt", "no points"):
        read_s3dis_room(tmp_path, "Area_1", "office_1")


def test_s3dis_room_without_annotations(tmp_path: Path) -> None:
    (tmp_path / "Area_1" / "office_1").mkdir(parents=True)
    with raises_naming(tmp_path / "Area_1" / "office_1" / "Annotations", "no Annotations"):
        read_s3dis_room(tmp_path, "Area_1", "office_1")
    (tmp_path / "Area_1" / "office_1" / "Annotations").mkdir()
    with raises_naming(tmp_path / "Area_1" / "office_1" / "Annotations", "no <class>_<n>.txt"):
        read_s3dis_room(tmp_path, "Area_1", "office_1")


def test_s3dis_several_control_bytes_counted_per_line(tmp_path: Path) -> None:
    path = tmp_path / "ceiling_1.txt"
    path.write_bytes(b"0 0 0 1 2 3\n1\x10 1 1 4 5 6\n2 2 2 7 8 9\n3 3\x1f 3\x7f 1 1 1\n")
    points = read_annotation(path, "Area_5_hallway_6")
    assert points.repaired_lines == 2
    np.testing.assert_array_equal(points.xyz[:, 0], [0, 1, 2, 3])


def test_s3dis_bad_line_after_a_repairable_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ceiling_1.txt"
    path.write_bytes(b"0 0 0 1 2 3\n1\x10 1 1 4 5 6\n2 2 2 7 8 9\n3 3 x 1 1 1\n")
    with raises_naming(path, "line 4", "'3 3 x 1 1 1'"):
        read_annotation(path, "Area_5_hallway_6")
