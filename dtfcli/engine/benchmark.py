"""Benchmark harness: DTF models against their baselines and peers, measured side by side.

Every figure is a ratio measured in one run on one machine: the compared modules are
built once, warmed up, and then timed in alternating rounds (A B, B A, A B, ...), and the
median per module is kept. Absolute clips/s are reported too, always labelled with the
device; only a GPU's are meant to be quoted.

Peak training memory: on CUDA, `torch.cuda.max_memory_allocated` after a reset, minus what
was allocated before the step. On CPU there is no allocator counter, so each configuration
runs in a fresh interpreter (`_cpu_memory_probe`), which reads its peak resident set
(`ru_maxrss`) after two training steps and subtracts its resident set before the first
one (`/proc/self/statm`): the memory the steps themselves needed, in MiB.

Suites: ``flops`` (params and GFLOPs per view next to the paper's), ``inference``,
``train``, ``block`` (the DTF block alone vs a temporal conv and TSM) and ``decode``.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from dtfcli import native
from dtfcli.engine.runtime import cpu_allocator_label, denormals_label

SUITES = ("flops", "inference", "train", "block", "decode")
MIB = 1024 * 1024


@dataclass(frozen=True)
class Contender:
    """One module at one input: a registry model, a torchvision video model or a lone block.

    ``name``: a registry name (``dtfnet_r50``), ``torchvision:<builder>`` (``torchvision:swin3d_b``)
    or ``block:<dtf|conv1d|tsm>``. ``shape``: one sample's input, (3, T, H, W) for models,
    (C, T, H, W) for blocks.
    """

    name: str
    shape: tuple[int, ...]

    @property
    def is_block(self) -> bool:
        return self.name.startswith("block:")

    @property
    def input_label(self) -> str:
        """``16x256`` (frames x crop) for a model, ``C64 T4 64x64`` for a block."""
        if self.is_block:
            return f"C{self.shape[0]} T{self.shape[1]} {self.shape[2]}x{self.shape[3]}"
        return f"{self.shape[1]}x{self.shape[-1]}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.input_label}"


@dataclass(frozen=True)
class Target:
    """A target of the issue: the candidate/baseline ratio of ``metric`` must be ``op`` ``value``."""

    metric: str  # "throughput" (candidate / baseline clips/s) or "memory" (candidate / baseline MiB)
    op: str  # ">=" or "<="
    value: float
    devices: tuple[str, ...] = ("cpu", "cuda")

    def check(self, measured: float | None) -> bool | None:
        if measured is None:
            return None
        return measured >= self.value if self.op == ">=" else measured <= self.value


@dataclass(frozen=True)
class Comparison:
    group: str
    candidate: Contender
    baseline: Contender
    targets: dict[str, tuple[Target, ...]] = field(default_factory=dict)  # suite -> targets
    proxy: bool = False  # targets stated for the full-size models, checked here on a small one
    suites: tuple[str, ...] = ("inference", "train")


INFER_R50 = Target("throughput", ">=", 0.92)
TRAIN_R50 = (Target("throughput", ">=", 0.90), Target("memory", "<=", 1.25))
INFER_SWIN3D = Target("throughput", ">=", 1.5, devices=("cpu",))


def model_comparisons(quick: bool = False, device_type: str = "cpu") -> list[Comparison]:
    """The model pairs of the issue: full size, or tiny models at small inputs (``quick``)."""
    r50_targets = {"inference": (INFER_R50,), "train": TRAIN_R50}
    if quick:
        tiny = (3, 8, 64, 64)
        return [
            Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("c2d_tiny", tiny), r50_targets, True),
            Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("tsm_tiny", tiny)),
            # Inference only: a quick run stays well under a minute on two CPU cores.
            Comparison(
                "tiny Swin", Contender("dtf_swin_tiny", tiny), Contender("c2d_swin_tiny", tiny), suites=("inference",)
            ),
        ]
    r50, swin64, swin32 = (3, 16, 256, 256), (3, 64, 224, 224), (3, 32, 224, 224)
    tiny = (3, 16, 112, 112)
    # Swin-B at 64 frames and R(2+1)D-18 at 16 x 256 train at well over 10 s a step on a
    # CPU (Swin-B with tens of GiB): their training is compared on a GPU only.
    heavy_suites = ("inference", "train") if device_type == "cuda" else ("inference",)
    return [
        Comparison("R50 16x256", Contender("dtfnet_r50", r50), Contender("c2d_r50", r50), r50_targets),
        Comparison("R50 16x256", Contender("dtfnet_r50", r50), Contender("tsm_r50", r50)),
        Comparison(
            "R50 16x256", Contender("dtfnet_r50", r50), Contender("torchvision:r2plus1d_18", r50), suites=heavy_suites
        ),
        Comparison(
            "Swin-B, 16 frames inside",
            Contender("dtf_swin_b", swin64),
            Contender("c2d_swin_b", swin64),
            suites=heavy_suites,
        ),
        # Video Swin's patch is 2 x 4 x 4, DTF-Transformer's 4 x 4 x 4: 32 and 64 input frames
        # are both 16 inside the network.
        Comparison(
            "Swin-B, 16 frames inside",
            Contender("dtf_swin_b", swin64),
            Contender("torchvision:swin3d_b", swin32),
            {"inference": (INFER_SWIN3D,)},
            suites=heavy_suites,
        ),
        Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("c2d_tiny", tiny)),
        Comparison("tiny ResNet", Contender("dtfnet_tiny", tiny), Contender("tsm_tiny", tiny)),
        Comparison("tiny Swin", Contender("dtf_swin_tiny", tiny), Contender("c2d_swin_tiny", tiny)),
    ]


def block_comparisons(quick: bool = False, amp: bool = False) -> list[Comparison]:
    """The DTF block vs a temporal conv and TSM at the layer shapes of DTF-Net R50 (16 frames, 256);
    under autocast (``amp``) also vs itself with ``float32_spectrum=True``, the released code's
    float32 path."""
    shapes = (
        [(16, 4, 16, 16), (64, 4, 8, 8)]
        if quick
        else [(64, 4, 64, 64), (128, 4, 32, 32), (256, 4, 16, 16), (512, 4, 8, 8)]
    )
    out = []
    for shape in shapes:
        group = f"block C={shape[0]} T={shape[1]} {shape[2]}x{shape[3]}"
        for baseline in ("conv1d", "tsm") + (("dtf-float32-spectrum",) if amp else ()):
            out.append(Comparison(group, Contender("block:dtf", shape), Contender(f"block:{baseline}", shape)))
    return out


def build_module(contender: Contender, num_classes: int = 400) -> nn.Module:
    """A freshly initialised module for a contender (random weights: speed does not depend on them)."""
    name, shape = contender.name, contender.shape
    if contender.is_block:
        from dtfcli.models import DTFBlock, TemporalConv, TemporalShift

        kind, (channels, frames) = name.split(":", 1)[1], shape[:2]
        builders = {
            "dtf": lambda: DTFBlock(channels, frames),
            "dtf-float32-spectrum": lambda: DTFBlock(channels, frames, float32_spectrum=True),
            "conv1d": lambda: TemporalConv(channels),
            "tsm": lambda: TemporalShift(),
        }
        if kind not in builders:
            raise ValueError(f"unknown block {kind!r}; choose one of {', '.join(builders)}")
        return builders[kind]()
    if name.startswith("torchvision:"):
        import torchvision.models.video as tv_video

        builder = getattr(tv_video, name.split(":", 1)[1], None)
        if builder is None:
            raise ValueError(f"torchvision.models.video has no model {name.split(':', 1)[1]!r}")
        return builder(weights=None, num_classes=num_classes)
    from dtfcli.models import create_model

    return create_model(name, num_classes=num_classes, num_frames=shape[1], crop_size=shape[-1])


@functools.cache
def contender_gflops(contender: Contender) -> float | None:
    """GFLOPs per view (multiply-adds, counted on the meta device), None where it cannot be counted."""
    from dtfcli.models import measure_cost

    try:
        with torch.device("meta"):
            module = build_module(contender)
        return round(measure_cost(module, (1, *contender.shape)).gflops, 2)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):  # not traceable on meta: no figure
        return None


# ----------------------------------------------------------------------------- timing


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available on this machine (use cpu or auto)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda[:N]")
    return torch.device(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alternating(
    steps: list[Callable[[], None]], device: torch.device, iters: int, warmup: int
) -> list[list[float]]:
    """Seconds of each call of each step (one list per step, one entry per round).

    The steps are timed in alternating rounds, and the order flips every round (A B, B A,
    ...) so that no module always runs right after another one (caches, clocks) and slow
    drifts of the machine (other processes, turbo) hit all of them alike.
    """
    for _ in range(warmup):
        for step in steps:
            step()
    _sync(device)
    times: list[list[float]] = [[] for _ in steps]
    for round_ in range(iters):
        order = range(len(steps)) if round_ % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            start = time.perf_counter()
            steps[i]()
            _sync(device)
            times[i].append(time.perf_counter() - start)
    return times


@dataclass
class RunOptions:
    device: torch.device
    batch: int
    iters: int = 5
    warmup: int = 1
    amp_dtype: torch.dtype | None = None  # e.g. torch.bfloat16 on a GPU
    channels_last: bool = False
    compile: bool = False
    parallel_memory_probes: bool = False  # CPU: measure the contenders' memory at the same time

    def describe(self) -> dict:
        return {
            "device": str(self.device),
            "batch": self.batch,
            "iters": self.iters,
            "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "float32",
            "channels_last": self.channels_last,
            "compile": self.compile,
        }


def _prepare(contender: Contender, opts: RunOptions, train: bool) -> tuple[nn.Module, torch.Tensor]:
    module = build_module(contender).to(opts.device).train(train)
    x = torch.randn(opts.batch, *contender.shape, device=opts.device)
    if opts.channels_last:
        # Only the 5-D weights (3D convs): `module.to(memory_format=...)` refuses the 2-D/4-D
        # ones that DTF blocks and heads hold.
        for p in module.parameters():
            if p.dim() == 5:
                p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    if train and contender.is_block:
        x.requires_grad_(True)  # a lone block: let the gradient reach its input, as inside a network
    if opts.compile:
        module = torch.compile(module)
    return module, x


def _autocast(opts: RunOptions):
    if opts.amp_dtype is None:
        return nullcontext()
    return torch.autocast(opts.device.type, dtype=opts.amp_dtype)


def _inference_step(module: nn.Module, x: torch.Tensor, opts: RunOptions) -> Callable[[], None]:
    def step() -> None:
        with torch.inference_mode(), _autocast(opts):
            module(x)

    return step


def _training_step(module: nn.Module, x: torch.Tensor, opts: RunOptions) -> Callable[[], None]:
    """One SGD step (momentum 0.9, as the paper's recipe) on random labels; blocks use a mean-square loss."""
    optimiser = torch.optim.SGD(
        [p for p in module.parameters() if p.requires_grad] or [torch.zeros(1)], lr=1e-3, momentum=0.9
    )
    labels = torch.randint(0, 400, (x.shape[0],), device=x.device)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        x.grad = None  # a lone block's input gradient: do not accumulate it over steps
        with _autocast(opts):
            out = module(x)
        loss = nn.functional.cross_entropy(out.float(), labels) if out.dim() == 2 else out.float().square().mean()
        loss.backward()
        optimiser.step()

    return step


def compare(contenders: list[Contender], opts: RunOptions, train: bool, measure_memory: bool = True) -> list[dict]:
    """Time the contenders side by side: clips/s (and step seconds) per contender."""
    prepared = [_prepare(c, opts, train) for c in contenders]
    make_step = _training_step if train else _inference_step
    steps = [make_step(module, x, opts) for module, x in prepared]
    times = time_alternating(steps, opts.device, opts.iters, opts.warmup)
    results = [
        {"step_s": statistics.median(t), "clips_per_s": opts.batch / statistics.median(t), "times": t} for t in times
    ]
    if train and measure_memory and opts.device.type == "cuda":
        for result, step in zip(results, steps, strict=True):
            result["peak_mib"] = _cuda_peak_mib(step, opts.device)
    del prepared, steps
    gc.collect()
    return results


def compare_inference(contenders: list[Contender], opts: RunOptions) -> list[dict]:
    """Inference clips/s of each contender, timed in alternating rounds."""
    return compare(contenders, opts, train=False)


def compare_training(contenders: list[Contender], opts: RunOptions, measure_memory: bool = True) -> list[dict]:
    """Training step seconds, clips/s and peak memory (MiB) of each contender."""
    results = compare(contenders, opts, train=True, measure_memory=measure_memory)
    if opts.device.type == "cpu" and measure_memory:
        peaks = cpu_training_peak_mib(
            contenders,
            opts.batch,
            parallel=opts.parallel_memory_probes,
            amp_dtype=opts.amp_dtype,
            channels_last=opts.channels_last,
        )
        for result, peak in zip(results, peaks, strict=True):
            result["peak_mib"] = peak
    return results


def _cuda_peak_mib(step: Callable[[], None], device: torch.device) -> float:
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
    code = "import sys; from dtfcli.engine.benchmark import _cpu_memory_probe; _cpu_memory_probe(sys.argv[1])"

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
    module, x = _prepare(Contender(args["name"], tuple(args["shape"])), opts, train=True)
    step = _training_step(module, x, opts)
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


# ----------------------------------------------------------------------------- suites


def run_comparisons(
    comparisons: list[Comparison],
    suite: str,
    opts: RunOptions,
    progress: Callable[[str], None] | None = None,
    measure_memory: bool = True,
) -> list[dict]:
    """Time every comparison (``suite``: "inference" or "train").

    Comparisons sharing a candidate are timed together in one alternation; training memory
    is measured unless ``measure_memory`` is False.
    """
    groups: dict[tuple[str, Contender], list[Comparison]] = {}
    for comp in comparisons:
        if suite in comp.suites:
            groups.setdefault((comp.group, comp.candidate), []).append(comp)
    rows = []
    for (group, candidate), comps in groups.items():
        contenders = [candidate] + [c.baseline for c in comps]
        if progress:
            progress(f"{suite}: {group}: {', '.join(c.label for c in contenders)}")
        if suite == "train":
            results = compare_training(contenders, opts, measure_memory=measure_memory)
        else:
            results = compare_inference(contenders, opts)
        for comp, base in zip(comps, results[1:], strict=True):
            rows.append(_comparison_row(suite, comp, results[0], base, opts))
    return rows


def _comparison_row(suite: str, comp: Comparison, cand: dict, base: dict, opts: RunOptions) -> dict:
    row = {
        "suite": suite,
        "group": comp.group,
        **opts.describe(),
        "candidate": comp.candidate.name,
        "candidate_input": list(comp.candidate.shape),
        "baseline": comp.baseline.name,
        "baseline_input": list(comp.baseline.shape),
        "candidate_clips_per_s": round(cand["clips_per_s"], 4),
        "baseline_clips_per_s": round(base["clips_per_s"], 4),
        "candidate_step_s": round(cand["step_s"], 5),
        "baseline_step_s": round(base["step_s"], 5),
        **_paired_ratio(cand["times"], base["times"]),
        # GFLOPs per view beside the speed: a throughput ratio far below the inverse
        # GFLOPs ratio says the slower module is limited by something else than arithmetic.
        "candidate_gflops": contender_gflops(comp.candidate),
        "baseline_gflops": contender_gflops(comp.baseline),
    }
    if "peak_mib" in cand:
        row["candidate_peak_mib"], row["baseline_peak_mib"] = round(cand["peak_mib"], 1), round(base["peak_mib"], 1)
        row["memory_ratio"] = round(cand["peak_mib"] / base["peak_mib"], 3) if base["peak_mib"] > 0 else None
    row["targets"] = [
        {
            "metric": t.metric,
            "op": t.op,
            "value": t.value,
            "proxy": comp.proxy,
            "measured": row.get(f"{t.metric}_ratio"),
            "passed": t.check(row.get(f"{t.metric}_ratio")),
        }
        for t in comp.targets.get(suite, ())
        if opts.device.type in t.devices
    ]
    return row


def _paired_ratio(cand_times: list[float], base_times: list[float]) -> dict:
    """Throughput ratio from the rounds: each round's candidate and baseline ran back to back,
    so their ratio is paired against drifts of the machine; the median and range over rounds."""
    ratios = sorted(b / c for c, b in zip(cand_times, base_times, strict=True))
    return {
        "throughput_ratio": round(statistics.median(ratios), 3),
        "throughput_ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
    }


def flops_suite(quick: bool = False, progress: Callable[[Iterable[str]], Iterable[str]] | None = None) -> list[dict]:
    """Params and GFLOPs per view of the registered models, next to the paper's figures.

    ``quick``: only the models the paper reports and the CPU-sized ones.
    """
    from dtfcli.engine.inventory import model_inventory
    from dtfcli.models import get_model_spec, list_models

    names = list_models()
    if quick:
        names = [n for n in names if get_model_spec(n).paper or get_model_spec(n).cpu_sized]
    rows = []
    for name in progress(names) if progress else names:
        rows.extend({"suite": "flops", **r} for r in model_inventory(name))
    return rows


def decode_suite(video: str | None = None) -> list[dict]:
    """10x3 test-view decoding vs the raw decoder on the same frames, for both backends:
    `video`, or a 10 s 340p h264 file made here, one untimed round and best of 5; the same
    with --quick (about 10 s). A backend that cannot be measured is reported as skipped."""
    import tempfile

    from dtfcli.engine.decode_benchmark import bench_file, make_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(video) if video else Path(tmp) / "test_340p_h264.mp4"
        if not video:  # a Kinetics-like file: 10 s, 340p h264, 30 fps. Not shorter when quick:
            # the 10 clips of 16 frames at interval 4 span 64 frames each, so in a 2 s file they
            # overlap, and ours copies 160 frames into clips where the raw loop hands out 60.
            make_video(path, codec="libx264", size=(340, 604), fps=30, seconds=10, gop=60)
        elif not path.is_file():
            raise FileNotFoundError(f"{path}: no such video")
        # Only the four compared methods, an untimed round, then best of 5, even when quick
        # (a few seconds). A single round charged ours, timed first, with the first decode's
        # start-up in the process (~0.15 s). And on the 2-core machine of docs/benchmarks.md
        # a call now and then takes ~0.2 s longer, most often in the first rounds after the
        # file is written, so best of 3 over all seven methods of the developer script
        # sometimes kept a slow call for a decord method: 0.43x for a 0.9x reader.
        pairs = (("pyav", "raw pyav sequential"), ("decord", "raw decord get_batch"))
        compared = [f"dtf {backend} read_clips" for backend, _ in pairs] + [raw for _, raw in pairs]
        rows = {r[0]: r for r in bench_file(path, repeat=5, only=compared, warmup=1)}
    out = []
    # Ours (one pass over the file for all 10 clips) against the decoder's own best way to
    # return the same frames: decord's get_batch, or a sequential PyAV decode.
    for backend, raw in pairs:
        ours = rows.get(f"dtf {backend} read_clips")
        if ours is None or raw not in rows or not ours[1] == ours[1] or not rows[raw][1] == rows[raw][1]:
            out.append({"suite": "decode", "skipped": f"decode suite: {backend} not measurable here"})
            continue
        ratio = rows[raw][1] / ours[1]
        out.append(
            {
                "suite": "decode",
                "backend": backend,
                "video": path.name,
                "frames": ours[4],
                "ours_s": round(ours[1], 4),
                "raw_s": round(rows[raw][1], 4),
                "ours_correct": ours[5],
                "raw_correct": rows[raw][5],
                "ratio": round(ratio, 3),
                "targets": [
                    {
                        "metric": "throughput",
                        "op": ">=",
                        "value": 0.8,
                        "passed": bool(ratio >= 0.8),
                        "proxy": False,  # the full-size measurement, --quick or not
                    }
                ],
            }
        )
    return out


# ----------------------------------------------------------------------------- a whole run


def parse_suites(spec: str) -> list[str]:
    """``"all"`` or a comma list of suite names, checked."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["all"]:
        return list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        bad = ", ".join(map(repr, unknown)) or repr(spec)
        raise ValueError(f"unknown suite {bad}; choose from {', '.join(SUITES)} or all")
    return names


def machine_info(device: torch.device) -> dict:
    """What the figures were measured on: CPU model and cores, GPU, torch, load, date, commit."""
    import datetime
    import platform

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = (
            subprocess.run(
                ["git", "describe", "--always", "--dirty", "--abbrev=7"],
                check=False,
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parent,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit,
        # Other processes on the machine disturb absolute times more than side-by-side ratios.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_allocator": cpu_allocator_label(),
        "cpu_denormals": denormals_label(),
        # native C kernels or the tensor-operation fallback for the DTF block on the CPU
        "dtf_cpu_kernels": "native C" if native.status().startswith("native") else native.status(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def run_benchmark(
    suites: list[str],
    device: str = "auto",
    batches: tuple[int, ...] = (1,),
    quick: bool = False,
    iters: int | None = None,
    warmup: int = 1,
    amp: bool | None = None,
    channels_last: bool = False,
    compile: bool = False,
    video: str | None = None,
    only: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the chosen suites; returns {"machine", "options", "rows"} (rows: one dict per figure).

    ``amp`` defaults to bfloat16 autocast on a GPU and float32 on a CPU; ``only`` keeps the
    model comparisons whose group contains it (e.g. "R50").
    """
    dev = resolve_device(device)
    if iters is None:
        iters = 5 if quick else 3
    amp_dtype = torch.bfloat16 if (dev.type == "cuda" if amp is None else amp) else None
    rows: list[dict] = []
    for suite in suites:
        if progress:
            progress(f"suite {suite}")
        if suite == "flops":
            rows += flops_suite(quick)
        elif suite == "decode":
            rows += decode_suite(video)
        else:
            for batch in batches:
                opts = RunOptions(
                    dev, batch, iters, warmup, amp_dtype, channels_last, compile, parallel_memory_probes=quick
                )
                if suite == "block":
                    for mode in ("inference", "train"):
                        rows += [
                            {**r, "suite": f"block {mode}"}
                            for r in run_comparisons(
                                block_comparisons(quick, amp_dtype is not None),
                                mode,
                                opts,
                                progress,
                                measure_memory=dev.type == "cuda",
                            )
                        ]
                else:
                    comparisons = [c for c in model_comparisons(quick, dev.type) if only is None or only in c.group]
                    rows += run_comparisons(comparisons, suite, opts, progress)
    options = {
        "suites": suites,
        "device": str(dev),
        "batches": list(batches),
        "quick": quick,
        "iters": iters,
        "warmup": warmup,
        "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
        "channels_last": channels_last,
        "compile": compile,
    }
    return {"machine": machine_info(dev), "options": options, "rows": rows}


def target_summary(rows: list[dict]) -> tuple[int, int]:
    """(targets met, targets checked) over all rows."""
    checks = [t["passed"] for r in rows for t in r.get("targets", ()) if t["passed"] is not None]
    return sum(checks), len(checks)
