"""Cheap checks that a downloaded ScanNet file is whole and of its type, before it is kept.

Each `verify_*` raises `VerificationError` (from `pipeline.http_fetch`) naming what is wrong; the
downloader then deletes the file and fetches it again. The checks read the file once and parse
only what proves completeness: a PLY's header and the sizes it promises, a JSON document, UTF-8
text. They are meant to catch truncation and error pages served as data, not to validate labels
(the readers do that).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.http_fetch import VerificationError

SCENE_ID = re.compile(r"^scene\d{4}_\d{2}$")
MAX_PLY_HEADER = 1 << 16  # ScanNet headers are ~300 bytes; anything longer is not a PLY header
_PLY_SCALAR_BYTES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip
_BYTE_ORDER = {"binary_little_endian": "little", "binary_big_endian": "big"}

# A property is (count_bytes, item_bytes); count_bytes == 0 marks a plain scalar property.
Prop = tuple[int, int]


def _parse_ply_header(head: bytes) -> tuple[str, list[tuple[str, int, list[Prop]]], int]:
    """-> (format, [(element name, count, props)], byte offset where the body starts)."""
    end = head.find(b"end_header")
    newline = head.find(b"\n", end)
    if not head.startswith(b"ply") or end < 0 or newline < 0:
        raise VerificationError("no complete PLY header (missing 'ply' magic or 'end_header')")
    fmt = ""
    elements: list[tuple[str, int, list[Prop]]] = []
    try:
        for line in head[:end].decode("ascii").splitlines()[1:]:
            words = line.split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and words[1] == "list":
                elements[-1][2].append((_PLY_SCALAR_BYTES[words[2]], _PLY_SCALAR_BYTES[words[3]]))
            elif words[0] == "property":
                elements[-1][2].append((0, _PLY_SCALAR_BYTES[words[1]]))
            else:
                raise ValueError(f"unexpected header line {line!r}")
    except (UnicodeDecodeError, IndexError, KeyError, ValueError) as err:
        raise VerificationError(f"malformed PLY header: {err}") from None
    if fmt not in ("ascii", *_BYTE_ORDER):
        raise VerificationError(f"unknown PLY format {fmt!r}")
    return fmt, elements, newline + 1


def _element_bytes(buf: bytes, pos: int, count: int, props: list[Prop], order: str) -> int:
    """Bytes taken by `count` records of one binary element starting at `pos` (may exceed the file)."""
    if not any(c for c, _ in props):
        return count * sum(s for _, s in props)
    if count == 0:
        return 0
    # Fast path: assume every record has the list lengths of the first one (ScanNet: triangles),
    # then confirm it with one vectorised look at the count fields of all records.
    lists, rec = [], 0
    for count_bytes, item_bytes in props:
        if count_bytes == 0:
            rec += item_bytes
            continue
        if pos + rec + count_bytes > len(buf):
            return len(buf) + 1 - pos  # cannot even read the first record: truncated
        n = int.from_bytes(buf[pos + rec : pos + rec + count_bytes], order)
        lists.append((rec, count_bytes, n))
        rec += count_bytes + n * item_bytes
    if pos + count * rec <= len(buf):
        rows = np.frombuffer(buf, np.uint8, count * rec, pos).reshape(count, rec)
        kind = "<" if order == "little" else ">"
        if all(
            (np.ascontiguousarray(rows[:, at : at + c]).view(f"{kind}u{c}").ravel() == n).all()
            for at, c, n in lists
        ):
            return count * rec
    # Mixed list lengths: walk the records one by one (slow, but not what ScanNet ships).
    at = pos
    for _ in range(count):
        for count_bytes, item_bytes in props:
            if at + count_bytes > len(buf):
                return len(buf) + 1 - pos
            n = int.from_bytes(buf[at : at + count_bytes], order) if count_bytes else 1
            at += count_bytes + n * item_bytes
    return at - pos


def verify_ply(path: Path) -> None:
    """The header parses and the element counts it declares account for the file size exactly."""
    buf = path.read_bytes()
    fmt, elements, body = _parse_ply_header(buf[:MAX_PLY_HEADER])
    if fmt == "ascii":
        lines = sum(1 for line in buf[body:].splitlines() if line.strip())
        want = sum(count for _, count, _ in elements)
        if lines != want:
            raise VerificationError(f"ASCII PLY has {lines} data lines, its header declares {want}")
        if want and not buf.endswith(b"\n"):  # cut inside the last line
            raise VerificationError("truncated ASCII PLY: the last line is incomplete")
        return
    at = body
    for name, count, props in elements:
        at += _element_bytes(buf, at, count, props, _BYTE_ORDER[fmt])
        if at > len(buf):
            raise VerificationError(
                f"truncated PLY: {len(buf)} bytes, but its {count} '{name}' records need more"
            )
    if at != len(buf):
        raise VerificationError(f"PLY is {len(buf)} bytes, its header accounts for {at}")


def _json_with(key: str) -> Callable[[Path], None]:
    def verify(path: Path) -> None:
        try:
            doc = json.loads(path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise VerificationError(f"not valid JSON: {err}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get(key), list):
            raise VerificationError(f"JSON has no '{key}' list")

    return verify


def read_text(path: Path) -> str:
    """UTF-8 text; an HTML page (a login or error page served with status 200) is rejected."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise VerificationError(f"not UTF-8 text: {err}") from None
    if text.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
        raise VerificationError("an HTML page instead of the data file (wrong URL or expired access?)")
    return text


def verify_text(path: Path) -> None:
    read_text(path)


def verify_labels_tsv(path: Path) -> None:
    header = read_text(path).partition("\n")[0]
    if "\t" not in header or "nyu40id" not in header:
        raise VerificationError("label map header has no tab-separated 'nyu40id' column")


def parse_split_list(text: str) -> list[str]:
    """Scene ids, one a line; anything that is not `sceneXXXX_YY` is refused, since the ids
    become directory names (a line like '../x' would otherwise write outside the output folder)."""
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    for i, scene in enumerate(ids):
        if not SCENE_ID.match(scene):
            raise VerificationError(f"entry {i + 1} is {scene[:40]!r}, not a scene id like scene0000_00")
    return ids


def verify_split_list(path: Path) -> None:
    parse_split_list(read_text(path))


def verify_by_name(path: Path) -> None:
    """Dispatch on the file name (a `.part` suffix is ignored)."""
    name = path.name.removesuffix(".part")
    for suffix, check in _BY_SUFFIX:
        if name.endswith(suffix):
            check(path)
            return
    raise VerificationError(f"no verification rule for {name}")


_BY_SUFFIX: list[tuple[str, Callable[[Path], None]]] = [
    (".ply", verify_ply),
    (".segs.json", _json_with("segIndices")),
    (".aggregation.json", _json_with("segGroups")),
    (".tsv", verify_labels_tsv),
    (".txt", verify_text),
]
