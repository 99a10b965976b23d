"""A real `dvc repro` of the pipeline in a fresh git repo, on tiny params."""

from __future__ import annotations

import json

import pyarrow.dataset as ds
import pytest
import yaml
from mlflow.tracking import MlflowClient

from pipeline.tracking import RunKey, find_run

pytestmark = pytest.mark.slow


def tiny(params: dict) -> dict:
    syn = params["data"]["synthetic"]
    syn.update(n_train=3, n_val=2)
    params["data"]["workers"] = 1
    params["preprocess"]["workers"] = 1
    params["model"].update(widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=8, ffn_dim=16)
    params["train"].update(epochs=1, batch_size=2, threads=1)
    return params


def test_dvc_repro_whole_pipeline_on_tiny_params(project_copy):
    project_copy.set_params(tiny(project_copy.params()))
    project_copy.commit("tiny params")
    project_copy.dvc("repro", timeout=900)
    root = project_copy.root

    # preprocess: the Parquet contract, readable as a dataset, one row per original vertex
    scenes = ds.dataset(root / "data/processed/scenes.parquet").to_table().to_pylist()
    assert sorted(s["split"] for s in scenes) == ["train", "train", "train", "val", "val"]
    points = ds.dataset(root / "data/processed/points").to_table()
    assert points.num_rows == sum(s["n_points"] for s in scenes)
    assert {"scene_id", "x", "y", "z", "r", "g", "b", "superpoint", "label", "instance", "voxel"} <= set(
        points.column_names
    )
    stats = json.loads((root / "data/processed/stats.json").read_text())
    assert stats["scenes"] == 5 and stats["skipped"] == 0

    # evaluate: metrics in the promised shape, submission files for every val scene
    metrics = json.loads((root / "reports/metrics.json").read_text())["val"]
    for key in ("mAP", "AP50", "AP25"):
        assert metrics[key] is None or 0.0 <= metrics[key] <= 1.0
    assert set(metrics["per_class"]["chair"]) == {"AP", "AP50", "AP25"}
    val_ids = sorted(s["scene_id"] for s in scenes if s["split"] == "val")
    assert sorted(p.stem for p in (root / "reports/submission").glob("*.txt")) == val_ids

    # train: one MLflow run in the project's own store, linked both ways through its run key
    key = RunKey.from_json(json.loads((root / "reports/mlflow_run.json").read_text()), "mlflow_run.json")
    found = find_run(f"sqlite:///{root.resolve() / 'mlflow.db'}", key)
    assert found is not None
    run_info = found.to_json()
    run = MlflowClient(run_info["tracking_uri"]).get_run(run_info["run_id"])
    assert run.data.tags["run_key"] == key.run_key
    assert run.info.status == "FINISHED"
    assert run.data.params["train.mode"] == "beep3d" and run.data.params["train.ema"] == "0.999"
    assert run.data.tags["mode"] == "beep3d" and len(run.data.tags["git_commit"]) == 40
    assert {"total", "lr", "ema_rate", "boxq/total"} <= set(run.data.metrics)
    assert (
        "evaluate/val_mAP" in MlflowClient(run_info["tracking_uri"]).get_run(run_info["run_id"]).data.metrics
    )
    artifacts = {a.path for a in MlflowClient(run_info["tracking_uri"]).list_artifacts(run_info["run_id"])}
    assert {"model.pt", "resolved_config.json", "checkpoints"} <= artifacts
    assert (root / "mlartifacts").is_dir() and not (root / "mlruns").exists()
    assert "metrics.json" in {
        a.path for a in MlflowClient(run_info["tracking_uri"]).list_artifacts(run_info["run_id"])
    }

    # report: markdown with the headline numbers, figures, and DVC plots that render
    report = (root / "reports/report.md").read_text()
    assert "mAP" in report and "Provenance" in report and run_info["run_id"] in report
    assert (root / "reports/figures/losses.png").stat().st_size > 10_000
    rendered = project_copy.dvc("plots", "show", "--json").stdout
    assert "reports/plots/val_map.csv" in rendered and "reports/plots/losses.csv" in rendered

    # everything is up to date afterwards (but the always-changed report), and
    # `dvc metrics show` lists the metrics
    status = json.loads(project_copy.dvc("status", "--json").stdout)
    assert set(status) <= {"report"}, status
    shown = project_copy.dvc("metrics", "show", "--json").stdout
    assert "mAP" in shown


def test_preprocess_bad_scene_fails_with_named_file_then_skip_lists_it(project_copy):
    params = tiny(project_copy.params())
    project_copy.set_params(params)
    project_copy.commit("tiny params")
    project_copy.dvc("repro", "download")
    raw = project_copy.root / "data/raw/scans"
    victim = sorted(raw.iterdir())[0]
    ply = victim / f"{victim.name}_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[:500])  # truncated mesh

    failed = project_copy.run("python", "-m", "stages.preprocess", "--params", "params.yaml",
                              "--raw", "data/raw", "--out", "data/processed", "--no-progress", check=False)  # fmt: skip
    assert failed.returncode == 1
    assert victim.name in failed.stderr and ply.name in failed.stderr
    assert not (project_copy.root / "data/processed/scenes.parquet").exists()

    params["preprocess"]["on_error"] = "skip"
    project_copy.set_params(params)
    project_copy.run("python", "-m", "stages.preprocess", "--params", "params.yaml",
                     "--raw", "data/raw", "--out", "data/processed", "--no-progress")  # fmt: skip
    skipped = json.loads((project_copy.root / "data/processed/skipped.json").read_text())
    assert [s["scene_id"] for s in skipped] == [victim.name]


def _output_hashes(project) -> dict[str, str]:
    """path -> md5 of every output dvc.lock records, the report stage's left out (always changed)."""
    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    return {
        out["path"]: out["md5"]
        for name, stage in lock["stages"].items()
        if name != "report"
        for out in stage.get("outs", [])
    }


def test_two_fresh_copies_reproduce_every_output_hash(project_copy, new_project_copy):
    """A fresh clone's `dvc repro` leaves dvc.lock as committed: the same params give the same
    bytes in every output (model files and checkpoints included), not only the same metrics.
    Two copies in different folders, so a path or a temp-file name that leaks into a file shows."""
    params = tiny(project_copy.params())
    params["train"]["eval_every"] = 1  # an evaluation epoch: the history holds its figures too
    copies = [project_copy, new_project_copy("second")]
    for copy in copies:
        copy.set_params(params)
        copy.commit("tiny params")
        copy.dvc("repro", timeout=900)
    first, second = (_output_hashes(copy) for copy in copies)
    assert {
        "models/model.pt",
        "checkpoints",
        "reports/train_history.json",
        "reports/submission",
        "reports/mlflow_run.json",  # the run's key, not MLflow's random run id
    } <= set(first)
    differ = sorted(path for path in first if first[path] != second.get(path))
    assert not differ, f"outputs whose hash differs between two runs of the same params: {differ}"
