"""The training modes compared over seeds, paired on the seed, from the MLflow store.

    python -m pipeline.compare [--modes beep3d,box_heuristic,full] [--seeds 0,1,2]
        [--set key=value ...] [--run] [--tracking-uri URI] [--out FILE]

Which runs are compared. Every FINISHED run of the experiment whose params equal params.yaml with
the `--set` overrides applied, apart from `train.mode`, `train.seed` and the execution-only params
that the report also sets aside (worker and thread counts) and the params its mode does not read
(`train.two_stage.*` outside two_stage), and which carries the evaluate stage's
`evaluate/val_mAP` (the evaluate stage logs into the training's run). Of several such runs for one
mode and seed the newest is used. Every other run of a compared mode is listed with the reason it
was left out, and each mode's missing seeds are named.

What is printed (markdown; `--out` writes the same text atomically):
- per mode, mean ± sample std over its seeds of val mAP / AP50 / AP25 (`evaluate/val_*`) and of
  each pseudo-mask IoU on ambiguous points the runs logged (`last/pseudo_<resolver>_iou_ambiguous`);
- per pair of modes A, B (in the order of `--modes`), on the seeds both have: the per-seed
  differences A − B, their mean ± sample std, and the half-width of the two-sided 95 % t-interval
  of the mean difference, t(0.975, n − 1) · std / √n, i.e. the smallest difference this benchmark
  resolves with n seeds at the observed spread. A difference is *resolved* when that interval
  excludes 0. The same for the per-seed mAP ratio A / B (resolved: the interval excludes 1). Also
  the pooled seed std of the two modes, sqrt(((n−1)·s_A² + (n−1)·s_B²) / (2n − 2)), and whether
  |mean difference| > 2 × pooled std.

`--run` first queues `dvc exp run --queue -n <mode>-s<seed>[-<hash of the overrides>]
-S train.mode=M -S train.seed=S [-S override ...]` for each mode and seed without a usable run,
starts the queue with one worker (`dvc queue start -j 1`: CPU trainings on one machine only slow
each other down), waits for it, and then prints the comparison from the store.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from beep3d.io import write_text_atomic
from pipeline.config import ConfigError, flatten, load_params, parse_yaml, section
from pipeline.report import (
    DASH,
    EXECUTION_ONLY_PARAMS,
    MODE_ONLY_PARAMS,
    StoreUnavailable,
    TrackedRun,
    _finite,
    differing_params,
    fmt,
    group_runs,
    load_runs,
    md_table,
    mean_std,
)
from pipeline.tracking import open_client, redact_params, resolve_tracking_uri, sqlite_path

# The MLflow experiment the train stage records into (stages.train.EXPERIMENT; not imported from
# there because that module pulls in torch and the whole training; a test keeps the two equal).
EXPERIMENT = "beep3d"
DEFAULT_MODES = ("beep3d", "box_heuristic", "full")
VARIED = ("train.mode", "train.seed")  # what the comparison varies; every other param must match
AP_METRICS = (("evaluate/val_mAP", "mAP"), ("evaluate/val_AP50", "AP50"), ("evaluate/val_AP25", "AP25"))
REQUIRED_METRIC = "evaluate/val_mAP"  # a run without it was never evaluated
RATIO_METRIC = ("evaluate/val_mAP", "mAP")  # A / B per seed, as "beep3d reaches x of full"
PSEUDO_AMBIGUOUS = re.compile(r"^last/pseudo_(?P<resolver>.+)_iou_ambiguous$")
LEVEL = 0.95  # two-sided confidence level of the t-intervals
MAX_LISTED = 12  # left-out runs listed by name; the rest are counted
QUEUE_ACTIVE = ("Queued", "Running")


class CompareError(ValueError):
    """The comparison cannot be made as asked; the message says what to change."""


# --------------------------------------------------------------------------- params


def sort_seeds(seeds: Iterable[str]) -> list[str]:
    """Seeds as MLflow keeps them (strings), in numeric order where they are integers."""

    def key(seed: str) -> tuple[int, int, str]:
        try:
            return (0, int(seed), "")
        except ValueError:
            return (1, 0, seed)

    return sorted(set(seeds), key=key)


def parse_overrides(items: Sequence[str], params: dict[str, Any]) -> dict[str, Any]:
    """`key=value` texts (as for `dvc exp run -S`) -> {dotted key: value parsed as YAML}. The key
    must exist in params.yaml and name a value, not a section; mode and seed are not overridable
    here because they are what the comparison varies."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CompareError(f"--set {item!r}: expected key=value, e.g. --set train.ema=0.99")
        if key in VARIED:
            raise CompareError(f"--set {item}: the compared modes and seeds are given by --modes and --seeds")
        try:
            current = section(params, key)
        except ConfigError as err:
            raise CompareError(f"--set {item}: {err} (dvc exp run -S rejects it too)") from err
        if isinstance(current, dict):
            raise CompareError(f"--set {item}: {key} is a section; set its keys one by one")
        try:
            out[key] = parse_yaml(text)
        except yaml.YAMLError as err:
            raise CompareError(f"--set {item}: the value is not valid YAML: {err}") from err
    return out


