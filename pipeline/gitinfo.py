"""Running git for provenance (tracking tags, the report): never raises, never hangs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 10.0


def run_git(project_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`git <args>` in project_root; a git that cannot run gives returncode -1 and the error."""
    # GIT_DIR & co. (set when this runs inside a git hook) would point git at another repository.
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")}
    try:
        return subprocess.run(
            ["git", *args], cwd=project_root, env=env, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.SubprocessError) as err:
        return subprocess.CompletedProcess(["git", *args], returncode=-1, stdout="", stderr=str(err))
