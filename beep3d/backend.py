"""Device-dependent choices, made in one place: the device, the spconv algorithm, the spconv wheel.

spconv ships one wheel per CUDA version. The CUDA wheels also run on CPU, but only with
`ConvAlgo.Native` (their default implicit-GEMM algorithm is CUDA-only), in fp32, and with
`bias=False` convolutions followed by BatchNorm (bias fusion fails in eval mode on CPU). Every
module that builds sparse convolutions takes its algorithm from `conv_algo` here, as an explicit
constructor argument, so the CPU/CUDA decision is never made twice.
"""

from __future__ import annotations

import logging
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from spconv.pytorch import ConvAlgo

# (lowest CUDA version (major, minor), pip requirement); the last row whose version <= torch's wins.
_CUDA_WHEELS: tuple[tuple[tuple[int, int], str], ...] = (
    ((11, 8), "spconv-cu118==2.3.8"),
    ((12, 0), "spconv-cu120==2.3.6"),
    ((12, 1), "spconv-cu121==2.3.8"),
    ((12, 4), "spconv-cu124==2.3.8"),
    ((12, 6), "spconv-cu126==2.3.8"),
)


def spconv_requirement(python: tuple[int, int], cuda: str | None) -> str:
    """The spconv wheel to install for a Python version and torch's CUDA version (None: CPU torch).

    spconv-cu120 2.3.6 has wheels up to Python 3.11 and runs on CPU (Native algorithm); Python 3.12
    needs a 2.3.8 wheel, of which spconv-cu126 is the one checked for CPU use.
    """
    if cuda is None:
        return "spconv-cu120==2.3.6" if python <= (3, 11) else "spconv-cu126==2.3.8"
    try:
        version = tuple(int(part) for part in cuda.split(".")[:2])
    except ValueError as err:
        raise ValueError(f"unreadable CUDA version {cuda!r}") from err
    if version < _CUDA_WHEELS[0][0]:
        raise ValueError(f"CUDA {cuda} is older than any spconv 2.3 wheel; use torch built for CUDA >= 11.8")
    choice = [req for low, req in _CUDA_WHEELS if low <= version][-1]
    if choice.startswith("spconv-cu120") and python > (3, 11):
        choice = (
            "spconv-cu121==2.3.8"  # cu120 stops at Python 3.11; the cu121 wheel runs on CUDA 12.0 drivers too
        )
    return choice


def spconv_install_hint() -> str:
    """What to run when spconv cannot be imported, for this Python and this torch build."""
    py = sys.version_info[:2]
    cuda = torch.version.cuda
    req = spconv_requirement((py[0], py[1]), cuda)
    build = f"CUDA {cuda}" if cuda else "CPU"
    return (
        f"spconv is not importable. For Python {py[0]}.{py[1]} with torch {torch.__version__} ({build}) "
        f"install it with:  pip install '{req}'  (one spconv wheel only: uninstall any other "
        "spconv-cuXXX first). spconv wheels exist for CUDA 11.8 (cu118), 12.0 (cu120, Python <= 3.11), "
        "12.1 (cu121), 12.4 (cu124) and 12.6 (cu126, also Python 3.12)."
    )


class _FxTracingNotice(logging.Filter):
    """Drops torch's one notice that `is_fx_tracing()` now also covers torch.export.

    spconv's SparseConvTensor is built with torch.fx's ProxyableClassMeta, whose constructor asks
    `is_fx_tracing()` on every tensor made; torch 2.13 answers with that notice (once per process,
    on the `torch.fx._symbolic_trace` logger), so every stage and command printed it. It concerns
    code that tells fx tracing from export, which neither spconv nor this project does. Only that
    message is dropped; everything else on the logger gets through.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("is_fx_tracing will return true")


def _silence_fx_tracing_notice() -> None:
    logger = logging.getLogger("torch.fx._symbolic_trace")
    if not any(isinstance(f, _FxTracingNotice) for f in logger.filters):
        logger.addFilter(_FxTracingNotice())


def import_spconv() -> ModuleType:
    """`spconv.pytorch`, or an ImportError that says which wheel to install."""
    _silence_fx_tracing_notice()
    try:
        with warnings.catch_warnings():
            # spconv 2.3 decorates its autograd functions with torch.cuda.amp.custom_fwd (a
            # FutureWarning per function) and its build helper calls locale.getdefaultlocale (a
            # DeprecationWarning): noise at import time, not a problem.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            import spconv.pytorch as spconv_pytorch
    except ImportError as err:
        raise ImportError(spconv_install_hint()) from err
    return spconv_pytorch


def conv_algo(device: torch.device | str) -> ConvAlgo:
    """The spconv algorithm for `device`: Native on CPU, spconv's default implicit GEMM on CUDA.

    Weights are stored in the same layout for every algorithm, so a checkpoint trained with one
    algorithm loads into a model built with the other.
    """
    device = torch.device(device)
    algo = import_spconv().ConvAlgo
    if device.type == "cpu":
        return algo.Native
    if device.type == "cuda":
        return algo.MaskImplicitGemm
    raise ValueError(f"spconv runs on 'cpu' or 'cuda' only, not on {device}")


def resolve_device(name: str) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu' or 'cuda' -> a torch.device; fails loudly."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device 'cuda' requested but torch {torch.__version__} sees no CUDA device "
                f"(torch CUDA build: {torch.version.cuda}); use device 'cpu' or 'auto', or install a CUDA torch"
            )
        return torch.device("cuda")
    raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
