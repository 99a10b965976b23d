"""The processed-data contract: three Parquet tables with a versioned schema in their metadata.

    data/processed/points/<scene_id>.parquet   one row per original vertex (a pyarrow dataset)
    data/processed/boxes.parquet               one row per axis-aligned instance box
    data/processed/scenes.parquet              one row per scene

Readers refuse files whose schema version differs from SCHEMA_VERSION, naming the file, so a
stale `data/processed/` is never silently misread. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from beep3d.errors import DataError
from beep3d.io import atomic_path

SCHEMA_VERSION = "1"
VERSION_KEY = b"beep3d.schema_version"
_META = {VERSION_KEY: SCHEMA_VERSION.encode()}

POINTS_SCHEMA = pa.schema(
    [
        ("scene_id", pa.string()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("z", pa.float32()),
        ("r", pa.uint8()),
        ("g", pa.uint8()),
        ("b", pa.uint8()),
        ("superpoint", pa.int32()),  # source segments (ScanNet segs.json) or computed if none
        # our own over-segmentation (never from annotation); -1 everywhere unless
        # preprocess.computed_superpoints is true
        ("superpoint_computed", pa.int32()),
        ("label", pa.int16()),  # nyu40 id (ScanNet layout) / class index (S3DIS); -1 unlabelled
        ("instance", pa.int32()),  # 0 = none
        ("voxel", pa.int32()),  # index of the point's voxel within its scene
    ],
    metadata=_META,
)

BOXES_SCHEMA = pa.schema(
    [
        ("scene_id", pa.string()),
        ("box_id", pa.int32()),  # the instance id the box came from
        ("label", pa.int16()),
        ("is_background", pa.bool_()),  # wall / floor: takes part in overlaps, not evaluated
        ("cx", pa.float32()),
        ("cy", pa.float32()),
        ("cz", pa.float32()),
        ("dx", pa.float32()),
        ("dy", pa.float32()),
        ("dz", pa.float32()),
        ("n_points", pa.int32()),
    ],
    metadata=_META,
)

SCENES_SCHEMA = pa.schema(
    [
        ("scene_id", pa.string()),
        ("split", pa.string()),
        ("class_set", pa.string()),  # "scannet" | "s3dis"
        ("n_points", pa.int32()),
        ("n_voxels", pa.int32()),
        ("n_superpoints", pa.int32()),
        ("n_boxes", pa.int32()),
    ],
    metadata=_META,
)


def write_table(table: pa.Table, path: str | Path, schema: pa.Schema) -> None:
    """Cast `table` to `schema` (metadata included) and write it atomically."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"table for {path} lacks columns {missing}")
    table = table.select(schema.names).cast(schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=_dictionary_columns(schema))


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Low-cardinality columns (strings, bools, <= 16-bit ints) get dictionary encoding.

    Trying a dictionary on every column (pyarrow's default) made a 150k-row points file 2.5x
    slower to write and 1.5x larger: coordinates have nearly as many distinct values as rows.
    """
    return [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_boolean(f.type)
        or (pa.types.is_integer(f.type) and f.type.bit_width <= 16)
    ]


def check_version(schema: pa.Schema, path: str | Path) -> None:
    found = (schema.metadata or {}).get(VERSION_KEY)
    if found is None:
        raise DataError("not a beep3d processed file (no schema version in metadata)", path=path)
    if found != SCHEMA_VERSION.encode():
        # Compared as bytes: a damaged footer can hold bytes that are not UTF-8.
        raise DataError(
            f"schema version {found.decode('utf-8', 'replace')} but this code reads {SCHEMA_VERSION}; "
            "re-run `dvc repro preprocess`",
            path=path,
        )


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    path = Path(path)
    if not path.exists():
        raise DataError("file not found; run `dvc repro preprocess`", path=path)
    try:
        check_version(pq.read_schema(path), path)
        table = pq.read_table(path, columns=columns)
        # Full validation (under a millisecond for 150k points) catches damage that decoding lets
        # through, e.g. a string column that is not UTF-8, which would fail later in to_numpy().
        table.validate(full=True)
        return table
    # ArrowException, the base of ArrowInvalid: a damaged file also raised it bare ("Unknown error").
    # UnicodeDecodeError: a column name in the footer that is not UTF-8.
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise DataError(f"unreadable Parquet: {err}", path=path) from err


def points_path(processed_dir: str | Path, scene_id: str) -> Path:
    return Path(processed_dir) / "points" / f"{scene_id}.parquet"


def read_scene_points(
    processed_dir: str | Path, scene_id: str, columns: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Load one scene's points as numpy columns (bounded memory: one scene at a time).

    Each column comes with its POINTS_SCHEMA type and no nulls: a damaged footer can rename a
    column or change its type, and a null turns an integer column into floats with NaN.
    """
    path = points_path(processed_dir, scene_id)
    table = read_table(path, columns=columns)
    expected = POINTS_SCHEMA.names if columns is None else list(columns)
    if table.column_names != expected:
        raise DataError(f"columns {table.column_names}, expected {expected}", path=path)
    for name in expected:
        found, wanted = table.schema.field(name).type, POINTS_SCHEMA.field(name).type
        if found != wanted:
            raise DataError(f"column {name!r} is {found}, expected {wanted}", path=path)
        if table.column(name).null_count:
            raise DataError(f"column {name!r} has {table.column(name).null_count} missing values", path=path)
    return {name: table.column(name).to_numpy() for name in expected}


def points_dataset(processed_dir: str | Path) -> ds.Dataset:
    return ds.dataset(Path(processed_dir) / "points", format="parquet")
