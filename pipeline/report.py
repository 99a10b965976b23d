"""The report stage: report.md, its figures and the DVC plot tables from the pipeline's outputs.

Pure functions turn loaded data into markdown sections, figure data and CSV tables, so a test
can call each without DVC; `build_report` loads every input, checks the splits and writes

    <out>                  report.md (sections: headline, experiments, pseudo-masks, dataset,
                           splits, provenance, figures)
    <figures>/             losses.png, val_map.png, pseudo_iou.png, pr_curves.png,
                           scenes/<scene>.png, pseudo_<scene>.png; rebuilt whole (written into
                           `<figures>.partial`, then swapped in) so no stale PNG survives
    <plots>/               losses.csv, val_map.csv, pseudo_iou.csv for `dvc plots`

Split guard: the report refuses (`SplitLeakError`) when a scene of the submission, i.e. an
evaluated scene, is in the training split, because its numbers would then measure memorisation.

The MLflow store and git are read for context only: a store that is missing or unreadable, or a
machine without git, becomes a note in the report, never a failed stage. The required inputs
(metrics, training history and summary, processed tables, submission) are errors when missing.

Epochs are reported 1-based (completed epochs); the history's `epoch` field is the 0-based
index of the epoch a row belongs to.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from beep3d.classes import CLASS_SETS, ClassSet
from beep3d.data.schema import read_scene_points, read_table
from beep3d.eval import MIN_REGION_SIZE, Evaluator, SceneGT, read_submission
from beep3d.io import write_text_atomic
from pipeline import plots
from pipeline.config import build, flatten, parse_yaml, section
from pipeline.gitinfo import run_git
from pipeline.tracking import (
    RunKey,
    TrackingError,
    find_run,
    open_client,
    project_root_of,
    resolve_tracking_uri,
    sqlite_path,
)

DASH = "–"  # a number that does not exist (class without ground truth, metric not logged)
N_SCENE_FIGURES = 3
N_PR_CLASSES = 6
# Params that set how many processes or threads share the work: they may change floating-point
# rounding, not the method or the data, and differences in them would split otherwise identical
# configurations into separate groups of the experiments table.
EXECUTION_ONLY_PARAMS = frozenset(
    {"data.workers", "data.scannet.workers", "preprocess.workers", "train.threads", "train.loader_workers"}
)
# Params that only some training modes read (key prefix -> those modes). In a run of another mode
# their value, or their absence in runs logged before the key existed, says nothing about the
# run: they neither split the experiments table nor keep a run out of a comparison. The BEEP3D
# parts (`train.beep3d`: box prior, teacher, consistency losses) shape beep3d and two_stage
# training only; box_heuristic and full read them just to monitor the box prior's labels.
MODE_ONLY_PARAMS = {"train.two_stage.": ("two_stage",), "train.beep3d.": ("beep3d", "two_stage")}
# Params added after runs had been logged, with the value a run from before the param existed ran
# with: fp32 (`train.amp`), the teacher on every step (`teacher_every`), one view for student and
# teacher (`student_color_mask`) and, with the masked view, every loss reading it
# (`student_color_mask_losses`), in-training evaluations over every val scene (`val_scenes`,
# which came with the 120-scene val split). A run that logged no value is read as that value, so
# old and new runs of one configuration share a row of the experiments table.
VALUE_BEFORE_PARAM_EXISTED = {
    "train.amp": "off",
    "train.beep3d.teacher_every": "1",
    "train.beep3d.student_color_mask": "0.0",
    "train.beep3d.student_color_mask_losses": "all",
    "train.val_scenes": "0",
}
RUN_METRICS = (
    ("evaluate/val_mAP", "mAP"),
    ("evaluate/val_AP50", "AP50"),
    ("evaluate/val_AP25", "AP25"),
    ("last/pseudo_teacher_iou_ambiguous", "teacher IoU amb."),
    ("last/pseudo_box_prior_iou_ambiguous", "box prior IoU amb."),
    ("last/pseudo_box_heuristic_iou_ambiguous", "box heuristic IoU amb."),
    ("last/pseudo_two_stage_iou_ambiguous", "two-stage labels IoU amb."),
)


class ReportError(ValueError):
    """A required input of the report is missing or unreadable; the message names it."""


class SplitLeakError(ReportError):
    """Evaluated scenes overlap the training split."""


# --------------------------------------------------------------------------- formatting


_MISSING = object()  # a params key absent from one side of a comparison


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def fmt(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; DASH for None, NaN or a missing value."""
    x = _finite(value)
    return DASH if x is None else f"{x:.{digits}f}"


def _show_param(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _cell(value: Any) -> str:
    return _show_param(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown table; the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def mean_std(values: Sequence[Any]) -> str:
    """Mean and sample std (ddof=1) of the finite values as "m ± s"; "m (n=1)" for a single
    value, DASH for none. When some values are missing, the count averaged is appended."""
    finite = [v for v in (_finite(x) for x in values) if v is not None]
    if not finite:
        return DASH
    if len(finite) == 1:
        return f"{finite[0]:.3f} (n=1)"
    text = f"{statistics.mean(finite):.3f} ± {statistics.stdev(finite):.3f}"
    return text if len(finite) == len(values) else f"{text} (n={len(finite)})"


# --------------------------------------------------------------------------- history


def step_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in history if "total" in r]


def eval_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in history if "val_student_mAP" in r]


