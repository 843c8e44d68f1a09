"""Where do the class activation maps put their peak?  On generated clips whose object
track is known (`dtfcli.data.synth.render_video` returns the main object's pose in every
frame), count the frames whose map peak lies inside the object's box, for Grad-CAM and
Grad-CAM++ at the model's default layer, against a guess at the frame's centre.

The box of a frame is the object's extent over the input frames its feature frame covers
(the stem merges groups of frames), in crop pixels; ``--margin`` widens it by a fraction of
the crop.  Frames where the object is hidden (appearing, disappearing) are not counted.

    python benchmarks/gradcam_localisation.py                       # the embedded model
    python benchmarks/gradcam_localisation.py --model runs/synth/final --clips 100 --margin 0.125
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtfcli.data.synth import SYNTH_CLASSES, encode_video, render_video  # noqa: E402
from dtfcli.engine.inference import load_inference_model  # noqa: E402
from dtfcli.engine.visualize import CAM_METHODS, gradcam, load_clip, map_peak  # noqa: E402

# the classes whose object is on screen throughout (not appearing or disappearing)
TRACKED_CLASSES = tuple(i for i, name in enumerate(SYNTH_CLASSES) if "appearing" not in name)


def localisation(model: str | None = None, *, clips: int = 100, seed: int = 10_000, margin: float = 0.0,
                 methods: tuple[str, ...] = CAM_METHODS, layer: str | None = None,
                 workdir: str | None = None) -> dict[str, float]:
    """Per method (and "centre", the guess at the frame's centre): the percentage of frames
    whose peak lies inside the object's box; "top1": the percentage of clips classified
    right.  Clip i is class TRACKED_CLASSES[i % 10] rendered in the varied style from seed
    ``seed + i``."""
    im = load_inference_model(model, device="cpu")
    hits = dict.fromkeys(("centre", *methods), 0)
    frames_counted = correct = 0
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for i in range(clips):
            label = TRACKED_CLASSES[i % len(TRACKED_CLASSES)]
            video = render_video(label, np.random.default_rng(seed + i), min_side=64, max_side=112)
            path = Path(tmp) / f"{i}.mp4"
            encode_video(path, video.frames, video.fps, "h264")
            _, clip = load_clip(str(path), model=im, device="cpu")
            maps = {m: gradcam(im.model, clip.normalised, labels=im.labels, layer=layer, method=m) for m in methods}
            correct += next(iter(maps.values())).class_index == label
            height, width = video.frames.shape[1:3]
            size = clip.frames.shape[1]
            scale = size / min(height, width)
            left, top = (width * scale - size) / 2, (height * scale - size) / 2
            indices, track, pad = clip.frame_indices, video.track, margin * size
            group = len(indices) // next(iter(maps.values())).cam.shape[0]
            for t in range(len(indices)):
                seen = [j for j in indices[t // group * group:(t // group + 1) * group] if track.alpha[j] > 0.5]
                if not seen:
                    continue
                x0 = min(track.x[j] - track.side[j] / 2 for j in seen) * scale - left - pad
                x1 = max(track.x[j] + track.side[j] / 2 for j in seen) * scale - left + pad
                y0 = min(track.y[j] - track.side[j] / 2 for j in seen) * scale - top - pad
                y1 = max(track.y[j] + track.side[j] / 2 for j in seen) * scale - top + pad
                frames_counted += 1
                hits["centre"] += y0 <= size / 2 < y1 and x0 <= size / 2 < x1
                for m, result in maps.items():
                    row, col = map_peak(result.upsampled[t])
                    hits[m] += y0 <= row < y1 and x0 <= col < x1
    out = {k: 100.0 * float(v) / max(frames_counted, 1) for k, v in hits.items()}
    out["top1"] = 100.0 * correct / clips
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a model dtf predict accepts (default: the embedded one)")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--margin", type=float, default=0.0, help="box margin, a fraction of the crop")
    parser.add_argument("--layer", default=None)
    args = parser.parse_args()
    result = localisation(args.model, clips=args.clips, seed=args.seed, margin=args.margin, layer=args.layer)
    print(f"model {args.model or 'embedded'}, {args.clips} clips, margin {args.margin:g}: top-1 {result['top1']:.1f}%")
    for key in ("centre", *CAM_METHODS):
        print(f"  peak inside the object's box, {key:>9}: {result[key]:.1f}% of frames")


if __name__ == "__main__":
    main()
