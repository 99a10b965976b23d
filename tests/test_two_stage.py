"""two_stage, the baseline BEEP3D argues against: labels kept by box id, the labeler's labels, the
student trained on them end to end, and a resume between the two stages. That ground truth never
reaches its loss is checked with the other box-supervised modes in tests/test_student_teacher.py."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_dataset import default_scenes, full_aug, write_processed
from test_student_teacher import tiny_run_config

from beep3d.classes import SCANNET
from beep3d.data.boxes import extract_boxes
from beep3d.data.dataset import FIXED_LABELS, SceneDataset, make_loader
from beep3d.engine import LABELER_MODE
from beep3d.errors import DataError
from beep3d.loss.criterion import Criterion
from beep3d.loss.targets import BACKGROUND, UNKNOWN, assignment_of_box_ids, box_ids_of_assignment
from beep3d.two_stage import label_scenes
from pipeline import training
from pipeline.checkpoint import load_checkpoint
from pipeline.training import LABELS_FILE, RunConfig, build_model, fingerprint, labeler_config, train


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_processed(tmp_path_factory.mktemp("two_stage") / "processed", default_scenes())


def test_box_ids_survive_a_crop_that_drops_boxes() -> None:
    box_id = torch.tensor([7, 3, 12])
    assigned = torch.tensor([0, 2, BACKGROUND, UNKNOWN, 1])
    ids = box_ids_of_assignment(assigned, box_id)
    assert ids.tolist() == [7, 12, BACKGROUND, UNKNOWN, 3]
    assert torch.equal(assignment_of_box_ids(ids, box_id), assigned)
    # A crop kept boxes 12 and 7 and dropped 3: the point labelled 3 cannot be that box's here.
    assert assignment_of_box_ids(ids, torch.tensor([12, 7])).tolist() == [1, 0, BACKGROUND, UNKNOWN, UNKNOWN]
    none = assignment_of_box_ids(ids, torch.zeros(0, dtype=torch.int64))
    assert none.tolist() == [UNKNOWN, UNKNOWN, BACKGROUND, UNKNOWN, UNKNOWN]
    with pytest.raises(ValueError, match="box ids must be >= 0"):
        box_ids_of_assignment(assigned, torch.tensor([7, -1, 12]))


def instance_labels() -> tuple[dict[str, tuple[str, dict]], dict[str, np.ndarray]]:
    """The default scenes and, per scene, each point's instance id where that instance has a box
    (else -1): labels whose crop alignment the ground truth can check."""
    scenes = default_scenes()
    labels = {}
    for scene_id, (_, s) in scenes.items():
        ids = extract_boxes(s["xyz"], s["label"], s["instance"], SCANNET).box_id
        labels[scene_id] = np.where(np.isin(s["instance"], ids), s["instance"], -1).astype(np.int32)
    return scenes, labels


def test_the_dataset_crops_fixed_labels_with_the_points(tmp_path: Path) -> None:
    scenes, labels = instance_labels()
    root = write_processed(tmp_path / "p", scenes)
    cropped = SceneDataset(
        root, "train", full_aug(max_points=400), with_ground_truth=True, train=True, fixed_labels=labels
    )
    for i in range(len(cropped)):
        s = cropped[i]
        instance = s.ground_truth["instance"]
        expect = np.where(np.isin(instance, labels[s.scene_id]), instance, -1)
        assert len(expect) == 400 and np.array_equal(s.supervision[FIXED_LABELS], expect)
    whole = SceneDataset(
        root, "train", full_aug(), with_ground_truth=False, train=False, fixed_labels=labels
    )  # eval mode: every original point, in file order
    for i in range(len(whole)):
        assert np.array_equal(whole[i].supervision[FIXED_LABELS], labels[whole.scene_ids[i]])
    assert FIXED_LABELS not in SceneDataset(root, "train", full_aug(), False, False)[0].supervision


def test_fixed_labels_of_other_data_are_refused(tmp_path: Path) -> None:
    scenes, labels = instance_labels()
    root = write_processed(tmp_path / "p", scenes)
    with pytest.raises(DataError, match="fixed labels lack 2 scene"):
        SceneDataset(root, "train", full_aug(), False, False, fixed_labels={"scene_a": labels["scene_a"]})
    for scene_id, bad in (("scene_a", labels["scene_a"][:-1]), ("scene_a", labels["scene_a"] * 0 + 999)):
        ds = SceneDataset(root, "train", full_aug(), False, False, fixed_labels={**labels, scene_id: bad})
        with pytest.raises(DataError, match="fixed labels"):
            ds[ds.scene_ids.index(scene_id)]


def assert_labels_name_boxes_that_hold_the_point(
    labels: dict[str, Any], processed: Path, cfg: RunConfig, through_the_vote: bool
) -> None:
    """Every label is BACKGROUND or the id of an object box of its scene that holds the point or,
    where the superpoint vote may have spread a label, another point of the point's superpoint."""
    scenes = SceneDataset(processed, "train", cfg.data_loader, with_ground_truth=False, train=False)
    assert sorted(labels) == scenes.scene_ids
    n_labelled = 0
    for i, scene_id in enumerate(scenes.scene_ids):
        sup = scenes[i].supervision
        ids = np.asarray(labels[scene_id]).astype(np.int64)
        assert ids.shape == sup["superpoint"].shape and ((ids >= 0) | (ids == BACKGROUND)).all()
        object_ids = sup["box_id"][~sup["box_is_background"]]
        column = {int(b): k for k, b in enumerate(sup["box_id"])}
        for p in np.flatnonzero(ids >= 0):
            assert ids[p] in object_ids
            holds = sup["point_in_box"][:, column[int(ids[p])]]
            same_superpoint = sup["superpoint"] == sup["superpoint"][p]
            assert holds[p] or (through_the_vote and holds[same_superpoint].any()), (scene_id, p)
        n_labelled += int((ids >= 0).sum())
    assert n_labelled > 0


