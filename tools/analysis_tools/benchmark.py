"""Throughput and peak memory of models side by side, in one process.

Every model runs with the same batch, input size, precision and memory format.
After one untimed first call (its time reported: for a compiled model, the
compilation) and ``--warmup`` more iterations, the timed iterations are
interleaved: each round times one iteration of every model in turn, so that a
change of the machine's load affects all of them alike. Reported per model:
images/s from the median iteration time, the spread (25th-75th percentile of
images/s) and the peak memory of one extra, untimed iteration (CUDA:
``max_memory_allocated``; CPU: growth of the resident set size, sampled by a
thread that would disturb the timing). Reported per pair: the speed-up as the
ratio of the medians and as the median (25th-75th percentile) of the per-round
ratios, which a drift of the machine's speed during the run affects less.

Modes: ``infer`` (eval, ``torch.inference_mode``) with batch 4 and ``train``
(forward + backward + an AdamW step through mmengine's ``OptimWrapper``, as the
Runner does it) with batch 2, unless ``--batch`` is given.

Models (``--models``, any mix; the first is compared with each other one):

* ``smlpnet-<arch>`` (``t``, ``t*``, ``s``, ``b`` or the full preset names):
  mmsmlp's sMLPNet, classifier (``--task cls``) or backbone (``--task backbone``),
  with its weights for 224 (resampled to other sizes, as when fine-tuned for
  detection);
* ``official-smlpnet-<arch>``: :class:`mmsmlp.testing.OfficialSMLPNet`, the
  official module structure (classifier; square inputs, built for ``--size``);
* a config file: its ``model.backbone`` (``--task backbone``) or ``model``
  (``--task cls``);
* any timm model name (random weights; ``features_only`` for ``--task backbone``;
  models whose pretrained config has a fixed input size, e.g. Swin, are built
  with ``img_size`` set to ``--size``).

``--official-file PATH`` imports the official ``models/smlp.py`` (microsoft/SPACH;
it needs timm and einops) and adds, after each ``official-smlpnet-<arch>``, the
file's ``sMLPNet`` with the same arch and the same weights (checked: same
outputs), so that one run shows whether the copy times the same as the file.

``--ab compile`` / ``--ab deploy`` add a copy of every model (same weights) with
the switch on, ``torch.compile`` or ``switch_to_deploy()``, and report each copy
over its original: an on/off A/B in one process.

The settings of ``docs/benchmarks.md`` (2 CPU threads, fp32)::

    # 224: sMLPNet-T vs the official structure, inference (batch 4) and
    # training step (batch 2); the official file itself next to its copy
    python tools/analysis_tools/benchmark.py --threads 2 --rounds 20 \\
        --models smlpnet-t official-smlpnet-t --official-file SPACH/models/smlp.py
    # 800x1333, backbones, batch 1: timm peers at the same size
    python tools/analysis_tools/benchmark.py --threads 2 --rounds 10 \\
        --task backbone --size 800 1333 --batch 1 --models smlpnet-t \\
        swin_tiny_patch4_window7_224 convnext_tiny resnet50
    # 800x1333: torch.compile vs eager
    python tools/analysis_tools/benchmark.py --threads 2 --rounds 10 \\
        --task backbone --size 800 1333 --batch 1 --models smlpnet-t --ab compile
    # switch_to_deploy() vs eval mode, inference at 224
    python tools/analysis_tools/benchmark.py --threads 2 --rounds 20 \\
        --models smlpnet-t --mode infer --ab deploy
"""
import argparse
import copy
import importlib.util
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn as nn

