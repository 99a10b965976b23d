"""The paired mode comparison: its statistics on hand-made numbers, the run selection, the queue
plumbing on recorded `dvc queue status` texts, the command on a real sqlite MLflow store and,
marked slow, `--run` with a real DVC queue."""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from pipeline.compare import (
    DEFAULT_MODES,
    EXPERIMENT,
    CompareError,
    MeanInterval,
    PlannedRun,
    Selection,
    comparison_text,
    expected_params,
    experiment_name,
    pair_on_seed,
    parse_modes,
    parse_overrides,
    parse_queue_status,
    pooled_std,
    pseudo_metrics,
    select_runs,
    t_quantile,
    wait_for_queue,
)
from pipeline.config import load_params
from pipeline.report import TrackedRun

REPO = Path(__file__).resolve().parents[1]
T_975 = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105, 30: 2.042272456}  # printed t tables


def params() -> dict:
    return load_params(REPO / "params.yaml")


def run(name: str, mode: str, seed: int, mAP: float | None = 0.2, t0: int = 0, **changes: str) -> TrackedRun:
    logged = {**expected_params(params(), {}), "train.mode": mode, "train.seed": str(seed), **changes}
    metrics = {} if mAP is None else {"evaluate/val_mAP": mAP, "evaluate/val_AP50": 2 * mAP}
    return TrackedRun(f"id-{name}", name, t0, logged, metrics, {"mode": mode})


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("df", sorted(T_975))
def test_t_quantile_matches_printed_tables(df):
    assert t_quantile(df) == pytest.approx(T_975[df], abs=1e-6)


def test_paired_differences_use_only_seeds_both_modes_have():
    a = {"0": 0.50, "1": 0.60, "2": 0.70, "3": None}
    b = {"0": 0.40, "1": 0.45, "2": 0.50, "4": 0.30}
    pm = pair_on_seed("mAP", a, b)
    assert pm.seeds == ("0", "1", "2")  # 3 has no finite value in A, 4 is not in A
    d = pm.difference
    assert d.values == pytest.approx((0.10, 0.15, 0.20))
    assert d.mean == pytest.approx(0.15) and d.std == pytest.approx(0.05)
    # 95 % half-width, t(0.975, 2) = 4.3027: 4.3027 * 0.05 / sqrt(3) = 0.12421
    assert d.half_width == pytest.approx(0.124207, abs=1e-6)
    assert d.resolved is True  # [0.026, 0.274] excludes 0


def test_seed_order_is_numeric():
    pm = pair_on_seed("mAP", {"10": 1.0, "2": 2.0}, {"10": 0.0, "2": 1.0})
    assert pm.seeds == ("2", "10") and pm.difference.values == (1.0, 1.0)


def test_an_interval_that_includes_zero_is_not_resolved():
    d = MeanInterval((0.05, -0.03, 0.04), 0.0)
    # mean 0.02, std 0.04359, half-width 4.3027 * 0.04359 / sqrt(3) = 0.1083 > 0.02
    assert d.half_width == pytest.approx(4.302652730 * statistics.stdev(d.values) / math.sqrt(3))
    assert d.resolved is False


def test_one_seed_cannot_resolve_anything():
    d = MeanInterval((0.3,), 0.0)
    assert d.resolved is None and math.isnan(d.half_width) and math.isnan(d.std)


def test_ratio_is_resolved_against_one():
    pm = pair_on_seed("mAP", {"0": 0.19, "1": 0.18, "2": 0.19}, {"0": 0.26, "1": 0.28, "2": 0.28})
    r = pm.ratio
    assert r.values == pytest.approx((0.19 / 0.26, 0.18 / 0.28, 0.19 / 0.28))
    assert r.null == 1.0 and r.resolved is True
    assert pair_on_seed("mAP", {"0": 0.1}, {"0": 0.0}).ratio is None  # no ratio over a zero