@pytest.mark.parametrize("vote", [False, True])
def test_the_labeler_labels_points_with_boxes_that_hold_them(processed: Path, vote: bool) -> None:
    """An untrained labeler: whatever it scores, the box prior bounds its choice to the boxes that
    hold a point (and the vote to the boxes that hold a point of the same superpoint)."""
    cfg = tiny_run_config("two_stage")
    prior = dataclasses.replace(cfg.train.beep3d, superpoint_vote=vote)
    torch.manual_seed(0)
    labeler = build_model(cfg.model, torch.device("cpu"))
    scenes = SceneDataset(processed, "train", cfg.data_loader, with_ground_truth=False, train=False)
    loader = make_loader(scenes, 2, shuffle=False, seed=0, num_workers=0)
    labels = label_scenes(labeler, loader, prior, Criterion.from_config(cfg.train.loss))
    assert all(ids.dtype == torch.int32 for ids in labels.values())
    assert_labels_name_boxes_that_hold_the_point(labels, processed, cfg, through_the_vote=vote)


def test_only_two_stage_runs_depend_on_the_two_stage_params(processed: Path) -> None:
    """A checkpoint of another mode stays valid whatever `train.two_stage` says; the labeler is
    its own run (mode, epochs, no evaluations)."""

    def with_labeler_epochs(cfg: RunConfig, n: int) -> RunConfig:
        t = cfg.train
        return dataclasses.replace(
            cfg, train=dataclasses.replace(t, two_stage=dataclasses.replace(t.two_stage, labeler_epochs=n))
        )

    for mode, depends in (("beep3d", False), ("box_heuristic", False), ("full", False), ("two_stage", True)):
        cfg = tiny_run_config(mode)
        changed = fingerprint(with_labeler_epochs(cfg, 5), processed) != fingerprint(cfg, processed)
        assert changed == depends, mode
    labeler = labeler_config(with_labeler_epochs(tiny_run_config("two_stage", eval_every=2), 5)).train
    assert (labeler.mode, labeler.epochs, labeler.eval_every, labeler.headline) == (
        LABELER_MODE,
        5,
        0,
        "last",
    )


