"""ScanNet instance AP: hand-worked cases of every protocol rule, and equality with the reference.

Expected values are worked out by hand from the official step-width rule: with recall r_0..r_D
(ascending confidence, last point r = 0, p = 1) padded as [r_0, r_0..r_D, 0], point i gets width
(r_pad[i] - r_pad[i + 2]) / 2 and AP = sum of precision x width.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

from beep3d.classes import S3DIS, SCANNET, SCANNET_WALL
from beep3d.errors import DataError
from beep3d.eval import Evaluator, SceneGT, ScenePred, evaluate, to_jsonable
from beep3d.eval.ap import THRESHOLDS, precision_recall_ap

_spec = importlib.util.spec_from_file_location(
    "reference_eval", Path(__file__).resolve().parents[1] / "benchmarks" / "reference_eval.py"
)
reference_eval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_eval)

CHAIR, TABLE, SOFA = 5, 7, 6  # nyu40 ids
CLS = {nyu: i for i, nyu in enumerate(SCANNET.instance_ids)}


class Layout:
    """A scene built from named runs of vertices, each with one label and instance id."""

    def __init__(self) -> None:
        self.label: list[int] = []
        self.instance: list[int] = []
        self.runs: dict[str, tuple[int, int]] = {}

    def run(self, name: str, label: int, instance: int, n: int) -> Layout:
        start = len(self.label)
        self.label += [label] * n
        self.instance += [instance] * n
        self.runs[name] = (start, start + n)
        return self

    def gt(self, scene_id: str = "scene0000_00") -> SceneGT:
        return SceneGT(scene_id, np.array(self.label, np.int16), np.array(self.instance, np.int32))

    def mask(self, *parts: str | tuple[str, int]) -> np.ndarray:
        """(N,) bool covering whole runs (`name`) or the first n vertices of one (`(name, n)`)."""
        out = np.zeros(len(self.label), bool)
        for part in parts:
            name, n = part if isinstance(part, tuple) else (part, None)
            a, b = self.runs[name]
            out[a : b if n is None else a + n] = True
        return out

    def pred(self, preds: list[tuple[np.ndarray, int, float]], scene_id: str = "scene0000_00") -> ScenePred:
        """preds: (mask, nyu40 id, score) triples."""
        if not preds:
            return ScenePred(
                scene_id, np.zeros((0, len(self.label)), bool), np.zeros(0, np.int64), np.zeros(0)
            )
        return ScenePred(
            scene_id,
            np.stack([m for m, _, _ in preds]),
            np.array([CLS[c] for _, c, _ in preds], np.int64),
            np.array([s for _, _, s in preds], np.float64),
        )


def ap_of(layout: Layout, preds: list[tuple[np.ndarray, int, float]]) -> dict:
    return evaluate([layout.gt()], [layout.pred(preds)], SCANNET)


def assert_all_ap(result: dict, name: str, value: float) -> None:
    for key in ("AP", "AP50", "AP25"):
        assert result["per_class"][name][key] == pytest.approx(value, abs=1e-12), key


def test_perfect_predictions_score_one() -> None:
    lay = Layout().run("wall", SCANNET_WALL, 1, 500).run("c1", CHAIR, 2, 300).run("c2", CHAIR, 3, 150)
    lay.run("t1", TABLE, 4, 400).run("unl", -1, 0, 50)
    preds = [(lay.mask("c1"), CHAIR, 0.9), (lay.mask("c2"), CHAIR, 0.4), (lay.mask("t1"), TABLE, 0.7)]
    res = ap_of(lay, preds)
    assert (res["mAP"], res["AP50"], res["AP25"]) == (1.0, 1.0, 1.0)
    assert_all_ap(res, "chair", 1.0)
    assert_all_ap(res, "table", 1.0)
    assert math.isnan(res["per_class"]["sofa"]["AP"])  # no gt: NaN, left out of the mean
    assert res["n_scenes"] == 1 and res["n_gt_instances"] == 3


def test_iou_exactly_at_threshold_is_not_a_match() -> None:
    lay = Layout().run("c1", CHAIR, 1, 200).run("rest", CHAIR, 0, 50)
    # 100 of the 200 gt vertices: IoU = 100 / 200 = 0.5 exactly -> miss (and a FP) at 0.5, match at 0.25.
    res = ap_of(lay, [(lay.mask(("c1", 100)), CHAIR, 0.9)])
    assert res["per_class"]["chair"]["AP50"] == 0.0
    assert res["per_class"]["chair"]["AP25"] == 1.0
    assert res["mAP"] == 0.0
    # One vertex more: IoU 101 / 200 > 0.5 matches at 0.5 (and at no higher threshold: 0.505 <= 0.55).
    res = ap_of(lay, [(lay.mask(("c1", 101)), CHAIR, 0.9)])
    assert res["AP50"] == 1.0 and res["AP25"] == 1.0
    assert res["mAP"] == pytest.approx(1 / 9, abs=1e-12)


def test_duplicate_on_a_matched_gt_is_a_false_positive() -> None:
    lay = Layout().run("a", CHAIR, 1, 300).run("b", CHAIR, 2, 300)
    clean = [(lay.mask("a"), CHAIR, 0.9), (lay.mask("b"), CHAIR, 0.7)]
    assert ap_of(lay, clean)["mAP"] == 1.0
    # Second mask on gt a (IoU 280/300 > 0.9, confidence 0.8): a false positive at every threshold.
    # Ascending confidence 0.7 TP, 0.8 FP, 0.9 TP: (p, r) = (2/3, 1), (1/2, 1/2), (1, 1/2), then (1, 0).
    # Padded recall [1, 1, .5, .5, 0, 0] -> widths [.25, .25, .25, .25] -> AP = (2/3 + 1/2 + 1 + 1) / 4 = 19/24.
    res = ap_of(lay, [*clean, (lay.mask(("a", 280)), CHAIR, 0.8)])
    assert_all_ap(res, "chair", 19 / 24)
    assert res["mAP"] == pytest.approx(19 / 24, abs=1e-12)
    # The gt keeps the highest confidence: the duplicate scored 0.95 turns the 0.9 one into the FP,
    # leaving the same ranking of outcomes and the same AP.
    res = ap_of(lay, [*clean, (lay.mask(("a", 280)), CHAIR, 0.95)])
    assert_all_ap(res, "chair", 19 / 24)


def test_prediction_mostly_on_void_is_ignored_not_a_false_positive() -> None:
    lay = Layout().run("wall", SCANNET_WALL, 7, 400).run("a", CHAIR, 1, 200).run("free", CHAIR, 0, 300)
    good = (lay.mask("a"), CHAIR, 0.5)
    # 190 of 200 vertices on the wall: ignored fraction 0.95 > every threshold -> not counted.
    res = ap_of(lay, [good, (lay.mask(("wall", 190), ("free", 10)), CHAIR, 0.9)])
    assert_all_ap(res, "chair", 1.0)
    # 40 of 200 on the wall (0.2 <= every threshold): a FP above the true positive.
    # (p, r) = (1/2, 1) at 0.5, (0, 0) at 0.9, then (1, 0): widths [.5, .5, 0] -> AP = 0.25.
    res = ap_of(lay, [good, (lay.mask(("wall", 40), ("free", 160)), CHAIR, 0.9)])
    assert_all_ap(res, "chair", 0.25)


def test_small_gt_counts_as_ignored_area() -> None:
    lay = Layout().run("wall", SCANNET_WALL, 7, 400).run("a", CHAIR, 1, 200)
    lay.run("tiny", CHAIR, 2, 90).run("free", CHAIR, 0, 300)
    good = (lay.mask("a"), CHAIR, 0.5)
    # 60 vertices on a 90-vertex chair gt (not counted) + 100 on the wall: all 160 ignored.
    res = ap_of(lay, [good, (lay.mask(("tiny", 60), ("wall", 100)), CHAIR, 0.9)])
    assert_all_ap(res, "chair", 1.0)
    assert res["n_gt_instances"] == 1
    # Same mask with the 60 on plain chair-labelled vertices without an instance: ignored 100/160 =
    # 0.625, above 0.5..0.6 (not counted) but not above 0.65..0.9 (a FP there, AP 0.25 as above).
    res = ap_of(lay, [good, (lay.mask(("free", 60), ("wall", 100)), CHAIR, 0.9)])
    assert res["per_class"]["chair"]["AP50"] == 1.0
    assert res["per_class"]["chair"]["AP25"] == 1.0
    assert res["mAP"] == pytest.approx((3 * 1.0 + 6 * 0.25) / 9, abs=1e-12)


def test_minimum_region_size_for_gt_and_predictions() -> None:
    lay = Layout().run("a", CHAIR, 1, 300).run("free", CHAIR, 0, 300)
    lay.run("t99", TABLE, 2, 99).run("t100", SOFA, 3, 100)
    good = (lay.mask("a"), CHAIR, 0.5)
    # A 99-vertex false positive is dropped on load; at 100 vertices it counts (AP 0.25 as above).
    assert_all_ap(ap_of(lay, [good, (lay.mask(("free", 99)), CHAIR, 0.9)]), "chair", 1.0)
    assert_all_ap(ap_of(lay, [good, (lay.mask(("free", 100)), CHAIR, 0.9)]), "chair", 0.25)
    # A 99-vertex gt is not a gt (its class has none: NaN); a 100-vertex one is (0 without a prediction).
    res = ap_of(lay, [good, (lay.mask("t99"), TABLE, 0.9)])
    assert math.isnan(res["per_class"]["table"]["AP50"])
    assert_all_ap(res, "sofa", 0.0)
    assert res["n_gt_instances"] == 2
    assert res["mAP"] == 0.5  # (chair 1 + sofa 0) / 2
    # The evaluator's size limit is a parameter; at 99 the small table counts.
    res = evaluate([lay.gt()], [lay.pred([good, (lay.mask("t99"), TABLE, 0.9)])], SCANNET, min_region_size=99)
    assert_all_ap(res, "table", 1.0)


def test_class_without_gt_is_nan_and_skipped() -> None:
    lay = Layout().run("a", CHAIR, 1, 300).run("free", TABLE, 0, 400)
    # A sofa prediction where no sofa exists: sofa has no gt -> NaN, does not lower the mean.
    res = ap_of(lay, [(lay.mask("a"), CHAIR, 0.8), (lay.mask("free"), SOFA, 0.9)])
    assert all(math.isnan(v) for v in res["per_class"]["sofa"].values())
    assert (res["mAP"], res["AP50"], res["AP25"]) == (1.0, 1.0, 1.0)
    assert sum(not math.isnan(v["AP"]) for v in res["per_class"].values()) == 1


def test_class_with_gt_but_no_prediction_scores_zero() -> None:
    lay = Layout().run("a", CHAIR, 1, 300).run("t", TABLE, 2, 300)
    res = ap_of(lay, [(lay.mask("a"), CHAIR, 0.8)])
    assert_all_ap(res, "table", 0.0)
    assert res["mAP"] == 0.5
    # No predictions at all: every class with gt scores 0.
    res = ap_of(lay, [])
    assert (res["mAP"], res["AP50"], res["AP25"]) == (0.0, 0.0, 0.0)


def test_scenes_are_pooled_not_averaged() -> None:
    one = Layout().run("a", CHAIR, 1, 300).run("free", CHAIR, 0, 300)
    two = Layout().run("a", CHAIR, 1, 300).run("free", CHAIR, 0, 300)
    gts = [one.gt("scene0001_00"), two.gt("scene0002_00")]
    preds = [
        one.pred([(one.mask("a"), CHAIR, 0.9)], "scene0001_00"),  # TP
        two.pred([(two.mask("free"), CHAIR, 0.95)], "scene0002_00"),  # FP, and its gt is missed
    ]
    # Pooled: 0.9 TP, 0.95 FP, one hard FN: (p, r) = (1/2, 1/2), (0, 0), (1, 0): widths [.25, .25, 0].
    res = evaluate(gts, preds, SCANNET)
    assert res["mAP"] == pytest.approx(0.125, abs=1e-12)  # averaging per scene would give (1 + 0) / 2
    assert res["n_scenes"] == 2 and res["n_gt_instances"] == 2
    # Streaming in the other order gives the same numbers.
    ev = Evaluator(SCANNET)
    for g, p in zip(reversed(gts), reversed(preds), strict=True):
        ev.add(g, p)
    assert to_jsonable(ev.result()) == to_jsonable(res)  # NaN -> None, so equal dicts compare equal


def test_matched_prediction_is_not_reused_and_low_threshold_overlap() -> None:
    lay = Layout().run("a", CHAIR, 1, 200).run("b", CHAIR, 2, 200)
    # p1 covers a and b (IoU 0.5 with each), p2 is exactly b.
    # At 0.25 p1 matches a, then is taken, so b gets p2: AP25 = 1. At 0.5 p1 matches nothing: a FP
    # (score 0.9) above p2's TP with one hard FN -> AP 0.125 (as in the pooled case).
    res = ap_of(lay, [(lay.mask("a", "b"), CHAIR, 0.9), (lay.mask("b"), CHAIR, 0.8)])
    assert res["AP25"] == 1.0
    assert res["AP50"] == pytest.approx(0.125, abs=1e-12)
    # A duplicate is not taken by the gt it duplicates: p2 (150 of a + 150 of b, IoU 3/7 with each)
    # is a's duplicate at 0.25 and still matches b. Ascending: 0.8 FP, 0.8 TP, 0.9 TP ->
    # (p, r) = (2/3, 1), (1, 1/2), (1, 0); widths [.25, .5, .25] -> AP25 = 11/12 (0.5 if b were missed).
    # At 0.5 p2 matches nothing: 0.8 FP, 0.9 TP, b missed -> (1/2, 1/2), (1, 1/2), (1, 0) -> 0.5.
    res = ap_of(lay, [(lay.mask("a"), CHAIR, 0.9), (lay.mask(("a", 150), ("b", 150)), CHAIR, 0.8)])
    assert res["AP25"] == pytest.approx(11 / 12, abs=1e-12)
    assert res["AP50"] == pytest.approx(0.5, abs=1e-12)


def test_precision_recall_curve_and_jsonable() -> None:
    lay = Layout().run("a", CHAIR, 1, 300).run("b", CHAIR, 2, 300)
    preds = [(lay.mask("a"), CHAIR, 0.9), (lay.mask("b"), CHAIR, 0.7), (lay.mask(("a", 280)), CHAIR, 0.8)]
    res = evaluate([lay.gt()], [lay.pred(preds)], SCANNET, return_curves=True)
    curve = res["curves"]["chair"]
    np.testing.assert_allclose(curve["precision"], [2 / 3, 1 / 2, 1, 1])
    np.testing.assert_allclose(curve["recall"], [1, 1 / 2, 1 / 2, 0])
    assert set(res["curves"]) == {"chair"}
    text = json.dumps(to_jsonable(res), allow_nan=False)
    back = json.loads(text)
    assert back["per_class"]["sofa"]["AP"] is None
    assert back["curves"]["chair"]["recall"][-1] == 0.0


def test_precision_recall_ap_ties_share_one_threshold() -> None:
    # Two predictions with the same confidence, one TP one FP: a single (1/2, 1) point, then (1, 0).
    # Padded recall [1, 1, 0, 0] -> widths [.5, .5] -> AP = 1/2 * 1/2 + 1 * 1/2 = 0.75.
    ap, precision, recall = precision_recall_ap(np.array([0.5, 0.5]), np.array([1.0, 0.0]), 0)
    np.testing.assert_allclose(precision, [0.5, 1.0])
    np.testing.assert_allclose(recall, [1.0, 0.0])
    assert ap == pytest.approx(0.75, abs=1e-12)
    # The order of tied entries does not matter.
    assert precision_recall_ap(np.array([0.5, 0.5]), np.array([0.0, 1.0]), 0)[0] == ap
    # Nothing counted at all (every prediction ignored): AP 0, not an error.
    assert precision_recall_ap(np.zeros(0), np.zeros(0), 2)[0] == 0.0


def test_bad_input_is_rejected_with_the_scene_named() -> None:
    lay = Layout().run("a", CHAIR, 1, 300)
    gt = lay.gt("scene0007_00")
    with pytest.raises(DataError, match=r"scene0007_00.*cover 299 vertices but the gt mesh has 300"):
        evaluate([gt], [ScenePred("scene0007_00", np.ones((1, 299), bool), [CLS[CHAIR]], [0.5])], SCANNET)
    with pytest.raises(DataError, match=r"class indices must lie in 0\.\.17"):
        evaluate([gt], [ScenePred("scene0007_00", np.ones((1, 300), bool), [18], [0.5])], SCANNET)
    with pytest.raises(DataError, match="no prediction for this scene"):
        evaluate([gt], [], SCANNET)
    with pytest.raises(DataError, match="without ground truth"):
        evaluate([gt], [lay.pred([], "scene0007_00"), lay.pred([], "scene0008_00")], SCANNET)
    with pytest.raises(DataError, match=r"\(K, N\), \(K,\) and \(K,\)"):
        ScenePred("scene0007_00", np.ones((2, 300), bool), [1], [0.5])
    with pytest.raises(DataError, match="finite"):
        ScenePred("scene0007_00", np.ones((1, 300), bool), [1], [float("nan")])
    with pytest.raises(DataError, match="instance ids must be >= 0"):
        SceneGT("scene0007_00", np.array([5, 5]), np.array([1, -1]))
    ev = Evaluator(SCANNET)
    ev.add(gt, lay.pred([], "scene0007_00"))
    with pytest.raises(DataError, match="twice"):
        ev.add(gt, lay.pred([], "scene0007_00"))


# --- equality with the plain reference on random scenes ---------------------------------------


def random_scene(rng: np.random.Generator, scene_id: str, class_set=SCANNET) -> tuple[SceneGT, ScenePred]:
    """A few thousand vertices; gt instances of 40..900 vertices (some under 100), void and
    instance-less runs; predictions cut from unions of runs so that IoUs land everywhere, with
    duplicates, masks spanning two instances, wrong classes, tiny masks and tied confidences."""
    ids = list(class_set.instance_ids)
    used = ids[: int(rng.integers(2, 5))]  # few classes, so instances of a class meet often
    labels, insts, sizes = [], [], []
    next_inst = 1
    for _ in range(int(rng.integers(6, 16))):
        kind = rng.random()
        if kind < 0.25:  # void: unlabelled, or a background / non-instance label
            labels.append(
                int(rng.choice([-1, 0, *class_set.background_ids, 40 if class_set is SCANNET else -1]))
            )
            insts.append(int(rng.integers(0, 3)) * 100)
        elif kind < 0.35:  # instance-class label without an instance
            labels.append(int(rng.choice(used)))
            insts.append(0)
        else:
            labels.append(int(rng.choice(used)))
            insts.append(next_inst)
            next_inst += 1
        sizes.append(int(rng.choice([40, 90, 99, 100, 150, 300, 600, 900])))
    perm = rng.permutation(sum(sizes))  # runs are scattered over the vertex order
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    label = np.empty(sum(sizes), np.int16)
    instance = np.empty(sum(sizes), np.int32)
    for lab, ins, a, n in zip(labels, insts, starts, sizes, strict=True):
        label[perm[a : a + n]] = lab
        instance[perm[a : a + n]] = ins
    masks, classes, scores = [], [], []
    for _ in range(int(rng.integers(0, 25))):
        m = np.zeros(len(label), bool)
        for r in rng.choice(len(sizes), int(rng.integers(1, 3)), replace=False):
            lo = int(rng.integers(0, sizes[r]))
            take = int(sizes[r] * rng.choice([0.3, 0.5, 0.7, 0.9, 1.0, 1.2]))
            m[perm[starts[r] + lo : starts[r] + min(sizes[r], lo + take)]] = True
            if rng.random() < 0.5:
                m[perm[starts[r] : starts[r] + min(sizes[r], take)]] = True
        masks.append(m)
        classes.append(class_set.instance_ids.index(int(rng.choice(used))) if rng.random() < 0.9 else 0)
        scores.append(float(rng.choice([0.1, 0.5, 0.9])) if rng.random() < 0.3 else float(rng.random()))
    masks_arr = np.stack(masks) if masks else np.zeros((0, len(label)), bool)
    return SceneGT(scene_id, label, instance), ScenePred(
        scene_id, masks_arr, np.array(classes, np.int64), scores
    )


@pytest.mark.parametrize("seed", range(120))
def test_fast_evaluator_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    class_set = SCANNET if seed % 4 else S3DIS
    scenes = [
        random_scene(rng, f"scene{seed:04d}_{i:02d}", class_set) for i in range(int(rng.integers(1, 5)))
    ]
    gts, preds = [g for g, _ in scenes], [p for _, p in scenes]
    expected = reference_eval.reference_ap_table(gts, preds, class_set)
    ev = Evaluator(class_set)
    for g, p in scenes:
        ev.add(g, p)
    np.testing.assert_array_equal(ev.ap_table(), expected)  # bit-identical, NaN rows included
    # The same masks as CSR rows give the same table.
    sparse = Evaluator(class_set)
    for g, p in scenes:
        sparse.add(g, ScenePred(p.scene_id, scipy.sparse.csr_array(p.masks), p.classes, p.scores))
    np.testing.assert_array_equal(sparse.ap_table(), expected)
    # Summaries: mean of the per-class means here, nanmean over the whole block in the reference.
    ours, ref = ev.result(), reference_eval.reference_summary(expected)
    for key in ("mAP", "AP50", "AP25"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12, nan_ok=True)


def test_thresholds_are_the_official_ones() -> None:
    np.testing.assert_array_equal(THRESHOLDS, np.append(np.arange(0.5, 0.95, 0.05), 0.25))
    assert len(THRESHOLDS) == 10 and THRESHOLDS[0] == 0.5 and THRESHOLDS[-1] == 0.25


def test_tiny_scene_and_non_bool_masks() -> None:
    # 5 vertices (less than one byte of bits) with the size limit lowered to 1; uint8 0/1 masks.
    gt = SceneGT(
        "s", np.array([CHAIR, CHAIR, CHAIR, TABLE, 1], np.int16), np.array([1, 1, 1, 2, 0], np.int32)
    )
    masks = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]], np.uint8)
    pred = ScenePred("s", masks, np.array([CLS[CHAIR], CLS[TABLE], CLS[SOFA]]), np.array([0.9, 0.8, 0.7]))
    ev = Evaluator(SCANNET, min_region_size=1)
    ev.add(gt, pred)
    expected = reference_eval.reference_ap_table([gt], [pred], SCANNET, min_region_size=1)
    np.testing.assert_array_equal(ev.ap_table(), expected)
    res = ev.result()
    assert res["per_class"]["chair"]["AP"] == 1.0
    # The table mask is the table vertex plus a wall vertex: IoU exactly 1/2, a match only at 0.25.
    assert (res["per_class"]["table"]["AP50"], res["per_class"]["table"]["AP25"]) == (0.0, 1.0)
    with pytest.raises(ValueError, match="min_region_size"):
        Evaluator(SCANNET, min_region_size=0)


def test_object_label_without_instance_is_charged_not_ignored() -> None:
    # Vertices 200..399 are labelled chair but belong to no instance. P lies mostly on them: were
    # they void, P (ignored fraction 0.8) would not count; as documented, P is a false positive
    # ranked above the true positive A.
    label = np.full(400, 5, np.int16)
    instance = np.where(np.arange(400) < 200, 1, 0).astype(np.int32)
    masks = np.zeros((2, 400), bool)
    masks[0, :200] = True  # A: chair 1 exactly
    masks[1, 150:] = True  # P: 50 vertices of chair 1, 200 labelled chair without an instance
    gt = SceneGT("scene0000_00", label, instance)
    pred = ScenePred("scene0000_00", masks, np.array([CLS[5], CLS[5]]), np.array([0.5, 0.9]))
    result = evaluate([gt], [pred], SCANNET)
    assert result["AP50"] == pytest.approx(0.25)  # 1.0 if P's area were ignored
    void_gt = SceneGT("scene0000_00", np.where(instance > 0, 5, -1).astype(np.int16), instance)
    assert evaluate([void_gt], [pred], SCANNET)["AP50"] == 1.0


def single_scene_evaluator(gt: SceneGT, pred: ScenePred, class_set=SCANNET) -> Evaluator:
    ev = Evaluator(class_set)
    ev.add(gt, pred)
    return ev


def test_combined_per_scene_evaluators_equal_one_streaming_evaluator() -> None:
    """The bootstrap over val scenes (benchmarks/val_noise.py) scores each scene once and combines
    scene multisets: in scene order that is bit for bit the streaming evaluator, and a scene drawn
    twice counts twice."""
    rng = np.random.default_rng(7)
    scenes = [random_scene(rng, f"scene{i:04d}_00") for i in range(6)]
    streaming = Evaluator(SCANNET)
    for g, p in scenes:
        streaming.add(g, p)
    parts = [single_scene_evaluator(g, p) for g, p in scenes]
    combined = Evaluator.combined(parts)
    np.testing.assert_array_equal(combined.ap_table(), streaming.ap_table())
    assert combined.n_scenes == streaming.n_scenes and combined.n_gt_instances == streaming.n_gt_instances

    twice = Evaluator.combined([parts[0], parts[0]])
    assert twice.n_gt_instances == 2 * parts[0].n_gt_instances
    assert twice._scores[0] == [s + s for s in parts[0]._scores[0]]
    with pytest.raises(ValueError, match="at least one"):
        Evaluator.combined([])
    with pytest.raises(ValueError, match="differ in class set"):
        Evaluator.combined([parts[0], Evaluator(S3DIS)])
