"""DVC stage `evaluate`: ScanNet-protocol AP of the trained model on the val split.

    python -m stages.evaluate --params params.yaml --data data/processed --model models/model.pt \
        --metrics reports/metrics.json --submission reports/submission

Predictions are mapped back to every original vertex. Besides the metrics, every scene's
instances are written in the ScanNet benchmark submission format, so anyone can re-score them.
With --run-info (reports/mlflow_run.json, the train stage's run key) the metrics are also added
to the training's MLflow run as `evaluate/...`, the run found by its key in the store resolved as
the train stage resolves it; a tracking failure or a run that cannot be found only warns.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import click
import torch

from beep3d.backend import resolve_device
from beep3d.data.dataset import DataConfig, SceneDataset, make_loader
from beep3d.engine import InferenceConfig, iterate_predictions
from beep3d.errors import DataError
from beep3d.eval import Evaluator, SceneGT, to_jsonable, write_submission
from beep3d.io import write_json_atomic
from pipeline.checkpoint import CheckpointError
from pipeline.config import ConfigError, build, load_params, section
from pipeline.tracking import RunKey, Tracker, TrackingError, find_run, project_root_of, resolve_tracking_uri
from pipeline.training import load_model


def log_to_training_run(run_info_path: Path, result: dict, metrics_path: Path) -> None:
    uri = resolve_tracking_uri(project_root_of(Path.cwd()))
    try:
        key = RunKey.from_json(json.loads(run_info_path.read_text()), str(run_info_path))
        info = find_run(uri, key)
    except (TrackingError, json.JSONDecodeError) as err:
        click.echo(f"warning: metrics not added to the training's MLflow run: {err}", err=True)
        return
    if info is None:
        click.echo(
            f"warning: metrics not added to MLflow: no run of experiment {key.experiment!r} tagged "
            f"run_key={key.run_key} in {uri} (was the training tracked in another store?)",
            err=True,
        )
        return
    tracker = Tracker(info.tracking_uri, "", None, log=click.echo)
    tracker.attach(info)
    # Classes without ground truth have NaN AP: they are skipped, not logged as numbers.
    flat = {f"evaluate/val_{k}": float(result[k]) for k in ("mAP", "AP50", "AP25")}
    flat.update({f"evaluate/val_AP/{name}": float(v["AP"]) for name, v in result["per_class"].items()})
    flat = {k: v for k, v in flat.items() if math.isfinite(v)}
    tracker.log_metrics(flat, 0)
    tracker.log_artifact(metrics_path)


@click.command()
@click.option("--params", "params_path", default="params.yaml")
@click.option("--data", "data_dir", default="data/processed", type=click.Path(file_okay=False))
@click.option("--model", "model_path", default="models/model.pt", type=click.Path(dir_okay=False))
@click.option("--metrics", "metrics_path", default="reports/metrics.json", type=click.Path(dir_okay=False))
@click.option(
    "--submission", "submission_dir", default="reports/submission", type=click.Path(file_okay=False)
)
@click.option("--run-info", "run_info_path", default=None, type=click.Path(dir_okay=False, exists=True))
def main(
    params_path: str,
    data_dir: str,
    model_path: str,
    metrics_path: str,
    submission_dir: str,
    run_info_path: str | None,
) -> None:
    try:
        params = load_params(params_path)
        data_cfg = build(DataConfig, section(params, "data_loader"), "data_loader")
        infer_cfg = build(InferenceConfig, section(params, "inference"), "inference")
        device = resolve_device(section(params, "train.device"))
        model, _ = load_model(Path(model_path), device)
        val_set = SceneDataset(data_dir, "val", data_cfg, with_ground_truth=True, train=False)
    except (ConfigError, DataError, CheckpointError) as err:
        click.echo(f"evaluate failed: {err}", err=True)
        sys.exit(1)
    threads = int(section(params, "train.threads"))
    if threads > 0:  # 0 = torch's default, as in training
        torch.set_num_threads(threads)

    out = Path(submission_dir)
    partial = out.with_name(out.name + ".partial")  # swapped in whole: no stale scene files survive
    shutil.rmtree(partial, ignore_errors=True)
    evaluator = Evaluator(val_set.class_set)
    loader = make_loader(val_set, 1, shuffle=False, seed=0, num_workers=0)
    for batch, preds in iterate_predictions(model, loader, infer_cfg, device):
        for gt, pred in zip(batch["ground_truth"], preds, strict=True):
            evaluator.add(SceneGT(pred.scene_id, gt["label"].numpy(), gt["instance"].numpy()), pred)
            write_submission(partial, pred.scene_id, pred, val_set.class_set, durable=False)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)

    result = evaluator.result()
    metrics = {
        "val": to_jsonable(
            {k: result[k] for k in ("mAP", "AP50", "AP25", "per_class", "n_scenes", "n_gt_instances")}
        )
    }
    write_json_atomic(Path(metrics_path), metrics)
    click.echo(f"evaluate: val mAP {result['mAP']:.3f}  AP50 {result['AP50']:.3f}  AP25 {result['AP25']:.3f}")
    if run_info_path:
        log_to_training_run(Path(run_info_path), result, Path(metrics_path))


if __name__ == "__main__":
    main()
