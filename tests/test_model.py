"""The model on tiny random scenes on CPU: shapes, gradients, determinism, padding, external queries."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from beep3d.backend import conv_algo, import_spconv, resolve_device, spconv_requirement
from beep3d.loss import Criterion, CriterionConfig, LossWeights, MatcherConfig
from beep3d.model import (
    BoxInstanceModel,
    ModelConfig,
    SceneQueries,
    knn_pool,
    mask_nms,
    pool_superpoints,
    predict_instances,
)
from beep3d.model.decoder import OUTSIDE_REGION_LOGIT, attention_blocks, fourier_embed
from pipeline.config import build

TINY = ModelConfig(
    widths=(8, 16, 24),
    blocks_per_level=1,
    d_model=32,
    n_heads=4,
    n_layers=2,
    n_queries=10,
    ffn_dim=64,
    num_classes=5,
    rpe_hidden=8,
    query_pool_k=4,
)


def make_batch(seed: int = 0, n_scenes: int = 2, n_vox: int = 250, grid: int = 20) -> dict:
    """Random voxels in a grid^3 box per scene, 1-3 points per voxel, superpoints = 4^3-voxel cells."""
    rng = np.random.default_rng(seed)
    coords, feats, point_voxel, superpoint, sp_xyz, lo, hi = [], [], [], [], [], [], []
    point_offsets, sp_offsets = [0], [0]
    voxel_size = 0.05
    for b in range(n_scenes):
        side = grid - 5 * b  # scenes differ in extent and in superpoint count
        flat = rng.choice(side**3, size=n_vox - 40 * b, replace=False)
        cells = np.stack(np.unravel_index(flat, (side,) * 3), 1)
        pv = np.repeat(np.arange(len(cells)), rng.integers(1, 4, len(cells)))
        xyz = (cells[pv] + rng.random((len(pv), 3))) * voxel_size
        _, sp = np.unique(cells[pv] // 4, axis=0, return_inverse=True)
        sp = sp.reshape(-1)
        point_feats = np.concatenate([rng.uniform(-1, 1, (len(pv), 3)), xyz], 1)
        vf = np.zeros((len(cells), 6))
        np.add.at(vf, pv, point_feats)
        vf /= np.bincount(pv)[:, None]
        centroid = np.zeros((sp.max() + 1, 3))
        np.add.at(centroid, sp, xyz)
        centroid /= np.bincount(sp)[:, None]
        coords.append(np.concatenate([np.full((len(cells), 1), b), cells], 1))
        feats.append(vf)
        point_voxel.append(pv + sum(len(c) for c in coords[:-1]))
        superpoint.append(sp + sp_offsets[-1])
        point_offsets.append(point_offsets[-1] + len(pv))
        sp_offsets.append(sp_offsets[-1] + len(centroid))
        sp_xyz.append(centroid)
        lo.append(xyz.min(0))
        hi.append(xyz.max(0))
    f32 = torch.float32
    return {
        "coords": torch.tensor(np.concatenate(coords), dtype=torch.int32),
        "feats": torch.tensor(np.concatenate(feats), dtype=f32),
        "spatial_shape": [grid] * 3,
        "batch_size": n_scenes,
        "point_voxel": torch.tensor(np.concatenate(point_voxel)),
        "point_offsets": torch.tensor(point_offsets),
        "superpoint": torch.tensor(np.concatenate(superpoint)),
        "sp_offsets": torch.tensor(sp_offsets),
        "sp_xyz": torch.tensor(np.concatenate(sp_xyz), dtype=f32),
        "scene_min": torch.tensor(np.array(lo), dtype=f32),
        "scene_max": torch.tensor(np.array(hi), dtype=f32),
    }


def scene_of(batch: dict, b: int) -> dict:
    """Scene b of a batch as a batch of one (ids re-based to 0)."""
    p0, p1 = batch["point_offsets"][b : b + 2].tolist()
    s0, s1 = batch["sp_offsets"][b : b + 2].tolist()
    rows = torch.nonzero(batch["coords"][:, 0] == b).squeeze(1)
    coords = batch["coords"][rows].clone()
    coords[:, 0] = 0
    return {
        "coords": coords,
        "feats": batch["feats"][rows],
        "spatial_shape": batch["spatial_shape"],
        "batch_size": 1,
        "point_voxel": batch["point_voxel"][p0:p1] - rows[0],
        "point_offsets": torch.tensor([0, p1 - p0]),
        "superpoint": batch["superpoint"][p0:p1] - s0,
        "sp_offsets": torch.tensor([0, s1 - s0]),
        "sp_xyz": batch["sp_xyz"][s0:s1],
        "scene_min": batch["scene_min"][b : b + 1],
        "scene_max": batch["scene_max"][b : b + 1],
    }


def new_model(cfg: ModelConfig = TINY, seed: int = 0) -> BoxInstanceModel:
    torch.manual_seed(seed)
    return BoxInstanceModel(cfg, conv_algo("cpu"))


def random_targets(batch: dict, n_targets: tuple[int, ...], num_classes: int, seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for b, t in enumerate(n_targets):
        s = int(batch["sp_offsets"][b + 1] - batch["sp_offsets"][b])
        targets.append(
            {
                "labels": torch.randint(num_classes, (t,), generator=gen),
                "masks": (torch.rand(t, s, generator=gen) > 0.7).float(),
                "mask_valid": torch.rand(s, generator=gen) > 0.1,
                "centers": batch["scene_min"][b] + torch.rand(t, 3, generator=gen),
                "sizes": torch.rand(t, 3, generator=gen),
            }
        )
    return targets


def test_forward_shapes_and_gradients_reach_the_first_conv_and_the_queries():
    batch = make_batch()
    model = new_model()
    out = model(batch)
    n_sp = batch["sp_offsets"].diff().tolist()
    q, c, d = TINY.n_queries, TINY.num_classes, TINY.d_model
    for layer in [out, *out["aux"]]:
        assert [tuple(x.shape) for x in layer["class_logits"]] == [(q, c + 1)] * 2
        assert [tuple(x.shape) for x in layer["mask_logits"]] == [(q, s) for s in n_sp]
        assert [tuple(x.shape) for x in layer["centers"]] == [(q, 3)] * 2
        assert [tuple(x.shape) for x in layer["sizes"]] == [(q, 3)] * 2
        assert [tuple(x.shape) for x in layer["score_logits"]] == [(q,)] * 2
        assert [tuple(x.shape) for x in layer["query_content"]] == [(q, d)] * 2
    assert len(out["aux"]) == TINY.n_layers - 1
    assert out["sp_feats"].shape == (sum(n_sp), d)
    assert out["voxel_feats"].shape == (len(batch["coords"]), TINY.widths[0])
    for b in range(2):  # centres are refined reference points: inside the scene box, in metres
        assert bool((out["centers"][b] >= batch["scene_min"][b]).all())
        assert bool((out["centers"][b] <= batch["scene_max"][b]).all())

    criterion = Criterion.from_config(CriterionConfig(LossWeights(), MatcherConfig()))
    losses = criterion(out, random_targets(batch, (3, 0), TINY.num_classes))
    assert torch.isfinite(losses["total"])
    losses["total"].backward()
    stem = model.backbone.stem[0].weight.grad
    assert stem is not None and stem.abs().sum() > 0
    for p in (model.decoder.query_content, model.decoder.query_ref_logit):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_same_seed_gives_identical_outputs():
    batch = make_batch(seed=3)
    a, b = new_model(seed=7)(batch), new_model(seed=7)(batch)
    for key in ("class_logits", "mask_logits", "centers", "sizes", "score_logits"):
        for x, y in zip(a[key], b[key], strict=True):
            assert torch.equal(x, y)
    c = new_model(seed=8)(batch)
    assert not torch.equal(a["mask_logits"][0], c["mask_logits"][0])


@pytest.mark.parametrize("options", [{}, {"masked_attention": True}], ids=["plain", "masked"])
def test_scenes_do_not_see_each_other_through_padding(options):
    """In eval mode (BN running stats) a scene's predictions are the same alone or in a batch."""
    batch = make_batch(seed=1)
    model = new_model(dataclasses.replace(TINY, **options)).eval()
    with torch.no_grad():
        together = model(batch)
        for b in range(2):
            alone = model(scene_of(batch, b))
            for key in ("class_logits", "mask_logits", "centers", "sizes", "score_logits"):
                torch.testing.assert_close(together[key][b], alone[key][0], rtol=1e-4, atol=1e-4)


