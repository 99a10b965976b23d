"""Shared test fixtures: a throwaway git + DVC copy of this repo for real pipeline runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # as in stages/__init__.py: reproducible MKL maths
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def repo_files() -> list[str]:
    """Tracked files plus untracked files that git does not ignore (what a commit would hold)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


class ProjectCopy:
    """A fresh git repo holding a copy of the project, with DVC initialised as committed."""

    def __init__(self, root: Path):
        self.root = root
        self.env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def dvc(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "dvc"), *args, check=check, timeout=timeout)

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    def set_params(self, params: dict) -> None:
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message: str = "test") -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)


@pytest.fixture(scope="module")
def one_torch_thread():
    """The test machine's cores are shared: a multi-threaded torch pool spinning against other
    processes made the small sparse UNet 20-100x slower (2-15 s instead of 0.1 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_project_copy(root: Path) -> ProjectCopy:
    """Copy the project into `root` (dvc.lock left out) and commit it to a fresh git repo."""
    for rel in repo_files():
        if rel == "dvc.lock":  # the copy records its own runs
            continue
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    copy = ProjectCopy(root)
    copy.run("git", "init", "-q", "-b", "main")
    copy.commit("copy of the project")
    return copy


@pytest.fixture
def project_copy(tmp_path: Path) -> ProjectCopy:
    return make_project_copy(tmp_path / "project")


@pytest.fixture
def new_project_copy(tmp_path: Path) -> Callable[[str], ProjectCopy]:
    """Further copies beside `project_copy`, each in its own folder: `new_project_copy("second")`."""
    return lambda name: make_project_copy(tmp_path / name)
