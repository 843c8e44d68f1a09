"""`visualize`: what a model looks at (Grad-CAM) and what its DTF blocks' filters do.

    >>> from dtfcli.engine.visualize import load_clip, gradcam, temporal_filters   # doctest: +SKIP
    >>> model, clip = load_clip("clip.mp4", model="runs/synth/final")            # doctest: +SKIP
    >>> cam = gradcam(model.model, clip.normalised, labels=model.labels)          # doctest: +SKIP
    >>> cam.class_name, cam.probability, cam.cam.shape                            # doctest: +SKIP
    ('Moving something up', 0.93, torch.Size([4, 4, 4]))

**Class activation maps** of class k at a layer with activations A (C, T', H', W') and
gradients g = d y_k / d A (one weight per channel for the whole clip: the 3D form), the map
being ReLU(sum_c w_c A_c), (T', H', W'):

* ``gradcam++`` (the default; Chattopadhay et al., WACV 2018, eq. 19 with the exponential of
  the class score): w_c = sum_{t,h,w} a_c,thw ReLU(g_c,thw) with
  a = g^2 / (2 g^2 + sum_{t,h,w} A_c g^3) (0 where g = 0);
* ``gradcam`` (Selvaraju et al., ICCV 2017): w_c = the mean of g_c over (T', H', W').

Grad-CAM++ is the default because it puts the peak on the moving object more often with
these networks: on 100 generated clips whose object track is known, the peak lies inside
the object's box in 72% of frames against 34% for Grad-CAM and 37% for a guess at the
frame's centre, with the embedded model at its default layer (benchmarks/gradcam_localisation.py).
Grad-CAM's averaged gradients include channels whose evidence is negative on the object,
which pull its peak off it; Grad-CAM++ weighs only where the evidence grows.

The map is upsampled to the clip: in time, feature frame t' covers the input frames
[t' s, (t' + 1) s) of the early stride s (nearest, which is what the stem's
non-overlapping temporal kernel computes), in space bilinearly to the crop.

Written with forward hooks rather than pytorch-grad-cam: these networks carry their
features frames-major, (B*T', C, H', W') for DTF-Net and (B*T', H', W', C) tokens for
DTF-Transformer, which that library takes for a batch of B*T' images (its class target and
its per-image weights would then be wrong without a custom reshape and target), and the few
lines here are tested against autograd directly (tests/test_visualize.py).

**Temporal filters** (paper sec. 4.5, Fig. 7): a DTF block estimates, at every location,
C/G complex filters of M = T'/2 + 1 frequency bins, S_c, and multiplies the spectrum of its
(aggregated) features along time by them. :func:`block_filter` recomputes S_c from the
block's own submodules and its input, as the paper defines it (a linear map of
concat(Y, F_cor) flattened over (C + k^2) x T'); tests check that applying it by hand
reproduces the block's output. The 1D temporal kernel of a filter is its inverse real FFT,
``irfft(S_c, n=T', norm="ortho")``; filtering a real signal by S_c is the circular
convolution with that kernel divided by sqrt(T').
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dtfcli.engine.inference import InferenceModel, clip_positions, load_inference_model, read_views, view_spec_for
from dtfcli.models.dtf import DTFBlock
from dtfcli.models.swin import DTFSwin


# -- the clip -----------------------------------------------------------------------------------
@dataclass
class Clip:
    """One centre view of a video, exactly as `dtf predict --fast` feeds it to the model.

    ``frames``: uint8 (T, S, S, 3), the crop; ``normalised``: float (1, 3, T, S, S) on the
    model's device; ``frame_indices``: the video frame each clip frame was read from."""

    path: str
    frames: np.ndarray
    normalised: Tensor
    frame_indices: list[int]
    video: dict[str, Any] = field(default_factory=dict)


def load_clip(path: str, *, model: str | InferenceModel | None = None, device: str = "auto",
              backend: str = "auto") -> tuple[InferenceModel, Clip]:
    """The model (loaded as predict loads it, unless an :class:`InferenceModel` is given) and
    the video's centre clip, centre crop. Raises VideoDecodeError for an unreadable file."""
    im = model if isinstance(model, InferenceModel) else load_inference_model(model, device=device)
    spec = view_spec_for(im.info.config, fast=True)
    views, facts = read_views(str(path), spec, backend=backend)
    frame_indices = clip_positions(facts["frames"], spec)[0]
    normalised = im._normalise(views[:1])  # the normalisation predict applies, on the model's device
    frames = views[0].permute(1, 2, 3, 0).contiguous().numpy()  # (T, S, S, 3)
    return im, Clip(str(path), frames, normalised, [int(i) for i in frame_indices], facts)