def test_border_voxels_survive_downsampling():
    """An odd grid (21) must give the same result as a roomy one: no voxel is lost at the border."""
    batch = make_batch(seed=5, grid=21)
    assert int(batch["coords"][:, 1:].max()) == 20
    model = new_model().eval()
    with torch.no_grad():
        tight = model(batch)
        roomy = model({**batch, "spatial_shape": [40, 40, 40]})
    torch.testing.assert_close(tight["voxel_feats"], roomy["voxel_feats"], rtol=1e-5, atol=1e-5)


def test_external_queries_replace_or_follow_the_learned_ones():
    batch = make_batch(seed=2)
    model = new_model().eval()
    pos = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.8, 0.4], [0.9, 0.1, 0.1]])
    content = torch.randn(2, TINY.d_model)
    queries = [SceneQueries(pos), SceneQueries(pos[:2], content)]
    with torch.no_grad():
        out = model(batch, queries)
        assert [len(x) for x in out["class_logits"]] == [3, 2]
        assert [len(x) for x in out["query_content"]] == [3, 2]
        # A scene without queries (no boxes) pads to nothing and does not disturb the other scene.
        lonely = model(batch, [SceneQueries(pos), SceneQueries(torch.zeros(0, 3))])
        assert [tuple(x.shape) for x in lonely["mask_logits"]][1] == (0, int(batch["sp_offsets"].diff()[1]))
        torch.testing.assert_close(lonely["mask_logits"][0], out["mask_logits"][0], rtol=1e-5, atol=1e-5)
        both = model(batch, queries, include_learned=True)
        assert [len(x) for x in both["class_logits"]] == [TINY.n_queries + 3, TINY.n_queries + 2]
    # Gradients flow from external-query predictions into the backbone (content pooled from it),
    # and the all-padding query rows of a scene without queries leave every gradient finite.
    model.train()
    out = model(batch, [SceneQueries(pos), SceneQueries(torch.zeros(0, 3))])
    sum(x.sum() for x in out["mask_logits"]).backward()
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
    for name, p in model.named_parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all()), name
    with pytest.raises(ValueError, match="content must be"):
        model(batch, [SceneQueries(pos, torch.zeros(3, 7)), SceneQueries(pos)])
    with pytest.raises(ValueError, match="the batch has 2"):
        model(batch, [SceneQueries(pos)])


