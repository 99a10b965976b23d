"""ScanNet benchmark submission format for instance predictions: writer and reader.

Per scene, `<out_dir>/<scene_id>.txt` holds one line per predicted instance,

    predicted_masks/<scene_id>_<k:03d>.txt <label_id> <confidence>

and each mask file holds one `0`/`1` line per mesh vertex. The label id is the raw label value of
the class (nyu40 id for ScanNet, class index for S3DIS), taken from the `ClassSet`. Mask paths are
relative to `out_dir`, as the benchmark's evaluator reads them.

Confidences are written as Python's `repr` of the float64 (the shortest text that reads back to
the same number, at most 17 significant digits), so a read-back holds exactly the confidences in
memory. AP depends on their order and ties: with 6 decimals, two confidences of one class that
differed only beyond the 6th decimal became a tie, and a re-score of the files could differ from
metrics.json.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import scipy.sparse

from beep3d.classes import ClassSet
from beep3d.errors import DataError
from beep3d.eval.ap import ScenePred
from beep3d.io import write_bytes_atomic, write_text_atomic

MASK_DIR = "predicted_masks"
_NEWLINE, _ZERO, _ONE = ord("\n"), ord("0"), ord("1")


def _check_scene_id(scene_id: str) -> None:
    if not scene_id or "/" in scene_id or "\\" in scene_id or scene_id in (".", ".."):
        raise DataError(f"scene id {scene_id!r} cannot name a submission file", scene_id=scene_id)


def _mask_rows(pred: ScenePred) -> list[np.ndarray]:
    """One (N,) bool array per instance, from dense or sparse masks."""
    n = pred.masks.shape[1]
    if scipy.sparse.issparse(pred.masks):
        csr = scipy.sparse.csr_matrix(pred.masks, copy=True)
        csr.eliminate_zeros()
        rows = []
        for k in range(len(pred)):
            row = np.zeros(n, bool)
            row[csr.indices[csr.indptr[k] : csr.indptr[k + 1]]] = True
            rows.append(row)
        return rows
    return [np.asarray(pred.masks[k]) != 0 for k in range(len(pred))]


def _mask_bytes(mask: np.ndarray) -> bytes:
    """A (N,) bool mask as N lines of `0`/`1`."""
    buf = np.full(2 * len(mask), _NEWLINE, np.uint8)
    buf[0::2] = np.where(mask, _ONE, _ZERO)
    return buf.tobytes()


def write_submission(
    out_dir: str | Path, scene_id: str, pred: ScenePred, class_set: ClassSet, durable: bool = True
) -> Path:
    """Write one scene's predictions; returns the path of `<out_dir>/<scene_id>.txt`.

    durable=False skips the per-file fsync (see `beep3d.io.atomic_path`): for a caller that swaps
    the whole folder in at the end.

    Every file is written atomically; the scene file comes last, so a scene file that exists
    never points at missing masks. Mask files of this scene left over from an earlier, longer
    write are removed.
    """
    _check_scene_id(scene_id)
    if pred.scene_id != scene_id:
        raise DataError(f"prediction belongs to scene {pred.scene_id!r}", scene_id=scene_id)
    classes = pred.classes.astype(np.int64)
    if len(pred) and (classes.min() < 0 or classes.max() >= class_set.num_classes):
        raise DataError(
            f"class indices must lie in 0..{class_set.num_classes - 1} ({class_set.name})", scene_id=scene_id
        )
    out_dir = Path(out_dir)
    lines = []
    for k, mask in enumerate(_mask_rows(pred)):
        rel = f"{MASK_DIR}/{scene_id}_{k:03d}.txt"
        write_bytes_atomic(out_dir / rel, _mask_bytes(mask), durable)
        label_id = class_set.instance_ids[classes[k]]
        lines.append(f"{rel} {label_id} {float(pred.scores[k])!r}\n")
    main = out_dir / f"{scene_id}.txt"
    write_text_atomic(main, "".join(lines), durable)
    _remove_stale_masks(out_dir / MASK_DIR, scene_id, keep=len(pred))
    return main


def _remove_stale_masks(mask_dir: Path, scene_id: str, keep: int) -> None:
    if not mask_dir.is_dir():
        return
    pattern = re.compile(re.escape(scene_id) + r"_(\d{3,})\.txt")
    for path in mask_dir.iterdir():
        hit = pattern.fullmatch(path.name)
        if hit and int(hit.group(1)) >= keep:
            path.unlink()


def _read_mask(path: Path, scene_id: str) -> np.ndarray:
    """(N,) bool from a mask file: one integer per line, non-zero = in the mask."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(
            "mask file listed in the scene file is missing", path=path, scene_id=scene_id
        ) from None
    raw = np.frombuffer(data, np.uint8)
    # Fast path for the canonical "d\n" layout this module writes.
    if len(raw) % 2 == 0 and np.all(raw[1::2] == _NEWLINE):
        digits = raw[0::2]
        if np.all((digits == _ZERO) | (digits == _ONE)):
            return digits == _ONE
    try:
        values = np.array([int(tok) for tok in data.split()], np.int64)
    except ValueError:
        raise DataError("mask file must hold one integer per vertex", path=path, scene_id=scene_id) from None
    return values != 0


def read_submission(
    out_dir: str | Path, scene_id: str, class_set: ClassSet, n_vertices: int | None = None
) -> ScenePred:
    """Read `<out_dir>/<scene_id>.txt` and its masks into a `ScenePred` with dense (K, N) masks.

    Label ids are mapped back to class indices; an id outside the class set is an error. Every
    mask must have the same length, equal to `n_vertices` when given (an empty scene file then
    gives masks of shape (0, n_vertices), else (0, 0)).
    """
    _check_scene_id(scene_id)
    out_dir = Path(out_dir)
    main = out_dir / f"{scene_id}.txt"
    if not main.is_file():
        raise DataError("no submission file for this scene", path=main, scene_id=scene_id)
    label_to_class = {label: ci for ci, label in enumerate(class_set.instance_ids)}
    masks, classes, scores = [], [], []
    for lineno, line in enumerate(main.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        where = f"line {lineno}: {line!r}"
        if len(parts) != 3:
            raise DataError(
                f"{where}: expected '<mask file> <label id> <confidence>'", path=main, scene_id=scene_id
            )
        try:
            label_id, conf = int(parts[1]), float(parts[2])
        except ValueError:
            raise DataError(
                f"{where}: label id must be an integer and confidence a number", path=main, scene_id=scene_id
            ) from None
        if label_id not in label_to_class:
            raise DataError(
                f"{where}: label id {label_id} is not an instance class of {class_set.name}",
                path=main,
                scene_id=scene_id,
            )
        if not math.isfinite(conf):
            raise DataError(f"{where}: confidence must be finite", path=main, scene_id=scene_id)
        mask_path = out_dir / parts[0]
        mask = _read_mask(mask_path, scene_id)
        expected = n_vertices if n_vertices is not None else (len(masks[0]) if masks else len(mask))
        if len(mask) != expected:
            raise DataError(
                f"mask has {len(mask)} vertices, expected {expected} (re-export against the scene's mesh)",
                path=mask_path,
                scene_id=scene_id,
            )
        masks.append(mask)
        classes.append(label_to_class[label_id])
        scores.append(conf)
    n = n_vertices if n_vertices is not None else (len(masks[0]) if masks else 0)
    return ScenePred(
        scene_id=scene_id,
        masks=np.stack(masks) if masks else np.zeros((0, n), bool),
        classes=np.asarray(classes, np.int64),
        scores=np.asarray(scores, np.float64),
    )
