"""Fault injection: SIGKILL download, preprocess and train at random moments, re-run, compare.

    .venv/bin/python benchmarks/fault_injection.py [--n 3] [--seed 0]
        [--stages download,preprocess,train] [--schedule both] [--keep]

The project promises that a killed stage can simply be re-run (atomic writes, a download that
starts over, training that resumes from checkpoints/state.pt) and ends with the same outputs as
an uninterrupted run. This script checks that promise on tiny params, in throwaway git copies
of the project under a temp dir (the files `git ls-files --cached --others --exclude-standard`
lists, dvc.lock left out, as tests/conftest.py does):

1. Reference (copy A): every needed stage runs once, uninterrupted; its duration is t_ref.
2. For each stage, from a copy whose upstream outputs are copied from A, three schedules:
     control   one uninterrupted run (shows the stage is deterministic, so a difference
               below is the kill's doing)
     pairs     n rounds, each in a fresh copy: start, SIGKILL after U(0, 0.9 t_ref), re-run
               to completion
     chain     one copy: n kills in a row, each run starting from what the last kill left
               (nothing is cleaned up), then one run to completion
   The stage command is the one in dvc.yaml, run directly: killing `dvc repro` would leave the
   stage itself running. SIGKILL goes to the whole process group (pool workers included).
3. Every completed copy is compared with A: all files under the stage's outs (dvc.yaml),
   Parquet as table contents, .pt files as tensors (torch.equal), JSON as values, wall-clock
   fields (epoch_seconds) and the MLflow run id file left out, anything else byte for byte.
   "data lost" counts upstream output files that changed or disappeared in a copy where a
   downstream stage was killed, plus any output file the completed copy lacks; it must be 0.
   "torn" counts output files (atomic-write temp files aside) that could not be read right
   after a kill: an atomic writer leaves none.

Exits 1 if any completed copy differs from the reference or lost data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ORDER = ("download", "preprocess", "train")
SKIP = {"reports/mlflow_run.json"}  # a new MLflow run id on every run, by design
WALL_CLOCK_KEYS = {"epoch_seconds"}
KILL_WINDOW = 0.9  # kills land in [0, KILL_WINDOW * t_ref] after the start


def tiny(params: dict) -> dict:
    """Tiny params (as tests/test_pipeline_dvc.tiny) with several epochs, so training can resume."""
    params["data"]["synthetic"].update(n_train=4, n_val=2)
    params["data"]["workers"] = 1
    params["preprocess"]["workers"] = 1
    params["model"].update(widths=[8, 16], d_model=16, n_heads=2, n_layers=2, n_queries=8, ffn_dim=16)
    params["train"].update(epochs=4, batch_size=1, threads=1, eval_every=2, monitor_scenes=2)
    params["train"]["beep3d"]["pseudo_warmup_steps"] = 2
    return params


def stage_specs() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Command (argv, `python` -> this interpreter) and outs + metrics paths of each stage."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    cmds, outs = {}, {}
    for name in ORDER:
        argv = shlex.split(stages[name]["cmd"])
        cmds[name] = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        entries = stages[name].get("outs", []) + stages[name].get("metrics", [])
        outs[name] = [e if isinstance(e, str) else next(iter(e)) for e in entries]
    return cmds, outs


CMDS, OUTS = stage_specs()


def stage_env(tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "MKL_CBWR": "AUTO,STRICT",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
        "GIT_AUTHOR_NAME": "fault-injection",
        "GIT_AUTHOR_EMAIL": "f@i",
        "GIT_COMMITTER_NAME": "fault-injection",
        "GIT_COMMITTER_EMAIL": "f@i",
    }


def make_project_copy(root: Path, env: dict[str, str]) -> None:
    """A git repo holding the project with tiny params, committed (train tags runs with the commit)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    for rel in listed.split("\0"):
        if not rel or rel == "dvc.lock" or not (REPO / rel).is_file():
            continue
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    params = tiny(yaml.safe_load((root / "params.yaml").read_text()))
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "copy, tiny params"]):
        subprocess.run(["git", *git], cwd=root, env=env, check=True, capture_output=True)


# --- running and killing a stage ------------------------------------------------------------


@dataclass
class Launch:
    rc: int | None  # exit status; -9 when our SIGKILL ended it
    seconds: float
    log: Path
    landed: bool = False  # a kill was sent while the process was still running


