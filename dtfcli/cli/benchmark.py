"""`dtf benchmark`: DTF models against their baselines, measured side by side in one run."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from dtfcli.cli._common import EXIT_ERROR, console, fail


def benchmark_command(
    suite: str = typer.Option(
        "all", "--suite", "-s", help="flops, inference, train, block, decode, a comma list, or all."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    batch: str = typer.Option("1", "--batch", "-b", help="Batch sizes, comma-separated, e.g. 1,8."),
    quick: bool = typer.Option(
        False, "--quick", help="Tiny models at small inputs: a smoke run in well under a minute on a CPU."
    ),
    iters: int = typer.Option(None, "--iters", min=1, help="Timed rounds per comparison (default 3, quick 10)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed rounds before timing."),
    amp: bool = typer.Option(None, "--amp/--no-amp", help="bfloat16 autocast (default: on for cuda, off for cpu)."),
    channels_last: bool = typer.Option(False, "--channels-last", help="Channels-last (3D) memory format."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile every model first."),
    video: Path = typer.Option(None, "--video", help="Video for the decode suite (default: a generated one)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    output: Path = typer.Option(None, "--output", "-o", help="Also write the JSON report to this file."),
    check: bool = typer.Option(False, "--check", help="Exit non-zero when a target is missed."),
) -> None:
    """Measure DTF against its baselines: GFLOPs, inference and training speed, memory, decoding.

    Speed figures are ratios (DTF / baseline clips/s) of modules timed in alternating rounds in one run.

    Absolute clips/s are labelled with the device; training memory is the peak of one step (MiB).

    Each comparison has a target ratio, e.g. DTF-Net R50 inference at 0.92x C2D's clips/s or more: pass or FAIL.

    "proxy" marks a full-size target checked on a tiny model.

    Full-size models take minutes on a CPU; --quick is a smoke run with tiny models.

    Examples:

      dtf benchmark --quick

      dtf benchmark --suite inference,train --batch 1,8 --device cuda --compile

      dtf benchmark --suite flops --json
    """
    from dtfcli.engine.benchmark import parse_suites, run_benchmark, target_summary

    suites = parse_suites(suite)
    try:
        batches = tuple(int(b) for b in batch.split(",") if b.strip())
    except ValueError:
        fail(f"--batch {batch!r}: give batch sizes as integers, e.g. 1,8")
    if not batches or min(batches) < 1:
        fail(f"--batch {batch!r}: batch sizes must be positive integers")
    status = console.status("benchmarking", spinner="dots") if not as_json else None
    progress = (lambda msg: status.update(f"benchmarking: {msg}")) if status else None
    if status:
        status.start()
    try:
        report = run_benchmark(
            suites,
            device=device,
            batches=batches,
            quick=quick,
            iters=iters,
            warmup=warmup,
            amp=amp,
            channels_last=channels_last,
            compile=compile_,
            video=str(video) if video else None,
            progress=progress,
        )
    finally:
        if status:
            status.stop()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2))
    if as_json:
        console.print_json(json.dumps(report))
    else:
        print_report(report)
    met, checked = target_summary(report["rows"])
    if check and met < checked:
        raise typer.Exit(EXIT_ERROR)


def print_report(report: dict) -> None:
    """Rich tables: one for the FLOPs, one per timed suite, and the skipped suites."""
    machine, rows = report["machine"], report["rows"]
    console.print(
        f"[bold]dtf benchmark[/] on {machine['cpu']} ({machine['cpu_cores']} cores"
        f"{', ' + machine['gpu'] if 'gpu' in machine else ''}), torch {machine['torch']}, "
        f"{machine['date']}, commit {machine['commit'] or '?'}, load {machine['load_average_1min']}, "
        f"CPU allocator: {machine.get('cpu_allocator', 'system default')}, "
        f"denormals: {machine.get('cpu_denormals', 'kept')}, "
        f"DTF CPU kernels: {machine.get('dtf_cpu_kernels', 'tensor operations')}"
        + (f", DTF GPU kernels: {machine['dtf_gpu_kernels']}" if "dtf_gpu_kernels" in machine else ""),
        highlight=False,
    )
    flops = [r for r in rows if r["suite"] == "flops"]
    if flops:
        table = Table(title="parameters and GFLOPs per view (multiply-adds, FFTs excluded)")
        for col in ("model", "frames x crop", "params (M)", "GFLOPs", "paper", "diff"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for r in flops:
            paper = r["paper_gflops"]
            same_input = paper is not None and r["paper_crop"] == r["crop"]
            table.add_row(
                r["name"],
                f"{r['frames']}x{r['crop']}",
                f"{r['params_m']:.1f}",
                f"{r['gflops']:.1f}",
                "" if paper is None else f"{paper:g}" + ("" if same_input else f" @{r['paper_crop']}"),
                f"{100 * (r['gflops'] / paper - 1):+.1f}%" if same_input else "",
            )
        console.print(table)
    for suite in dict.fromkeys(r["suite"] for r in rows if "throughput_ratio" in r):
        console.print(_speed_table(suite, [r for r in rows if r["suite"] == suite]))
    decode = [r for r in rows if r["suite"] == "decode" and "ratio" in r]
    if decode:
        table = Table(
            title=f"decode: 10x3 test views of {decode[0]['video']} ({decode[0]['frames']} frames)",
            caption="ratio: the raw decoder's time / ours for the same frames (higher is better)",
            caption_justify="left",
        )
        for col in ("backend", "ours s", "raw s", "ours correct", "raw correct", "ratio", "target"):
            table.add_column(col, justify="left" if col in ("backend", "target") else "right")
        for r in decode:
            correct = [f"{c:.0%}" if isinstance(c, float) else str(c) for c in (r["ours_correct"], r["raw_correct"])]
            table.add_row(
                r["backend"],
                f"{r['ours_s']:.3f}",
                f"{r['raw_s']:.3f}",
                *correct,
                f"{r['ratio']:.2f}",
                "\n".join(_target_cell(t) for t in r["targets"]),
            )
        console.print(table)
    for r in rows:
        if "skipped" in r:
            console.print(f"[yellow]{r['skipped']}[/]", highlight=False)
    from dtfcli.engine.benchmark import target_summary

    met, checked = target_summary(rows)
    if checked:
        console.print(
            f"targets met: {met}/{checked}"
            + (
                " (proxy: a full-size target checked on a tiny model)"
                if any(t["proxy"] for r in rows for t in r.get("targets", ()))
                else ""
            ),
            highlight=False,
        )


def _speed_table(suite: str, rows: list[dict]) -> Table:
    first = rows[0]
    setup = (
        f"{first['device']}, {first['amp']}"
        + (", channels-last" if first["channels_last"] else "")
        + (", compiled" if first["compile"] else "")
    )
    table = Table(
        title=f"{suite} ({setup})",
        caption="ratio: candidate / baseline clips/s, median (range) "
        "over alternating rounds; MiB: peak memory of a training step",
        caption_justify="left",
    )
    with_memory = any("memory_ratio" in r for r in rows)
    cols = ["candidate", "baseline", "b", f"clips/s ({first['device']})", "ratio"]
    cols += ["MiB", "mem ratio"] if with_memory else []
    cols += ["target"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("candidate", "baseline", "target") else "right")
    for r in rows:
        cells = [
            _input(r["candidate"], r["candidate_input"]),
            _input(r["baseline"], r["baseline_input"]),
            str(r["batch"]),
            f"{r['candidate_clips_per_s']:.3g} / {r['baseline_clips_per_s']:.3g}",
            f"{r['throughput_ratio']:.2f} ({r['throughput_ratio_range'][0]:.2f}-{r['throughput_ratio_range'][1]:.2f})",
        ]
        if with_memory:
            cells += [
                f"{r['candidate_peak_mib']:.0f} / {r['baseline_peak_mib']:.0f}" if "candidate_peak_mib" in r else "",
                "" if r.get("memory_ratio") is None else f"{r['memory_ratio']:.2f}",
            ]
        cells.append("\n".join(_target_cell(t) for t in r["targets"]))
        table.add_row(*cells)
    return table


def _input(name: str, shape: list[int]) -> str:
    if name.startswith("block:"):
        return f"{name.split(':', 1)[1]} C{shape[0]} T{shape[1]} {shape[2]}x{shape[3]}"
    return f"{name.replace('torchvision:', 'tv:')} {shape[1]}x{shape[-1]}"


def _target_cell(target: dict) -> str:
    mark = "[green]pass[/]" if target["passed"] else "[red]FAIL[/]"
    what = "speed" if target["metric"] == "throughput" else "mem"
    return f"{what} {target['op']}{target['value']:g} {mark}" + (" proxy" if target["proxy"] else "")
