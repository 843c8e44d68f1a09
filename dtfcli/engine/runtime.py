"""Process-wide CPU settings that the command line applies before it runs a model.

Why the allocator: PyTorch has no caching allocator on the CPU, so every activation tensor
comes from glibc's malloc, which serves blocks above its mmap threshold (at most 32 MiB)
with fresh `mmap` pages and hands them back on `free`. A video network allocates tensors of
tens to hundreds of MiB per layer, so each forward pass page-faults its whole working set
again: on the 2-core machine of docs/benchmarks.md a 1x1 conv of a batch-8 DTF-Net R50
stage-1 tensor spent two thirds of its time in page faults (77 ms against 24 ms with the
setting below). Turning mmap off and never trimming the heap keeps freed blocks in the
process for the next pass; the resident set then stays at its peak instead of following
the live tensors, which is what a long-running predict/eval/train process wants anyway.

Why denormals are flushed: x86 cores take a microcode assist, about a hundred times the
normal cost, for every float32 below 1.2e-38 in an operand or a result. A training run
produces such values after a few steps (small gradients times small activations, momentum
buffers decaying), and then whole convolution backward passes slow down unpredictably: on
the machine of docs/benchmarks.md one C2D ResNet-50 SGD step went from 0.77 s to 29 s at
its fifth step, with no page faults and both cores busy. Flushing them to zero (FTZ/DAZ,
``torch.set_flush_denormal``) costs nothing in accuracy that float32 training relies on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_tuned: bool | None = None
_flushed = False


def tune_cpu_allocator() -> bool:
    """Make glibc keep freed memory for reuse (no mmap for large blocks, no trimming).

    Idempotent; returns whether the setting is in effect. Skipped off glibc Linux, when
    ``DTF_CPU_ALLOCATOR=default`` is set, or when the user configured malloc through its
    own ``MALLOC_*_`` environment variables (theirs win).
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux") or os.environ.get("DTF_CPU_ALLOCATOR", "").lower() == "default":
        return False
    if any(key.startswith("MALLOC_") and key.endswith("_") for key in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    return _tuned


def cpu_allocator_label() -> str:
    """How the CPU allocator is set up, for benchmark reports."""
    return "glibc, mmap off, no trim (dtf default)" if _tuned else "system default"


def flush_denormals() -> bool:
    """Treat float denormals as zero on the CPU for this process (FTZ/DAZ), unless
    ``DTF_DENORMALS=keep``. Returns whether flushing is on (False on CPUs without it)."""
    global _flushed
    if os.environ.get("DTF_DENORMALS", "").lower() == "keep":
        return False
    import torch  # the allocator setting above must run before torch allocates anything

    _flushed = bool(torch.set_flush_denormal(True))
    return _flushed


def denormals_label() -> str:
    return "flushed to zero (dtf default)" if _flushed else "kept"


def apply_cpu_settings() -> None:
    """What the `dtf` command and the benchmark scripts apply before running a model."""
    tune_cpu_allocator()
    flush_denormals()
