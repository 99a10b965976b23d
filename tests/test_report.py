"""The report stage on real files: a tiny processed dataset, a submission written by the
evaluate stage's writer, a training history and a real sqlite MLflow store (no mocks)."""

from __future__ import annotations

import copy
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from test_dataset import default_scenes, write_processed

from beep3d.classes import SCANNET
from beep3d.data.schema import read_scene_points
from beep3d.eval import Evaluator, SceneGT, ScenePred, to_jsonable, write_submission
from pipeline import plots
from pipeline.report import (
    ReportPaths,
    SplitLeakError,
    StoreUnavailable,
    TrackedRun,
    build_report,
    check_splits,
    differing_params,
    experiments_section,
    load_runs,
    mean_std,
    params_diff,
    plot_tables,
    pseudo_quality_section,
    teacher_pseudo_scene,
)
from pipeline.training import build_model, evaluation_summary, save_model
from stages.report import main as report_main
from stages.train import run_config_from

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEED_MAPS = (0.30, 0.40)  # evaluate/val_mAP of the two beep3d seeds


def repo_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(mode="beep3d", epochs=2, eval_every=1, monitor_scenes=2)
    return params


@pytest.fixture(scope="module")
def processed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_processed(tmp_path_factory.mktemp("processed"), default_scenes())
    overlap = {
        "n_instances": 8,
        "object_points_in_multiple_boxes": 0.125,
        "nonobject_points_in_object_box": 0.25,
        "smallest_box_mean_instance_iou": 0.75,
        "smallest_box_worst_instance_iou": 0.5,
    }
    split = {"boxes": 6, "background_boxes": 2, "instances_per_class": {"chair": 2}, "overlap": overlap}
    stats = {
        "all": {**split, "boxes": 14, "background_boxes": 8, "instances_per_class": {"chair": 3, "table": 3}},
        "splits": {"train": split, "val": split},
        "scenes": 4,
        "voxel_size": 0.02,
    }
    (root / "stats.json").write_text(json.dumps(stats))
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A sqlite MLflow store: two seeds of beep3d, one box_heuristic run, one failed run."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("beep3d")
    specs = [
        ("beep3d-s0", "beep3d", 0, "2", SEED_MAPS[0], "FINISHED"),
        ("beep3d-s1", "beep3d", 1, "1", SEED_MAPS[1], "FINISHED"),
        ("heuristic-s0", "box_heuristic", 0, "2", 0.20, "FINISHED"),
        ("crashed", "full", 0, "2", 0.90, "FAILED"),
    ]
    ids = {}
    for name, mode, seed, threads, m_ap, status in specs:
        run = client.create_run(experiment_id, run_name=name, tags={"mode": mode, "run_key": f"key-{name}"})
        params = {
            "train.mode": mode,
            "train.seed": seed,
            "train.threads": threads,  # execution-only: must not split the seeds' group
            "train.ema": 0.999,
            "data_loader.superpoints": "dataset",
        }
        metrics = {
            "evaluate/val_mAP": m_ap,
            "evaluate/val_AP50": m_ap + 0.2,
            "evaluate/val_AP25": m_ap + 0.3,
            "last/pseudo_smallest_box_iou_ambiguous": 0.5,
        }
        if mode == "beep3d":
            metrics["last/pseudo_teacher_iou_ambiguous"] = 0.6 + seed / 100
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)) for k, v in params.items()],
        )
        client.set_terminated(run.info.run_id, status)
        ids[name] = run.info.run_id
    return {"tracking_uri": uri, "experiment_id": experiment_id, **ids}


