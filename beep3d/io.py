"""Atomic file writes: a reader never sees a half-written file, an interrupted writer leaves none.

Lives in `beep3d` (not `pipeline`) because the data writers here need it too; `pipeline`
re-uses it rather than keeping a second copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(final: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only if the block succeeds.

    The temporary file sits in the same directory so the rename is atomic on POSIX. On any
    exception the temporary file is removed and `final` is left untouched. `durable=False`
    skips the fsync: for many small files inside a folder that is itself swapped in atomically
    at the end, a crash loses the whole folder anyway and the syncs only cost time.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:  # make the bytes durable before they become visible
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(final: str | Path, data: bytes, durable: bool = True) -> None:
    with atomic_path(final, durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(final: str | Path, text: str, durable: bool = True) -> None:
    write_bytes_atomic(final, text.encode("utf-8"), durable)


def write_json_atomic(final: str | Path, obj: object) -> None:
    write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=True) + "\n")
