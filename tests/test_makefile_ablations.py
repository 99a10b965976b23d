"""`make ablations` queues one DVC experiment per entry of the Makefile's ABLATIONS list; a key
misspelt there, or a combination the params refuse, would only fail once the queue runs it.
Every entry is applied to params.yaml as `dvc exp run -S` would and built into a RunConfig here
(pipeline.compare.parse_overrides is not used: it refuses train.mode, which box-heuristic sets)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from pipeline.config import build, load_params, parse_yaml, section
from pipeline.training import RunConfig

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
    build(RunConfig, {k: changed[k] for k in ("model", "data_loader", "train", "inference")}, "params")
