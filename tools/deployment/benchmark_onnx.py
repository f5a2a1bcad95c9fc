"""Time onnxruntime against eager PyTorch inference on the CPU, in one process.

    python tools/deployment/benchmark_onnx.py [--config CONFIG] [--checkpoint FILE]
        [--cases classifier backbone] [--threads 2] [--rounds 5] [--iters 3]
        [--exporter {torchscript,dynamo}]

The default config is sMLPNet-T on ImageNet (configs/smlpnet/smlpnet-t_8xb128_in1k.py)
with its initial weights (time does not depend on them; --checkpoint loads
others). Cases: ``classifier``, the whole classifier (logits) on a batch of 4 at
224x224; ``backbone``, the backbone (four maps) on one 800x1333 image, the size of
a detection input. Each case is exported once to ONNX with a dynamic size (the
export time is printed) and checked against eager; then the rounds alternate
eager PyTorch and onnxruntime (one warm-up run, then ``--iters`` timed runs of
each per round), both with ``--threads`` intra-op threads
(``torch.set_num_threads`` and onnxruntime's ``intra_op_num_threads``). Printed:
the median time of each and the ratio onnxruntime / eager (below 1: onnxruntime
is faster). sMLPNet is re-parameterised for inference in both
(``switch_to_deploy``).
"""
import argparse
import os.path as osp
import sys
import tempfile
import time

PROG = 'tools/deployment/benchmark_onnx.py'
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(ROOT, 'configs', 'smlpnet', 'smlpnet-t_8xb128_in1k.py')
#: name -> (part of the model, input shape)
CASES = {
    'classifier': ('classifier', (4, 3, 224, 224)),
    'backbone': ('backbone', (1, 3, 800, 1333)),
}


def parse_args(argv=None):
    from mmsmlp.deployment import ONNX_EXPORTERS
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument('--config', default=DEFAULT_CONFIG,
                   help='an mmpretrain classifier config (default: sMLPNet-T)')
    p.add_argument('--checkpoint', help='weights to load (default: initial ones)')
    p.add_argument('--cases', nargs='+', choices=sorted(CASES),
                   default=list(CASES), help='what to time')
    p.add_argument('--threads', type=int, default=2, help='intra-op threads of both')
    p.add_argument('--rounds', type=int, default=5, help='interleaved rounds')
    p.add_argument('--iters', type=int, default=3, help='timed runs per round')
    p.add_argument('--exporter', choices=ONNX_EXPORTERS, default='torchscript')
    args = p.parse_args(argv)
    for key in ('threads', 'rounds', 'iters'):
        if getattr(args, key) < 1:
            p.error(f'--{key} must be at least 1')
    return args


def build(args):
    """The config's classifier (eval mode, deploy form), weights loaded."""
    from mmengine.runner import load_checkpoint

    from mmsmlp.engine import launch
    from mmsmlp.utils.complexity import build_from_config
    cfg = launch.load_config(args.config)
    if cfg.default_scope != 'mmpretrain':
        raise launch.ConfigError(f'{args.config!r} is a {cfg.default_scope} config; '
                                 'the benchmark times a classifier and its backbone')
    model, _ = build_from_config(cfg)
    if args.checkpoint:
        if not osp.isfile(args.checkpoint):
            raise launch.ConfigError(f'checkpoint {args.checkpoint!r} does not exist')
        launch.check_checkpoint(args.checkpoint, 'checkpoint')
        load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True,
                        logger='current')
    else:
        model.init_weights()
    model.eval()
    if hasattr(model.backbone, 'switch_to_deploy'):
        model.backbone.switch_to_deploy()
    return model


def median(values):
    values = sorted(values)
    n = len(values)
    return values[n // 2] if n % 2 else (values[n // 2 - 1] + values[n // 2]) / 2


def time_interleaved(eager, runner, x, rounds, iters):
    """Per-run seconds of eager and onnxruntime, alternating in each round."""
    import torch
    times = {'eager': [], 'onnxruntime': []}
    calls = {'eager': lambda: eager(x), 'onnxruntime': lambda: runner(x)}
    with torch.no_grad():
        for _ in range(rounds):
            for name, call in calls.items():
                call()  # warm-up: caches, lazy initialisation
                for _ in range(iters):
                    start = time.perf_counter()
                    call()
                    times[name].append(time.perf_counter() - start)
    return times


def main(argv=None):
    args = parse_args(argv)
    import warnings

    import torch
    from mmengine.logging import print_log

    # the TorchScript-based exporter warns about every size it records; the parity
    # check runs the graph, which is what those warnings ask for
    warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)

    from mmsmlp import deployment
    from mmsmlp.engine.launch import ConfigError
    from mmsmlp.utils.complexity import TensorForward
    torch.set_num_threads(args.threads)
    try:
        model = build(args)
    except (ConfigError, ValueError) as e:
        sys.exit(f'{PROG}: error: {e}')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            part, shape = CASES[case]
            module = TensorForward(model, 'mmpretrain') if part == 'classifier' \
                else model.backbone
            torch.manual_seed(0)
            x = torch.randn(*shape)
            path = osp.join(tmp, f'{case}.onnx')
            print_log(f'{case}: exporting with the {args.exporter} ONNX exporter '
                      f'(dynamic size, example {(2, ) + shape[1:]})', logger='current')
            try:
                seconds = deployment.export_onnx(
                    module, torch.randn(2, *shape[1:]), path, dynamic=True,
                    exporter=args.exporter)
                runner = deployment.OnnxRunner(path, threads=args.threads)
                stats = deployment.check_parity(module, runner, x, 1e-4)
            except deployment.ExportError as e:
                sys.exit(f'{PROG}: error: {case}: {e}')
            print_log(f'{case}: exported in {seconds:.1f} s; parity at '
                      f'{tuple(x.shape)}: max relative difference '
                      f'{max(s["relative"] for s in stats):.2g}', logger='current')
            times = time_interleaved(module, runner, x, args.rounds, args.iters)
            eager, ort = median(times['eager']), median(times['onnxruntime'])
            rows.append((case, tuple(x.shape), seconds, eager, ort))
    import onnxruntime
    print(f'\ntorch {torch.__version__}, onnxruntime {onnxruntime.__version__}, '
          f'{args.threads} threads, {args.rounds} rounds x {args.iters} runs '
          f'(medians), {args.exporter} exporter')
    print(f'{"case":<11} {"input":<18} {"export s":>9} {"eager ms":>9} '
          f'{"ort ms":>9} {"ort/eager":>9}')
    for case, shape, seconds, eager, ort in rows:
        print(f'{case:<11} {str(shape):<18} {seconds:>9.1f} {eager * 1e3:>9.1f} '
              f'{ort * 1e3:>9.1f} {ort / eager:>9.2f}')


if __name__ == '__main__':
    main()
