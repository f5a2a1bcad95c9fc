"""Throughput and peak memory of backbones and classifiers, side by side in one run.

Every model runs with the same batch, input size, precision, memory format and
``torch.compile`` setting; iterations are interleaved across the models (one timed
iteration of each model in turn) so that a change of machine load affects all of
them alike. Reported: images/s from the median iteration time, the spread
(25th-75th percentile of images/s), the speed-up of the first model over each
other one (ratio of the medians, and the median of the per-round ratios) and the
peak memory of one extra, untimed iteration (CUDA: ``max_memory_allocated``; CPU:
growth of the resident set size, sampled by a thread that would disturb timing).

Models (``--models``), any mix of:

* ``smlpnet-t``, ``smlpnet-t*``, ``smlpnet-s``, ``smlpnet-b``: mmsmlp's SMLPNet
  (classifier with ``--task cls``, backbone with ``--task backbone``);
* ``official-smlpnet-t`` (etc.): the straightforward formulation with the official
  module structure (:class:`mmsmlp.testing.OfficialSMLPNet`, classifier, square
  inputs of the training size only);
* a config file: its ``model.backbone`` (``--task backbone``) or ``model``
  (``--task cls``, mmpretrain configs);
* any timm model name, e.g. ``swin_tiny_patch4_window7_224``, ``convnext_tiny``,
  ``resnet50``, ``resmlp_24_224`` (random weights; ``features_only`` for
  ``--task backbone``).

``--ablate-smlp`` adds, for each ``smlpnet-*`` model, two copies whose sMLP token
mixings are cut down: ``(sMLP fuse only)`` keeps the three fuse products
(``shortcut + sum_k F_k x``, the axial mixings and their biases dropped) and
``(sMLP identity)`` keeps nothing. They are not valid models but bounds: an sMLP
costs at least its fuse products (the same GEMMs in every formulation, here the
plain formulation's three ``linear`` calls), so the official structure's time over
the fuse-only copy's is about the most any implementation of the sMLP could reach
in that setting; the report gives that ratio.

``--interp both`` adds, for each SMLPNet at a size other than its reference, a copy
whose axial weights were resized once (``img_size`` = input size, loaded through the
resize-on-load hook), next to the default one that resizes them on every forward
(cache off), to show what the per-forward interpolation costs, and times the
resizes of one forward on their own (gradients recorded) as a share of the forward.

Examples::

    # CPU, 2 threads: fast sMLP vs the straightforward formulation
    python tools/analysis_tools/benchmark.py --models smlpnet-t official-smlpnet-t \\
        --mode train --batch 2 --threads 2
    # detection size, backbone only, interpolation per forward vs precomputed
    python tools/analysis_tools/benchmark.py --models smlpnet-t --task backbone \\
        --size 800 1333 --batch 1 --mode infer --interp both
    # GPU peers, bf16, channels-last, compiled
    python tools/analysis_tools/benchmark.py --device cuda --precision bf16 \\
        --channels-last --compile --batch 64 --models smlpnet-t \\
        swin_tiny_patch4_window7_224 convnext_tiny resnet50 resmlp_24_224
"""
import argparse
import copy
import json
import os
import statistics
import sys
import threading
import time
import types
from typing import Callable, Dict, List

import torch
import torch.nn as nn

PRESETS = {'t': 'tiny', 't*': 'tiny-a2', 's': 'small', 'b': 'base'}
CHANNELS = {'tiny': 80, 'tiny-a2': 80, 'small': 96, 'base': 112}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+',
                   default=['smlpnet-t', 'official-smlpnet-t'])
    p.add_argument('--task', choices=['cls', 'backbone'], default='cls')
    p.add_argument('--mode', choices=['infer', 'train', 'both'], default='both')
    p.add_argument('--batch', type=int, default=None,
                   help='one batch for all modes (default: 4 infer, 2 train)')
    p.add_argument('--size', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], default='fp32')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile each model')
    p.add_argument('--dynamic', action='store_true', help='compile with dynamic shapes')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None, help='CPU threads')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--optimizer', choices=['adamw', 'adamw-fused', 'none'],
                   default='adamw',
                   help="training step: forward + backward + AdamW (default: "
                   "torch's default implementation, as mmengine builds it from "
                   "the configs), 'adamw-fused' (torch's single-kernel AdamW, "
                   "fused=True) or 'none' (forward + backward: the part that "
                   "depends on the model's formulation; the optimizer's cost is "
                   "per parameter)")
    p.add_argument('--interp', choices=['on', 'both'], default='on',
                   help="'both': also time SMLPNets with precomputed axial weights")
    p.add_argument('--ablate-smlp', action='store_true',
                   help="also time each SMLPNet with its sMLPs cut down to their "
                   "fuse products, and to the identity (bounds, not models)")
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    for name, value in (('--batch', args.batch), ('--warmup', args.warmup),
                        ('--repeats', args.repeats)):
        if value is not None and value < (0 if name == '--warmup' else 1):
            p.error(f'{name}={value} is too small')
    if min(args.size) < 32:
        p.error(f'--size {args.size}: sides must be at least 32')
    return args


