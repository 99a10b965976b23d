"""Superpoint-level targets on hand-made scenes whose masks are known exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beep3d.classes import SCANNET
from beep3d.data.boxes import Boxes, points_in_boxes, smallest_box_assignment
from beep3d.loss.targets import (
    BACKGROUND,
    UNKNOWN,
    box_heuristic_assignment,
    box_heuristic_targets,
    box_targets,
    box_volume,
    full_targets,
    point_assignment_from_boxes,
    prefer_object_boxes,
    restrict_to_containing_boxes,
    smallest_box_resolver,
    superpoint_box_fraction,
    superpoint_majority_vote,
)

CHAIR, TABLE, FLOOR = 5, 7, 2  # nyu40 ids; class indices 2 and 4, floor is a background box


def two_box_scene() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Seven points on the x axis, two overlapping object boxes and a floor box.

        x:          0    1    2    3    4    5    2
        superpoint: 0    0    1    1    2    2    3
        boxes:      A    A    A,B  B    B,F  F    A,B
        instance:   10   10   10   11   11   3    10
    A = chair, x in [-0.5, 2.5], volume 3; B = table, x in [1.5, 4.5], volume 4.32;
    F = floor, x in [3.5, 5.5], volume 0.08.
    """
    x = torch.tensor([0.0, 1, 2, 3, 4, 5, 2])
    xyz = torch.stack([x, torch.zeros(7), torch.zeros(7)], dim=1)
    box_min = torch.tensor([[-0.5, -0.5, -0.5], [1.5, -0.6, -0.6], [3.5, -0.1, -0.1]])
    box_max = torch.tensor([[2.5, 0.5, 0.5], [4.5, 0.6, 0.6], [5.5, 0.1, 0.1]])
    inside = ((xyz[:, None] >= box_min) & (xyz[:, None] <= box_max)).all(dim=2)
    supervision = {
        "box_id": torch.tensor([10, 11, 3]),
        "box_label": torch.tensor([2, 4, -1]),
        "box_is_background": torch.tensor([False, False, True]),
        "box_min": box_min,
        "box_max": box_max,
        "box_center": torch.tensor([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0], [4.5, 0.0, 0.0]]),
        "box_size": box_max - box_min,
        "point_in_box": inside,
        "superpoint": torch.tensor([0, 0, 1, 1, 2, 2, 3]),
    }
    ground_truth = {
        "label": torch.tensor([CHAIR, CHAIR, CHAIR, TABLE, TABLE, FLOOR, CHAIR], dtype=torch.int16),
        "instance": torch.tensor([10, 10, 10, 11, 11, 3, 10], dtype=torch.int32),
    }
    return supervision, ground_truth


def test_point_assignment_splits_known_and_ambiguous() -> None:
    sup, _ = two_box_scene()
    assigned, ambiguous = point_assignment_from_boxes(sup["point_in_box"], sup["box_is_background"])
    assert assigned.dtype == torch.int64
    assert assigned.tolist() == [0, 0, UNKNOWN, 1, UNKNOWN, BACKGROUND, UNKNOWN]
    assert ambiguous.tolist() == [False, False, True, False, True, False, True]


def test_smallest_box_resolver_and_box_targets() -> None:
    sup, _ = two_box_scene()
    assigned, _ = point_assignment_from_boxes(sup["point_in_box"], sup["box_is_background"])
    volume = box_volume(sup["box_min"], sup["box_max"])
    resolved = smallest_box_resolver(sup["point_in_box"], volume, sup["box_is_background"], assigned)
    # Points 2 and 6 go to the chair (volume 3 < 4.32); point 4 goes to the floor box (0.08 < 4.32),
    # i.e. to the background.
    assert resolved.tolist() == [0, 0, 0, 1, BACKGROUND, BACKGROUND, 0]
    t = box_targets(resolved, sup)
    assert t["labels"].tolist() == [2, 4] and t["box_index"].tolist() == [0, 1]
    expected = torch.tensor([[1.0, 0.5, 0.0, 1.0], [0.0, 0.5, 0.0, 0.0]])
    assert t["masks"].dtype == torch.float32 and torch.equal(t["masks"], expected)
    assert t["mask_valid"].tolist() == [True] * 4
    assert torch.equal(t["centers"], sup["box_center"][:2])
    assert torch.equal(t["sizes"], sup["box_size"][:2])


