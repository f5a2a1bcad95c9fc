"""Resident memory of a backbone over many input sizes: inference over ``--infer-sizes``
different sizes and training over ``--train-sizes`` sizes, printing the resident set
size at start, after warm-up and at the end. Nothing in the backbones depends on the
input size beyond one forward (the token mixings resample each input onto their
reference grid), so the memory in use must stay flat after the warm-up whatever the
number of sizes, except for bounded library caches (oneDNN's primitive cache: up to
1024 kernels, one per shape); growth beyond that would be a leak.

    python tools/analysis_tools/memory_benchmark.py [--arch tiny] [--backbone SMLPNet]
        [--infer-sizes 200] [--train-sizes 50] [--min-side 64] [--max-side 512]
"""
import argparse
import ctypes
import gc
import os
import random

import torch


def rss_mb() -> float:
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def settled_rss_mb() -> float:
    """RSS after returning freed heap pages to the system (glibc ``malloc_trim``).

    With inputs of ever-changing sizes glibc keeps freed blocks mapped
    (fragmentation), so the raw RSS keeps rising although nothing is alive; after
    ``malloc_trim(0)`` the RSS is the memory actually in use.
    """
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: report the raw RSS
        pass
    return rss_mb()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--backbone', default='SMLPNet', help='SMLPNet, ResMLP or S2MLP')
    p.add_argument('--arch', default=None, help='preset (default: the backbone\'s)')
    p.add_argument('--infer-sizes', type=int, default=200)
    p.add_argument('--train-sizes', type=int, default=50)
    p.add_argument('--min-side', type=int, default=64)
    p.add_argument('--max-side', type=int, default=512)
    p.add_argument('--warmup', type=int, default=20,
                   help='sizes (the largest ones) before the baseline')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    if not 32 <= args.min_side <= args.max_side:
        p.error(f'--min-side {args.min_side} / --max-side {args.max_side}: need '
                '32 <= min <= max')
    if not 1 <= args.warmup < min(args.infer_sizes, args.train_sizes):
        p.error(f'--warmup {args.warmup}: must be at least 1 and smaller than '
                f'--infer-sizes ({args.infer_sizes}) and --train-sizes '
                f'({args.train_sizes})')
    distinct = (args.max_side - args.min_side + 1)**2
    if args.infer_sizes + args.train_sizes > distinct:
        p.error(f'--infer-sizes {args.infer_sizes} + --train-sizes '
                f'{args.train_sizes}: sides {args.min_side}-{args.max_side} give '
                f'only {distinct} different sizes')
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from mmsmlp.registry import MODELS
    import mmsmlp  # noqa: F401
    cfg = dict(type=args.backbone)
    if args.arch:
        cfg['arch'] = args.arch
    if args.backbone != 'SMLPNet':
        cfg['with_pyramid'] = True
    model = MODELS.build(cfg)
    rng = random.Random(args.seed)
    sizes = set()
    while len(sizes) < args.infer_sizes + args.train_sizes:
        sizes.add((rng.randint(args.min_side, args.max_side),
                   rng.randint(args.min_side, args.max_side)))
    sizes = sorted(sizes, key=lambda _: rng.random())
    infer, train = sizes[:args.infer_sizes], sizes[args.infer_sizes:]
    # the warm-up holds the largest inputs, so that the allocator's high-water
    # mark is reached before the baseline; growth after it would be a leak
    infer.sort(key=lambda hw: -hw[0] * hw[1])
    train.sort(key=lambda hw: -hw[0] * hw[1])
    infer = infer[:args.warmup] + sorted(infer[args.warmup:], key=lambda _: rng.random())
    train = train[:args.warmup] + sorted(train[args.warmup:], key=lambda _: rng.random())

    start = rss_mb()
    print(f'{args.backbone} {args.arch or "(default arch)"}: RSS at start {start:.0f} MB')
    model.eval()
    with torch.no_grad():
        for i, (h, w) in enumerate(infer):
            model(torch.randn(1, 3, h, w))
            if i + 1 == args.warmup:
                raw, base = rss_mb(), settled_rss_mb()
                print(f'inference: after {args.warmup} warm-up sizes RSS {raw:.0f} MB, '
                      f'{base:.0f} MB after malloc_trim')
    raw, end = rss_mb(), settled_rss_mb()
    print(f'inference: after {len(infer)} sizes RSS {raw:.0f} MB, {end:.0f} MB after '
          f'malloc_trim (growth after warm-up {end - base:+.0f} MB)')

    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for i, (h, w) in enumerate(train):
        outs = model(torch.randn(2, 3, h, w))
        sum(o.mean() for o in outs).backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        if i + 1 == args.warmup:
            raw, base = rss_mb(), settled_rss_mb()
            print(f'training: after {args.warmup} warm-up sizes RSS {raw:.0f} MB, '
                  f'{base:.0f} MB after malloc_trim')
    raw, end = rss_mb(), settled_rss_mb()
    print(f'training: after {len(train)} sizes RSS {raw:.0f} MB, {end:.0f} MB after '
          f'malloc_trim (growth after warm-up {end - base:+.0f} MB)')


if __name__ == '__main__':
    main()