# ------------------------------------------------------------------ model builders
def _smlpnet(arch: str, task: str, **backbone_kw) -> nn.Module:
    from mmengine.registry import DefaultScope

    import mmsmlp  # noqa: F401
    if task == 'backbone':
        from mmsmlp.models import SMLPNet
        return SMLPNet(arch=arch, **backbone_kw)
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch, out_indices=(3, ), **backbone_kw),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=8 * CHANNELS[arch])))


def _official(arch: str, size) -> nn.Module:
    from mmsmlp.models import SMLPNet
    from mmsmlp.testing import OfficialSMLPNet
    if size[0] != size[1]:
        raise ValueError('the official structure only takes square inputs')
    zoo = SMLPNet.arch_zoo[arch]
    return OfficialSMLPNet(zoo['embed_dims'], zoo['depths'], zoo['mlp_ratio'], 1000,
                           img_size=size[0])


def _from_config(path: str, task: str) -> nn.Module:
    from mmsmlp.utils.complexity import build_from_config
    model = build_from_config(path)[0]
    return model.backbone if task == 'backbone' else model


def _timm(name: str, task: str) -> nn.Module:
    import timm
    kw = dict(features_only=True) if task == 'backbone' else {}
    return timm.create_model(name, pretrained=False, **kw)


def build_models(args) -> Dict[str, nn.Module]:
    models = {}
    for spec in args.models:
        low = spec.lower()
        if low.startswith('official-smlpnet-'):
            arch = PRESETS.get(low.split('-', 2)[2], low.split('-', 2)[2])
            models[spec] = _official(arch, args.size)
        elif low.startswith('smlpnet-'):
            arch = PRESETS.get(low.split('-', 1)[1], low.split('-', 1)[1])
            resize_each_forward = tuple(args.size) != (224, 224)
            models[spec] = _smlpnet(arch, args.task,
                                    resize_cache_size=0 if resize_each_forward else 8)
            if args.ablate_smlp:
                for kind in ABLATIONS:
                    models[f'{spec} (sMLP {kind})'] = ablate_smlp(models[spec], kind)
            if args.interp == 'both' and resize_each_forward:
                pre = _smlpnet(arch, args.task, img_size=tuple(args.size))
                pre.load_state_dict(models[spec].state_dict())  # resized once, here
                models[f'{spec} (precomputed)'] = pre
        elif low.endswith('.py'):
            models[spec] = _from_config(spec, args.task)
        else:
            models[spec] = _timm(spec, args.task)
    return models


def _identity_mixing(self, x, dim, grid=None):
    return x


def _smlp_fuse_only(self, x, shortcut=None):
    # the plain formulation with identity axial mixings (see ablate_smlp): the
    # fuse products every formulation computes
    out = self._forward_plain(x)
    return out if shortcut is None else out + shortcut


def _smlp_identity(self, x, shortcut=None):
    return x if shortcut is None else x + shortcut


ABLATIONS = {'fuse only': _smlp_fuse_only, 'identity': _smlp_identity}


def ablate_smlp(model: nn.Module, kind: str) -> nn.Module:
    """A copy of ``model`` whose sMLP token mixings compute ``ABLATIONS[kind]``
    (``model`` itself is left as it is)."""
    from mmsmlp.models.backbones.smlpnet import SparseMLP
    ablated = copy.deepcopy(model)
    for m in ablated.modules():
        if isinstance(m, SparseMLP):
            if kind == 'fuse only' and m.fuse_mode != 'concat':
                raise ValueError(f'--ablate-smlp: fuse_mode={m.fuse_mode!r} has no '
                                 'fuse products')
            m.forward = types.MethodType(ABLATIONS[kind], m)
            for mixing in (m.mix_width, m.mix_height):
                mixing.forward = types.MethodType(_identity_mixing, mixing)
    return ablated


