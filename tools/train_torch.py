#!/usr/bin/env python3
"""The `allmlp train` recipe in plain PyTorch + timm, for side-by-side accuracy and speed.

Trains mixer_tiny or resmlp_tiny (timm modules with allmlp's configurations), or repmlp_tiny
(the reference module of tools/fixtures/models_repmlp.py, training form) on Fashion-MNIST
from the IDX files (Debian's /usr/share/datasets/fashion-mnist by default) with the same
recipe as `allmlp train`: the last linear layer of each residual branch zeroed for the Mixer
(`--zero-init-residual`), AdamW (no weight decay on biases, norms, affine and layer-scale
parameters) or, with `--optimizer muon` (the default for Mixer and ResMLP), torch.optim.Muon
with the AdamW-matched update size for every 2-D weight but the classifier's and AdamW for the
rest (torch runs Muon's Newton-Schulz iteration in bfloat16, allmlp in float32), linear warm-up
from 0 then cosine to 0 per step, label smoothing, random crop with zero padding + horizontal
flip, normalization mean 0.2860 / std 0.3530, full batches only (drop_last), test evaluation
after each epoch. Prints metrics.csv lines (`epoch,train_loss,train_acc,test_loss,test_acc,lr,
seconds`) and images/s.

    .venv/bin/python tools/train_torch.py --model mixer_tiny        # allmlp's default recipe

Needs torch and timm, and safetensors for repmlp_tiny
(`python3 -m venv .venv && .venv/bin/pip install torch timm safetensors numpy`).
"""
import argparse
import gzip
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    find = lambda n: next(p for p in (os.path.join(data_dir, n), os.path.join(data_dir, n + ".gz"))
                          if os.path.exists(p))
    x = read_idx(find(f"{prefix}-images-idx3-ubyte"))
    y = read_idx(find(f"{prefix}-labels-idx1-ubyte"))
    x = (torch.from_numpy(x.copy()).float().div_(255.0).sub_(0.2860).div_(0.3530)).unsqueeze(1)
    return x, torch.from_numpy(y.astype(np.int64))


def build(name, drop_path):
    import timm.models.mlp_mixer as mm
    from functools import partial
    if name == "mixer_tiny":
        return mm.MlpMixer(num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=8,
                           embed_dim=128, mlp_ratio=(0.5, 4.0), drop_path_rate=drop_path)
    if name == "resmlp_tiny":
        return mm.MlpMixer(num_classes=10, img_size=28, in_chans=1, patch_size=4, num_blocks=8,
                           embed_dim=128, mlp_ratio=4,
                           block_layer=partial(mm.ResBlock, init_values=0.1),
                           norm_layer=mm.Affine, drop_path_rate=drop_path)
    if name == "repmlp_tiny":
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
        from models_repmlp import PureRef
        return PureRef(1, 28, 10, (16, 32, 64), 1, 7, 7, (1, 3, 5), 1, 4, deploy=False)
    raise SystemExit(f"unknown model {name}")


