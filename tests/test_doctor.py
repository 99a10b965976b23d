"""`beep3d doctor`: versions, the device, a real sparse UNet run, and plain-words diagnoses."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import pytest
import torch
from click.testing import CliRunner

from beep3d.backend import import_spconv
from pipeline.cli import diagnose_check, main, unet_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def doctor(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["doctor", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_doctor_on_cpu_passes_and_prints_versions() -> None:
    code, output = doctor("--device", "cpu")
    assert code == 0, output
    assert platform.python_version() in output
    assert torch.__version__ in output
    assert importlib.metadata.version("spconv-cu120") in output and "spconv-cu120" in output
    assert importlib.metadata.version("cumm-cu120") in output
    assert "CUDA     " in output
    assert "device   cpu (requested cpu), spconv algorithm Native, torch CPU threads 1" in output
    assert ": OK (" in output and output.rstrip().endswith("doctor: all good")


def test_spconv_not_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes `import spconv.pytorch` raise ImportError, as a missing wheel would.
    monkeypatch.setitem(sys.modules, "spconv.pytorch", None)
    code, output = doctor("--device", "cpu")
    assert code == 1, output
    assert "FAILED   spconv cannot be imported" in output
    assert "pip install 'spconv-cu120==2.3.6'" in output  # the hint for Python 3.11 + CPU torch
    assert "Traceback" not in output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_but_unavailable() -> None:
    code, output = doctor("--device", "cuda")
    assert code == 1, output
    assert "FAILED   CUDA requested (--device cuda) but not available" in output
    assert "use --device cpu" in output
    assert torch.__version__ in output  # versions are printed before the verdict


def test_cpu_default_algorithm_is_diagnosed() -> None:
    """A real failure: the UNet built with spconv's default CUDA-only algorithm, run on CPU."""
    algo = import_spconv().ConvAlgo.MaskImplicitGemm
    with pytest.raises(Exception) as info:
        unet_check(torch.device("cpu"), algo)
    diagnosis, fix = diagnose_check(info.value, torch.device("cpu"), algo)
    assert "CUDA-only" in diagnosis and "Native" in diagnosis
    assert "conv_algo" in fix


def test_wheel_for_another_cuda_is_diagnosed() -> None:
    err = RuntimeError("CUDA error: no kernel image is available for execution on the device")
    diagnosis, fix = diagnose_check(err, torch.device("cuda"), import_spconv().ConvAlgo.MaskImplicitGemm)
    assert "another CUDA" in diagnosis
    assert "pip install 'spconv-" in fix and "--device cpu" in fix