def test_attention_blocks_keep_queries_with_empty_masks_looking_everywhere():
    logits = torch.tensor([[[1.0, -1.0, 2.0, 5.0], [-1.0, -2.0, -3.0, 4.0]]])  # (B=1, Q=2, S=4)
    pad = torch.tensor([[False, False, False, True]])  # the 4th superpoint is padding
    blocked = attention_blocks(logits, pad)
    assert blocked[0, 0].tolist() == [False, True, False, True]
    # empty over the real superpoints: unblocked everywhere (the key padding mask hides padding)
    assert blocked[0, 1].tolist() == [False, False, False, False]
    assert attention_blocks(logits, None)[0, 1].tolist() == [True, True, True, False]


def test_masked_attention_hides_superpoints_outside_the_previous_mask():
    """Same weights: masking changes the output, and the superpoints outside a query's mask could
    change arbitrarily without that query noticing: queries mix only in self-attention, which
    comes before cross-attention, so the query's layer output is unchanged. (Train-mode batch norm:
    an untrained model in eval mode gives every superpoint nearly the same features, hence masks
    that are all in or all out and nothing to hide.)"""
    batch = make_batch(seed=6, n_scenes=1)
    plain = new_model(seed=2).train()
    masked = new_model(dataclasses.replace(TINY, masked_attention=True), seed=2).train()
    with torch.no_grad():
        a, m = plain(batch), masked(batch)
        assert not torch.allclose(a["class_logits"][0], m["class_logits"][0])
        enc = masked.encode(batch)
        content, ref = masked.decoder.learned_queries()
        memory, mask_feats = enc.memory[None], enc.mask_feats[None]
        sp_pos = ((enc.sp_xyz - enc.lo[0]) / enc.extent[0])[None]
        first = masked.decoder._mask_logits(masked.decoder.head_norm(content[None]), mask_feats)  # (1, Q, S)
        blocked = attention_blocks(first, None)  # (1, Q, S)
        q = int(blocked[0].sum(dim=1).argmax())  # the query that sees the fewest superpoints
        unseen = blocked[0, q]  # (S,)
        assert unseen.any() and not unseen.all()
        layer = masked.decoder.layers[0]
        x_pos = masked.decoder.pos_embed(fourier_embed(ref[None], masked.decoder.pos_freqs))
        out = layer(content[None], x_pos, ref[None], None, memory, sp_pos, None, blocked)
        noisy = memory.clone()
        noisy[0, unseen] += 100.0
        out_noisy = layer(content[None], x_pos, ref[None], None, noisy, sp_pos, None, blocked)
        torch.testing.assert_close(out[0, q], out_noisy[0, q])
        assert not torch.allclose(out, out_noisy)  # the other queries do see them