def labelled_evaluations(summary: dict[str, Any], history: Sequence[dict[str, Any]]) -> dict[str, dict]:
    """{"last": row, "best": row} from train_summary.json, or from the history when the summary
    lacks them; {} when training never evaluated."""
    found = {k: summary[k] for k in ("last", "best") if isinstance(summary.get(k), dict)}
    evals = eval_rows(history)
    if evals:
        found.setdefault("last", evals[-1])
        found.setdefault("best", max(evals, key=lambda r: r["val_student_mAP"]))
    return found


def plot_tables(history: Sequence[dict[str, Any]]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """The DVC plot tables: file name -> (header, rows). Only columns the history has; a value
    missing in one row (qc before the teacher warm-up) is an empty cell."""
    steps, evals = step_rows(history), eval_rows(history)
    loss_keys = [k for k in plots.LOSS_KEYS if any(k in r for r in steps)]
    ap_keys = [
        f"{role}_{m}"
        for role in ("student", "teacher")
        for m in ("mAP", "AP50", "AP25")
        if any(f"val_{role}_{m}" in r for r in evals)
    ]
    iou_keys = {  # CSV column -> history key
        f"{res}_{where}": f"pseudo_{res}_iou_{where}"
        for res in plots.RESOLVER_LABELS
        for where in ("all", "ambiguous")
        if any(f"pseudo_{res}_iou_{where}" in r for r in evals)
    }
    return {
        "losses.csv": (
            ["step", "epoch", *(k.replace("/", "_") for k in loss_keys)],
            [[r["step"], r["epoch"] + 1, *(r.get(k) for k in loss_keys)] for r in steps],
        ),
        "val_map.csv": (
            ["epoch", "step", *ap_keys],
            [[r["epoch"] + 1, r["step"], *(r.get(f"val_{k}") for k in ap_keys)] for r in evals],
        ),
        "pseudo_iou.csv": (
            ["epoch", "step", *iou_keys],
            [[r["epoch"] + 1, r["step"], *(r.get(k) for k in iou_keys.values())] for r in evals],
        ),
    }


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return format(v, ".6g") if math.isfinite(v) else ""
        return str(v)

    return "\n".join(",".join(cell(v) for v in row) for row in [header, *rows]) + "\n"


# --------------------------------------------------------------------------- sections


def headline_section(
    metrics: dict[str, Any],
    summary: dict[str, Any],
    mode: str,
    epochs: int,
    class_set: ClassSet,
    gt_counts: Mapping[str, int],
    rescored: dict[str, Any] | None,
) -> str:
    """Val mAP / AP50 / AP25 of the evaluated model and its per-class table."""
    val = metrics["val"]
    headline = summary.get("headline", "last")
    row = summary.get(headline)
    if isinstance(row, dict) and "epoch" in row:
        which = f"the `{headline}` student, after epoch {row['epoch'] + 1} of {epochs}"
    else:
        which = f"the student after the final epoch {epochs} (no evaluations during training)"
    out = [
        "## 1. Headline",
        "",
        f"Mode `{mode}`; the evaluated model is {which}. "
        f"Val: {val.get('n_scenes', DASH)} scenes, {val.get('n_gt_instances', DASH)} ground-truth instances "
        f"(ScanNet protocol, instances under {MIN_REGION_SIZE} vertices ignored).",
        "",
        scores_table(val, "val"),
        "",
    ]
    if rescored is not None:
        same = all(
            (_finite(rescored[k]) is None and _finite(val.get(k)) is None)
            or (
                _finite(rescored[k]) is not None
                and _finite(val.get(k)) is not None
                and abs(float(rescored[k]) - float(val[k])) < 1e-6
            )
            for k in ("mAP", "AP50", "AP25")
        )
        verdict = (
            "they match metrics.json"
            if same
            else "**they differ from metrics.json: the submission or the metrics are stale; re-run `dvc repro evaluate`**"
        )
        out += [
            f"Re-scored from the submission files: mAP {fmt(rescored['mAP'])}, AP50 {fmt(rescored['AP50'])}, "
            f"AP25 {fmt(rescored['AP25'])}; {verdict}.",
            "",
        ]
    out += [
        f"Per class ({DASH}: no ground truth in the evaluated scenes, left out of the means):",
        "",
        per_class_table(val, class_set, gt_counts),
    ]
    return "\n".join(out)


def scores_table(result: Mapping[str, Any], label: str) -> str:
    """One row of mAP / AP50 / AP25 (an `Evaluator.result()` or metrics.json's "val")."""
    return md_table(
        ["", "mAP", "AP50", "AP25"],
        [[label, fmt(result.get("mAP")), fmt(result.get("AP50")), fmt(result.get("AP25"))]],
    )


def per_class_table(result: Mapping[str, Any], class_set: ClassSet, gt_counts: Mapping[str, int]) -> str:
    """AP / AP50 / AP25 and the ground-truth instance count of every class of the class set."""
    per_class = result.get("per_class", {})
    rows = []
    for name in class_set.instance_names:
        c = per_class.get(name, {})
        rows.append([name, gt_counts.get(name, 0), fmt(c.get("AP")), fmt(c.get("AP50")), fmt(c.get("AP25"))])
    return md_table(["class", "GT instances", "AP", "AP50", "AP25"], rows)


@dataclass(frozen=True)
class TrackedRun:
    """One finished MLflow run of the experiment, as the report needs it."""

    run_id: str
    name: str
    start_time: int  # ms since the epoch
    params: dict[str, str]  # flattened params.yaml keys -> MLflow's string values
    metrics: dict[str, float]  # latest value of each metric
    tags: dict[str, str]

    @property
    def mode(self) -> str:
        return self.tags.get("mode") or self.params.get("train.mode", DASH)


class StoreUnavailable(RuntimeError):
    """The MLflow store cannot be read; the message says which and why."""


def training_run(
    run_key: Any, run_key_path: Path, project_root: Path, env: Mapping[str, str]
) -> dict[str, str]:
    """The training's MLflow run (RunInfo as a dict), found by the train stage's run key in the
    store the train stage resolves (pipeline/tracking.py `RunKey`). Raises StoreUnavailable."""
    uri = resolve_tracking_uri(project_root, env)
    try:
        key = RunKey.from_json(run_key, str(run_key_path))
        found = find_run(uri, key)
    except TrackingError as err:
        raise StoreUnavailable(str(err)) from err
    if found is None:
        raise StoreUnavailable(
            f"no run of experiment {key.experiment!r} tagged run_key={key.run_key} in {uri}"
        )
    return found.to_json()


def load_runs(tracking_uri: str, experiment_id: str) -> list[TrackedRun]:
    """Every FINISHED run of the experiment, oldest first. Raises StoreUnavailable."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        # Opening a missing sqlite store would create an empty one: a report must not write there.
        raise StoreUnavailable(f"no MLflow store at {db}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    runs: list[TrackedRun] = []
    try:
        client = open_client(tracking_uri)
        token = None
        while True:
            page = client.search_runs(
                [experiment_id],
                filter_string="attributes.status = 'FINISHED'",
                order_by=["attributes.start_time ASC"],
                max_results=1000,
                page_token=token,
            )
            for run in page:
                runs.append(
                    TrackedRun(
                        run_id=run.info.run_id,
                        name=run.info.run_name or run.info.run_id[:8],
                        start_time=int(run.info.start_time or 0),
                        params=dict(run.data.params),
                        metrics=dict(run.data.metrics),
                        tags=dict(run.data.tags),
                    )
                )
            token = page.token
            if not token:
                break
    except Exception as err:  # any store failure: the experiments section says so instead
        lines = str(err).strip().splitlines()
        raise StoreUnavailable(
            f"MLflow store {tracking_uri!r} unreadable: {type(err).__name__}: {lines[0] if lines else ''}"
        ) from err
    return runs


def mode_reads(run: TrackedRun, key: str) -> bool:
    """False where only other modes than the run's read `key` (MODE_ONLY_PARAMS)."""
    return not any(
        key.startswith(prefix) and run.mode not in modes for prefix, modes in MODE_ONLY_PARAMS.items()
    )


def relevant_param(run: TrackedRun, key: str) -> str | None:
    """The run's value of `key`; None where only other modes read the key (`mode_reads`) or where
    it logged none, unless the key came after the run (VALUE_BEFORE_PARAM_EXISTED)."""
    if not mode_reads(run, key):
        return None
    return run.params.get(key, VALUE_BEFORE_PARAM_EXISTED.get(key))


def differing_params(runs: Sequence[TrackedRun], ignore: Iterable[str] = EXECUTION_ONLY_PARAMS) -> list[str]:
    """Param keys whose values are not identical across the `runs` whose mode reads them (absent
    counts as a value: `relevant_param`). A key that only some modes read and all of those runs
    agree on, such as a BEEP3D switch next to box_heuristic runs, does not differ."""
    skip = set(ignore)
    keys = sorted({k for r in runs for k in r.params} - skip)
    return [k for k in keys if len({relevant_param(r, k) for r in runs if mode_reads(r, k)}) > 1]


def group_runs(runs: Sequence[TrackedRun], keys: Sequence[str]) -> list[tuple[tuple, list[TrackedRun]]]:
    """Runs grouped by their (`relevant_param`) values of `keys`, groups in order of their first run."""
    groups: dict[tuple, list[TrackedRun]] = {}
    for run in runs:
        groups.setdefault(tuple(relevant_param(run, k) for k in keys), []).append(run)
    return list(groups.items())


def _shown_param(run: TrackedRun, key: str) -> str:
    value = relevant_param(run, key)
    return DASH if value is None else value


def experiments_section(
    runs: Sequence[TrackedRun] | None, note: str | None, current_run_id: str | None
) -> str:
    """All finished runs with the params that differ between them, then the configurations
    averaged over seeds."""
    out = ["## 2. Training modes and experiments", ""]
    if runs is None:
        return "\n".join([*out, f"Not available: {note}."])
    if not runs:
        return "\n".join([*out, "The MLflow experiment holds no finished run yet."])
    keys = differing_params(runs)
    shown = [k for k in keys if k != "train.mode"]  # the mode has its own column
    rows = []
    for run in runs:
        name = f"**{run.name}** (this run)" if run.run_id == current_run_id else run.name
        rows.append(
            [
                name,
                run.mode,
                *(_shown_param(run, k) for k in shown),
                *(fmt(run.metrics.get(m)) for m, _ in RUN_METRICS),
            ]
        )
    out += [
        f"{len(runs)} finished run(s) in the MLflow experiment; columns: the params that differ between "
        f"runs (execution-only params such as worker and thread counts left out; {DASH} where a run's "
        f"mode does not read the param), val AP from the "
        f"evaluate stage, and the last evaluation's pseudo-mask IoU on ambiguous points.",
        "",
        md_table(["run", "mode", *shown, *(label for _, label in RUN_METRICS)], rows),
        "",
    ]
    group_keys = [k for k in keys if k != "train.seed"]
    shown_group = [k for k in group_keys if k != "train.mode"]
    grows = []
    for _, members in group_runs(runs, group_keys):
        seeds = sorted({m.params.get("train.seed", DASH) for m in members}, key=str)
        grows.append(
            [
                members[0].mode,
                *(_shown_param(members[0], k) for k in shown_group),
                f"{len(members)} ({', '.join(seeds)})",
                *(
                    mean_std([m.metrics.get(k) for m in members])
                    for k in ("evaluate/val_mAP", "evaluate/val_AP50", "evaluate/val_AP25")
                ),
            ]
        )
    out += [
        "Configurations over seeds (mean ± sample std; single runs marked n=1). On a small val set "
        "single runs are noisy: compare means over seeds.",
        "",
        md_table(["mode", *shown_group, "runs (seeds)", "mAP", "AP50", "AP25"], grows),
    ]
    return "\n".join(out)


def pseudo_quality_section(evaluations: dict[str, dict[str, Any]], mode: str) -> str:
    """Mean instance IoU of the pseudo-masks of each resolver at the last and best evaluation."""
    out = ["## 3. Pseudo-mask quality", ""]
    if not evaluations:
        return "\n".join([*out, "No evaluation during training (train.eval_every is 0): nothing measured."])
    labels = [lab for lab in ("last", "best") if lab in evaluations]
    header = ["resolver"]
    for lab in labels:
        epoch = evaluations[lab].get("epoch")
        when = f"{lab}, epoch {epoch + 1}" if isinstance(epoch, int) else lab
        header += [f"all points ({when})", f"ambiguous ({when})"]
    rows = []
    for resolver, name in plots.RESOLVER_LABELS.items():
        row: list[Any] = [name]
        for lab in labels:
            row += [fmt(evaluations[lab].get(f"pseudo_{resolver}_iou_{w}")) for w in ("all", "ambiguous")]
        rows.append(row)
    out += [
        "Mean instance IoU between each box's pseudo-mask and its ground-truth instance on the monitored "
        "training scenes (ground truth used for monitoring only), over all points and over the ambiguous "
        "points (inside an object box and at least one other box).",
        "",
        md_table(header, rows),
    ]
    last = evaluations.get("last", {})
    comparisons = [  # like with like: with the vote against with the vote, alone against alone
        ("teacher", "box_heuristic", "Teacher + vote minus the box heuristic (smallest box + vote)"),
        ("teacher", "box_prior", "Teacher + vote minus the box prior without the teacher (+ vote)"),
        ("teacher_alone", "smallest_box", "Teacher alone minus the smallest-box rule alone"),
        (
            "two_stage",
            "box_heuristic",
            "Two-stage labels (labeler + vote) minus the box heuristic (smallest box + vote)",
        ),
        ("two_stage", "box_prior", "Two-stage labels minus the box prior without a labeler (+ vote)"),
    ]
    lines = []
    for ours, theirs, text in comparisons:
        a = _finite(last.get(f"pseudo_{ours}_iou_ambiguous"))
        b = _finite(last.get(f"pseudo_{theirs}_iou_ambiguous"))
        if a is not None and b is not None:
            lines.append(f"- {text}, ambiguous points (last evaluation): {a - b:+.3f}.")
    if lines:
        out += ["", *lines]
    elif mode not in ("beep3d", "two_stage"):
        out += ["", f"Mode `{mode}` has no EMA teacher: only the box rules are measured."]
    return "\n".join(out)


def dataset_section(scenes: list[dict[str, Any]], stats: dict[str, Any] | None, class_set: ClassSet) -> str:
    """Scenes, points and boxes per split, the box-overlap figures and instances per class."""
    out = ["## 4. Dataset statistics", ""]
    splits = sorted({s["split"] for s in scenes})
    split_stats = (stats or {}).get("splits", {})
    rows = []
    for split in [*splits, "all"]:
        members = scenes if split == "all" else [s for s in scenes if s["split"] == split]
        st = (stats or {}).get("all", {}) if split == "all" else split_stats.get(split, {})
        ov = st.get("overlap", {})
        boxes, background = st.get("boxes"), st.get("background_boxes")
        objects = boxes - background if isinstance(boxes, int) and isinstance(background, int) else DASH
        rows.append(
            [
                split,
                len(members),
                f"{sum(int(s['n_points']) for s in members):,}",
                objects,
                background if background is not None else DASH,
                _percent(ov.get("object_points_in_multiple_boxes")),
                _percent(ov.get("nonobject_points_in_object_box")),
                f"{fmt(ov.get('smallest_box_mean_instance_iou'))} ({fmt(ov.get('smallest_box_worst_instance_iou'))})",
            ]
        )
    header = [
        "split", "scenes", "points", "object boxes", "wall/floor boxes",
        "object points in ≥2 boxes", "non-object points in an object box", "smallest-box IoU mean (worst)",
    ]  # fmt: skip
    out += [
        md_table(header, rows),
        "",
        "Object points in ≥ 2 boxes are the ambiguous share box supervision leaves open "
        "(real ScanNet: 11-15 %).",
    ]
    if stats is None:
        return "\n".join([*out, "", "No stats.json: box and overlap figures unavailable."])
    per_split = {sp: split_stats.get(sp, {}).get("instances_per_class", {}) for sp in splits}
    total = stats.get("all", {}).get("instances_per_class", {})
    rows = [
        [name, *(per_split[sp].get(name, 0) for sp in splits), total.get(name, 0)]
        for name in class_set.instance_names
    ]
    out += ["", "Object boxes (instances) per class:", "", md_table(["class", *splits, "all"], rows)]
    extra = {k: v for k, v in stats.items() if k not in ("all", "splits")}
    if extra:
        out += [
            "",
            "Preprocessing: " + ", ".join(f"{k} = {_show_param(v)}" for k, v in sorted(extra.items())) + ".",
        ]
    return "\n".join(out)


def _percent(value: Any) -> str:
    x = _finite(value)
    return DASH if x is None else f"{100 * x:.1f} %"


def check_splits(train_ids: Iterable[str], evaluated_ids: Iterable[str]) -> None:
    """Refuse to evaluate on scenes that were in the training split."""
    leaked = sorted(set(train_ids) & set(evaluated_ids))
    if leaked:
        names = ", ".join(leaked[:10]) + (" ..." if len(leaked) > 10 else "")
        raise SplitLeakError(
            f"refusing to report: {len(leaked)} evaluated scene(s) are in the training split ({names}); "
            "the submission must hold val scenes only: re-run `dvc repro evaluate`"
        )


def first_n(limit: int, total: int) -> int:
    """How many of `total` scenes a "the first N (0 = all)" param such as `train.monitor_scenes` takes."""
    return total if limit == 0 else min(limit, total)


def splits_section(
    scenes: list[dict[str, Any]], evaluated: Sequence[str], monitor_scenes: int, val_scenes: int
) -> str:
    by_split: dict[str, list[str]] = {}
    for s in scenes:
        by_split.setdefault(s["split"], []).append(s["scene_id"])
    train, val = sorted(by_split.get("train", [])), sorted(by_split.get("val", []))
    out = [
        "## 5. Splits",
        "",
        f"- Trained on the `train` split: {len(train)} scenes (pseudo-mask quality monitored on the first {first_n(monitor_scenes, len(train))}).",
        f"- Evaluated on {len(evaluated)} scenes (the submission's scene files): {', '.join(evaluated) or DASH}.",
        f"- Evaluations during training score the first {first_n(val_scenes, len(val))} of the {len(val)} `val` "
        "scenes (`train.val_scenes`).",
    ]
    missing = sorted(set(val) - set(evaluated))
    if missing:
        out.append(f"- Val scenes without predictions ({len(missing)}): {', '.join(missing)}.")
    outside = sorted(set(evaluated) - set(val))
    if outside:
        out.append(f"- Evaluated scenes outside the `val` split ({len(outside)}): {', '.join(outside)}.")
    for split in sorted(set(by_split) - {"train", "val"}):
        out.append(f"- `{split}` split: {len(by_split[split])} scenes (not used).")
    out.append("- Split guard: passed, no evaluated scene is in the training split.")
    return "\n".join(out)


def params_diff(defaults: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, default, value) for every flattened key whose value differs (`_MISSING` if absent)."""
    d, c = flatten(defaults), flatten(current)
    return [
        (k, d.get(k, _MISSING), c.get(k, _MISSING))
        for k in sorted(set(d) | set(c))
        if d.get(k, _MISSING) != c.get(k, _MISSING)
    ]


@dataclass
class Provenance:
    git_commit: str  # commit hash, or why it is unknown
    git_dirty: bool | None
    dvc_experiment: str
    baseline_rev: str  # the revision the defaults come from
    run_info: dict[str, str] | None
    defaults: dict[str, Any] | None  # params.yaml at baseline_rev; None when unavailable
    defaults_note: str = ""  # why the defaults are unavailable


def provenance_section(prov: Provenance, params: dict[str, Any], params_name: str) -> str:
    dirty = {True: " (with uncommitted changes to tracked files)", False: "", None: ""}[prov.git_dirty]
    out = [
        "## 6. Provenance",
        "",
        f"- git commit: `{prov.git_commit}`{dirty}",
        f"- DVC experiment: `{prov.dvc_experiment}`",
    ]
    if prov.run_info:
        ri = prov.run_info
        out.append(
            f"- MLflow run: `{ri.get('run_id', DASH)}` (name `{ri.get('run_name', DASH)}`, experiment "
            f"{ri.get('experiment_id', DASH)}) in `{ri.get('tracking_uri', DASH)}`"
        )
    else:
        out.append("- MLflow run: no run info (the training was not tracked)")
    out.append("")
    if prov.defaults is None:
        out.append(f"Params that differ from the defaults: unknown ({prov.defaults_note}).")
        return "\n".join(out)
    diff = params_diff(prov.defaults, params)
    if not diff:
        out.append(
            f"Params: {params_name} is identical to its version at `{prov.baseline_rev}` (the defaults)."
        )
        return "\n".join(out)
    out += [
        f"Params that differ from the defaults ({params_name} at `{prov.baseline_rev}`):",
        "",
        md_table(["key", "default", "value"], [[k, _show_param(d), _show_param(v)] for k, d, v in diff]),
    ]
    return "\n".join(out)


def figures_section(figures: dict[str, str], notes: Sequence[str]) -> str:
    """Embedded figures: caption -> path relative to the report."""
    out = ["## 7. Figures", ""]
    for caption, rel in figures.items():
        out += [f"**{caption}**", "", f"![{caption}]({rel})", ""]
    out += [f"- {note}" for note in notes]
    return "\n".join(out).rstrip()


# --------------------------------------------------------------------------- loading


def _git(project_root: Path, *args: str) -> tuple[int, str]:
    """(exit code, stdout or the first line of the error); -1 when git cannot run at all."""
    proc = run_git(project_root, *args)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return proc.returncode, lines[0] if lines else f"exit code {proc.returncode}"
    return 0, proc.stdout


def provenance(
    project_root: Path, params_path: Path, run_info: dict[str, str] | None, env: Mapping[str, str]
) -> Provenance:
    """git commit, DVC experiment and the params defaults: params.yaml at the experiment's
    baseline commit inside `dvc exp run` (DVC_EXP_BASELINE_REV), else at HEAD."""
    rc, out = _git(project_root, "rev-parse", "HEAD")
    commit = out.strip() if rc == 0 else f"unknown (git: {out.strip()})"
    dirty = None
    if rc == 0:
        drc, _ = _git(project_root, "diff", "--quiet", "HEAD")
        dirty = {0: False, 1: True}.get(drc)
    rev = env.get("DVC_EXP_BASELINE_REV", "").strip() or "HEAD"
    prov = Provenance(commit, dirty, env.get("DVC_EXP_NAME", "").strip() or "workspace", rev, run_info, None)
    try:
        rel = params_path.resolve().relative_to(project_root.resolve()).as_posix()
    except ValueError:
        prov.defaults_note = f"{params_path} is outside the project {project_root}"
        return prov
    rc, text = _git(project_root, "show", f"{rev}:./{rel}")
    if rc != 0:
        prov.defaults_note = f"`git show {rev}:{rel}` failed: {text.strip()}"
        return prov
    try:
        loaded = parse_yaml(text)
    except yaml.YAMLError as err:
        prov.defaults_note = f"{rel} at {rev} is not valid YAML: {err}"
        return prov
    prov.defaults = loaded if isinstance(loaded, dict) else {}
    return prov


def _read_json(path: Path, hint: str = "") -> Any:
    if not path.is_file():
        raise ReportError(f"{path}: not found" + (f"; {hint}" if hint else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: not valid JSON: {err}") from err


def submission_scenes(submission_dir: Path) -> list[str]:
    """Scene ids with a scene file in the submission (its mask files live in a subfolder)."""
    if not submission_dir.is_dir():
        raise ReportError(f"{submission_dir}: no submission folder; run `dvc repro evaluate`")
    return sorted(p.stem for p in submission_dir.glob("*.txt") if p.is_file())


def gt_instance_ids(label: np.ndarray, instance: np.ndarray, class_set: ClassSet) -> np.ndarray:
    """(N,) instance id of vertices on an instance of an evaluated class, -1 elsewhere."""
    on = (class_set.class_index(label) >= 0) & (instance > 0)
    return np.where(on, instance.astype(np.int64), -1)


def gt_counts_per_class(label: np.ndarray, instance: np.ndarray, class_set: ClassSet) -> np.ndarray:
    """(C,) ground-truth instances per class as the evaluator counts them (>= MIN_REGION_SIZE)."""
    cls = class_set.class_index(label)
    on = (cls >= 0) & (instance > 0)
    base = int(instance.max(initial=0)) + 1
    keys, sizes = np.unique(
        cls[on] * base + instance[on], return_counts=True
    )  # one key per (class, instance)
    return np.bincount(keys[sizes >= MIN_REGION_SIZE] // base, minlength=class_set.num_classes)


def winning_mask(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(N,) index of the highest-scoring mask that holds each vertex, -1 where none does."""
    out = np.full(masks.shape[1], -1, np.int64)
    best = np.full(masks.shape[1], -np.inf)
    for k in range(len(scores)):
        take = masks[k] & (scores[k] > best)
        out[take], best[take] = k, scores[k]
    return out


@dataclass
class ValScores:
    """The evaluated scenes re-scored from the submission, and the views the figures need."""

    result: dict[str, Any]  # Evaluator.result(return_curves=True)
    gt_counts: dict[str, int]  # class name -> ground-truth instances (evaluator's count)
    scene_views: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)


