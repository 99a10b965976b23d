"""BEEP3D's box-supervised parts: the teacher resolver, consistency losses, the student step,
pseudo-mask quality, and the no-leakage guarantee of the box-supervised training modes."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_dataset import default_scenes, write_processed

from beep3d.classes import SCANNET
from beep3d.data.boxes import extract_boxes
from beep3d.eval.pseudo_masks import instance_ious
from beep3d.loss.consistency import masked_feature_consistency_loss, query_consistency_loss
from beep3d.loss.targets import BACKGROUND, UNKNOWN, point_assignment_from_boxes, teacher_resolver
from beep3d.student_teacher import Beep3dConfig
from pipeline.checkpoint import load_checkpoint
from pipeline.config import build
from pipeline.training import LABELS_FILE, RunConfig, train

REPO = Path(__file__).resolve().parents[1]


def test_teacher_resolver_picks_the_best_containing_box_and_lets_background_compete() -> None:
    # Boxes: 0 object, 1 object, 2 wall (background). Points 0-3 are ambiguous.
    point_in_box = torch.tensor(
        [
            [1, 1, 0],  # in both objects: box 1 scores higher
            [1, 1, 1],  # in all three, objects both below 0.5 -> background
            [1, 0, 1],  # object 0 + wall, object prob 0.8 -> object 0
            [1, 1, 0],  # below 0.5 but no wall box holds it -> still the best object box
            [0, 1, 0],  # known: box 1
            [0, 0, 1],  # wall only: background
        ],
        dtype=torch.bool,
    )
    is_bg = torch.tensor([False, False, True])
    superpoint = torch.tensor([0, 1, 2, 3, 4, 5])
    prob = torch.tensor(
        [
            [0.3, 0.2, 0.8, 0.1, 0.0, 0.0],  # box 0's query per superpoint
            [0.7, 0.4, 0.9, 0.3, 0.9, 0.9],  # box 1 (its 0.9 on sp 2 must not count: not inside)
            [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # background row: ignored
        ]
    )
    assigned, _ = point_assignment_from_boxes(point_in_box, is_bg)
    assert assigned.tolist() == [UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN, 1, BACKGROUND]
    out = teacher_resolver(point_in_box, is_bg, assigned, prob, superpoint, 0.5)
    assert out.tolist() == [1, BACKGROUND, 0, 1, 1, BACKGROUND]


def test_the_box_prior_bounds_what_the_teacher_may_choose() -> None:
    """The teacher resolves only what the box prior leaves open: it cannot give a superpoint to an
    object box the superpoint sticks out of, nor (objects first) an object point to a floor box."""
    from test_targets import two_box_scene

    from beep3d.student_teacher import pseudo_assignment

    sup, _ = two_box_scene()  # boxes A (0), B (1), floor (2); superpoints 0..3
    cfg = build(Beep3dConfig, yaml.safe_load((REPO / "params.yaml").read_text())["train"]["beep3d"], "b")
    cfg = dataclasses.replace(cfg, superpoint_vote=False, prior_containment=1.0, prior_objects_first=True)
    # The teacher prefers A everywhere, and scores B low enough that the floor would win point 4.
    prob = torch.tensor([[0.9, 0.9, 0.9, 0.9], [0.2, 0.2, 0.2, 0.2]])  # (object boxes, superpoints)
    free = dataclasses.replace(cfg, prior_containment=0.0, prior_objects_first=False)
    assert pseudo_assignment(sup, prob, free).tolist() == [0, 0, 0, 1, BACKGROUND, BACKGROUND, 0]
    # Superpoint 1 sticks out of A: B; superpoint 3 lies in both: the teacher's A. Superpoint 2
    # sticks out of B: its point 4 is left with the floor box alone.
    assert pseudo_assignment(sup, prob, cfg).tolist() == [0, 0, 1, 1, BACKGROUND, BACKGROUND, 0]
    inside_b = dataclasses.replace(cfg, prior_containment=0.5)  # B holds half of superpoint 2
    assert pseudo_assignment(sup, prob, inside_b)[4] == 1  # objects first: B, not the floor
    off = dataclasses.replace(inside_b, prior_objects_first=False)
    assert pseudo_assignment(sup, prob, off)[4] == BACKGROUND  # B scores 0.2 < 0.5: the floor wins


def test_consistency_losses_vanish_on_agreement_and_train_only_the_student() -> None:
    torch.manual_seed(0)
    student = [torch.randn(5, 8, requires_grad=True)]
    teacher = [torch.randn(3, 8, requires_grad=True)]
    indices = [(torch.tensor([4, 0]), torch.tensor([1, 2]))]
    valid = [torch.tensor([True, True, False])]  # target 2 has no teacher query: skipped
    loss = query_consistency_loss(student, indices, teacher, valid)
    expected = 1 - torch.nn.functional.cosine_similarity(student[0][4], teacher[0][1], dim=0)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert teacher[0].grad is None and student[0].grad[4].abs().sum() > 0
    agree = query_consistency_loss(
        [teacher[0].detach() * 2], [(torch.arange(2), torch.arange(2))], teacher, valid
    )
    assert float(agree) == pytest.approx(0.0, abs=1e-6)

    feats = torch.randn(6, 4)
    masks = torch.tensor([[1.0, 1.0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])  # second mask empty: skipped
    valid_sp = torch.ones(6, dtype=torch.bool)
    same = masked_feature_consistency_loss([feats], [feats], [masks], [valid_sp])
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    moved = feats.clone()
    moved[:2] = -moved[:2]
    assert float(masked_feature_consistency_loss([feats], [moved], [masks], [valid_sp])) == pytest.approx(2.0)


def test_instance_ious_over_all_and_ambiguous_points() -> None:
    sup = {"box_is_background": torch.tensor([False, False, True]), "box_id": torch.tensor([1, 2, 9])}
    instance = torch.tensor([1, 1, 1, 2, 2, 0])
    assigned = torch.tensor([0, 0, 1, 1, 1, BACKGROUND])
    ambiguous = torch.tensor([False, True, True, True, False, False])
    all_ious, amb_ious = instance_ious(assigned, instance, sup, ambiguous)
    assert all_ious == pytest.approx([2 / 3, 2 / 3])
    assert amb_ious == pytest.approx([1 / 2, 1 / 2])


def tiny_run_config(
    mode: str,
    box_query_inside: bool = False,
    teacher_every: int = 1,
    student_color_mask: float = 0.0,
    student_color_mask_losses: str = "all",
    **train_overrides,
) -> RunConfig:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(
        widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=6, ffn_dim=32, rpe_hidden=4,
        box_query_inside=box_query_inside,
    )  # fmt: skip
    params["data_loader"].update(voxel_size=0.1)
    t = params["train"]
    t.update(mode=mode, threads=1, epochs=2, batch_size=2, eval_every=1, monitor_scenes=2)
    t.update(train_overrides)
    t["beep3d"]["pseudo_warmup_steps"] = 1  # the teacher's pseudo-masks and the losses run in epoch 1
    if teacher_every > 1:  # the teacher on some steps only, which its pseudo-masks may not be
        t["beep3d"].update(teacher_every=teacher_every, pseudo_masks=False)
    t["beep3d"].update(
        student_color_mask=student_color_mask, student_color_mask_losses=student_color_mask_losses
    )
    t["two_stage"]["labeler_epochs"] = 2
    params["inference"]["min_points"] = 10
    return build(RunConfig, {k: params[k] for k in ("model", "data_loader", "train", "inference")}, "params")


def permuted_copy(scenes: dict, seed: int) -> dict:
    """The same scenes, boxes and superpoints, with each scene's per-point label/instance shuffled."""
    rng = np.random.default_rng(seed)
    out = {}
    for scene_id, (split, s) in scenes.items():
        perm = rng.permutation(len(s["xyz"]))
        out[scene_id] = (split, {**s, "label": s["label"][perm], "instance": s["instance"][perm]})
    return out