def launch(root: Path, stage: str, env: dict[str, str], log: Path, kill_after: float | None,
           timeout: float) -> Launch:  # fmt: skip
    """Run the stage; with `kill_after`, SIGKILL its process group that many seconds in."""
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            CMDS[stage], cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=kill_after if kill_after is not None else timeout)
            return Launch(proc.returncode, time.perf_counter() - start, log)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Launch(proc.returncode, time.perf_counter() - start, log, landed=kill_after is not None)


def tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").replace("\r", "\n")
    return "\n".join("      | " + line for line in text.splitlines()[-lines:] if line.strip())


# --- digests and comparison ------------------------------------------------------------------


def is_temp(rel: str) -> bool:
    """An atomic-write temp file (beep3d/io.py: `.<name>.<random>.tmp` beside the target)."""
    name = rel.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(".tmp")


def output_files(root: Path, outs: list[str]) -> list[str]:
    files = []
    for out in outs:
        path = root / out
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p.relative_to(root).as_posix() for p in found]
    return [f for f in files if f not in SKIP]


def strip_wall_clock(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_wall_clock(v) for k, v in value.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(value, list | tuple):
        return [strip_wall_clock(v) for v in value]
    if isinstance(value, str) and value[:1] in "[{":  # JSON inside a checkpoint (history, metrics)
        try:
            return strip_wall_clock(json.loads(value))
        except json.JSONDecodeError:
            return value
    return value


def file_digest(path: Path) -> Any:
    """What "same contents" means for this file; raises if the file cannot be read as its type."""
    if path.suffix == ".parquet":
        return pq.read_table(path)  # file metadata (writer, row-group layout) may differ
    if path.suffix == ".pt":
        return strip_wall_clock(torch.load(path, map_location="cpu", weights_only=True))
    if path.suffix == ".json":
        return strip_wall_clock(json.loads(path.read_text()))
    return path.read_bytes()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        )  # fmt: skip
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "equals") and type(a) is type(b):
        return a.equals(b)  # pyarrow tables
    return type(a) is type(b) and a == b


def digest(root: Path, outs: list[str]) -> dict[str, Any]:
    return {rel: file_digest(root / rel) for rel in output_files(root, outs)}


@dataclass
class Diff:
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.missing or self.extra or self.changed)

    def describe(self) -> str:
        parts = [f"{what} {items[:4]}{' ...' if len(items) > 4 else ''}"
                 for what, items in (("missing", self.missing), ("extra", self.extra),
                                     ("changed", self.changed)) if items]  # fmt: skip
        return "; ".join(parts) or "identical"


def compare(ref: dict[str, Any], root: Path, outs: list[str]) -> Diff:
    got = output_files(root, outs)
    diff = Diff(missing=sorted(set(ref) - set(got)), extra=sorted(set(got) - set(ref)))
    for rel in sorted(set(ref) & set(got)):
        try:
            if not same(ref[rel], file_digest(root / rel)):
                diff.changed.append(rel)
        except Exception:  # an unreadable file is a changed file; the report names it
            diff.changed.append(rel)
    return diff


def torn_files(root: Path, outs: list[str]) -> list[str]:
    """Output files (temp files aside) that cannot be read as their type."""
    torn = []
    for rel in output_files(root, outs):
        if is_temp(rel):
            continue
        try:
            file_digest(root / rel)
        except Exception:
            torn.append(rel)
    return torn


# --- one stage under fault injection ----------------------------------------------------------


@dataclass
class Row:
    schedule: str
    kills: int = 0
    landed: int = 0
    reruns: int = 0  # runs to completion after the copy's start (control: its one run)
    reruns_ok: int = 0
    copies: int = 0
    identical: int = 0
    lost: set[str] = field(default_factory=set)
    torn: set[str] = field(default_factory=set)
    rerun_seconds: list[float] = field(default_factory=list)
    wall: float = 0.0
    problems: list[str] = field(default_factory=list)


