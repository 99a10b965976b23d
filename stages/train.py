"""DVC stage `train`: train the model on data/processed and write the final weights.

    python -m stages.train --params params.yaml --data data/processed \\
        --model models/model.pt --resume checkpoints --history reports/train_history.json \\
        --summary reports/train_summary.json

Writes the headline student to --model, the last/best student (and, in beep3d mode, EMA
teacher) exports to `<resume>/export/`, the step history, and a summary
(last and best evaluation, labelled) that is also a DVC metrics file. In two_stage mode
`<resume>` also keeps the labeler's resume state (`labeler/`) and its labels
(`two_stage_labels.pt`).
A killed run re-run with the same params resumes from `checkpoints/` (see pipeline/training.py).

Tracking: one MLflow run per training (pipeline/tracking.py), named after the DVC experiment
when there is one, with every param, provenance tags, per-step losses, every evaluation, the
labelled last/best summary and the checkpoints as artifacts. --run-info gets the run's key (the
training fingerprint, also a tag of the run), not MLflow's random run id, so the same params and
data write the same file and dvc.lock reproduces; evaluate and report find the run by that key
(pipeline/tracking.py `RunKey`). If the tracking store cannot be opened, the stage stops with an
error naming the URI before any training; once training runs, tracking failures only warn.

--no-tracking trains and writes the same files without an MLflow run (and without --run-info):
for scratch runs on a machine without MLflow, such as benchmarks/gpu_check.py on a GPU image.
The pipeline (dvc.yaml) always tracks.

Distributed: the same command under torchrun (see README "Distributed training") trains with
DistributedDataParallel; rank 0 does all of the above, the other ranks only train.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import click

from beep3d.errors import DataError
from beep3d.io import write_json_atomic
from pipeline import distributed
from pipeline.checkpoint import CheckpointError
from pipeline.config import ConfigError, build, flatten, load_params
from pipeline.distributed import Ranks
from pipeline.tracking import (
    RUN_KEY_TAG,
    RunKey,
    Tracker,
    TrackingError,
    default_artifact_root,
    project_root_of,
    resolve_tracking_uri,
    run_name_from_env,
    run_tags,
)
from pipeline.training import RunConfig, TrainResult, data_hash, fingerprint, save_model, train

EXPERIMENT = "beep3d"


def run_config_from(params: dict) -> RunConfig:
    sections = {k: params.get(k) for k in ("model", "data_loader", "train", "inference")}
    return build(RunConfig, sections, "params")


def load_run_config(params_path: str) -> RunConfig:
    return run_config_from(load_params(params_path))


def write_exports(result: TrainResult, cfg: RunConfig, model_path: Path, export_dir: Path) -> dict[str, Path]:
    """The headline model and the last/best student/teacher files; returns name -> path."""
    files = {"model": model_path}
    save_model(model_path, result.model, cfg, result.class_set)
    for tag, state in (("last", result.last), ("best", result.best)):
        for role in ("student", "teacher"):
            if state is not None and role in state:
                path = export_dir / f"{tag}_{role}.pt"
                save_model(path, state[role], cfg, result.class_set)
                files[f"{tag}_{role}"] = path
    return files


def start_tracking(params: dict, cfg: RunConfig, data_dir: Path) -> tuple[Tracker, RunKey]:
    """Open the MLflow run, tagged with its key (raises TrackingError before any training if the
    store is unusable)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    root = project_root_of(Path.cwd())
    uri = resolve_tracking_uri(root)
    tracker = Tracker(uri, EXPERIMENT, default_artifact_root(uri, root), log=click.echo)
    tags = run_tags(
        Path.cwd(), cfg.train.mode, str(params.get("data", {}).get("source", "")), data_hash(data_dir)
    )
    key = RunKey(EXPERIMENT, fingerprint(cfg, data_dir))
    tracker.start(run_name_from_env(), {**tags, RUN_KEY_TAG: key.run_key}, flatten(params))
    return tracker, key


def log_outcome(tracker: Tracker, result: TrainResult, cfg: RunConfig, files: dict[str, Path]) -> None:
    """Labelled last/best summary metrics, the resolved config, dvc.lock and the checkpoints."""
    summary = result.summary
    final_step = max((row["step"] for row in result.history), default=0)
    for label in ("last", "best"):
        if label in summary:
            tracker.log_metrics({f"{label}/{k}": float(v) for k, v in summary[label].items()}, final_step)
    tracker.set_tags({"headline": summary["headline"]})
    with tempfile.TemporaryDirectory() as tmp:
        resolved = Path(tmp) / "resolved_config.json"
        write_json_atomic(resolved, dataclasses.asdict(cfg))
        tracker.log_artifact(resolved)
    if Path("dvc.lock").exists():
        tracker.log_artifact(Path("dvc.lock"))
    for name, path in files.items():
        tracker.log_artifact(path, "checkpoints" if name != "model" else None)


