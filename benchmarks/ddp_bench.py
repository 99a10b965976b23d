"""Training throughput of the train stage under torchrun (N CPU ranks, gloo) against one process.

    .venv/bin/python benchmarks/ddp_bench.py [--data data/processed] [--nproc 2] [--threads 1]
        [--params params.yaml]

Runs `stages.train` as a user would, with the params' model and data, for 2 epochs, once as one
process and once as `--nproc` torchrun ranks, and reads each epoch's training-loop time from the
MLflow run (`epoch_seconds`, logged after every epoch's loop; evaluation is not counted, and is
kept short: `monitor_scenes` 1). Seconds per optimiser step = the faster epoch's time / steps per
epoch. Prints both and the speed-up (1-process time / N-rank time); both run here, one after the
other, on the same machine. Every rank gets `--threads` torch threads: keep nproc x threads <=
cores, or the ranks only take cores from one another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]


def stage_cmd(params: Path, data: Path, out: Path) -> list[str]:
    return [
        "-m", "stages.train", "--params", str(params), "--data", str(data),
        "--model", str(out / "model.pt"), "--resume", str(out / "checkpoints"),
        "--history", str(out / "history.json"), "--summary", str(out / "summary.json"),
        "--run-info", str(out / "mlflow_run.json"), "--no-progress",
    ]  # fmt: skip


def seconds_per_step(
    params: Path, data: Path, out: Path, nproc: int, env: dict[str, str], steps: int
) -> float:
    launcher = [sys.executable]
    if nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    proc = subprocess.run(
        launcher + stage_cmd(params, data, out), cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(f"train failed ({nproc} process(es)):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    run = json.loads((out / "mlflow_run.json").read_text())
    history = MlflowClient(run["tracking_uri"]).get_metric_history(run["run_id"], "epoch_seconds")
    epochs = [m.value for m in sorted(history, key=lambda m: m.step)]
    print(f"  {nproc} process(es): epochs took " + ", ".join(f"{s:.1f} s" for s in epochs))
    return min(epochs) / steps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO / "data/processed")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    if not (args.data / "scenes.parquet").exists():
        sys.exit(f"{args.data}: no processed dataset (scenes.parquet); run `make repro` or pass --data")
    base = yaml.safe_load(args.params.read_text())
    n_train = sum(
        1 for split in pq.read_table(args.data / "scenes.parquet")["split"].to_pylist() if split == "train"
    )
    batch = base["train"]["batch_size"]
    steps_per_epoch = -(-n_train // batch)
    print(
        f"{n_train} training scenes, batch {batch} -> {steps_per_epoch} steps per epoch; "
        f"mode {base['train']['mode']}, {args.threads} thread(s) per process, {os.cpu_count()} CPUs"
    )
    per_step: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
        for nproc in (1, args.nproc):
            train = {
                **base["train"],
                "epochs": 2,
                "eval_every": 1,
                "monitor_scenes": 1,
                "threads": args.threads,
            }
            path = tmp / f"params-{nproc}.yaml"
            path.write_text(yaml.safe_dump({**base, "train": train}))
            per_step[nproc] = seconds_per_step(
                path, args.data, tmp / f"out-{nproc}", nproc, env, steps_per_epoch
            )
    one, many = per_step[1], per_step[args.nproc]
    print(f"seconds per step: 1 process {one:.3f}, {args.nproc} ranks {many:.3f}")
    print(f"speed-up {one / many:.2f}x with {args.nproc} ranks (ideal {args.nproc:.0f}x)")


if __name__ == "__main__":
    main()
