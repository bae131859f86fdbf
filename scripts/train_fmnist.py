#!/usr/bin/env python
"""Train a Fashion-MNIST reference model on the CPU and write its weights + training record.

    .venv/bin/python scripts/train_fmnist.py --model fmnist-vgg [--epochs N] [--seed S] [--out PATH]

Deterministic: the seed fixes the initial weights, dropout, the shuffling order and the
augmentation. Pixels are float32 in [0, 1] (x/255), no mean subtraction -- the deepfpga.data
convention. Writes PATH (compressed npz of float32 arrays keyed by state_dict names) and
PATH with suffix .json (architecture, seed, epochs, test accuracy, training time, versions).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deepfpga.data import load_dataset
from deepfpga.fileio import atomic_save_npz, atomic_write_json
from deepfpga.zoo.fmnist import NAMES, WEIGHTS_DIR, build

# Per model: epochs, peak learning rate (Adam + one-cycle schedule), batch size.
DEFAULTS = {
    "fmnist-vgg": {"epochs": 10, "lr": 2e-3, "batch": 128},
    "fmnist-alex": {"epochs": 8, "lr": 2e-3, "batch": 128},
    "fmnist-resnet": {"epochs": 20, "lr": 4e-3, "batch": 128},
}
MAX_BYTES = 5 * 1024 * 1024


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool, crop_pad: int) -> torch.Tensor:
    """Random horizontal flip and random crop after zero padding, vectorised over the batch."""
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    if crop_pad > 0:
        p = crop_pad
        padded = nn.functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None,
                   None], rows, cols]
    return x


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / len(x)


def train(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(args.seed)

    train_set = load_dataset("fashion-mnist", "train", args.limit)
    test_set = load_dataset("fashion-mnist", "test", args.limit)
    xtr, ytr = torch.from_numpy(np.array(train_set.x)), torch.from_numpy(np.array(train_set.y))
    xte, yte = torch.from_numpy(np.array(test_set.x)), torch.from_numpy(np.array(test_set.y))

    model = build(args.model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = (len(xtr) + args.batch - 1) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss()
    history = []
    t0, c0 = time.perf_counter(), time.process_time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        total = 0.0
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            xb = augment(xtr[idx], gen, args.flip, args.crop_pad)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        acc = accuracy(model, xte, yte)
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": round(total / len(xtr), 5),
                        "test_top1": acc, "elapsed_s": round(elapsed, 1)})
        print(f"epoch {epoch + 1}/{args.epochs}  loss {total / len(xtr):.4f}  "
              f"test top-1 {acc:.4f}  {elapsed:.0f} s", flush=True)
    train_time = time.perf_counter() - t0
    cpu_time = time.process_time() - c0
    model.eval()
    test_acc = accuracy(model, xte, yte)

    state = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = Path(args.out) if args.out else WEIGHTS_DIR / f"{args.model}.npz"
    atomic_save_npz(out, state)
    size = out.stat().st_size
    info = {
        "architecture": args.model,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch,
        "optimizer": f"Adam(weight_decay={args.weight_decay}) + OneCycleLR(max_lr={args.lr})",
        "augmentation": {"hflip": args.flip, "crop_pad": args.crop_pad},
        "pixel_scaling": "float32 x/255 in [0, 1], no mean subtraction",
        "test_top1": test_acc,
        "test_samples": len(xte),
        "train_time_s": round(train_time, 1),
        "train_cpu_time_s": round(cpu_time, 1),
        "threads": args.threads,
        "limit": args.limit,
        "parameters": int(sum(v.size for v in state.values())),
        "weights_bytes": size,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "command": "scripts/train_fmnist.py " + " ".join(sys.argv[1:]),
        "history": history,
    }
    atomic_write_json(out.with_suffix(".json"), info)
    print(f"test top-1 {test_acc:.4f}, training {train_time:.0f} s wall, {cpu_time:.0f} s CPU; "
          f"wrote {out} ({size} bytes)")
    if size > MAX_BYTES:
        print(f"warning: {out} is larger than {MAX_BYTES} bytes", file=sys.stderr)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, choices=NAMES)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="weights .npz (default: the zoo's weights folder)")
    ap.add_argument("--lr", type=float, help="peak learning rate")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal flips")
    ap.add_argument("--crop-pad", type=int, default=0, help="random-crop padding in pixels")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="first N train/test images only (smoke tests)")
    args = ap.parse_args(argv)
    for key in ("epochs", "lr", "batch"):
        if getattr(args, key) is None:
            setattr(args, key, DEFAULTS[args.model][key])
    if args.epochs <= 0 or args.batch <= 0 or args.lr <= 0 or args.crop_pad < 0:
        ap.error("epochs, batch and lr must be positive, crop-pad non-negative")
    if args.limit is not None and args.limit <= 0:
        ap.error("limit must be positive")
    train(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
