"""A synthetic motion dataset whose classes need temporal order to tell apart.

Every video shows one main object doing the class's motion, over a random background, with
smaller distractor objects moving on their own and a little camera shake.  Two styles:
"plain" (flat, gradient, smooth-noise or clutter backgrounds; the first style, kept
reproducible) and "varied" (the default: natural-image-like backgrounds and textured objects
of many shapes from ``synth_looks``, still clutter, lighting changes, blur, motion blur,
noise, more frame rates, sizes, speeds and codecs), so that a model trained on it meets
something closer to camera footage.  Written in the
Something-Something V2 layout (``labels/labels.json``, ``labels/train.json``,
``labels/validation.json``, ``20bn-something-something-v2/{id}.webm``), so
``build_dataset("ssv2", out_dir, ...)`` reads it.

No shortcuts: shapes, colours, textures, sizes, speeds, start points, backgrounds,
distractors, resolution, frame rate, length and codec are drawn from the same distributions
for every class.  Five pairs of classes are exact time reversals of each other (left/right,
up/down, closer/away, clockwise/counterclockwise, appearing/disappearing): the clip of one
is drawn from the same distribution as the other's clip played backwards, so the set of
frames says nothing and only their order tells the class.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dtfcli.data import synth_looks as looks
from dtfcli.data.symmetry import symmetries_from_pairs

SYNTH_CLASSES = (
    "Moving something from left to right",
    "Moving something from right to left",
    "Moving something up",
    "Moving something down",
    "Moving something closer",
    "Moving something away",
    "Turning something clockwise",
    "Turning something counterclockwise",
    "Something appearing",
    "Something disappearing",
    "Moving something back and forth",
    "Holding something still",
)
# Class index -> (base motion, reversed in time).  Reversal pairs share one generator.
_MOTION = {0: ("right", False), 1: ("right", True), 2: ("up", False), 3: ("up", True),
           4: ("closer", False), 5: ("closer", True), 6: ("clockwise", False), 7: ("clockwise", True),
           8: ("appear", False), 9: ("appear", True), 10: ("back_and_forth", False), 11: ("still", False)}
#: Transforms that turn each class into a class (`dtfcli.data.symmetry`): played backwards,
#: each motion becomes its pair; mirrored, left-right motion and turns change direction.
SYNTH_SYMMETRIES = symmetries_from_pairs(SYNTH_CLASSES, {
    "reverse": [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)],
    "vflip": [(2, 3), (6, 7)],
    "hflip": [(0, 1), (6, 7)],
})
VIDEO_DIR = "20bn-something-something-v2"
SPRITE = 64  # sprite canvas side, pixels (plain style)
SPRITE_VARIED = 96  # larger: varied objects are drawn bigger and carry finer texture
# codec key -> (encoder, container extension)
CODECS = {"vp9": ("libvpx-vp9", ".webm"), "vp8": ("libvpx", ".webm"), "h264": ("libx264", ".mp4"),
          "mpeg4": ("mpeg4", ".avi"), "mjpeg": ("mjpeg", ".avi")}
PLAIN_CODECS = ("vp9", "vp8", "h264")  # what the plain style draws from unless told
STYLES = ("plain", "varied")
# Varied style: the share of clips whose main object is set apart from the scene in brightness.
CONTRAST_SHARE = 0.85
_COLOUR_NAMES = ("red", "green", "blue", "yellow", "purple", "orange", "white", "grey", "pink", "teal")
_SHAPE_NAMES = ("blob", "block", "star", "shard", "tile")


def template(class_name: str) -> str:
    """SSv2 template: "something" in brackets ("Moving [something] up")."""
    return class_name.replace("something", "[something]").replace("Something", "[Something]")


# -- drawing --------------------------------------------------------------------------------
def _colour(rng) -> np.ndarray:
    return rng.uniform(0, 1, 3)


def _texture(rng, size: int) -> np.ndarray:
    """(size, size, 3) float texture: flat, stripes, checker or noise, random colours."""
    a, b = _colour(rng), _colour(rng)
    yy, xx = np.mgrid[0:size, 0:size] / size
    kind = rng.integers(4)
    if kind == 0:
        mix = np.zeros((size, size))
    elif kind == 1:
        ang = rng.uniform(0, math.pi)
        mix = (np.sin((xx * math.cos(ang) + yy * math.sin(ang)) * rng.uniform(8, 25)) > 0).astype(float)
    elif kind == 2:
        k = rng.integers(3, 8)
        mix = ((np.floor(xx * k) + np.floor(yy * k)) % 2).astype(float)
    else:
        coarse = rng.uniform(0, 1, (8, 8))
        mix = np.kron(coarse, np.ones((size // 8, size // 8)))
    return a * (1 - mix[..., None]) + b * mix[..., None]


def _polygon_mask(rng, size: int) -> np.ndarray:
    """An irregular (so rotation shows) star-shaped polygon filling most of the canvas.

    Vertices go round the centre at jittered, roughly even angles (never a sliver)."""
    n = int(rng.integers(4, 9))
    step = 2 * math.pi / n
    angles = rng.uniform(0, 2 * math.pi) + step * np.arange(n) + rng.uniform(-0.35, 0.35, n) * step
    radii = rng.uniform(0.5, 1.0, n) * 0.48 * size
    vx = size / 2 + radii * np.cos(angles)
    vy = size / 2 + radii * np.sin(angles)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    inside = np.zeros((size, size), bool)
    j = n - 1
    for i in range(n):  # even-odd rule, vectorised over pixels
        cross = ((vy[i] > yy) != (vy[j] > yy)) & (xx < (vx[j] - vx[i]) * (yy - vy[i]) / (vy[j] - vy[i] + 1e-9) + vx[i])
        inside ^= cross
        j = i
    if rng.random() < 0.3:  # sometimes an ellipse with a notch instead
        inside = ((xx - size / 2) / (0.48 * size)) ** 2 + ((yy - size / 2) / rng.uniform(0.25, 0.48) / size) ** 2 < 1
        inside &= ~((xx > size * 0.6) & (np.abs(yy - size / 2) < size * 0.08))
    return inside.astype(np.float32)


def _sprite(rng) -> torch.Tensor:
    """RGBA (4, SPRITE, SPRITE) float object with an off-centre marker (makes rotation visible)."""
    rgb = _texture(rng, SPRITE)
    mask = _polygon_mask(rng, SPRITE)
    yy, xx = np.mgrid[0:SPRITE, 0:SPRITE]
    mx, my = SPRITE * rng.uniform(0.3, 0.7), SPRITE * rng.uniform(0.3, 0.7)
    dot = (xx - mx) ** 2 + (yy - my) ** 2 < (SPRITE * 0.09) ** 2
    rgb[dot & (mask > 0)] = _colour(rng)
    return torch.from_numpy(np.concatenate([rgb.transpose(2, 0, 1), mask[None]]).astype(np.float32))


def _background(rng, h: int, w: int) -> np.ndarray:
    kind = rng.integers(4)
    if kind == 0:
        return np.broadcast_to(_colour(rng), (h, w, 3)).copy()
    if kind == 1:
        a, b = _colour(rng), _colour(rng)
        ang = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        t = xx / w * math.cos(ang) + yy / h * math.sin(ang)
        t = (t - t.min()) / (np.ptp(t) + 1e-9)
        return a * (1 - t[..., None]) + b * t[..., None]
    if kind == 2:
        # Smooth colour noise around a base colour (contrast random, never a full rainbow).
        coarse = _colour(rng) + rng.uniform(0.1, 0.35) * rng.uniform(-1, 1, (max(2, h // 8), max(2, w // 8), 3))
        coarse = np.clip(coarse, 0, 1)
        up = torch.from_numpy(coarse.transpose(2, 0, 1))[None]
        return F.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)[0].numpy().transpose(1, 2, 0)
    out = np.broadcast_to(_colour(rng), (h, w, 3)).copy()  # clutter: static random rectangles
    for _ in range(rng.integers(6, 16)):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        out[y0:y0 + rng.integers(3, max(4, h // 4)), x0:x0 + rng.integers(3, max(4, w // 4))] = _colour(rng)
    return out


@dataclass
class Track:
    """Per-frame pose of one sprite in canvas pixels: centre x, y; side length; clockwise
    angle (radians); opacity.  Arrays of shape (T,)."""

    x: np.ndarray
    y: np.ndarray
    side: np.ndarray
    angle: np.ndarray
    alpha: np.ndarray

    def reversed(self) -> Track:
        return Track(*(a[::-1].copy() for a in (self.x, self.y, self.side, self.angle, self.alpha)))


def _progress(rng, t: int) -> np.ndarray:
    """0 -> 1 over a random sub-interval of the clip (rest before/after), linear or eased."""
    u = np.linspace(0, 1, t)
    a = rng.uniform(0, 0.25)
    b = rng.uniform(0.75, 1.0)
    p = np.clip((u - a) / (b - a), 0, 1)
    return p if rng.random() < 0.5 else p * p * (3 - 2 * p)


def _main_track(motion: str, rng, t: int, h: int, w: int) -> Track:
    short = min(h, w)
    # Sizes overlap with the closer/away classes' range, so size alone does not give them away.
    side = np.full(t, short * rng.uniform(0.25, 0.6))
    x = np.full(t, w * rng.uniform(0.3, 0.7))
    y = np.full(t, h * rng.uniform(0.3, 0.7))
    angle = np.full(t, rng.uniform(0, 2 * math.pi))
    alpha = np.ones(t)
    p = _progress(rng, t)
    if motion in ("right", "up"):
        along, across = (w, h) if motion == "right" else (h, w)
        dist = along * rng.uniform(0.35, 0.6)
        start = along * rng.uniform(0.15, 0.85 - dist / along) if dist / along < 0.7 else along * 0.15
        drift = dist * rng.uniform(-0.25, 0.25)
        main = start + dist * p
        if motion == "right":
            x, y = main, y + drift * p  # increasing x
        else:
            y, x = along - main, x + drift * p  # decreasing row index
    elif motion == "closer":
        ratio = rng.uniform(1.7, 2.4)
        side = short * rng.uniform(0.18, 0.32) * ratio ** p
        x, y = x + short * rng.uniform(-0.1, 0.1) * p, y + short * rng.uniform(-0.1, 0.1) * p
    elif motion == "clockwise":
        angle = angle + rng.uniform(0.5, 1.5) * math.pi * p  # 90 to 270 degrees
    elif motion == "appear":
        if rng.random() < 0.5:
            alpha = p  # fade in
        else:
            alpha = (p > rng.uniform(0.3, 0.7)).astype(float)  # pops in
    elif motion == "back_and_forth":
        direction = rng.uniform(0, 2 * math.pi)
        amp = short * rng.uniform(0.15, 0.3)
        d = amp * np.sin(math.pi * rng.integers(1, 4) * p)
        x, y = x + d * math.cos(direction), y + d * math.sin(direction)
    # "still": nothing moves
    return Track(x, y, side, angle, alpha)


def _distractor_track(rng, t: int, h: int, w: int) -> Track:
    short = min(h, w)
    speed = short * rng.uniform(0.0, 0.6) / t  # pixels per frame, any direction
    direction = rng.uniform(0, 2 * math.pi)
    steps = np.arange(t)
    x = w * rng.uniform(0, 1) + speed * steps * math.cos(direction)
    y = h * rng.uniform(0, 1) + speed * steps * math.sin(direction)
    angle = rng.uniform(0, 2 * math.pi) + rng.uniform(-0.05, 0.05) * steps
    side = np.full(t, short * rng.uniform(0.08, 0.17))
    track = Track(x, y, side, angle, np.ones(t))
    return track.reversed() if rng.random() < 0.5 else track


@contextmanager
def _one_torch_thread():
    """The tensors here are small: torch's thread pool costs more than it gains (3x slower on
    2 cores), so render on one thread and restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@_one_torch_thread()