@pytest.fixture(scope="module")
def real_and_permuted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    scenes = default_scenes()
    for scene_id, (split, s) in scenes.items():  # boxes fixed from the true labels, in both copies
        scenes[scene_id] = (
            split,
            {**s, "boxes": extract_boxes(s["xyz"], s["label"], s["instance"], SCANNET)},
        )
    root = tmp_path_factory.mktemp("leak")
    return write_processed(root / "real", scenes), write_processed(
        root / "permuted", permuted_copy(scenes, 3)
    )


def trained_weights(cfg: RunConfig, processed: Path, resume: Path) -> dict[str, torch.Tensor]:
    """Every trained weight (student, "teacher." the teacher's) and, as "loss.<step>.<term>" and
    "labels.<scene>", every step's losses and two_stage's fixed labels."""
    result = train(cfg, processed, resume, log=lambda _: None, progress=False)
    state = copy.deepcopy(result.model.state_dict())
    if result.teacher is not None:
        state.update({f"teacher.{k}": v for k, v in result.teacher.state_dict().items()})
    for row in (r for r in result.history if "total" in r):
        state.update({f"loss.{row['step']}.{k}": torch.tensor(v) for k, v in row.items()})
    if cfg.train.mode == "two_stage":
        labels = load_checkpoint(resume / LABELS_FILE)["labels"]
        state.update({f"labels.{scene_id}": ids for scene_id, ids in labels.items()})
    return state


