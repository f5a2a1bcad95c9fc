"""Parameters and FLOPs of the model of any mmsmlp config (mmengine FlopAnalyzer).

    python tools/analysis_tools/get_flops.py CONFIG [CONFIG ...] [--shape H W] [--no-flops]

Classifiers: logits at 224x224; segmentors: the decode head's output at 512x512;
detectors: backbone + neck at 800x1333 (unless --shape is given).
"""
import argparse
import os.path as osp
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('configs', nargs='+')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'))
    p.add_argument('--no-flops', action='store_true', help='parameters only (fast)')
    args = p.parse_args(argv)
    from mmsmlp.utils.complexity import measure
    for config in args.configs:
        if not osp.isfile(config):
            sys.exit(f'get_flops.py: error: config file {config!r} does not exist')
        params, flops, shape = measure(config, args.shape, flops=not args.no_flops)
        line = f'{config}: params {params / 1e6:.2f} M'
        if flops is not None:
            line += f', FLOPs {flops / 1e9:.2f} G at {shape[0]}x{shape[1]}'
        print(line, flush=True)


if __name__ == '__main__':
    main()
