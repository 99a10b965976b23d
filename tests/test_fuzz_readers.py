"""Hostile input: every reader, fed mutated copies of a valid file, returns a valid result or a DataError.

Each test starts from one small valid file of its format and lets hypothesis damage it: byte flips,
truncation, inserted or deleted bytes, tokens swapped for awkward ones (huge, negative or non-finite
numbers, other PLY types, control bytes), whole lines dropped, repeated or swapped, and for JSON
structural edits (a value replaced by another type, a key deleted). The reader must then either
return something that holds its documented invariants, or raise `DataError` naming the damaged file:
never another exception type, never a hang (an alarm turns one into a failure).

BEEP3D_FUZZ_SCALE=N multiplies the number of cases, for a longer hunt than the test suite runs.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement
from test_readers import write_label_map, write_room, write_scene

from beep3d.classes import S3DIS_NAMES
from beep3d.data.ply import read_ply, write_ply
from beep3d.data.s3dis import read_s3dis_room
from beep3d.data.scannet import SCENE_ID_RE, SPLITS, read_label_map, read_scannet_scene, read_splits
from beep3d.data.schema import (
    POINTS_SCHEMA,
    VERSION_KEY,
    points_path,
    read_scene_points,
    read_table,
    write_table,
)
from beep3d.errors import DataError

SCALE = int(os.environ.get("BEEP3D_FUZZ_SCALE", "1"))
SCENE = "scene0000_00"
HANG_SECONDS = 5

# Cases per format and how they ended, printed when the module finishes (visible with `pytest -s`).
CASES: collections.Counter[tuple[str, str]] = collections.Counter()


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        # The suite's cases are the same on every run, so CI cannot turn red on a new random draw;
        # a longer hunt (BEEP3D_FUZZ_SCALE > 1) draws fresh cases.
        derandomize=SCALE == 1,
        # Each case is a whole file, some with inserts of thousands of bytes: large by hypothesis'
        # standards, and on purpose.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ----------------------------------------------------------------------------- mutations

NUMBERS = [
    b"-1",
    b"0",
    b"3",
    b"255",
    b"256",
    b"-129",
    b"2147483648",
    b"9223372036854775808",
    b"99999999999999",
    b"1" * 5000,  # beyond Python's int-from-text digit limit
    b"1e999",
    b"-1e999",
    b"nan",
    b"inf",
    b"1.5",
    b"1_0",
    b"0x1f",
    b"",
]
JUNK = [
    b"x",
    b"\x00",
    b"\xff\xfe",
    b"\x10",
    b"\t",
    b"\r",
    b"\n",
    b" ",
    b"\xc3",
    b"[" * 3000,
    b'"',
    b"{",
    b",",
]
PLY_WORDS = [
    b"char",
    b"uchar",
    b"short",
    b"ushort",
    b"int",
    b"uint",
    b"float",
    b"double",
    b"int64",
    b"list uchar int",
    b"list int float",
    b"list uchar uchar",
    b"list float int",
    b"property",
    b"element",
    b"vertex",
    b"face",
    b"ascii",
    b"binary_big_endian",
    b"end_header",
]
TOKEN_RE = re.compile(rb"[-+.\w]+")


@st.composite
def damaged(draw, original: bytes, tokens: list[bytes]) -> bytes:
    """`original` after one to three edits: bytes, tokens or whole lines."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "token", "token", "line"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16) | st.sampled_from(tokens))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == "token":
            matches = list(TOKEN_RE.finditer(data))
            if matches:
                m = matches[draw(st.integers(0, len(matches) - 1))]
                data[m.start() : m.end()] = draw(st.sampled_from(tokens))
        elif op == "line":
            lines = bytes(data).split(b"\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            action = draw(st.sampled_from(["drop", "repeat", "swap", "drop word", "add word"]))
            if action == "drop":
                del lines[i]
            elif action == "repeat":
                lines.insert(i, lines[i])
            elif action == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                words = lines[i].split(b" ")
                k = draw(st.integers(0, len(words) - 1))
                if action == "drop word":
                    del words[k]
                else:
                    words.insert(k, draw(st.sampled_from(tokens)))
                lines[i] = b" ".join(words)
            data = bytearray(b"\n".join(lines))
    return bytes(data)


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-2, 25)  # near the real segment / object ids, so edits stay plausible
    | st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(["chair", "wall", "", "table\x00", "\ud800"])
    | st.text(max_size=4)
)


