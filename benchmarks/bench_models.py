"""Full-size model comparisons: DTF-Net R50 vs C2D / TSM / R(2+1)D, DTF-Transformer Swin-B vs
2D Swin-B and torchvision's swin3d_b at 16 frames inside, and the tiny variants.

Every setup of the device is run: float32 on a CPU (and float32 channels-last with
--channels-last, bfloat16 autocast with channels-last with --bf16); on a GPU bfloat16 with
channels-last, torch.compile off and on. Writes a JSON report and a markdown table beside it.

    python benchmarks/bench_models.py --device cpu --batch 1 --out benchmarks/results/models-cpu.json
    python benchmarks/bench_models.py --device cuda --batch 1,8 --iters 10
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import _common  # noqa: F401  (import path)
from _common import write_report

from dtfcli.engine.benchmark import resolve_device, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--suites", default="flops,inference,train", help="comma list of flops, inference, train")
    parser.add_argument("--iters", type=int, default=5, help="timed alternating rounds per comparison")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", help="keep the comparisons whose group contains this, e.g. R50 or Swin-B")
    parser.add_argument("--no-compile", action="store_true", help="GPU: skip the torch.compile setup")
    parser.add_argument(
        "--channels-last", action="store_true", help="CPU: also run float32 channels-last (a second setup)"
    )
    parser.add_argument(
        "--bf16", action="store_true", help="CPU: also run bfloat16 autocast with channels-last (CPUs with AMX)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/models.json"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    batches = tuple(int(b) for b in args.batch.split(","))
    suites = args.suites.split(",")
    # (amp, channels_last, compile) per setup; the FLOPs are counted once.
    if device.type == "cuda":
        setups = [(True, True, False)] + ([] if args.no_compile else [(True, True, True)])
    else:
        setups = [(False, False, False)] + ([(False, True, False)] if args.channels_last else [])
        setups += [(True, True, False)] if args.bf16 else []
    report: dict = {"rows": []}
    for i, (amp, channels_last, compile_) in enumerate(setups):
        run_suites = [s for s in suites if s != "flops" or i == 0]
        part = run_benchmark(
            run_suites,
            str(device),
            batches,
            iters=args.iters,
            warmup=args.warmup,
            amp=amp,
            channels_last=channels_last,
            compile=compile_,
            only=args.only,
            progress=lambda m: print(m, flush=True),
        )
        report["machine"] = report.get("machine", part["machine"])
        report["rows"] += part["rows"]
    report["command"] = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    write_report(report, args.out)


if __name__ == "__main__":
    main()
