"""Render a held-out test set of the 12 synthetic motion classes with real photographs.

A separate program from dtf's own generator (``dtfcli/data/synth.py``): nothing is imported
from it, the drawing is done with PIL, the encoding with PyAV, and the motions are written
anew from the classes' meanings.  Moving objects are cut out of the photographs that
scikit-image bundles (astronaut, cat, coffee, rocket, coins, ...) and they move over other
photographs; frame sizes, frame rates, speeds and codecs (h264 in MKV, HEVC, MPEG-2,
MPEG-4 Part 2, Motion JPEG in MOV, VP9) differ from the generator's.  The output is in the
Something-Something V2 layout, so ``dtf eval --dataset ssv2 --root OUT`` and
``build_dataset("ssv2", OUT, "validation")`` read it.

    pip install scikit-image        # or: pip install "dtfcli[heldout]"
    python benchmarks/heldout/render.py --out /tmp/heldout --per-class 10 --seed 0

Classes (index = label; names as in dtf's synthetic dataset):
  left to right / right to left: the object's centre moves along +x / -x on screen;
  up / down: along -row / +row; closer / away: it grows / shrinks (its image scale);
  clockwise / counterclockwise: it turns as seen on screen; appearing / disappearing: it
  fades or pops into / out of view; back and forth: it goes and comes back to where it
  started; still: it does not move (the camera may tremble a little).
"""

from __future__ import annotations

import argparse
import json
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = (
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
# Photographs: (name, crop box (left, top, right, bottom) as fractions of the image, what it shows)
OBJECTS = (
    ("astronaut", (0.3, 0.0, 0.75, 0.6), "astronaut"), ("chelsea", (0.25, 0.0, 0.8, 0.85), "cat"),
    ("coffee", (0.15, 0.05, 0.75, 0.95), "coffee cup"), ("rocket", (0.35, 0.0, 0.7, 1.0), "rocket"),
    ("cat", (0.2, 0.0, 0.85, 0.9), "cat"), ("coins", (0.0, 0.0, 0.5, 0.5), "coins"),
    ("logo", (0.0, 0.0, 1.0, 1.0), "logo"), ("immunohistochemistry", (0.2, 0.2, 0.6, 0.6), "slide"),
    ("colorwheel", (0.0, 0.0, 1.0, 1.0), "colour wheel"), ("camera", (0.25, 0.05, 0.75, 0.7), "photographer"),
    ("hubble_deep_field", (0.3, 0.3, 0.6, 0.6), "galaxy picture"), ("retina", (0.1, 0.1, 0.9, 0.9), "eye picture"),
)
BACKGROUNDS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "brick", "grass", "gravel", "camera", "moon",
               "immunohistochemistry", "hubble_deep_field", "page", "text", "coins", "retina")
# codec -> (encoder, container extension, pixel format)
CODECS = {"h264-mkv": ("libx264", ".mkv", "yuv420p"), "hevc": ("libx265", ".mp4", "yuv420p"),
          "mpeg2": ("mpeg2video", ".mkv", "yuv420p"), "mpeg4": ("mpeg4", ".mp4", "yuv420p"),
          "mjpeg-mov": ("mjpeg", ".mov", "yuvj420p"), "vp9": ("libvpx-vp9", ".webm", "yuv420p")}
SIZES = ((160, 120), (176, 144), (240, 180), (256, 256), (320, 180), (320, 240), (180, 320), (200, 150))


def _photo(name: str) -> Image.Image:
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return Image.fromarray(img[..., :4] if img.shape[-1] == 4 else img)


def _object(rng, photos) -> tuple[Image.Image, str]:
    """An RGBA cut-out: a crop of a photograph, as a card, an oval, a rounded card or its own alpha."""
    name, (l0, t0, r0, b0), what = OBJECTS[rng.integers(len(OBJECTS))]
    img = photos[name]
    w, h = img.size
    jit = rng.uniform(-0.05, 0.05, 4)
    box = (int(w * max(0, l0 + jit[0])), int(h * max(0, t0 + jit[1])),
           int(w * min(1, r0 + jit[2])), int(h * min(1, b0 + jit[3])))
    crop = img.crop(box)
    if crop.mode == "RGBA":
        return crop, what
    crop = crop.convert("RGB")
    mask = Image.new("L", crop.size, 0)
    draw = ImageDraw.Draw(mask)
    cw, ch = crop.size
    shape = rng.integers(3)
    if shape == 0:
        draw.rectangle((0, 0, cw - 1, ch - 1), fill=255)
    elif shape == 1:
        draw.ellipse((0, 0, cw - 1, ch - 1), fill=255)
    else:
        draw.rounded_rectangle((0, 0, cw - 1, ch - 1), radius=int(min(cw, ch) * 0.2), fill=255)
    out = crop.convert("RGBA")
    out.putalpha(mask)
    return out, what


def _background(rng, photos, size: tuple[int, int]) -> Image.Image:
    """A random crop of a photograph, scaled to cover ``size`` plus room for tremble."""
    img = photos[BACKGROUNDS[rng.integers(len(BACKGROUNDS))]].convert("RGB")
    w, h = size
    scale = max(w / img.width, h / img.height) * rng.uniform(1.05, 1.8)
    img = img.resize((int(img.width * scale) + 1, int(img.height * scale) + 1), Image.BICUBIC)
    x0 = int(rng.integers(0, img.width - w + 1))
    y0 = int(rng.integers(0, img.height - h + 1))
    return img.crop((x0, y0, x0 + w, y0 + h))


