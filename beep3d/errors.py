"""Errors the project raises on bad input. Each names the file and what is wrong."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Input data is unusable. Carries the scene id and the offending file when known."""

    def __init__(self, message: str, *, path: str | Path | None = None, scene_id: str | None = None):
        self.path = None if path is None else Path(path)
        self.scene_id = scene_id
        where = []
        if scene_id is not None:
            where.append(f"scene {scene_id}")
        if path is not None:
            where.append(f"file {path}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + message)
        self.reason = message