def history_rows(epochs: int = 2, steps_per_epoch: int = 4) -> list[dict]:
    rows, step = [], 0
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            row = {"step": step, "epoch": epoch, "lr": 1e-3, "total": 10.0 - step, "cls": 1.0, "bce": 0.5}
            row.update({"dice": 0.8, "center": 0.3, "score": 0.2, "boxq/total": 5.0, "ema_rate": 0.9})
            if step >= 3:  # after the teacher warm-up
                row.update(qc=0.1, mfc=0.2)
            rows.append(row)
            step += 1
        rows.append(
            {
                "step": step, "epoch": epoch, "epoch_seconds": 1.0,
                "val_student_mAP": 0.1 * (epoch + 1), "val_student_AP50": 0.2, "val_student_AP25": 0.3,
                "val_teacher_mAP": 0.15, "val_teacher_AP50": 0.25, "val_teacher_AP25": 0.35,
                "pseudo_teacher_iou_all": 0.7, "pseudo_teacher_iou_ambiguous": 0.55 + 0.01 * epoch,
                "pseudo_smallest_box_iou_all": 0.72, "pseudo_smallest_box_iou_ambiguous": 0.5,
                "pseudo_box_heuristic_iou_all": 0.8, "pseudo_box_heuristic_iou_ambiguous": 0.7,
                "pseudo_teacher_alone_iou_all": 0.68, "pseudo_teacher_alone_iou_ambiguous": 0.52,
                "pseudo_box_prior_iou_all": 0.82, "pseudo_box_prior_iou_ambiguous": 0.75,
            }
        )  # fmt: skip
    return rows