class StageTrial:
    """Copies for one stage's schedules: upstream outputs from the reference, nothing else."""

    def __init__(self, stage: str, tmp: Path, pristine: Path, ref_root: Path, ref: dict[str, dict],
                 t_ref: float, env: dict[str, str], rng: random.Random):  # fmt: skip
        self.stage, self.tmp, self.ref, self.t_ref, self.env, self.rng = stage, tmp, ref, t_ref, env, rng
        self.upstream = [u for u in ORDER[: ORDER.index(stage)]]
        self.base = tmp / f"B-{stage}"
        shutil.copytree(pristine, self.base, symlinks=True)
        for u in self.upstream:
            for out in OUTS[u]:
                src, dst = ref_root / out, self.base / out
                if src.is_dir():
                    shutil.copytree(src, dst)
                elif src.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
        self.timeout = 20 * t_ref + 300
        self.n_launch = 0

    def new_copy(self, name: str) -> Path:
        root = self.tmp / f"B-{self.stage}-{name}"
        shutil.copytree(self.base, root, symlinks=True)
        return root

    def log_path(self, what: str) -> Path:
        self.n_launch += 1
        (self.tmp / "logs").mkdir(exist_ok=True)
        return self.tmp / "logs" / f"{self.stage}-{self.n_launch:02d}-{what}.log"

    def upstream_lost(self, root: Path) -> set[str]:
        lost = set()
        for u in self.upstream:
            diff = compare(self.ref[u], root, OUTS[u])
            lost |= set(diff.missing) | set(diff.changed)
        return lost

    def kill(self, root: Path, row: Row, label: str) -> None:
        delay = self.rng.uniform(0.0, KILL_WINDOW * self.t_ref)
        res = launch(root, self.stage, self.env, self.log_path("kill"), delay, self.timeout)
        row.kills += 1
        row.landed += res.landed
        torn = torn_files(root, OUTS[self.stage])
        row.torn |= {f"{label}: {t}" for t in torn}
        row.lost |= self.upstream_lost(root)
        if res.landed:
            state = "landed"
        elif res.rc == 0:
            state = "missed (run had finished)"
        else:  # a run started from a killed state that failed on its own before the kill
            state = f"missed: run FAILED with rc {res.rc}"
            row.problems.append(f"{label}: started from the killed state, exited {res.rc} before the kill "
                                f"at {delay:.2f} s\n{tail(res.log)}")  # fmt: skip
        print(f"  {label}: SIGKILL at {delay:6.2f} s -> {state}" + (f"; torn: {torn}" if torn else ""))

    def complete(self, root: Path, row: Row, label: str) -> None:
        res = launch(root, self.stage, self.env, self.log_path("run"), None, self.timeout)
        row.reruns += 1
        row.rerun_seconds.append(res.seconds)
        ok = res.rc == 0
        row.reruns_ok += ok
        if not ok:
            why = "timed out" if res.rc == -signal.SIGKILL else f"exit {res.rc}"
            row.problems.append(f"{label}: run to completion FAILED ({why}) after {res.seconds:.1f} s\n"
                                f"{tail(res.log)}")  # fmt: skip
        diff = compare(self.ref[self.stage], root, OUTS[self.stage])
        lost = self.upstream_lost(root) | set(diff.missing)
        row.copies += 1
        row.identical += diff.identical
        row.lost |= {f"{label}: {f}" for f in lost}
        if not diff.identical:
            row.problems.append(f"{label}: outputs differ from the reference: {diff.describe()}")
        print(f"  {label}: run to completion {'ok' if ok else 'FAILED'} in {res.seconds:6.2f} s -> "
              f"{diff.describe()}" + (f"; data lost: {sorted(lost)}" if lost else ""))  # fmt: skip

    def run_schedule(self, schedule: str, n: int) -> Row:
        row, start = Row(schedule), time.perf_counter()
        if schedule == "control":
            self.complete(self.new_copy("control"), row, "control")
        elif schedule == "pairs":
            for i in range(1, n + 1):
                root = self.new_copy(f"pairs{i}")
                self.kill(root, row, f"pairs {i}/{n}")
                self.complete(root, row, f"pairs {i}/{n}")
        else:
            root = self.new_copy("chain")
            for i in range(1, n + 1):
                self.kill(root, row, f"chain kill {i}/{n}")
            self.complete(root, row, "chain final")
        row.wall = time.perf_counter() - start
        return row


# --- report ---------------------------------------------------------------------------------


