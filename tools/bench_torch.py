#!/usr/bin/env python3
"""PyTorch side of `cargo xtask bench`: time one GEMM, convolution, training or model case on the CPU.

The shapes come from the command line (the xtask passes the numbers from
benches/src/lib.rs, so they live in one place):

  bench_torch.py --kind gemm --case 1568x512x2048 --threads 1 --json
      torch.matmul(A, B, out=C), float32 row-major contiguous A[M,K], B[K,N]
  bench_torch.py --kind conv --case stem7x7s2 --n 4 --c 3 --o 64 --h 224 --w 224 \
      --k 7 --stride 2 --pad 3 --groups 1 --threads 1 --json
      torch.nn.functional.conv2d(x[N,C,H,W], w[O,C/groups,k,k], stride, padding, groups)
  bench_torch.py --kind train_step --case mixer_tiny_b128 --arch mixer --batch 128 --img 28 \
      --in-chans 1 --patch 4 --dim 128 --depth 8 --classes 10 --threads 2 --json
      one training step of a timm MlpMixer / ResMLP: zero_grad, forward, label-smoothed
      cross-entropy, backward, AdamW step (not under inference_mode)
  bench_torch.py --kind models --case mixer_b16_224_b8 --model mixer_b16_224 --source timm \
      --batch 8 [--deploy] --threads 2 --json
      one eval-mode forward of a whole model on a random [batch, 3, 224, 224] input:
      --source timm: timm.create_model(model, pretrained=False);
      --source repmlp-ref / repmlpnet-ref: the RepMLP v1 / RepMLPNet reference modules of
      tools/fixtures/models_repmlp.py / models_repmlpnet.py (timm has no RepMLP), in the
      training form or, with --deploy, the deploy form
  bench_torch.py --info --json
      torch version and MKL-DNN / MKL availability

Timing: torch.set_num_threads(threads), inference_mode, warm-up for a while, then
each call timed on its own with time.perf_counter; the result is the median.
"""

import argparse
import json
import platform
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=["gemm", "conv", "train_step", "models"])
    p.add_argument("--case", help="gemm: MxKxN; conv: the case's name")
    p.add_argument("--threads", type=int, default=1)
    for dim in ["n", "c", "o", "h", "w", "k", "stride", "pad", "groups"]:
        p.add_argument(f"--{dim}", type=int, help=f"conv: {dim}")
    p.add_argument("--arch", choices=["mixer", "resmlp"], help="train_step: architecture")
    for dim in ["batch", "img", "in-chans", "patch", "dim", "depth", "classes"]:
        p.add_argument(f"--{dim}", type=int, help=f"train_step: {dim}")
    p.add_argument("--model", help="models: registry / timm name")
    p.add_argument("--source", choices=["timm", "repmlp-ref", "repmlpnet-ref"],
                   help="models: where the PyTorch model comes from")
    p.add_argument("--deploy", action="store_true", help="models: the deploy form (RepMLP refs)")
    p.add_argument("--quick", action="store_true", help="shorter warm-up and measurement")
    p.add_argument("--info", action="store_true", help="print the torch build and exit")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    args = p.parse_args()
    if not args.info and (args.kind is None or args.case is None):
        p.error("--kind and --case are required (or --info)")
    if args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def info(torch):
    return {
        "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "mkl": bool(torch.backends.mkl.is_available()),
        "python": platform.python_version(),
        "num_threads": torch.get_num_threads(),
    }