def score_submission(
    processed_dir: Path, submission_dir: Path, scene_ids: Sequence[str], class_set: ClassSet, n_views: int
) -> ValScores:
    """One scene at a time (memory bounded by the largest scene): ground truth + submission into
    the evaluator; (scene id, xyz, gt ids, predicted ids) kept for the first `n_views` scenes."""
    evaluator = Evaluator(class_set)
    counts = np.zeros(class_set.num_classes, np.int64)
    views = []
    for i, scene_id in enumerate(scene_ids):
        cols = ["label", "instance", *(("x", "y", "z") if i < n_views else ())]
        pts = read_scene_points(processed_dir, scene_id, cols)
        label, instance = pts["label"].astype(np.int64), pts["instance"].astype(np.int64)
        pred = read_submission(submission_dir, scene_id, class_set, n_vertices=len(label))
        evaluator.add(SceneGT(scene_id, label, instance), pred)
        counts += gt_counts_per_class(label, instance, class_set)
        if i < n_views:
            xyz = np.stack([pts["x"], pts["y"], pts["z"]], axis=1)
            views.append(
                (
                    scene_id,
                    xyz,
                    gt_instance_ids(label, instance, class_set),
                    winning_mask(pred.masks, pred.scores),
                )
            )
    counts_by_name = dict(zip(class_set.instance_names, counts.tolist(), strict=True))
    return ValScores(evaluator.result(return_curves=True), counts_by_name, views)


