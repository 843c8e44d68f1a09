"""What the synthetic motion videos look like in the "varied" style: natural-image-like
backgrounds, textured objects of many shapes, lighting, blur and noise.

Nothing here decides a class: the motion does (``dtfcli.data.synth``).  Everything is drawn
from a numpy ``Generator`` so a seed gives the same pictures.  Images are float arrays in
[0, 1]: numpy (H, W, 3) for pictures, torch (C, H, W) / (T, C, H, W) where frames are mixed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def colour(rng) -> np.ndarray:
    return rng.uniform(0, 1, 3)


def _palette(rng) -> np.ndarray:
    """2-4 colours around one or two hues: scenes are rarely uniformly random in colour."""
    base = colour(rng)
    k = int(rng.integers(2, 5))
    spread = rng.uniform(0.15, 0.6)
    cols = np.clip(base + rng.uniform(-spread, spread, (k, 3)), 0, 1)
    if rng.random() < 0.4:
        cols[rng.integers(k)] = colour(rng)  # one contrasting colour
    return cols


def _map(values: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> colours interpolated along ``cols`` (K, 3)."""
    stops = np.linspace(0, 1, len(cols))
    return np.stack([np.interp(values, stops, cols[:, c]) for c in range(3)], -1)


def fractal_noise(rng, h: int, w: int, beta: float | None = None) -> np.ndarray:
    """(H, W) noise in [0, 1] with a 1/f^beta power spectrum (natural images: beta about 2)."""
    beta = rng.uniform(1.4, 3.0) if beta is None else beta
    spectrum = np.fft.rfft2(rng.normal(size=(h, w)))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    img = np.fft.irfft2(spectrum / radius ** (beta / 2), s=(h, w))
    lo, hi = np.percentile(img, (1, 99))
    return np.clip((img - lo) / (hi - lo + 1e-9), 0, 1)


