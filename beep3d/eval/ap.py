"""ScanNet instance-segmentation AP: the official benchmark protocol, vectorised and streaming.

The rules (DESIGN.md section 3), as ScanNet's `evaluate_semantic_instance.py` applies them,
with one case of our own marked below:

* Vertices whose gt label is not an instance class of the `ClassSet` are *void*. A gt instance is
  a (label, instance id) group of vertices with an instance-class label and instance id > 0.
* Ours: vertices with an instance-class label but instance id 0 are neither void nor gt: a
  prediction covering them is charged for them (they count in its size, never as ignored area).
  The official script cannot express such vertices: its gt files hold label * 1000 + instance
  per vertex, and label * 1000 would be read as one more gt instance of that class, all such
  vertices merged. They are labelled as an object class, so excusing predictions there (void)
  would be wrong, and merging them into an invented instance would be too. None of this
  project's readers produce them (a ScanNet aggregation and an S3DIS annotation file give every
  labelled vertex an object); they only arise in ground truth built elsewhere.
* Predicted masks under `min_region_size` vertices are dropped; gt instances under it are not
  counted (neither as gt nor as a miss), but overlap with them counts as ignored area.
* Per class and IoU threshold th, gt instances are visited in ascending instance id; each takes
  the first not-yet-matched prediction (in prediction order) of its class with IoU strictly
  above th. Further qualifying predictions on the same gt are false positives: the gt keeps the
  highest confidence and each lower one becomes a false positive. Duplicates are not marked as
  matched, so they may still match a later gt (only possible below IoU 0.5).
* A prediction with IoU <= th against every gt of its class (small ones included) is a false
  positive unless its ignored fraction exceeds th: (vertices on void + vertices on small gt
  instances of its class) / its size.
* AP: precision/recall at every distinct confidence plus (recall 0, precision 1), integrated
  with the step widths of the official script. A class with gt but no prediction scores 0; a
  class without gt scores NaN and is left out of the means.

Speed: every vertex gets one code (its gt instance, void, or neither) from a bincount over
(class, instance) keys; dense masks are packed to bit sets in one pass, and sizes, void overlaps
and same-class gt overlaps are popcounts of ANDed bit rows (sparse masks: one bincount of
(mask, vertex code) pairs). The per-class greedy matching then only touches a (predictions x gt
instances) table of a few hundred numbers. Each scene is reduced to its matching outcome when it
is added, so the masks of only one scene are ever held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from beep3d.classes import ClassSet
from beep3d.errors import DataError

# The official script builds its thresholds with np.arange; its values sit a few ulps above the
# decimal ones (0.75 is 0.7500000000000002), which decides ties such as an IoU of exactly 3/4.
# Taking the same array keeps every strict `IoU > th` decision identical to the benchmark's.
MAP_THRESHOLDS = np.arange(0.5, 0.95, 0.05)  # (9,) 0.50 ... 0.90, averaged into mAP
AP25_THRESHOLD = 0.25
THRESHOLDS = np.append(MAP_THRESHOLDS, AP25_THRESHOLD)  # (10,) column order of `ap_table`
AP50_COLUMN = 0  # THRESHOLDS[0] == 0.5
AP25_COLUMN = len(THRESHOLDS) - 1
MIN_REGION_SIZE = 100  # vertices; smaller gt instances and predicted masks are ignored


@dataclass
class SceneGT:
    """Ground truth of one scene on its original mesh vertices (N of them)."""

    scene_id: str
    label: np.ndarray  # (N,) int raw label (nyu40 id for ScanNet, class index for S3DIS); < 0 unlabelled
    instance: np.ndarray  # (N,) int instance id >= 1, 0 = no instance

    def __post_init__(self) -> None:
        self.label = np.asarray(self.label)
        self.instance = np.asarray(self.instance)
        if self.label.ndim != 1 or self.instance.shape != self.label.shape:
            raise DataError(
                f"gt label {self.label.shape} and instance {self.instance.shape} must be two (N,) arrays",
                scene_id=self.scene_id,
            )
        for name, arr in (("label", self.label), ("instance", self.instance)):
            if not np.issubdtype(arr.dtype, np.integer):
                raise DataError(f"gt {name} must be integers, got {arr.dtype}", scene_id=self.scene_id)
        if self.instance.size and self.instance.min() < 0:
            raise DataError("gt instance ids must be >= 0 (0 = no instance)", scene_id=self.scene_id)

    @property
    def n_vertices(self) -> int:
        return len(self.label)


@dataclass
class ScenePred:
    """K predicted instance masks of one scene over the same N vertices as its `SceneGT`.

    `masks` is either a dense (K, N) array (bool, or any numbers: non-zero = in the mask) or any
    `scipy.sparse` matrix/array of shape (K, N) whose stored non-zeros mark the mask vertices
    (CSR rows of vertex indices are the cheap way to hold ~100 masks of a 150k-vertex scene).
    An empty prediction may use shape (0, N) or (0, 0).
    """

    scene_id: str
    masks: np.ndarray | scipy.sparse.spmatrix | scipy.sparse.sparray  # (K, N)
    classes: np.ndarray  # (K,) int64 class index 0..C-1 of the ClassSet
    scores: np.ndarray  # (K,) float confidence; higher = more confident

    def __post_init__(self) -> None:
        if not scipy.sparse.issparse(self.masks):
            self.masks = np.asarray(self.masks)
        self.classes = np.asarray(self.classes)
        self.scores = np.asarray(self.scores)
        k = len(self.classes)
        if (
            self.masks.ndim != 2
            or self.masks.shape[0] != k
            or self.scores.shape != (k,)
            or self.classes.ndim != 1
        ):
            raise DataError(
                f"masks {self.masks.shape}, classes {self.classes.shape} and scores {self.scores.shape}"
                " must be (K, N), (K,) and (K,)",
                scene_id=self.scene_id,
            )
        if k and not np.issubdtype(self.classes.dtype, np.integer):
            raise DataError(
                f"classes must be integer class indices, got {self.classes.dtype}", scene_id=self.scene_id
            )
        if k and not np.all(np.isfinite(self.scores.astype(np.float64))):
            raise DataError("scores must be finite numbers", scene_id=self.scene_id)

    def __len__(self) -> int:
        return len(self.classes)


@dataclass
class _SceneOverlaps:
    """Everything the matching needs from one scene: G gt instances, P kept predictions."""

    gt_class: np.ndarray  # (G,) int64 class index, ascending (class, instance id)
    gt_size: np.ndarray  # (G,) int64 vertices
    pred_class: np.ndarray  # (P,) int64
    pred_score: np.ndarray  # (P,) float64
    pred_size: np.ndarray  # (P,) int64 vertices
    inter: np.ndarray  # (P, G) int64 shared vertices, zeroed where the classes differ
    void_inter: np.ndarray  # (P,) int64 vertices on void


def _code_dtype(n_gt: int) -> type:
    """Narrowest code type: comparisons over N vertices run on half the bytes with int16."""
    return np.int16 if n_gt + 2 <= np.iinfo(np.int16).max else np.int32


def _gt_codes(gt: SceneGT, class_set: ClassSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Code every vertex: its gt instance 0..G-1, G for void, G+1 for neither.

    Returns (code (N,) int16 or int32, gt_class (G,) int64, gt_size (G,) int64). Gt instances are
    ordered by (class index, instance id), so per class they come in ascending instance id like
    the official script's sorted `label * 1000 + instance` ids.
    """
    n = gt.n_vertices
    if n == 0:
        return np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0, np.int64)
    inst = gt.instance
    base = int(inst.max()) + 1
    lo, hi = int(gt.label.min()), int(gt.label.max())
    # key = (class index + 1) * base + instance: void vertices land in [0, base), vertices of an
    # instance class without an instance on multiples of base, gt instances everywhere else.
    n_keys = (class_set.num_classes + 1) * base
    if hi - lo < 1 << 20 and n_keys <= 4 * n + 1024:
        # Few distinct labels and a small key range: two lookups and a bincount, no sort.
        label_offset = (class_set.class_index(np.arange(lo, hi + 1)) + 1) * base  # (hi - lo + 1,)
        key = gt.label.astype(np.intp)
        key -= lo
        key = label_offset[key]
        key += inst  # (N,)
        counts = np.bincount(key, minlength=n_keys)
        slot = np.arange(n_keys)
        is_gt_key = (slot >= base) & (slot % base != 0) & (counts > 0)
        gt_key = np.flatnonzero(is_gt_key)
        lut = np.where(slot < base, len(gt_key), len(gt_key) + 1).astype(_code_dtype(len(gt_key)))
        lut[gt_key] = np.arange(len(gt_key))
        code, gt_size = lut[key], counts[gt_key]
    else:
        cls = class_set.class_index(gt.label)
        is_gt = (cls >= 0) & (inst > 0)
        gt_key, gt_index, gt_size = np.unique(
            (cls[is_gt] + 1) * base + inst[is_gt].astype(np.int64), return_inverse=True, return_counts=True
        )
        code = np.where(cls < 0, len(gt_key), len(gt_key) + 1).astype(_code_dtype(len(gt_key)))
        code[is_gt] = gt_index
    return code, (gt_key // base - 1).astype(np.int64), gt_size.astype(np.int64)


def _popcount(bits: np.ndarray) -> np.ndarray:
    """Set bits per row of (..., B) uint8 bit sets from `np.packbits`: (...,) int64."""
    whole = bits.shape[-1] // 8 * 8  # count 8 bytes at a time, the odd tail bytewise
    count = np.bitwise_count(bits[..., :whole].view(np.uint64)).sum(axis=-1, dtype=np.int64)
    if whole < bits.shape[-1]:
        count += np.bitwise_count(bits[..., whole:]).sum(axis=-1, dtype=np.int64)
    return count


def _gt_bits(code: np.ndarray, n_gt: int) -> np.ndarray:
    """(G, ceil(N / 8)) uint8 bit sets of the vertices of each gt instance (code 0..G-1)."""
    out = np.empty((n_gt, -(-len(code) // 8)), np.uint8)
    step = max(1, (1 << 24) // max(len(code), 1))  # bound the (instances, N) bool scratch to ~16 MB
    for lo in range(0, n_gt, step):
        ids = np.arange(lo, min(lo + step, n_gt), dtype=code.dtype)
        out[lo : lo + len(ids)] = np.packbits(code[None, :] == ids[:, None], axis=1)
    return out


def _dense_overlaps(
    masks: np.ndarray, classes: np.ndarray, code: np.ndarray, gt_class: np.ndarray, min_region_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sizes and overlaps of dense (K, N) masks, counted on bit sets (one packbits pass over the masks).

    Returns (keep (K,) bool, size (P,), void_inter (P,), inter (P, G)) for the P kept masks; inter is
    only computed, and only non-zero, for same-class (mask, gt) pairs. Temporaries stay at a few
    rows of bits: fresh large buffers cost more in page faults than the arithmetic itself.
    """
    n_gt = len(gt_class)
    bits = np.packbits(masks if masks.dtype == np.bool_ else masks != 0, axis=1)  # (K, ceil(N / 8))
    size = _popcount(bits)
    keep = size >= min_region_size
    gt_bits = _gt_bits(code, n_gt)
    inter = np.zeros((len(bits), n_gt), np.int64)
    for c in np.unique(gt_class):
        rows = np.flatnonzero(keep & (classes == c))
        if len(rows):
            class_bits = bits[rows]  # (r, B) the masks of class c
            for g in np.flatnonzero(gt_class == c):
                inter[rows, g] = _popcount(class_bits & gt_bits[g])
    np.bitwise_and(bits, np.packbits(code == n_gt), out=bits)  # bits are spent: reuse them for void
    void_inter = _popcount(bits)
    return keep, size[keep], void_inter[keep], inter[keep]


def _sparse_overlaps(
    masks: scipy.sparse.spmatrix,
    classes: np.ndarray,
    code: np.ndarray,
    gt_class: np.ndarray,
    min_region_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """As `_dense_overlaps` for sparse (K, N) masks: one bincount of (mask, vertex code) pairs."""
    n_gt, k = len(gt_class), masks.shape[0]
    n_codes = n_gt + 2
    csr = scipy.sparse.csr_matrix(masks, copy=True)
    csr.sum_duplicates()
    csr.eliminate_zeros()
    rows = np.repeat(np.arange(k, dtype=np.int64), np.diff(csr.indptr))
    counts = np.bincount(rows * n_codes + code[csr.indices], minlength=k * n_codes).reshape(k, n_codes)
    size = counts.sum(axis=1)
    keep = size >= min_region_size
    inter = np.where(classes[keep, None] == gt_class[None, :], counts[keep, :n_gt], 0)
    return keep, size[keep], counts[keep, n_gt], inter


def _scene_overlaps(
    gt: SceneGT, pred: ScenePred, class_set: ClassSet, min_region_size: int = MIN_REGION_SIZE
) -> _SceneOverlaps:
    """Reduce one scene to its overlap table; predictions under `min_region_size` are dropped."""
    if gt.scene_id != pred.scene_id:
        raise DataError(f"prediction is for scene {pred.scene_id!r}", scene_id=gt.scene_id)
    n = gt.n_vertices
    if len(pred) and pred.masks.shape[1] != n:
        raise DataError(
            f"prediction masks cover {pred.masks.shape[1]} vertices but the gt mesh has {n}",
            scene_id=gt.scene_id,
        )
    classes = pred.classes.astype(np.int64)
    if len(pred) and (classes.min() < 0 or classes.max() >= class_set.num_classes):
        raise DataError(
            f"prediction class indices must lie in 0..{class_set.num_classes - 1} ({class_set.name}),"
            f" got {classes.min()}..{classes.max()}",
            scene_id=gt.scene_id,
        )
    code, gt_class, gt_size = _gt_codes(gt, class_set)
    if not len(pred):
        keep, size = np.zeros(0, bool), np.zeros(0, np.int64)
        void_inter, inter = np.zeros(0, np.int64), np.zeros((0, len(gt_class)), np.int64)
    elif scipy.sparse.issparse(pred.masks):
        keep, size, void_inter, inter = _sparse_overlaps(pred.masks, classes, code, gt_class, min_region_size)
    else:
        keep, size, void_inter, inter = _dense_overlaps(pred.masks, classes, code, gt_class, min_region_size)
    return _SceneOverlaps(
        gt_class=gt_class,
        gt_size=gt_size,
        pred_class=classes[keep],
        pred_score=pred.scores.astype(np.float64)[keep],
        pred_size=size,
        inter=inter,
        void_inter=void_inter,
    )


class Evaluator:
    """Streaming AP: `add` one scene at a time (only its overlap outcome is kept), then `result`."""

    def __init__(self, class_set: ClassSet, min_region_size: int = MIN_REGION_SIZE):
        if min_region_size < 1:
            raise ValueError(
                f"min_region_size must be >= 1 (an empty mask has no IoU), got {min_region_size}"
            )
        self.class_set = class_set
        self.min_region_size = min_region_size
        c, t = class_set.num_classes, len(THRESHOLDS)
        # Per (threshold, class): confidences and 1/0 (true/false positive) of every counted prediction.
        self._scores: list[list[list[float]]] = [[[] for _ in range(c)] for _ in range(t)]
        self._trues: list[list[list[float]]] = [[[] for _ in range(c)] for _ in range(t)]
        self._hard_fn = np.zeros((t, c), np.int64)  # gt instances nothing matched
        self._has_gt = np.zeros(c, bool)
        self._has_pred = np.zeros(c, bool)
        self._scene_ids: set[str] = set()
        self.n_gt_instances = 0

    @property
    def n_scenes(self) -> int:
        return len(self._scene_ids)

    def add(self, gt: SceneGT, pred: ScenePred) -> None:
        """Score one scene. Each scene id may be added once."""
        if gt.scene_id in self._scene_ids:
            raise DataError("scene added to the evaluator twice", scene_id=gt.scene_id)
        ov = _scene_overlaps(gt, pred, self.class_set, self.min_region_size)
        self._scene_ids.add(gt.scene_id)
        valid = ov.gt_size >= self.min_region_size
        self._has_gt[ov.gt_class[valid]] = True
        self._has_pred[ov.pred_class] = True
        self.n_gt_instances += int(valid.sum())
        self._tally(ov, valid)

    def _tally(self, ov: _SceneOverlaps, valid: np.ndarray) -> None:
        union = ov.gt_size[None, :] + ov.pred_size[:, None] - ov.inter
        iou = ov.inter / union  # (P, G) float64, 0 off-class
        best_iou = iou.max(axis=1) if iou.shape[1] else np.zeros(len(iou))
        ignored = ov.void_inter + ov.inter[:, ~valid].sum(axis=1)  # void + small same-class gt
        ignored_frac = ignored / ov.pred_size
        # For each counted gt: the predictions touching it, in prediction order, with their IoU.
        candidates = [
            (int(ov.gt_class[g]), [(int(j), float(iou[j, g])) for j in np.flatnonzero(ov.inter[:, g])])
            for g in np.flatnonzero(valid)
        ]
        scores = ov.pred_score.tolist()
        for ti, th in enumerate(THRESHOLDS.tolist()):
            t_scores, t_trues = self._scores[ti], self._trues[ti]
            matched = [False] * len(scores)
            for cls, cands in candidates:
                best = None
                for j, value in cands:
                    if matched[j] or not value > th:
                        continue
                    if best is None:
                        best = scores[j]
                        matched[j] = True
                    else:  # a second prediction on this gt: the lower confidence is a false positive
                        t_scores[cls].append(min(best, scores[j]))
                        t_trues[cls].append(0.0)
                        best = max(best, scores[j])
                if best is None:
                    self._hard_fn[ti, cls] += 1
                else:
                    t_scores[cls].append(best)
                    t_trues[cls].append(1.0)
            # Predictions that reach no gt of their class, unless they lie mostly on ignored area.
            for j in np.flatnonzero((best_iou <= th) & (ignored_frac <= th)):
                t_scores[ov.pred_class[j]].append(scores[j])
                t_trues[ov.pred_class[j]].append(0.0)

    @classmethod
    def combined(cls, parts: Sequence[Evaluator]) -> Evaluator:
        """One evaluator holding the tallies of `parts`, as if their scenes had been added to one
        evaluator in this order: the same result, bit for bit. Unlike `add`, a scene may occur
        more than once, which resampling scenes needs (the bootstrap in
        benchmarks/val_noise.py scores each val scene once and then draws scene multisets)."""
        if not parts:
            raise ValueError("Evaluator.combined needs at least one evaluator")
        first = parts[0]
        if any(p.class_set != first.class_set or p.min_region_size != first.min_region_size for p in parts):
            raise ValueError("Evaluator.combined: the evaluators differ in class set or min_region_size")
        out = cls(first.class_set, first.min_region_size)
        for part in parts:
            for ti in range(len(THRESHOLDS)):
                for ci in range(first.class_set.num_classes):
                    out._scores[ti][ci] += part._scores[ti][ci]
                    out._trues[ti][ci] += part._trues[ti][ci]
            out._hard_fn += part._hard_fn
            out._has_gt |= part._has_gt
            out._has_pred |= part._has_pred
            out._scene_ids |= part._scene_ids
            out.n_gt_instances += part.n_gt_instances
        return out

    def ap_table(self) -> np.ndarray:
        """AP per class and threshold: (C, len(THRESHOLDS)) float64, NaN rows for classes without gt."""
        c, t = self.class_set.num_classes, len(THRESHOLDS)
        table = np.full((c, t), np.nan)
        for ci in range(c):
            if not self._has_gt[ci]:
                continue
            for ti in range(t):
                if self._has_pred[ci]:
                    table[ci, ti], _, _ = precision_recall_ap(
                        np.asarray(self._scores[ti][ci]),
                        np.asarray(self._trues[ti][ci]),
                        self._hard_fn[ti, ci],
                    )
                else:
                    table[ci, ti] = 0.0
        return table

    def result(self, return_curves: bool = False) -> dict:
        """Summary: mAP, AP50, AP25, per-class AP/AP50/AP25 (NaN without gt), scene and gt counts.

        mAP is the mean over the 9 thresholds per class, then the mean over classes with gt.
        With `return_curves`, "curves" maps each class with gt and predictions to its precision
        and recall arrays at IoU 0.5 (last point: recall 0, precision 1).
        """
        table = self.ap_table()
        class_ap = np.array([_mean(row[: len(MAP_THRESHOLDS)]) for row in table])
        out: dict = {
            "mAP": _nanmean(class_ap),
            "AP50": _nanmean(table[:, AP50_COLUMN]),
            "AP25": _nanmean(table[:, AP25_COLUMN]),
            "per_class": {
                name: {
                    "AP": float(class_ap[ci]),
                    "AP50": float(table[ci, AP50_COLUMN]),
                    "AP25": float(table[ci, AP25_COLUMN]),
                }
                for ci, name in enumerate(self.class_set.instance_names)
            },
            "n_scenes": self.n_scenes,
            "n_gt_instances": self.n_gt_instances,
        }
        if return_curves:
            out["curves"] = {}
            for ci, name in enumerate(self.class_set.instance_names):
                if self._has_gt[ci] and self._has_pred[ci]:
                    _, precision, recall = precision_recall_ap(
                        np.asarray(self._scores[AP50_COLUMN][ci]),
                        np.asarray(self._trues[AP50_COLUMN][ci]),
                        self._hard_fn[AP50_COLUMN, ci],
                    )
                    out["curves"][name] = {"precision": precision, "recall": recall}
        return out


def precision_recall_ap(
    scores: np.ndarray, trues: np.ndarray, hard_false_negatives: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """AP of one class at one threshold, the official way.

    scores, trues: (M,) confidences and 1/0 of every counted prediction (matched gt, duplicate,
    unmatched); hard_false_negatives: gt instances nothing matched. Returns (AP, precision (D+1,),
    recall (D+1,)) over the D distinct confidences in ascending order plus the final (0, 1) point.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    cum_true = np.cumsum(trues[order])
    _, first = np.unique(sorted_scores, return_index=True)  # first index of each distinct score
    n_true = cum_true[-1] if len(cum_true) else 0.0
    below = np.append(0.0, cum_true)[first]  # true positives scored strictly below each threshold
    tp = n_true - below
    fp = len(scores) - first - tp
    fn = below + hard_false_negatives
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    # Step widths: half the recall gap to each neighbour, padding with the first value and 0.
    widths = np.convolve(np.concatenate(([recall[0]], recall, [0.0])), [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, widths)), precision, recall


def _mean(values: np.ndarray) -> float:
    return float(np.average(values))


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else math.nan


def evaluate(
    gts: Sequence[SceneGT],
    preds: Sequence[ScenePred],
    class_set: ClassSet,
    min_region_size: int = MIN_REGION_SIZE,
    return_curves: bool = False,
) -> dict:
    """Evaluate paired scenes (matched by scene id; every gt scene needs a prediction). See `Evaluator.result`."""
    by_id = {}
    for p in preds:
        if p.scene_id in by_id:
            raise DataError("two predictions for the same scene", scene_id=p.scene_id)
        by_id[p.scene_id] = p
    gt_ids = {g.scene_id for g in gts}
    extra = sorted(set(by_id) - gt_ids)
    if extra:
        raise DataError(f"predictions for scenes without ground truth: {extra[:5]}")
    ev = Evaluator(class_set, min_region_size)
    for g in gts:
        if g.scene_id not in by_id:
            raise DataError(
                "no prediction for this scene (give an empty ScenePred instead)", scene_id=g.scene_id
            )
        ev.add(g, by_id[g.scene_id])
    return ev.result(return_curves=return_curves)


def to_jsonable(obj: object) -> object:
    """Turn a result dict into plain JSON values: NaN/inf -> None, numpy scalars/arrays -> Python."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