def write_outputs(
    result: TrainResult,
    cfg: RunConfig,
    model_path: Path,
    resume_dir: Path,
    history_path: Path,
    summary_path: Path,
) -> dict[str, Path]:
    """The model, the last/best exports, the history and the summary; returns the exports."""
    files = write_exports(result, cfg, model_path, resume_dir / "export")
    write_json_atomic(history_path, result.history)
    write_json_atomic(summary_path, result.summary)
    return files


def train_other_rank(cfg: RunConfig, data_dir: Path, resume_dir: Path, ranks: Ranks) -> None:
    """A rank other than 0: trains its share of every batch; writes and logs nothing."""
    train(cfg, data_dir, resume_dir, progress=False, ranks=ranks)
    distributed.stop()


@click.command()
@click.option("--params", "params_path", default="params.yaml")
@click.option("--data", "data_dir", default="data/processed", type=click.Path(file_okay=False))
@click.option("--model", "model_path", default="models/model.pt", type=click.Path(dir_okay=False))
@click.option("--resume", "resume_dir", default="checkpoints", type=click.Path(file_okay=False))
@click.option(
    "--history", "history_path", default="reports/train_history.json", type=click.Path(dir_okay=False)
)
@click.option(
    "--summary", "summary_path", default="reports/train_summary.json", type=click.Path(dir_okay=False)
)
@click.option(
    "--run-info", "run_info_path", default="reports/mlflow_run.json", type=click.Path(dir_okay=False)
)
@click.option("--progress/--no-progress", default=True)
@click.option(
    "--tracking/--no-tracking",
    default=True,
    help="Record the run in MLflow (default, as the pipeline does). --no-tracking: same training and "
    "files, no MLflow run, --run-info not written.",
)
def main(
    params_path: str,
    data_dir: str,
    model_path: str,
    resume_dir: str,
    history_path: str,
    summary_path: str,
    run_info_path: str,
    progress: bool,
    tracking: bool,
) -> None:
    try:
        ranks = distributed.ranks_from_environment()
        params = load_params(params_path)
        cfg = run_config_from(params)
        if not ranks.is_main:
            train_other_rank(cfg, Path(data_dir), Path(resume_dir), ranks)
            return
        tracker, key = start_tracking(params, cfg, Path(data_dir)) if tracking else (None, None)
    except (ConfigError, DataError, TrackingError, CheckpointError, OSError) as err:
        click.echo(f"train failed: {err}", err=True)
        sys.exit(1)
    outputs = (Path(model_path), Path(resume_dir), Path(history_path), Path(summary_path))
    sink = None
    if tracker is not None:
        assert tracker.run is not None and key is not None
        tracker.set_tags({"world_size": str(ranks.world_size)})
        # Written first: even a failed or killed training leads to its (FAILED/KILLED) run.
        write_json_atomic(Path(run_info_path), key.to_json())
        click.echo(f"MLflow run {tracker.run.run_id} ({tracker.run.run_name}) in {tracker.tracking_uri}")
        sink = tracker.log_metrics
    # Leaving the tracker's block by an exception (sys.exit included) ends the run FAILED or KILLED.
    with tracker if tracker is not None else nullcontext():
        try:
            result = train(
                cfg, Path(data_dir), Path(resume_dir), log=click.echo, progress=progress,
                metrics_sink=sink, ranks=ranks,
            )  # fmt: skip
        except (ConfigError, DataError, CheckpointError) as err:
            click.echo(f"train failed: {err}", err=True)
            sys.exit(1)
        files = write_outputs(result, cfg, *outputs)
        if tracker is not None:
            log_outcome(tracker, result, cfg, files)
    distributed.stop()
    if tracker is not None and tracker.dropped:
        click.echo(
            f"warning: {tracker.dropped} MLflow calls failed; the run in {tracker.tracking_uri} is incomplete"
        )
    click.echo(f"train done{'' if tracker is not None else ' (not tracked)'} -> {model_path}")


if __name__ == "__main__":
    main()