def expected_params(params: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, str]:
    """The flat params a matching run logged: params.yaml with the overrides, as the train stage
    logs them (flattened, secrets redacted, values as str)."""
    flat = flatten(params)
    flat.update(overrides)
    return {k: str(v) for k, v in redact_params(flat).items()}


def param_differences(run: TrackedRun, expected: Mapping[str, str]) -> list[str]:
    """Keys (absent counts as a value) whose logged value differs from the expected one, leaving
    out the varied and the execution-only params and the params the run's mode does not read
    (`train.two_stage.*` outside two_stage, `train.beep3d.*` outside beep3d and two_stage:
    pipeline.report.MODE_ONLY_PARAMS)."""
    # The reference stands for the run's own mode, so that mode-only params count for it alone.
    reference = TrackedRun("expected", "expected", 0, {**expected, "train.mode": run.mode}, {}, {})
    return differing_params([run, reference], ignore=EXECUTION_ONLY_PARAMS | set(VARIED))


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Which run stands for each (mode, seed), and why the other runs do not."""

    modes: tuple[str, ...]
    seeds: tuple[str, ...]  # requested with --seeds, else every seed some compared mode has
    used: dict[tuple[str, str], TrackedRun]  # (mode, seed) -> the run compared
    left_out: tuple[tuple[TrackedRun, str], ...]  # (run, why it is not compared)

    def seeds_of(self, mode: str) -> list[str]:
        return [s for s in self.seeds if (mode, s) in self.used]

    def missing(self, mode: str) -> list[str]:
        return [s for s in self.seeds if (mode, s) not in self.used]

    def values(self, mode: str, metric: str) -> dict[str, float | None]:
        """seed -> the metric of the run used (None when it did not log a finite value)."""
        return {s: _finite(self.used[(mode, s)].metrics.get(metric)) for s in self.seeds_of(mode)}


def _why_params(run: TrackedRun, keys: Sequence[str], expected: Mapping[str, str]) -> str:
    shown = ", ".join(
        f"{k}={run.params.get(k, '(absent)')} (here {expected.get(k, '(absent)')})" for k in keys[:3]
    )
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return f"other params: {shown}{more}"


def select_runs(
    runs: Sequence[TrackedRun],
    expected: Mapping[str, str],
    modes: Sequence[str],
    seeds: Sequence[str] | None = None,
) -> Selection:
    """The run for each (mode, seed) among `runs` (oldest first, as `load_runs` gives them), or
    for every seed found when `seeds` is None. Runs of modes not compared are ignored silently;
    every other run not used is kept in `left_out` with its reason."""
    matching: list[TrackedRun] = []
    left_out: list[tuple[TrackedRun, str]] = []
    wanted = None if seeds is None else set(seeds)
    for run in runs:
        mode, seed = run.params.get("train.mode"), run.params.get("train.seed")
        if mode not in modes:
            continue
        if seed is None:
            left_out.append((run, "no train.seed param"))
            continue
        if wanted is not None and seed not in wanted:
            left_out.append((run, f"seed {seed} not asked for"))
            continue
        differ = param_differences(run, expected)
        if differ:
            left_out.append((run, _why_params(run, differ, expected)))
            continue
        if REQUIRED_METRIC not in run.metrics:
            left_out.append((run, f"no {REQUIRED_METRIC}: the evaluate stage did not log to this run"))
            continue
        matching.append(run)
    used: dict[tuple[str, str], TrackedRun] = {}
    for (mode, seed), members in group_runs(matching, VARIED):
        used[(mode, seed)] = members[-1]  # the newest
        left_out += [
            (m, f"a newer run of the same mode and seed is used ({members[-1].name})") for m in members[:-1]
        ]
    found = sort_seeds(s for _, s in used) if seeds is None else list(seeds)
    return Selection(tuple(modes), tuple(found), used, tuple(left_out))


# --------------------------------------------------------------------------- statistics


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided Student-t quantile t((1 + level) / 2, df)."""
    from scipy import stats

    if df < 1:
        raise ValueError(f"t quantile needs df >= 1, got {df}")
    return float(stats.t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class MeanInterval:
    """The mean of per-seed values (differences or ratios) with its two-sided t-interval."""

    values: tuple[float, ...]
    null: float  # "no effect": 0 for a difference, 1 for a ratio
    level: float = LEVEL

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        """Sample std (ddof=1); NaN under two values."""
        return statistics.stdev(self.values) if self.n >= 2 else math.nan

    @property
    def half_width(self) -> float:
        """t((1 + level) / 2, n - 1) * std / sqrt(n): the smallest resolvable effect; NaN under two values."""
        return t_quantile(self.n - 1, self.level) * self.std / math.sqrt(self.n) if self.n >= 2 else math.nan

    @property
    def resolved(self) -> bool | None:
        """The interval excludes `null`; None when there are too few values to tell."""
        if self.n < 2:
            return None
        return abs(self.mean - self.null) > self.half_width


def pooled_std(a: Sequence[float], b: Sequence[float]) -> float:
    """sqrt(((n_a - 1) s_a² + (n_b - 1) s_b²) / (n_a + n_b - 2)), sample variances; NaN unless
    both sides have two values or more."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    num = (len(a) - 1) * statistics.variance(a) + (len(b) - 1) * statistics.variance(b)
    return math.sqrt(num / (len(a) + len(b) - 2))


@dataclass(frozen=True)
class PairedMetric:
    """One metric of modes A and B on the seeds where both have a finite value."""

    label: str
    seeds: tuple[str, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def difference(self) -> MeanInterval:
        return MeanInterval(tuple(x - y for x, y in zip(self.a, self.b, strict=True)), 0.0)

    @property
    def ratio(self) -> MeanInterval | None:
        """A / B per seed; None when B is 0 on some seed."""
        if any(y == 0 for y in self.b):
            return None
        return MeanInterval(tuple(x / y for x, y in zip(self.a, self.b, strict=True)), 1.0)

    @property
    def pooled_std(self) -> float:
        return pooled_std(self.a, self.b)

    @property
    def beyond_two_pooled_std(self) -> bool | None:
        """|mean difference| > 2 × pooled seed std; None when the pooled std is undefined."""
        pooled = self.pooled_std
        return None if math.isnan(pooled) else abs(self.difference.mean) > 2 * pooled


def pair_on_seed(label: str, a: Mapping[str, float | None], b: Mapping[str, float | None]) -> PairedMetric:
    """The seeds both `a` and `b` (seed -> value) have a finite value for, in seed order."""
    seeds = [s for s in sort_seeds(set(a) & set(b)) if a[s] is not None and b[s] is not None]
    return PairedMetric(label, tuple(seeds), tuple(a[s] for s in seeds), tuple(b[s] for s in seeds))  # type: ignore[misc]


def pseudo_metrics(runs: Iterable[TrackedRun]) -> list[tuple[str, str]]:
    """(metric, column label) of every `last/pseudo_<resolver>_iou_ambiguous` the runs logged,
    the teacher first, then by resolver name."""
    found = {
        m.group("resolver"): m.group(0) for r in runs for k in r.metrics if (m := PSEUDO_AMBIGUOUS.match(k))
    }
    order = sorted(found, key=lambda res: (res != "teacher", res))
    return [(found[res], f"{res} IoU amb.") for res in order]


# --------------------------------------------------------------------------- text


def _signed(x: float, digits: int = 3) -> str:
    return DASH if x is None or not math.isfinite(x) else f"{x:+.{digits}f}"


def _seed_list(seeds: Sequence[str]) -> str:
    return ", ".join(seeds) if seeds else DASH


def _resolved_words(interval: MeanInterval, a: str, b: str, ratio: bool) -> str:
    if interval.resolved is None:
        return f"n/a: {interval.n} paired seed(s), needs 2"
    null = "1" if ratio else "0"
    if not interval.resolved:
        return f"no: interval includes {null}"
    return f"yes: {a if interval.mean > interval.null else b} higher"


def _interval_cell(interval: MeanInterval) -> str:
    if interval.n < 2:
        return DASH
    lo, hi = interval.mean - interval.half_width, interval.mean + interval.half_width
    show = fmt if interval.null else _signed
    return f"[{show(lo)}, {show(hi)}]"


def _yes_no(flag: bool | None) -> str:
    return DASH if flag is None else ("yes" if flag else "no")


def runs_section(selection: Selection) -> str:
    rows = []
    for mode in selection.modes:
        used = [selection.used[(mode, s)] for s in selection.seeds_of(mode)]
        rows.append(
            [
                mode,
                _seed_list(selection.seeds_of(mode)),
                _seed_list(selection.missing(mode)),
                ", ".join(f"{r.name} ({r.run_id[:8]})" for r in used) or DASH,
            ]
        )
    out = ["## Runs used", "", md_table(["mode", "seeds", "missing seeds", "runs (id)"], rows)]
    if selection.left_out:
        out += ["", f"Left out: {len(selection.left_out)} finished run(s) of the compared modes:", ""]
        out += [f"- {r.name} ({r.run_id[:8]}): {why}" for r, why in selection.left_out[:MAX_LISTED]]
        if len(selection.left_out) > MAX_LISTED:
            out.append(f"- and {len(selection.left_out) - MAX_LISTED} more")
    return "\n".join(out)


def per_mode_section(selection: Selection) -> str:
    pseudo = pseudo_metrics(selection.used.values())
    metrics = [*AP_METRICS, *pseudo]
    rows = []
    for mode in selection.modes:
        rows.append(
            [
                mode,
                len(selection.seeds_of(mode)),
                *(mean_std(list(selection.values(mode, m).values())) for m, _ in metrics),
            ]
        )
    note = (
        " Pseudo-mask IoU: mean instance IoU on ambiguous training points at the last evaluation "
        f"(`last/pseudo_<resolver>_iou_ambiguous`); {DASH} where a mode does not log it."
        if pseudo
        else ""
    )
    return "\n".join(
        [
            "## Per mode",
            "",
            f"Mean ± sample std over each mode's seeds (n=1: a single run). Val AP from the evaluate stage.{note}",
            "",
            md_table(["mode", "seeds", *(label for _, label in metrics)], rows),
        ]
    )


def _interval_row(
    label: str, pm: PairedMetric, interval: MeanInterval, seeds: Sequence[str], a: str, b: str, ratio: bool
) -> list[str]:
    show = fmt if ratio else _signed
    per_seed = dict(zip(pm.seeds, interval.values, strict=True))
    return [
        label,
        *(show(per_seed.get(s, math.nan)) for s in seeds),
        f"{show(interval.mean)} ± {fmt(interval.std)}",
        fmt(interval.half_width),
        _interval_cell(interval),
        _resolved_words(interval, a, b, ratio),
        DASH if ratio else fmt(pm.pooled_std),
        DASH if ratio else _yes_no(pm.beyond_two_pooled_std),
    ]


def pair_table(a: str, b: str, selection: Selection) -> str:
    """The per-seed differences A − B of each AP metric and the mAP ratio A / B, with their
    intervals and a sentence naming what is resolved; only a sentence when no seed has both modes."""
    paired = {
        m: pair_on_seed(label, selection.values(a, m), selection.values(b, m)) for m, label in AP_METRICS
    }
    seeds = sort_seeds(s for pm in paired.values() for s in pm.seeds)
    title = f"### {a} − {b}"
    if not seeds:
        return f"{title}\n\nNo seed has an evaluated run of both modes: nothing to pair."
    lines: list[tuple[str, PairedMetric, MeanInterval, bool]] = [
        (f"{pm.label} difference", pm, pm.difference, False) for pm in paired.values()
    ]
    ratio_metric, ratio_label = RATIO_METRIC
    ratio = paired[ratio_metric].ratio
    if ratio is not None:
        lines.append((f"{ratio_label} ratio {a} / {b}", paired[ratio_metric], ratio, True))
    header = [
        "metric",
        *(f"seed {s}" for s in seeds),
        "mean ± std",
        "95 % half-width",
        "95 % interval",
        "resolved",
        "pooled seed std",
        "beyond 2 × pooled std",
    ]
    rows = [_interval_row(label, pm, iv, seeds, a, b, is_ratio) for label, pm, iv, is_ratio in lines]
    resolved = [
        f"{label} ({_resolved_words(iv, a, b, is_ratio).removeprefix('yes: ')})"
        for label, _, iv, is_ratio in lines
        if iv.resolved
    ]
    unresolved = [label for label, _, iv, _ in lines if not iv.resolved]
    return "\n".join(
        [
            f"{title}: {len(seeds)} paired seed(s) ({_seed_list(seeds)})",
            "",
            md_table(header, rows),
            "",
            f"Resolved at 95 % with these seeds: {', '.join(resolved) or 'nothing'}. "
            f"Not resolved: {', '.join(unresolved) or 'nothing'}.",
        ]
    )


def comparison_text(selection: Selection, source: str) -> str:
    """The whole comparison as markdown; `source` says where the runs came from and what had to match."""
    pairs = list(itertools.combinations(selection.modes, 2))
    out = [
        "# Training modes compared over seeds",
        "",
        source,
        "",
        runs_section(selection),
        "",
        per_mode_section(selection),
        "",
        "## Paired differences",
        "",
        "Per pair A − B, on the seeds where both modes have a run: the per-seed differences, their mean "
        "± sample std, and the half-width of the two-sided 95 % t-interval of the mean difference, "
        "t(0.975, n − 1) × std / √n. That half-width is the smallest difference this benchmark can "
        "resolve with these seeds; *resolved* means the interval excludes 0 (for the ratio: 1). "
        "Pooled seed std: the two modes' seed-to-seed spread pooled, "
        "sqrt(((n − 1) s_A² + (n − 1) s_B²) / (2n − 2)); *beyond 2 × pooled std*: whether the absolute "
        "mean difference exceeds twice that spread.",
    ]
    for a, b in pairs:
        out += ["", pair_table(a, b, selection)]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the store


def read_store(tracking_uri: str, experiment: str) -> list[TrackedRun]:
    """Every finished run of `experiment`, oldest first; [] when the experiment does not exist yet.
    Raises StoreUnavailable (a missing sqlite file included: opening it would create one)."""
    db = sqlite_path(tracking_uri)
    if db is not None and not db.is_file():
        raise StoreUnavailable(f"no MLflow store at {db}")
    try:
        found = open_client(tracking_uri).get_experiment_by_name(experiment)
    except Exception as err:  # any store failure: one message naming the store
        raise StoreUnavailable(
            f"MLflow store {tracking_uri!r} unreadable: {type(err).__name__}: {err}"
        ) from err
    return [] if found is None else load_runs(tracking_uri, found.experiment_id)


# --------------------------------------------------------------------------- the queue


def experiment_name(mode: str, seed: str, override_items: Sequence[str], taken: set[str]) -> str:
    """`<mode>-s<seed>`, `-<7 hex of the overrides>` when there are any, and `-2`, `-3`, ... when
    the name is taken (DVC refuses to queue a name an experiment of the baseline already has)."""
    base = f"{mode}-s{seed}"
    if override_items:
        digest = hashlib.sha256("\n".join(sorted(override_items)).encode()).hexdigest()[:7]
        base = f"{base}-{digest}"
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}-{k}"
    return name


@dataclass(frozen=True)
class PlannedRun:
    name: str
    mode: str
    seed: str

    def queue_args(self, override_items: Sequence[str], force: bool) -> list[str]:
        """The `dvc` arguments that queue this run."""
        sets = [f"train.mode={self.mode}", f"train.seed={self.seed}", *override_items]
        return [
            "exp",
            "run",
            "--queue",
            *(["--force"] if force else []),
            "-n",
            self.name,
            *itertools.chain.from_iterable(("-S", s) for s in sets),
        ]


def plan_runs(selection: Selection, override_items: Sequence[str], taken: set[str]) -> list[PlannedRun]:
    """One queued experiment per mode and seed that has no usable run, named uniquely."""
    taken = set(taken)
    planned = []
    for mode in selection.modes:
        for seed in selection.missing(mode):
            name = experiment_name(mode, seed, override_items, taken)
            taken.add(name)
            planned.append(PlannedRun(name, mode, seed))
    return planned


def parse_queue_status(text: str) -> dict[str, str]:
    """`dvc queue status` -> {experiment name: status}; of tasks with the same name, the last
    listed wins. Rows look like `40e9601  name  06:04 PM  Running`."""
    status: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and re.fullmatch(r"[0-9a-f]{7,40}", parts[0]):
            status[parts[1]] = parts[-1]
    return status


class Dvc:
    """The `dvc` of this environment, run in the project root with the tracking URI the
    comparison reads (queue workers started here inherit it); a failure raises CompareError."""

    def __init__(self, root: Path, tracking_uri: str):
        beside = Path(sys.executable).parent / "dvc"
        self.exe = str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")
        self.root = root
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}

    def __call__(self, *args: str) -> str:
        proc = subprocess.run([self.exe, *args], cwd=self.root, env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompareError(
                f"`dvc {' '.join(args)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}"
            )
        return proc.stdout


def wait_for_queue(
    names: Sequence[str],
    status: Callable[[], str],
    echo: Callable[[str], None],
    poll_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Poll `status()` (the text of `dvc queue status`) until none of `names` is queued or
    running; echo a progress line whenever the counts change. Returns name -> final status
    ("not listed" when the queue no longer shows it)."""
    last = None
    while True:
        listed = parse_queue_status(status())
        ours = {n: listed.get(n, "not listed") for n in names}
        counts = Counter(ours.values())
        line = ", ".join(f"{c} {s.lower()}" for s, c in sorted(counts.items()))
        if line != last:
            done = sum(s not in QUEUE_ACTIVE for s in ours.values())
            echo(f"[{time.strftime('%H:%M:%S')}] queue: {done}/{len(names)} done ({line})")
            last = line
        if not any(s in QUEUE_ACTIVE for s in ours.values()):
            return ours
        sleep(poll_s)


def run_missing(
    dvc: Dvc,
    selection: Selection,
    override_items: Sequence[str],
    force: bool,
    poll_s: float,
    echo: Callable[[str], None],
) -> list[tuple[PlannedRun, str]]:
    """Queue, start and wait for the runs the selection lacks; returns each plan with the
    queue's final status of its experiment."""
    names = dvc("exp", "ls", "--all-commits", "--name-only").splitlines()
    taken = {n.strip() for n in names if n.strip()} | set(parse_queue_status(dvc("queue", "status")))
    planned = plan_runs(selection, override_items, taken)
    if not planned:
        echo("every mode and seed already has an evaluated run in the store: nothing to queue")
        return []
    for plan in planned:
        args = plan.queue_args(override_items, force)
        echo(f"dvc {' '.join(args)}")
        dvc(*args)
    dvc("queue", "start", "-j", "1")
    final = wait_for_queue([p.name for p in planned], lambda: dvc("queue", "status"), echo, poll_s)
    return [(p, final[p.name]) for p in planned]


def run_problems(
    outcome: Sequence[tuple[PlannedRun, str]], selection: Selection, tracking_uri: str
) -> list[str]:
    """What went wrong with queued runs that the comparison still lacks, and what to do."""
    problems = []
    for plan, status in outcome:
        if (plan.mode, plan.seed) in selection.used:
            continue
        if status == "Success":
            problems.append(
                f"experiment {plan.name} succeeded but left no evaluated run with these params in "
                f"{tracking_uri}: DVC found its stages up to date (dvc.lock) and trained nothing "
                "(re-run with --force), or the training tracked into another store"
            )
        else:
            problems.append(f"experiment {plan.name}: {status.lower()}; see `dvc queue logs {plan.name}`")
    return problems


# --------------------------------------------------------------------------- command line


def _csv(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise CompareError(f"--{what}: empty list")
    if len(set(items)) != len(items):
        raise CompareError(f"--{what} {text}: listed twice")
    return items


def parse_modes(text: str) -> list[str]:
    from typing import get_args

    from beep3d.engine import Mode

    modes = _csv(text, "modes")
    unknown = [m for m in modes if m not in get_args(Mode)]
    if unknown:
        raise CompareError(
            f"--modes: unknown mode(s) {', '.join(unknown)}; known: {', '.join(get_args(Mode))}"
        )
    if len(modes) < 2:
        raise CompareError("--modes: name at least two modes to compare")
    return modes


def parse_seeds(text: str) -> list[str]:
    seeds = _csv(text, "seeds")
    for s in seeds:
        try:
            int(s)
        except ValueError:
            raise CompareError(f"--seeds: {s!r} is not an integer") from None
    return [str(int(s)) for s in seeds]


def describe_source(
    tracking_uri: str, experiment: str, params_path: Path, override_items: Sequence[str]
) -> str:
    sets = f" with {', '.join(f'`{s}`' for s in override_items)}" if override_items else ""
    ignored = ", ".join(sorted(EXECUTION_ONLY_PARAMS))
    mode_only = ", ".join(f"{p}* outside {' / '.join(modes)}" for p, modes in MODE_ONLY_PARAMS.items())
    return (
        f"Store `{tracking_uri}`, experiment `{experiment}`. Compared: finished runs whose params equal "
        f"`{params_path}`{sets} apart from {', '.join(VARIED)}, the execution-only params ({ignored}) and "
        f"the params a run's mode does not read ({mode_only}), "
        f"with the evaluate stage's metrics; per mode and seed the newest such run."
    )


@click.command()
@click.option(
    "--params", "params_path", default="params.yaml", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--tracking-uri", default=None, help="MLflow store [default: $MLFLOW_TRACKING_URI, else ./mlflow.db]."
)
@click.option("--experiment", default=EXPERIMENT, show_default=True, help="MLflow experiment of the runs.")
@click.option("--modes", "modes_text", default=",".join(DEFAULT_MODES), show_default=True)
@click.option("--seeds", "seeds_text", default=None, help="e.g. 0,1,2 [default: every seed in the store].")
@click.option(
    "--set", "override_items", multiple=True, metavar="KEY=VALUE", help="Like dvc exp run -S; repeatable."
)
@click.option("--run", "run_first", is_flag=True, help="Queue and run the missing mode/seed runs first.")
@click.option("--force", is_flag=True, help="With --run: dvc exp run --force (re-runs every stage).")
@click.option("--poll", "poll_s", default=10.0, show_default=True, help="Seconds between queue checks.")
@click.option(
    "--out",
    "out_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the markdown to this file (atomically).",
)
def main(
    params_path: Path,
    tracking_uri: str | None,
    experiment: str,
    modes_text: str,
    seeds_text: str | None,
    override_items: tuple[str, ...],
    run_first: bool,
    force: bool,
    poll_s: float,
    out_path: Path | None,
) -> None:
    """Compare the training modes over seeds, paired on the seed, from the MLflow store."""

    def fail(message: object, code: int = 1) -> NoReturn:
        click.echo(f"compare: error: {message}", err=True)
        sys.exit(code)

    try:
        modes = parse_modes(modes_text)
        seeds = None if seeds_text is None else parse_seeds(seeds_text)
        if run_first and seeds is None:
            raise CompareError("--run needs --seeds (e.g. --seeds 0,1,2)")
        if force and not run_first:
            raise CompareError("--force only applies with --run")
        params = load_params(params_path)
        overrides = parse_overrides(override_items, params)
    except (CompareError, ConfigError) as err:
        fail(err, 2)
    expected = expected_params(params, overrides)
    uri = tracking_uri or resolve_tracking_uri(Path.cwd())
    items = [s.strip() for s in override_items]

    def load(store_may_be_missing: bool) -> Selection:
        try:
            runs = read_store(uri, experiment)
        except StoreUnavailable as err:
            if not store_may_be_missing or sqlite_path(uri) is None:
                fail(f"{err}; train first (`--run`) or name the store with --tracking-uri")
            runs = []
        return select_runs(runs, expected, modes, seeds)

    outcome: list[tuple[PlannedRun, str]] = []
    if run_first:
        try:
            outcome = run_missing(
                Dvc(Path.cwd(), uri), load(True), items, force, poll_s, lambda m: click.echo(m, err=True)
            )
        except CompareError as err:
            fail(err)
    selection = load(False)
    text = comparison_text(selection, describe_source(uri, experiment, params_path, items))
    click.echo(text, nl=False)
    if out_path is not None:
        write_text_atomic(out_path, text)
    problems = run_problems(outcome, selection, uri)
    for problem in problems:
        click.echo(f"compare: {problem}", err=True)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
