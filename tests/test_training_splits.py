"""Training on data without a val split (a local folder of training scenes only), and on a val
split of which the in-training evaluations score only the first `train.val_scenes`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from test_dataset import default_scenes, make_scene, write_processed
from test_student_teacher import tiny_run_config

from beep3d.data.dataset import split_sizes
from pipeline.training import TrainingRun, build_model, save_model, train
from stages import evaluate as evaluate_stage

REPO = Path(__file__).resolve().parents[1]


def test_training_without_val_scenes_runs_without_evaluations_and_says_so(tmp_path: Path) -> None:
    scenes = {k: v for k, v in default_scenes().items() if v[0] == "train"}
    processed = write_processed(tmp_path / "processed", scenes)
    assert split_sizes(processed) == {"train": 3}
    messages: list[str] = []
    cfg = tiny_run_config("full", epochs=1, eval_every=1)
    result = train(cfg, processed, tmp_path / "resume", log=messages.append, progress=False)
    assert any("has no val scenes: training without evaluations" in m for m in messages), messages
    assert result.history and not [row for row in result.history if "val_student_mAP" in row]
    assert result.summary == {"headline": "last"}
    assert (tmp_path / "resume" / "state.pt").is_file()


def test_val_only_data_evaluates_an_existing_model(tmp_path: Path) -> None:
    scenes = {k: v for k, v in default_scenes().items() if v[0] == "val"}
    processed = write_processed(tmp_path / "processed", scenes)
    cfg = tiny_run_config("full")
    model = tmp_path / "model.pt"
    torch.manual_seed(0)
    save_model(model, build_model(cfg.model, torch.device("cpu")), cfg, "scannet")
    metrics = tmp_path / "metrics.json"
    args = ["--params", str(REPO / "params.yaml"), "--data", str(processed), "--model", str(model),
            "--metrics", str(metrics), "--submission", str(tmp_path / "submission")]  # fmt: skip
    result = CliRunner().invoke(evaluate_stage.main, args)
    assert result.exit_code == 0, result.output
    assert json.loads(metrics.read_text())["val"]["n_scenes"] == 1


@pytest.mark.parametrize(
    ("val_scenes", "scored"), [(0, ["scene_v", "scene_w"]), (1, ["scene_v"]), (5, ["scene_v", "scene_w"])]
)
def test_in_training_evaluations_score_the_first_val_scenes(
    tmp_path: Path, val_scenes: int, scored: list[str]
) -> None:
    scenes = {**default_scenes(), "scene_w": ("val", make_scene(np.random.default_rng(7), 2))}
    processed = write_processed(tmp_path / "processed", scenes)
    run = TrainingRun(tiny_run_config("beep3d", val_scenes=val_scenes), processed, torch.device("cpu"))
    assert run.val_loader.dataset.scene_ids == scored


def test_negative_val_scenes_is_refused() -> None:
    with pytest.raises(ValueError, match=r"train\.val_scenes"):
        tiny_run_config("beep3d", val_scenes=-1)
