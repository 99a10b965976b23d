"""Benchmark-number regression check: a run's metrics against a committed baseline.

    python -m pipeline.regression --baseline .ci/baseline.json \\
        --metrics reports/metrics.json --summary reports/train_summary.json [--write-baseline]

The baseline names each checked figure, where it comes from, its value, which direction is
better and how far it may fall before the check fails:

    {"figures": {"val_mAP": {"file": "metrics", "key": "val.mAP", "value": 0.05,
                             "tolerance": 0.002, "higher_is_better": true}, ...}}

`file` is "metrics" (reports/metrics.json) or "summary" (reports/train_summary.json); `key` is a
dotted path into it. Only a move in the bad direction by more than `tolerance` fails: CPU runs
with the same params and seed are deterministic, so the tolerances can be tight, and a better
number passes (update the baseline to lock it in). `--write-baseline` rewrites the values from
this run, keeping keys and tolerances: do it deliberately, in its own commit, saying why.
Exit status: 0 all within tolerance, 1 a regression (or a figure missing from the run).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from beep3d.io import write_json_atomic


@dataclass(frozen=True)
class Check:
    name: str
    baseline: float
    current: float | None
    tolerance: float
    higher_is_better: bool

    @property
    def delta(self) -> float | None:
        return None if self.current is None else self.current - self.baseline

    @property
    def regressed(self) -> bool:
        if self.current is None or not math.isfinite(self.current):
            return True  # a figure the run no longer produces is a regression too
        worse_by = (self.baseline - self.current) if self.higher_is_better else (self.current - self.baseline)
        return worse_by > self.tolerance


def lookup(data: Any, dotted: str) -> float | None:
    """data["a"]["b"] for "a.b"; None if any part is missing or the value is null."""
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return None if node is None else float(node)


def compare(baseline: dict[str, Any], sources: dict[str, Any]) -> list[Check]:
    checks = []
    for name, spec in baseline["figures"].items():
        if spec["file"] not in sources:
            raise ValueError(f"baseline figure {name!r}: unknown file {spec['file']!r}")
        checks.append(
            Check(
                name=name,
                baseline=float(spec["value"]),
                current=lookup(sources[spec["file"]], spec["key"]),
                tolerance=float(spec["tolerance"]),
                higher_is_better=bool(spec.get("higher_is_better", True)),
            )
        )
    return checks


def table(checks: list[Check]) -> str:
    """Side-by-side text table: figure, baseline, this run, change, tolerance, verdict."""
    rows = [("figure", "baseline", "this run", "change", "tolerance", "")]
    for c in checks:
        current = "missing" if c.current is None else f"{c.current:.4f}"
        delta = "" if c.delta is None else f"{c.delta:+.4f}"
        rows.append(
            (
                c.name,
                f"{c.baseline:.4f}",
                current,
                delta,
                f"{c.tolerance:.4f}",
                "REGRESSION" if c.regressed else "ok",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@click.command()
@click.option("--baseline", "baseline_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--metrics", "metrics_path", default="reports/metrics.json", type=click.Path(path_type=Path))
@click.option(
    "--summary", "summary_path", default="reports/train_summary.json", type=click.Path(path_type=Path)
)
@click.option("--write-baseline", is_flag=True, help="Rewrite the baseline's values from this run.")
def main(baseline_path: Path, metrics_path: Path, summary_path: Path, write_baseline: bool) -> None:
    try:
        baseline = json.loads(baseline_path.read_text())
        sources = {
            "metrics": json.loads(metrics_path.read_text()),
            "summary": json.loads(summary_path.read_text()),
        }
        checks = compare(baseline, sources)
    except (OSError, ValueError, KeyError) as err:
        click.echo(f"regression check failed to run: {err}", err=True)
        sys.exit(2)
    click.echo(table(checks))
    if write_baseline:
        missing = [c.name for c in checks if c.current is None]
        if missing:
            click.echo(f"cannot write the baseline: this run lacks {missing}", err=True)
            sys.exit(2)
        for c in checks:
            baseline["figures"][c.name]["value"] = c.current
        write_json_atomic(baseline_path, baseline)
        click.echo(f"baseline written to {baseline_path}")
        return
    bad = [c.name for c in checks if c.regressed]
    if bad:
        click.echo(f"regression beyond tolerance: {', '.join(bad)}", err=True)
        sys.exit(1)
    click.echo("no regression")


if __name__ == "__main__":
    main()
