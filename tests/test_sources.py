"""Local sources: S3DIS zip/folder preparation (safe extraction) and the local ScanNet-layout folder."""

from __future__ import annotations

import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_readers import raises_naming, write_room, write_scannet_root

from beep3d.data.s3dis import S3DIS_ROOT_NAME, list_rooms, read_s3dis_room
from beep3d.data.scannet import read_label_map, read_scannet_scene
from pipeline.sources import (
    PARTIAL_PREFIX,
    link_or_copy_local,
    prepare_s3dis,
    split_notes,
    validate_scannet_root,
)

ROOMS = [("Area_1", "office_1"), ("Area_1", "hallway_2"), ("Area_5", "WC_1")]


@pytest.fixture
def s3dis_folder(tmp_path: Path) -> Path:
    """A folder holding Stanford3dDataset_v1.2_Aligned_Version with three small rooms."""
    root = tmp_path / "src" / S3DIS_ROOT_NAME
    for k, (area, room) in enumerate(ROOMS):
        write_room(root, area, room, ["chair_1.txt", "wall_1.txt"], seed=k)
    return root.parent


def zip_tree(
    folder: Path, archive: Path, *, prefix: str = "", extra: list[tuple[zipfile.ZipInfo, bytes]] = ()
) -> Path:
    """Zip every file under `folder` with member names `prefix + relative path`, plus `extra` members."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
        for info, data in extra:
            zf.writestr(info, data)
    return archive


def assert_nothing_left(out_dir: Path) -> None:
    """No dataset and no half-built temp tree in out_dir."""
    leftovers = list(out_dir.iterdir()) if out_dir.exists() else []
    assert leftovers == [], leftovers


def rooms_equal(a: Path, b: Path) -> None:
    assert list_rooms(a) == list_rooms(b)
    for area, room in list_rooms(a):
        x, y = read_s3dis_room(a, area, room), read_s3dis_room(b, area, room)
        np.testing.assert_array_equal(x.xyz, y.xyz)
        np.testing.assert_array_equal(x.instance, y.instance)


# ----------------------------------------------------------------------------- prepare_s3dis: zip


def test_prepare_s3dis_from_zip(tmp_path: Path, s3dis_folder: Path) -> None:
    macos = zipfile.ZipInfo(f"__MACOSX/{S3DIS_ROOT_NAME}/Area_1/._junk")
    archive = zip_tree(s3dis_folder, tmp_path / "s3dis.zip", extra=[(macos, b"\x00\x05")])
    out = tmp_path / "raw"
    root = prepare_s3dis(archive, out)
    assert root == out / S3DIS_ROOT_NAME
    assert sorted(p.name for p in out.iterdir()) == [S3DIS_ROOT_NAME]  # no temp dir, no __MACOSX
    rooms_equal(root, s3dis_folder / S3DIS_ROOT_NAME)
    assert (root / "Area_1" / "Area_1_alignmentAngle.txt").is_file()


def test_prepare_s3dis_from_zip_without_root_folder(tmp_path: Path, s3dis_folder: Path) -> None:
    archive = zip_tree(s3dis_folder / S3DIS_ROOT_NAME, tmp_path / "flat.zip")
    root = prepare_s3dis(archive, tmp_path / "raw")
    rooms_equal(root, s3dis_folder / S3DIS_ROOT_NAME)


def test_zip_slip_member_refused(tmp_path: Path, s3dis_folder: Path) -> None:
    evil = zipfile.ZipInfo(f"{S3DIS_ROOT_NAME}/../../evil.txt")
    archive = zip_tree(s3dis_folder, tmp_path / "slip.zip", extra=[(evil, b"pwned")])
    out = tmp_path / "work" / "raw"
    with raises_naming(archive, "escape"):
        prepare_s3dis(archive, out)
    assert not any(tmp_path.rglob("evil.txt"))
    assert_nothing_left(out)


def test_plain_dotdot_member_refused(tmp_path: Path, s3dis_folder: Path) -> None:
    archive = zip_tree(
        s3dis_folder, tmp_path / "slip.zip", extra=[(zipfile.ZipInfo("../evil.txt"), b"pwned")]
    )
    out = tmp_path / "raw"
    with raises_naming(archive, "'../evil.txt'"):
        prepare_s3dis(archive, out)
    assert not (tmp_path / "evil.txt").exists()
    assert_nothing_left(out)


def test_absolute_member_refused(tmp_path: Path, s3dis_folder: Path) -> None:
    target = Path(tempfile.gettempdir()) / f"beep3d-evil-{os.getpid()}.txt"
    archive = zip_tree(s3dis_folder, tmp_path / "abs.zip", extra=[(zipfile.ZipInfo(str(target)), b"pwned")])
    with zipfile.ZipFile(archive) as zf:
        assert str(target) in zf.namelist()  # the archive really holds an absolute name
    out = tmp_path / "raw"
    with raises_naming(archive, "absolute path"):
        prepare_s3dis(archive, out)
    assert not target.exists()
    assert_nothing_left(out)


def test_symlink_member_refused(tmp_path: Path, s3dis_folder: Path) -> None:
    link = zipfile.ZipInfo(f"{S3DIS_ROOT_NAME}/Area_1/office_1/Annotations/table_1.txt")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = zip_tree(s3dis_folder, tmp_path / "link.zip", extra=[(link, b"/etc/passwd")])
    out = tmp_path / "raw"
    with raises_naming(archive, "symbolic link"):
        prepare_s3dis(archive, out)
    assert_nothing_left(out)


def test_corrupt_member_leaves_no_half_tree_and_keeps_old_data(tmp_path: Path, s3dis_folder: Path) -> None:
    out = tmp_path / "raw"
    good = zip_tree(s3dis_folder, tmp_path / "good.zip")
    root = prepare_s3dis(good, out)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    # A stored (uncompressed) archive whose last member's bytes are flipped: its CRC check fails
    # only after the earlier members were already extracted.
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(s3dis_folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(s3dis_folder).as_posix())
        zf.writestr(f"{S3DIS_ROOT_NAME}/Area_5/zz_last.txt", b"0123456789" * 100)
    data = bytearray(bad.read_bytes())
    at = data.index(b"0123456789" * 100)
    data[at : at + 4] = b"XXXX"
    bad.write_bytes(bytes(data))
    with raises_naming(bad, "corrupt"):
        prepare_s3dis(bad, out)
    assert sorted(p.name for p in out.iterdir()) == [S3DIS_ROOT_NAME]
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_rerun_after_partial_temp_dir(tmp_path: Path, s3dis_folder: Path) -> None:
    out = tmp_path / "raw"
    stale = out / f"{PARTIAL_PREFIX}killed"  # what a killed extraction leaves
    (stale / "Area_1" / "office_1").mkdir(parents=True)
    (stale / "Area_1" / "office_1" / "half.txt").write_text("0 0")
    archive = zip_tree(s3dis_folder, tmp_path / "s3dis.zip")
    root = prepare_s3dis(archive, out)
    assert sorted(p.name for p in out.iterdir()) == [S3DIS_ROOT_NAME]
    rooms_equal(root, s3dis_folder / S3DIS_ROOT_NAME)
    # A second run replaces the tree with the (changed) source.
    write_room(s3dis_folder / S3DIS_ROOT_NAME, "Area_6", "lounge_1", ["sofa_1.txt"])
    root = prepare_s3dis(zip_tree(s3dis_folder, tmp_path / "s3dis2.zip"), out)
    assert ("Area_6", "lounge_1") in list_rooms(root)
    assert sorted(p.name for p in out.iterdir()) == [S3DIS_ROOT_NAME]


@pytest.mark.parametrize("content", [b"this is not a zip", b"PK\x03\x04 truncated"])
def test_not_a_zip(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "s3dis.zip"
    source.write_bytes(content)
    with raises_naming(source, "zip"):
        prepare_s3dis(source, tmp_path / "raw")
    assert_nothing_left(tmp_path / "raw")


def test_zip_without_s3dis_layout(tmp_path: Path) -> None:
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/cat.jpg", b"meow")
    with raises_naming(archive, "Area_"):
        prepare_s3dis(archive, tmp_path / "raw")
    assert_nothing_left(tmp_path / "raw")


def test_missing_source(tmp_path: Path) -> None:
    with raises_naming(tmp_path / "nope.zip", "not found"):
        prepare_s3dis(tmp_path / "nope.zip", tmp_path / "raw")


# ----------------------------------------------------------------------------- prepare_s3dis: folder


@pytest.mark.parametrize("point_at", ["parent", "root"])
def test_prepare_s3dis_from_folder_hardlinks(tmp_path: Path, s3dis_folder: Path, point_at: str) -> None:
    source = s3dis_folder if point_at == "parent" else s3dis_folder / S3DIS_ROOT_NAME
    root = prepare_s3dis(source, tmp_path / "raw")
    rooms_equal(root, s3dis_folder / S3DIS_ROOT_NAME)
    rel = Path("Area_1", "office_1", "Annotations", "chair_1.txt")
    assert os.path.samefile(root / rel, s3dis_folder / S3DIS_ROOT_NAME / rel)  # linked, not copied
    assert not (root / rel).is_symlink()


def test_prepare_s3dis_folder_follows_symlinked_areas_without_looping(
    tmp_path: Path, s3dis_folder: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_room(elsewhere, "Area_6", "lounge_1", ["sofa_1.txt"])
    root = s3dis_folder / S3DIS_ROOT_NAME
    (root / "Area_6").symlink_to(elsewhere / "Area_6", target_is_directory=True)
    (root / "Area_1" / "office_1" / "loop").symlink_to("..", target_is_directory=True)
    out_root = prepare_s3dis(s3dis_folder, tmp_path / "raw")
    assert list_rooms(out_root) == sorted([*ROOMS, ("Area_6", "lounge_1")])
    assert not (out_root / "Area_6").is_symlink()
    assert not (out_root / "Area_1" / "office_1" / "loop").exists()


def test_prepare_s3dis_folder_without_layout(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with raises_naming(tmp_path / "empty", S3DIS_ROOT_NAME):
        prepare_s3dis(tmp_path / "empty", tmp_path / "raw")


# ----------------------------------------------------------------------------- local ScanNet layout


def test_validate_scannet_root(tmp_path: Path) -> None:
    root = write_scannet_root(tmp_path / "scannet", test=("scene0707_00",))
    assert validate_scannet_root(root) == ["scene0000_00", "scene0001_00", "scene0002_00", "scene0707_00"]


def test_validate_scannet_root_lists_missing_files(tmp_path: Path) -> None:
    root = write_scannet_root(tmp_path / "scannet")
    removed = sorted(root.rglob("*.aggregation.json")) + sorted(root.rglob("*.segs.json"))
    for path in removed:
        path.unlink()
    with raises_naming(root, f"{len(removed)} scene file(s) missing", str(removed[0])):
        validate_scannet_root(root)


def test_missing_split_file_is_an_empty_split_with_a_note(tmp_path: Path) -> None:
    root = write_scannet_root(tmp_path / "scannet")
    assert split_notes(root) == []
    (root / "scannetv2_val.txt").unlink()  # a folder of training scenes only
    assert validate_scannet_root(root) == ["scene0000_00", "scene0001_00"]
    assert (
        len(split_notes(root)) == 1
        and "no val scenes (scannetv2_val.txt missing or empty)" in split_notes(root)[0]
    )
    val_only = write_scannet_root(tmp_path / "val_only", train=())
    (val_only / "scannetv2_train.txt").unlink()
    assert validate_scannet_root(val_only) == ["scene0002_00"]
    assert ["no training scenes" in note for note in split_notes(val_only)] == [True]
    out = tmp_path / "raw"
    assert link_or_copy_local(val_only, out) == ["scene0002_00"]
    assert not (out / "scannetv2_train.txt").exists() and (out / "scannetv2_val.txt").is_file()


def test_validate_scannet_root_missing_tsv_or_every_split(tmp_path: Path) -> None:
    root = write_scannet_root(tmp_path / "scannet")
    for split in ("train", "val"):
        (root / f"scannetv2_{split}.txt").unlink()
    with raises_naming(root, "no split file lists a scene", "scannetv2_train.txt"):
        validate_scannet_root(root)
    (root / "scannetv2-labels.combined.tsv").unlink()
    with raises_naming(root / "scannetv2-labels.combined.tsv", "not found"):
        validate_scannet_root(root)


def test_validate_scannet_root_bad_scene_id(tmp_path: Path) -> None:
    root = write_scannet_root(tmp_path / "scannet")
    (root / "scannetv2_train.txt").write_text("scene0000_00\n../../../etc/passwd\n")
    with raises_naming(root / "scannetv2_train.txt", "line 2"):
        validate_scannet_root(root)


def test_link_or_copy_local(tmp_path: Path) -> None:
    source = write_scannet_root(tmp_path / "mine", test=("scene0707_00",))
    (source / "scans" / "notes.md").write_text("not part of the layout")
    out = tmp_path / "raw"
    ids = link_or_copy_local(source, out)
    assert ids == validate_scannet_root(out)
    label_map = read_label_map(out / "scannetv2-labels.combined.tsv")
    a = read_scannet_scene(source, "scene0002_00", "val", label_map)
    b = read_scannet_scene(out, "scene0002_00", "val", label_map)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.instance, b.instance)
    rel = Path("scans", "scene0000_00", "scene0000_00_vh_clean_2.ply")
    assert os.path.samefile(source / rel, out / rel)
    assert not (out / "scans" / "notes.md").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert link_or_copy_local(source, out) == ids  # re-run: already linked, nothing changes


def test_link_or_copy_local_copies_across_filesystems(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or not os.access(shm, os.W_OK) or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second writable filesystem (/dev/shm) to force the copy path")
    source = write_scannet_root(tmp_path / "mine")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        out = Path(other) / "raw"
        assert link_or_copy_local(source, out) == validate_scannet_root(source)
        rel = Path("scans", "scene0001_00", "scene0001_00.aggregation.json")
        assert (out / rel).read_bytes() == (source / rel).read_bytes()
        assert not os.path.samefile(source / rel, out / rel)


def test_link_or_copy_local_invalid_source_writes_nothing(tmp_path: Path) -> None:
    source = write_scannet_root(tmp_path / "mine")
    (source / "scans" / "scene0001_00" / "scene0001_00.txt").unlink()
    out = tmp_path / "raw"
    with raises_naming(source, "1 scene file(s) missing", "scene0001_00.txt"):
        link_or_copy_local(source, out)
    assert not out.exists()


def test_validate_not_a_folder(tmp_path: Path) -> None:
    with raises_naming(tmp_path / "nowhere", "not found"):
        validate_scannet_root(tmp_path / "nowhere")
