"""pipeline.tracking against a real MLflow sqlite store in a temporary directory (no mocks).

Creating a sqlite store runs MLflow's schema migrations (1.5-4 s here), so they run once per
module: the tests that only need a healthy store share one project, and the test that breaks its
store gets a copy of the same empty database.
"""

from __future__ import annotations

import hashlib
import math
import multiprocessing
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipeline.tracking import (
    RUN_KEY_TAG,
    RunInfo,
    RunKey,
    Tracker,
    TrackingError,
    default_artifact_root,
    find_run,
    redact_params,
    resolve_tracking_uri,
    run_name_from_env,
    run_tags,
)


class Messages(list[str]):
    """Collects what the tracker reports through its `log` callback."""

    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An mlflow.db with MLflow's schema and no runs; copying it skips the migrations."""
    root = tmp_path_factory.mktemp("template")
    MlflowClient(tracking_uri=resolve_tracking_uri(root, env={}))  # creates the schema
    return root / "mlflow.db"


def project_with_store(root: Path, empty_store: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(empty_store, root / "mlflow.db")
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Path:
    return project_with_store(tmp_path_factory.mktemp("project"), empty_store)


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from a directory that is not the project, as a queued DVC experiment does."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def make_tracker(project: Path, experiment: str, log: Messages | None = None) -> Tracker:
    uri = resolve_tracking_uri(project, env={})
    return Tracker(
        uri, experiment, default_artifact_root(uri, project), log=Messages() if log is None else log
    )


# --- where runs go ---------------------------------------------------------------------------


def test_default_uri_is_absolute_whatever_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(Path("proj"))
    assert uri == f"sqlite:///{tmp_path.resolve()}/proj/mlflow.db"
    monkeypatch.chdir("/")
    assert resolve_tracking_uri(tmp_path / "proj", env={}) == uri


def test_env_uri_overrides_and_relative_sqlite_is_anchored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path.resolve()
    monkeypatch.chdir("/")
    assert resolve_tracking_uri(tmp_path, {"MLFLOW_TRACKING_URI": "sqlite:////srv/m.db"}) == (
        "sqlite:////srv/m.db"
    )
    assert resolve_tracking_uri(tmp_path, {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}) == (
        f"sqlite:///{root}/mlflow.db"
    )
    assert resolve_tracking_uri(tmp_path, {"MLFLOW_TRACKING_URI": "sqlite:///db/m.db?timeout=30"}) == (
        f"sqlite:///{root}/db/m.db?timeout=30"
    )
    for passthrough in ("http://mlflow.lab:5000", "file:///srv/mlruns", "postgresql://db/mlflow"):
        assert resolve_tracking_uri(tmp_path, {"MLFLOW_TRACKING_URI": passthrough}) == passthrough
    assert resolve_tracking_uri(tmp_path, {"MLFLOW_TRACKING_URI": " "}) == f"sqlite:///{root}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_artifact_root_beside_a_sqlite_store_only(tmp_path: Path):
    assert default_artifact_root("sqlite:////x/mlflow.db", tmp_path) == (tmp_path / "mlartifacts").as_uri()
    assert default_artifact_root("http://127.0.0.1:5000", tmp_path) is None


def test_run_name_from_env():
    assert run_name_from_env({"DVC_EXP_NAME": "exp-1a2b3"}) == "exp-1a2b3"
    assert run_name_from_env({"DVC_EXP_NAME": ""}) is None
    assert run_name_from_env({}) is None


# --- a run, read back through a fresh client -------------------------------------------------


def test_full_run_is_stored_and_read_back(project: Path, elsewhere: Path, tmp_path: Path):
    log = Messages()
    tracker = make_tracker(project, "full", log)
    params = {f"section{i % 7}.p{i}": i * 0.5 for i in range(148)}
    params["data.source"] = "https://mirror.example/scannet?token=abc123"
    params["long"] = "x" * 7000  # over MLflow's 6000-character limit
    tags = {"mode": "box", "data_hash": "d41d8cd9"}

    info = tracker.start(run_name_from_env({"DVC_EXP_NAME": "exp-full"}), tags, params)
    tracker.log_metrics({"loss": 1.0, "aux0/bce": 0.7, "ap@50": 0.1}, step=0)
    tracker.log_metrics({"loss": 0.5, "aux0/bce": float("nan")}, step=1)
    tracker.log_metrics({"loss": 0.25}, step=2)
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"\x00weights\xff" * 100)
    tracker.log_artifact(checkpoint, "checkpoints")
    tracker.end()
    tracker.end()  # idempotent
    assert tracker.dropped == 0

    client = MlflowClient(tracking_uri=info.tracking_uri)
    run = client.get_run(info.run_id)
    assert info.run_name == run.info.run_name == "exp-full"
    assert run.info.status == "FINISHED"
    assert info.tracking_uri == f"sqlite:///{project.resolve()}/mlflow.db"
    assert info.to_json() == {
        "run_id": info.run_id,
        "experiment_id": info.experiment_id,
        "run_name": "exp-full",
        "tracking_uri": info.tracking_uri,
    }
    assert {k: run.data.tags[k] for k in tags} == tags

    stored = run.data.params
    assert len(stored) == 150
    assert all(stored[k] == str(v) for k, v in params.items() if k not in ("data.source", "long"))
    assert stored["data.source"] == "https://mirror.example/scannet"
    assert len(stored["long"]) == 6000
    assert stored["long"].endswith("[truncated from 7000 characters]")
    assert any("long" in m and "truncated" in m for m in log)

    history = sorted(client.get_metric_history(info.run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(0, 1.0), (1, 0.5), (2, 0.25)]
    bce = sorted(client.get_metric_history(info.run_id, "aux0/bce"), key=lambda m: m.step)
    assert bce[0].value == 0.7
    assert math.isnan(bce[1].value)
    assert [m.value for m in client.get_metric_history(info.run_id, "ap_50")] == [0.1]

    assert [a.path for a in client.list_artifacts(info.run_id, "checkpoints")] == ["checkpoints/model.pt"]
    local = Path(client.download_artifacts(info.run_id, "checkpoints/model.pt", str(tmp_path)))
    assert local.read_bytes() == checkpoint.read_bytes()
    stored_files = list((project / "mlartifacts").rglob("model.pt"))
    assert len(stored_files) == 1
    assert stored_files[0].read_bytes() == checkpoint.read_bytes()
    assert not (elsewhere / "mlruns").exists()
    assert not (elsewhere / "mlflow.db").exists()


def test_two_runs_in_one_experiment_are_distinct(project: Path):
    first = make_tracker(project, "pair")
    second = make_tracker(project, "pair")
    with first:
        a = first.start(None, {}, {"lr": 0.1})
    with second:
        b = second.start(None, {}, {"lr": 0.2})
    assert a.experiment_id == b.experiment_id
    assert a.run_id != b.run_id
    assert a.run_name and b.run_name  # generated by MLflow


def test_a_run_is_found_by_its_key_latest_first(project: Path, tmp_path: Path):
    """reports/mlflow_run.json holds a run key, not MLflow's random id: the same inputs give the
    same file. The latest run carrying the key is the one found; other keys and experiments are
    not mixed in, and a missing sqlite store is not created by looking."""
    uri = resolve_tracking_uri(project, env={})
    key = RunKey("keyed", "f1ngerpr1nt")
    assert find_run(uri, key) is None  # no such experiment yet
    started = []
    for tag in ("f1ngerpr1nt", "other", "f1ngerpr1nt"):
        with make_tracker(project, "keyed") as tracker:
            started.append(tracker.start(None, {RUN_KEY_TAG: tag}, {}))
    with make_tracker(project, "elsewhere") as tracker:
        tracker.start(None, {RUN_KEY_TAG: "f1ngerpr1nt"}, {})  # same key, other experiment
    assert find_run(uri, key) == started[2]
    assert find_run(uri, RunKey("keyed", "other")) == started[1]
    assert find_run(uri, RunKey("keyed", "never")) is None

    assert RunKey.from_json(key.to_json(), "mlflow_run.json") == key
    with pytest.raises(TrackingError, match=r"old\.json: expected the train stage's run key"):
        RunKey.from_json({"run_id": "abc", "tracking_uri": uri}, "old.json")  # the former format
    missing = tmp_path / "none" / "mlflow.db"
    assert find_run(f"sqlite:///{missing}", key) is None and not missing.parent.exists()
    garbage = tmp_path / "garbage.db"
    garbage.write_text("not a database\n" * 100)
    with pytest.raises(TrackingError, match="unreadable"):
        find_run(f"sqlite:///{garbage}", key)


def test_exit_with_an_exception_marks_the_run_failed(project: Path):
    client = MlflowClient(tracking_uri=resolve_tracking_uri(project, env={}))
    with pytest.raises(ZeroDivisionError), make_tracker(project, "exit") as tracker:
        failed = tracker.start(None, {}, {})
        _ = 1 / 0
    with pytest.raises(KeyboardInterrupt), make_tracker(project, "exit") as tracker:
        killed = tracker.start(None, {}, {})
        raise KeyboardInterrupt
    # The train stage's sys.exit(1) on a training error leaves through the same path.
    with pytest.raises(SystemExit), make_tracker(project, "exit") as tracker:
        exited = tracker.start(None, {}, {})
        sys.exit(1)
    assert client.get_run(failed.run_id).info.status == "FAILED"
    assert client.get_run(killed.run_id).info.status == "KILLED"
    assert client.get_run(exited.run_id).info.status == "FAILED"


def test_calls_outside_a_started_run_are_refused(project: Path):
    tracker = make_tracker(project, "misuse")
    with pytest.raises(RuntimeError, match="start"):
        tracker.log_metrics({"loss": 1.0}, step=0)
    tracker.end()  # nothing to end: no error
    tracker.start(None, {}, {})
    with pytest.raises(RuntimeError, match="twice"):
        tracker.start(None, {}, {})
    with pytest.raises(ValueError, match="FINISHED"):
        tracker.end("DONE")
    tracker.end()


def _start_a_run_when_all_are_ready(uri: str, artifact_root: str, barrier, results) -> None:
    """One queued experiment's train stage, as far as the store is concerned."""
    barrier.wait()
    try:
        with Tracker(uri, "beep3d", artifact_root, log=Messages()) as tracker:
            tracker.start(None, {}, {"lr": 0.1})
        results.put("ok")
    except Exception as err:  # reported to the test, which names it
        results.put(f"{type(err).__name__}: {err}")


def test_parallel_trainings_can_create_a_new_store_together(tmp_path: Path):
    # `dvc queue start -j 3` on a project with no mlflow.db yet: every worker's train stage opens
    # the missing store at the same moment. Without the store lock, each one runs MLflow's schema
    # migrations and some fail ("duplicate column name: step", or an alembic row mismatch).
    uri = resolve_tracking_uri(tmp_path, env={})
    artifact_root = default_artifact_root(uri, tmp_path)
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(3), spawn.Queue()
    workers = [
        spawn.Process(target=_start_a_run_when_all_are_ready, args=(uri, artifact_root, barrier, results))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes == ["ok"] * 3
    assert len(MlflowClient(tracking_uri=uri).search_runs([find_experiment_id(uri, "beep3d")])) == 3


def find_experiment_id(uri: str, name: str) -> str:
    experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    assert experiment is not None
    return experiment.experiment_id


# --- failures --------------------------------------------------------------------------------


def test_unreachable_sqlite_store_fails_at_start(tmp_path: Path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    uri = f"sqlite:///{blocker}/x/mlflow.db"  # its directory cannot be created, not even by root
    tracker = Tracker(uri, "beep3d", None, log=Messages())
    with pytest.raises(TrackingError) as caught:
        tracker.start(None, {}, {"lr": 0.1})
    assert repr(uri) in str(caught.value)


def test_unreachable_server_fails_at_start(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(TrackingError, match="unavailable") as caught:
        Tracker(uri, "beep3d", None, log=Messages()).start(None, {}, {})
    assert uri in str(caught.value)


def test_store_lost_mid_run_drops_calls_and_warns_rarely(tmp_path: Path, empty_store: Path):
    store = project_with_store(tmp_path / "store", empty_store)
    log = Messages()
    tracker = make_tracker(store, "lost", log)
    tracker.start(None, {}, {"lr": 0.1})
    tracker.log_metrics({"loss": 1.0}, step=0)
    shutil.rmtree(store)  # the sqlite file and its directory vanish under the open connection

    for step in range(1, 4):
        tracker.log_metrics({"loss": 1.0 / step}, step=step)
    tracker.set_tags({"note": "still going"})
    assert tracker.dropped == 4
    warnings = [m for m in log if m.startswith("warning")]
    assert len(warnings) == 1
    assert repr(tracker.tracking_uri) in warnings[0]
    assert "log_metrics at step 1" in warnings[0]
    assert "readonly database" in warnings[0]

    # The artifact copy recreates its directory and succeeds; that says nothing about the store.
    artifact = tmp_path / "a.txt"
    artifact.write_text("a")
    tracker.log_artifact(artifact)
    assert tracker.dropped == 4
    assert not any("works again" in m for m in log)

    while tracker.dropped < 101:  # every call is retried, and warned about once per 100 failures
        tracker.log_metrics({"loss": 0.0}, step=tracker.dropped)
    assert len([m for m in log if m.startswith("warning")]) == 2
    tracker.end()
    tracker.end()  # the failed end may be retried
    assert tracker.dropped == 103


def test_each_outage_is_warned_and_recovery_reported(project: Path):
    # A value MLflow cannot take stands in for a passing outage: the same path drops the call.
    log = Messages()
    tracker = make_tracker(project, "recover", log)
    info = tracker.start(None, {}, {})
    tracker.log_metrics({"loss": "not a number"}, step=0)  # type: ignore[dict-item]
    tracker.log_metrics({"loss": 0.5}, step=1)
    tracker.log_metrics({"loss": None}, step=2)  # type: ignore[dict-item]
    tracker.end()
    assert tracker.dropped == 2
    assert [m.split(" ", 1)[0] for m in log] == ["warning:", "MLflow", "warning:", "MLflow"]
    assert "works again" in log[1]
    history = MlflowClient(tracking_uri=info.tracking_uri).get_metric_history(info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 0.5)]


# --- what gets logged ------------------------------------------------------------------------


def test_redact_params_hides_credentials_only():
    params = {
        "data.url": "https://user:pa55@host.example:8443/scans/x.zip?token=t0k&x=1",
        "data.mirror": "https://host.example/scans?sig=abcdef",
        "data.mirrors": ["https://host.example/a?sig=s1", "https://plain.example/b"],
        "db.password": "hunter2",
        "hf_token": "hf_abc",
        "api_key": "sk-123",
        "empty_secret": "",
        "query_pool_k": 8,
        "max_tokens": 512,
        "data.public": "https://plain.example/scans/x.zip",
        "lr": 0.001,
    }
    safe = redact_params(params)
    assert safe["data.url"] == "https://host.example:8443/scans/x.zip"
    assert safe["data.mirror"] == "https://host.example/scans"
    assert safe["data.mirrors"] == "['https://host.example/a', 'https://plain.example/b']"
    assert safe["db.password"] == safe["hf_token"] == safe["api_key"] == "***"
    assert safe["empty_secret"] == ""
    for ordinary in ("query_pool_k", "max_tokens", "data.public", "lr"):
        assert safe[ordinary] == params[ordinary]
    assert "pa55" not in str(safe) and "t0k" not in str(safe) and "hunter2" not in str(safe)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_run_tags_in_a_git_repo(tmp_path: Path):
    lock = b"schema: '2.0'\nstages: {}\n"
    (tmp_path / "dvc.lock").write_bytes(lock)
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "dvc.lock")
    git(tmp_path, "commit", "-qm", "lock")
    env = {"DVC_EXP_BASELINE_REV": "abc123", "DVC_EXP_NAME": "exp-x"}

    tags = run_tags(tmp_path, "box", "synthetic", "h4sh", env=env)
    assert tags == {
        "git_commit": git(tmp_path, "rev-parse", "HEAD"),
        "git_dirty": "false",
        "dvc_baseline_rev": "abc123",
        "dvc_exp_name": "exp-x",
        "dvc_lock_sha256": hashlib.sha256(lock).hexdigest(),
        "data_hash": "h4sh",
        "mode": "box",
        "data_source": "synthetic",
    }
    (tmp_path / "dvc.lock").write_bytes(lock + b"# edited\n")
    (tmp_path / "untracked.txt").write_text("ignored by git_dirty")
    assert run_tags(tmp_path, "box", "synthetic", "h4sh", env=env)["git_dirty"] == "true"


def test_run_tags_outside_git_never_raise(tmp_path: Path):
    tags = run_tags(tmp_path, "mask", "https://u:p@host.example/d?sig=1", "h", env={})
    assert tags["git_commit"] == "unknown"
    assert tags["dvc_lock_sha256"] == tags["dvc_baseline_rev"] == tags["dvc_exp_name"] == ""
    assert tags["data_source"] == "https://host.example/d"


def test_run_info_is_frozen():
    info = RunInfo("r", "e", "n", "sqlite:////x")
    with pytest.raises(AttributeError):
        info.run_id = "other"  # type: ignore[misc]