# ------------------------------------------------------------------ measurement
class _RSSPeak:
    """Peak resident set size (bytes) above the level at start, sampled."""

    def __init__(self, period: float = 0.002):
        self.period, self.peak, self._stop = period, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    def __enter__(self):
        self.base = self.rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss() - self.base)
            time.sleep(self.period)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss() - self.base)


def _quartiles(values: List[float]) -> List[float]:
    """25th, 50th and 75th percentile (all three the value itself for one value)."""
    return statistics.quantiles(values, n=4) if len(values) > 1 else list(values) * 3


def _outputs_loss(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.float().mean()
    return sum(o.float().mean() for o in out)


def _tensor_forward(model: nn.Module) -> Callable:
    """The model's plain tensor-in, tensor-out call (mmengine models: mode='tensor')."""
    if hasattr(model, 'data_preprocessor'):
        return lambda inp: model(inp, mode='tensor')
    return model


def make_step(model: nn.Module, mode: str, x: torch.Tensor, args) -> Callable:
    """One iteration of ``mode`` ('infer' or 'train') as a closure."""
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(args.precision)
    device_type = torch.device(args.device).type

    def autocast():
        return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)

    forward = _tensor_forward(model)
    if args.compile:
        forward = torch.compile(forward, dynamic=args.dynamic or None)
    if mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                return forward(x)
        return step
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler(device_type, enabled=args.precision == 'fp16')
    # 'none': forward + backward only, the model's own part
    optim = None if args.optimizer == 'none' else torch.optim.AdamW(
        params, lr=1e-4, fused=True if args.optimizer == 'adamw-fused' else None)

    def step():
        with autocast():
            loss = _outputs_loss(forward(x))
        scaler.scale(loss).backward()
        if optim is None:
            for p in params:
                p.grad = None
            return
        scaler.step(optim)
        scaler.update()
        optim.zero_grad(set_to_none=True)
    return step


def axial_resize_ms(model: nn.Module, x: torch.Tensor, repeats: int) -> tuple:
    """(number, median ms) of the axial weight resizes one forward of an SMLPNet
    on ``x`` performs, timed on their own with gradients recorded (as in
    training: no cache)."""
    from mmsmlp.models.backbones.smlpnet import SparseMLP
    grids = []
    hooks = [m.register_forward_pre_hook(
        lambda m, args, kwargs: grids.append((m, args[0].shape[1:3])),
        with_kwargs=True) for m in model.modules() if isinstance(m, SparseMLP)]
    with torch.no_grad():
        _tensor_forward(model)(x)
    for h in hooks:
        h.remove()

    def resize_all():
        for m, (h, w) in grids:
            m.mix_width.resized((w, ))
            m.mix_height.resized((h, ))
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        resize_all()
        times.append(time.perf_counter() - t0)
    return 2 * len(grids), 1e3 * statistics.median(times[1:])


def run(args) -> List[dict]:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = ['infer', 'train'] if args.mode == 'both' else [args.mode]
    results = []
    for mode in modes:
        batch = args.batch or (4 if mode == 'infer' else 2)
        torch.manual_seed(0)
        models = build_models(args)
        x = torch.randn(batch, 3, *args.size, device=device)
        steps = {}
        for name, model in models.items():
            model.to(device)
            if args.channels_last:
                model.to(memory_format=torch.channels_last)
            xin = x.contiguous(memory_format=torch.channels_last) \
                if args.channels_last else x
            steps[name] = make_step(model, mode, xin, args)
        sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
        times = {n: [] for n in steps}
        peaks = {n: 0 for n in steps}
        for name, step in steps.items():  # warm-up (and compilation)
            for _ in range(args.warmup):
                step()
            sync()
        for _ in range(args.repeats):
            for name, step in steps.items():  # interleaved
                sync()
                t0 = time.perf_counter()
                step()
                sync()
                times[name].append(time.perf_counter() - t0)
        # peak memory in one more, untimed iteration each: the CPU sampler
        # thread would compete with the timed work on a small machine
        for name, step in steps.items():
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            with _RSSPeak() if device.type == 'cpu' else _NullPeak() as rss:
                step()
                sync()
            peaks[name] = (torch.cuda.max_memory_allocated() - base
                           if device.type == 'cuda' else rss.peak)
        for name, ts in times.items():
            q = _quartiles([batch / t for t in ts])
            results.append(dict(
                model=name, mode=mode, batch=batch, size=list(args.size),
                precision=args.precision, channels_last=args.channels_last,
                compile=args.compile, device=str(device),
                threads=torch.get_num_threads(),
                images_per_s=batch / statistics.median(ts), p25=q[0], p75=q[2],
                median_ms=1e3 * statistics.median(ts), peak_mem_mb=peaks[name] / 2**20,
                times_ms=[1e3 * t for t in ts]))
        if args.interp == 'both' and mode == 'infer':
            for name, model in models.items():
                if name.lower().startswith('smlpnet-') and '(' not in name:
                    n, ms = axial_resize_ms(model, x, args.repeats)
                    results.append(dict(model=name, mode='axial resizes alone',
                                        num_resizes=n, median_ms=ms))
        del models, steps
    return results