def test_pooled_std_and_the_two_pooled_std_criterion():
    pm = pair_on_seed("AP50", {"0": 0.50, "1": 0.60, "2": 0.70}, {"0": 0.40, "1": 0.45, "2": 0.50})
    # s_A = 0.1, s_B = 0.05: pooled sqrt((0.01 + 0.0025) / 2) = 0.0790569
    assert pm.pooled_std == pytest.approx(0.0790569, abs=1e-7)
    # mean difference 0.15 < 2 * 0.079: not separated by the seed spread, although the paired
    # t-interval resolves it (the seeds move both modes together).
    assert pm.beyond_two_pooled_std is False and pm.difference.resolved is True
    far = pair_on_seed("AP50", {"0": 0.60, "1": 0.61, "2": 0.62}, {"0": 0.40, "1": 0.41, "2": 0.42})
    assert far.beyond_two_pooled_std is True  # 0.2 > 2 * 0.01
    assert pooled_std([1.0, 2.0, 3.0], [1.0, 3.0]) == pytest.approx(math.sqrt((2 * 1.0 + 1 * 2.0) / 3))
    assert math.isnan(pooled_std([1.0], [1.0, 2.0]))


# --------------------------------------------------------------------------- selection


def test_select_runs_pairs_matching_runs_and_says_what_it_left_out():
    runs = [
        run("b0-old", "beep3d", 0, 0.10, t0=1),
        run("b0", "beep3d", 0, 0.20, t0=2),
        run("b1", "beep3d", 1, 0.21, t0=3, **{"train.threads": "2"}),  # execution-only: still compared
        run("b2-ema", "beep3d", 2, 0.30, **{"train.ema": "0.99"}),
        run("b2-noeval", "beep3d", 2, None),
        run("f0", "full", 0, 0.30),
        run("h0", "box_heuristic", 0, 0.25),  # a mode not compared here: ignored
    ]
    sel = select_runs(runs, expected_params(params(), {}), ["beep3d", "full"])
    assert sel.seeds == ("0", "1")
    assert sel.used[("beep3d", "0")].name == "b0" and sel.used[("beep3d", "1")].name == "b1"
    assert sel.missing("beep3d") == [] and sel.missing("full") == ["1"]
    why = {r.name: reason for r, reason in sel.left_out}
    assert set(why) == {"b0-old", "b2-ema", "b2-noeval"}
    assert "train.ema=0.99 (here 0.999)" in why["b2-ema"]
    assert "evaluate/val_mAP" in why["b2-noeval"]
    assert "newer run" in why["b0-old"] and "b0" in why["b0-old"]


def test_select_runs_with_overrides_and_requested_seeds():
    p = params()
    overrides = parse_overrides(["train.ema=0.99", "model.widths=[8, 16]"], p)
    assert overrides == {"train.ema": 0.99, "model.widths": [8, 16]}
    expected = expected_params(p, overrides)
    runs = [
        run("b0-default", "beep3d", 0),
        run("b0", "beep3d", 0, **{"train.ema": "0.99", "model.widths": "[8, 16]"}),
        run("b7", "beep3d", 7, **{"train.ema": "0.99", "model.widths": "[8, 16]"}),
    ]
    sel = select_runs(runs, expected, ["beep3d", "full"], seeds=["0", "1"])
    assert sel.seeds == ("0", "1") and sel.used[("beep3d", "0")].name == "b0"
    assert sel.missing("beep3d") == ["1"] and sel.missing("full") == ["0", "1"]
    why = {r.name: reason for r, reason in sel.left_out}
    assert "seed 7 not asked for" in why["b7"] and "train.ema=0.999 (here 0.99)" in why["b0-default"]


