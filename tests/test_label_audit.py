"""benchmarks/pseudo_label_audit.py: the per-class breakdown of what box labels get wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from pseudo_label_audit import (
    box_query_gate,
    label_error_counts,
    own_box_scores,
    owner_oracle,
    per_class_table,
)

from beep3d.loss.targets import BACKGROUND, UNKNOWN


def _bookshelf_scene() -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A bookshelf (box 0, instance 5, class 1) holding books (instance 7, no box), an unannotated
    point and a chair (box 1, instance 6, class 0); a wall (box 2, instance 9)."""
    sup = {
        "box_is_background": torch.tensor([False, False, True]),
        "box_id": torch.tensor([5, 6, 9]),
        "box_label": torch.tensor([1, 0, -1]),
    }
    #                         shelf shelf shelf books books void chair chair wall
    instance = torch.tensor([5, 5, 5, 7, 7, 0, 6, 6, 9])
    assigned = torch.tensor([0, 0, BACKGROUND, 0, 0, 0, 0, 1, 0])
    return assigned, instance, sup


def test_label_errors_split_the_extra_points_by_owner() -> None:
    assigned, instance, sup = _bookshelf_scene()
    counts = label_error_counts(assigned, instance, sup)
    # bookshelf: 3 true, 2 kept, 1 missed; extra: 1 unannotated, chair + wall (boxed), 2 books (boxless)
    assert counts[1].tolist() == [3, 2, 1, 1, 2, 2]
    assert counts[0].tolist() == [2, 1, 1, 0, 0, 0]  # the chair lost a point to the bookshelf
    assert set(counts) == {0, 1}  # the wall's box is no target


def test_per_class_table_gives_iou_and_shares_of_the_true_points() -> None:
    assigned, instance, sup = _bookshelf_scene()
    counts = label_error_counts(assigned, instance, sup)
    perfect = label_error_counts(
        torch.where(instance == 5, 0, torch.where(instance == 6, 1, BACKGROUND)), instance, sup
    )
    table = per_class_table({"rule": counts, "truth": perfect}, ("chair", "bookshelf", "sink"))
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "sink" not in rows  # no true points: no row
    cells = [c.strip() for c in rows["bookshelf"].strip("|").split("|")]
    assert cells[1] == "3"
    assert cells[2] == f"{2 / (3 + 5):.3f} / 1.000"
    assert cells[3:] == [
        f"{1 / 3:.3f} / 0.000",
        f"{1 / 3:.3f} / 0.000",
        f"{2 / 3:.3f} / 0.000",
        f"{2 / 3:.3f} / 0.000",
    ]
    assert rows["chair"].split(" | ")[2] == "0.500 / 1.000"


def test_owner_oracle_labels_ambiguous_points_as_the_truth_has_them() -> None:
    """A chair (box 1, instance 2) inside a table's box (box 0, instance 1)."""
    sup = {
        "point_in_box": torch.tensor(
            [[True, False], [True, True], [True, True], [True, True], [False, False]]
        ),  # (P, T)
        "box_is_background": torch.tensor([False, False]),
        "box_id": torch.tensor([1, 2]),
        "box_min": torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.2, 0.0]]),
        "box_max": torch.tensor([[2.0, 1.0, 0.8], [0.6, 0.6, 0.9]]),
    }
    instance = torch.tensor([1, 1, 2, 0, 0])  # the 4th point is unannotated: no box's instance
    assert owner_oracle(sup, instance).tolist() == [0, 0, 1, BACKGROUND, BACKGROUND]


def test_box_query_gate_takes_low_scored_points_out_of_their_box() -> None:
    # boxes: 0 object, 1 wall (no query row), 2 object; the model's rows are boxes 0 and 2
    sup = {
        "box_is_background": torch.tensor([False, True, False]),
        "superpoint": torch.tensor([0, 0, 1, 1, 2, 3]),
    }
    assigned = torch.tensor([0, 0, 0, BACKGROUND, 2, UNKNOWN])
    box_prob = torch.tensor([[0.9, 0.2, 0.5, 0.1], [0.1, 0.1, 0.1, 0.8]])
    score = own_box_scores(assigned, box_prob, sup)
    assert score[:3].tolist() == pytest.approx([0.9, 0.9, 0.2])
    assert score[4].item() == pytest.approx(0.1)  # box 2 reads the second row
    assert torch.isnan(score[[3, 5]]).all()  # background and unknown points have no box to score
    gated = box_query_gate(assigned, score, 0.3)
    assert gated.tolist() == [0, 0, BACKGROUND, BACKGROUND, BACKGROUND, UNKNOWN]
    assert box_query_gate(assigned, score, 0.0).tolist() == assigned.tolist()  # 0 takes nothing out
