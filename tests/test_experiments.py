"""`dvc exp run` and the experiment queue on a fresh git + DVC repo, each experiment its own
MLflow run in the project's store (not in the queue's temporary copy)."""

from __future__ import annotations

import json
import time

import pytest
from mlflow.tracking import MlflowClient
from test_pipeline_dvc import tiny

pytestmark = pytest.mark.slow


def mlflow_runs(root) -> dict[str, dict[str, str]]:
    """run name -> params of every run in the project's store."""
    client = MlflowClient(f"sqlite:///{root.resolve() / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {r.info.run_name: {**r.data.params, "_status": r.info.status} for r in runs}


def wait_for_queue(project_copy, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = project_copy.dvc("queue", "status").stdout
        if not any(word in status for word in ("Queued", "Running")):
            return
        time.sleep(3)
    raise AssertionError(f"queue did not finish in {timeout} s:\n{status}")


def test_exp_run_and_queue_each_become_an_mlflow_run(project_copy):
    params = tiny(project_copy.params())
    params["train"]["epochs"] = 1
    project_copy.set_params(params)
    project_copy.commit("tiny params")
    root = project_copy.root

    project_copy.dvc("exp", "run", "-n", "ema-direct", "-S", "train.ema=0.99", timeout=900)
    runs = mlflow_runs(root)
    assert runs["ema-direct"]["train.ema"] == "0.99" and runs["ema-direct"]["_status"] == "FINISHED"

    project_copy.dvc("exp", "run", "--queue", "-S", "train.ema=0.9,0.95")
    project_copy.dvc("queue", "start")
    wait_for_queue(project_copy)
    runs = mlflow_runs(root)
    exps = json.loads(project_copy.dvc("exp", "show", "--json").stdout)
    names = {}
    for rev in exps:
        for exp in rev.get("experiments") or []:
            for revision in exp.get("revs", []):
                ema = revision["data"]["params"]["params.yaml"]["data"]["train"]["ema"]
                names[revision["name"]] = ema
    queued = {name: ema for name, ema in names.items() if ema in (0.9, 0.95)}
    assert sorted(queued.values()) == [0.9, 0.95], names
    for name, ema in queued.items():
        assert runs[name]["train.ema"] == str(ema) and runs[name]["_status"] == "FINISHED"
    # The queue ran in temporary copies, yet nothing was tracked there.
    assert not list((root / ".dvc" / "tmp" / "exps").rglob("mlflow.db"))