def _json_containers(inner: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)


JSON_VALUES = st.recursive(JSON_LEAVES, _json_containers, max_leaves=6)


def _json_paths(obj: object, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            paths += _json_paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for k, value in enumerate(obj):
            paths += _json_paths(value, (*prefix, k))
    return paths


@st.composite
def json_edited(draw, original: bytes) -> bytes:
    """`original` (JSON) with one to three structural edits: replace, delete or add a value."""
    obj = json.loads(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = _json_paths(obj)
        path = paths[draw(st.integers(0, len(paths) - 1))]
        value = draw(JSON_VALUES)
        if not path:
            obj = value
            continue
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = value
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, list):
            parent.insert(path[-1], value)
        else:
            parent[draw(st.text(max_size=8))] = value
    text = json.dumps(obj)  # NaN / Infinity come out as JSON's common extension, which json reads
    return text.encode("utf-8", "surrogatepass")


def json_damage(original: bytes) -> st.SearchStrategy[bytes]:
    return json_edited(original) | damaged(original, NUMBERS + JUNK)


# ----------------------------------------------------------------------------- harness


class ReaderHung(Exception):
    pass


def _alarm(signum, frame):
    raise ReaderHung(f"reader still running after {HANG_SECONDS} s")


def run_reader(fmt: str, path: Path, read, *also_named: Path):
    """Call `read()`: its result, or None after a DataError naming `path` (or one of `also_named`)."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        result = read()
    except DataError as err:
        CASES[fmt, "DataError"] += 1
        message = str(err)
        assert any(str(p) in message for p in (path, *also_named)), message
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    CASES[fmt, "read"] += 1
    return result


@pytest.fixture(scope="module", autouse=True)
def report_cases():
    yield
    formats = sorted({fmt for fmt, _ in CASES})
    print("\nfuzz cases per format (read / DataError):")
    for fmt in formats:
        read, failed = CASES[fmt, "read"], CASES[fmt, "DataError"]
        print(f"  {fmt:<16} {read + failed:5d}  ({read} / {failed})")


def points_table(n: int = 12) -> pa.Table:
    """A small valid points table of scene SCENE (four segments, three instances)."""
    rng = np.random.default_rng(0)
    return pa.table(
        {
            "scene_id": [SCENE] * n,
            **{axis: rng.uniform(-3, 3, n).astype(np.float32) for axis in "xyz"},
            **{c: rng.integers(0, 256, n).astype(np.uint8) for c in "rgb"},
            "superpoint": np.arange(n, dtype=np.int32) // 3,
            "superpoint_computed": np.full(n, -1, np.int32),
            "label": np.resize(np.array([5, 1, 3, -1], np.int16), n),
            "instance": np.resize(np.array([1, 2, 3, 0], np.int32), n),
            "voxel": np.arange(n, dtype=np.int32),
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """One valid file of each format, and the folders the readers take."""
    root = tmp_path_factory.mktemp("fuzz")
    scannet = root / "scannet"
    scene = write_scene(scannet, SCENE)
    write_label_map(scannet)
    (scannet / "scannetv2_train.txt").write_text(f"{SCENE}\nscene0001_00\n")
    (scannet / "scannetv2_val.txt").write_text("scene0002_00\n")

    cloud = np.array(
        [(0.5, 1.0, -2.0, 10, 20, 30), (1.5, 0.25, 3.0, 255, 0, 7), (-1.0, 2.0, 0.0, 0, 128, 64)],
        dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
    )
    ascii_ply = root / "cloud.ply"
    PlyData([PlyElement.describe(cloud, "vertex")], text=True).write(str(ascii_ply))

    s3dis = root / "s3dis"
    write_room(s3dis, "Area_1", "office_1", ["chair_1.txt", "wall_1.txt"], n=4)

    processed = root / "processed"
    points_path(processed, SCENE).parent.mkdir(parents=True)
    write_table(points_table(), points_path(processed, SCENE), POINTS_SCHEMA)
    return {
        "scannet": scannet,
        "ply": scene["ply"],
        "segs": scene["segs"],
        "aggregation": scene["aggregation"],
        "meta": scene["meta"],
        "labels": scannet / "scannetv2-labels.combined.tsv",
        "splits": scannet / "scannetv2_train.txt",
        "ascii_ply": ascii_ply,
        "s3dis": s3dis,
        "annotation": s3dis / "Area_1" / "office_1" / "Annotations" / "wall_1.txt",
        "processed": processed,
        "points": points_path(processed, SCENE),
    }


class Damaged:
    """Context: `path` holds `data` inside the block and its original bytes again after it."""

    def __init__(self, path: Path, data: bytes):
        self.path, self.data = path, data

    def __enter__(self) -> Path:
        self.original = self.path.read_bytes()
        self.path.write_bytes(self.data)
        return self.path

    def __exit__(self, *exc) -> None:
        self.path.write_bytes(self.original)


def check_cloud(cloud) -> None:
    n = len(cloud.xyz)
    assert cloud.xyz.shape == (n, 3) and cloud.xyz.dtype == np.float32
    assert np.isfinite(cloud.xyz).all()
    assert cloud.rgb.shape == (n, 3) and cloud.rgb.dtype == np.uint8
    if cloud.faces is not None:
        assert cloud.faces.ndim == 2 and cloud.faces.shape[1] == 3 and cloud.faces.dtype == np.int32
        assert len(cloud.faces) == 0 or (cloud.faces.min() >= 0 and cloud.faces.max() < n)


def check_scene(scene, label_values: set[int]) -> None:
    """RawScene checks its own shapes and dtypes; these are the reader's promises on the values."""
    assert np.isfinite(scene.xyz).all()
    assert (scene.instance >= 0).all()
    assert set(np.unique(scene.label).tolist()) <= label_values | {-1}
    if scene.superpoint is not None and scene.n_points:
        assert scene.superpoint.min() == 0
        assert np.array_equal(np.unique(scene.superpoint), np.arange(scene.superpoint.max() + 1))


# ----------------------------------------------------------------------------- PLY


@fuzz_settings(400)
@given(data=st.data())
def test_fuzz_binary_ply_mesh(files, data) -> None:
    path = files["ply"]
    with Damaged(path, data.draw(damaged(path.read_bytes(), NUMBERS + JUNK + PLY_WORDS))):
        cloud = run_reader("ply-binary", path, lambda: read_ply(path))
    if cloud is not None:
        check_cloud(cloud)


@fuzz_settings(400)
@given(data=st.data())
def test_fuzz_ascii_ply_cloud(files, data) -> None:
    path = files["ascii_ply"]
    with Damaged(path, data.draw(damaged(path.read_bytes(), NUMBERS + JUNK + PLY_WORDS))):
        cloud = run_reader("ply-ascii", path, lambda: read_ply(path, require_color=False))
    if cloud is not None:
        check_cloud(cloud)


# ----------------------------------------------------------------------------- ScanNet scene files


@pytest.fixture(scope="module")
def label_map(files) -> dict[str, int]:
    return read_label_map(files["labels"])


@pytest.mark.parametrize("which", ["segs", "aggregation"])
@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_scannet_json(files, label_map, which, data) -> None:
    path = files[which]
    # A changed segs file can leave the aggregation naming segments that no longer exist.
    also = [files["aggregation"]] if which == "segs" else []
    with Damaged(path, data.draw(json_damage(path.read_bytes()))):
        scene = run_reader(
            f"{which}.json",
            path,
            lambda: read_scannet_scene(files["scannet"], SCENE, "train", label_map),
            *also,
        )
    if scene is not None:
        check_scene(scene, set(label_map.values()))


@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_scannet_meta(files, label_map, data) -> None:
    path = files["meta"]
    with Damaged(path, data.draw(damaged(path.read_bytes(), NUMBERS + JUNK))):
        scene = run_reader(
            "scene.txt", path, lambda: read_scannet_scene(files["scannet"], SCENE, "train", label_map)
        )
    if scene is not None:
        check_scene(scene, set(label_map.values()))


@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_label_map(files, data) -> None:
    path = files["labels"]
    with Damaged(path, data.draw(damaged(path.read_bytes(), NUMBERS + JUNK))):
        mapping = run_reader("labels.tsv", path, lambda: read_label_map(path))
    if mapping is not None:
        assert mapping and all(isinstance(k, str) for k in mapping)
        assert all(0 <= v <= np.iinfo(np.int16).max for v in mapping.values())


@fuzz_settings(200)
@given(data=st.data())
def test_fuzz_split_file(files, data) -> None:
    path = files["splits"]
    with Damaged(path, data.draw(damaged(path.read_bytes(), NUMBERS + JUNK + [b"scene0002_00", b"../x"]))):
        splits = run_reader("split.txt", path, lambda: read_splits(files["scannet"]), files["scannet"])
    if splits is not None:
        assert set(splits.values()) <= set(SPLITS)
        assert all(SCENE_ID_RE.match(s) for s in splits)


# ----------------------------------------------------------------------------- S3DIS


@fuzz_settings(400)
@given(data=st.data())
def test_fuzz_s3dis_annotation(files, data) -> None:
    path = files["annotation"]
    with Damaged(path, data.draw(damaged(path.read_bytes(), NUMBERS + JUNK))):
        scene = run_reader("s3dis.txt", path, lambda: read_s3dis_room(files["s3dis"], "Area_1", "office_1"))
    if scene is not None:
        check_scene(scene, set(range(len(S3DIS_NAMES))))
        assert scene.instance.min() == 1 and scene.instance.max() == 2


# ----------------------------------------------------------------------------- Parquet


@fuzz_settings(300)
@given(data=st.data())
def test_fuzz_points_parquet(files, data) -> None:
    path = files["points"]
    tokens = [b"beep3d.schema_version", b"2", b"PAR1", *NUMBERS, *JUNK]
    with Damaged(path, data.draw(damaged(path.read_bytes(), tokens))):
        columns = run_reader("points.parquet", path, lambda: read_scene_points(files["processed"], SCENE))
    if columns is not None:
        assert list(columns) == POINTS_SCHEMA.names
        assert len({len(v) for v in columns.values()}) == 1
        for field in POINTS_SCHEMA:
            assert columns[field.name].dtype == field.type.to_pandas_dtype(), field


# ----------------------------------------------------------------------------- cases fuzzing found
# Each of these once escaped as another exception type or as silently wrong data.


def ascii_ply(tmp_path: Path, header: str, body: str) -> Path:
    path = tmp_path / "cloud.ply"
    path.write_text(f"ply\nformat ascii 1.0\n{header}\nend_header\n{body}")
    return path


XYZ_RGB = "element vertex 2\n" + "\n".join(
    f"property {t} {n}" for t, n in [("float", "x"), ("float", "y"), ("float", "z")]
)


@pytest.mark.parametrize(
    ("colour_header", "body", "fragment"),
    [
        (
            "property uchar red\nproperty uchar green\nproperty uchar blue",
            "0 0 0 999 0 0\n1 1 1 0 0 0\n",
            "999",
        ),
        (
            "property uchar red\nproperty uchar green\nproperty uchar blue",
            "0 0 0 -1 0 0\n1 1 1 0 0 0\n",
            "-1",
        ),
        (
            "property float red\nproperty float green\nproperty float blue",
            "0 0 0 nan 0 0\n1 1 1 0 0 0\n",
            "0..255",
        ),
        (
            "property float red\nproperty float green\nproperty float blue",
            "0 0 0 0.5 0 0\n1 1 1 0 0 0\n",
            "0..255",
        ),
        (
            "property list uchar uchar red\nproperty uchar green\nproperty uchar blue",
            "0 0 0 2 1 2 0 0\n1 1 1 1 0 0 0\n",
            "'red'",
        ),
    ],
)
def test_ply_bad_colours(tmp_path: Path, colour_header: str, body: str, fragment: str) -> None:
    path = ascii_ply(tmp_path, f"{XYZ_RGB}\n{colour_header}", body)
    with pytest.raises(DataError, match=re.escape(fragment)) as info:
        read_ply(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("count", ["99999999999999", "1_000_000_000"])
def test_ply_count_beyond_the_file_is_refused_before_allocating(tmp_path: Path, count: str) -> None:
    path = ascii_ply(tmp_path, XYZ_RGB.replace("vertex 2", f"vertex {count}"), "0 0 0\n1 1 1\n")
    with pytest.raises(DataError, match="declares") as info:
        read_ply(path, require_color=False)
    assert str(path) in str(info.value)


def test_ply_ascii_mesh_reads_its_triangles(tmp_path: Path) -> None:
    header = (
        XYZ_RGB.replace("vertex 2", "vertex 3") + "\nelement face 1\nproperty list uchar int vertex_indices"
    )
    path = ascii_ply(tmp_path, header, "0 0 0\n1 0 0\n0 1 0\n3 2 0 1\n")
    np.testing.assert_array_equal(read_ply(path, require_color=False).faces, [[2, 0, 1]])
    path.write_text(path.read_text().replace("3 2 0 1", "4 2 0 1 1"))
    with pytest.raises(DataError, match="3 vertex indices"):
        read_ply(path, require_color=False)


def test_ply_float_face_indices_are_refused(tmp_path: Path) -> None:
    """Read as float bits, int32 indices 0..11 became tiny floats and then face 0 0 0."""
    path = tmp_path / "mesh.ply"
    write_ply(path, np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8), np.array([[0, 1, 2]]))
    data = path.read_bytes().replace(b"list uchar int vertex_indices", b"list uchar float vertex_indices")
    path.write_bytes(data)
    with pytest.raises(DataError, match="expected integers"):
        read_ply(path)


@pytest.mark.parametrize("object_id", [2**31 - 1, 2**63, 2**70])
def test_scannet_object_id_beyond_int32(tmp_path: Path, object_id: int) -> None:
    """objectId + 1 is an int32 instance id: 2**31 - 1 wrapped to -2**31, 2**63 raised OverflowError."""
    groups = [{"objectId": object_id, "label": "chair", "segments": [7]}]
    files = write_scene(tmp_path, SCENE, groups=groups)
    with pytest.raises(DataError, match="objectId") as info:
        read_scannet_scene(tmp_path, SCENE, "train", read_label_map(write_label_map(tmp_path)))
    assert str(files["aggregation"]) in str(info.value)


def test_parquet_version_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "scenes.parquet"
    pq.write_table(pa.table({"a": [1]}).replace_schema_metadata({VERSION_KEY: b"\xff"}), path)
    with pytest.raises(DataError, match="schema version") as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_s3dis_coordinate_beyond_float32(tmp_path: Path) -> None:
    """9.8e53 is a finite float64 but inf in the room's float32 coordinates."""
    path = tmp_path / "Area_1" / "office_1" / "Annotations" / "wall_1.txt"
    path.parent.mkdir(parents=True)
    path.write_text("0 0 0 1 2 3\n9.8e53 1 1 4 5 6\n")
    with pytest.raises(DataError, match="point 2 has a coordinate beyond the float32 range") as info:
        read_s3dis_room(tmp_path, "Area_1", "office_1")
    assert str(path) in str(info.value)


def test_parquet_damage_the_reader_must_catch(tmp_path: Path) -> None:
    path = points_path(tmp_path, SCENE)
    path.parent.mkdir(parents=True)
    write_table(points_table(), path, POINTS_SCHEMA)
    good = path.read_bytes()
    # The first copy of the scene id is the dictionary page, stored as is: not UTF-8 any more.
    path.write_bytes(good.replace(SCENE.encode(), b"\x80" + SCENE[1:].encode(), 1))
    with pytest.raises(DataError, match="Invalid UTF8") as info:
        read_scene_points(tmp_path, SCENE)
    assert str(path) in str(info.value)
    # A renamed column ("label" -> "lab3l" in the footer) leaves a valid file with the wrong schema.
    path.write_bytes(good.replace(b"label", b"lab3l"))
    with pytest.raises(DataError, match="expected") as info:
        read_scene_points(tmp_path, SCENE)
    assert str(path) in str(info.value)