def test_unresolved_points_leave_the_mask_loss() -> None:
    sup, _ = two_box_scene()
    assigned, _ = point_assignment_from_boxes(sup["point_in_box"], sup["box_is_background"])
    t = box_targets(assigned, sup)  # warm-up: ambiguous points held out
    # Fractions over resolved points only: sp1 keeps point 3 (table), sp2 keeps point 5 (floor),
    # sp3 has only the ambiguous point 6 and is excluded.
    expected = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    assert torch.equal(t["masks"], expected)
    assert t["mask_valid"].tolist() == [True, True, True, False]


def test_superpoint_majority_vote() -> None:
    sp = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 4])
    assigned = torch.tensor([2, 2, 0, BACKGROUND, 1, BACKGROUND, UNKNOWN, 1, 0, UNKNOWN, UNKNOWN, 1])
    voted = superpoint_majority_vote(assigned, sp)
    # sp0: box 2 wins 2:1; sp1: background 2:1 (unknown does not vote); sp2: tie -> lower box;
    # sp3: only unknown -> stays unknown; sp4: single point.
    assert voted.tolist() == [2, 2, 2, -1, -1, -1, -1, 0, 0, UNKNOWN, UNKNOWN, 1]
    assert superpoint_majority_vote(torch.tensor([1, BACKGROUND]), torch.tensor([0, 0])).tolist() == [-1, -1]


def test_box_heuristic_end_to_end() -> None:
    sup, _ = two_box_scene()
    t = box_heuristic_targets(sup)
    # After the smallest-box step: [A, A, A, B, bg, bg, A]; votes: sp0 A, sp1 tie A/B -> A,
    # sp2 background, sp3 A. The table ends up with an empty mask: the heuristic's known failure.
    assert torch.equal(t["masks"], torch.tensor([[1.0, 1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]]))
    assert t["mask_valid"].all()


def test_full_targets_from_ground_truth() -> None:
    sup, gt = two_box_scene()
    t = full_targets(gt, sup, SCANNET)
    assert t["labels"].tolist() == [2, 4] and t["box_index"].tolist() == [0, 1]
    expected = torch.tensor([[1.0, 0.5, 0.0, 1.0], [0.0, 0.5, 0.5, 0.0]])
    assert torch.equal(t["masks"], expected)
    assert t["mask_valid"].all() and torch.equal(t["centers"], sup["box_center"][:2])
    assert torch.equal(t["sizes"], sup["box_size"][:2])
    # An instance of an instance class whose box is missing is an error, not a silent drop.
    gt_bad = {**gt, "instance": torch.tensor([10, 10, 10, 12, 12, 3, 10], dtype=torch.int32)}
    with pytest.raises(ValueError, match=r"instance\(s\) \[12\].*no object box"):
        full_targets(gt_bad, sup, SCANNET)


def test_scene_without_boxes() -> None:
    sup = {
        "box_id": torch.zeros(0, dtype=torch.int64),
        "box_label": torch.zeros(0, dtype=torch.int64),
        "box_is_background": torch.zeros(0, dtype=torch.bool),
        "box_min": torch.zeros(0, 3),
        "box_max": torch.zeros(0, 3),
        "box_center": torch.zeros(0, 3),
        "box_size": torch.zeros(0, 3),
        "point_in_box": torch.zeros(5, 0, dtype=torch.bool),
        "superpoint": torch.tensor([0, 1, 1, 2, 2]),
    }
    gt = {"label": torch.full((5,), -1, dtype=torch.int16), "instance": torch.zeros(5, dtype=torch.int32)}
    assigned, ambiguous = point_assignment_from_boxes(sup["point_in_box"], sup["box_is_background"])
    assert assigned.tolist() == [BACKGROUND] * 5 and not ambiguous.any()
    for t in (box_heuristic_targets(sup), full_targets(gt, sup, SCANNET)):
        assert t["labels"].shape == (0,) and t["masks"].shape == (0, 3) and t["centers"].shape == (0, 3)
        assert t["mask_valid"].tolist() == [True] * 3


