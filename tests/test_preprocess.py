"""Preprocessing: per-scene pipeline, Parquet round trip, boxes, the pool driver, bad input, shards, the stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import stages.preprocess as stage
from beep3d.classes import SCANNET
from beep3d.data.boxes import overlap_counts
from beep3d.data.ply import write_ply
from beep3d.data.preprocess import (
    PreprocessConfig,
    SceneJob,
    Shard,
    merge_shards,
    process_scene,
    run_preprocess,
    write_points,
)
from beep3d.data.scene import RawScene
from beep3d.data.schema import (
    POINTS_SCHEMA,
    SCHEMA_VERSION,
    VERSION_KEY,
    points_path,
    read_scene_points,
    read_table,
)
from beep3d.data.superpoints import SuperpointConfig
from beep3d.data.voxelize import voxelize
from beep3d.errors import DataError
from stages.preprocess import main as stage_main

SP_CFG = SuperpointConfig(voxel_size=0.1, k=0.3, normal_weight=1.0, color_weight=2.0, min_size=5)


def make_cfg(**overrides) -> PreprocessConfig:
    base = dict(voxel_size=0.05, workers=1, on_error="fail", computed_superpoints=False, superpoints=SP_CFG)
    return PreprocessConfig(**(base | overrides))


# Raw category -> nyu40 id; "box" (29) is not one of the 18 classes: it must get no box.
LABELS = {"floor": 2, "wall": 1, "table": 7, "chair": 5, "box": 29}


def room(seed: int) -> dict:
    """A tiny ScanNet-like room: per-vertex xyz/rgb, segment ids (non-contiguous), annotated groups.

    Objects: floor, wall, table, a chair inside the table's box, a box (not a benchmark class),
    and an unannotated clutter segment.
    """
    rng = np.random.default_rng(seed)
    parts = [  # (raw label or None, lo, hi, n points, segments along x)
        ("floor", (0, 0, 0), (3, 3, 0), 900, 3),
        ("wall", (0, 0, 0), (3, 0, 2), 400, 2),
        ("table", (1.0, 1.0, 0.0), (2.0, 1.8, 0.75), 300, 2),
        ("chair", (1.6, 1.5, 0.0), (2.1, 2.0, 0.9), 200, 1),
        ("box", (0.2, 2.5, 0.0), (0.5, 2.8, 0.3), 80, 1),
        (None, (2.5, 2.5, 0.0), (2.8, 2.8, 0.2), 60, 1),
    ]
    xyz, seg, groups, label, instance = [], [], [], [], []
    next_seg = 7
    for object_id, (raw, lo, hi, n, n_seg) in enumerate(parts):
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        pts = lo + rng.random((n, 3)) * (hi - lo)
        cut = np.minimum(((pts[:, 0] - lo[0]) / max(hi[0] - lo[0], 1e-9) * n_seg).astype(int), n_seg - 1)
        ids = next_seg + 13 * cut  # ScanNet segment ids are arbitrary, non-contiguous
        next_seg += 13 * n_seg + 5
        xyz.append(pts)
        seg.append(ids)
        if raw is not None:
            groups.append(
                {"id": object_id, "objectId": object_id, "segments": sorted(set(ids.tolist())), "label": raw}
            )
        label.append(np.full(n, LABELS[raw] if raw else -1))
        instance.append(np.full(n, object_id + 1 if raw else 0))
    xyz = np.concatenate(xyz).astype(np.float32)
    return {
        "xyz": xyz,
        "rgb": rng.integers(0, 256, (len(xyz), 3)).astype(np.uint8),
        "seg": np.concatenate(seg),
        "groups": groups,
        "label": np.concatenate(label).astype(np.int16),
        "instance": np.concatenate(instance).astype(np.int32),
    }


def raw_scene(scene_id: str = "scene0000_00", seed: int = 0, with_segments: bool = True) -> RawScene:
    r = room(seed)
    superpoint = np.unique(r["seg"], return_inverse=True)[1].astype(np.int32) if with_segments else None
    return RawScene(scene_id, r["xyz"], r["rgb"], r["label"], r["instance"], superpoint, "train", "scannet")


def write_scannet(root: Path, scenes: dict[str, str]) -> None:
    """A ScanNet-layout raw folder with one room per scene id ({scene_id: split})."""
    header = "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\n"
    rows = [f"{i}\t{raw}\t{raw}\t1\t{nyu}\t0\t{raw}\t{raw}\n" for i, (raw, nyu) in enumerate(LABELS.items())]
    root.mkdir(parents=True, exist_ok=True)
    (root / "scannetv2-labels.combined.tsv").write_text(header + "".join(rows))
    for split in ("train", "val", "test"):
        ids = [s for s, sp in scenes.items() if sp == split]
        (root / f"scannetv2_{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    for i, (scene_id, split) in enumerate(scenes.items()):
        r = room(i)
        folder = root / ("scans_test" if split == "test" else "scans") / scene_id
        folder.mkdir(parents=True)
        write_ply(folder / f"{scene_id}_vh_clean_2.ply", r["xyz"], r["rgb"])
        segs = {"sceneId": scene_id, "segIndices": r["seg"].tolist()}
        (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
        if split == "test":  # ScanNet releases no annotation and no alignment for test scenes
            (folder / f"{scene_id}.txt").write_text("sceneType = Bedroom / Hotel\n")
            continue
        agg = {"sceneId": f"scannet.{scene_id}", "segGroups": r["groups"]}
        (folder / f"{scene_id}.aggregation.json").write_text(json.dumps(agg))
        (folder / f"{scene_id}.txt").write_text("axisAlignment = 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1\n")


SCENES = {"scene0000_00": "train", "scene0001_00": "train", "scene0002_00": "val"}


# --- process_scene -------------------------------------------------------------------------------


def test_parquet_round_trip_recovers_every_point(tmp_path: Path) -> None:
    scene = raw_scene()
    piece = process_scene(scene, make_cfg())
    write_points(piece, tmp_path)
    cols = read_scene_points(tmp_path, scene.scene_id)
    assert len(cols["x"]) == scene.n_points == piece.scene_row["n_points"]
    np.testing.assert_array_equal(np.stack([cols["x"], cols["y"], cols["z"]], 1), scene.xyz)
    np.testing.assert_array_equal(np.stack([cols["r"], cols["g"], cols["b"]], 1), scene.rgb)
    np.testing.assert_array_equal(cols["label"], scene.label)
    np.testing.assert_array_equal(cols["instance"], scene.instance)
    np.testing.assert_array_equal(cols["superpoint"], scene.superpoint)
    assert (cols["superpoint_computed"] == -1).all()  # computed_superpoints is off
    assert set(cols["scene_id"].tolist()) == {scene.scene_id}
    coords, inverse = voxelize(scene.xyz, 0.05)
    np.testing.assert_array_equal(cols["voxel"], inverse)
    assert piece.scene_row["n_voxels"] == len(coords) == cols["voxel"].max() + 1
    assert piece.scene_row["n_superpoints"] == scene.superpoint.max() + 1
    table = pq.read_table(points_path(tmp_path, scene.scene_id))
    assert table.schema.equals(POINTS_SCHEMA, check_metadata=False)


def test_computed_superpoints_fill_the_audit_column_and_missing_segments() -> None:
    scene = raw_scene()
    piece = process_scene(scene, make_cfg(computed_superpoints=True))
    given = piece.points.column("superpoint").to_numpy()
    computed = piece.points.column("superpoint_computed").to_numpy()
    np.testing.assert_array_equal(given, scene.superpoint)  # the source's segments stay
    np.testing.assert_array_equal(np.unique(computed), np.arange(computed.max() + 1))
    assert piece.n_superpoints_computed == computed.max() + 1
    no_segments = process_scene(raw_scene(with_segments=False), make_cfg())
    sp = no_segments.points.column("superpoint").to_numpy()
    np.testing.assert_array_equal(sp, computed)  # same algorithm, same points
    assert (no_segments.points.column("superpoint_computed").to_numpy() == -1).all()


def test_boxes_against_the_hand_made_room() -> None:
    scene = raw_scene()
    piece = process_scene(scene, make_cfg())
    boxes = piece.boxes.to_pydict()
    assert boxes["box_id"] == [1, 2, 3, 4]  # floor, wall, table, chair; "box" (29) and clutter get none
    assert boxes["label"] == [2, 1, 7, 5]
    assert boxes["is_background"] == [True, True, False, False]
    assert set(boxes["scene_id"]) == {scene.scene_id}
    for i, inst in enumerate(boxes["box_id"]):
        pts = scene.xyz[scene.instance == inst].astype(np.float64)
        center = np.array([boxes[c][i] for c in ("cx", "cy", "cz")], np.float32)
        size = np.array([boxes[c][i] for c in ("dx", "dy", "dz")], np.float32)
        lo, hi = center - size / 2, center + size / 2
        # Exact up to float32 rounding, and never shrunk: every point stays inside its box.
        np.testing.assert_allclose(lo, pts.min(0), atol=1e-5)
        np.testing.assert_allclose(hi, pts.max(0), atol=1e-5)
        assert (lo <= pts.min(0)).all() and (hi >= pts.max(0)).all()
        assert boxes["n_points"][i] == len(pts)
    assert piece.scene_row["n_boxes"] == 4
    want = overlap_counts(scene.xyz, scene.label, scene.instance, SCANNET)
    assert piece.overlap == want
    assert want.object_points_multi_box > 0  # the chair sits inside the table's box


def test_s3dis_scene_gets_a_box_for_every_class() -> None:
    r = room(1)
    label = np.where(r["instance"] > 0, r["instance"] % 13, -1).astype(np.int16)  # class indices
    scene = RawScene("Area_5_office_1", r["xyz"], r["rgb"], label, r["instance"], None, "val", "s3dis")
    piece = process_scene(scene, make_cfg())
    assert piece.boxes.column("box_id").to_pylist() == [1, 2, 3, 4, 5]
    assert not any(piece.boxes.column("is_background").to_pylist())
    assert piece.scene_row["class_set"] == "s3dis" and piece.scene_row["split"] == "val"


def test_empty_scene_is_a_data_error() -> None:
    empty = np.zeros((0, 3), np.float32)
    scene = RawScene(
        "scene0000_00",
        empty,
        np.zeros((0, 3), np.uint8),
        np.zeros(0, np.int16),
        np.zeros(0, np.int32),
        None,
        "train",
        "scannet",
    )
    with pytest.raises(DataError, match=r"scene0000_00.*no points"):
        process_scene(scene, make_cfg())


# --- schema version ------------------------------------------------------------------------------


def test_schema_version_is_stored_and_checked(tmp_path: Path) -> None:
    piece = process_scene(raw_scene(), make_cfg())
    path = write_points(piece, tmp_path)
    assert pq.read_schema(path).metadata[VERSION_KEY] == SCHEMA_VERSION.encode()
    table = pq.read_table(path)
    stale = tmp_path / "stale.parquet"
    pq.write_table(table.replace_schema_metadata({VERSION_KEY: b"0"}), stale)
    with pytest.raises(DataError, match="schema version 0"):
        read_table(stale)
    bare = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"x": [1.0]}), bare)
    with pytest.raises(DataError, match="no schema version"):
        read_table(bare)


# --- run_preprocess ------------------------------------------------------------------------------


def test_workers_do_not_change_a_byte(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_scannet(raw, SCENES)
    cfg = make_cfg(computed_superpoints=True)
    one = run_preprocess(raw, tmp_path / "one", cfg, progress=False)
    two = run_preprocess(
        raw, tmp_path / "two", make_cfg(computed_superpoints=True, workers=2), progress=False
    )
    for scene_id in SCENES:
        a = points_path(tmp_path / "one", scene_id).read_bytes()
        b = points_path(tmp_path / "two", scene_id).read_bytes()
        assert a == b, scene_id
    for name in ("boxes.parquet", "scenes.parquet", "stats.json", "skipped.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    assert one == two
    scenes = read_table(tmp_path / "one" / "scenes.parquet").to_pydict()
    assert scenes["scene_id"] == sorted(SCENES) and scenes["split"] == ["train", "train", "val"]
    boxes = read_table(tmp_path / "one" / "boxes.parquet").to_pydict()
    assert boxes["scene_id"] == sorted(boxes["scene_id"]) and len(boxes["scene_id"]) == 12
    stats = json.loads((tmp_path / "one" / "stats.json").read_text())
    assert stats["splits"]["train"]["scenes"] == 2 and stats["splits"]["val"]["scenes"] == 1
    assert stats["splits"]["val"]["boxes"] == 4 and stats["splits"]["val"]["background_boxes"] == 2
    assert stats["all"]["instances_per_class"] == {"chair": 3, "table": 3}
    # Overlap figures are the per-split sums of the per-scene counts.
    train = sum(
        (overlap_counts(s.xyz, s.label, s.instance, SCANNET) for s in (raw_scene(seed=0), raw_scene(seed=1))),
        start=overlap_counts(
            np.zeros((0, 3), np.float32), np.zeros(0, np.int16), np.zeros(0, np.int32), SCANNET
        ),
    ).summary()
    got = stats["splits"]["train"]["overlap"]
    assert got["object_points_in_multiple_boxes"] == pytest.approx(train["object_points_in_multiple_boxes"])
    assert got["smallest_box_mean_instance_iou"] == pytest.approx(train["smallest_box_mean_instance_iou"])
    assert json.loads((tmp_path / "one" / "skipped.json").read_text()) == []


def corrupt_one(raw: Path, scene_id: str = "scene0001_00") -> Path:
    ply = raw / "scans" / scene_id / f"{scene_id}_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[:-500])  # truncated mid-vertex
    return ply


@pytest.mark.parametrize("workers", [1, 2])
def test_on_error_fail_aborts_and_writes_no_summary(tmp_path: Path, workers: int) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_scannet(raw, SCENES)
    corrupt_one(raw)
    # A previous good run must not leave summaries or the bad scene's points file behind.
    run_preprocess(raw, out, make_cfg(on_error="skip"), progress=False)
    points_path(out, "scene0001_00").write_bytes(b"old")
    with pytest.raises(DataError) as err:
        run_preprocess(raw, out, make_cfg(on_error="fail", workers=workers), progress=False)
    assert "scene0001_00" in str(err.value) and "scene0001_00_vh_clean_2.ply" in str(err.value)
    for name in ("boxes.parquet", "scenes.parquet", "stats.json", "skipped.json"):
        assert not (out / name).exists(), name
    assert not points_path(out, "scene0001_00").exists()


def test_on_error_skip_lists_the_scene_and_keeps_the_rest(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_scannet(raw, SCENES)
    corrupt_one(raw)
    result = run_preprocess(raw, out, make_cfg(on_error="skip"), progress=False)
    skipped = json.loads((out / "skipped.json").read_text())
    assert skipped == result["skipped"]
    assert [s["scene_id"] for s in skipped] == ["scene0001_00"]
    assert (
        skipped[0]["file"] == "scans/scene0001_00/scene0001_00_vh_clean_2.ply"
    )  # relative: same on any machine
    assert "PLY" in skipped[0]["error"]
    assert sorted(p.stem for p in (out / "points").glob("*.parquet")) == ["scene0000_00", "scene0002_00"]
    assert read_table(out / "scenes.parquet").column("scene_id").to_pylist() == [
        "scene0000_00",
        "scene0002_00",
    ]
    assert result["stats"]["skipped"] == 1 and result["stats"]["scenes"] == 2
    assert not list((out / "points").glob(".*"))  # no temporary files left


def test_stale_points_file_is_removed(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_scannet(raw, {"scene0000_00": "train"})
    (out / "points").mkdir(parents=True)
    (out / "points" / "scene0999_00.parquet").write_bytes(b"from an older dataset")
    (out / "points" / ".scene0000_00.parquet.abc.tmp").write_bytes(b"from a killed worker")
    run_preprocess(raw, out, make_cfg(), progress=False)
    assert sorted(p.name for p in (out / "points").iterdir()) == ["scene0000_00.parquet"]


def test_unlabelled_test_split_gives_strict_json(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_scannet(raw, {"scene0000_00": "train", "scene0707_00": "test"})
    run_preprocess(raw, out, make_cfg(), progress=False)

    def refuse(constant: str) -> None:
        raise AssertionError(f"stats.json holds {constant}, which is not JSON")

    stats = json.loads((out / "stats.json").read_text(), parse_constant=refuse)
    test = stats["splits"]["test"]
    assert test["scenes"] == 1 and test["boxes"] == 0 and test["points"] > 0
    assert test["overlap"]["smallest_box_mean_instance_iou"] is None
    cols = read_scene_points(out, "scene0707_00", columns=["label", "instance"])
    assert (cols["label"] == -1).all() and (cols["instance"] == 0).all()


def test_layout_detection_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no raw data found"):
        run_preprocess(tmp_path / "empty", tmp_path / "out", make_cfg(), progress=False)
    both = tmp_path / "both"
    write_scannet(both, {"scene0000_00": "train"})
    (both / "Stanford3dDataset_v1.2_Aligned_Version").mkdir()
    with pytest.raises(DataError, match="both a ScanNet layout"):
        run_preprocess(both, tmp_path / "out", make_cfg(), progress=False)


def test_s3dis_layout_gets_computed_superpoints(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    room_dir = (
        tmp_path / "raw" / "Stanford3dDataset_v1.2_Aligned_Version" / "Area_5" / "office_1" / "Annotations"
    )
    room_dir.mkdir(parents=True)
    for name, lo, hi in [("floor_1", (0, 0, 0), (3, 3, 0.01)), ("chair_1", (1, 1, 0), (1.5, 1.5, 0.9))]:
        pts = np.asarray(lo) + rng.random((400, 3)) * (np.asarray(hi) - np.asarray(lo))
        rgb = rng.integers(0, 256, (400, 3))
        lines = [
            f"{x:.4f} {y:.4f} {z:.4f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(pts, rgb, strict=True)
        ]
        (room_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")
    result = run_preprocess(tmp_path / "raw", tmp_path / "out", make_cfg(), progress=False)
    cols = read_scene_points(tmp_path / "out", "Area_5_office_1")
    assert len(cols["x"]) == 800 and cols["superpoint"].min() == 0
    assert result["stats"]["splits"]["val"]["boxes"] == 2  # S3DIS: every class is an instance class
    assert result["stats"]["splits"]["val"]["background_boxes"] == 0


# --- shards ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("0/4", r"index must be in 1\.\.4 \(1-based\), got 0/4"),
        ("5/4", r"index must be in 1\.\.4 \(1-based\), got 5/4"),
        ("1/0", r"count must be >= 1, got 1/0"),
        ("0/0", r"count must be >= 1"),
        ("abc", r"shard must be i/n .* got 'abc'"),
        ("-1/4", r"shard must be i/n"),
        ("1.5/4", r"shard must be i/n"),
        ("2/", r"shard must be i/n"),
        ("", r"shard must be i/n"),
    ],
)
def test_shard_spec_is_validated(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Shard.parse(text)


def test_shards_stride_the_sorted_list_and_cover_it_once() -> None:
    assert Shard.parse(" 2 / 4 ") == Shard(2, 4) and str(Shard(2, 4)) == "2/4"
    jobs = [SceneJob(f"scene{i:04d}_00", "scannet", Path("raw")) for i in range(10)]
    picked = [[job.scene_id for job in Shard(i, 3).select(jobs)] for i in (1, 2, 3)]
    assert picked[0] == ["scene0000_00", "scene0003_00", "scene0006_00", "scene0009_00"]
    assert sorted(sid for ids in picked for sid in ids) == [
        job.scene_id for job in jobs
    ]  # disjoint, complete
    assert Shard(1, 1).select(jobs) == jobs


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_shards(raw: Path, root: Path, count: int, cfg: PreprocessConfig) -> list[Path]:
    folders = [root / f"shard{i}" for i in range(1, count + 1)]
    for i, folder in enumerate(folders, start=1):
        run_preprocess(raw, folder, cfg, progress=False, shard=Shard(i, count))
    return folders


SHARD_SCENES = {
    "scene0000_00": "train",
    "scene0001_00": "train",
    "scene0002_00": "val",
    "scene0003_00": "train",  # corrupted below: skipped
    "scene0004_00": "val",
    "scene0707_00": "test",  # no annotation: no boxes
}


def test_merged_shards_equal_an_unsharded_run_byte_for_byte(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_scannet(raw, SHARD_SCENES)
    corrupt_one(raw, "scene0003_00")
    cfg = make_cfg(on_error="skip", computed_superpoints=True)
    whole = run_preprocess(raw, tmp_path / "whole", cfg, progress=False)
    # Shard folders are cleaned like any output folder: a points file of another shard's scene is stale.
    (tmp_path / "shard2" / "points").mkdir(parents=True)
    (tmp_path / "shard2" / "points" / "scene0000_00.parquet").write_bytes(b"belongs to shard 1")
    folders = run_shards(raw, tmp_path, 3, cfg)
    # on_error and workers change no byte of a finished shard, so shards may differ in them.
    run_preprocess(raw, folders[1], make_cfg(on_error="fail", computed_superpoints=True), False, Shard(2, 3))
    ids = sorted(SHARD_SCENES)
    for i, folder in enumerate(folders):
        mine = [sid for sid in ids[i::3] if sid != "scene0003_00"]
        assert read_table(folder / "scenes.parquet").column("scene_id").to_pylist() == mine
        assert sorted(p.stem for p in (folder / "points").glob("*")) == mine
        assert json.loads((folder / "stats.json").read_text())["scenes"] == len(mine)
    assert [s["scene_id"] for s in json.loads((folders[0] / "skipped.json").read_text())] == ["scene0003_00"]
    (tmp_path / "merged" / "points").mkdir(parents=True)
    (tmp_path / "merged" / "points" / "scene0999_00.parquet").write_bytes(b"from an older dataset")
    merged = merge_shards(folders[::-1], tmp_path / "merged")  # argument order does not matter
    assert merged == whole
    assert whole["stats"]["skipped"] == 1 and whole["stats"]["all"]["superpoints_computed"] > 0
    want, got = files_of(tmp_path / "whole"), files_of(tmp_path / "merged")
    assert sorted(got) == sorted(want) and len(want) == 5 + 4  # 5 points files, no shard.json
    for name, data in want.items():
        assert got[name] == data, name
    assert (folders[0] / "shard.json").exists()  # copied, not moved: the shards stay usable


def test_more_shards_than_scenes_and_move(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write_scannet(raw, SCENES)
    run_preprocess(raw, tmp_path / "whole", make_cfg(), progress=False)
    folders = run_shards(raw, tmp_path, 4, make_cfg())
    assert read_table(folders[3] / "scenes.parquet").num_rows == 0  # an empty but valid folder
    assert json.loads((folders[3] / "skipped.json").read_text()) == []
    merge_shards(folders, tmp_path / "merged", move=True)
    assert files_of(tmp_path / "merged") == files_of(tmp_path / "whole")
    assert not list(folders[0].glob("points/*"))  # moved


def test_merge_refuses_missing_repeated_and_foreign_shards(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "merged"
    write_scannet(raw, SCENES)
    one, two, three = run_shards(raw, tmp_path, 3, make_cfg())
    with pytest.raises(DataError, match=r"shard\(s\) 2/3 missing; merge needs all 3") as err:
        merge_shards([one, three], out)
    assert str(one) in str(err.value)
    with pytest.raises(DataError, match=r"shard 2/3 given twice") as err:
        merge_shards([one, two, two, three], out)
    assert err.value.path == two
    run_preprocess(raw, tmp_path / "half", make_cfg(), progress=False, shard=Shard(1, 2))
    with pytest.raises(DataError, match="shard 1/2 does not belong with shard 1/3") as err:
        merge_shards([one, two, three, tmp_path / "half"], out)
    assert err.value.path == tmp_path / "half"
    run_preprocess(raw, tmp_path / "coarse", make_cfg(voxel_size=0.1), progress=False, shard=Shard(2, 3))
    with pytest.raises(DataError, match=r"other params than .*shard1: preprocess.voxel_size$") as err:
        merge_shards([one, tmp_path / "coarse", three], out)
    assert err.value.path == tmp_path / "coarse"
    write_scannet(tmp_path / "raw_more", SCENES | {"scene0003_00": "train"})
    run_preprocess(tmp_path / "raw_more", tmp_path / "more", make_cfg(), progress=False, shard=Shard(2, 3))
    with pytest.raises(DataError, match="another raw scene list"):
        merge_shards([one, tmp_path / "more", three], out)
    run_preprocess(raw, tmp_path / "whole", make_cfg(), progress=False)
    with pytest.raises(DataError, match=r"not a finished preprocess shard: no shard\.json"):
        merge_shards([tmp_path / "whole"], out)
    with pytest.raises(DataError, match="must not be one of the shard folders"):
        merge_shards([one, two, three], one)
    assert not out.exists()  # every check runs before the merged folder is touched
    # A shard that failed (on_error=fail) leaves no shard.json, so it cannot be merged by mistake.
    corrupt_one(raw, "scene0001_00")
    with pytest.raises(DataError, match="scene0001_00"):
        run_preprocess(raw, two, make_cfg(), progress=False, shard=Shard(2, 3))
    with pytest.raises(DataError, match=r"no shard\.json") as err:
        merge_shards([one, two, three], out)
    assert err.value.path == two


# --- the DVC stage -------------------------------------------------------------------------------

PARAMS = """\
preprocess:
  voxel_size: 0.05
  workers: 1
  on_error: {on_error}
  computed_superpoints: false
  superpoints:
    voxel_size: 0.1
    k: 0.3
    normal_weight: 1.0
    color_weight: 2.0
    min_size: 5
