"""params.yaml -> typed configs: strict keys, named errors, and the real params.yaml parses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, build, flatten, load_params, section
from stages.download import DataParams
from stages.train import load_run_config

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    rate: float
    names: tuple[str, ...]


@dataclass(frozen=True)
class Outer:
    inner: Inner
    steps: int
    flag: bool


def test_build_fills_nested_dataclasses():
    cfg = build(Outer, {"inner": {"rate": 1, "names": ["a", "b"]}, "steps": 3, "flag": True}, "x")
    assert cfg == Outer(Inner(1.0, ("a", "b")), 3, True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"rate": 1.0, "names": []}, "steps": 3, "flag": True, "typo": 1}, "x.typo"),
        ({"inner": {"rate": 1.0}, "steps": 3, "flag": True}, "x.inner.names"),
        ({"inner": {"rate": "fast", "names": []}, "steps": 3, "flag": True}, "x.inner.rate"),
        ({"inner": {"rate": 1.0, "names": []}, "steps": 3.5, "flag": True}, "x.steps"),
        ({"inner": {"rate": 1.0, "names": []}, "steps": 3, "flag": 1}, "x.flag"),
    ],
)
def test_build_names_the_offending_key(data, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        build(Outer, data, "x")


def test_the_repository_params_parse():
    params = load_params(REPO / "params.yaml")
    data = build(DataParams, section(params, "data"), "data")
    assert data.source == "synthetic"
    run = load_run_config(str(REPO / "params.yaml"))
    assert run.model.num_classes == 18


def test_section_and_flatten():
    params = {"a": {"b": {"c": 1}}, "d": 2}
    assert section(params, "a.b") == {"c": 1}
    with pytest.raises(ConfigError, match=r"a\.x"):
        section(params, "a.x.y")
    assert flatten(params) == {"a.b.c": 1, "d": 2}


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5])
def test_mask_threshold_outside_the_open_unit_interval_is_refused(bad):
    from beep3d.engine import InferenceConfig

    inference = {**section(load_params(REPO / "params.yaml"), "inference"), "mask_threshold": bad}
    with pytest.raises(ConfigError, match=r"inference.*mask_threshold"):
        build(InferenceConfig, inference, "inference")


def test_params_are_read_as_dvc_reads_them(tmp_path: Path):
    """YAML 1.2 booleans (true / false only): `dvc exp run -S` rewrites params.yaml with string
    values unquoted, and `off` must stay the string DVC sees, not PyYAML 1.1's false."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text('train:\n  amp: "off"\n  ema: 0.9\n  flags: [yes, no, on, true, False]\n')
    apply_overrides(str(path), ["train.ema=0.99"])  # what `dvc exp run -S train.ema=0.99` does
    assert "amp: off\n" in path.read_text()  # the quotes are gone
    train = load_params(path)["train"]
    assert train == {"amp": "off", "ema": 0.99, "flags": ["yes", "no", "on", True, False]}
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["amp"] = False  # a params file that went through PyYAML's safe_dump
    path.write_text(yaml.safe_dump(params))
    assert load_run_config(str(path)).train.amp == "off"