def _composite(canvas: torch.Tensor, sprite: torch.Tensor, track: Track) -> torch.Tensor:
    """Draw ``sprite`` (4, S, S) onto ``canvas`` (T, 3, Hc, Wc) along ``track``."""
    t, _, hc, wc = canvas.shape
    side = torch.as_tensor(track.side, dtype=torch.float32)
    cos = torch.as_tensor(np.cos(track.angle), dtype=torch.float32)
    sin = torch.as_tensor(np.sin(track.angle), dtype=torch.float32)
    # Output normalised coords -> offset from the sprite centre in half-sides...
    sx, sy = wc / side, hc / side
    tx = (wc / 2 - torch.as_tensor(track.x, dtype=torch.float32)) * 2 / side
    ty = (hc / 2 - torch.as_tensor(track.y, dtype=torch.float32)) * 2 / side
    # ...then rotated by -angle, the inverse of an on-screen clockwise turn (y points down).
    theta = torch.stack([
        torch.stack([cos * sx, sin * sy, cos * tx + sin * ty], -1),
        torch.stack([-sin * sx, cos * sy, -sin * tx + cos * ty], -1),
    ], 1)
    grid = F.affine_grid(theta, (t, 4, hc, wc), align_corners=False)
    drawn = F.grid_sample(sprite.expand(t, -1, -1, -1), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)
    a = drawn[:, 3:4] * torch.as_tensor(track.alpha, dtype=torch.float32).view(t, 1, 1, 1)
    return canvas * (1 - a) + drawn[:, :3] * a


