"""`make ablations` queues one DVC experiment per entry of the Makefile's ABLATIONS list; a key
misspelt there, or a combination the params refuse, would only fail once the queue runs it.
Every entry is applied to params.yaml as `dvc exp run -S` would and built into a RunConfig here
(pipeline.compare.parse_overrides is not used: it refuses train.mode, which box-heuristic sets)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.config import load_params, parse_yaml, section
from stages.train import load_run_config, run_config_from

REPO = Path(__file__).resolve().parents[1]


def ablation_entries() -> dict[str, list[tuple[str, str]]]:
    """name -> [(dotted key, value)] from the Makefile's `ABLATIONS := \\` block."""
    text = (REPO / "Makefile").read_text()
    block = re.search(r"^ABLATIONS := \\\n((?:\t.*\\\n)*\t.*\n)", text, re.MULTILINE)
    assert block, "Makefile: no ABLATIONS block"
    entries = {}
    for line in block.group(1).splitlines():
        name, _, sets = line.strip().rstrip("\\").strip().partition(":")
        entries[name] = [tuple(kv.split("=", 1)) for kv in sets.split(",") if kv]
    return entries


def test_the_grid_holds_the_default_and_each_part_off() -> None:
    entries = ablation_entries()
    assert entries["default"] == []
    for name in ("pseudo-masks", "no-center-queries", "no-consistency", "no-box-prior",
                 "no-box-query-loss", "box-heuristic"):  # fmt: skip
        assert entries[name], name


@pytest.mark.parametrize("name", sorted(ablation_entries()))
def test_every_entry_names_existing_params_and_builds(name: str) -> None:
    params = load_params(REPO / "params.yaml")
    changed = copy.deepcopy(params)
    for key, value in ablation_entries()[name]:
        parent, _, last = key.rpartition(".")
        section(params, key)  # raises ConfigError naming the missing part of a misspelt key
        section(changed, parent)[last] = parse_yaml(value)
        assert section(changed, key) != section(params, key), f"{name}: {key}={value} is the default"
    run_config_from(changed)


def test_queued_commands_apply_the_grid_wide_set_first_so_each_entry_switch_wins(tmp_path: Path) -> None:
    """`make ablation-commands` prints what `make ablations` queues; each line's -S overrides are
    applied in order by DVC's own override code, as `dvc exp run` applies them."""
    from dvc.utils.hydra import apply_overrides

    grid_set = "data_loader.superpoints=computed train.beep3d.prior_containment=0.8"
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "ablation-commands", "ABLATION_SEEDS=0,2", f"ABLATION_SET={grid_set}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = out.strip().splitlines()
    assert len(lines) == 2 * len(ablation_entries())
    built = {}
    for line in lines:
        words = line.split()
        assert words[:4] == ["dvc", "exp", "run", "--queue"], line
        name = words[words.index("-n") + 1]
        overrides = [words[i + 1] for i, w in enumerate(words) if w == "-S"]
        params_file = tmp_path / f"{name}.yaml"
        shutil.copy(REPO / "params.yaml", params_file)
        apply_overrides(params_file, overrides)
        built[name] = load_run_config(str(params_file))
    assert sorted(built) == sorted(f"abl-{n}-s{s}" for n in ablation_entries() for s in (0, 2))
    for name, cfg in built.items():
        assert cfg.data_loader.superpoints == "computed", name
        assert cfg.train.seed == int(name[-1]), name
    assert built["abl-default-s2"].train.beep3d.prior_containment == 0.8
    assert built["abl-no-box-prior-s0"].train.beep3d.prior_containment == 0.0  # the entry's switch wins
    assert built["abl-no-box-prior-s0"].train.beep3d.prior_objects_first is False
    assert built["abl-box-heuristic-s0"].train.mode == "box_heuristic"
