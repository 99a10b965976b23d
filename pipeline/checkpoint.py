"""Checkpoints: a format version, the model config and a run fingerprint travel with the weights.

Loading always uses `weights_only=True` (a checkpoint is data, never code). A checkpoint whose
format version or model config differs from what the caller expects is refused with a message
that says what differs, instead of failing later with a shape mismatch. Writes are atomic.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from beep3d.io import atomic_path

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used here; the message says why and what to do."""


def save_checkpoint(
    path: str | Path, *, model_config: Any, state: dict[str, Any], fingerprint: str = ""
) -> None:
    """`state` holds tensors, numbers, strings and nested dicts/lists of them (no pickled objects)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "model_config": dataclasses.asdict(model_config),
        "fingerprint": fingerprint,
        **state,
    }
    # Saved through a file object, not the path: given a path, torch names the archive's root
    # folder after the file, here the random temp name, so equal weights gave different bytes
    # (and DVC hashes) on every run. Through a file object the folder is always "archive".
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(
    path: str | Path,
    *,
    expect_model_config: Any | None = None,
    map_location: str | torch.device = "cpu",
    data: bytes | None = None,
) -> dict[str, Any]:
    """Read and check a checkpoint. `data`: the file's bytes, already read elsewhere (e.g. sent by
    another rank); `path` then only names it in messages."""
    path = Path(path)
    if data is None and not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        source = path if data is None else io.BytesIO(data)
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a bad file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a beep3d checkpoint (no format_version)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {payload['format_version']}, this code reads {FORMAT_VERSION}; "
            "retrain or use the matching beep3d version"
        )
    if expect_model_config is not None:
        want = dataclasses.asdict(expect_model_config)
        have = payload["model_config"]
        diff = {k: (have.get(k), v) for k, v in want.items() if _norm(have.get(k)) != _norm(v)}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs params {b!r}" for k, (a, b) in sorted(diff.items()))
            raise CheckpointError(f"{path}: model config differs from the current params ({detail})")
    return payload


def _norm(value: Any) -> Any:
    """Tuples and lists compare equal (a config round-trips through torch.save as lists)."""
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value
