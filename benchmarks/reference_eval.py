"""Plain reference for the ScanNet instance AP: the official script's algorithm, loop for loop.

Baseline for `eval_bench.py` (speed) and `tests/test_eval_ap.py` (identical numbers). It follows
the structure of ScanNet's `evaluate_semantic_instance.py` on in-memory scenes:

1. per scene, `assign_instances_for_scene` builds gt instance records from an encoded id per
   vertex, then for every predicted mask (>= min_region_size vertices) compares it with every gt
   instance of its class one vertex array at a time (`(gt_ids == id) & mask`), recording the
   intersections in both directions ("matched_pred" on the gt, "matched_gt" on the prediction);
2. `evaluate_matches` walks those records per threshold, class, scene and gt instance, appending
   true/false positives to growing arrays, and integrates the precision/recall curve with the
   per-threshold loop of the official script.

Nothing here is imported by `beep3d`; only `SceneGT`/`ScenePred` (the input types) are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse

from beep3d.classes import ClassSet
from beep3d.eval.ap import SceneGT, ScenePred

OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)  # the official threshold list


def _encoded_gt_ids(gt: SceneGT, class_set: ClassSet) -> tuple[np.ndarray, int]:
    """label * base + instance per vertex (the official files use base 1000).

    0 where the vertex has no instance or its label is not an instance class (never a gt).
    """
    label = gt.label.astype(np.int64)
    instance = gt.instance.astype(np.int64)
    base = max(1000, int(instance.max()) + 1 if instance.size else 1)
    is_gt = (instance > 0) & np.isin(label, class_set.instance_ids)
    ids = np.where(is_gt, label * base + instance, 0)
    return ids, base


def assign_instances_for_scene(
    gt: SceneGT, pred: ScenePred, class_set: ClassSet, min_region_size: int
) -> dict:
    """Gt and prediction records of one scene with their pairwise intersections."""
    names = class_set.instance_names
    id_to_name = dict(zip(class_set.instance_ids, names, strict=True))
    gt_ids, base = _encoded_gt_ids(gt, class_set)

    gt2pred: dict[str, list[dict]] = {name: [] for name in names}
    for inst_id in np.unique(gt_ids):
        if inst_id == 0:
            continue
        label_id = int(inst_id // base)
        if label_id not in id_to_name:
            continue
        gt2pred[id_to_name[label_id]].append(
            {
                "instance_id": int(inst_id),
                "label_id": label_id,
                "vert_count": int(np.count_nonzero(gt_ids == inst_id)),
                "matched_pred": [],
            }
        )

    pred2gt: dict[str, list[dict]] = {name: [] for name in names}
    bool_void = np.logical_not(np.isin(gt.label, class_set.instance_ids))
    masks = pred.masks.toarray() if scipy.sparse.issparse(pred.masks) else np.asarray(pred.masks)
    for k in range(len(pred)):
        name = names[int(pred.classes[k])]
        pred_mask = np.not_equal(masks[k], 0)
        num = int(np.count_nonzero(pred_mask))
        if num < min_region_size:
            continue
        record = {
            "key": (pred.scene_id, k),
            "vert_count": num,
            "confidence": float(pred.scores[k]),
            "void_intersection": int(np.count_nonzero(np.logical_and(bool_void, pred_mask))),
        }
        matched_gt = []
        for gt_inst in gt2pred[name]:
            intersection = int(np.count_nonzero(np.logical_and(gt_ids == gt_inst["instance_id"], pred_mask)))
            if intersection > 0:
                matched_gt.append({**gt_inst, "intersection": intersection})
                gt_inst["matched_pred"].append({**record, "intersection": intersection})
        record["matched_gt"] = matched_gt
        pred2gt[name].append(record)
    return {"gt": gt2pred, "pred": pred2gt}


def evaluate_matches(matches: dict[str, dict], class_set: ClassSet, min_region_size: int) -> np.ndarray:
    """AP per class and threshold: (C, len(OVERLAPS)), NaN for classes without gt."""
    names = class_set.instance_names
    ap = np.zeros((len(names), len(OVERLAPS)))
    for oi, overlap_th in enumerate(OVERLAPS):
        pred_visited = {}
        for m in matches.values():
            for name in names:
                for p in m["pred"][name]:
                    pred_visited[p["key"]] = False
        for li, name in enumerate(names):
            y_true = np.empty(0)
            y_score = np.empty(0)
            hard_false_negatives = 0
            has_gt = False
            has_pred = False
            for m in matches.values():
                pred_instances = m["pred"][name]
                gt_instances = [gt for gt in m["gt"][name] if gt["vert_count"] >= min_region_size]
                if gt_instances:
                    has_gt = True
                if pred_instances:
                    has_pred = True
                cur_true = np.ones(len(gt_instances))
                cur_score = np.ones(len(gt_instances)) * (-float("inf"))
                cur_match = np.zeros(len(gt_instances), dtype=bool)
                for gti, gt in enumerate(gt_instances):
                    found_match = False
                    for p in gt["matched_pred"]:
                        if pred_visited[p["key"]]:
                            continue
                        overlap = float(p["intersection"]) / (
                            gt["vert_count"] + p["vert_count"] - p["intersection"]
                        )
                        if overlap > overlap_th:
                            confidence = p["confidence"]
                            if cur_match[gti]:
                                max_score = max(cur_score[gti], confidence)
                                min_score = min(cur_score[gti], confidence)
                                cur_score[gti] = max_score
                                cur_true = np.append(cur_true, 0)
                                cur_score = np.append(cur_score, min_score)
                                cur_match = np.append(cur_match, True)
                            else:
                                found_match = True
                                cur_match[gti] = True
                                cur_score[gti] = confidence
                                pred_visited[p["key"]] = True
                    if not found_match:
                        hard_false_negatives += 1
                cur_true = cur_true[cur_match]
                cur_score = cur_score[cur_match]

                for p in pred_instances:
                    found_gt = False
                    for gt in p["matched_gt"]:
                        overlap = float(gt["intersection"]) / (
                            gt["vert_count"] + p["vert_count"] - gt["intersection"]
                        )
                        if overlap > overlap_th:
                            found_gt = True
                            break
                    if not found_gt:
                        num_ignore = p["void_intersection"]
                        for gt in p["matched_gt"]:
                            if gt["vert_count"] < min_region_size:
                                num_ignore += gt["intersection"]
                        proportion_ignore = float(num_ignore) / p["vert_count"]
                        if proportion_ignore <= overlap_th:
                            cur_true = np.append(cur_true, 0)
                            cur_score = np.append(cur_score, p["confidence"])
                y_true = np.append(y_true, cur_true)
                y_score = np.append(y_score, cur_score)

            if has_gt and has_pred:
                score_arg_sort = np.argsort(y_score)
                y_score_sorted = y_score[score_arg_sort]
                y_true_sorted = y_true[score_arg_sort]
                y_true_sorted_cumsum = np.cumsum(y_true_sorted)
                _, unique_indices = np.unique(y_score_sorted, return_index=True)
                num_prec_recall = len(unique_indices) + 1
                num_examples = len(y_score_sorted)
                num_true_examples = y_true_sorted_cumsum[-1] if len(y_true_sorted_cumsum) > 0 else 0
                precision = np.zeros(num_prec_recall)
                recall = np.zeros(num_prec_recall)
                y_true_sorted_cumsum = np.append(0, y_true_sorted_cumsum)
                for idx_res, idx_scores in enumerate(unique_indices):
                    cumsum = y_true_sorted_cumsum[idx_scores]
                    tp = num_true_examples - cumsum
                    fp = num_examples - idx_scores - tp
                    fn = cumsum + hard_false_negatives
                    precision[idx_res] = float(tp) / (tp + fp)
                    recall[idx_res] = float(tp) / (tp + fn)
                precision[-1] = 1.0
                recall[-1] = 0.0
                recall_for_conv = np.append(recall[0], recall)
                recall_for_conv = np.append(recall_for_conv, 0.0)
                step_widths = np.convolve(recall_for_conv, [-0.5, 0, 0.5], "valid")
                ap_current = np.dot(precision, step_widths)
            elif has_gt:
                ap_current = 0.0
            else:
                ap_current = float("nan")
            ap[li, oi] = ap_current
    return ap


def reference_ap_table(
    gts: Sequence[SceneGT], preds: Sequence[ScenePred], class_set: ClassSet, min_region_size: int = 100
) -> np.ndarray:
    """(C, 10) AP table over paired scenes (same order), thresholds as `OVERLAPS`."""
    matches = {}
    for gt, pred in zip(gts, preds, strict=True):
        assert gt.scene_id == pred.scene_id, (gt.scene_id, pred.scene_id)
        matches[gt.scene_id] = assign_instances_for_scene(gt, pred, class_set, min_region_size)
    return evaluate_matches(matches, class_set, min_region_size)


def reference_summary(table: np.ndarray) -> dict:
    """mAP / AP50 / AP25 the official way: nanmean over the whole (class x threshold) block."""
    o25 = np.isclose(OVERLAPS, 0.25)
    o50 = np.isclose(OVERLAPS, 0.5)
    with np.errstate(all="ignore"):
        return {
            "mAP": float(np.nanmean(table[:, ~o25])) if not np.all(np.isnan(table)) else float("nan"),
            "AP50": float(np.nanmean(table[:, o50])) if not np.all(np.isnan(table)) else float("nan"),
            "AP25": float(np.nanmean(table[:, o25])) if not np.all(np.isnan(table)) else float("nan"),
        }