def main_classes(gt_counts: Mapping[str, int], class_set: ClassSet, n: int = N_PR_CLASSES) -> list[str]:
    """Up to `n` classes with the most ground-truth instances (ties: class order), none empty."""
    order = sorted(class_set.instance_names, key=lambda c: -gt_counts.get(c, 0))  # stable: class order
    return [c for c in order if gt_counts.get(c, 0) > 0][:n]


@dataclass
class PseudoScene:
    """The teacher's pseudo-masks on the ambiguous points of one training scene (eval mode)."""

    scene_id: str
    xyz: np.ndarray  # (P, 3) original frame
    ambiguous: np.ndarray  # (P,) bool, inside an object box and at least one other box
    teacher_ids: np.ndarray  # (P,) instance (box) id the teacher's assignment gives, -1 background
    gt_ids: np.ndarray  # (P,) ground-truth instance id, -1 where not an evaluated-class instance
    agreement: float  # share of ambiguous points where teacher_ids == gt_ids (NaN without any)


def teacher_pseudo_scene(
    teacher_path: Path, processed_dir: Path, train_params: dict[str, Any]
) -> PseudoScene:
    """Run the exported EMA teacher on the first training scene and resolve its ambiguous points
    as training does (`teacher_view` + `pseudo_assignment`, switches from params `train.beep3d`)."""
    import torch

    from beep3d.data.dataset import DataConfig, SceneDataset, make_loader
    from beep3d.loss.criterion import Criterion, CriterionConfig
    from beep3d.loss.targets import point_assignment_from_boxes
    from beep3d.student_teacher import Beep3dConfig, pseudo_assignment, teacher_view
    from pipeline.training import load_model

    beep3d_cfg = build(Beep3dConfig, section(train_params, "beep3d"), "train.beep3d")
    criterion = Criterion.from_config(build(CriterionConfig, section(train_params, "loss"), "train.loss"))
    teacher, payload = load_model(teacher_path, torch.device("cpu"))
    data_cfg = build(DataConfig, payload["data_loader"], f"{teacher_path}: data_loader")
    dataset = SceneDataset(
        processed_dir, "train", data_cfg, with_ground_truth=True, train=False, max_scenes=1
    )
    batch = next(iter(make_loader(dataset, 1, shuffle=False, seed=0, num_workers=0)))
    view = teacher_view(teacher, batch, beep3d_cfg.center_queries, criterion)
    sup = batch["supervision"][0]
    assigned = pseudo_assignment(sup, view.box_prob[0], beep3d_cfg).numpy()  # (P,) box index or < 0
    _, ambiguous = point_assignment_from_boxes(sup["point_in_box"], sup["box_is_background"])
    box_id, is_bg = sup["box_id"].numpy(), sup["box_is_background"].numpy()
    on_object = assigned >= 0
    on_object[on_object] = ~is_bg[assigned[on_object]]
    teacher_ids = np.where(on_object, box_id[np.maximum(assigned, 0)], -1)
    scene_id = dataset.scene_ids[0]
    gt = batch["ground_truth"][0]
    gt_ids = gt_instance_ids(gt["label"].numpy().astype(np.int64), gt["instance"].numpy(), dataset.class_set)
    pts = read_scene_points(processed_dir, scene_id, ["x", "y", "z"])
    amb = ambiguous.numpy()
    agreement = float(np.mean(teacher_ids[amb] == gt_ids[amb])) if amb.any() else math.nan
    return PseudoScene(
        scene_id, np.stack([pts["x"], pts["y"], pts["z"]], axis=1), amb, teacher_ids, gt_ids, agreement
    )


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class ReportPaths:
    params: Path  # params.yaml
    data: Path  # data/processed
    reports: (
        Path  # reports/: metrics.json, train_history.json, train_summary.json, mlflow_run.json, submission/
    )
    out: Path  # reports/report.md
    figures: Path  # reports/figures
    plots: Path  # reports/plots
    teacher: Path  # checkpoints/export/last_teacher.pt (beep3d mode)
    project_root: Path  # where git runs


