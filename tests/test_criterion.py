"""Criterion: empty scenes, losses that fall when predictions are right, one function for every layer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from beep3d.loss import COMPONENTS, Criterion, CriterionConfig, LossWeights, MatcherConfig, assert_finite
from beep3d.loss.criterion import mask_iou

N_CLASSES = 3


def criterion(no_object_weight: float = 0.1) -> Criterion:
    return Criterion.from_config(CriterionConfig(LossWeights(), MatcherConfig(), no_object_weight))


def layer(q: int, sizes: list[int], gen: torch.Generator) -> dict:
    """Random predictions of one layer for scenes with `sizes` superpoints, with gradients."""
    return {
        "class_logits": [torch.randn(q, N_CLASSES + 1, generator=gen).requires_grad_() for _ in sizes],
        "mask_logits": [(2 * torch.randn(q, s, generator=gen)).requires_grad_() for s in sizes],
        "centers": [torch.rand(q, 3, generator=gen).requires_grad_() for _ in sizes],
        "sizes": [torch.rand(q, 3, generator=gen).requires_grad_() for _ in sizes],
        "score_logits": [torch.randn(q, generator=gen).requires_grad_() for _ in sizes],
    }


def outputs(q: int, sizes: list[int], n_aux: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {**layer(q, sizes, gen), "aux": [layer(q, sizes, gen) for _ in range(n_aux)]}


def targets(sizes: list[int], counts: list[int], seed: int = 1) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            "labels": torch.randint(N_CLASSES, (t,), generator=gen),
            "masks": (torch.rand(t, s, generator=gen) > 0.5).float(),
            "mask_valid": torch.rand(s, generator=gen) > 0.2,
            "centers": torch.rand(t, 3, generator=gen),
            "sizes": torch.rand(t, 3, generator=gen),
        }
        for s, t in zip(sizes, counts, strict=True)
    ]


def test_empty_scene_gives_a_finite_class_only_loss():
    out = outputs(6, [20], n_aux=1)
    losses = criterion()(out, targets([20], [0]))
    assert all(torch.isfinite(v) for v in losses.values())
    for prefix in ("", "aux0/"):
        assert losses[prefix + "cls"] > 0
        for k in ("bce", "dice", "center", "score"):
            assert losses[prefix + k] == 0
    # Every query targets "no object": the weighted mean is the plain mean of those CEs.
    logits = out["class_logits"][0]
    expected = F.cross_entropy(logits, torch.full((6,), N_CLASSES))
    torch.testing.assert_close(losses["cls"], expected)
    losses["total"].backward()
    assert out["class_logits"][0].grad is not None


def test_an_empty_scene_beside_a_full_one():
    losses = criterion()(outputs(8, [15, 25], n_aux=2), targets([15, 25], [0, 4]))
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["bce"] > 0 and losses["aux1/dice"] > 0


def test_losses_fall_when_the_prediction_equals_the_target():
    sizes, counts = [30, 18], [3, 2]
    tgt = targets(sizes, counts)
    out = outputs(5, sizes, n_aux=0)
    before = criterion()(out, tgt)
    good = outputs(5, sizes, n_aux=0)
    for b, t in enumerate(tgt):  # queries 0..T-1 copy the targets exactly
        n = len(t["labels"])
        with torch.no_grad():
            good["mask_logits"][b][:n] = 20 * t["masks"] - 10
            good["centers"][b][:n] = t["centers"]
            good["sizes"][b][:n] = t["sizes"]
            good["class_logits"][b][:] = -10.0
            good["class_logits"][b][torch.arange(n), t["labels"]] = 10.0
            good["class_logits"][b][n:, N_CLASSES] = 10.0
            good["score_logits"][b][:n] = 10.0  # IoU is 1
    after = criterion()(good, tgt)
    for k in COMPONENTS:
        assert after[k] < before[k], k
    assert (
        after["bce"] < 1e-3
        and after["dice"] < 0.05
        and after["center"] < 1e-6
        and after["size"] < 1e-6
        and after["cls"] < 1e-3
    )
    assert after["total"] < 0.1 * before["total"]


def test_total_is_the_sum_over_layers_of_one_layer_function():
    crit = criterion()
    out, tgt = outputs(7, [12, 22], n_aux=3), targets([12, 22], [3, 5])
    losses = crit(out, tgt)
    per_layer = [
        crit.weighted_total(crit.layer_losses(lay, tgt, crit.matcher(lay, tgt))) for lay in [out, *out["aux"]]
    ]
    torch.testing.assert_close(losses["total"], sum(per_layer))
    assert len({round(float(v.detach()), 6) for v in per_layer}) == 4  # the layers really differ
    # Every aux layer reaches the gradient of the total.
    losses["total"].backward()
    for aux in out["aux"]:
        assert aux["mask_logits"][0].grad.abs().sum() > 0
    assert set(losses) == {"total"} | {p + k for p in ("", "aux0/", "aux1/", "aux2/") for k in COMPONENTS}


def test_precomputed_last_layer_indices_are_used():
    crit = criterion()
    out, tgt = outputs(6, [10], n_aux=1), targets([10], [2])
    own = crit(out, tgt)
    reversed_match = [(torch.tensor([0, 1]), torch.tensor([1, 0]))]
    forced = crit(out, tgt, indices=reversed_match)
    expected = crit.layer_losses(out, tgt, reversed_match)
    torch.testing.assert_close(forced["bce"], expected["bce"])
    torch.testing.assert_close(forced["aux0/bce"], own["aux0/bce"])


def test_no_object_weight_enters_the_class_loss():
    out, tgt = outputs(4, [10], n_aux=0), targets([10], [1])
    indices = [(torch.tensor([2]), torch.tensor([0]))]
    logits = out["class_logits"][0]
    labels = torch.full((4,), N_CLASSES)
    labels[2] = tgt[0]["labels"][0]
    ce = F.cross_entropy(logits, labels, reduction="none")
    w = torch.where(labels == N_CLASSES, 0.25, 1.0)
    got = criterion(0.25).layer_losses(out, tgt, indices)["cls"]
    torch.testing.assert_close(got, (w * ce).sum() / w.sum())


def test_invalid_superpoints_are_ignored_by_the_mask_terms():
    crit = criterion()
    out, tgt = outputs(4, [16], n_aux=0), targets([16], [2])
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    base = crit.layer_losses(out, tgt, indices)
    with torch.no_grad():
        out["mask_logits"][0][:, ~tgt[0]["mask_valid"]] = -50.0
    changed = crit.layer_losses(out, tgt, indices)
    for k in ("bce", "dice", "score"):
        torch.testing.assert_close(changed[k], base[k])


def test_mask_iou_and_score_target():
    logits = torch.tensor([[3.0, 3.0, -3.0, -3.0], [-1.0, -1.0, -1.0, -1.0]])
    gt = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(mask_iou(logits, gt), torch.tensor([1 / 3, 0.0]))


def test_non_finite_total_is_detected():
    out, tgt = outputs(4, [10], n_aux=1), targets([10], [0])
    with torch.no_grad():
        out["aux"][0]["class_logits"][0][0, 0] = math.inf
    losses = criterion()(out, tgt)
    assert not torch.isfinite(losses["total"])
    with pytest.raises(FloatingPointError, match=r"aux0/cls"):
        assert_finite(losses, step=7)
    assert_finite(criterion()(outputs(4, [10], n_aux=1), tgt), step=8)  # finite: no error
