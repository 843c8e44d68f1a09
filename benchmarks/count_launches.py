"""Kernel launches per DTF block pass on a GPU in eager mode, counted on any machine.

On a GPU every ATen operation that computes launches at least one kernel, and at the late
stages' small shapes the host's launch cost outweighs the work. This counts, for one block:
- the ATen operations that compute (views and allocations excluded), and
- the Triton kernel launches,
for inference (eval, folded) and a training step (forward and backward), with the
tensor-operation path and with the Triton kernels. Without a GPU the Triton kernels run in
Triton's interpreter (``TRITON_INTERPRET=1``, set here for that path's subprocess); what the
interpreter dispatches itself is not counted.

    python benchmarks/count_launches.py [--channels 64 --frames 4 --size 16]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

import _common  # noqa: F401  (import path)

NOT_LAUNCHING = {
    "view", "_unsafe_view", "expand", "select", "slice", "transpose", "t", "permute", "unsqueeze", "squeeze",
    "alias", "detach", "as_strided", "unbind", "split", "new_empty", "empty", "empty_like", "empty_strided",
    "lift_fresh",
}  # fmt: skip


def count(path: str, channels: int, frames: int, size: int) -> dict:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from dtfcli import native
    from dtfcli.models import DTFBlock

    inside_triton = [False]
    launches: collections.Counter = collections.Counter()
    if path == "triton":
        from dtfcli.native import triton_aggregation, triton_modulation

        for module in (triton_aggregation, triton_modulation):
            kernels = module.kernels()

            class Launcher:
                def __init__(self, name, kernel):
                    self.name, self.kernel = name, kernel

                def __getitem__(self, grid):
                    def launch(*args, **kwargs):
                        launches["triton:" + self.name] += 1
                        inside_triton[0] = True
                        try:
                            return self.kernel[grid](*args, **kwargs)
                        finally:
                            inside_triton[0] = False

                    return launch

            family = module.__name__.rsplit("_", 1)[-1]  # aggregation, modulation
            wrapped = {name: Launcher(f"{family}.{name}", kernel) for name, kernel in kernels.items()}
            module.kernels = lambda wrapped=wrapped: wrapped
        assert native.triton_usable(torch.randn(1)), native.gpu_status()

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if not inside_triton[0] and name not in NOT_LAUNCHING:
                launches[name] += 1
            return func(*args, **(kwargs or {}))

    result = {}
    for mode in ("inference", "training"):
        block = DTFBlock(channels, num_frames=frames).train(mode == "training")
        x = torch.randn(2 * frames, channels, size, size, requires_grad=mode == "training")
        with torch.no_grad():  # a first call builds the cached transforms and weights
            block(x)
        launches.clear()
        with Count():
            if mode == "training":
                block(x).sum().backward()
            else:
                with torch.no_grad():
                    block(x)
        result[mode] = {"total": sum(launches.values()), "by_op": dict(launches.most_common())}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--path", choices=["tensor", "triton"], help=argparse.SUPPRESS)  # the subprocesses
    args = parser.parse_args()
    if args.path:
        print(json.dumps(count(args.path, args.channels, args.frames, args.size)))
        return
    rows = {}
    for path, env in (("tensor", {"DTF_TRITON": "0"}), ("triton", {"TRITON_INTERPRET": "1"})):
        env = {**os.environ, "DTF_NATIVE": "0", **env}
        argv = [sys.executable, __file__, "--path", path]
        argv += ["--channels", str(args.channels), "--frames", str(args.frames), "--size", str(args.size)]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        rows[path] = json.loads(proc.stdout.strip().splitlines()[-1])
    shape = f"C={args.channels}, T={args.frames}, {args.size}x{args.size}, batch 2"
    print(f"kernel launches per DTF block ({shape}), GPU eager mode")
    print(f"{'pass':<12}{'tensor operations':>20}{'Triton kernels':>18}")
    for mode in ("inference", "training"):
        print(f"{mode:<12}{rows['tensor'][mode]['total']:>20}{rows['triton'][mode]['total']:>18}")
    for mode in ("inference", "training"):
        print(f"{mode}, Triton path by operation: {rows['triton'][mode]['by_op']}")


if __name__ == "__main__":
    main()