def print_table(stage: str, t_ref: float, rows: list[Row]) -> None:
    print(f"\n{stage}  (reference run t_ref {t_ref:.1f} s; kills in [0, {KILL_WINDOW * t_ref:.1f}] s)")
    head = ("schedule", "kills", "landed", "re-runs ok", "identical", "data lost", "torn",
            "re-run s (mean)", "wall s")  # fmt: skip
    lines = [head]
    for r in rows:
        mean = sum(r.rerun_seconds) / len(r.rerun_seconds) if r.rerun_seconds else float("nan")
        lines.append((
            r.schedule, str(r.kills), str(r.landed), f"{r.reruns_ok}/{r.reruns}",
            "yes" if r.identical == r.copies else f"NO ({r.identical}/{r.copies})",
            str(len(r.lost)), str(len(r.torn)), f"{mean:.1f} ({mean / t_ref:.2f} x t_ref)", f"{r.wall:.1f}",
        ))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for j, line in enumerate(lines):
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if j == 0:
            print("  " + "  ".join("-" * w for w in widths))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3, help="kills per schedule and stage")
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill moments")
    ap.add_argument("--stages", default=",".join(ORDER))
    ap.add_argument("--schedule", choices=("pairs", "chain", "both"), default="both")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (kept anyway on failure)")
    args = ap.parse_args()
    stages = args.stages.split(",")
    if unknown := [s for s in stages if s not in ORDER]:
        ap.error(f"unknown stage(s) {unknown}; choose from {ORDER}")
    schedules = ["control"] + (["pairs", "chain"] if args.schedule == "both" else [args.schedule])
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="beep3d-faults-"))
    env = stage_env(tmp)
    print(f"fault injection: seed {args.seed}, n {args.n}, stages {stages}, schedules {schedules}")
    print(f"  pairs: n rounds, each a fresh copy: kill at U(0, {KILL_WINDOW} t_ref), then run to completion")
    print("  chain: one copy: n kills in a row from whatever the last kill left, then run to completion")
    print(f"temp dir {tmp}; interpreter {sys.executable}")
    started = time.perf_counter()

    pristine = tmp / "pristine"
    make_project_copy(pristine, env)
    ref_root = tmp / "A"
    shutil.copytree(pristine, ref_root, symlinks=True)
    t_ref: dict[str, float] = {}
    for stage in ORDER[: max(ORDER.index(s) for s in stages) + 1]:
        (tmp / "logs").mkdir(exist_ok=True)
        res = launch(ref_root, stage, env, tmp / "logs" / f"reference-{stage}.log", None, 3600)
        if res.rc != 0:
            print(f"reference run of {stage} failed (exit {res.rc}):\n{tail(res.log, 40)}")
            return 1
        t_ref[stage] = res.seconds
        print(
            f"reference {stage}: {res.seconds:.1f} s, {len(output_files(ref_root, OUTS[stage]))} output files"
        )
    ref = {stage: digest(ref_root, OUTS[stage]) for stage in t_ref}

    tables = []
    for stage in stages:
        print(f"\n== {stage}")
        trial = StageTrial(stage, tmp, pristine, ref_root, ref, t_ref[stage], env, rng)
        tables.append((stage, [trial.run_schedule(s, args.n) for s in schedules]))

    total = time.perf_counter() - started
    print("\n" + "=" * 100)
    for stage, rows in tables:
        print_table(stage, t_ref[stage], rows)
    rows = [r for _, rs in tables for r in rs if r.schedule != "control"]
    failed = [r for _, rs in tables for r in rs if r.identical < r.copies or r.lost or r.reruns_ok < r.reruns]
    print(f"\nkills survived: {sum(r.reruns_ok for r in rows)}/{sum(r.reruns for r in rows)} re-runs completed "
          f"after {sum(r.landed for r in rows)} landed kills ({sum(r.kills for r in rows)} attempted); "
          f"outputs identical: {'yes' if not any(r.identical < r.copies for _, rs in tables for r in rs) else 'NO'}; "
          f"data lost: {sum(len(r.lost) for r in rows)}; torn files after kills: {sum(len(r.torn) for r in rows)}")  # fmt: skip
    print(f"total time {total:.1f} s")
    problems = [(stage, r.schedule, p) for stage, rs in tables for r in rs for p in r.problems]
    for stage, schedule, problem in problems:
        print(f"\nPROBLEM [{stage} / {schedule}] {problem}")
    for stage, rs in tables:
        for r in rs:
            for t in sorted(r.torn):
                print(f"torn [{stage} / {r.schedule}] {t}")
    if args.keep or failed:
        print(f"\nkept {tmp} (logs in {tmp / 'logs'})")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