# -- layers and their activations ---------------------------------------------------------------
# ResNet stages and their strides: a map of crop / stride cells a side.
_RESNET_STAGES = (("layer4", 32), ("layer3", 16), ("layer2", 8), ("layer1", 4))
MIN_MAP_SIDE = 4  # a coarser map cannot say where in the frame the evidence is


def default_layer(model: nn.Module) -> str:
    """The last stage: ``layer4`` (DTF-Net) or ``norm``, the LayerNorm after it
    (DTF-Transformer).  For a ResNet whose crop leaves the last stage a map of fewer than
    ``MIN_MAP_SIDE`` cells a side (the tiny models at 64 pixels: 2 x 2), the deepest stage
    with a finer map."""
    names = dict(model.named_modules())
    if "layer4" in names:
        crop = int(getattr(model, "config", {}).get("crop_size") or 0)
        for name, stride in _RESNET_STAGES:
            if name in names and (not crop or crop // stride >= MIN_MAP_SIDE):
                return name
        return "layer1"
    if "norm" in names:
        return "norm"
    raise ValueError("this model has no layer4 or norm stage; name a layer with --layer")


def find_module(model: nn.Module, name: str, what: str = "layer") -> nn.Module:
    modules = dict(model.named_modules())
    if name in modules and name:
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"the model has no {what} named {name!r}{hint}")


def _is_temporal(module: nn.Module) -> bool:
    from dtfcli.models import temporal

    return isinstance(module, DTFBlock) or type(module).__module__ == temporal.__name__


def activation_layout(model: nn.Module, module: nn.Module) -> str:
    """How a layer's output is laid out: ``"frames_chw"`` (B*T', C, H, W: DTF-Net layers and
    every temporal module), ``"frames_hwc"`` (B*T', H, W, C: the Swin stages' tokens)."""
    if isinstance(model, DTFSwin) and not _is_temporal(module):
        return "frames_hwc"
    return "frames_chw"


def to_clip_layout(activation: Tensor, batch: int, layout: str) -> Tensor:
    """A layer's output as (B, C, T', H', W')."""
    if activation.dim() == 5:
        return activation
    if activation.dim() != 4 or activation.shape[0] % batch:
        raise ValueError(f"cannot read a (C, T, H, W) map from an activation of shape {tuple(activation.shape)}")
    t = activation.shape[0] // batch
    if layout == "frames_hwc":
        activation = activation.permute(0, 3, 1, 2)
    return activation.reshape(batch, t, *activation.shape[1:]).transpose(1, 2)


@contextlib.contextmanager
def capture(module: nn.Module, *, inputs: bool = False) -> Iterator[dict[str, Tensor]]:
    """Record ``module``'s output (and first input) of the next forward pass in the yielded
    dict. The network continues on a copy of the output, so in-place operations after the
    layer (ReLU(inplace=True)) leave the recorded tensor, and its gradient, intact."""
    store: dict[str, Tensor] = {}

    def hook(_module, args, output):
        if not isinstance(output, Tensor):
            store["not_a_tensor"] = type(output).__name__
            return None
        if inputs and args and isinstance(args[0], Tensor):
            store["input"] = args[0].detach()
        store["output"] = output
        return output.clone()

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


# -- Grad-CAM -----------------------------------------------------------------------------------
@dataclass
class GradCamResult:
    """A class activation map (``method``: gradcam++ or gradcam) of one class at one layer for
    one clip.

    ``cam``: ReLU(sum_c w_c A_c), (T', H', W'); ``raw``: the same before the ReLU (where the
    class evidence is negative, it says how much); ``weights``: w (C,), the channel weights of
    the method (see the module's docstring); ``upsampled``: ``cam`` on the clip's frames,
    (T, S, S), divided by its maximum (all zero when the map is); ``probabilities``: softmax of
    the clip's logits (K,)."""

    layer: str
    class_index: int
    class_name: str
    probability: float
    cam: Tensor
    raw: Tensor
    weights: Tensor
    upsampled: Tensor
    probabilities: Tensor
    method: str = "gradcam++"

    @property
    def method_title(self) -> str:
        """The method as people write it: Grad-CAM++ or Grad-CAM."""
        return CAM_METHOD_TITLES[self.method]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return tuple(self.cam.shape)


