"""Atomic writes: whole files or none, with the mode any other file of the process gets."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from beep3d.data.ply import write_ply
from beep3d.data.schema import write_table
from beep3d.io import atomic_path, make_temp_dir, write_json_atomic, write_text_atomic


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request) -> Iterator[int]:
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_follow_the_umask(tmp_path: Path, umask: int) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what an ordinary open() gives under this umask
    assert mode(plain) == 0o666 & ~umask
    write_text_atomic(tmp_path / "a.txt", "hello")
    write_json_atomic(tmp_path / "b.json", {"a": 1})
    write_ply(tmp_path / "c.ply", np.zeros((3, 3), np.float32), np.zeros((3, 3), np.uint8))
    with atomic_path(tmp_path / "sub" / "d.bin") as tmp:
        tmp.write_bytes(b"\0")
    schema = pa.schema([("x", pa.float32())])
    write_table(pa.table({"x": [1.0]}), tmp_path / "e.parquet", schema)  # as processed/points/*.parquet
    for name in ("a.txt", "b.json", "c.ply", "sub/d.bin", "e.parquet"):
        assert mode(tmp_path / name) == mode(plain), name
    folder = make_temp_dir(tmp_path, ".partial-")
    assert folder.name.startswith(".partial-") and mode(folder) == 0o777 & ~umask


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert final.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