class _NullPeak:
    peak = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def _speedup(fast: dict, slow: dict) -> tuple:
    """``fast``'s images/s over ``slow``'s, and the quartiles of the per-round
    time ratios (``slow`` over ``fast``, rounds paired by index)."""
    return (fast['images_per_s'] / slow['images_per_s'],
            _quartiles([s / f for f, s in zip(fast['times_ms'], slow['times_ms'])]))


def report(results: List[dict], args) -> str:
    resizes = [r for r in results if r['mode'] == 'axial resizes alone']
    results = [r for r in results if r['mode'] != 'axial resizes alone']
    lines = [f"device {results[0]['device']}, threads {results[0]['threads']}, "
             f"size {args.size[0]}x{args.size[1]}, {args.precision}, "
             f"channels_last={args.channels_last}, compile={args.compile}, "
             f'task={args.task}, train step optimizer={args.optimizer}, '
             f'{args.repeats} repeats after {args.warmup} warm-up',
             f"{'model':40s} {'mode':5s} {'batch':>5s} {'img/s':>9s} "
             f"{'p25-p75':>17s} {'ms/iter':>9s} {'peak MB':>9s}"]
    for r in results:
        lines.append(f"{r['model']:40s} {r['mode']:5s} {r['batch']:5d} "
                     f"{r['images_per_s']:9.2f} {r['p25']:8.2f}-{r['p75']:<8.2f} "
                     f"{r['median_ms']:9.1f} {r['peak_mem_mb']:9.1f}")
    # speed-ups of the first model of each mode over the others: the ratio of
    # the medians, and the median (25th-75th percentile) of the per-round
    # ratios, which a drift of the machine's speed during the run affects less;
    # then the bounds: the official structure over each ablated copy
    for mode in dict.fromkeys(r['mode'] for r in results):
        rows = [r for r in results if r['mode'] == mode]
        first = rows[0]
        for r in rows[1:]:
            ratio, q = _speedup(first, r)
            lines.append(f"{mode}: {first['model']} / {r['model']} = "
                         f"{ratio:.3f}x images/s (per round: median {q[1]:.3f}x, "
                         f"p25-p75 {q[0]:.3f}-{q[2]:.3f})")
        for ref in (r for r in rows if r['model'].lower().startswith('official-')):
            for r in (r for r in rows if '(sMLP ' in r['model']):
                ratio, q = _speedup(r, ref)
                meaning = ('about the most an sMLP implementation could reach'
                           if 'fuse only' in r['model'] else 'without any sMLP')
                lines.append(f"{mode}: {ref['model']} / {r['model']} = {ratio:.3f}x "
                             f"(per round: median {q[1]:.3f}x; {meaning})")
    for r in resizes:
        forward = next(t['median_ms'] for t in results
                       if t['model'] == r['model'] and t['mode'] == 'infer')
        lines.append(f"{r['model']}: its {r['num_resizes']} axial weight resizes for "
                     f"{args.size[0]}x{args.size[1]} take {r['median_ms']:.1f} ms on "
                     f"their own (gradients recorded, no cache) = "
                     f"{100 * r['median_ms'] / forward:.1f}% of its inference "
                     f"forward ({forward:.1f} ms)")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    try:
        results = run(args)
    except ValueError as e:
        sys.exit(f'benchmark.py: error: {e}')
    print(report(results, args))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