def _stripes(rng, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    ang = rng.uniform(0, math.pi)
    u = xx * math.cos(ang) + yy * math.sin(ang)
    wave = np.sin(u * rng.uniform(6, 40) + rng.uniform(0.5, 4) * fractal_noise(rng, h, w, 2.5))  # wood, marble
    return (wave + 1) / 2 if rng.random() < 0.5 else (wave > 0).astype(float)


def dead_leaves(rng, h: int, w: int, count: int | None = None) -> np.ndarray:
    """Occluding shapes with power-law sizes over a base colour: a classic model of the
    statistics of natural images (objects at all scales hiding one another)."""
    cols = _palette(rng)
    out = np.broadcast_to(cols[0], (h, w, 3)).copy()
    short = min(h, w)
    count = int(rng.integers(40, 120)) if count is None else count
    rmin, rmax = short * 0.02, short * rng.uniform(0.2, 0.5)
    radii = rmin / (1 - rng.random(count) * (1 - (rmin / rmax) ** 2)) ** 0.5  # density ~ 1/r^3
    radii = np.sort(radii)[::-1]  # big ones first, so small ones stay visible
    cx, cy = rng.uniform(0, w, count), rng.uniform(0, h, count)
    kinds = rng.integers(0, 3, count)
    aspect = rng.uniform(0.4, 1.0, count)
    picks = rng.integers(0, len(cols), count)
    jitter = rng.normal(0, 0.08, (count, 3))
    for r, x, y, kind, a, pick, jit in zip(radii, cx, cy, kinds, aspect, picks, jitter, strict=False):
        y0, y1 = max(0, int(y - r)), min(h, int(y + r) + 1)
        x0, x1 = max(0, int(x - r)), min(w, int(x + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        dy, dx = (yy - y) / r, (xx - x) / r
        if kind == 0:
            inside = dx ** 2 + dy ** 2 < 1
        elif kind == 1:
            inside = (dx / a) ** 2 + dy ** 2 < 1
        else:
            inside = (np.abs(dx) < 1) & (np.abs(dy) < a)
        shade = 1 + 0.25 * (dx * 0.5 - dy * 0.5)  # light from the top left
        patch = np.clip((cols[pick] + jit) * shade[..., None], 0, 1)
        out[y0:y1, x0:x1][inside] = patch[inside]
    return out


def _scene(rng, h: int, w: int) -> np.ndarray:
    """A horizon: sky-like gradient above, textured ground below, blocks standing on it."""
    horizon = int(h * rng.uniform(0.25, 0.75))
    top, bottom = colour(rng), colour(rng)
    t = np.linspace(0, 1, h)[:, None, None]
    out = top * (1 - t) + bottom * t + np.zeros((h, w, 3))
    ground = _map(fractal_noise(rng, h, w), _palette(rng))
    out[horizon:] = ground[horizon:]
    for _ in range(int(rng.integers(0, 6))):
        bw, bh = int(w * rng.uniform(0.05, 0.25)), int(h * rng.uniform(0.05, 0.4))
        x0 = int(rng.integers(0, max(1, w - bw)))
        out[max(0, horizon - bh):horizon, x0:x0 + bw] = colour(rng) * rng.uniform(0.6, 1.0)
    return np.clip(out, 0, 1)


def texture(rng, h: int, w: int, *, flat_ok: bool = True) -> np.ndarray:
    """(H, W, 3) surface: flat, gradient, stripes/wood/marble, checker, fractal, dead leaves."""
    kind = int(rng.integers(0 if flat_ok else 1, 7))
    if kind == 0:
        out = np.broadcast_to(colour(rng), (h, w, 3)).copy()
    elif kind == 1:
        a, b = colour(rng), colour(rng)
        yy, xx = np.mgrid[0:h, 0:w]
        if rng.random() < 0.5:
            ang = rng.uniform(0, 2 * math.pi)
            t = xx / w * math.cos(ang) + yy / h * math.sin(ang)
        else:
            t = np.hypot(xx / w - rng.uniform(0, 1), yy / h - rng.uniform(0, 1))
        t = (t - t.min()) / (np.ptp(t) + 1e-9)
        out = a * (1 - t[..., None]) + b * t[..., None]
    elif kind == 2:
        out = _map(_stripes(rng, h, w), _palette(rng))
    elif kind == 3:
        k = rng.integers(2, 9)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        mix = (np.floor(xx * k) + np.floor(yy * k)) % 2
        out = _map(mix, _palette(rng)[:2])
    elif kind == 4:
        out = _map(fractal_noise(rng, h, w), _palette(rng))
    elif kind == 5:
        out = dead_leaves(rng, h, w, int(rng.integers(15, 60)))
    else:
        # Colour varying on its own in each channel, as in foliage or gravel.
        out = np.stack([fractal_noise(rng, h, w) for _ in range(3)], -1) * rng.uniform(0.3, 1.0)
        out = out + colour(rng) * rng.uniform(0.0, 0.7)
    if rng.random() < 0.4:  # fine grain
        out = out + rng.normal(0, rng.uniform(0.02, 0.08), (h, w, 1))
    return np.clip(out, 0, 1)


def background(rng, h: int, w: int) -> np.ndarray:
    """(H, W, 3) natural-image-like background."""
    kind = int(rng.integers(0, 4))
    if kind == 0:
        out = dead_leaves(rng, h, w)
    elif kind == 1:
        out = _scene(rng, h, w)
    elif kind == 2:
        out = _map(fractal_noise(rng, h, w), _palette(rng))
    else:
        out = texture(rng, h, w)
    if rng.random() < 0.3:  # vignette
        yy, xx = np.mgrid[0:h, 0:w]
        r = np.hypot(xx / w - 0.5, yy / h - 0.5)
        out = out * (1 - rng.uniform(0.2, 0.6) * r[..., None] ** 2 * 2)
    return np.clip(out, 0, 1)


def shape_mask(rng, size: int, polygon) -> np.ndarray:
    """(size, size) float alpha of one object: polygon (``polygon(rng, size)``), ellipse,
    rectangle with rounded corners (a cut-out photo), or a blob."""
    kind = int(rng.integers(0, 4))
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size - 0.5
    if kind == 0:
        return polygon(rng, size)
    if kind == 1:
        a, b = 0.48, 0.48 * rng.uniform(0.45, 0.9)
        mask = (xx / a) ** 2 + (yy / b) ** 2 < 1
    elif kind == 2:
        a, b = 0.47, 0.47 * rng.uniform(0.45, 1.0)
        r = rng.uniform(0, 0.8) * b
        qx, qy = np.maximum(np.abs(xx) - (a - r), 0), np.maximum(np.abs(yy) - (b - r), 0)
        mask = np.hypot(qx, qy) < r + 1e-6
    else:
        field = fractal_noise(rng, size, size, rng.uniform(3.0, 4.0)) - 0.9 * np.hypot(xx, yy) / 0.5
        mask = field > np.percentile(field, rng.uniform(45, 70))
        if mask.mean() < 0.12:
            mask = np.hypot(xx, yy) < 0.4
    return mask.astype(np.float32)


def sprite(rng, size: int, polygon, *, marker: bool, flat_ok: bool = True) -> torch.Tensor:
    """RGBA (4, size, size) textured object: shape, surface, shading, maybe an outline and
    soft edges.  ``marker``: an off-centre mark of another colour, which keeps a turn
    visible on objects whose surface alone is symmetric; without one, pass
    ``flat_ok=False`` so that the surface has a pattern that shows the turn."""
    rgb = texture(rng, size, size, flat_ok=flat_ok)
    mask = shape_mask(rng, size, polygon)
    yy, xx = np.mgrid[0:size, 0:size] / size - 0.5
    ang = rng.uniform(0, 2 * math.pi)
    rgb = rgb * (1 + rng.uniform(0, 0.5) * (xx * math.cos(ang) + yy * math.sin(ang)))[..., None]
    if marker:
        mx, my = rng.uniform(-0.2, 0.2, 2) + 0.5
        rad = rng.uniform(0.06, 0.12)
        kind = rng.integers(3)
        if kind == 0:
            dot = (xx + 0.5 - mx) ** 2 + (yy + 0.5 - my) ** 2 < rad ** 2
        elif kind == 1:
            dot = (np.abs(xx + 0.5 - mx) < rad) & (np.abs(yy + 0.5 - my) < 2.5 * rad)
        else:
            dot = (xx > rng.uniform(0.05, 0.2)) & (yy > rng.uniform(0.05, 0.2))  # a different corner
        rgb[dot & (mask > 0)] = colour(rng)
    alpha = torch.from_numpy(mask)[None, None]
    if rng.random() < 0.35:  # outline
        width = int(rng.integers(1, 4))
        inner = -F.max_pool2d(-alpha, 2 * width + 1, 1, width)  # the mask eroded by `width` pixels
        edge = (alpha - inner)[0, 0].numpy() > 0.5
        rgb[edge] = rgb[edge] * rng.uniform(0.0, 0.4) if rng.random() < 0.7 else colour(rng)
    if rng.random() < 0.5:  # soft edges
        alpha = F.avg_pool2d(alpha, 3, 1, 1, count_include_pad=False)
    rgba = np.concatenate([np.clip(rgb, 0, 1).transpose(2, 0, 1), alpha[0].numpy()])
    return torch.from_numpy(rgba.astype(np.float32))


def gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (N, C, H, W) with a Gaussian of ``sigma`` pixels."""
    from torchvision.transforms.v2.functional import gaussian_blur as blur

    size = 2 * max(1, int(math.ceil(2.5 * sigma))) + 1
    return blur(frames, kernel_size=[size, size], sigma=[sigma, sigma])


def lighting(rng, frames: torch.Tensor) -> torch.Tensor:
    """Exposure, colour cast, gamma, a slow brightness change over the clip (either way,
    whatever the class) and flicker, on (T, 3, H, W)."""
    t = frames.shape[0]
    gain = np.linspace(rng.uniform(0.7, 1.25), rng.uniform(0.7, 1.25), t) if rng.random() < 0.5 \
        else np.full(t, rng.uniform(0.75, 1.2))
    gain = gain * (1 + rng.normal(0, rng.uniform(0, 0.03), t))  # flicker
    cast = rng.uniform(0.85, 1.15, 3)
    gamma = rng.uniform(0.75, 1.35)
    offset = rng.uniform(-0.05, 0.08)
    g = torch.as_tensor(gain, dtype=torch.float32).view(t, 1, 1, 1)
    c = torch.as_tensor(cast, dtype=torch.float32).view(1, 3, 1, 1)
    return frames.clamp(0, 1) ** gamma * g * c + offset
