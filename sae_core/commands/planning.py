"""``plan``: what an experiment costs in disk, memory and time, before anything runs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import typer
from rich.table import Table

from artifact_schemas.console import stdout_console
from sae_core.commands._common import option, parse_layers, reporting
from sae_core.plan import COSTS, PlanConfig
from sae_core.plan import plan as make_plan


def plan(
    clips: int = option(PlanConfig, "clips"),
    clip_seconds: float = option(PlanConfig, "clip_seconds"),
    model: str = option(PlanConfig, "model"),
    layers: str = option(PlanConfig, "layers", help="'paper' (five layers) or a comma list."),
    expansion: int = option(PlanConfig, "expansion"),
    devices: int = option(PlanConfig, "devices"),
    keep_fraction: float = option(PlanConfig, "keep_fraction"),
    allreduce_gbps: float = option(PlanConfig, "allreduce_gb_per_s"),
    costs: Path | None = typer.Option(
        None, "--costs", help="Measured costs (benchmarks/bench_costs.py); default: the shipped file."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Disk, memory and time of an experiment, extract-then-train against online.

    The times come from measured per-frame costs (the costs file says on what machine),
    scaled to the chosen model and SAE shape; the plan prints how. With --devices N online
    training has two rows: data-parallel (the tracks split, gradients all-reduced at
    --allreduce-gbps) and layers dealt (every device runs every forward).

    Example: sae-core plan --clips 160000 --model musicgen-large --layers paper --expansion 32
    """
    with reporting():
        chosen = parse_layers(layers)
        cfg = PlanConfig(
            clips, clip_seconds, model, chosen if chosen == "paper" else len(chosen),
            expansion, devices, keep_fraction, costs=costs or COSTS, allreduce_gb_per_s=allreduce_gbps,
        )  # fmt: skip
        result = make_plan(cfg)
    if as_json:
        stdout_console().print_json(json.dumps(asdict(result)))
        return
    console = stdout_console()
    console.print(
        f"{clips:,} clips x {clip_seconds:g} s = {result.frames:,.0f} frames "
        f"({result.kept_frames:,.0f} kept); {model} (d {result.d_model}), {cfg.n_layers} layers, "
        f"SAEs of {result.latents:,} latents, {devices} device(s)"
    )
    table = Table("path", "disk", "memory per device", "time")
    for name, p in result.paths.items():
        table.add_row(name, f"{p['disk_gb']:,.1f} GB", f"{p['memory_gb']:,.1f} GB", f"{p['hours']:,.1f} h")
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}")
    console.print(f"  costs from {result.source}")
