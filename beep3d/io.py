"""Atomic file writes: a reader never sees a half-written file, an interrupted writer leaves none.

Lives in `beep3d` (not `pipeline`) because the data writers here need it too; `pipeline`
re-uses it rather than keeping a second copy.

Files written here get the permissions of a plain `open(path, "w")`: 0666 less the process
umask (0644 under the usual umask 022), so colleagues on a shared machine can read them.
`tempfile.mkstemp` would give 0600, and the rename would carry that onto the final file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
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
    tmp = _create_temp_beside(final)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as fh:  # make the bytes durable before they become visible
                os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _create_temp_beside(final: Path) -> Path:
    """Create a new empty file `.<name>.<random>.tmp` beside `final`, mode 0666 less the umask.

    O_EXCL makes the name ours alone, as mkstemp does; unlike mkstemp the kernel applies the
    umask, so the renamed file ends up with the same mode as any other file the process writes.
    """
    for _ in range(100):
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name beside {final} after 100 tries")


def make_temp_dir(parent: str | Path, prefix: str) -> Path:
    """A new folder `<parent>/<prefix><random>`, mode 0777 less the umask (mkdtemp gives 0700).

    For a tree built aside and renamed into place whole: once renamed, it is an output like any
    other and must be as readable as one.
    """
    for _ in range(100):
        path = Path(parent) / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free temporary folder name in {parent} after 100 tries")


def write_bytes_atomic(final: str | Path, data: bytes, durable: bool = True) -> None:
    with atomic_path(final, durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(final: str | Path, text: str, durable: bool = True) -> None:
    write_bytes_atomic(final, text.encode("utf-8"), durable)


def write_json_atomic(final: str | Path, obj: object) -> None:
    write_text_atomic(final, json.dumps(obj, indent=2, sort_keys=True) + "\n")