@pytest.mark.parametrize(
    ("mode", "box_query_inside", "teacher_every", "student_color_mask", "masked_view_losses"),
    [
        ("beep3d", False, 1, 0.0, "all"),
        ("beep3d", True, 1, 0.0, "all"),
        ("beep3d", False, 2, 0.0, "all"),
        ("beep3d", False, 1, 0.5, "all"),
        ("beep3d", False, 1, 0.5, "consistency"),
        ("box_heuristic", False, 1, 0.0, "all"),
        ("two_stage", False, 1, 0.0, "all"),
    ],
)
def test_box_supervised_weights_ignore_the_ground_truth_masks(
    mode: str, box_query_inside: bool, teacher_every: int, student_color_mask: float,
    masked_view_losses: str, real_and_permuted: tuple[Path, Path], tmp_path: Path,
) -> None:  # fmt: skip
    """Permuting the per-point ground truth of the training scenes leaves every trained weight
    (student and teacher), every loss and two_stage's fixed labels bitwise identical, with
    evaluations (which do read ground truth, for val AP and pseudo-mask monitoring) running after
    every epoch. The box prior (params.yaml's defaults), box queries restricted to their box, the
    teacher on every other step and the student's masked view (feeding every loss, or the
    consistency losses only) are on the paths covered."""
    cfg = tiny_run_config(mode, box_query_inside, teacher_every, student_color_mask, masked_view_losses)
    assert cfg.train.beep3d.prior_containment > 0 and cfg.train.beep3d.prior_objects_first
    real, permuted = real_and_permuted
    a = trained_weights(cfg, real, tmp_path / "a")
    b = trained_weights(cfg, permuted, tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_full_mode_does_see_the_permutation(real_and_permuted: tuple[Path, Path], tmp_path: Path) -> None:
    """The control: the same comparison in `full` mode differs, so the check above can fail."""
    cfg = tiny_run_config("full", eval_every=0)
    real, permuted = real_and_permuted
    a = trained_weights(cfg, real, tmp_path / "a")
    b = trained_weights(cfg, permuted, tmp_path / "b")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_best_and_last_are_kept_apart_and_headline_best_takes_the_best(
    real_and_permuted: tuple[Path, Path], tmp_path: Path
) -> None:
    """The best evaluation's weights are a copy (training on must not change them), equal to what
    best.pt holds, and `headline: best` makes them the returned model."""
    from pipeline.checkpoint import load_checkpoint

    cfg = tiny_run_config("beep3d", epochs=3, headline="best")
    result = train(cfg, real_and_permuted[0], tmp_path, log=lambda _: None, progress=False)
    on_disk = load_checkpoint(tmp_path / "best.pt")
    for role in ("student", "teacher"):
        assert all(torch.equal(result.best[role][k], on_disk[role][k]) for k in on_disk[role])
    assert all(torch.equal(v, result.best["student"][k]) for k, v in result.model.state_dict().items())
    if result.best["epoch"] < 3:  # then the last epoch moved the weights on
        assert any(not torch.equal(v, result.last["student"][k]) for k, v in result.best["student"].items())


def test_matched_teacher_queries_without_centre_queries(
    real_and_permuted: tuple[Path, Path], tmp_path: Path
) -> None:
    """center_queries off: the teacher's learned queries are matched to the object boxes; every
    box gets a row, rows without a query are zero and marked invalid, and training runs on them."""
    from beep3d.data.dataset import SceneDataset, make_loader
    from beep3d.loss.criterion import Criterion
    from beep3d.student_teacher import object_boxes, teacher_view
    from pipeline.training import build_model

    cfg = tiny_run_config("beep3d")
    model = build_model(cfg.model, torch.device("cpu"))
    data = SceneDataset(real_and_permuted[0], "train", cfg.data_loader, with_ground_truth=False, train=False)
    batch = next(iter(make_loader(data, 2, shuffle=False, seed=0, num_workers=0)))
    view = teacher_view(model, batch, False, Criterion.from_config(cfg.train.loss))
    for b, sup in enumerate(batch["supervision"]):
        n_obj = len(object_boxes(sup))
        n_sp = int(batch["sp_offsets"][b + 1] - batch["sp_offsets"][b])
        assert view.box_prob[b].shape == (n_obj, n_sp) and view.valid[b].shape == (n_obj,)
        assert int(view.valid[b].sum()) == min(n_obj, cfg.model.n_queries)
        assert not view.box_prob[b][~view.valid[b]].any()
    off = dataclasses.replace(cfg.train.beep3d, center_queries=False)
    result = train(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, beep3d=off)),
        real_and_permuted[0], tmp_path, log=lambda _: None, progress=False,
    )  # fmt: skip
    assert (
        any("qc" in row for row in result.history)
        and "pseudo_teacher_iou_ambiguous" in result.summary["last"]
    )