def test_two_stage_params_count_for_two_stage_runs_only():
    """`train.two_stage.*` is read by two_stage alone: beep3d runs logged before the key existed
    (or with another value) stay comparable, a two_stage run with another value does not."""
    p = params()
    expected = expected_params(p, parse_overrides(["train.two_stage.labeler_epochs=5"], p))
    old = run("b0-old", "beep3d", 0)
    old.params.pop("train.two_stage.labeler_epochs")
    runs = [
        old,
        run("b1", "beep3d", 1),  # logged the default: not read in beep3d mode
        run("t0", "two_stage", 0, **{"train.two_stage.labeler_epochs": "5"}),
        run("t1", "two_stage", 1),  # the default labeler epochs, not the 5 asked for
    ]
    sel = select_runs(runs, expected, ["beep3d", "two_stage"])
    assert sel.used[("beep3d", "0")].name == "b0-old" and sel.used[("beep3d", "1")].name == "b1"
    assert sel.used[("two_stage", "0")].name == "t0" and sel.missing("two_stage") == ["1"]
    why = {r.name: reason for r, reason in sel.left_out}
    default = p["train"]["two_stage"]["labeler_epochs"]
    assert set(why) == {"t1"} and f"train.two_stage.labeler_epochs={default} (here 5)" in why["t1"]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("train.emaa=0.9", "train.emaa"),
        ("train.mode=full", "--modes"),
        ("train.seed=3", "--seeds"),
        ("train.optim=1", "section"),
        ("train.ema", "key=value"),
    ],
)
def test_bad_overrides_are_refused_with_the_reason(item, message):
    with pytest.raises(CompareError, match=message):
        parse_overrides([item], params())


def test_pseudo_metrics_lists_whichever_resolvers_were_logged():
    runs = [
        TrackedRun("a", "a", 0, {}, {"last/pseudo_smallest_box_iou_ambiguous": 0.5}, {}),
        TrackedRun(
            "b", "b", 0, {}, {"last/pseudo_teacher_iou_ambiguous": 0.6, "last/pseudo_x_iou_all": 1}, {}
        ),
    ]
    assert [label for _, label in pseudo_metrics(runs)] == ["teacher IoU amb.", "smallest_box IoU amb."]


def test_text_names_missing_seeds_and_unresolvable_pairs():
    runs = [run("b0", "beep3d", 0, 0.2), run("b1", "beep3d", 1, 0.3), run("f0", "full", 0, 0.4)]
    text = comparison_text(select_runs(runs, expected_params(params(), {}), ["beep3d", "full"]), "src")
    assert "| full | 0 | 1 | f0 (id-f0) |" in text
    assert "### beep3d − full: 1 paired seed(s) (0)" in text
    assert "n/a: 1 paired seed(s), needs 2" in text
    empty = Selection(("beep3d", "full"), ("0",), {("beep3d", "0"): runs[0]}, ())
    assert "No seed has an evaluated run of both modes" in comparison_text(empty, "src")


# --------------------------------------------------------------------------- queue plumbing


STATUS = """Task     Name             Created    Status
40e9601  beep3d-s0        06:04 PM   {a}
7bbc016  full-s0          06:04 PM   {b}
1111111  other            06:01 PM   Success

Worker status: 1 active, 0 idle
"""


def test_queue_status_is_parsed_and_waited_for():
    assert parse_queue_status(STATUS.format(a="Running", b="Queued")) == {
        "beep3d-s0": "Running",
        "full-s0": "Queued",
        "other": "Success",
    }
    texts = iter(
        [STATUS.format(a="Running", b="Queued")] * 2
        + [STATUS.format(a="Success", b="Running"), STATUS.format(a="Success", b="Failed")]
    )
    lines, sleeps = [], []
    final = wait_for_queue(["beep3d-s0", "full-s0"], lambda: next(texts), lines.append, 5.0, sleeps.append)
    assert final == {"beep3d-s0": "Success", "full-s0": "Failed"}
    assert sleeps == [5.0, 5.0, 5.0]
    assert [line.split("] ")[1] for line in lines] == [  # one line per change, not per poll
        "queue: 0/2 done (1 queued, 1 running)",
        "queue: 1/2 done (1 running, 1 success)",
        "queue: 2/2 done (1 failed, 1 success)",
    ]