def gemm_case(torch, case):
    try:
        m, k, n = (int(x) for x in case.split("x"))
    except ValueError:
        sys.exit(f"bench_torch.py: gemm case must be MxKxN, got {case!r}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g, dtype=torch.float32)
    b = torch.randn(k, n, generator=g, dtype=torch.float32)
    c = torch.empty(m, n, dtype=torch.float32)
    return (lambda: torch.matmul(a, b, out=c)), 2.0 * m * k * n


def conv_case(torch, args):
    dims = [args.n, args.c, args.o, args.h, args.w, args.k, args.stride, args.pad, args.groups]
    if any(d is None for d in dims):
        sys.exit("bench_torch.py: conv needs --n --c --o --h --w --k --stride --pad --groups")
    n, c, o, h, w, k, stride, pad, groups = dims
    if c % groups or o % groups:
        sys.exit(f"bench_torch.py: channels {c}->{o} not divisible by groups {groups}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g, dtype=torch.float32)
    wt = torch.randn(o, c // groups, k, k, generator=g, dtype=torch.float32)
    f = torch.nn.functional.conv2d
    oh = (h + 2 * pad - k) // stride + 1
    ow = (w + 2 * pad - k) // stride + 1
    flops = 2.0 * n * o * oh * ow * (c // groups) * k * k
    return (lambda: f(x, wt, None, stride, pad, 1, groups)), flops


def train_step_case(torch, args):
    """One AdamW training step of a timm all-MLP model; work = images per step."""
    from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock

    dims = [args.batch, args.img, args.in_chans, args.patch, args.dim, args.depth, args.classes]
    if args.arch is None or any(d is None for d in dims):
        sys.exit("bench_torch.py: train_step needs --arch --batch --img --in-chans --patch --dim --depth --classes")
    common = dict(num_classes=args.classes, img_size=args.img, in_chans=args.in_chans,
                  patch_size=args.patch, num_blocks=args.depth, embed_dim=args.dim)
    if args.arch == "mixer":
        model = MlpMixer(**common, mlp_ratio=(0.5, 4.0))
    else:
        model = MlpMixer(**common, mlp_ratio=4.0, block_layer=ResBlock, norm_layer=Affine)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.in_chans, args.img, args.img, generator=g)
    y = torch.randint(0, args.classes, (args.batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        loss.backward()
        opt.step()

    return step, None


# RepMLP v1 ResNets of tools/fixtures/models_repmlp.py: (block, fc3 groups).
REPMLP_RESNETS = {
    "repmlp_res50_light_224": ("light", 4),
    "repmlp_res50_bottleneck_224": ("bottleneck", 8),
}


def models_case(torch, args):
    """One eval-mode forward of a full model (called under inference_mode); work = images."""
    if args.model is None or args.source is None or args.batch is None:
        sys.exit("bench_torch.py: models needs --model --source --batch")
    if args.source == "timm":
        if args.deploy:
            sys.exit("bench_torch.py: timm models have no deploy form")
        import timm

        model = timm.create_model(args.model, pretrained=False)
    else:
        import os

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures"))
        if args.source == "repmlp-ref":
            from models_repmlp import RepMLPResNetRef

            if args.model not in REPMLP_RESNETS:
                sys.exit(f"bench_torch.py: repmlp-ref knows {sorted(REPMLP_RESNETS)}, got {args.model!r}")
            block, groups = REPMLP_RESNETS[args.model]
            model = RepMLPResNetRef((3, 4, 6, 3), 1000, block, 224, 7, 7, (1, 3, 5), 1, groups,
                                    deploy=args.deploy)
        else:
            from models_repmlpnet import NAMED, named

            if args.model not in NAMED:
                sys.exit(f"bench_torch.py: repmlpnet-ref knows {sorted(NAMED)}, got {args.model!r}")
            model = named(args.model, args.deploy)
    model.eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224, generator=g)
    return (lambda: model(x)), None


def measure(fn, warmup_s, measure_s, min_runs=10):
    """Median seconds per call: warm up for warmup_s, then time calls for measure_s."""
    start = time.perf_counter()
    while time.perf_counter() - start < warmup_s:
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < measure_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main():
    args = parse_args()
    import torch  # after argparse so that --help works without torch

    torch.set_num_threads(args.threads)
    if args.info:
        out = info(torch)
    else:
        warmup_s, measure_s = (0.3, 1.0) if args.quick else (1.5, 4.0)
        if args.kind == "train_step":
            fn, flops = train_step_case(torch, args)
            median, runs = measure(fn, warmup_s, measure_s)
        elif args.kind == "models":
            with torch.inference_mode():
                fn, flops = models_case(torch, args)
                median, runs = measure(fn, warmup_s, measure_s)
        else:
            fn, flops = gemm_case(torch, args.case) if args.kind == "gemm" else conv_case(torch, args)
            with torch.inference_mode():
                median, runs = measure(fn, warmup_s, measure_s)
        out = {
            "kind": args.kind,
            "case": args.case,
            "threads": args.threads,
            "median_s": median,
            "runs": runs,
            "torch": torch.__version__,
        }
        if flops is not None:
            out["gflops"] = flops / median / 1e9
        else:
            out["images_per_s"] = args.batch / median
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
