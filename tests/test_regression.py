"""The benchmark regression check: tolerances, direction, missing figures, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from pipeline.regression import compare, main

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


def write(tmp_path: Path, map_: float | None) -> list[str]:
    (tmp_path / "baseline.json").write_text(json.dumps(BASELINE))
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
    assert json.loads((tmp_path / "baseline.json").read_text())["figures"]["val_mAP"]["value"] == 0.05
    args = write(tmp_path, 0.10)
    (tmp_path / "metrics.json").write_text("{not json")
    assert runner.invoke(main, args).exit_code == 2