def test_box_queries_inside_see_and_segment_only_their_box():
    """box_query_inside: a lone box query's output is blind to every superpoint outside its box
    (memory and mask features there may change arbitrarily), its mask is "surely not" there, its
    content is the mean memory inside; learned queries next to it still look everywhere."""
    batch = make_batch(seed=3, n_scenes=1)
    model = new_model(dataclasses.replace(TINY, box_query_inside=True, masked_attention=True), seed=1).train()
    with torch.no_grad():
        enc = model.encode(batch)
        sp_pos = (enc.sp_xyz - enc.lo[0]) / enc.extent[0]  # (S, 3) in [0, 1]
        centre, half = torch.full((1, 3), 0.4), torch.full((1, 3), 0.25)
        inside = ((sp_pos - centre).abs() <= half).all(dim=1)  # (S,)
        assert inside.any() and not inside.all()
        box = [SceneQueries(centre, half_size=half)]
        out = model.decode(enc, box)
        assert bool((out["mask_logits"][0][0, ~inside] == OUTSIDE_REGION_LOGIT).all())
        assert bool((out["mask_logits"][0][0, inside] != OUTSIDE_REGION_LOGIT).all())
        noisy = enc._replace(memory=enc.memory.clone(), mask_feats=enc.mask_feats.clone())
        noisy.memory[~inside] += 100.0
        noisy.mask_feats[~inside] -= 50.0
        out_noisy = model.decode(noisy, box)
        for key in ("class_logits", "mask_logits", "query_content", "centers"):
            torch.testing.assert_close(out[key][0], out_noisy[key][0])
        content, _ = model._queries(box, False, enc.memory, enc.sp_xyz, enc.scenes, enc.lo, enc.extent,
                                    model._regions(box, False, [sp_pos]))  # fmt: skip
        torch.testing.assert_close(content[0][0], enc.memory[inside].mean(dim=0))
        # Without a half size (a point query) or with the option off, the box changes nothing.
        plain = new_model(dataclasses.replace(TINY, masked_attention=True), seed=1).train()
        torch.testing.assert_close(
            plain.decode(enc, box)["mask_logits"][0],
            plain.decode(enc, [SceneQueries(centre)])["mask_logits"][0],
        )
        both = model.decode(enc, box, include_learned=True)
        assert not bool((both["mask_logits"][0][: TINY.n_queries] == OUTSIDE_REGION_LOGIT).any())


def test_knn_pool_averages_the_nearest_superpoints():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 10.0], [0.0, 20.0]])
    pos = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5.0, 0, 0], [5.2, 0, 0]])
    pooled = knn_pool(feats, pos, torch.tensor([[0.05, 0, 0], [5.0, 0, 0]]), k=2)
    torch.testing.assert_close(pooled, torch.tensor([[2.0, 0.0], [0.0, 15.0]]))
    torch.testing.assert_close(knn_pool(feats, pos, torch.zeros(1, 3), k=99), feats.mean(0, keepdim=True))


def test_pool_superpoints_is_the_mean_over_points():
    voxel_feats = torch.tensor([[1.0], [2.0], [4.0]])
    point_voxel = torch.tensor([0, 0, 1, 2, 2])
    superpoint = torch.tensor([0, 0, 0, 1, 2])
    pooled = pool_superpoints(voxel_feats, point_voxel, superpoint, 4)
    torch.testing.assert_close(pooled, torch.tensor([[4 / 3], [4.0], [4.0], [0.0]]))


