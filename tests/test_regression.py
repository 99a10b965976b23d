"""The benchmark regression check: tolerances, direction, missing figures, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from click.testing import CliRunner

from pipeline.regression import compare, machine_key, main

BASELINE = {
    "figures": {
        "val_mAP": {"file": "metrics", "key": "val.mAP", "value": 0.10, "tolerance": 0.01},
        "teacher_iou": {
            "file": "summary",
            "key": "last.pseudo_teacher_iou_ambiguous",
            "value": 0.50,
            "tolerance": 0.02,
        },
        "loss": {
            "file": "summary",
            "key": "last.loss",
            "value": 1.0,
            "tolerance": 0.1,
            "higher_is_better": False,
        },
    }
}


def sources(map_: float | None, iou: float, loss: float) -> dict:
    return {
        "metrics": {"val": {"mAP": map_}},
        "summary": {"last": {"pseudo_teacher_iou_ambiguous": iou, "loss": loss}},
    }


def test_only_a_move_in_the_bad_direction_beyond_tolerance_regresses() -> None:
    verdict = {c.name: c.regressed for c in compare(BASELINE, sources(0.095, 0.60, 1.05))}
    assert verdict == {"val_mAP": False, "teacher_iou": False, "loss": False}  # within / better
    verdict = {c.name: c.regressed for c in compare(BASELINE, sources(0.089, 0.47, 1.2))}
    assert verdict == {"val_mAP": True, "teacher_iou": True, "loss": True}
    assert compare(BASELINE, sources(None, 0.5, 1.0))[0].regressed  # missing figure


def write(tmp_path: Path, map_: float | None, baseline: dict | None = None) -> list[str]:
    (tmp_path / "baseline.json").write_text(json.dumps(BASELINE if baseline is None else baseline))
    src = sources(map_, 0.5, 1.0)
    (tmp_path / "metrics.json").write_text(json.dumps(src["metrics"]))
    (tmp_path / "summary.json").write_text(json.dumps(src["summary"]))
    return ["--baseline", str(tmp_path / "baseline.json"), "--metrics", str(tmp_path / "metrics.json"),
            "--summary", str(tmp_path / "summary.json")]  # fmt: skip


def test_cli_exit_codes_table_and_deliberate_baseline_update(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, write(tmp_path, 0.10))
    assert ok.exit_code == 0 and "no regression" in ok.output and "val_mAP" in ok.output
    bad = runner.invoke(main, write(tmp_path, 0.05))
    assert bad.exit_code == 1 and "REGRESSION" in bad.output and "-0.0500" in bad.output
    updated = runner.invoke(main, [*write(tmp_path, 0.05), "--write-baseline"])
    assert updated.exit_code == 0
    written = json.loads((tmp_path / "baseline.json").read_text())
    assert written["figures"]["val_mAP"]["value"] == 0.05
    assert written["cpu"] == machine_key()  # the kind of CPU the values are bitwise valid on
    args = write(tmp_path, 0.10)
    (tmp_path / "metrics.json").write_text("{not json")
    assert runner.invoke(main, args).exit_code == 2


def test_another_kind_of_cpu_gets_the_cross_cpu_tolerance(tmp_path: Path) -> None:
    """Seeds reproduce bitwise on one kind of CPU only: on the baseline's CPU the tight tolerance
    applies, on another the cross-CPU one (and the output says why)."""
    baseline = json.loads(json.dumps(BASELINE))
    baseline["figures"]["val_mAP"]["cross_cpu_tolerance"] = 0.06
    on_this_cpu = {**baseline, "cpu": machine_key()}
    elsewhere = {**baseline, "cpu": "AVX2 GenuineIntel family 6 model 85 (another machine)"}
    assert compare(on_this_cpu, sources(0.05, 0.5, 1.0), same_cpu=True)[0].regressed
    assert not compare(elsewhere, sources(0.05, 0.5, 1.0), same_cpu=False)[0].regressed
    assert compare(elsewhere, sources(0.03, 0.5, 1.0), same_cpu=False)[0].regressed  # beyond even that
    # a figure without a cross-CPU tolerance keeps its tight one everywhere
    assert compare(elsewhere, sources(0.10, 0.47, 1.0), same_cpu=False)[1].regressed

    runner = CliRunner()
    here = runner.invoke(main, write(tmp_path, 0.05, on_this_cpu))
    assert here.exit_code == 1 and "not the baseline's" not in here.output
    there = runner.invoke(main, write(tmp_path, 0.05, elsewhere))
    assert there.exit_code == 0 and "cross-CPU tolerances apply" in there.output
    assert machine_key().startswith(torch.backends.cpu.get_cpu_capability())  # what picks MKL's kernels