def test_teacher_every_k_steps_runs_the_consistency_losses_on_those_steps_only(
    real_and_permuted: tuple[Path, Path], tmp_path: Path
) -> None:
    """With teacher_every 2 the teacher's pass, and with it the query and masked feature
    consistency losses, runs on the warm-up's last step and every second step after it; the
    other steps train the student on the box prior's labels alone."""
    cfg = tiny_run_config("beep3d", teacher_every=2, epochs=3, eval_every=0)
    result = train(cfg, real_and_permuted[0], tmp_path, log=lambda _: None, progress=False)
    rows = [r for r in result.history if "total" in r]
    assert len(rows) >= 4
    with_teacher = [r["step"] for r in rows if "qc" in r and "mfc" in r]
    without = [r["step"] for r in rows if "qc" not in r and "mfc" not in r]
    assert with_teacher == [s for s in range(1, len(rows), 2)], with_teacher
    assert sorted(with_teacher + without) == [r["step"] for r in rows]


def test_teacher_every_refuses_zero_and_the_teachers_pseudo_masks() -> None:
    base = tiny_run_config("beep3d").train.beep3d
    with pytest.raises(ValueError, match="teacher_every must be >= 1"):
        dataclasses.replace(base, teacher_every=0)
    with pytest.raises(ValueError, match="needs pseudo_masks: false"):
        dataclasses.replace(base, teacher_every=2, pseudo_masks=True)
    every_third = dataclasses.replace(base, teacher_every=3, pseudo_masks=False)
    warmup = base.pseudo_warmup_steps
    assert [s for s in range(warmup + 9) if every_third.teacher_needed(s)] == [warmup, warmup + 3, warmup + 6]


def test_masked_student_batch_zeroes_the_colours_of_whole_superpoints(
    real_and_permuted: tuple[Path, Path],
) -> None:
    """Only rgb changes, only in voxels holding points of masked superpoints, every such voxel;
    the same generator seed draws the same superpoints and the caller's batch is left as it was."""
    from beep3d.data.dataset import SceneDataset, make_loader
    from beep3d.student_teacher import masked_student_batch, student_view_generator

    cfg = tiny_run_config("beep3d")
    data = SceneDataset(real_and_permuted[0], "train", cfg.data_loader, with_ground_truth=False, train=True)
    batch = next(iter(make_loader(data, 2, shuffle=False, seed=0, num_workers=0)))
    original = batch["feats"].clone()
    cpu = torch.device("cpu")
    view = masked_student_batch(batch, 0.5, student_view_generator(0, 7, 0, cpu))
    again = masked_student_batch(batch, 0.5, student_view_generator(0, 7, 0, cpu))
    other_step = masked_student_batch(batch, 0.5, student_view_generator(0, 8, 0, cpu))
    assert torch.equal(batch["feats"], original)
    assert torch.equal(view["feats"], again["feats"]) and not torch.equal(view["feats"], other_step["feats"])
    assert torch.equal(view["feats"][:, 3:], original[:, 3:])  # positions stay
    assert view["supervision"] is batch["supervision"] and view["superpoint"] is batch["superpoint"]
    changed = (view["feats"][:, :3] != original[:, :3]).any(dim=1)
    assert bool((view["feats"][changed, :3] == 0).all())
    # Whole superpoints: every changed voxel holds a point of a superpoint whose points all lie in
    # zeroed voxels, and about half of the superpoints are such.
    point_zeroed = (view["feats"][:, :3] == 0).all(dim=1)[batch["point_voxel"]].float()
    n_sp = len(batch["sp_xyz"])
    share = torch.zeros(n_sp).index_add_(0, batch["superpoint"], point_zeroed) / torch.bincount(
        batch["superpoint"], minlength=n_sp
    ).clamp(min=1)
    whole = share == 1.0
    explained = torch.zeros(len(original), dtype=torch.bool)
    explained[batch["point_voxel"][whole[batch["superpoint"]]]] = True
    assert bool(explained[changed].all())
    assert 0.3 < float(whole.float().mean()) < 0.7