AB_SWITCHES = ('compile', 'deploy')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=['smlpnet-t', 'official-smlpnet-t'],
                   help='smlpnet-<arch>, official-smlpnet-<arch>, config files, timm '
                   'model names; the first is compared with each other one')
    p.add_argument('--task', choices=['cls', 'backbone'], default='cls',
                   help='classifiers, or backbones alone (timm: features_only)')
    p.add_argument('--mode', choices=['infer', 'train', 'both'], default='both')
    p.add_argument('--batch', type=int, default=None,
                   help='one batch for all modes (default: 4 infer, 2 train)')
    p.add_argument('--size', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'))
    p.add_argument('--precision', choices=['fp32', 'bf16', 'fp16'], default='fp32',
                   help='bf16 / fp16: autocast (fp16 on CUDA only)')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--compile', action='store_true', help='torch.compile every model')
    p.add_argument('--dynamic', action='store_true',
                   help='compile with dynamic shapes')
    p.add_argument('--ab', choices=AB_SWITCHES,
                   help='also time a copy of every model with this switch on')
    p.add_argument('--official-file', type=Path, metavar='SMLP_PY',
                   help="the official models/smlp.py, timed after each "
                   "official-smlpnet-<arch>")
    p.add_argument('--optimizer', choices=['adamw', 'none'], default='adamw',
                   help="training step: forward + backward + AdamW (torch's "
                   "default implementation, as mmengine builds it from the "
                   "configs) or 'none' (forward + backward only)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--threads', type=int, default=None, help='CPU threads')
    p.add_argument('--warmup', type=int, default=3,
                   help='untimed iterations after the first call')
    p.add_argument('--rounds', type=int, default=10,
                   help='timed rounds (one iteration of every model each)')
    p.add_argument('--out', type=Path, help='write settings and results as JSON')
    args = p.parse_args(argv)
    for name, value, least in (('--batch', args.batch, 1), ('--warmup', args.warmup, 0),
                               ('--rounds', args.rounds, 1),
                               ('--threads', args.threads, 1)):
        if value is not None and value < least:
            p.error(f'{name}={value}: must be at least {least}')
    repeated = sorted({m for m in args.models if args.models.count(m) > 1})
    if repeated:
        p.error(f'--models: {", ".join(repeated)} given more than once')
    if min(args.size) < 32:
        p.error(f'--size {args.size[0]} {args.size[1]}: sides must be at least 32')
    try:
        device = torch.device(args.device)
    except RuntimeError as e:
        p.error(f'--device {args.device}: {e}')
    if device.type not in ('cpu', 'cuda'):
        p.error(f'--device {args.device}: accepted: cpu, cuda, cuda:<index>')
    if device.type == 'cuda' and not torch.cuda.is_available():
        p.error(f'--device {args.device}: CUDA is not available')
    if args.precision == 'fp16' and device.type != 'cuda':
        p.error('--precision fp16 needs --device cuda (loss scaling through '
                "mmengine's AmpOptimWrapper is CUDA-only, and torch 2.1's CPU "
                'autocast has no fp16); use --precision bf16 on the CPU')
    if args.ab == 'compile' and args.compile:
        p.error('--ab compile times every model eager and compiled; drop --compile')
    if args.dynamic and not (args.compile or args.ab == 'compile'):
        p.error('--dynamic needs --compile or --ab compile')
    if args.ab == 'deploy' and args.mode != 'infer':
        p.error('--ab deploy: switch_to_deploy() is for inference; use --mode infer')
    if args.official_file is not None:
        if not args.official_file.is_file():
            p.error(f'--official-file {args.official_file}: no such file')
        if not any(m.lower().startswith('official-smlpnet-') for m in args.models):
            p.error('--official-file: add official-smlpnet-<arch> to --models '
                    '(the file is timed next to it)')
    return args


# ------------------------------------------------------------------ model builders
def _arch(spec: str, prefix: str) -> Tuple[str, dict]:
    """The ``SMLPNet.arch_zoo`` key named by ``spec`` after ``prefix``, and its
    settings."""
    from mmsmlp.models import SMLPNet
    arch = spec[len(prefix):]
    if arch not in SMLPNet.arch_zoo:
        raise ValueError(f'--models {spec}: unknown sMLPNet arch {arch!r}; accepted: '
                         f'{sorted(SMLPNet.arch_zoo)}')
    return arch, SMLPNet.arch_zoo[arch]


def _smlpnet(spec: str, task: str) -> nn.Module:
    from mmengine.registry import DefaultScope

    import mmsmlp  # noqa: F401
    from mmsmlp.models import SMLPNet
    arch, settings = _arch(spec, 'smlpnet-')
    if task == 'backbone':
        return SMLPNet(arch=arch)
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch, out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=8 * settings['embed_dims'])))