def resolve_class(text: str | int | None, labels: Sequence[str], probabilities: Tensor | None = None) -> int:
    """A class index from a name (exact, then case-insensitive), an index, or None (the top
    prediction)."""
    if text is None:
        if probabilities is None:
            raise ValueError("no class given and no prediction to take it from")
        return int(probabilities.argmax())
    if isinstance(text, int):
        index = text
    else:
        text = str(text).strip()
        lowered = [label.lower() for label in labels]
        if text in labels:
            return list(labels).index(text)
        if text.lower() in lowered:
            return lowered.index(text.lower())
        try:
            index = int(text)
        except ValueError:
            close = difflib.get_close_matches(text, list(labels), n=3)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"--class {text!r} is not one of the model's {len(labels)} classes{hint}") from None
    if not 0 <= index < len(labels):
        raise ValueError(f"--class {index}: the model has classes 0-{len(labels) - 1}")
    return index


def upsample_cam(cam: Tensor, num_frames: int, size: tuple[int, int]) -> Tensor:
    """A (T', H', W') map on the clip's (T, H, W): nearest in time (feature frame t' covers
    input frames [t' s, (t' + 1) s)), bilinear in space; divided by its maximum."""
    t_feat = cam.shape[0]
    if num_frames % t_feat:
        raise ValueError(f"{num_frames} frames do not divide into {t_feat} feature frames")
    maps = F.interpolate(cam[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    maps = maps.repeat_interleave(num_frames // t_feat, dim=0).clamp_min(0)
    top = maps.max()
    return maps / top if top > 0 else maps


def map_peak(frame_map: Tensor, tolerance: float = 1e-4) -> tuple[int, int]:
    """(row, col) of a 2D map's peak.  A map upsampled from a few feature cells often has a
    plateau of equal maxima; ``argmax`` would take its top-left corner, so this takes the
    plateau pixel nearest the plateau's centre (values within ``tolerance`` of the range of
    the maximum count as equal)."""
    top, bottom = frame_map.max(), frame_map.min()
    rows, cols = torch.nonzero(frame_map >= top - tolerance * (top - bottom), as_tuple=True)
    centre_row, centre_col = rows.float().mean(), cols.float().mean()
    nearest = int(((rows - centre_row) ** 2 + (cols - centre_col) ** 2).argmin())
    return int(rows[nearest]), int(cols[nearest])


CAM_METHOD_TITLES = {"gradcam++": "Grad-CAM++", "gradcam": "Grad-CAM"}
CAM_METHODS = tuple(CAM_METHOD_TITLES)


def check_cam_method(method: str, option: str | None = None) -> None:
    """ValueError naming the methods (and ``option``, the command-line option) unless
    ``method`` is one of CAM_METHODS."""
    if method not in CAM_METHODS:
        where = f"{option} {method!r}:" if option else f"unknown method {method!r};"
        raise ValueError(f"{where} choose {' or '.join(CAM_METHODS)}")


def cam_weights(activation: Tensor, grad: Tensor, method: str = "gradcam++") -> Tensor:
    """Channel weights w (C,) of a class activation map from the layer's activation A and the
    class score's gradient g, both (C, T', H', W') (see the module's docstring)."""
    check_cam_method(method)
    if method == "gradcam":
        return grad.mean(dim=(1, 2, 3))
    g2 = grad.square()  # gradcam++
    denominator = 2 * g2 + activation.sum(dim=(1, 2, 3), keepdim=True) * g2 * grad
    alpha = torch.where(grad != 0, g2 / torch.where(denominator != 0, denominator, torch.ones_like(grad)), 0.0)
    return (alpha * grad.clamp_min(0)).sum(dim=(1, 2, 3))


def gradcam(model: nn.Module, clip: Tensor, *, layer: str | None = None, class_index: int | str | None = None,
            labels: Sequence[str] | None = None, method: str = "gradcam++") -> GradCamResult:
    """The class activation map of ``class_index`` (a name or an index; default: the top
    prediction) at ``layer`` (a module name, default :func:`default_layer`) for a normalised
    clip (1, 3, T, S, S), by ``method``: ``gradcam++`` (default) or ``gradcam``. The model
    stays in its mode (eval, for meaningful maps); float32, no autocast."""
    return _gradcam(model, clip, layer, class_index, labels, method)[0]


def _gradcam(model: nn.Module, clip: Tensor, layer: str | None, class_index: int | str | None,
             labels: Sequence[str] | None, method: str = "gradcam++") -> tuple[GradCamResult, Tensor]:
    """The map and the layer's input."""
    check_cam_method(method)  # before the forward pass
    layer = layer or default_layer(model)
    module = find_module(model, layer)
    clip = clip.detach().float().requires_grad_(True)  # a graph even when the weights are frozen
    with capture(module, inputs=True) as store, torch.enable_grad():
        logits = model(clip)
    if "not_a_tensor" in store:
        raise ValueError(f"layer {layer!r} returns a {store['not_a_tensor']}, not a feature map; choose another")
    if "output" not in store:
        raise ValueError(f"layer {layer!r} is not used by the model's forward pass")
    probabilities = logits.detach().float().softmax(-1)[0].cpu()
    labels = list(labels) if labels is not None else [f"class {i}" for i in range(logits.shape[-1])]
    k = resolve_class(class_index, labels, probabilities)
    activation = store["output"]
    (grad,) = torch.autograd.grad(logits[0, k], activation)
    layout = activation_layout(model, module)
    act = to_clip_layout(activation.detach(), clip.shape[0], layout)[0].float()  # (C, T', H', W')
    grad = to_clip_layout(grad, clip.shape[0], layout)[0].float()
    weights = cam_weights(act, grad, method)
    raw = torch.einsum("c,cthw->thw", weights, act)
    cam = raw.clamp_min(0)
    upsampled = upsample_cam(cam, clip.shape[2], tuple(clip.shape[-2:]))
    result = GradCamResult(layer, k, labels[k], float(probabilities[k]), cam.cpu(), raw.cpu(), weights.cpu(),
                           upsampled.cpu(), probabilities, method)
    return result, store.get("input")


# -- DTF filters --------------------------------------------------------------------------------
def dtf_blocks(model: nn.Module) -> list[str]:
    """Names of the model's DTF blocks, in forward order (the last one is the last stage's last)."""
    return [name for name, m in model.named_modules() if isinstance(m, DTFBlock)]


def block_filter(block: DTFBlock, block_input: Tensor) -> Tensor:
    """The filter S_c the block applies: complex (B, C/G, M, H, W), recomputed from the
    block's submodules and its input (frames-major (B*T', C, H, W) or (B, C, T', H, W));
    channel c is filtered by S_c[:, c // G]."""
    t = block.num_frames
    with torch.no_grad():
        if block_input.dim() == 5:
            video = block_input.transpose(1, 2)
        else:
            video = block_input.reshape(-1, t, *block_input.shape[1:])
        dtype = torch.float64 if video.dtype == torch.float64 else torch.float32
        video = video.to(dtype).contiguous()  # (B, T', C, H, W)
        b, _, c, h, w = video.shape
        bins, n_filters = t // 2 + 1, c // block.filter_groups
        if not block.dynamic:
            fixed = block.fixed_filter.to(dtype)  # (C/G, M, 2)
            filt = torch.complex(fixed[..., 0], fixed[..., 1])
            return filt[None, :, :, None, None].expand(b, n_filters, bins, h, w)
        if block.frame_aggregation is not None:
            y, corr = block.frame_aggregation(video)
            if not block.correlation:
                corr = None
        else:
            y, corr = video, None
        # concat(Y, F_cor) over channels, flattened channel-major as (C + k^2) x T': the
        # columns of the 1x1 estimator
        features = torch.cat([y] if corr is None else [y, corr], dim=2)
        features = features.permute(0, 2, 1, 3, 4).reshape(b, -1, h, w)
        out = F.conv2d(features, block.filter_estimator.weight.to(dtype)).view(b, n_filters, 2, bins, h, w)
        return torch.complex(out[:, :, 0], out[:, :, 1])


def temporal_kernel(filt: Tensor | np.ndarray, num_frames: int) -> np.ndarray:
    """The 1D temporal kernel a frequency filter (..., M) equals: irfft(n=T', orthonormal)."""
    return torch.fft.irfft(torch.as_tensor(filt), n=num_frames, norm="ortho", dim=-1).numpy()


@dataclass
class FilterLocation:
    """One location of the block's feature grid: ``row``, ``col`` in the grid; ``box``
    (x0, y0, x1, y1) in pixels of the crop; its time-averaged Grad-CAM evidence; the chosen
    group's filter there (complex, (M,)) and its kernel ((T',))."""

    name: str
    row: int
    col: int
    box: tuple[float, float, float, float]
    evidence: float
    filter: np.ndarray
    kernel: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "feature": {"row": self.row, "col": self.col},
            "pixels": {"x0": self.box[0], "y0": self.box[1], "x1": self.box[2], "y1": self.box[3]},
            "gradcam": round(self.evidence, 6),
            "filter": {"re": [float(v) for v in self.filter.real], "im": [float(v) for v in self.filter.imag],
                       "magnitude": [float(v) for v in np.abs(self.filter)],
                       "phase": [float(v) for v in np.angle(self.filter)]},
            "kernel": [float(v) for v in self.kernel],
        }


@dataclass
class FilterResult:
    """The learnt filters of one DTF block for one clip, at the Grad-CAM maximum and minimum.

    ``filters``: every filter at every location, complex (C/G, M, H', W'); ``group``: the
    filter group shown (channels group*G ... group*G + G - 1); ``locations``: the most and
    the least activated, :class:`FilterLocation`; ``gradcam``: Grad-CAM at the block's output."""

    block: str
    group: int
    filter_groups: int
    num_frames_inside: int
    filters: Tensor
    gradcam: GradCamResult
    locations: list[FilterLocation]

    @property
    def num_bins(self) -> int:
        return self.filters.shape[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "block": self.block, "group": self.group,
            "channels": [self.group * self.filter_groups, (self.group + 1) * self.filter_groups - 1],
            "frames_inside": self.num_frames_inside, "bins": self.num_bins,
            "class": {"index": self.gradcam.class_index, "name": self.gradcam.class_name,
                      "probability": round(self.gradcam.probability, 6)},
            "grid": list(self.filters.shape[-2:]),
            "locations": [loc.to_dict() for loc in self.locations],
        }


def extreme_locations(raw: Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    """(row, col) of the maximum and the minimum of a (T', H', W') Grad-CAM map averaged over
    time (before the ReLU, so that the minimum is the strongest evidence against the class)."""
    mean = raw.mean(0)
    w = mean.shape[1]
    top, bottom = int(mean.argmax()), int(mean.argmin())
    return divmod(top, w), divmod(bottom, w)


def temporal_filters(model: nn.Module, clip: Tensor, *, block: str | None = None,
                     class_index: int | str | None = None, group: int | None = None,
                     labels: Sequence[str] | None = None) -> FilterResult:
    """The filter of DTF block ``block`` (default: the last) at the locations where Grad-CAM
    at that block's output is largest and smallest. ``group``: the filter group to show
    (default: the one with the most energy at the most activated location)."""
    names = dtf_blocks(model)
    if not names:
        raise ValueError("this model has no DTF block (a C2D, TSM or temporal-conv model?); --filters needs one")
    block = block or names[-1]
    if block not in names:
        find_module(model, block, "DTF block")  # unknown names get the close matches
        raise ValueError(f"{block!r} is not a DTF block; the model's DTF blocks: {', '.join(names)}")
    module: DTFBlock = find_module(model, block)
    cam, block_input = _gradcam(model, clip, block, class_index, labels, "gradcam")
    filters = block_filter(module, block_input)[0].cpu()  # (C/G, M, H', W')
    t_feat = module.num_frames
    n_filters = filters.shape[0]
    (r_max, c_max), (r_min, c_min) = extreme_locations(cam.raw)
    if group is None:
        group = int((filters[:, :, r_max, c_max].abs() ** 2).sum(1).argmax())
    if not 0 <= group < n_filters:
        raise ValueError(f"--group {group}: block {block} has filter groups 0-{n_filters - 1}")
    size_h, size_w = clip.shape[-2:]
    grid_h, grid_w = filters.shape[-2:]
    mean = cam.raw.mean(0)
    locations = []
    for name, (r, c) in (("most activated", (r_max, c_max)), ("least activated", (r_min, c_min))):
        filt = filters[group, :, r, c].to(torch.complex128).numpy()
        box = (c * size_w / grid_w, r * size_h / grid_h, (c + 1) * size_w / grid_w, (r + 1) * size_h / grid_h)
        locations.append(FilterLocation(name, r, c, tuple(round(v, 2) for v in box), float(mean[r, c]), filt,
                                        temporal_kernel(filt, t_feat)))
    return FilterResult(block, group, module.filter_groups, t_feat, filters, cam, locations)


def frame_for_feature(t_feat: int, num_frames: int, frames_inside: int) -> int:
    """The clip frame in the middle of the input frames that feature frame ``t_feat`` covers."""
    stride = num_frames // frames_inside
    return min(num_frames - 1, t_feat * stride + stride // 2)


def frequencies_per_clip(num_bins: int) -> np.ndarray:
    """Bin k of a real FFT over the clip's T' feature frames is k cycles per clip."""
    return np.arange(num_bins, dtype=float)


def signed_lags(num_frames: int) -> np.ndarray:
    """Circular lags 0..T'-1 as signed ones, in plotting order: -(T'-1)//2 ... T'//2."""
    return np.arange(-((num_frames - 1) // 2), num_frames // 2 + 1)


# -- the command --------------------------------------------------------------------------------
ANIMATIONS = ("gif", "mp4", "none")


@dataclass
class VisualizeReport:
    """What `dtf visualize` made: the files written and, per kind, the numbers."""

    video: str
    model: str
    frame_indices: list[int]
    files: list[str] = field(default_factory=list)
    gradcam: GradCamResult | None = None
    filters: FilterResult | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"video": self.video, "model": self.model, "frame_indices": self.frame_indices}
        if self.gradcam is not None:
            cam = self.gradcam
            out["gradcam"] = {
                "layer": cam.layer, "method": cam.method, "class": {"index": cam.class_index, "name": cam.class_name,
                                              "probability": round(cam.probability, 6)},
                "feature_shape": list(cam.feature_shape),
                "map": [[[round(float(v), 6) for v in row] for row in frame] for frame in cam.cam],
            }
        if self.filters is not None:
            out["filters"] = self.filters.to_dict()
        out["files"] = self.files
        return out


def visualize(video: str, *, model: str | InferenceModel | None = None, gradcam_maps: bool = True,
              filters: bool = False, layer: str | None = None, class_index: int | str | None = None,
              block: str | None = None, group: int | None = None, out_dir: str | None = None,
              animation: str = "gif", device: str = "auto", backend: str = "auto",
              method: str = "gradcam++") -> VisualizeReport:
    """Class activation map pictures (``method``: gradcam++ or gradcam; grid PNG and animation)
    and/or the DTF filter figure of one video's centre clip, written to ``out_dir`` (default:
    ``visualize/<video name>``)."""
    from pathlib import Path

    from dtfcli.engine import visualize_plots as plots

    if animation not in ANIMATIONS:
        raise ValueError(f"--animation {animation!r}: choose gif, mp4 or none")
    if not (gradcam_maps or filters):
        raise ValueError("nothing to draw: choose --gradcam, --filters or both")
    check_cam_method(method, "--cam-method")
    im, clip = load_clip(video, model=model, device=device, backend=backend)
    name = str(im.info.config.get("name", ""))
    source = getattr(im.info, "source", None) or name
    stem = Path(video).stem
    out = Path(out_dir) if out_dir is not None else Path("visualize") / stem
    report = VisualizeReport(str(video), str(source), clip.frame_indices)
    # everything computed (and every name checked) before the first file is written
    if gradcam_maps:
        report.gradcam = gradcam(im.model, clip.normalised, layer=layer, class_index=class_index, labels=im.labels,
                                 method=method)
    if filters:
        report.filters = temporal_filters(im.model, clip.normalised, block=block, class_index=class_index,
                                          group=group, labels=im.labels)
    if report.gradcam is not None:
        cam = report.gradcam
        report.files.append(str(plots.save_gradcam_grid(cam, clip, out / f"{stem}_gradcam.png", model_name=name)))
        if animation != "none":
            frames = plots.animation_frames(cam, clip)
            writer = plots.write_gif if animation == "gif" else plots.write_mp4
            report.files.append(str(writer(frames, out / f"{stem}_gradcam.{animation}")))
    if report.filters is not None:
        report.files.append(str(plots.save_filters_figure(report.filters, clip, out / f"{stem}_filters.png",
                                                          model_name=name)))
    return report
