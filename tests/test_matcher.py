"""Hungarian matcher: batched vs one by one, empty targets, obvious assignments, cost terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from beep3d.loss import HungarianMatcher, MatcherConfig
from beep3d.loss.matcher import pairwise_bce, pairwise_dice

MATCHER = HungarianMatcher.from_config(MatcherConfig())


def random_scene(q: int, s: int, t: int, c: int = 4, seed: int = 0) -> tuple[dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    pred = {
        "class_logits": torch.randn(q, c + 1, generator=gen),
        "mask_logits": 3 * torch.randn(q, s, generator=gen),
        "centers": 4 * torch.rand(q, 3, generator=gen),
    }
    target = {
        "labels": torch.randint(c, (t,), generator=gen),
        "masks": (torch.rand(t, s, generator=gen) > 0.6).float(),
        "mask_valid": torch.rand(s, generator=gen) > 0.2,
        "centers": 4 * torch.rand(t, 3, generator=gen),
    }
    return pred, target


def as_batch(preds: list[dict]) -> dict:
    return {k: [p[k] for p in preds] for k in preds[0]}


def test_batched_matching_equals_one_scene_at_a_time():
    scenes = [
        random_scene(12, 40, 5, seed=1),
        random_scene(9, 25, 0, seed=2),
        random_scene(15, 60, 7, seed=3),
    ]
    preds, targets = zip(*scenes, strict=True)
    batched = MATCHER(as_batch(list(preds)), list(targets))
    for (pred, target), (rows, cols) in zip(scenes, batched, strict=True):
        [(rows1, cols1)] = MATCHER(as_batch([pred]), [target])
        assert torch.equal(rows, rows1) and torch.equal(cols, cols1)
        assert len(rows) == min(len(pred["class_logits"]), len(target["labels"]))
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)


def test_no_targets_gives_empty_indices():
    pred, target = random_scene(10, 30, 0)
    [(rows, cols)] = MATCHER(as_batch([pred]), [target])
    assert rows.dtype == cols.dtype == torch.int64
    assert rows.numel() == cols.numel() == 0


def test_obvious_assignment_is_found():
    """Queries 3, 0, 1 predict targets 0, 1, 2 exactly (mask, class, centre); query 2 predicts rubbish."""
    masks = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.float32)
    target = {
        "labels": torch.tensor([2, 0, 1]),
        "masks": masks,
        "mask_valid": torch.ones(6, dtype=torch.bool),
        "centers": torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]),
    }
    order = [1, 2, None, 0]  # query -> target it copies
    class_logits = torch.full((4, 4), -5.0)
    mask_logits = torch.full((4, 6), -8.0)
    centers = torch.full((4, 3), 9.0)
    for q, t in enumerate(order):
        if t is None:
            continue
        class_logits[q, target["labels"][t]] = 5.0
        mask_logits[q] = 16 * masks[t] - 8
        centers[q] = target["centers"][t]
    [(rows, cols)] = MATCHER(
        {"class_logits": [class_logits], "mask_logits": [mask_logits], "centers": [centers]}, [target]
    )
    assert rows.tolist() == [0, 1, 3] and cols.tolist() == [1, 2, 0]


def test_more_targets_than_queries_matches_every_query():
    pred, target = random_scene(3, 20, 8, seed=5)
    [(rows, cols)] = MATCHER(as_batch([pred]), [target])
    assert rows.tolist() == [0, 1, 2] and len(set(cols.tolist())) == 3


def test_invalid_superpoints_do_not_change_the_cost():
    pred, target = random_scene(6, 30, 4, seed=7)
    base = MATCHER.cost_matrix(pred, target)
    changed = {**pred, "mask_logits": pred["mask_logits"].clone()}
    changed["mask_logits"][:, ~target["mask_valid"]] = 100.0
    torch.testing.assert_close(MATCHER.cost_matrix(changed, target), base)


def test_cost_terms_match_their_definitions():
    pred, target = random_scene(5, 17, 3, seed=9)
    logits, masks = pred["mask_logits"], target["masks"]
    bce = torch.stack(
        [torch.stack([F.binary_cross_entropy_with_logits(p, t) for t in masks]) for p in logits]
    )
    torch.testing.assert_close(pairwise_bce(logits, masks), bce)
    probs = logits.sigmoid()
    dice = torch.stack(
        [torch.stack([1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1) for t in masks]) for p in probs]
    )
    torch.testing.assert_close(pairwise_dice(logits, masks), dice)
    only_center = HungarianMatcher(cost_class=0, cost_bce=0, cost_dice=0, cost_center=2.0)
    l1 = (pred["centers"][:, None] - target["centers"][None]).abs().mean(-1)
    torch.testing.assert_close(only_center.cost_matrix(pred, target), 2.0 * l1)


def test_non_finite_predictions_and_bad_targets_fail_loudly():
    pred, target = random_scene(4, 10, 2)
    pred["mask_logits"][0, 0] = float("nan")
    target["mask_valid"][:] = True
    with pytest.raises(FloatingPointError, match="non-finite"):
        MATCHER(as_batch([pred]), [target])
    pred, target = random_scene(4, 10, 2)
    with pytest.raises(ValueError, match="masks"):
        MATCHER(as_batch([pred]), [{**target, "masks": target["masks"][:, :9]}])