def _motion(class_index: int, rng, n: int, w: int, h: int) -> dict:
    """Per-frame centre (x, y), size (pixels, long side), clockwise angle (degrees), opacity."""
    u = np.linspace(0, 1, n)
    short = min(w, h)
    size = np.full(n, short * rng.uniform(0.3, 0.55))
    x, y = np.full(n, w * rng.uniform(0.35, 0.65)), np.full(n, h * rng.uniform(0.35, 0.65))
    angle = np.full(n, rng.uniform(-20, 20))
    opacity = np.ones(n)
    travel = rng.uniform(0.3, 0.55)
    if class_index in (0, 1):
        a, b = w * (0.5 - travel / 2), w * (0.5 + travel / 2)
        x = a + (b - a) * u if class_index == 0 else b - (b - a) * u
    elif class_index in (2, 3):
        a, b = h * (0.5 - travel / 2), h * (0.5 + travel / 2)
        y = b - (b - a) * u if class_index == 2 else a + (b - a) * u
    elif class_index in (4, 5):
        small, large = short * rng.uniform(0.15, 0.25), short * rng.uniform(0.55, 0.75)
        size = small * (large / small) ** u if class_index == 4 else large * (small / large) ** u
    elif class_index in (6, 7):
        turn = rng.uniform(120, 300) * u
        angle = angle + (turn if class_index == 6 else -turn)
    elif class_index in (8, 9):
        ramp = np.clip((u - 0.2) / rng.uniform(0.1, 0.6), 0, 1) if rng.random() < 0.6 else (u > 0.5).astype(float)
        opacity = ramp if class_index == 8 else ramp[::-1]
    elif class_index == 10:
        amp = short * rng.uniform(0.15, 0.3)
        d = amp * np.sin(2 * math.pi * rng.integers(1, 3) * u)
        if rng.random() < 0.5:
            x = x + d
        else:
            y = y + d
    return {"x": x, "y": y, "size": size, "angle": angle, "opacity": opacity}


def render(class_index: int, rng, photos) -> tuple[list[np.ndarray], int, str, str]:
    w, h = SIZES[rng.integers(len(SIZES))]
    fps = int(rng.choice([12, 15, 24, 25, 30]))
    n = int(round(fps * rng.uniform(1.5, 3.0)))
    obj, what = _object(rng, photos)
    pad = 6
    bg = _background(rng, photos, (w + 2 * pad, h + 2 * pad))
    if rng.random() < 0.3:
        bg = bg.filter(ImageFilter.GaussianBlur(rng.uniform(1, 3)))
    track = _motion(class_index, rng, n, w, h)
    tremble = np.clip(np.cumsum(rng.normal(0, 0.4, (n, 2)), 0), -pad, pad).round().astype(int) + pad
    gain = np.linspace(1, rng.uniform(0.85, 1.15), n)
    frames = []
    for i in range(n):
        frame = bg.copy()
        scale = track["size"][i] / max(obj.size)
        sprite = obj.resize((max(2, int(obj.width * scale)), max(2, int(obj.height * scale))), Image.BICUBIC)
        sprite = sprite.rotate(-track["angle"][i], resample=Image.BICUBIC, expand=True)  # PIL turns anticlockwise
        alpha = sprite.getchannel("A").point(lambda v, o=track["opacity"][i]: int(v * o))
        left = int(round(track["x"][i] + pad - sprite.width / 2))
        top = int(round(track["y"][i] + pad - sprite.height / 2))
        frame.paste(sprite.convert("RGB"), (left, top), alpha)
        dx, dy = tremble[i]
        pixels = np.asarray(frame.crop((dx, dy, dx + w, dy + h)), np.float32) * gain[i]
        frames.append(np.clip(pixels, 0, 255).astype(np.uint8))
    return frames, fps, str(rng.choice(list(CODECS))), what


def encode(path: Path, frames: list[np.ndarray], fps: int, codec: str, quantiser: int = 6) -> None:
    encoder, _, pix_fmt = CODECS[codec]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder, rate=Fraction(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if encoder == "libx265":
            stream.options = {"preset": "ultrafast", "crf": "28", "x265-params": "log-level=error"}
        elif encoder == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "35", "b": "0"}
        elif encoder == "libx264":
            stream.options = {"preset": "fast", "crf": "23"}
        else:
            q = str(quantiser)
            stream.options = {"qmin": q, "qmax": q}  # constant quantiser
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    names = {n for n, _, _ in OBJECTS} | set(BACKGROUNDS)
    photos = {n: _photo(n) for n in sorted(names)}
    videos = args.out / "20bn-something-something-v2"
    videos.mkdir(parents=True, exist_ok=True)
    (args.out / "labels").mkdir(exist_ok=True)
    entries = []
    for k in range(args.per_class):
        for c, name in enumerate(CLASSES):
            rng = np.random.default_rng([args.seed, c, k])
            frames, fps, codec, what = render(c, rng, photos)
            vid = str(len(entries) + 1)
            encode(videos / f"{vid}{CODECS[codec][1]}", frames, fps, codec, int(rng.integers(3, 10)))
            tmpl = name.replace("something", "[something]").replace("Something", "[Something]")
            entries.append({"id": vid, "label": name.replace("something", what).replace("Something", what),
                            "template": tmpl, "placeholders": [what]})
    (args.out / "labels" / "labels.json").write_text(json.dumps({n: str(i) for i, n in enumerate(CLASSES)}, indent=1))
    (args.out / "labels" / "validation.json").write_text(json.dumps(entries, indent=1))
    (args.out / "labels" / "train.json").write_text("[]\n")
    print(f"wrote {len(entries)} videos to {args.out}")


if __name__ == "__main__":
    main()