def test_predict_instances_scores_and_filters():
    # One scene, 2 queries, 2 classes (+ no object), 4 superpoints.
    outputs = {
        "class_logits": [torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 8.0]])],
        "mask_logits": [torch.tensor([[5.0, 5.0, -5.0, -5.0], [-5.0, -5.0, -5.0, -5.0]])],
        "score_logits": [torch.tensor([2.0, 2.0])],
    }
    inst = predict_instances(outputs, topk=4, score_threshold=0.05)[0]
    p_cls = torch.tensor([4.0, 0.0, 0.0]).softmax(0)[0]
    expected = p_cls * torch.sigmoid(torch.tensor(2.0)) * torch.sigmoid(torch.tensor(5.0))
    assert inst.masks.tolist() == [[True, True, False, False]]  # query 1 has an empty mask: dropped
    assert inst.classes.tolist() == [0]
    torch.testing.assert_close(inst.scores, expected[None])
    sizes = [torch.tensor([30, 40, 500, 500])]
    assert len(predict_instances(outputs, 4, 0.05, sp_sizes=sizes, min_points=100)[0].scores) == 0
    assert len(predict_instances(outputs, 4, 0.05, sp_sizes=sizes, min_points=70)[0].scores) == 1

    batch = make_batch()
    model = new_model().eval()
    with torch.no_grad():
        result = predict_instances(model(batch), topk=20, score_threshold=0.0)
    for b, inst in enumerate(result):
        assert inst.masks.dtype == torch.bool and inst.masks.shape[1] == int(batch["sp_offsets"].diff()[b])
        assert bool((inst.scores[:-1] >= inst.scores[1:]).all()) and bool((inst.scores <= 1).all())
        assert bool((inst.classes < TINY.num_classes).all())


def test_mask_nms_drops_same_class_duplicates_by_point_iou():
    # Rows sorted by score. Points per superpoint make the point IoU differ from the superpoint IoU.
    masks = torch.tensor(
        [
            [1, 1, 0, 0],  # kept: best
            [1, 1, 1, 0],  # same class, IoU 20 / 120 by points (2/3 by superpoints): kept
            [1, 0, 0, 0],  # same class, IoU 10 / 20 = 0.5 with row 0: not > 0.5, kept
            [1, 1, 0, 0],  # other class, identical mask: kept
            [0, 1, 0, 0],  # same class, IoU 10 / 20 = 0.5 with row 0 (0 with row 2): kept
            [1, 1, 0, 1],  # same class, IoU 20 / 21 with row 0: dropped
        ],
        dtype=torch.bool,
    )
    classes = torch.tensor([3, 3, 3, 1, 3, 3])
    points = torch.tensor([10, 10, 100, 1])
    assert mask_nms(masks, classes, points, 0.5).tolist() == [True, True, True, True, True, False]
    assert mask_nms(masks, classes, points, 0.4).tolist() == [True, True, False, True, False, False]
    # Unit weights: IoU by superpoints; row 1 overlaps row 0 by 2/3 and goes at 0.6.
    assert mask_nms(masks, classes, torch.ones(4), 0.6).tolist() == [True, False, True, True, True, False]


def test_mask_nms_a_dropped_row_suppresses_nothing():
    # Row 1 duplicates row 0 and is dropped; row 2 overlaps only row 1, so it must survive.
    masks = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)
    keep = mask_nms(masks, torch.zeros(3, dtype=torch.long), torch.ones(5), 0.4)
    assert keep.tolist() == [True, False, True]


def test_predict_instances_nms_only_removes_lower_scored_duplicates():
    # 3 queries, 1 class: queries 0 and 1 cover the same superpoints, query 0 with more confidence.
    outputs = {
        "class_logits": [torch.tensor([[5.0, 0.0], [3.0, 0.0], [4.0, 0.0]])],
        "mask_logits": [
            torch.tensor([[5.0, 5.0, -5.0, -5.0], [4.0, 4.0, -5.0, -5.0], [-5.0, -5.0, 5.0, 5.0]])
        ],
        "score_logits": [torch.tensor([2.0, 2.0, 2.0])],
    }
    plain = predict_instances(outputs, topk=3, score_threshold=0.0)[0]
    nms = predict_instances(outputs, topk=3, score_threshold=0.0, nms_iou=0.5)[0]
    assert plain.masks.tolist() == [
        [True, True, False, False],
        [False, False, True, True],
        [True, True, False, False],
    ]
    assert nms.masks.tolist() == plain.masks[:2].tolist()
    torch.testing.assert_close(nms.scores, plain.scores[:2])


