"""Shared by the developer benchmark scripts: import path, report merging, markdown tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Run from a checkout without installing: the package is one folder up.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtfcli.engine.runtime import apply_cpu_settings  # noqa: E402

apply_cpu_settings()  # as the dtf command does, so both measure the same process setup


def write_report(report: dict, out: Path) -> None:
    """Write ``out`` (JSON) and ``out`` with a .md suffix (markdown tables)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(to_markdown(report))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def to_markdown(report: dict) -> str:
    """The report as markdown: the machine, then one table per suite and setup."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpu_cores']} cores"
        + (f", {m['gpu']}" if "gpu" in m else "")
        + f"; torch {m['torch']} ({m['torch_threads']} threads)"
        f"; CPU allocator: {m.get('cpu_allocator', 'system default')}"
        f"; denormals: {m.get('cpu_denormals', 'kept')}"
        f"; DTF CPU kernels: {m.get('dtf_cpu_kernels', 'tensor operations')}"
        + (f"; DTF GPU kernels: {m['dtf_gpu_kernels']}" if "dtf_gpu_kernels" in m else "")
        + f"; {m['date']}; commit {m['commit']}; "
        f"1-min load average at start {m['load_average_1min']}.",
        "",
    ]
    if report.get("command"):
        lines += [f"Command: `{report['command']}`", ""]
    flops = [r for r in report["rows"] if r["suite"] == "flops"]
    if flops:
        lines += ["| model | frames x crop | params (M) | GFLOPs/view | paper |", "|---|---|---|---|---|"]
        for r in flops:
            paper = (
                ""
                if r["paper_gflops"] is None
                else f"{r['paper_gflops']:g}" + ("" if r["paper_crop"] == r["crop"] else f" @{r['paper_crop']}")
            )
            lines.append(
                f"| {r['name']} | {r['frames']}x{r['crop']} | {r['params_m']:.1f} | {r['gflops']:.1f} | {paper} |"
            )
        lines.append("")
    speed = [r for r in report["rows"] if "throughput_ratio" in r]
    setups = dict.fromkeys((r["suite"], r["device"], r["amp"], r["channels_last"], r["compile"]) for r in speed)
    for suite, device, amp, cl, comp in setups:
        rows = [
            r
            for r in speed
            if (r["suite"], r["device"], r["amp"], r["channels_last"], r["compile"]) == (suite, device, amp, cl, comp)
        ]
        mem = any("memory_ratio" in r for r in rows)
        lines += [
            f"**{suite}**, {device}, {amp}" + (", channels-last" if cl else "") + (", compiled" if comp else ""),
            "",
        ]
        head = (
            f"| candidate | baseline | batch | GFLOPs/view candidate / baseline | clips/s ({device}) "
            "candidate / baseline | ratio (range) |"
        )
        head += " peak MiB candidate / baseline | memory ratio |" if mem else ""
        lines += [head + " target |", "|" + "---|" * (head.count("|"))]
        for r in rows:
            cells = [
                _name(r["candidate"], r["candidate_input"]),
                _name(r["baseline"], r["baseline_input"]),
                str(r["batch"]),
                f"{_g(r.get('candidate_gflops'))} / {_g(r.get('baseline_gflops'))}",
                f"{r['candidate_clips_per_s']:.3g} / {r['baseline_clips_per_s']:.3g}",
                "{:.2f} ({:.2f}-{:.2f})".format(r["throughput_ratio"], *r["throughput_ratio_range"]),
            ]
            if mem:
                cells += [
                    f"{r['candidate_peak_mib']:.0f} / {r['baseline_peak_mib']:.0f}"
                    if "candidate_peak_mib" in r
                    else "",
                    "" if r.get("memory_ratio") is None else f"{r['memory_ratio']:.2f}",
                ]
            cells.append(
                "; ".join(
                    f"{'speed' if t['metric'] == 'throughput' else 'memory'} {t['op']} {t['value']:g}: "
                    f"{'pass' if t['passed'] else 'FAIL'}"
                    for t in r["targets"]
                )
            )
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    for r in report["rows"]:
        if "skipped" in r:
            lines += [f"- {r['skipped']}", ""]
    return "\n".join(lines)


def _name(name: str, shape: list[int]) -> str:
    if name.startswith("block:"):
        return f"{name[6:]} (C {shape[0]}, T {shape[1]}, {shape[2]}x{shape[3]})"
    return f"{name} {shape[1]}x{shape[-1]}"


def _g(gflops: float | None) -> str:
    return "?" if gflops is None else f"{gflops:.3g}"
