"""`dtf models`: the registry as a table."""

from __future__ import annotations

import json

import typer
from rich import box
from rich.measure import Measurement
from rich.padding import Padding
from rich.progress import track
from rich.table import Table
from rich.text import Text

from dtfcli.cli._common import console


def models_command(
    pattern: str = typer.Argument(None, help="Only names matching this shell pattern, e.g. 'dtfnet_*'."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_cost: bool = typer.Option(False, "--no-cost", help="Skip counting parameters and GFLOPs (faster)."),
) -> None:
    """List the registered models: parameters, GFLOPs per view, frames, crop, test views, weights.

    GFLOPs: multiply-adds of one view (one clip, one crop) at the model's default input, as the paper counts them.

    They are counted on the meta device (no weights, no data); FFTs are not included.

    On a narrow terminal the descriptions are left out (--json has them), or each model is a paragraph.

    Examples:

      dtf models

      dtf models 'dtfnet_*' --json

      dtf models '*_tiny' --no-cost
    """
    from dtfcli.engine.inventory import model_inventory  # here: `dtf --help` need not import torch

    progress = None
    if not as_json and not no_cost:
        progress = lambda names: track(  # noqa: E731
            names, description="counting FLOPs", console=console, transient=True
        )
    rows = model_inventory(pattern, with_cost=not no_cost, progress=progress)
    if as_json:
        console.print_json(json.dumps(rows))
        return
    _print_inventory(rows, with_cost=not no_cost)
    console.print(
        "GFLOPs: multiply-adds per view at the default input, FFTs excluded; "
        "paper: the paper's figure for this clip length (@crop where it differs). See docs/models.md.",
        style="dim",
    )


def _print_inventory(rows: list[dict], with_cost: bool) -> None:
    """The widest layout that fits the terminal without cutting a cell: the full table; the
    table without descriptions, compact; or one paragraph per model. Names are never cut."""
    full = _inventory_table(rows, with_cost, compact=False)
    if _natural_width(full) <= console.width:
        console.print(full)
        return
    compact = _inventory_table(rows, with_cost, compact=True)
    if _natural_width(compact) <= console.width:
        console.print(compact)
        console.print("Descriptions: a wider terminal, or --json.", style="dim")
        return
    for r in rows:
        console.print(Text(r["name"], style="bold"), no_wrap=True, overflow="ignore", crop=False)
        console.print(Padding(Text(_summary(r, with_cost)), (0, 0, 0, 2), expand=False))


def _natural_width(table: Table) -> int:
    """The table's width with every cell on one line (a measurement is otherwise capped at the
    terminal's width)."""
    return Measurement.get(console, console.options.update(max_width=10_000), table).maximum


def _inventory_table(rows: list[dict], with_cost: bool, compact: bool) -> Table:
    """The inventory as a table; ``compact``: short two-line headers, no box, no descriptions."""
    columns = [("name", "name", {"style": "bold", "no_wrap": True, "min_width": max(len(r["name"]) for r in rows)})]
    if with_cost:
        columns += [
            ("params (M)", "params\n(M)", {"justify": "right"}),
            ("GFLOPs/view", "GFLOPs\n/view", {"justify": "right"}),
        ]
    columns += [
        ("paper", "paper", {"justify": "right"}),
        ("frames", "frames", {"justify": "right"}),
        ("crop", "crop", {"justify": "right"}),
        ("views", "views", {"justify": "right"}),
        ("weights", "weights", {}),
    ]
    if not compact:
        columns.append(("description", "description", {}))
        table = Table(title="dtf models", show_lines=False)
    else:
        table = Table(title="dtf models", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for full_header, short_header, kw in columns:
        table.add_column(short_header if compact else full_header, **kw)
    for r in rows:
        cells = [r["name"]]
        if with_cost:
            cells += [f"{r['params_m']:.1f}", f"{r['gflops']:.1f}"]
        cells += [_paper_cell(r), str(r["frames"]), str(r["crop"]), r["views"], _weights_cell(r["weights"])]
        if not compact:
            cells.append(r["description"])
        table.add_row(*cells)
    return table


def _summary(row: dict, with_cost: bool) -> str:
    """One model's description and cells as a paragraph, for terminals too narrow for a table."""
    parts = []
    if with_cost:
        paper = f" (paper {_paper_cell(row)})" if row["paper_gflops"] is not None else ""
        parts += [f"{row['params_m']:.1f} M params", f"{row['gflops']:.1f} GFLOPs/view{paper}"]
    elif row["paper_gflops"] is not None:
        parts.append(f"paper {_paper_cell(row)} GFLOPs/view")
    parts += [f"{row['frames']} frames", f"crop {row['crop']}", f"views {row['views']}"]
    weights = _weights_cell(row["weights"])
    parts.append(f"weights: {'none' if weights == '-' else weights}")
    return f"{row['description']}\n" + ", ".join(parts)


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