def test_resolver_agrees_with_the_reference_smallest_box_rule() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 4, (4000, 3)).astype(np.float32)
    lo = rng.uniform(0, 3, (20, 3)).astype(np.float32)
    size = rng.uniform(0.8, 2.5, (20, 3)).astype(np.float32)
    boxes = Boxes(
        np.arange(20, dtype=np.int32), np.full(20, 5, np.int16), np.zeros(20, bool),
        lo + size / 2, size, np.ones(20, np.int32),
    )  # fmt: skip
    inside = points_in_boxes(xyz, boxes)
    reference = smallest_box_assignment(inside, boxes)
    inside_t = torch.from_numpy(inside)
    is_bg = torch.zeros(20, dtype=torch.bool)
    assigned, ambiguous = point_assignment_from_boxes(inside_t, is_bg)
    assert int(ambiguous.sum()) > 100  # the comparison covers many ambiguous points
    resolved = smallest_box_resolver(inside_t, torch.from_numpy(boxes.volume), is_bg, assigned)
    assert np.array_equal(resolved.numpy(), reference)


def test_containment_drops_boxes_a_superpoint_sticks_out_of() -> None:
    # Superpoint 1 (x = 2, 3) sticks out of box A at x = 3 and lies wholly in B: A is dropped
    # for both its points; superpoint 3 (x = 2) lies in A and B: both stay.
    sup, _ = two_box_scene()
    is_bg, sp = sup["box_is_background"], sup["superpoint"]
    fraction = superpoint_box_fraction(sup["point_in_box"], sp)
    assert fraction[1].tolist() == [0.5, 1.0, 0.0] and fraction[3].tolist() == [1.0, 1.0, 0.0]
    kept = restrict_to_containing_boxes(sup["point_in_box"], is_bg, sp, 1.0)
    assert kept[2].tolist() == [False, True, False] and kept[6].tolist() == [True, True, False]
    # Superpoint 2 (x = 4, 5) sticks out of B (x = 5) and lies in no other object box, but point
    # 4 is also in the floor box: it goes to the floor box alone.
    assert kept[4].tolist() == [False, False, True]
    assert torch.equal(restrict_to_containing_boxes(sup["point_in_box"], is_bg, sp, 0.0), sup["point_in_box"])
    # At 0.5, A holds half of superpoint 1: it stays.
    assert restrict_to_containing_boxes(sup["point_in_box"], is_bg, sp, 0.5)[2].tolist() == [
        True,
        True,
        False,
    ]


def test_containment_keeps_object_boxes_when_no_box_would_be_left() -> None:
    # One point in object box 0 only, its superpoint mostly outside: no prior, the box stays.
    point_in_box = torch.tensor([[True], [False], [False]])
    kept = restrict_to_containing_boxes(point_in_box, torch.tensor([False]), torch.tensor([0, 0, 0]), 1.0)
    assert kept.tolist() == [[True], [False], [False]]


def test_objects_first_takes_wall_and_floor_boxes_away_from_object_points() -> None:
    point_in_box = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1]], dtype=torch.bool)
    is_bg = torch.tensor([False, False, True])
    kept = prefer_object_boxes(point_in_box, is_bg)
    assert kept.tolist() == [[True, False, False], [False, False, True], [True, True, False]]


def test_box_prior_fixes_what_the_smallest_box_rule_gets_wrong() -> None:
    # Classic rule: point 2 (in A and B) goes to the smaller box A, and the vote then ties its
    # superpoint 1 between A and B and gives it A, the lower index. The containment prior knows
    # superpoint 1 sticks out of A, so it goes to B (its truth). Superpoint 2 sticks out of B: its
    # point 4 keeps only the floor box, background under both rules.
    sup, _ = two_box_scene()
    classic = box_heuristic_assignment(sup)
    prior = box_heuristic_assignment(sup, containment=1.0, objects_first=True)
    assert classic.tolist() == [0, 0, 0, 0, BACKGROUND, BACKGROUND, 0]
    assert prior.tolist() == [0, 0, 1, 1, BACKGROUND, BACKGROUND, 0]
    assert torch.equal(box_heuristic_targets(sup)["masks"], box_targets(classic, sup)["masks"])