def _composite_where_drawn(canvas: torch.Tensor, sprite: torch.Tensor, track: Track) -> torch.Tensor:
    """``_composite`` on the part of the canvas the sprite can reach during the clip only
    (much faster for small or slow objects; same picture up to rounding)."""
    hc, wc = canvas.shape[-2:]
    reach = 0.75 * track.side  # half the diagonal of the sprite's square, and a little more
    x0, x1 = int(max(0, np.floor((track.x - reach).min()))), int(min(wc, np.ceil((track.x + reach).max()) + 1))
    y0, y1 = int(max(0, np.floor((track.y - reach).min()))), int(min(hc, np.ceil((track.y + reach).max()) + 1))
    if x0 >= x1 or y0 >= y1:
        return canvas
    out = canvas.clone()
    local = Track(track.x - x0, track.y - y0, track.side, track.angle, track.alpha)
    out[:, :, y0:y1, x0:x1] = _composite(canvas[:, :, y0:y1, x0:x1], sprite, local)
    return out


@dataclass
class SynthVideo:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: int
    codec: str  # key of CODECS
    placeholder: str  # what the object is called in the SSv2 "label" field
    # The main object's pose in each frame, in frame pixels (after camera shake); varied style.
    track: Track | None = None


def render_video(class_index: int, rng: np.random.Generator, *, min_side: int = 64, max_side: int = 128,
                 codecs: Sequence[str] | None = None, style: str = "varied",
                 contrast_share: float = CONTRAST_SHARE) -> SynthVideo:
    """Render one clip of class ``class_index`` with everything else drawn from ``rng``.

    ``style``: "varied" (default) or "plain" (see the module's docstring).  ``codecs``: the
    CODECS keys to draw from (default: PLAIN_CODECS for plain, all of CODECS for varied).
    ``contrast_share`` (varied style): the probability that the main object is made lighter
    or darker than the scene; otherwise its colours are a random draw, which can hide it
    (the hardest clips).  0.85 by default; 0 makes only hard clips, which the embedded
    model's last training stages add to the default mix (weights/dtfnet_tiny_synth12.md)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    _check_contrast_share(contrast_share, style)
    if codecs is None:
        codecs = PLAIN_CODECS if style == "plain" else tuple(CODECS)
    with _one_torch_thread():
        if style == "plain":
            return _render(class_index, rng, min_side, max_side, codecs)
        return _render_varied(class_index, rng, min_side, max_side, codecs, contrast_share=contrast_share)


def _check_contrast_share(share: float, style: str) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"contrast share {share} is not between 0 and 1")
    if style == "plain" and share != CONTRAST_SHARE:
        raise ValueError("the contrast share applies to the varied style only")


def _render(class_index: int, rng: np.random.Generator, min_side: int, max_side: int,
            codecs: Sequence[str]) -> SynthVideo:
    motion, reverse = _MOTION[class_index]
    fps = int(rng.choice([8, 10, 12, 15, 20, 24]))
    t = max(12, int(round(fps * rng.uniform(1.5, 3.0))))
    short = 2 * int(rng.integers(min_side // 2, max_side // 2 + 1))
    aspect = float(rng.choice([1.0, 4 / 3, 16 / 9, 3 / 4]))
    h, w = (short, 2 * int(round(short * aspect / 2))) if aspect >= 1 else (2 * int(round(short / aspect / 2)), short)
    margin = 4  # camera-shake room
    hc, wc = h + 2 * margin, w + 2 * margin
    # Objects lighter than a darkened background, or darker than a lightened one (either,
    # for every class): random colours alone often hide the object, and a small model
    # trained from scratch then stays at chance.
    lighter = bool(rng.random() < 0.5)

    def contrasted_sprite() -> torch.Tensor:
        rgba = _sprite(rng)
        rgba[:3] = 0.6 + 0.4 * rgba[:3] if lighter else 0.4 * rgba[:3]
        return rgba

    scene = _background(rng, hc, wc)
    scene = scene * 0.35 if lighter else 0.65 + 0.35 * scene
    background = torch.from_numpy(scene.astype(np.float32)).permute(2, 0, 1)
    canvas = background.expand(t, -1, -1, -1).clone()
    distractors = [(contrasted_sprite(), _distractor_track(rng, t, hc, wc)) for _ in range(rng.integers(0, 4))]
    behind = rng.integers(0, len(distractors) + 1)  # some distractors pass in front of the object
    main = _main_track(motion, rng, t, h, w)
    main = Track(main.x + margin, main.y + margin, main.side, main.angle, main.alpha)
    if reverse:
        main = main.reversed()
    for sprite, track in distractors[:behind]:
        canvas = _composite(canvas, sprite, track)
    canvas = _composite(canvas, contrasted_sprite(), main)
    for sprite, track in distractors[behind:]:
        canvas = _composite(canvas, sprite, track)
    # Light camera shake: a smooth random walk of the crop window, at most `margin` pixels.
    walk = np.cumsum(rng.normal(0, rng.uniform(0, 0.6), (t, 2)), axis=0)
    shake = np.clip(np.round(walk), -margin, margin).astype(int) + margin
    frames = torch.stack([canvas[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shake)])
    frames = frames + torch.from_numpy(rng.normal(0, rng.uniform(0, 0.02), frames.shape).astype(np.float32))
    frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    name = f"{rng.choice(_COLOUR_NAMES)} {rng.choice(_SHAPE_NAMES)}"
    return SynthVideo(np.ascontiguousarray(frames), fps, str(rng.choice(list(codecs))), name)


# -- varied style ----------------------------------------------------------------------------
def _progress_varied(rng, t: int) -> np.ndarray:
    """0 -> 1 over a random sub-interval of the clip: linear, smooth, speeding up or slowing
    down (the last two are each other's time reversal, so reversal pairs stay fair)."""
    u = np.linspace(0, 1, t)
    a, b = rng.uniform(0, 0.3), rng.uniform(0.7, 1.0)
    p = np.clip((u - a) / (b - a), 0, 1)
    kind = rng.integers(4)
    if kind == 1:
        return p * p * (3 - 2 * p)
    if kind == 2:
        return p * p
    if kind == 3:
        return 1 - (1 - p) ** 2
    return p


def _main_track_varied(motion: str, rng, t: int, h: int, w: int) -> Track:
    """As ``_main_track`` with wider ranges of size, place, distance, speed, turn and timing,
    plus a little hand tremor in every class."""
    short = min(h, w)
    side = np.full(t, short * rng.uniform(0.2, 0.55))
    x = np.full(t, w * rng.uniform(0.25, 0.75))
    y = np.full(t, h * rng.uniform(0.25, 0.75))
    angle = np.full(t, rng.uniform(0, 2 * math.pi))
    alpha = np.ones(t)
    p = _progress_varied(rng, t)
    if motion in ("right", "up"):
        along = w if motion == "right" else h
        frac = rng.uniform(0.25, 0.65)
        start = along * rng.uniform(0.12, max(0.12, 0.88 - frac))
        drift = along * frac * rng.uniform(-0.3, 0.3)
        main = start + along * frac * p
        if motion == "right":
            x, y = main, y + drift * p
        else:
            y, x = along - main, x + drift * p
    elif motion == "closer":
        ratio = rng.uniform(1.6, 2.8)
        side = short * min(rng.uniform(0.12, 0.3), 0.8 / ratio) * ratio ** p
        x, y = x + short * rng.uniform(-0.12, 0.12) * p, y + short * rng.uniform(-0.12, 0.12) * p
    elif motion == "clockwise":
        angle = angle + rng.uniform(0.4, 1.6) * math.pi * p
    elif motion == "appear":
        alpha = p if rng.random() < 0.5 else (p > rng.uniform(0.3, 0.7)).astype(float)
    elif motion == "back_and_forth":
        direction = rng.uniform(0, 2 * math.pi)
        d = short * rng.uniform(0.12, 0.3) * np.sin(math.pi * rng.integers(1, 4) * p)
        x, y = x + d * math.cos(direction), y + d * math.sin(direction)
    tremor = np.cumsum(rng.normal(0, short * rng.uniform(0, 0.003), (t, 2)), axis=0)
    return Track(x + tremor[:, 0], y + tremor[:, 1], side, angle, alpha)


def _distractor_track_varied(rng, t: int, h: int, w: int, largest: float) -> Track:
    track = _distractor_track(rng, t, h, w)
    side = np.minimum(track.side * rng.uniform(0.6, 1.1), largest)
    return Track(track.x, track.y, side, track.angle, track.alpha)


def _motion_blurred(canvas: torch.Tensor, sprite: torch.Tensor, track: Track, shutter: float) -> torch.Tensor:
    """The sprite's image averaged over an exposure of ``shutter`` frame intervals."""
    fields = [track.x, track.y, track.side, track.angle, track.alpha]
    speed = [np.gradient(f) if len(f) > 1 else np.zeros_like(f) for f in fields]
    drawn = [_composite_where_drawn(canvas, sprite,
                                    Track(*(f + v * shutter * k for f, v in zip(fields, speed, strict=True))))
             for k in (-0.5, 0.0, 0.5)]
    return sum(drawn) / len(drawn)


def _render_varied(class_index: int, rng: np.random.Generator, min_side: int, max_side: int,
                   codecs: Sequence[str], hide_main: bool = False,
                   contrast_share: float = CONTRAST_SHARE) -> SynthVideo:
    """``hide_main`` draws everything from ``rng`` as usual but leaves the main object out:
    the difference to the normal render is the object alone (tests measure it)."""
    motion, reverse = _MOTION[class_index]
    fps = int(rng.choice([6, 8, 10, 12, 15, 20, 24, 25, 30]))
    t = int(np.clip(round(fps * rng.uniform(1.2, 3.5)), 12, 90))
    short = 2 * int(rng.integers(min_side // 2, max_side // 2 + 1))
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 2, 16 / 9, 2.0, 3 / 4, 9 / 16]))
    h, w = (short, 2 * int(round(short * aspect / 2))) if aspect >= 1 else (2 * int(round(short / aspect / 2)), short)
    margin = max(4, int(round(short * rng.uniform(0.02, 0.06))))  # camera-shake room
    hc, wc = h + 2 * margin, w + 2 * margin
    scene = torch.from_numpy(looks.background(rng, hc, wc).astype(np.float32)).permute(2, 0, 1)[None]
    for _ in range(int(rng.integers(0, 7))):  # things lying still in the scene
        side = min(hc, wc) * rng.uniform(0.06, 0.35)
        pose = Track(*(np.array([v]) for v in (rng.uniform(0, wc), rng.uniform(0, hc), side,
                                               rng.uniform(0, 2 * math.pi), 1.0)))
        scene = _composite_where_drawn(scene, looks.sprite(rng, SPRITE_VARIED // 2, _polygon_mask, marker=False), pose)
    # The object stands apart from the scene in brightness, lighter or darker (either, for
    # every class), in most clips: without that gap a small model trained from scratch on a
    # few thousand clips stays at chance (random colours often hide the object), with it
    # the motion is learnt.  The rest keep the plain random draw.
    gap = rng.uniform(0.5, 1.0) if rng.random() < contrast_share else 0.0
    lighter = bool(rng.random() < 0.5)
    if gap:
        scene = scene * (1 - 0.65 * gap) if lighter else 1 - (1 - scene) * (1 - 0.6 * gap)
    if rng.random() < 0.3:  # shallow depth of field: the scene out of focus
        scene = looks.gaussian_blur(scene, rng.uniform(0.6, 2.5))
    canvas = scene.expand(t, -1, -1, -1).clone()
    main = _main_track_varied(motion, rng, t, h, w)
    main = Track(main.x + margin, main.y + margin, main.side, main.angle, main.alpha)
    if reverse:
        main = main.reversed()
    distractors = [(looks.sprite(rng, SPRITE_VARIED // 2, _polygon_mask, marker=False),
                    _distractor_track_varied(rng, t, hc, wc, 0.7 * float(main.side.min())))
                   for _ in range(rng.integers(0, 5))]
    behind = rng.integers(0, len(distractors) + 1)
    marker = bool(rng.random() < 0.5)
    main_sprite = looks.sprite(rng, SPRITE_VARIED, _polygon_mask, marker=marker, flat_ok=marker)
    if gap:
        rgb = main_sprite[:3]
        rgb = 1 - (1 - rgb) * (1 - 0.6 * gap) if lighter else rgb * (1 - 0.6 * gap)
        main_sprite = torch.cat([rgb, main_sprite[3:]])
    if hide_main:
        main_sprite = main_sprite * torch.tensor([1.0, 1.0, 1.0, 0.0]).view(4, 1, 1)
    shutter = rng.uniform(0.3, 1.0) if rng.random() < 0.3 else 0.0
    for sprite, track in distractors[:behind]:
        canvas = _composite_where_drawn(canvas, sprite, track)
    if shutter:
        canvas = _motion_blurred(canvas, main_sprite, main, shutter)
    else:
        canvas = _composite_where_drawn(canvas, main_sprite, main)
    for sprite, track in distractors[behind:]:
        canvas = _composite_where_drawn(canvas, sprite, track)
    walk = np.cumsum(rng.normal(0, rng.uniform(0, 1.0), (t, 2)), axis=0)
    shake = np.clip(np.round(walk), -margin, margin).astype(int) + margin
    frames = torch.stack([canvas[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(shake)])
    frames = looks.lighting(rng, frames)
    if rng.random() < 0.35:
        frames = looks.gaussian_blur(frames, rng.uniform(0.3, 1.3))
    frames = frames + torch.from_numpy(rng.standard_normal(frames.shape, dtype=np.float32)) * rng.uniform(0, 0.04)
    frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    name = f"{rng.choice(_COLOUR_NAMES)} {rng.choice(_SHAPE_NAMES)}"
    on_screen = Track(main.x - shake[:, 1], main.y - shake[:, 0], main.side, main.angle, main.alpha)
    return SynthVideo(np.ascontiguousarray(frames), fps, str(rng.choice(list(codecs))), name, on_screen)


def encode_video(path: Path, frames: np.ndarray, fps: int, codec: str, *, quality: float = 0.5) -> None:
    """Encode uint8 (T, H, W, 3) frames (even H, W) with ``codec`` (a CODECS key)."""
    import av

    encoder, _ = CODECS[codec]
    # bitexact: no random segment UIDs or library version strings, so a seed gives the same bytes.
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(encoder, rate=Fraction(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = max(1, fps)
        stream.codec_context.thread_count = 1  # videos are small; workers encode in parallel
        crf = int(round(20 + 16 * quality))
        if codec == "h264":
            # No macroblock-tree rate control: with it, libx264 gave different bytes from run
            # to run for the same frames, even on one thread.
            stream.options = {"preset": "veryfast", "crf": str(crf), "x264-params": "mbtree=0"}
        elif codec in ("mpeg4", "mjpeg"):
            if codec == "mjpeg":
                stream.pix_fmt = "yuvj420p"
            q = str(int(round(3 + 12 * quality)))  # constant quantiser
            stream.options = {"qmin": q, "qmax": q}
        else:
            # VP8 reads a positive cpu-used in realtime mode as "adapt the speed to the clock",
            # which changes the bytes from run to run; a negative one is a fixed speed.
            speed = "-8" if codec == "vp8" else "8"
            stream.options = {"deadline": "realtime", "cpu-used": speed, "crf": str(crf + 10), "b": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _job(args) -> tuple[str, str]:
    out_dir, video_id, class_index, seed_key, min_side, max_side, codecs, style, contrast_share = args
    rng = np.random.default_rng(seed_key)
    video = render_video(class_index, rng, min_side=min_side, max_side=max_side, codecs=codecs, style=style,
                         contrast_share=contrast_share)
    quality = float(rng.uniform(0, 1))
    path = Path(out_dir) / VIDEO_DIR / f"{video_id}{CODECS[video.codec][1]}"
    encode_video(path, video.frames, video.fps, video.codec, quality=quality)
    return video_id, video.placeholder


def synthesize_dataset(out_dir: str | Path, videos_per_class: int = 20, seed: int = 0, *,
                       val_videos_per_class: int | None = None, classes: Sequence[int] | None = None,
                       min_side: int = 64, max_side: int = 128, codecs: Sequence[str] | None = None,
                       style: str = "varied", contrast_share: float = CONTRAST_SHARE, workers: int = 1,
                       append: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the synthetic motion dataset in the SSv2 layout; return a summary dict.

    ``videos_per_class`` train videos and ``val_videos_per_class`` (default: a quarter,
    at least 1) validation videos for each class in ``classes`` (indices into
    SYNTH_CLASSES; default all 12).  ``style``: "varied" or "plain"; ``codecs``: CODECS
    keys to draw from (default: PLAIN_CODECS for plain, all for varied); ``contrast_share``:
    see `render_video`.  Deterministic for
    a given ``seed``: each video's randomness comes from (seed, split, class, number),
    whatever ``workers`` is.
    ``append``: add the videos to the dataset already in ``out_dir`` (ids after its largest,
    its label files keep their entries); with another seed than the dataset's, the new videos
    differ from its videos.  ``progress(done, total)`` is called as videos are written.
    """
    out = Path(out_dir)
    class_ids = list(range(len(SYNTH_CLASSES))) if classes is None else [int(c) for c in classes]
    for c in class_ids:
        if not 0 <= c < len(SYNTH_CLASSES):
            raise ValueError(f"class index {c} out of range 0..{len(SYNTH_CLASSES) - 1}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    _check_contrast_share(contrast_share, style)
    if codecs is None:
        codecs = PLAIN_CODECS if style == "plain" else tuple(CODECS)
    for c in codecs:
        if c not in CODECS:
            raise ValueError(f"unknown codec {c!r} (choose from {', '.join(CODECS)})")
    if val_videos_per_class is None:
        val_videos_per_class = max(1, videos_per_class // 4)
    (out / VIDEO_DIR).mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    splits: dict[str, list] = {"train": [], "validation": []}
    if append:
        for split in splits:
            path = out / "labels" / f"{split}.json"
            if path.exists():
                splits[split] = json.loads(path.read_text())
    used = [int(e["id"]) for entries in splits.values() for e in entries if str(e["id"]).isdigit()]
    jobs, meta = [], []
    next_id = max(used, default=0) + 1
    for split_no, (split, count) in enumerate((("train", videos_per_class), ("validation", val_videos_per_class))):
        order = [(c, k) for k in range(count) for c in class_ids]  # interleaved classes
        for c, k in order:
            video_id = str(next_id)
            next_id += 1
            jobs.append((str(out), video_id, c, [seed, split_no, c, k], min_side, max_side, tuple(codecs), style,
                         contrast_share))
            meta.append((split, video_id, c))
    placeholders: dict[str, str] = {}
    total = len(jobs)
    if workers > 1:
        # spawn, not fork: forking a process that has used torch's thread pool can deadlock.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for done, (vid, name) in enumerate(pool.map(_job, jobs, chunksize=4), 1):
                placeholders[vid] = name
                if progress:
                    progress(done, total)
    else:
        for done, job in enumerate(jobs, 1):
            vid, name = _job(job)
            placeholders[vid] = name
            if progress:
                progress(done, total)
    labels = {name: str(i) for i, name in enumerate(SYNTH_CLASSES)}
    before = {split: len(entries) for split, entries in splits.items()}
    for split, vid, c in meta:
        tmpl = template(SYNTH_CLASSES[c])
        thing = placeholders[vid]
        splits[split].append({"id": vid, "label": tmpl.replace("[something]", thing).replace("[Something]", thing),
                              "template": tmpl, "placeholders": [thing]})
    files = {"labels": labels, **splits}
    for name, content in files.items():
        # Through a temporary file: an interrupted write must not lose an appended-to dataset's entries.
        tmp = out / "labels" / f".{name}.json.tmp"
        tmp.write_text(json.dumps(content, indent=1) + "\n")
        os.replace(tmp, out / "labels" / f"{name}.json")
    return {"out_dir": str(out), "classes": [SYNTH_CLASSES[c] for c in class_ids],
            "train": len(splits["train"]) - before["train"],
            "validation": len(splits["validation"]) - before["validation"], "seed": seed, "style": style,
            **({"contrast_share": contrast_share} if style == "varied" else {})}
