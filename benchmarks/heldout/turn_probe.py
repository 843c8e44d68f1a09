"""Experiment: can a small network learn the direction of a turn from scratch?

The embedded model (weights/dtfnet_tiny_synth12.md) confuses "Turning something clockwise"
and "...counterclockwise" with each other and with "Holding something still", while it gets
left/right at 90-100%.  This script isolates the question on three-class tasks of the
generator's plain style: clockwise / counterclockwise / still (``--task turns``) and, as
the control, left to right / right to left / still (``--task leftright``).  It trains a
tiny DTF-Net variant from scratch (or a plain 3D CNN, ``--net c3d``, or fine-tunes a
12-class model, ``--from-model``) and prints one line of JSON per epoch with the
validation accuracy per class.  ``--rendered N`` trains on N clips a class rendered into
memory (thousands in minutes) instead of the encoded training split.

Clips are decoded once into memory (16 of 32 pre-sampled frames at random, random 64-pixel
crops of an 80-pixel short side), so an epoch of 900 clips takes about 10 s on 2 cores:
the question here is what the network can learn, not how fast ``dtf train`` reads files.

    python benchmarks/heldout/turn_probe.py --task turns --epochs 20
    python benchmarks/heldout/turn_probe.py --task leftright --epochs 10
    python benchmarks/heldout/turn_probe.py --task turns --stem-width 32 --widths 32,64,128,256
    python benchmarks/heldout/turn_probe.py --task turns --net c3d --rendered 2000 --epochs 15
    python benchmarks/heldout/turn_probe.py --task turns --from-model dtfnet_tiny_synth12 --rendered 2000 \
        --lr 0.01 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dtfcli.data.sampling import sample_segments
from dtfcli.data.synth import SYNTH_CLASSES, VIDEO_DIR, render_video, synthesize_dataset
from dtfcli.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dtfcli.data.video import open_video
from dtfcli.models.registry import TINY_RESNET
from dtfcli.models.resnet import DTFNet

TASKS = {"turns": (6, 7, 11), "leftright": (0, 1, 11)}
SIDE, CROP, STORED, FRAMES = 80, 64, 32, 16
MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1) * 255
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1) * 255


def _square(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) video frames -> uint8 (3, STORED, SIDE, SIDE): segment-sampled frames,
    short side resized to SIDE, centre square."""
    x = frames[torch.as_tensor(sample_segments(len(frames), STORED, random=False))].permute(3, 0, 1, 2).float()
    h, w = x.shape[-2:]
    scale = SIDE / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - SIDE) // 2, (x.shape[-1] - SIDE) // 2
    return x[..., top:top + SIDE, left:left + SIDE].round().clamp(0, 255).to(torch.uint8)


def load_split(root: Path, split: str, classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, 3, STORED, SIDE, SIDE) centre squares and labels 0..len(classes)-1."""
    entries = json.loads((root / "labels" / f"{split}.json").read_text())
    files = {p.stem: p for p in (root / VIDEO_DIR).iterdir()}
    names = [SYNTH_CLASSES[c] for c in classes]
    clips, labels = [], []
    for entry in entries:
        reader = open_video(files[entry["id"]])
        clips.append(_square(torch.as_tensor(reader.get_frames(list(range(reader.num_frames))))))
        template = entry["template"].replace("[something]", "something").replace("[Something]", "Something")
        labels.append(names.index(template))
    return torch.stack(clips), torch.tensor(labels)


def render_split(per_class: int, seeds: list[int], classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """As ``load_split`` for clips rendered straight into memory (no video encoding), which
    makes thousands of training clips quick to get: ``per_class`` clips a class, shared
    evenly among the random streams of ``seeds``."""
    clips, labels = [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for _ in range(per_class // len(seeds)):
            for k, c in enumerate(classes):
                video = render_video(c, rng, min_side=64, max_side=112, style="plain")
                clips.append(_square(torch.as_tensor(video.frames)))
                labels.append(k)
    return torch.stack(clips), torch.tensor(labels)


def mirrored_and_reversed(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal flips and time reversals of a batch (B, 3, T, H, W). Each of them
    turns clockwise into counterclockwise and left to right into right to left, and leaves
    "still" as it is, so labels 0 and 1 swap when exactly one of the two was applied."""
    flip, reverse = torch.rand(len(y)) < 0.5, torch.rand(len(y)) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    x[reverse] = x[reverse].flip(2)
    y = y.clone()
    swap = (flip ^ reverse) & (y < 2)
    y[swap] = 1 - y[swap]
    return x, y


