"""The data behind MLflow's compare view: a real `mlflow server` on 127.0.0.1 over a store with
runs from two experiments lists both runs, their params and metrics, through its REST API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.tracking import Tracker

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_server_lists_runs_of_two_experiments_with_params_and_metrics(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    artifacts = (tmp_path / "mlartifacts").as_uri()
    made = {}
    for experiment, mode, value in (("beep3d", "beep3d", 0.12), ("beep3d-ablation", "box_heuristic", 0.09)):
        tracker = Tracker(uri, experiment, artifacts, log=lambda _: None)
        info = tracker.start(f"run-{mode}", {"mode": mode}, {"train.mode": mode, "train.ema": 0.999})
        tracker.log_metrics({"evaluate/val_mAP": value}, 0)
        tracker.end()
        made[info.run_id] = (experiment, mode, value)

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", uri,
         "--default-artifact-root", artifacts, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/2.0/mlflow"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                experiments = post(f"{base}/experiments/search", {"max_results": 100})["experiments"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mlflow server did not come up:\n{server.stderr.read()}") from None
                time.sleep(0.5)
        ids = {e["name"]: e["experiment_id"] for e in experiments}
        assert {"beep3d", "beep3d-ablation"} <= set(ids)
        runs = post(f"{base}/runs/search", {"experiment_ids": [ids["beep3d"], ids["beep3d-ablation"]]})[
            "runs"
        ]
        listed = {}
        for run in runs:
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            listed[run["info"]["run_id"]] = (params, metrics)
        assert set(listed) == set(made)
        for run_id, (_, mode, value) in made.items():
            params, metrics = listed[run_id]
            assert params["train.mode"] == mode and params["train.ema"] == "0.999"
            assert metrics["evaluate/val_mAP"] == pytest.approx(value)
    finally:
        server.terminate()
        server.wait(timeout=30)
