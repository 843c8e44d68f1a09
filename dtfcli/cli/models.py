"""`dtf models`: the registry as a table."""

from __future__ import annotations

import json

import typer
from rich.progress import track
from rich.table import Table

from dtfcli.cli._common import console
from dtfcli.engine.inventory import model_inventory


def models_command(
    pattern: str = typer.Argument(None, help="Only names matching this shell pattern, e.g. 'dtfnet_*'."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_cost: bool = typer.Option(False, "--no-cost", help="Skip counting parameters and GFLOPs (faster)."),
) -> None:
    """List the registered models: parameters, GFLOPs per view, frames, crop, test views, weights.

    GFLOPs are multiply-adds of one view (one clip, one crop) at the model's default input,
    counted on the meta device as the paper counts them; FFTs are not included.

    Examples:

      dtf models

      dtf models 'dtfnet_*' --json
    """
    progress = None
    if not as_json and not no_cost:
        progress = lambda names: track(names, description="counting FLOPs", console=console, transient=True)  # noqa: E731
    rows = model_inventory(pattern, with_cost=not no_cost, progress=progress)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title="dtf models", show_lines=False)
    for col, kw in [("name", {"style": "bold", "no_wrap": True}), ("params (M)", {"justify": "right"}),
                    ("GFLOPs/view", {"justify": "right"}), ("paper", {"justify": "right"}),
                    ("frames", {"justify": "right"}), ("crop", {"justify": "right"}),
                    ("views", {"justify": "right"}), ("weights", {}), ("description", {})]:
        if no_cost and col in ("params (M)", "GFLOPs/view"):
            continue
        table.add_column(col, **kw)
    for r in rows:
        cells = [r["name"]]
        if not no_cost:
            cells += [f"{r['params_m']:.1f}", f"{r['gflops']:.1f}"]
        cells += [
            _paper_cell(r),
            str(r["frames"]), str(r["crop"]), r["views"], _weights_cell(r["weights"]), r["description"],
        ]
        table.add_row(*cells)
    console.print(table)
    console.print("GFLOPs: multiply-adds per view at the default input, FFTs excluded; "
                  "paper: the paper's figure for this clip length (@crop where it differs). See docs/models.md.",
                  style="dim")


def _weights_cell(weights: list[dict]) -> str:
    published = [w["manifest"] for w in weights if w["published"]]
    if published:
        return ", ".join(published)
    return f"{len(weights)} unpublished" if weights else "-"


def _paper_cell(row: dict) -> str:
    if row["paper_gflops"] is None:
        return ""
    crop_note = "" if row["paper_crop"] == row["crop"] else f" @{row['paper_crop']}"
    return f"{row['paper_gflops']:g}{crop_note}"