class PlainC3D(nn.Sequential):
    """A plain 3D CNN for comparison: four 3x3x3 convolutions (16-128 channels; strides 1x2x2,
    1x2x2, 2x2x2, 2x2x2) with batch norm and ReLU, global average pool, linear classifier."""

    def __init__(self, num_classes: int):
        layers, cin = [], 3
        for cout, stride in ((16, (1, 2, 2)), (32, (1, 2, 2)), (64, (2, 2, 2)), (128, (2, 2, 2))):
            layers += [nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]
            cin = cout
        super().__init__(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(cin, num_classes))


def views(x: torch.Tensor, train: bool) -> torch.Tensor:
    if train:  # every other stored frame from a random start, a random crop
        t0 = int(torch.randint(0, 2, ()))
        i, j = torch.randint(0, SIDE - CROP + 1, (2,)).tolist()
        x = x[:, :, t0::2, i:i + CROP, j:j + CROP]
    else:
        m = (SIDE - CROP) // 2
        x = x[:, :, 0::2, m:m + CROP, m:m + CROP]
    return (x.float() - MEAN) / STD


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="turns")
    ap.add_argument("--data", type=Path, help="reuse (or write) the clips here; default: a temporary folder")
    ap.add_argument("-n", type=int, default=300, help="training clips per class")
    ap.add_argument("--rendered", type=int, default=0, metavar="N",
                    help="train on N clips a class rendered into memory instead (no encoding); validate as usual")
    ap.add_argument("--render-seeds", default="1,2", help="seeds of the --rendered clips (not the data seed)")
    ap.add_argument("--augment", action="store_true",
                    help="random horizontal flips and time reversals, swapping the two directions' labels")
    ap.add_argument("--net", choices=("dtfnet", "c3d"), default="dtfnet",
                    help="the tiny DTF-Net variant, or a plain 3D CNN (PlainC3D) for comparison")
    ap.add_argument("--from-model", metavar="SOURCE",
                    help="fine-tune a 12-class model dtf loads (e.g. dtfnet_tiny_synth12, the embedded one) "
                         "instead of training from scratch; its outputs for the task's classes are read")
    ap.add_argument("--seed", type=int, default=31, help="data seed")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--stem-width", type=int, default=16)
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--early-stride", type=int, default=4)
    ap.add_argument("--temporal", choices=("dtf", "tsm", "none"), default="dtf",
                    help="the blocks' temporal module: DTF, TSM's shift, or none (C2D)")
    args = ap.parse_args()
    classes = TASKS[args.task]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / args.task
        if not (root / "labels" / "train.json").exists():
            synthesize_dataset(root, 1 if args.rendered else args.n, args.seed,
                               val_videos_per_class=max(1, args.n // 10), classes=classes,
                               min_side=64, max_side=112, style="plain", workers=2)
        xv, yv = load_split(root, "validation", classes)
        seeds = [int(x) for x in args.render_seeds.split(",")]
        xt, yt = render_split(args.rendered, seeds, classes) if args.rendered else load_split(root, "train", classes)
    torch.manual_seed(0)
    arch = {**TINY_RESNET, "widths": tuple(int(w) for w in args.widths.split(",")), "stem_width": args.stem_width}
    # outputs: the logits read for the task's classes, in the task's order
    outputs = torch.arange(len(classes))
    if args.from_model:
        from dtfcli.hub import load_model

        model = load_model(args.from_model, for_training=True)[0]
        outputs = torch.tensor(classes)
    elif args.net == "c3d":
        model = PlainC3D(len(classes))
    else:
        model = DTFNet(**arch, early_stride=args.early_stride, temporal=args.temporal,
                       num_classes=len(classes), num_frames=FRAMES, dropout=0.0)
    batch = 16
    steps = args.epochs * (len(xt) // batch)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.1)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order, total = torch.randperm(len(xt)), 0.0
        for b in range(len(xt) // batch):
            idx = order[b * batch:(b + 1) * batch]
            x, y = views(xt[idx], True), yt[idx]
            if args.augment:
                x, y = mirrored_and_reversed(x, y)
            loss = F.cross_entropy(model(x), outputs[y])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(views(xv[i:i + 32], False))[:, outputs].argmax(1) for i in range(0, len(xv), 32)])
        per_class = {SYNTH_CLASSES[c]: round(float((pred[yv == k] == k).float().mean()), 3)
                     for k, c in enumerate(classes)}
        print(json.dumps({"epoch": epoch, "train_loss": round(total / (len(xt) // batch), 4),
                          "val_top1": round(float((pred == yv).float().mean()), 3), "per_class": per_class,
                          "elapsed_s": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
