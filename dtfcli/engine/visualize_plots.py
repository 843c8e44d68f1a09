"""Pictures for `dtf visualize`: the Grad-CAM overlay grid (PNG) and animation (GIF or MP4),
and the DTF filter figure of the paper's Fig. 7 (PNG).

Drawn with matplotlib's object API on an Agg canvas (no pyplot: no display needed, the
caller's pyplot state is left alone); the animation's captions with PIL.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from dtfcli.engine.visualize import (
    Clip,
    FilterResult,
    GradCamResult,
    frame_for_feature,
    frequencies_per_clip,
    signed_lags,
)

#: Colours of the two locations, as in the paper's Fig. 7: red the most, blue the least activated.
LOCATION_COLOURS = {"most activated": "#d62728", "least activated": "#1f77b4"}
CMAP = "jet"
OVERLAY_ALPHA = 0.5
#: Animation frames are the crop scaled up by an integer factor to at least this many pixels.
ANIMATION_MIN_SIDE = 256
#: The caption band above each animation frame, pixels.
CAPTION_HEIGHT = 40
ANIMATION_FPS = 4


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 frames (T, H, W, 3) in grey, blended with a [0, 1] heat map (T, H, W) coloured by
    ``CMAP``: the colours then come from the map alone, not from the scene."""
    from matplotlib import colormaps

    coloured = colormaps[CMAP](np.clip(heat, 0, 1))[..., :3]
    grey = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0  # luma
    out = (1 - alpha) * grey[..., None] + alpha * coloured
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def _probability(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def _title(result: GradCamResult) -> str:
    return f"\u201c{result.class_name}\u201d (p = {_probability(result.probability)})"


def _save(fig, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png")
    return path


def gradcam_figure(result: GradCamResult, clip: Clip, *, model_name: str = ""):
    """The clip's frames with Grad-CAM over them, in a grid, each titled with its video frame
    index; the class, its probability, the layer and the model above; a colour bar."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    pictures = overlay(clip.frames, result.upsampled.numpy())
    count = len(pictures)
    cols = min(count, 8)
    rows = math.ceil(count / cols)
    panel = 1.6
    fig = Figure(figsize=(cols * panel + 0.9, rows * (panel + 0.25) + 0.9), dpi=100)
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [0.08], left=0.02, right=0.93,
                            top=1 - 0.75 / fig.get_figheight(), bottom=0.03, wspace=0.06, hspace=0.25)
    for i, picture in enumerate(pictures):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        ax.imshow(picture)
        ax.set_title(f"frame {clip.frame_indices[i]}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    t_feat, h_feat, w_feat = result.feature_shape
    fig.suptitle(f"{result.method_title} for {_title(result)}\nlayer {result.layer} ({t_feat}x{h_feat}x{w_feat} "
                 f"time x height x width){', model ' + model_name if model_name else ''}", fontsize=10)
    bar = fig.add_subplot(grid[:, cols])
    fig.colorbar(ScalarMappable(Normalize(0, 1), CMAP), cax=bar)
    bar.set_ylabel("class evidence / clip maximum", fontsize=8)
    bar.tick_params(labelsize=7)
    return fig


def save_gradcam_grid(result: GradCamResult, clip: Clip, path: str | Path, *, model_name: str = "") -> Path:
    return _save(gradcam_figure(result, clip, model_name=model_name), path)


def animation_scale(crop_size: int) -> int:
    return max(1, math.ceil(ANIMATION_MIN_SIDE / crop_size))


def animation_frames(result: GradCamResult, clip: Clip) -> list[np.ndarray]:
    """One RGB picture per clip frame: the overlay scaled up by :func:`animation_scale`
    (nearest, so no detail is invented), under a caption band with the class, its
    probability and the video frame index. Size (S k + CAPTION_HEIGHT, S k)."""
    from PIL import Image, ImageDraw

    pictures = overlay(clip.frames, result.upsampled.numpy())
    side = pictures.shape[1]
    scale = animation_scale(side)
    font = _font(13)
    out = []
    for picture, index in zip(pictures, clip.frame_indices, strict=True):
        big = Image.fromarray(picture).resize((picture.shape[1] * scale, side * scale), Image.NEAREST)
        canvas = Image.new("RGB", (big.width, big.height + CAPTION_HEIGHT), "white")
        canvas.paste(big, (0, CAPTION_HEIGHT))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, 3), _fit(draw, _title(result), font, big.width - 8), fill="black", font=font)
        draw.text((4, 21), f"frame {index}   {result.method_title} at {result.layer}", fill="black", font=font)
        out.append(np.asarray(canvas))
    return out


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "\u2026", font=font) > width:
        text = text[:-1]
    return text + "\u2026"


def write_gif(frames: list[np.ndarray], path: str | Path, fps: float = ANIMATION_FPS) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path


def write_mp4(frames: list[np.ndarray], path: str | Path, fps: float = ANIMATION_FPS) -> Path:
    """H.264 MP4 (yuv420p, so odd sides are padded by one white pixel)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    even_h, even_w = height + height % 2, width + width % 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width, stream.pix_fmt = even_h, even_w, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in frames:
            if (even_h, even_w) != (height, width):
                padded = np.full((even_h, even_w, 3), 255, np.uint8)
                padded[:height, :width] = frame
                frame = padded
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# -- the filter figure --------------------------------------------------------------------------
def filters_figure(result: FilterResult, clip: Clip, *, model_name: str = ""):
    """Fig. 7 of the paper for one clip: the frame with Grad-CAM and the two locations boxed,
    then, for the chosen filter group at each location, the filter's magnitude and phase
    per frequency bin and its 1D temporal kernel, in the boxes' colours."""
    from matplotlib import patheffects
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    cam = result.gradcam
    t_feat = result.num_frames_inside
    num_frames = clip.frames.shape[0]
    stride = num_frames // t_feat
    fig = Figure(figsize=(15, 4.1), dpi=100)
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.05, 1, 1, 1], "wspace": 0.32})
    fig.subplots_adjust(left=0.02, right=0.985, top=0.78, bottom=0.14)

    # the frame in the middle of the clip, with the time-averaged map
    middle = frame_for_feature(t_feat // 2, num_frames, t_feat)
    heat = cam.upsampled.mean(0).numpy()
    heat = heat / heat.max() if heat.max() > 0 else heat
    ax = axes[0]
    ax.imshow(overlay(clip.frames[middle:middle + 1], heat[None])[0])
    for loc in result.locations:
        x0, y0, x1, y1 = loc.box
        colour = LOCATION_COLOURS[loc.name]
        # pixel i spans [i - 0.5, i + 0.5] in imshow's coordinates; the box is drawn one pixel
        # inside the cell, so that a cell on the border keeps all four sides
        box = Rectangle((x0 + 0.5, y0 + 0.5), x1 - x0 - 2, y1 - y0 - 2, fill=False, edgecolor=colour, linewidth=2.5)
        box.set_path_effects([patheffects.withStroke(linewidth=5, foreground="white")])  # visible on any colour
        ax.add_patch(box)
    ax.set_title(f"frame {clip.frame_indices[middle]}, Grad-CAM\n(mean over the clip)", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])

    bins = frequencies_per_clip(result.num_bins)
    lags = signed_lags(t_feat)
    for loc in result.locations:
        colour = LOCATION_COLOURS[loc.name]
        label = f"{loc.name} (row {loc.row}, col {loc.col})"
        axes[1].plot(bins, np.abs(loc.filter), "o-", color=colour, label=label, gid=f"magnitude:{loc.name}")
        axes[2].plot(bins, np.angle(loc.filter), "o-", color=colour, label=label, gid=f"phase:{loc.name}")
        axes[3].plot(lags, loc.kernel[lags % t_feat], "o-", color=colour, label=label, gid=f"kernel:{loc.name}")
    axes[1].set_title("|S_c|, filter magnitude", fontsize=10)
    axes[1].set_ylabel("magnitude")
    axes[1].set_ylim(bottom=0)
    axes[2].set_title("arg S_c, filter phase", fontsize=10)
    axes[2].set_ylabel("phase (radians)")
    axes[2].set_ylim(-math.pi * 1.08, math.pi * 1.08)
    axes[2].set_yticks([-math.pi, -math.pi / 2, 0, math.pi / 2, math.pi], ["-\u03c0", "-\u03c0/2", "0", "\u03c0/2",
                                                                          "\u03c0"])
    for ax in axes[1:3]:
        ax.set_xlabel("frequency (cycles per clip)")
        ax.set_xticks(bins)
    axes[3].set_title(f"1D temporal kernel, irfft(S_c, n={t_feat})", fontsize=10)
    axes[3].set_xlabel(f"lag (feature frames; 1 = {stride} input frames)")
    axes[3].set_ylabel("weight")
    axes[3].set_xticks(lags)
    axes[3].axhline(0, color="grey", linewidth=0.8)
    for ax in axes[1:]:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    g = result.filter_groups
    fig.suptitle(
        f"DTF filter of block {result.block}, group {result.group} (channels {result.group * g}-"
        f"{result.group * g + g - 1}), at the most (red) and least (blue) activated locations\n"
        f"for class {_title(cam)}{', model ' + model_name if model_name else ''}; "
        f"grid {result.filters.shape[-2]}x{result.filters.shape[-1]}, {t_feat} feature frames",
        fontsize=10)
    return fig


def save_filters_figure(result: FilterResult, clip: Clip, path: str | Path, *, model_name: str = "") -> Path:
    return _save(filters_figure(result, clip, model_name=model_name), path)