def _swap_in(partial: Path, final: Path) -> None:
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)


def build_report(paths: ReportPaths, params: dict[str, Any], env: Mapping[str, str] | None = None) -> str:
    """Load every input, check the splits, write figures, plot tables and report.md (last, so a
    report never links a figure that is not there). Returns the markdown."""
    env = os.environ if env is None else env
    r = paths.reports
    metrics = _read_json(r / "metrics.json", "run `dvc repro evaluate`")
    history = _read_json(r / "train_history.json", "run `dvc repro train`")
    summary = _read_json(r / "train_summary.json", "run `dvc repro train`")
    run_key_path = r / "mlflow_run.json"
    run_key = _read_json(run_key_path) if run_key_path.is_file() else None
    stats_path = paths.data / "stats.json"
    stats = _read_json(stats_path) if stats_path.is_file() else None
    if "val" not in metrics:
        raise ReportError(f"{r / 'metrics.json'}: no 'val' entry")
    scenes = read_table(paths.data / "scenes.parquet").sort_by("scene_id").to_pylist()
    train_params = section(params, "train")
    mode, epochs = str(train_params["mode"]), int(train_params["epochs"])
    names = {s["class_set"] for s in scenes}
    if len(names) != 1 or next(iter(names)) not in CLASS_SETS:
        raise ReportError(
            f"{paths.data / 'scenes.parquet'}: expected one known class set, found {sorted(names)}"
        )
    class_set = CLASS_SETS[next(iter(names))]

    submission = r / "submission"
    evaluated = submission_scenes(submission)
    check_splits((s["scene_id"] for s in scenes if s["split"] == "train"), evaluated)
    known = {s["scene_id"] for s in scenes}
    unknown = [s for s in evaluated if s not in known]
    if unknown:
        raise ReportError(f"{submission}: scenes {unknown[:5]} are not in {paths.data / 'scenes.parquet'}")
    val = score_submission(paths.data, submission, evaluated, class_set, N_SCENE_FIGURES)

    runs, run_info, store_note = None, None, None
    if run_key is None:
        store_note = f"no {run_key_path} (the training was not tracked in MLflow)"
    else:
        try:
            run_info = training_run(run_key, run_key_path, project_root_of(paths.project_root), env)
            runs = load_runs(run_info["tracking_uri"], run_info["experiment_id"])
        except StoreUnavailable as err:
            store_note = str(err)

    # Figures: drawn into `<figures>.partial`, swapped in whole.
    partial = paths.figures.with_name(paths.figures.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    drawn: dict[str, str] = {}
    notes: list[str] = []

    def emit(caption: str, name: str, fig: Any, missing: str) -> None:
        if fig is None:
            notes.append(f"{caption}: not drawn, {missing}.")
            return
        plots.save_png(fig, partial / name)
        drawn[caption] = os.path.relpath(paths.figures / name, paths.out.parent).replace(os.sep, "/")

    try:
        steps, evals = step_rows(history), eval_rows(history)
        emit("Training losses", "losses.png", plots.losses_figure(steps), "the history has no step rows")
        emit(
            "Val AP per evaluation",
            "val_map.png",
            plots.val_map_figure(evals),
            "no evaluation during training",
        )
        emit(
            "Pseudo-mask IoU per evaluation",
            "pseudo_iou.png",
            plots.pseudo_iou_figure(evals),
            "no evaluation during training",
        )
        pr_classes = main_classes(val.gt_counts, class_set)
        emit(
            "Precision-recall at IoU 0.5, main val classes",
            "pr_curves.png",
            plots.pr_curves_figure(val.result.get("curves", {}), pr_classes),
            "no ground-truth instance in the evaluated scenes",
        )
        for scene_id, xyz, gt_ids, pred_ids in val.scene_views:
            emit(
                f"Val scene {scene_id}: ground truth vs prediction",
                f"scenes/{scene_id}.png",
                plots.scene_figure(scene_id, xyz, gt_ids, pred_ids),
                "",
            )
        if mode != "beep3d":
            notes.append(f"Teacher pseudo-masks on a training scene: skipped, mode `{mode}` has no teacher.")
        elif not paths.teacher.is_file():
            notes.append(
                f"Teacher pseudo-masks on a training scene: skipped, no teacher checkpoint at {paths.teacher}."
            )
        else:
            ps = teacher_pseudo_scene(paths.teacher, paths.data, train_params)
            emit(
                f"Teacher pseudo-masks on the ambiguous points of training scene {ps.scene_id} "
                f"({_percent(ps.agreement)} of them as in the ground truth)",
                f"pseudo_{ps.scene_id}.png",
                plots.pseudo_figure(ps.scene_id, ps.xyz, ps.ambiguous, ps.teacher_ids, ps.gt_ids),
                "",
            )
    except BaseException:  # an interrupted draw leaves no partial folder behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _swap_in(partial, paths.figures)

    for name, (header, rows) in plot_tables(history).items():
        write_text_atomic(paths.plots / name, csv_text(header, rows))

    prov = provenance(paths.project_root, paths.params, run_info, env)
    rescored = {k: val.result[k] for k in ("mAP", "AP50", "AP25")}
    sections = [
        "# beep3d report",
        headline_section(metrics, summary, mode, epochs, class_set, val.gt_counts, rescored),
        experiments_section(runs, store_note, (run_info or {}).get("run_id")),
        pseudo_quality_section(labelled_evaluations(summary, history), mode),
        dataset_section(scenes, stats, class_set),
        splits_section(
            scenes,
            evaluated,
            int(train_params.get("monitor_scenes", 0)),
            int(train_params.get("val_scenes", 0)),
        ),
        provenance_section(prov, params, paths.params.name),
        figures_section(drawn, notes),
    ]
    text = "\n\n".join(sections) + "\n"
    write_text_atomic(paths.out, text)
    return text