"""


def test_stage_writes_outputs_and_fails_cleanly(tmp_path: Path) -> None:
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_scannet(raw, SCENES)
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.format(on_error="fail"))
    args = ["--params", str(params), "--raw", str(raw), "--out", str(out), "--no-progress"]
    ok = CliRunner().invoke(stage_main, args)
    assert ok.exit_code == 0, ok.output
    assert "3 scenes" in ok.output and "train: 2 scenes" in ok.output
    assert (out / "boxes.parquet").exists() and (out / "stats.json").exists()
    corrupt_one(raw)
    bad = CliRunner().invoke(stage_main, args)
    assert bad.exit_code == 1
    assert (
        "preprocess failed" in bad.output and "scene0001_00" in bad.output and "Traceback" not in bad.output
    )
    params.write_text(
        PARAMS.format(on_error="skip").replace("voxel_size: 0.05", "voxel_size: 0.05\n  extra: 1")
    )
    unknown = CliRunner().invoke(stage_main, args)
    assert unknown.exit_code == 1 and "preprocess.extra" in unknown.output


def test_stage_shards_override_workers_and_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    write_scannet(raw, SCENES)
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.format(on_error="fail"))
    base = ["--params", str(params), "--raw", str(raw), "--no-progress"]
    workers_used = []

    def spy(raw_dir: Path, out_dir: Path, cfg: PreprocessConfig, progress: bool, shard: Shard | None) -> dict:
        workers_used.append(cfg.workers)
        return run_preprocess(raw_dir, out_dir, cfg, progress=progress, shard=shard)

    monkeypatch.setattr(stage, "run_preprocess", spy)
    runner = CliRunner()
    whole = runner.invoke(stage_main, [*base, "--out", str(tmp_path / "whole")])
    assert whole.exit_code == 0, whole.output
    for i, workers in ((1, "2"), (2, "1")):
        args = [*base, "--out", str(tmp_path / f"s{i}"), "--shard", f"{i}/2", "--workers", workers]
        shard = runner.invoke(stage_main, ["run", *args] if i == 2 else args)  # `run` is the default
        assert shard.exit_code == 0, shard.output
        assert f"preprocess shard {i}/2:" in shard.output
    assert workers_used == [1, 2, 1]  # params say 1; --workers overrides it for one run
    merged = runner.invoke(
        stage_main, ["merge", "--out", str(tmp_path / "merged"), str(tmp_path / "s2"), str(tmp_path / "s1")]
    )
    assert merged.exit_code == 0, merged.output
    assert "merge of 2 shards: 3 scenes" in merged.output
    assert files_of(tmp_path / "merged") == files_of(tmp_path / "whole")
    for spec, error in (("5/4", "1..4"), ("abc", "i/n"), ("0/0", ">= 1")):
        bad = runner.invoke(stage_main, [*base, "--out", str(tmp_path / "x"), "--shard", spec])
        assert bad.exit_code == 2 and "--shard" in bad.output and error in bad.output, bad.output
    negative = runner.invoke(stage_main, [*base, "--out", str(tmp_path / "x"), "--workers", "-1"])
    assert negative.exit_code == 2 and "--workers" in negative.output
    missing = runner.invoke(stage_main, ["merge", "--out", str(tmp_path / "m"), str(tmp_path / "s1")])
    assert missing.exit_code == 1 and "preprocess merge failed" in missing.output
    assert "2/2 missing" in missing.output and "Traceback" not in missing.output
