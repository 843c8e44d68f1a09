"""Peak memory of a training step: on CUDA from the allocator's counters, on a CPU in a
fresh interpreter per contender (see `cpu_training_peak_mib`)."""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from dtfcli.engine.benchmark_setup import Contender, RunOptions, prepare, training_step

MIB = 1024 * 1024


def cuda_peak_mib(step: Callable[[], None], device: torch.device) -> float:
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / MIB


def cpu_training_peak_mib(
    contenders: list[Contender],
    batch: int,
    parallel: bool = False,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> list[float]:
    """Peak memory of a CPU training step (MiB), each contender measured in a fresh interpreter.

    ``parallel`` runs the probes at the same time (quicker; only for models that fit together).
    """
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        # A fixed mmap threshold makes glibc hand large freed blocks back to the kernel, so the
        # resident set follows the live tensors instead of keeping a warm-up step's heap.
        "MALLOC_MMAP_THRESHOLD_": "131072",
    }
    code = "import sys; from dtfcli.engine.benchmark_memory import _cpu_memory_probe; _cpu_memory_probe(sys.argv[1])"

    def launch(contender: Contender) -> subprocess.Popen:
        args = json.dumps(
            {
                "name": contender.name,
                "shape": list(contender.shape),
                "batch": batch,
                "threads": torch.get_num_threads(),
                "channels_last": channels_last,
                "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
            }
        )
        return subprocess.Popen(
            [sys.executable, "-c", code, args], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def collect(contender: Contender, proc: subprocess.Popen) -> float:
        out, err = proc.communicate()
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"memory probe for {contender.label} failed: {last}")
        return json.loads(out.strip().splitlines()[-1])["peak_mib"]

    if parallel:
        procs = [launch(c) for c in contenders]
        return [collect(c, p) for c, p in zip(contenders, procs, strict=True)]
    return [collect(c, launch(c)) for c in contenders]


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))


def _cpu_memory_probe(args_json: str) -> None:
    """Entry point of the fresh interpreter: print a training step's peak memory as JSON.

    One warm-up step first (gradients, optimiser state, one-time library buffers), then the
    kernel's peak-RSS mark is reset (/proc/self/clear_refs) and one more step is measured:
    the memory the step needs above the model and its optimiser state, as on CUDA. Where the
    mark cannot be reset, the measurement starts before the first step (ru_maxrss).
    """
    args = json.loads(args_json)
    torch.set_num_threads(args["threads"])
    opts = RunOptions(
        device=torch.device("cpu"),
        batch=args["batch"],
        channels_last=args["channels_last"],
        amp_dtype=getattr(torch, args["amp"]) if args["amp"] else None,
    )
    module, x = prepare(Contender(args["name"], tuple(args["shape"])), opts, train=True)
    step = training_step(module, x, opts)
    try:
        step()
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
        before = _proc_status_kib("VmRSS")
        step()
        peak = _proc_status_kib("VmHWM")
    except OSError:
        gc.collect()
        before = _proc_status_kib("VmRSS")
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"peak_mib": round(max(peak - before, 0) / 1024, 1)}))
