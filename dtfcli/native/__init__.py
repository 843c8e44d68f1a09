"""Native CPU kernels, compiled on first use with the system C compiler and cached.

Why: the DTF block's frame-wise aggregation is memory-bound; as tensor operations it makes
about 50 passes over the feature (docs/benchmarks.md, "Where the R50 time goes"), where a
loop over rows makes two. Swin's 49-token window attention is, as torchvision computes it,
small batched matmuls and passes over the scores and tokens (dtf_attention.c). PyTorch has
no operation for either, and a C++ extension would need a minute of compiling against its
headers; this is plain C (OpenMP for the threads, which
joins the OpenMP runtime PyTorch already loaded), built in about a second by ``cc`` and
called through ctypes on the tensors' memory.

The kernels compute in float32. For the DTF block under autocast the modulation also has a
bfloat16 instance (bfloat16 in and out, half the bytes), and the aggregation takes
bfloat16 and float16 tensors converted to float32 on the way in and back on the way out
(their tensor-operation path runs 3-8 times slower in bfloat16 on a CPU than that).

Everything here is optional: without a compiler, with ``DTF_NATIVE=0``, or for inputs the
kernel does not take (another dtype, not on the CPU, under tracing or torch.compile), the
callers use their tensor-operation path, which computes the same function and is the
reference the kernels are tested against. `status()` says which is in use and why.

The library is cached in `cache_dir()` (``~/.cache/dtfcli/native`` by default), keyed by
the source, the compiler, its flags and the CPU (``-march=native``), and written atomically
so concurrent processes never load a half-written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

_SOURCES = tuple(Path(__file__).with_name(name) for name in ("dtf_kernels.c", "dtf_attention.c"))
_FLAG_SETS = (
    ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"],
    ["-O3", "-fopenmp", "-fPIC", "-shared"],  # compilers without -march=native
)
# The C functions: (pointer arguments, trailing int arguments) around their 5 int64 sizes.
_SIGNATURES = {
    "dtf_frame_aggregation_f32": (4, 3),
    "dtf_frame_aggregation_backward_f32": (7, 3),
    "dtf_modulate_f32": (3, 1),
    "dtf_modulate_backward_f32": (5, 1),
    "dtf_modulate_bf16": (3, 1),
    "dtf_modulate_backward_bf16": (5, 1),
    "dtf_window_attention_f32": (4, 3),
}
_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_status: str | None = None


def cache_dir() -> Path:
    """``$DTF_CACHE/native``, else under ``$XDG_CACHE_HOME/dtfcli`` or ``~/.cache/dtfcli``: the
    cache root of the weight downloads too (`dtfcli.hub.fetch.cache_root`, not imported
    here to keep huggingface_hub out of the models' import)."""
    root = os.environ.get("DTF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dtfcli"
    )
    return Path(root) / "native"


def _cpu_identity() -> str:
    """The CPU model and feature flags (what -march=native compiles for)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(keep))  # the same on every core: once


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def _build(compiler: str) -> Path:
    sources = [path.read_bytes() for path in _SOURCES]
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    errors = []
    for flags in _FLAG_SETS:
        parts = [*sources, compiler, version, " ".join(flags), _cpu_identity()]
        key = hashlib.sha256(b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts))
        target = cache_dir() / f"dtf_kernels-{key.hexdigest()[:16]}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            proc = subprocess.run(
                [compiler, *flags, "-o", tmp, *map(str, _SOURCES)], capture_output=True, text=True, timeout=120
            )
            if proc.returncode == 0:
                os.replace(tmp, target)  # atomic: another process sees the old state or the whole file
                return target
            errors.append(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    names = " ".join(path.name for path in _SOURCES)
    raise RuntimeError(f"{compiler} could not build {names}: {errors[-1]}")


def _load() -> ctypes.CDLL | None:
    global _library, _status
    if _status is not None:  # settled: every call of a kernel comes through here
        return _library
    with _lock:
        if _status is not None:
            return _library
        if _off("DTF_NATIVE"):
            _status = "off (DTF_NATIVE=0): tensor operations"
            return None
        compiler = _compiler()
        if compiler is None:
            _status = f"no C compiler ({os.environ.get('CC', 'cc')} not found): tensor operations"
            return None
        try:
            path = _build(compiler)
            lib = ctypes.CDLL(str(path))
        except (OSError, RuntimeError, subprocess.SubprocessError) as err:
            _status = f"unavailable ({err}): tensor operations"
            return None
        for name, (pointers, ints) in _SIGNATURES.items():  # every kernel: pointers, 5 sizes, ints
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * pointers + [ctypes.c_int64] * 5 + [ctypes.c_int] * ints
        _library, _status = lib, f"native C kernels ({path})"
        return lib


def status() -> str:
    """Whether the CPU uses the native kernels or tensor operations, and why (builds the
    library if needed)."""
    _load()
    return _status or ""


_HALF = (torch.bfloat16, torch.float16)


def usable(x: torch.Tensor, convert_half: bool = False) -> bool:
    """Whether a kernel can take x: a contiguous float32 CPU tensor (or bfloat16/float16
    where the caller converts, ``convert_half``), outside tracing and torch.compile, with
    the library built."""
    if x.device.type != "cpu" or not x.is_contiguous():
        return False
    if x.dtype != torch.float32 and not (convert_half and x.dtype in _HALF):
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False  # graphs must see tensor operations
    return _load() is not None


def frame_aggregation(
    x: torch.Tensor, kernel_size: int, aggregate: bool, need_weights: bool
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None] | None:
    """The kernel on a frames-major (B, T, C, H, W) CPU tensor: (Y or None, corr, softmax
    weights (B, T-1, k^2, H, W) or None), or None when the caller must use its
    tensor-operation path. Y and corr have x's dtype, the weights are float32."""
    if not usable(x, convert_half=True):
        return None
    dtype = x.dtype
    x = x.float()
    b, t, c, h, w = x.shape
    k2 = kernel_size * kernel_size
    corr = x.new_empty(b, t, k2, h, w)
    y = torch.empty_like(x) if aggregate else None
    weights = x.new_empty(b, t - 1, k2, h, w) if (aggregate and need_weights and t > 1) else None
    failed = _library.dtf_frame_aggregation_f32(
        x.data_ptr(),
        y.data_ptr() if y is not None else None,
        corr.data_ptr(),
        weights.data_ptr() if weights is not None else None,
        b,
        t,
        c,
        h,
        w,
        kernel_size,
        int(aggregate),
        torch.get_num_threads(),
    )
    if failed:
        return None
    return (y.to(dtype) if y is not None else None), corr.to(dtype), weights


def _ptr(t: torch.Tensor | None):
    return t.data_ptr() if t is not None else None


def frame_aggregation_backward(
    x: torch.Tensor,
    weights: torch.Tensor | None,
    grad_y: torch.Tensor | None,
    grad_corr: torch.Tensor | None,
    kernel_size: int,
    aggregate: bool,
) -> torch.Tensor | None:
    """The gradient with respect to x of `frame_aggregation`, given the softmax weights it
    returned and the gradients of Y and corr (either may be None), or None when the caller
    must use its tensor-operation path. The gradient has x's dtype."""
    grads = [g for g in (grad_y, grad_corr) if g is not None]
    if not usable(x, convert_half=True) or any(g.device.type != "cpu" or not g.is_floating_point() for g in grads):
        return None
    b, t, c, h, w = x.shape
    if aggregate and t > 1 and (weights is None or not weights.is_contiguous()):
        return None
    dtype = x.dtype
    x = x.float()
    k2 = kernel_size * kernel_size
    grad_y = grad_y.float().contiguous() if grad_y is not None else None
    grad_corr = grad_corr.float().contiguous() if grad_corr is not None else None
    grad_x = torch.empty_like(x)
    scores = x.new_empty(b, t, k2, h, w)
    masked_weights = x.new_empty(b, t - 1, k2, h, w) if (aggregate and t > 1 and grad_y is not None) else None
    failed = _library.dtf_frame_aggregation_backward_f32(
        x.data_ptr(),
        _ptr(weights if aggregate and t > 1 else None),
        _ptr(grad_y),
        _ptr(grad_corr),
        grad_x.data_ptr(),
        scores.data_ptr(),
        _ptr(masked_weights),
        b,
        t,
        c,
        h,
        w,
        kernel_size,
        int(aggregate),
        torch.get_num_threads(),
    )
    return None if failed else grad_x.to(dtype)


def modulate_usable(spectrum: torch.Tensor, filt: torch.Tensor) -> bool:
    """Whether `modulate` takes these: spectrum (B, M, 2, C/G, G, L) and filter
    (B, C/G, 2, M, L), both contiguous, float32 (or both of one half dtype), on the CPU
    (the C kernels) or on a GPU (the Triton kernels)."""
    if spectrum.dim() != 6 or filt.dim() != 5 or spectrum.dtype != filt.dtype:
        return False
    b, m, _, cg, _, length = spectrum.shape
    if filt.shape != (b, cg, 2, m, length):
        return False
    if _on_triton(spectrum, filt):
        return True
    return usable(spectrum, True) and usable(filt, True)


def _on_triton(spectrum: torch.Tensor, filt: torch.Tensor) -> bool:
    """Whether the modulation goes to the Triton kernels: on a GPU (or in Triton's
    interpreter, the tests, where the C kernels are off)."""
    if spectrum.device.type == "cpu" and usable(spectrum, True):
        return False
    return triton_usable(spectrum) and triton_usable(filt)


def modulate(spectrum: torch.Tensor, filt: torch.Tensor) -> torch.Tensor | None:
    """S' = S * S_c on the DTF block's layouts (see `modulate_usable`), in their dtype, or None."""
    if not modulate_usable(spectrum, filt):
        return None
    if _on_triton(spectrum, filt):
        return _triton_kernels["modulation"].modulate(spectrum, filt)
    dtype = spectrum.dtype
    kernel = _library.dtf_modulate_bf16 if dtype == torch.bfloat16 else _library.dtf_modulate_f32
    if dtype == torch.float16:
        spectrum, filt = spectrum.float(), filt.float()
    b, m, _, cg, g, length = spectrum.shape
    out = torch.empty_like(spectrum)
    kernel(spectrum.data_ptr(), filt.data_ptr(), out.data_ptr(), b, m, cg, g, length, torch.get_num_threads())
    return out.to(dtype)


def modulate_backward(
    spectrum: torch.Tensor, filt: torch.Tensor, grad: torch.Tensor, need_spectrum: bool, need_filter: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of `modulate` with respect to the spectrum and the filter (summed over the
    group), each only where asked for, in the inputs' dtype."""
    if _on_triton(spectrum, filt):
        return _triton_kernels["modulation"].modulate_backward(spectrum, filt, grad, need_spectrum, need_filter)
    dtype = spectrum.dtype
    kernel = _library.dtf_modulate_backward_bf16 if dtype == torch.bfloat16 else _library.dtf_modulate_backward_f32
    if dtype == torch.float16:
        spectrum, filt = spectrum.float(), filt.float()
    b, m, _, cg, g, length = spectrum.shape
    grad = grad.to(spectrum.dtype).contiguous()
    grad_spectrum = torch.empty_like(spectrum) if need_spectrum else None
    grad_filter = torch.empty_like(filt) if need_filter else None
    failed = kernel(
        spectrum.data_ptr(),
        filt.data_ptr(),
        grad.data_ptr(),
        _ptr(grad_spectrum),
        _ptr(grad_filter),
        b,
        m,
        cg,
        g,
        length,
        torch.get_num_threads(),
    )
    if failed:
        raise MemoryError("DTF modulation backward: could not allocate its float32 accumulator")
    if dtype == torch.float16:
        grad_spectrum = grad_spectrum.to(dtype) if grad_spectrum is not None else None
        grad_filter = grad_filter.to(dtype) if grad_filter is not None else None
    return grad_spectrum, grad_filter


def window_attention(qkv: torch.Tensor, addend: torch.Tensor, index: torch.Tensor, heads: int) -> torch.Tensor | None:
    """Swin window attention between the qkv and output projections (dtf_attention.c):
    qkv (B, H, W, 3C) float32, addend (1 or windows, heads, L, LP) (relative position bias
    plus shift mask, transposed to (key, query), zero-padded to LP = L rounded up to 16
    queries), index (windows, L) int64
    (each window token's position in the image, a permutation of H W). Returns (B, H, W, C),
    or None when the caller must use its tensor-operation path (inputs the kernel does not
    take, or a score that is not finite)."""
    if not (usable(qkv) and usable(addend)) or index.dtype != torch.int64 or not index.is_contiguous():
        return None
    b, h, w, c3 = qkv.shape
    windows, length = index.shape
    out = qkv.new_empty(b, h, w, c3 // 3)
    failed = _library.dtf_window_attention_f32(
        qkv.data_ptr(),
        addend.data_ptr(),
        index.data_ptr(),
        out.data_ptr(),
        b,
        h * w,
        windows,
        length,
        c3 // 3,
        heads,
        int(addend.shape[0] > 1),
        torch.get_num_threads(),
    )
    return None if failed else out


# --- GPU: Triton kernels ----------------------------------------------------------------
# On CUDA tensors the aggregation's tensor-operation path is about 70 kernel launches
# forward and 250 backward per block; `triton_aggregation` does it in one and two, and
# `triton_modulation` the modulation in one each way. Triton
# comes with PyTorch's CUDA wheels on Linux; without it (or with ``DTF_TRITON=0``) CUDA
# tensors take the tensor operations.

_triton_status: str | None = None
_triton_kernels: dict = {}


def _off(variable: str) -> bool:
    """Whether an on/off environment switch (DTF_NATIVE, DTF_TRITON) is set to off."""
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "off", "no")


def _triton() -> dict | None:
    """The Triton kernel modules by name, or None (no Triton, or turned off)."""
    global _triton_status
    if _off("DTF_TRITON"):
        return None  # read on every call, so that a test or a session can turn it off
    if _triton_status is None:
        try:
            from dtfcli.native import triton_aggregation, triton_modulation

            _triton_kernels.update(aggregation=triton_aggregation, modulation=triton_modulation)
            _triton_status = f"Triton {triton_aggregation.triton.__version__}"
        except Exception as error:  # ImportError, or a Triton that fails to initialise
            _triton_status = f"tensor operations (no Triton: {type(error).__name__}: {error})"
    return _triton_kernels or None


def gpu_status() -> str:
    """Which path the DTF block's aggregation and modulation take on CUDA tensors."""
    if _off("DTF_TRITON"):
        return "off (DTF_TRITON=0): tensor operations"
    _triton()
    failed = [f"{dev} {str(dtype).removeprefix('torch.')}" for (dev, dtype), ok in _triton_checked.items() if not ok]
    return (_triton_status or "") + (f"; tensor operations on {', '.join(failed)} (kernels failed)" if failed else "")


# (device, dtype) -> whether every kernel ran there (see `_triton_runs`)
_triton_checked: dict[tuple[str, torch.dtype], bool] = {}


def _triton_runs(device: torch.device, dtype: torch.dtype) -> bool:
    """Run every Triton kernel once on a small input of this device and dtype, the first
    time they are asked for there. The kernels compile on first launch; a Triton that
    cannot compile for this GPU (or this dtype), or returns non-finite values for a finite
    input, must cost the user speed, not the run: the DTF block then takes its tensor
    operations on that device and dtype, with one warning."""
    key = (str(device), dtype)
    if key not in _triton_checked:
        aggregation, modulation = _triton_kernels["aggregation"], _triton_kernels["modulation"]
        try:
            with torch.no_grad():
                x = torch.randn(1, 2, 3, 4, 5, device=device).to(dtype)
                y, corr, weights = aggregation.frame_aggregation(x, 3, True, True)
                grad_x = aggregation.frame_aggregation_backward(x, weights, y, corr, 3, True)
                spectrum = torch.randn(1, 2, 2, 2, 3, 7, device=device).to(dtype)
                filt = torch.randn(1, 2, 2, 2, 7, device=device).to(dtype)
                out = modulation.modulate(spectrum, filt)
                outputs = (y, corr, grad_x, out, *modulation.modulate_backward(spectrum, filt, out, True, True))
            if not all(bool(torch.isfinite(t).all()) for t in outputs):
                raise RuntimeError("non-finite results for a finite input")
            _triton_checked[key] = True
        except torch.OutOfMemoryError:
            raise
        except Exception as error:
            _triton_checked[key] = False
            reason = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
            warnings.warn(
                f"dtf: the DTF block's Triton kernels do not run on {device} for {dtype} ({reason}); "
                "it uses tensor operations there, which is slower (DTF_TRITON=0 turns the kernels off)",
                RuntimeWarning,
                stacklevel=2,
            )
    return _triton_checked[key]


def _interpreting() -> bool:
    # Triton's interpreter runs kernels on CPU tensors; the tests use it (no GPU needed).
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_usable(x: torch.Tensor) -> bool:
    """Whether the Triton kernels take x: a contiguous float32/bfloat16/float16 CUDA tensor
    (a CPU one under Triton's interpreter), outside tracing and torch.compile."""
    if not (x.is_cuda or (_interpreting() and x.device.type == "cpu")):
        return False
    if x.dtype not in (torch.float32, *_HALF) or not x.is_contiguous():
        return False
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    return _triton() is not None and _triton_runs(x.device, x.dtype)


def gpu_frame_aggregation(
    x: torch.Tensor, kernel_size: int, aggregate: bool, need_weights: bool
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None] | None:
    """`frame_aggregation` for CUDA tensors by the Triton kernels, or None when the caller
    must use its tensor-operation path. Y and corr have x's dtype, the weights float32."""
    if not triton_usable(x):
        return None
    return _triton_kernels["aggregation"].frame_aggregation(x, kernel_size, aggregate, need_weights)


def gpu_frame_aggregation_backward(
    x: torch.Tensor,
    weights: torch.Tensor | None,
    grad_y: torch.Tensor | None,
    grad_corr: torch.Tensor | None,
    kernel_size: int,
    aggregate: bool,
) -> torch.Tensor | None:
    """`frame_aggregation_backward` for CUDA tensors by the Triton kernels, or None."""
    grads = [g for g in (grad_y, grad_corr) if g is not None]
    if not triton_usable(x) or any(g.device != x.device or not g.is_floating_point() for g in grads):
        return None
    b, t = x.shape[:2]
    if aggregate and t > 1 and grad_y is not None and (weights is None or weights.dtype != torch.float32):
        return None  # weights from another path (the tensor operations keep x's dtype)
    return _triton_kernels["aggregation"].frame_aggregation_backward(
        x, weights, grad_y, grad_corr, kernel_size, aggregate
    )