def test_the_students_masked_view_changes_training_and_not_the_teachers_input(
    real_and_permuted: tuple[Path, Path], tmp_path: Path
) -> None:
    """student_color_mask trains other weights than one shared view (so the permutation test's
    masked case runs a path of its own), and within a step the teacher still sees whole colours."""
    from beep3d.data.dataset import SceneDataset, make_loader
    from pipeline.training import TrainingRun

    plain = trained_weights(tiny_run_config("beep3d", eval_every=0), real_and_permuted[0], tmp_path / "a")
    masked = trained_weights(
        tiny_run_config("beep3d", student_color_mask=0.5, eval_every=0), real_and_permuted[0], tmp_path / "b"
    )
    assert any(not torch.equal(plain[k], masked[k]) for k in plain if not k.startswith("loss."))

    cfg = tiny_run_config("beep3d", student_color_mask=0.5, eval_every=0)
    run = TrainingRun(cfg, real_and_permuted[0], torch.device("cpu"))
    data = SceneDataset(real_and_permuted[0], "train", cfg.data_loader, with_ground_truth=False, train=True)
    batch = next(iter(make_loader(data, 2, shuffle=False, seed=0, num_workers=0)))
    seen: dict[str, torch.Tensor] = {}
    teacher_forward, student_forward = run.teacher.model.forward, run.model.encode

    def teacher_spy(b, *args, **kwargs):
        seen["teacher"] = b["feats"].clone()
        return teacher_forward(b, *args, **kwargs)

    def student_spy(b, *args, **kwargs):
        seen["student"] = b["feats"].clone()
        return student_forward(b, *args, **kwargs)

    run.teacher.model.forward, run.model.encode = teacher_spy, student_spy
    run.step(batch, cfg.train.beep3d.pseudo_warmup_steps, 1e-3)
    assert torch.equal(seen["teacher"], batch["feats"])
    assert not torch.equal(seen["student"], batch["feats"])


def test_the_masked_view_for_consistency_only_leaves_the_supervised_losses_to_the_whole_batch(
    real_and_permuted: tuple[Path, Path],
) -> None:
    """student_color_mask_losses "consistency": the teacher and the student's first pass see whole
    colours, a second student pass sees the masked copy; the supervised terms of the step are
    bitwise those of one view, the consistency terms are not."""
    from beep3d.data.dataset import SceneDataset, make_loader
    from pipeline.training import TrainingRun

    def one_step(cfg: RunConfig, spy: bool) -> tuple[dict[str, float], list[torch.Tensor]]:
        torch.manual_seed(cfg.train.seed)
        run = TrainingRun(cfg, real_and_permuted[0], torch.device("cpu"))
        data = SceneDataset(
            real_and_permuted[0], "train", cfg.data_loader, with_ground_truth=False, train=True
        )
        batch = next(iter(make_loader(data, 2, shuffle=False, seed=0, num_workers=0)))
        seen: list[torch.Tensor] = [batch["feats"].clone()]
        if spy:
            encode = run.model.encode

            def student_spy(b, *args, **kwargs):
                seen.append(b["feats"].clone())
                return encode(b, *args, **kwargs)

            run.model.encode = student_spy
        return run.step(batch, cfg.train.beep3d.pseudo_warmup_steps, 1e-3), seen

    plain, _ = one_step(tiny_run_config("beep3d", eval_every=0), spy=False)
    masked, seen = one_step(
        tiny_run_config(
            "beep3d", student_color_mask=0.5, student_color_mask_losses="consistency", eval_every=0
        ),
        spy=True,
    )
    whole, first_pass, second_pass = seen
    assert torch.equal(first_pass, whole) and not torch.equal(second_pass, whole)
    assert torch.equal(second_pass[:, 3:], whole[:, 3:])
    supervised = [k for k in plain if k not in ("qc", "mfc", "total") and isinstance(plain[k], float)]
    assert "dice" in supervised and "boxq/total" in supervised
    assert {k: masked[k] for k in supervised} == {k: plain[k] for k in supervised}
    assert masked["qc"] != plain["qc"] and masked["mfc"] != plain["mfc"]


def test_student_color_mask_losses_refuses_an_unknown_value() -> None:
    with pytest.raises(
        ValueError, match=r"student_color_mask_losses' must be one of \['all', 'consistency'\]"
    ):
        tiny_run_config("beep3d", student_color_mask=0.5, student_color_mask_losses="supervised")
