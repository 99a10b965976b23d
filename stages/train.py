"""DVC stage `train`: train the model on data/processed and write the final weights.

    python -m stages.train --params params.yaml --data data/processed \
        --model models/model.pt --resume checkpoints --history reports/train_history.json

A killed run re-run with the same params resumes from `checkpoints/` (see pipeline/training.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from beep3d.errors import DataError
from beep3d.io import write_json_atomic
from pipeline.checkpoint import CheckpointError
from pipeline.config import ConfigError, build, load_params
from pipeline.training import RunConfig, save_model, train


def load_run_config(params_path: str) -> RunConfig:
    params = load_params(params_path)
    sections = {k: params.get(k) for k in ("model", "data_loader", "train", "inference")}
    return build(RunConfig, sections, "params")


@click.command()
@click.option("--params", "params_path", default="params.yaml")
@click.option("--data", "data_dir", default="data/processed", type=click.Path(file_okay=False))
@click.option("--model", "model_path", default="models/model.pt", type=click.Path(dir_okay=False))
@click.option("--resume", "resume_dir", default="checkpoints", type=click.Path(file_okay=False))
@click.option(
    "--history", "history_path", default="reports/train_history.json", type=click.Path(dir_okay=False)
)
@click.option("--progress/--no-progress", default=True)
def main(
    params_path: str, data_dir: str, model_path: str, resume_dir: str, history_path: str, progress: bool
) -> None:
    try:
        cfg = load_run_config(params_path)
        model, history, class_set = train(
            cfg, Path(data_dir), Path(resume_dir), log=click.echo, progress=progress
        )
    except (ConfigError, DataError, CheckpointError) as err:
        click.echo(f"train failed: {err}", err=True)
        sys.exit(1)
    save_model(Path(model_path), model, cfg, class_set)
    write_json_atomic(Path(history_path), history)
    click.echo(f"train done -> {model_path}")


if __name__ == "__main__":
    main()
