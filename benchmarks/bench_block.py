"""The DTF block alone vs a temporal conv (DTF_1d) and TSM's shift, at the layer shapes of
DTF-Net R50 with 16 frames at 256 (T = 4 inside): (B, 64, 4, 64, 64) ... (B, 512, 4, 8, 8).
Inference and a training step (forward, backward, SGD), timed in alternating rounds. With
``--amp`` (bfloat16 autocast) also the block against itself with ``float32_spectrum=True``.

    python benchmarks/bench_block.py --device cpu --batch 1,8
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import _common  # noqa: F401  (import path)
import torch
from _common import write_report

from dtfcli.engine.benchmark import (
    RunOptions,
    block_comparisons,
    machine_info,
    resolve_device,
    run_comparisons,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument(
        "--amp",
        action="store_true",
        help="bfloat16 autocast (a GPU, or a CPU with bfloat16 units); adds the DTF block with float32_spectrum=True",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/block.json"))
    args = parser.parse_args()

    device = resolve_device(args.device)
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        opts = RunOptions(device, batch, args.iters, warmup=2, amp_dtype=torch.bfloat16 if args.amp else None)
        for mode in ("inference", "train"):
            rows += [
                {**r, "suite": f"block {mode}"}
                for r in run_comparisons(
                    block_comparisons(amp=args.amp),
                    mode,
                    opts,
                    lambda m: print(m, flush=True),
                    measure_memory=device.type == "cuda",
                )
            ]
    report = {
        "machine": machine_info(device),
        "rows": rows,
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