def test_predict_instances_mask_threshold_decides_membership():
    # One query, one class; mask probabilities 0.9, 0.6, 0.4, 0.1 over 4 superpoints.
    probs = torch.tensor([0.9, 0.6, 0.4, 0.1])
    outputs = {
        "class_logits": [torch.tensor([[5.0, 0.0]])],
        "mask_logits": [torch.logit(probs)[None]],
        "score_logits": [torch.tensor([2.0])],
    }
    default = predict_instances(outputs, topk=1, score_threshold=0.0)[0]
    loose = predict_instances(outputs, topk=1, score_threshold=0.0, mask_threshold=0.3)[0]
    assert default.masks.tolist() == [[True, True, False, False]]
    assert loose.masks.tolist() == [[True, True, True, False]]
    # The score's mask term is the mean probability inside the mask, so it follows the threshold.
    base = torch.tensor([5.0, 0.0]).softmax(0)[0] * torch.sigmoid(torch.tensor(2.0))
    torch.testing.assert_close(default.scores, (base * 0.75)[None])
    torch.testing.assert_close(loose.scores, (base * (0.9 + 0.6 + 0.4) / 3)[None])


def test_a_few_steps_fit_a_fixed_batch():
    batch = make_batch(seed=4)
    model = new_model()
    targets = random_targets(batch, (4, 2), TINY.num_classes, seed=1)
    criterion = Criterion.from_config(CriterionConfig(LossWeights(), MatcherConfig()))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    totals = []
    for _ in range(8):
        loss = criterion(model(batch), targets)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        totals.append(float(loss.detach()))
    assert totals[-1] < 0.7 * totals[0], totals


def test_bad_batches_fail_loudly():
    batch = make_batch()
    model = new_model()
    with pytest.raises(ValueError, match="float32"):
        model({**batch, "feats": batch["feats"].double()})
    crossed = batch["superpoint"].clone()
    crossed[0] = batch["sp_offsets"][1]  # a point of scene 0 given a superpoint of scene 1
    with pytest.raises(ValueError, match="own scene range"):
        model({**batch, "superpoint": crossed})
    with pytest.raises(ValueError, match="spatial_shape"):
        model({**batch, "spatial_shape": [10, 10, 10]})
    with pytest.raises(KeyError, match="sp_xyz"):
        model({k: v for k, v in batch.items() if k != "sp_xyz"})


def test_config_checks_and_params_round_trip():
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=30, n_heads=4)
    maft = ModelConfig.maft()
    assert (maft.widths, maft.n_queries, maft.n_layers, maft.d_model, maft.n_heads) == (
        (32, 64, 96, 128, 160),
        400,
        6,
        256,
        8,
    )
    params = {f: getattr(TINY, f) for f in TINY.__dataclass_fields__}
    params["widths"] = list(TINY.widths)  # YAML gives lists
    assert build(ModelConfig, params, "model") == TINY
    model = BoxInstanceModel(maft, conv_algo("cpu"))
    assert sum(p.numel() for p in model.parameters()) > 10_000_000


def test_backend_choices():
    spconv = import_spconv()
    assert conv_algo("cpu") == spconv.ConvAlgo.Native
    assert conv_algo("cuda") == spconv.ConvAlgo.MaskImplicitGemm
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            resolve_device("cuda")
    assert spconv_requirement((3, 11), None) == "spconv-cu120==2.3.6"
    assert spconv_requirement((3, 12), None) == "spconv-cu126==2.3.8"
    assert spconv_requirement((3, 11), "12.0") == "spconv-cu120==2.3.6"
    assert spconv_requirement((3, 12), "12.0") == "spconv-cu121==2.3.8"
    assert spconv_requirement((3, 11), "12.2") == "spconv-cu121==2.3.8"
    assert spconv_requirement((3, 12), "12.8") == "spconv-cu126==2.3.8"
    assert spconv_requirement((3, 10), "11.8") == "spconv-cu118==2.3.8"
    with pytest.raises(ValueError, match="older"):
        spconv_requirement((3, 10), "11.3")


def test_missing_spconv_says_what_to_install(monkeypatch):
    # A real failed import: hide spconv from the import system for this test only.
    for name in [m for m in sys.modules if m == "spconv" or m.startswith("spconv.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "spconv", None)
    with pytest.raises(ImportError, match=r"pip install 'spconv-cu\d+==2\.3\.\d'"):
        import_spconv()


def test_no_fx_tracing_notice_but_other_fx_messages_get_through():
    # A fresh process: torch prints the notice once per process, on the first SparseConvTensor.
    code = (
        "import logging, torch\n"
        "from beep3d.backend import import_spconv\n"
        "sp = import_spconv()\n"
        "sp.SparseConvTensor(torch.zeros(1, 1), torch.zeros(1, 4, dtype=torch.int32), [4, 4, 4], 1)\n"
        "logging.getLogger('torch.fx._symbolic_trace').warning('another fx message')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "is_fx_tracing" not in proc.stderr
    assert "another fx message" in proc.stderr