def augment(x, pad, flip, gen):
    """Random crop with zero padding (of the raw image, i.e. the normalised value of 0) + flip."""
    b, _, h, w = x.shape
    if pad > 0:
        zero = (0.0 - 0.2860) / 0.3530
        xp = F.pad(x, (pad, pad, pad, pad), value=zero)
        top = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        left = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
        x = torch.stack([xp[i, :, top[i]:top[i] + h, left[i]:left[i] + w] for i in range(b)])
    if flip:
        m = torch.rand(b, generator=gen) < 0.5
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mixer_tiny")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=None,
                    help="default: allmlp's, 4")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=None,
                    help="default: allmlp's, 4e-3 for resmlp_tiny, 1e-3 for repmlp_tiny "
                         "and 2e-3 for mixer_tiny")
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--optimizer", choices=["adamw", "muon"], default=None,
                    help="default: allmlp's, muon for mixer_tiny and resmlp_tiny, "
                         "adamw for repmlp_tiny")
    ap.add_argument("--warmup-steps", type=int, default=None,
                    help="default: 500, at most a quarter of the run (allmlp's Recipe::warmup)")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--crop-padding", type=int, default=0)
    ap.add_argument("--hflip", type=lambda s: s.lower() == "true", default=True)
    ap.add_argument("--drop-path", type=float, default=0.0)
    ap.add_argument("--zero-init-residual", type=lambda s: s.lower() == "true", default=None,
                    help="zero the last linear layer of every residual branch "
                         "(default: true for mixer_tiny, as allmlp)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-limit", type=int, default=None,
                    help="train on only the first N training images")
    ap.add_argument("--stop-after", type=int, default=None,
                    help="stop after this many epochs (the schedule still spans --epochs)")
    a = ap.parse_args()
    if a.zero_init_residual is None:
        a.zero_init_residual = a.model.startswith("mixer")
    if a.zero_init_residual and a.model.startswith("repmlp"):
        raise SystemExit("--zero-init-residual: the RepMLP nets do not take it")
    if a.optimizer is None:
        a.optimizer = "adamw" if a.model.startswith("repmlp") else "muon"
    if a.epochs is None:
        a.epochs = 4
    if a.lr is None:
        a.lr = {"resmlp": 4e-3, "repmlp": 1e-3}.get(a.model[:6], 2e-3)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    xtr, ytr = load(a.data, "train")
    if a.train_limit is not None:
        if not a.batch_size <= a.train_limit <= len(xtr):
            raise SystemExit(f"--train-limit {a.train_limit}: expected {a.batch_size} (one batch) "
                             f"to {len(xtr)} images")
        xtr, ytr = xtr[:a.train_limit], ytr[:a.train_limit]
    xte, yte = load(a.data, "test")
    net = build(a.model, a.drop_path)
    if a.zero_init_residual:
        with torch.no_grad():
            for blk in net.blocks:
                for fc in ([blk.mlp_tokens.fc2, blk.mlp_channels.fc2] if a.model.startswith("mixer")
                           else [blk.linear_tokens, blk.mlp_channels.fc2]):
                    fc.weight.zero_()
                    fc.bias.zero_()
    named = list(net.named_parameters())
    # Muon takes every 2-D weight but the classifier (the last one), as allmlp's --optimizer muon.
    matrices = [n for n, p in named if p.ndim == 2][:-1] if a.optimizer == "muon" else []
    decay, no_decay, hidden = [], [], []
    for n, p in named:
        if n in matrices:
            hidden.append(p)
            continue
        (no_decay if p.ndim <= 1 or n.endswith(".bias") or n.endswith(".alpha")
         or n.endswith(".beta") else decay).append(p)
    opts = [torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                               {"params": decay, "weight_decay": a.weight_decay}], lr=a.lr)]
    if hidden:
        opts.append(torch.optim.Muon(hidden, lr=a.lr, weight_decay=a.weight_decay,
                                     adjust_lr_fn="match_rms_adamw"))
    steps_per_epoch = len(xtr) // a.batch_size
    total = steps_per_epoch * a.epochs
    warm = min(500, total // 4) if a.warmup_steps is None else a.warmup_steps
    warm = min(warm, total - 1)

    def lr_at(s):
        if s < warm:
            return a.lr * s / warm
        return 0.5 * a.lr * (1 + math.cos(math.pi * (s - warm) / (total - warm)))

    print("epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds")
    start, step = time.time(), 0
    last = a.epochs if a.stop_after is None else min(a.epochs, a.stop_after)
    for epoch in range(1, last + 1):
        net.train()
        perm = torch.randperm(len(xtr), generator=gen)
        loss_sum, correct, seen, t0 = 0.0, 0, 0, time.time()
        for i in range(steps_per_epoch):
            idx = perm[i * a.batch_size:(i + 1) * a.batch_size]
            x = augment(xtr[idx], a.crop_padding, a.hflip, gen)
            y = ytr[idx]
            for o in opts:
                for g in o.param_groups:
                    g["lr"] = lr_at(step)
            out = net(x)
            loss = F.cross_entropy(out, y, label_smoothing=a.label_smoothing)
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts:
                o.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
        ips = seen / (time.time() - t0)
        net.eval()
        tl, tc = 0.0, 0
        with torch.inference_mode():
            for i in range(0, len(xte), 500):
                out = net(xte[i:i + 500])
                tl += F.cross_entropy(out, yte[i:i + 500], reduction="sum").item()
                tc += (out.argmax(1) == yte[i:i + 500]).sum().item()
        print(f"{epoch},{loss_sum / seen:.6f},{correct / seen:.6f},{tl / len(xte):.6f},"
              f"{tc / len(xte):.6f},{opts[0].param_groups[0]['lr']:.6e},{time.time() - start:.1f}"
              f"  # {ips:.0f} img/s", flush=True)


if __name__ == "__main__":
    main()
