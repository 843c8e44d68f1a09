"""Experiment: how well does a small model trained on the synthetic motion data do on fresh
synthetic clips and on the held-out renderer's photographs?  A plain PyTorch loop (not
``dtf train``), for sizing the recipe of the embedded model; it writes nothing but its log.

    python benchmarks/heldout/train_probe.py --train DATA/train --eval fresh=DATA/fresh \\
        --eval heldout=DATA/heldout --model dtfnet_tiny --epochs 8

``--train`` is read as the "train" split of an SSv2-layout folder (``dtf data synth``),
every ``--eval NAME=DIR`` as its "validation" split.  One line of JSON per epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from dtfcli.data import TestTransform, TrainTransform, build_dataset, make_loader
from dtfcli.models import create_model


def evaluate(model, loader, num_classes: int) -> tuple[float, list[float]]:
    model.eval()
    hits, counts = torch.zeros(num_classes), torch.zeros(num_classes)
    with torch.no_grad():
        for batch in loader:
            if batch["clip"] is None:
                continue
            pred = model(batch["clip"]).argmax(1)
            label = torch.as_tensor(batch["label"])
            counts += torch.bincount(label, minlength=num_classes)
            hits += torch.bincount(label[pred == label], minlength=num_classes)
    model.train()
    per_class = (hits / counts.clamp(min=1)).tolist()
    return float(hits.sum() / counts.sum().clamp(min=1)), per_class


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True)
    ap.add_argument("--eval", action="append", default=[], help="NAME=DIR (validation split)")
    ap.add_argument("--model", default="dtfnet_tiny")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--crop", type=int, default=112)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (and after the last)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    common = dict(clip_len=args.frames, sampling="segments")
    train = build_dataset("ssv2", args.train, "train", train=True,
                          transform=TrainTransform(args.crop, (args.crop, int(args.crop * 1.25)), flip=False), **common)
    evals = {}
    for spec in args.eval:
        name, root = spec.split("=", 1)
        ds = build_dataset("ssv2", root, "validation", classes=train.classes, transform=TestTransform(args.crop),
                           **common)
        evals[name] = make_loader(ds, args.batch, num_workers=args.workers)
    loader = make_loader(train, args.batch, shuffle=True, drop_last=True, num_workers=args.workers, seed=args.seed)
    model = create_model(args.model, num_classes=len(train.classes), num_frames=args.frames)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    total = args.epochs * len(loader)
    warmup = max(1, len(loader) // 2)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    print(json.dumps({"settings": vars(args), "train_videos": len(train), "threads": torch.get_num_threads(),
                      "params": sum(p.numel() for p in model.parameters())}), flush=True)
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        seen = correct = 0
        loss_sum = 0.0
        for batch in loader:
            if batch["clip"] is None:
                continue
            label = torch.as_tensor(batch["label"])
            logits = model(batch["clip"])
            loss = F.cross_entropy(logits, label, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(label)
            correct += int((logits.argmax(1) == label).sum())
            loss_sum += float(loss.detach()) * len(label)
        train_s = time.time() - start
        row = {"epoch": epoch, "train_s": round(train_s, 1), "loss": round(loss_sum / max(1, seen), 3),
               "train_acc": round(correct / max(1, seen), 3)}
        for name, ev in evals.items() if epoch % args.eval_every == 0 or epoch == args.epochs else ():
            t = time.time()
            acc, per_class = evaluate(model, ev, len(train.classes))
            row[name] = round(acc, 3)
            row[f"{name}_s"] = round(time.time() - t, 1)
            if epoch == args.epochs:
                row[f"{name}_per_class"] = [round(a, 2) for a in per_class]
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