def test_experiment_names_are_unique_and_carry_the_overrides():
    assert experiment_name("full", "2", [], set()) == "full-s2"
    assert experiment_name("full", "2", [], {"full-s2", "full-s2-2"}) == "full-s2-3"
    a = experiment_name("full", "2", ["train.ema=0.99", "train.epochs=2"], set())
    assert a == experiment_name("full", "2", ["train.epochs=2", "train.ema=0.99"], set())
    assert a.startswith("full-s2-") and len(a) == len("full-s2-") + 7
    assert PlannedRun("x", "full", "2").queue_args(["train.ema=0.99"], force=False) == [
        *("exp", "run", "--queue", "-n", "x"),
        *("-S", "train.mode=full", "-S", "train.seed=2", "-S", "train.ema=0.99"),
    ]


def test_experiment_and_modes_match_the_train_stage():
    from typing import get_args

    from beep3d.engine import Mode
    from stages.train import EXPERIMENT as TRAIN_EXPERIMENT

    assert EXPERIMENT == TRAIN_EXPERIMENT
    # The default comparison is the three single-stage modes; two_stage (a labeler trained first,
    # two trainings in one run) joins with --modes.
    assert DEFAULT_MODES == ("beep3d", "box_heuristic", "full")
    assert set(DEFAULT_MODES) < set(get_args(Mode))
    assert parse_modes("beep3d,two_stage") == ["beep3d", "two_stage"]


# --------------------------------------------------------------------------- a real store

MAPS = {  # mode -> seed -> (mAP, AP50, AP25)
    "beep3d": {0: (0.191, 0.406, 0.743), 1: (0.181, 0.392, 0.694), 2: (0.192, 0.402, 0.729)},
    "box_heuristic": {0: (0.189, 0.431, 0.787), 1: (0.180, 0.365, 0.727), 2: (0.181, 0.372, 0.727)},
    "full": {0: (0.255, 0.531, 0.785), 1: (0.285, 0.519, 0.721)},  # seed 2 missing
}


def log_run(client: MlflowClient, experiment_id: str, name: str, flat: dict[str, str], metrics: dict) -> None:
    r = client.create_run(experiment_id, run_name=name, tags={"mode": flat["train.mode"]})
    items = [Param(k, v) for k, v in flat.items()]
    for i in range(0, len(items), 100):
        client.log_batch(r.info.run_id, params=items[i : i + 100])
    client.log_batch(r.info.run_id, metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()])
    client.set_terminated(r.info.run_id, "FINISHED")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT)
    base = expected_params(params(), {})
    for mode, seeds in MAPS.items():
        for seed, (m, a50, a25) in seeds.items():
            metrics = {"evaluate/val_mAP": m, "evaluate/val_AP50": a50, "evaluate/val_AP25": a25}
            metrics["last/pseudo_box_heuristic_iou_ambiguous"] = 0.756
            if mode == "beep3d":
                metrics["last/pseudo_teacher_iou_ambiguous"] = 0.65 + 0.01 * seed
            log_run(
                client,
                experiment_id,
                f"{mode}-s{seed}",
                {**base, "train.mode": mode, "train.seed": str(seed)},
                metrics,
            )
    other = {**base, "train.mode": "full", "train.seed": "2", "train.ema": "0.99"}
    log_run(client, experiment_id, "abl-ema-0.99", other, {"evaluate/val_mAP": 0.9})
    return uri