def val_prediction(processed: Path, scene_id: str) -> tuple[SceneGT, ScenePred]:
    """The chair found exactly, the table half found, one false positive."""
    pts = read_scene_points(processed, scene_id, ["label", "instance"])
    label, instance = pts["label"].astype(np.int64), pts["instance"].astype(np.int64)
    chair = (label == 5) & (instance > 0)
    table = np.flatnonzero((label == 7) & (instance > 0))
    half_table = np.zeros(len(label), bool)
    half_table[table[: len(table) // 2]] = True
    floor = label == 2
    masks = np.stack([chair, half_table, floor])
    pred = ScenePred(scene_id, masks, np.array([2, 4, 0]), np.array([0.9, 0.6, 0.3]))
    return SceneGT(scene_id, label, instance), pred


def make_inputs(root: Path, processed: Path, run_info: dict) -> tuple[ReportPaths, dict]:
    """reports/ as the train and evaluate stages leave it; returns the report paths and the metrics."""
    reports = root / "reports"
    gt, pred = val_prediction(processed, "scene_v")
    write_submission(reports / "submission", "scene_v", pred, SCANNET)
    evaluator = Evaluator(SCANNET)
    evaluator.add(gt, pred)
    result = evaluator.result()
    metrics = {
        "val": to_jsonable(
            {k: result[k] for k in ("mAP", "AP50", "AP25", "per_class", "n_scenes", "n_gt_instances")}
        )
    }
    history = history_rows()
    files = {
        "metrics.json": metrics,
        "train_history.json": history,
        "train_summary.json": evaluation_summary(history, "last"),
        "mlflow_run.json": run_info,
    }
    for name, obj in files.items():
        (reports / name).write_text(json.dumps(obj))
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(repo_params()))
    paths = ReportPaths(
        params=params_path,
        data=processed,
        reports=reports,
        out=reports / "report.md",
        figures=reports / "figures",
        plots=reports / "plots",
        teacher=root / "checkpoints" / "export" / "last_teacher.pt",
        project_root=root,
    )
    return paths, metrics


def run_key_for(run: str = "beep3d-s1") -> dict[str, str]:
    """reports/mlflow_run.json as the train stage writes it: the run's key, not its id."""
    return {"experiment": "beep3d", "run_key": f"key-{run}", "tag": "run_key"}


def test_report_has_every_section_figure_and_table(tmp_path: Path, processed: Path, store: dict[str, str]):
    paths, metrics = make_inputs(tmp_path, processed, run_key_for("beep3d-s1"))
    stale = paths.figures / "old_scene.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"stale")
    env = {"DVC_EXP_NAME": "exp-tiny", "MLFLOW_TRACKING_URI": store["tracking_uri"]}
    text = build_report(paths, repo_params(), env=env)
    assert paths.out.read_text() == text

    # 1. headline and per-class table, re-scored from the submission
    val = metrics["val"]
    assert f"| val | {val['mAP']:.3f} | {val['AP50']:.3f} | {val['AP25']:.3f} |" in text
    assert "the `last` student, after epoch 2 of 2" in text
    assert "they match metrics.json" in text
    assert "| chair | 1 | 1.000 | 1.000 | 1.000 |" in text
    table = val["per_class"]["table"]
    assert f"| table | 1 | {table['AP']:.3f} | {table['AP50']:.3f} | {table['AP25']:.3f} |" in text
    assert "| bed | 0 | – | – | – |" in text

    # 2. runs: the failed one is left out; threads differ but are execution-only
    assert "crashed" not in text
    assert "**beep3d-s1** (this run)" in text
    assert "| run | mode | train.seed | mAP |" in text
    expected = f"{statistics.mean(SEED_MAPS):.3f} ± {statistics.stdev(SEED_MAPS):.3f}"
    assert f"| beep3d | 2 (0, 1) | {expected} |" in text
    assert "| box_heuristic | 1 (0) | 0.200 (n=1) |" in text

    # 3. pseudo-mask quality at the last (epoch 2) and best evaluation
    assert "| teacher pseudo-masks (box prior + teacher + vote) | 0.700 | 0.560 | 0.700 | 0.560 |" in text
    assert "| box prior + smallest box + vote (no teacher) | 0.820 | 0.750 | 0.820 | 0.750 |" in text
    # like with like: each difference names both sides
    assert (
        "Teacher + vote minus the box heuristic (smallest box + vote), ambiguous points (last evaluation): -0.140."
        in text
    )
    assert (
        "Teacher + vote minus the box prior without the teacher (+ vote), ambiguous points (last evaluation): -0.190."
        in text
    )
    assert (
        "Teacher alone minus the smallest-box rule alone, ambiguous points (last evaluation): +0.020." in text
    )

    # 4. dataset counts from scenes.parquet and stats.json
    points = {sid: len(s["xyz"]) for sid, (_, s) in default_scenes().items()}
    train_points = sum(n for sid, n in points.items() if sid != "scene_v")
    assert f"| train | 3 | {train_points:,} | 4 | 2 | 12.5 % | 25.0 % | 0.750 (0.500) |" in text
    assert f"| val | 1 | {points['scene_v']:,} |" in text
    assert "| chair | 2 | 2 | 3 |" in text

    # 5. splits, 6. provenance (no git repository here), 7. figures
    assert "Trained on the `train` split: 3 scenes (pseudo-mask quality monitored on the first 2)" in text
    assert "Evaluated on 1 scenes (the submission's scene files): scene_v." in text
    assert "Evaluations during training score the first 1 of the 1 `val` scenes (`train.val_scenes`)." in text
    assert "Split guard: passed" in text
    assert "## 6. Provenance" in text
    assert "DVC experiment: `exp-tiny`" in text
    assert f"MLflow run: `{store['beep3d-s1']}` (name `beep3d-s1`" in text
    assert "Params that differ from the defaults: unknown (`git show HEAD:params.yaml` failed" in text
    assert "skipped, no teacher checkpoint at" in text

    assert not stale.exists() and not paths.figures.with_name("figures.partial").exists()
    pngs = ["losses.png", "val_map.png", "pseudo_iou.png", "pr_curves.png", "scenes/scene_v.png"]
    for name in pngs:
        data = (paths.figures / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000, name
        assert f"](figures/{name})" in text
    assert sorted(p.relative_to(paths.figures).as_posix() for p in paths.figures.rglob("*.png")) == sorted(
        pngs
    )

    losses = (paths.plots / "losses.csv").read_text().splitlines()
    assert losses[0] == "step,epoch,total,cls,bce,dice,center,score,boxq_total,qc,mfc"
    assert (
        len(losses) == 1 + 8 and losses[1].endswith(",,") and losses[4] == "3,1,7,1,0.5,0.8,0.3,0.2,5,0.1,0.2"
    )
    val_map = (paths.plots / "val_map.csv").read_text().splitlines()
    assert val_map == [
        "epoch,step,student_mAP,student_AP50,student_AP25,teacher_mAP,teacher_AP50,teacher_AP25",
        "1,4,0.1,0.2,0.3,0.15,0.25,0.35",
        "2,8,0.2,0.2,0.3,0.15,0.25,0.35",
    ]
    pseudo = (paths.plots / "pseudo_iou.csv").read_text().splitlines()
    assert pseudo[0] == (
        "epoch,step,teacher_all,teacher_ambiguous,teacher_alone_all,teacher_alone_ambiguous,"
        "box_prior_all,box_prior_ambiguous,smallest_box_all,smallest_box_ambiguous,"
        "box_heuristic_all,box_heuristic_ambiguous"
    )
    assert pseudo[2] == "2,8,0.7,0.56,0.68,0.52,0.82,0.75,0.72,0.5,0.8,0.7"


def test_stage_refuses_evaluated_scenes_from_the_training_split(
    tmp_path: Path, processed: Path, monkeypatch: pytest.MonkeyPatch
):
    paths, _ = make_inputs(tmp_path, processed, {})
    (paths.reports / "mlflow_run.json").unlink()
    _, pred = val_prediction(processed, "scene_a")
    write_submission(paths.reports / "submission", "scene_a", pred, SCANNET)
    with pytest.raises(SplitLeakError, match=r"1 evaluated scene\(s\) are in the training split \(scene_a\)"):
        build_report(paths, repo_params(), env={})
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        report_main,
        ["--params", str(paths.params), "--data", str(processed), "--reports", str(paths.reports),
         "--out", str(paths.out), "--figures", str(paths.figures), "--plots", str(paths.plots)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "report failed: refusing to report" in result.output
    assert not paths.out.exists() and not paths.figures.exists()
    check_splits(["scene_a", "scene_b"], ["scene_v"])  # disjoint: passes


def test_missing_store_or_run_is_a_note_not_a_failure(tmp_path: Path, processed: Path, store: dict[str, str]):
    db = tmp_path / "nowhere" / "mlflow.db"
    paths, _ = make_inputs(tmp_path, processed, run_key_for("beep3d-s1"))
    params = repo_params()
    params["train"]["mode"] = "box_heuristic"
    text = build_report(paths, params, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert (
        f"Not available: no run of experiment 'beep3d' tagged run_key=key-beep3d-s1 in sqlite:///{db}."
        in text
    )
    assert not db.exists()  # reading must not create an empty store
    assert "MLflow run: no run info" in text

    # a store without a run of this key (another training's store): a note naming the key
    (paths.reports / "mlflow_run.json").write_text(json.dumps(run_key_for("never-trained")))
    text = build_report(paths, params, env={"MLFLOW_TRACKING_URI": store["tracking_uri"]})
    assert "Not available: no run of experiment 'beep3d' tagged run_key=key-never-trained" in text
    assert "skipped, mode `box_heuristic` has no teacher" in text
    assert "DVC experiment: `workspace`" in text

    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database\n" * 100)
    with pytest.raises(StoreUnavailable, match="unreadable: DatabaseError"):
        load_runs(f"sqlite:///{garbage}", "1")


def test_pure_helpers():
    assert mean_std([0.3, 0.4]) == f"0.350 ± {statistics.stdev([0.3, 0.4]):.3f}"
    assert mean_std([0.3]) == "0.300 (n=1)"
    assert mean_std([0.3, None, 0.5]) == f"0.400 ± {statistics.stdev([0.3, 0.5]):.3f} (n=2)"
    assert mean_std([None, float("nan")]) == "–"
    diff = params_diff(
        {"train": {"seed": 0, "ema": 0.999}, "x": 1}, {"train": {"seed": 1, "ema": 0.999}, "y": 2}
    )
    assert [(k, d, v) for k, d, v in diff if k == "train.seed"] == [("train.seed", 0, 1)]
    assert [k for k, _, _ in diff] == ["train.seed", "x", "y"]
    tables = plot_tables([])
    assert tables["losses.csv"] == (["step", "epoch"], [])
    assert plots.val_map_figure([]) is None and plots.losses_figure([]) is None
    avg = plots.moving_average(np.array([1.0, 3.0, 5.0, 7.0]), 2)
    np.testing.assert_allclose(avg, [1.0, 2.0, 4.0, 6.0])


def test_differing_params_counts_absent_keys_and_skips_execution_params(store: dict[str, str]):
    runs = load_runs(store["tracking_uri"], store["experiment_id"])
    assert [r.name for r in runs] == ["beep3d-s0", "beep3d-s1", "heuristic-s0"]
    assert differing_params(runs) == ["train.mode", "train.seed"]
    assert differing_params(runs, ignore=()) == ["train.mode", "train.seed", "train.threads"]


def test_two_stage_runs_are_their_own_mode_and_their_params_split_only_them():
    def tracked(name: str, mode: str, seed: int, labeler_epochs: str | None) -> TrackedRun:
        params = {"train.mode": mode, "train.seed": str(seed)}
        if labeler_epochs is not None:  # None: a run logged before train.two_stage existed
            params["train.two_stage.labeler_epochs"] = labeler_epochs
        metrics = {"evaluate/val_mAP": 0.2, "last/pseudo_two_stage_iou_ambiguous": 0.8}
        return TrackedRun(name, name, 0, params, metrics if mode == "two_stage" else {}, {"mode": mode})

    runs = [
        tracked("b0-old", "beep3d", 0, None),
        tracked("b1", "beep3d", 1, "30"),
        tracked("t0", "two_stage", 0, "30"),
        tracked("t1", "two_stage", 1, "30"),
        tracked("t0-short", "two_stage", 0, "5"),
    ]
    assert differing_params(runs[:2]) == ["train.seed"]  # beep3d does not read train.two_stage
    assert differing_params(runs) == ["train.mode", "train.seed", "train.two_stage.labeler_epochs"]
    text = experiments_section(runs, None, None)
    table = text.split("Configurations over seeds")[1]
    groups = [
        line for line in table.splitlines() if line.startswith("| beep3d") or line.startswith("| two_stage")
    ]
    assert [g.split(" | ")[:3] for g in groups] == [
        ["| beep3d", "–", "2 (0, 1)"],
        ["| two_stage", "30", "2 (0, 1)"],
        ["| two_stage", "5", "1 (0)"],
    ]
    assert "two-stage labels IoU amb." in text
    quality = pseudo_quality_section(
        {"last": {"pseudo_two_stage_iou_ambiguous": 0.8, "pseudo_box_prior_iou_ambiguous": 0.75,
                  "pseudo_box_heuristic_iou_ambiguous": 0.7}},
        "two_stage",
    )  # fmt: skip
    assert (
        "Two-stage labels minus the box prior without a labeler (+ vote), ambiguous points (last evaluation): +0.050"
        in quality
    )
    assert plots.RESOLVER_LABELS["two_stage"] in quality and "has no EMA teacher" not in quality


def test_runs_from_before_a_param_existed_group_with_runs_that_log_its_old_value():
    def tracked(name: str, seed: int, **later: str) -> TrackedRun:
        params = {"train.mode": "beep3d", "train.seed": str(seed), "train.ema": "0.999"}
        params.update({f"train.{k.replace('__', '.')}": v for k, v in later.items()})
        return TrackedRun(name, name, 0, params, {"evaluate/val_mAP": 0.1 + seed / 100}, {"mode": "beep3d"})

    runs = [
        tracked("old-s0", 0),  # logged before train.amp, teacher_every and val_scenes existed
        tracked("new-s1", 1, amp="off", beep3d__teacher_every="1", val_scenes="0"),
        tracked("every3-s0", 0, amp="off", beep3d__teacher_every="3", val_scenes="0"),
        tracked("val24-s0", 0, amp="off", beep3d__teacher_every="1", val_scenes="24"),
    ]
    assert differing_params(runs[:2]) == ["train.seed"]
    assert differing_params(runs) == ["train.beep3d.teacher_every", "train.seed", "train.val_scenes"]
    table = experiments_section(runs, None, None).split("Configurations over seeds")[1]
    groups = [line.split(" | ")[:4] for line in table.splitlines() if line.startswith("| beep3d")]
    assert groups == [
        ["| beep3d", "1", "0", "2 (0, 1)"],
        ["| beep3d", "3", "0", "1 (0)"],
        ["| beep3d", "1", "24", "1 (0)"],
    ]
    # A param the project never had is still absent, and absence still splits a group.
    assert differing_params([runs[0], tracked("lr-s1", 1, optim__lr="0.002")]) == [
        "train.optim.lr",
        "train.seed",
    ]


def test_beep3d_parts_split_beep3d_and_two_stage_runs_only():
    def tracked(name: str, mode: str, seed: int, containment: str) -> TrackedRun:
        params = {"train.mode": mode, "train.seed": str(seed), "train.beep3d.prior_containment": containment}
        params["train.beep3d.superpoint_vote"] = "True"  # the same in every run that reads it
        return TrackedRun(name, name, 0, params, {"evaluate/val_mAP": 0.2}, {"mode": mode})

    runs = [
        tracked("h0", "box_heuristic", 0, "1.0"),
        tracked("h1", "box_heuristic", 1, "0.8"),  # e.g. queued with a grid-wide containment
        tracked("b0", "beep3d", 0, "1.0"),
        tracked("b1", "beep3d", 1, "0.8"),
        tracked("t0", "two_stage", 0, "1.0"),
        tracked("t1", "two_stage", 1, "0.8"),
    ]
    assert differing_params(runs[:2]) == ["train.seed"]
    assert differing_params(runs[2:4]) == ["train.beep3d.prior_containment", "train.seed"]
    # No column for a BEEP3D switch all beep3d and two_stage runs agree on (box_heuristic reads none).
    assert differing_params(runs) == ["train.beep3d.prior_containment", "train.mode", "train.seed"]
    table = experiments_section(runs, None, None).split("Configurations over seeds")[1]
    groups = [
        line.split(" | ")[:3]
        for line in table.splitlines()
        if line.startswith(("| box", "| beep3d", "| two"))
    ]
    assert groups == [
        ["| box_heuristic", "–", "2 (0, 1)"],
        ["| beep3d", "1.0", "1 (0)"],
        ["| beep3d", "0.8", "1 (1)"],
        ["| two_stage", "1.0", "1 (0)"],
        ["| two_stage", "0.8", "1 (1)"],
    ]


def test_teacher_pseudo_masks_on_the_first_training_scene(tmp_path: Path, processed: Path, one_torch_thread):
    params = repo_params()
    params["model"].update(
        widths=[8, 16], d_model=16, n_heads=2, n_layers=1, n_queries=4, ffn_dim=16, rpe_hidden=4
    )
    cfg = run_config_from(params)
    torch.manual_seed(0)
    teacher = build_model(cfg.model, torch.device("cpu"))
    path = tmp_path / "last_teacher.pt"
    save_model(path, teacher, cfg, "scannet")
    scene = teacher_pseudo_scene(path, processed, copy.deepcopy(params["train"]))
    assert scene.scene_id == "scene_a"
    n = len(scene.xyz)
    assert scene.ambiguous.shape == scene.teacher_ids.shape == scene.gt_ids.shape == (n,)
    assert scene.ambiguous.any()
    # Every ambiguous point goes to an object instance that holds it, or to the background.
    gt_instances = set(np.unique(scene.gt_ids).tolist())
    assert set(np.unique(scene.teacher_ids[scene.ambiguous]).tolist()) <= gt_instances | {-1}
    assert 0.0 <= scene.agreement <= 1.0
    fig = plots.pseudo_figure(scene.scene_id, scene.xyz, scene.ambiguous, scene.teacher_ids, scene.gt_ids)
    plots.save_png(fig, tmp_path / "pseudo.png")
    assert (tmp_path / "pseudo.png").read_bytes()[:8] == PNG_MAGIC
