"""DVC stage `report`: one markdown report of the run, with figures and DVC plot tables.

    python -m stages.report --params params.yaml --data data/processed --reports reports \\
        --out reports/report.md --figures reports/figures --plots reports/plots \\
        --teacher checkpoints/export/last_teacher.pt

Reads from --reports: metrics.json, submission/ (evaluate), train_history.json,
train_summary.json, mlflow_run.json (train); from --data: scenes.parquet, stats.json and the
val/train points; params section `train`. Also reads, for context only, the MLflow store (resolved
as the train stage resolves it; the training's run found by the key in mlflow_run.json; all
finished runs of the experiment) and git (commit, params defaults); what is
missing there becomes a note in the report. Writes report.md, the figures folder (rebuilt
whole) and losses.csv / val_map.csv / pseudo_iou.csv under --plots (pipeline/report.py).

Exits 1 with a message when a required input is missing or when an evaluated scene is in the
training split.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import torch

from beep3d.errors import DataError
from pipeline.checkpoint import CheckpointError
from pipeline.config import ConfigError, load_params, section
from pipeline.report import ReportError, ReportPaths, build_report


@click.command()
@click.option("--params", "params_path", default="params.yaml", type=click.Path(dir_okay=False))
@click.option("--data", "data_dir", default="data/processed", type=click.Path(file_okay=False))
@click.option("--reports", "reports_dir", default="reports", type=click.Path(file_okay=False))
@click.option("--out", "out_path", default="reports/report.md", type=click.Path(dir_okay=False))
@click.option("--figures", "figures_dir", default="reports/figures", type=click.Path(file_okay=False))
@click.option("--plots", "plots_dir", default="reports/plots", type=click.Path(file_okay=False))
@click.option(
    "--teacher",
    "teacher_path",
    default="checkpoints/export/last_teacher.pt",
    type=click.Path(dir_okay=False),
    help="EMA teacher export (beep3d mode); the pseudo-mask figure is skipped when absent",
)
def main(
    params_path: str,
    data_dir: str,
    reports_dir: str,
    out_path: str,
    figures_dir: str,
    plots_dir: str,
    teacher_path: str,
) -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    paths = ReportPaths(
        params=Path(params_path),
        data=Path(data_dir),
        reports=Path(reports_dir),
        out=Path(out_path),
        figures=Path(figures_dir),
        plots=Path(plots_dir),
        teacher=Path(teacher_path),
        # Inside a queued `dvc exp run` the cwd is a copy that is itself a git checkout of the
        # experiment, which is what the provenance should describe.
        project_root=Path.cwd(),
    )
    try:
        params = load_params(params_path)
        threads = int(section(params, "train.threads"))
        if threads > 0:  # the teacher figure runs the model; 0 = torch's default, as in training
            torch.set_num_threads(threads)
        build_report(paths, params)
    except (ReportError, ConfigError, DataError, CheckpointError) as err:
        click.echo(f"report failed: {err}", err=True)
        sys.exit(1)
    click.echo(f"report -> {out_path} (figures in {figures_dir}, plot tables in {plots_dir})")


if __name__ == "__main__":
    main()