def _check_official_size(spec: str, task: str, size) -> None:
    if task != 'cls':
        raise ValueError(f'--models {spec}: the official structure is a classifier; '
                         'use --task cls')
    if size[0] != size[1] or size[0] % 32:
        raise ValueError(f'--models {spec}: the official structure takes square '
                         f'inputs with sides divisible by 32, not --size {size[0]} '
                         f'{size[1]}')


def _official(spec: str, task: str, size) -> nn.Module:
    from mmsmlp.testing import OfficialSMLPNet
    _check_official_size(spec, task, size)
    arch = _arch(spec, 'official-smlpnet-')[1]
    return OfficialSMLPNet(arch['embed_dims'], arch['depths'], arch['mlp_ratio'], 1000,
                           img_size=size[0])


def load_official_class(path: Path) -> type:
    """``sMLPNet`` of the official ``models/smlp.py`` at ``path`` (imported from
    there, under a private module name)."""
    spec = importlib.util.spec_from_file_location('_official_smlp_file', path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as e:
        raise ValueError(f'--official-file {path}: cannot import it ({e}); it needs '
                         'timm and einops') from e
    if not isinstance(getattr(module, 'sMLPNet', None), type):
        raise ValueError(f'--official-file {path}: defines no class sMLPNet; give '
                         "microsoft/SPACH's models/smlp.py")
    return module.sMLPNet


def official_file_twin(copy_model: nn.Module, cls: type, spec: str, size,
                       path: Path) -> nn.Module:
    """The official file's ``sMLPNet`` (class ``cls``) with the arch of ``spec``
    and the weights of ``copy_model`` (the mmsmlp.testing copy): the two must have
    the same state dict keys and compute the same outputs."""
    arch = _arch(spec, 'official-smlpnet-')[1]
    twin = cls(dim=arch['embed_dims'], alpha=arch['mlp_ratio'],
               depths=list(arch['depths']), num_classes=1000, image_size=size[0])
    try:
        twin.load_state_dict(copy_model.state_dict())
    except RuntimeError as e:
        raise ValueError(f'--official-file {path}: its sMLPNet does not have the '
                         f'parameters of mmsmlp.testing.OfficialSMLPNet: {e}') from e
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = copy_model.eval()(x), twin.eval()(x)
    if not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
        raise ValueError(
            f'--official-file {path}: its sMLPNet and mmsmlp.testing.OfficialSMLPNet '
            'compute different outputs on the same weights (largest difference '
            f'{(ours - theirs).abs().max().item():.3g})')
    return twin


def _from_config(path: str, task: str) -> nn.Module:
    from mmsmlp.utils.complexity import build_from_config
    model = build_from_config(path)[0]
    return model.backbone if task == 'backbone' else model


def _timm(name: str, task: str, size) -> nn.Module:
    import timm
    from timm.models import get_pretrained_cfg
    if not timm.is_model(name):
        raise ValueError(f'--models {name}: not smlpnet-<arch>, '
                         'official-smlpnet-<arch>, a config file (.py) or a timm '
                         'model name')
    kw = dict(features_only=True) if task == 'backbone' else {}
    cfg = get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size:  # e.g. Swin's attention masks
        kw['img_size'] = tuple(size)
    return timm.create_model(name, pretrained=False, **kw)


def build_model(spec: str, args) -> nn.Module:
    low = spec.lower()
    if low.startswith('official-smlpnet-'):
        return _official(low, args.task, args.size)
    if low.startswith('smlpnet-'):
        return _smlpnet(low, args.task)
    if low.endswith('.py'):
        return _from_config(spec, args.task)
    return _timm(spec, args.task, args.size)


def _switch_to_deploy(module: nn.Module) -> bool:
    """Call ``switch_to_deploy()`` of ``module``, or else of the outermost
    submodules that have one (e.g. a classifier's backbone); whether any had."""
    if hasattr(module, 'switch_to_deploy'):
        module.switch_to_deploy()
        return True
    return any([_switch_to_deploy(child) for child in module.children()])


def build_entries(args, official_cls: Optional[type]) -> List[dict]:
    """The models to time, in order: dicts with ``name``, ``model``, ``switch``
    (None or one of ``AB_SWITCHES``) and ``base`` (the name of the model a
    switched copy or the official file was made from, else None)."""
    torch.manual_seed(0)
    entries = []
    for spec in args.models:
        model = build_model(spec, args)
        entries.append(dict(name=spec, model=model, switch=None, base=None))
        if official_cls is not None and spec.lower().startswith('official-smlpnet-'):
            twin = official_file_twin(model, official_cls, spec.lower(), args.size,
                                      args.official_file)
            entries.append(dict(name=f'{spec} ({args.official_file.name})',
                                model=twin, switch=None, base=spec))
    if args.ab:
        for e in list(entries):
            model = copy.deepcopy(e['model'])
            if args.ab == 'deploy' and not _switch_to_deploy(model.eval()):
                raise ValueError(f"--ab deploy: {e['name']} has no switch_to_deploy()")
            entries.append(dict(name=f"{e['name']} +{args.ab}", model=model,
                                switch=args.ab, base=e['name']))
    return entries


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


def peak_memory(step: Callable, device: torch.device) -> int:
    """Bytes one call of ``step`` needs above what is allocated before it."""
    if device.type == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with _RSSPeak() as rss:
        step()
    return rss.peak


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


def make_step(model: nn.Module, mode: str, x: torch.Tensor, args,
              compile: bool = False) -> Callable:
    """One iteration of ``mode`` ('infer' or 'train') as a closure."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(args.precision)
    device_type = torch.device(args.device).type

    def autocast():
        return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)

    forward = _tensor_forward(model)
    if compile:
        forward = torch.compile(forward, dynamic=args.dynamic or None)
    if mode == 'infer':
        model.eval()

        def step():
            with torch.inference_mode(), autocast():
                return forward(x)
        return step
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = None
    if args.optimizer == 'adamw':
        # fp16 needs loss scaling: mmengine's AmpOptimWrapper (CUDA only)
        wrapper = AmpOptimWrapper if args.precision == 'fp16' else OptimWrapper
        optim = wrapper(optimizer=torch.optim.AdamW(params, lr=1e-4))

    def step():
        with autocast():
            loss = _outputs_loss(forward(x))
        if optim is not None:
            optim.update_params(loss)  # backward, step, zero_grad
            return
        loss.backward()
        for p in params:
            p.grad = None
    return step


def measure(entries: List[dict], mode: str, args) -> List[dict]:
    """Time ``entries`` in ``mode``: first call, warm-up, interleaved rounds, and
    the peak memory of one more iteration each."""
    device = torch.device(args.device)
    batch = args.batch or (4 if mode == 'infer' else 2)
    x = torch.randn(batch, 3, *args.size, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    steps, first_call = {}, {}
    for e in entries:
        e['model'].to(device)
        if args.channels_last:
            e['model'].to(memory_format=torch.channels_last)
        steps[e['name']] = make_step(e['model'], mode, x, args,
                                     compile=args.compile or e['switch'] == 'compile')
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        sync()
        first_call[name] = time.perf_counter() - t0
        for _ in range(args.warmup):
            step()
        sync()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():  # interleaved
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            times[name].append(time.perf_counter() - t0)
    # peak memory in one more, untimed iteration each: the CPU sampler thread
    # would compete with the timed work on a small machine
    peaks = {name: peak_memory(step, device) for name, step in steps.items()}
    results = []
    for e in entries:
        ts = times[e['name']]
        q = _quartiles([batch / t for t in ts])
        results.append(dict(
            model=e['name'], switch=e['switch'], base=e['base'], mode=mode,
            batch=batch, compiled=args.compile or e['switch'] == 'compile',
            images_per_s=batch / statistics.median(ts), p25=q[0], p75=q[2],
            median_ms=1e3 * statistics.median(ts),
            first_call_s=first_call[e['name']],
            peak_mem_mb=peaks[e['name']] / 2**20, times_ms=[1e3 * t for t in ts]))
    return results


def _speedup(kind: str, fast: dict, slow: dict) -> dict:
    """``fast``'s images/s over ``slow``'s, and the quartiles of the per-round
    time ratios (``slow`` over ``fast``, rounds paired by index)."""
    q = _quartiles([s / f for f, s in zip(fast['times_ms'], slow['times_ms'])])
    return dict(kind=kind, mode=fast['mode'], model=fast['model'], over=slow['model'],
                ratio=fast['images_per_s'] / slow['images_per_s'],
                per_round_p25=q[0], per_round_median=q[1], per_round_p75=q[2])


def comparisons(results: List[dict]) -> List[dict]:
    """Per mode: the first model over each other one (among the models with the
    same switch), each switched copy over its original ('ab'), and each
    mmsmlp.testing copy over the official file ('copy vs file')."""
    out = []
    for mode in dict.fromkeys(r['mode'] for r in results):
        rows = [r for r in results if r['mode'] == mode]
        by_name = {r['model']: r for r in rows}
        for switch in dict.fromkeys(r['switch'] for r in rows):
            group = [r for r in rows if r['switch'] == switch]
            out += [_speedup('first vs other', group[0], r) for r in group[1:]]
        for r in rows:
            if r['switch'] is not None:
                out.append(_speedup('ab', r, by_name[r['base']]))
            elif r['base'] is not None:
                out.append(_speedup('copy vs file', by_name[r['base']], r))
    return out


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    official_cls = load_official_class(args.official_file) \
        if args.official_file else None
    results = []
    for mode in (['infer', 'train'] if args.mode == 'both' else [args.mode]):
        entries = build_entries(args, official_cls)  # fresh models per mode
        results += measure(entries, mode, args)
        del entries
    import timm
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings.update(threads=torch.get_num_threads(), torch=torch.__version__,
                    timm=timm.__version__, python=platform.python_version(),
                    machine=platform.machine())
    return dict(settings=settings, results=results, comparisons=comparisons(results))


def report(out: dict) -> str:
    s = out['settings']
    width = max(len(r['model']) for r in out['results'])
    lines = [f"device {s['device']}, threads {s['threads']}, size {s['size'][0]}x"
             f"{s['size'][1]}, task {s['task']}, {s['precision']}, channels_last="
             f"{s['channels_last']}, compile={s['compile']}, ab={s['ab']}, "
             f"train step optimizer={s['optimizer']}, {s['rounds']} rounds after "
             f"the first call and {s['warmup']} warm-up; torch {s['torch']}, "
             f"timm {s['timm']}",
             f"{'model':{width}s} {'mode':5s} {'batch':>5s} {'img/s':>9s} "
             f"{'p25-p75':>17s} {'ms/iter':>9s} {'1st call s':>10s} {'peak MB':>8s}"]
    for r in out['results']:
        lines.append(f"{r['model']:{width}s} {r['mode']:5s} {r['batch']:5d} "
                     f"{r['images_per_s']:9.4g} {r['p25']:8.4g}-{r['p75']:<8.4g} "
                     f"{r['median_ms']:9.1f} {r['first_call_s']:10.2f} "
                     f"{r['peak_mem_mb']:8.1f}")
    for c in out['comparisons']:
        lines.append(f"{c['mode']}: {c['model']} / {c['over']} = {c['ratio']:.3f}x "
                     f"images/s (per round: median {c['per_round_median']:.3f}x, "
                     f"p25-p75 {c['per_round_p25']:.3f}-{c['per_round_p75']:.3f})")
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = run(args)
    except ValueError as e:
        sys.exit(f'benchmark.py: error: {e}')
    print(report(out))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == '__main__':
    main()