@dataclasses.dataclass
class TwoStageRun:
    result: training.TrainResult
    resume_dir: Path
    metrics: list[tuple[int, dict[str, float]]]
    log: list[str]


def run_two_stage(processed: Path, resume_dir: Path) -> TwoStageRun:
    metrics: list[tuple[int, dict[str, float]]] = []
    log: list[str] = []
    result = train(
        tiny_run_config("two_stage"), processed, resume_dir, log=log.append, progress=False,
        metrics_sink=lambda m, step: metrics.append((step, dict(m))),
    )  # fmt: skip
    return TwoStageRun(result, resume_dir, metrics, log)


@pytest.fixture(scope="module")
def straight(processed: Path, tmp_path_factory: pytest.TempPathFactory) -> TwoStageRun:
    return run_two_stage(processed, tmp_path_factory.mktemp("straight"))


def test_two_stage_trains_a_student_on_the_labelers_fixed_labels(
    straight: TwoStageRun, processed: Path
) -> None:
    r = straight
    assert (r.resume_dir / LABELS_FILE).is_file() and (r.resume_dir / "labeler" / "state.pt").is_file()
    assert (r.resume_dir / "state.pt").is_file() and r.result.teacher is None
    steps = [row for row in r.result.history if "total" in row]
    assert steps and all("boxq/total" in row for row in steps)  # the box-query loss, as in every mode
    assert not any(k in row for row in steps for k in ("qc", "mfc", "ema_rate"))  # no teacher
    # The labels' quality is monitored at every evaluation, beside the box rules.
    last = r.result.summary["last"]
    assert {"pseudo_two_stage_iou_all", "pseudo_two_stage_iou_ambiguous", "pseudo_box_prior_iou_all"} <= set(
        last
    )
    assert not any(k.startswith("pseudo_teacher") or k.startswith("val_teacher") for k in last)
    # Wall times go to the sink only, never into the history (a DVC output).
    sunk = {k for _, m in r.metrics for k in m}
    assert {"labeler_seconds", "labelling_seconds", "train_seconds", "labeler/total"} <= sunk
    assert not any("seconds" in k or k.startswith("labeler") for row in r.result.history for k in row)
    assert r.result.train_seconds > 0
    labels = load_checkpoint(r.resume_dir / LABELS_FILE)["labels"]
    assert_labels_name_boxes_that_hold_the_point(labels, processed, tiny_run_config("two_stage"), True)


class Killed(Exception):
    """Stands for the SIGKILL that ends a run between its two stages."""


def test_a_run_killed_between_the_stages_resumes_without_the_labeler(
    straight: TwoStageRun, processed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class KilledBeforeTheStudent(training.TrainingRun):
        def __init__(self, cfg: RunConfig, *args: Any, **kwargs: Any):
            if cfg.train.mode == "two_stage":
                raise Killed
            super().__init__(cfg, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(training, "TrainingRun", KilledBeforeTheStudent)
        with pytest.raises(Killed):
            run_two_stage(processed, tmp_path)
    assert (tmp_path / LABELS_FILE).is_file() and not (tmp_path / "state.pt").exists()
    # Without the labeler's state a rerun could only get labels by training it again: it must not.
    shutil.rmtree(tmp_path / "labeler")

    def no_labeler(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the labeler trained although its labels were on disk")

    monkeypatch.setattr(training, "train_labeler", no_labeler)
    resumed = run_two_stage(processed, tmp_path)
    assert any("stage 1 (the labeler) skipped" in line for line in resumed.log)
    assert not any(k in m for _, m in resumed.metrics for k in ("labeler_seconds", "labelling_seconds"))
    a, b = straight.result.model.state_dict(), resumed.result.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.result.history == straight.result.history