def compare_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.compare", "--params", str(REPO / "params.yaml"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_command_on_a_real_store(store, tmp_path):
    out = tmp_path / "cmp" / "comparison.md"
    proc = compare_cli("--tracking-uri", store, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    print(text)  # pytest -s shows what a user sees
    assert out.read_text() == text
    assert "| full | 0, 1 | 2 | full-s0" in text  # the missing seed is named
    assert "abl-ema-0.99" in text and "train.ema=0.99 (here 0.999)" in text  # and the run left out
    # per mode: beep3d mAP 0.188 ± 0.006; teacher IoU only for beep3d
    assert (
        "| beep3d | 3 | 0.188 ± 0.006 | 0.400 ± 0.007 | 0.722 ± 0.025 | 0.660 ± 0.010 | 0.756 ± 0.000 |"
        in text
    )
    assert "| full | 2 | 0.270 ± 0.021 | 0.525 ± 0.008 | 0.753 ± 0.045 | – | 0.756 ± 0.000 |" in text
    # beep3d − box_heuristic on 3 seeds: mAP differences +0.002, +0.001, +0.011: mean 0.0047,
    # std 0.0055, half-width 4.3027 * 0.0055 / sqrt(3) = 0.0137: not resolved
    assert "### beep3d − box_heuristic: 3 paired seed(s) (0, 1, 2)" in text
    assert (
        "| mAP difference | +0.002 | +0.001 | +0.011 | +0.005 ± 0.006 | 0.014 | [-0.009, +0.018] | no: interval includes 0 |"
        in text
    )
    # beep3d − full on seeds 0, 1: mAP -0.064, -0.104: mean -0.084, std 0.0283,
    # half-width 12.706 * 0.0283 / sqrt(2) = 0.254: not resolved with two seeds
    assert "### beep3d − full: 2 paired seed(s) (0, 1)" in text
    assert "| mAP difference | -0.064 | -0.104 | -0.084 ± 0.028 | 0.254 |" in text
    # the mAP ratio beep3d / full per seed: 0.191 / 0.255 = 0.749, 0.181 / 0.285 = 0.635
    assert "| mAP ratio beep3d / full | 0.749 | 0.635 | 0.692 ± 0.081 |" in text
    # AP50: -0.125, -0.127, half-width 12.706 * 0.0014 / sqrt(2) = 0.013: resolved even with two seeds
    assert (
        "| AP50 difference | -0.125 | -0.127 | -0.126 ± 0.001 | 0.013 | [-0.139, -0.113] | yes: full higher |"
        in text
    )
    assert (
        "Resolved at 95 % with these seeds: AP50 difference (full higher). "
        "Not resolved: mAP difference, AP25 difference, mAP ratio beep3d / full." in text
    )


def test_command_refuses_a_missing_store_and_bad_arguments(tmp_path):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    proc = compare_cli("--tracking-uri", missing, cwd=tmp_path)
    assert proc.returncode == 1 and "no MLflow store at" in proc.stderr
    assert not (tmp_path / "none.db").exists()  # reading never creates a store
    proc = compare_cli("--tracking-uri", missing, "--modes", "beep3d,fulll", cwd=tmp_path)
    assert proc.returncode == 2 and "unknown mode(s) fulll" in proc.stderr
    proc = compare_cli("--run", cwd=tmp_path)
    assert proc.returncode == 2 and "--run needs --seeds" in proc.stderr


# --------------------------------------------------------------------------- a real queue


@pytest.mark.slow
def test_run_queues_the_missing_modes_and_compares_them(project_copy):
    from test_pipeline_dvc import tiny

    project_copy.set_params(tiny(project_copy.params()))
    project_copy.commit("tiny params")
    root = project_copy.root
    proc = project_copy.run(
        sys.executable,
        "-m",
        "pipeline.compare",
        "--run",
        "--modes",
        "box_heuristic,full",
        "--seeds",
        "0",
        "--poll",
        "3",
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "dvc exp run --queue -n box_heuristic-s0 -S train.mode=box_heuristic -S train.seed=0" in proc.stderr
    )
    assert "queue: 2/2 done (2 success)" in proc.stderr
    assert "| box_heuristic | 0 | – | box_heuristic-s0" in proc.stdout
    assert "| full | 0 | – | full-s0" in proc.stdout
    assert "### box_heuristic − full: 1 paired seed(s) (0)" in proc.stdout
    # both runs are now in the store: a second --run queues nothing
    again = project_copy.run(
        sys.executable, "-m", "pipeline.compare", "--run", "--modes", "box_heuristic,full", "--seeds", "0"
    )
    assert "nothing to queue" in again.stderr
    assert (root / "mlflow.db").is_file()
