"""Benchmark-number regression check: a run's metrics against a committed baseline.

    python -m pipeline.regression --baseline .ci/baseline.json \\
        --metrics reports/metrics.json --summary reports/train_summary.json [--write-baseline]

The baseline names each checked figure, where it comes from, its value, which direction is
better and how far it may fall before the check fails:

    {"figures": {"val_mAP": {"file": "metrics", "key": "val.mAP", "value": 0.05,
                             "tolerance": 0.002, "higher_is_better": true}, ...}}

`file` is "metrics" (reports/metrics.json) or "summary" (reports/train_summary.json); `key` is a
dotted path into it. Only a move in the bad direction by more than the tolerance fails, and a
better number passes (update the baseline to lock it in).

Which tolerance: CPU runs with the same params and seed are bitwise deterministic on one kind of
CPU only. MKL's reproducible mode picks its kernels per processor, so on another CPU the last
digits differ from the first step on, and over a short CI-size training that grows into a
different model (measured: val mAP 0.051 -> 0.035, AP50 0.084 -> 0.058, AP25 0.187 -> 0.144 from
one CPU kind to another, same code). The baseline therefore records the `cpu` it was written on
(`machine_key`): on that kind of CPU every figure gets its tight `tolerance`; on any other, its
`cross_cpu_tolerance` (a seed-noise-sized margin, about twice the shift above), and the check
says so. `--write-baseline` rewrites the values and the `cpu` from this run, keeping keys and
tolerances: do it deliberately, in its own commit, saying why.
Exit status: 0 all within tolerance, 1 a regression (or a figure missing from the run).
"""

from __future__ import annotations

import json
import math
import platform
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


def machine_key() -> str:
    """What decides MKL's kernels: torch's CPU capability (AVX2, AVX512, ...) and the processor's
    vendor, family and model as /proc/cpuinfo gives them (platform.processor() elsewhere)."""
    import torch

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, sep, value = line.partition(":")
            if not sep:
                break  # the first processor's block is enough
            fields.setdefault(name.strip(), value.strip())
    except OSError:
        pass
    cpu = (
        f"{fields.get('vendor_id', '')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"
        if fields
        else platform.processor() or platform.machine()
    )
    return f"{torch.backends.cpu.get_cpu_capability()} {cpu}".strip()


def compare(baseline: dict[str, Any], sources: dict[str, Any], same_cpu: bool = True) -> list[Check]:
    """One check per baseline figure, with its tight tolerance on the baseline's kind of CPU
    (`same_cpu`) and its cross-CPU tolerance (when it has one) elsewhere."""
    checks = []
    for name, spec in baseline["figures"].items():
        if spec["file"] not in sources:
            raise ValueError(f"baseline figure {name!r}: unknown file {spec['file']!r}")
        checks.append(
            Check(
                name=name,
                baseline=float(spec["value"]),
                current=lookup(sources[spec["file"]], spec["key"]),
                tolerance=float(
                    spec["tolerance"] if same_cpu else spec.get("cross_cpu_tolerance", spec["tolerance"])
                ),
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
        machine = machine_key()
        same_cpu = baseline.get("cpu") == machine
        checks = compare(baseline, sources, same_cpu)
    except (OSError, ValueError, KeyError) as err:
        click.echo(f"regression check failed to run: {err}", err=True)
        sys.exit(2)
    if not same_cpu and not write_baseline:
        click.echo(
            f"note: this CPU ({machine}) is not the baseline's ({baseline.get('cpu', 'unrecorded')}): "
            "MKL picks other kernels, the run is not bitwise comparable, so the cross-CPU tolerances apply"
        )
    click.echo(table(checks))
    if write_baseline:
        missing = [c.name for c in checks if c.current is None]
        if missing:
            click.echo(f"cannot write the baseline: this run lacks {missing}", err=True)
            sys.exit(2)
        for c in checks:
            baseline["figures"][c.name]["value"] = c.current
        baseline["cpu"] = machine
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
