"""Generate the toy datasets of mmsmlp (COCO, ADE20K and ImageNet layouts).

Examples::

    python tools/misc/make_toy_data.py all --out data/
    python tools/misc/make_toy_data.py coco --out data/ --num-train 20 --num-val 5

writes ``data/toy_coco``, ``data/toy_ade20k`` and ``data/toy_imagenet``. For
``imagenet`` the counts are per class. Re-running overwrites a previous toy dataset
(see :mod:`mmsmlp.datasets.toy_data`). Bad arguments end the program with exit status
2 and a one-line message.
"""
import argparse
import os.path as osp
import sys
import time

DATASETS = ('coco', 'ade20k', 'imagenet')


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line (no usage dump)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message}\n')


def parse_args(argv=None):
    parser = _Parser(
        prog='make_toy_data.py',
        description='Generate small deterministic toy datasets (toy_coco, '
        'toy_ade20k, toy_imagenet) under --out.')
    parser.add_argument('dataset', choices=DATASETS + ('all', ),
                        help='which dataset to generate')
    parser.add_argument('--out', default='data/',
                        help='parent folder of toy_<dataset>/ (default: data/)')
    parser.add_argument('--seed', type=int, default=0, help='seed (default: 0)')
    parser.add_argument('--num-train', type=int, default=None,
                        help='training images (per class for imagenet); default: '
                        '200 for coco/ade20k, 60 per class for imagenet')
    parser.add_argument('--num-val', type=int, default=None,
                        help='validation images (per class for imagenet); default: '
                        '50 for coco/ade20k, 15 per class for imagenet')
    parser.add_argument('--min-size', type=int, default=96,
                        help='smallest image side in pixels (default: 96)')
    parser.add_argument('--max-size', type=int, default=256,
                        help='largest image side in pixels (default: 256)')
    return parser.parse_args(argv)


def _import_toy_data():
    """Import the generators (after parsing: importing mmsmlp imports torch)."""
    try:
        from mmsmlp.datasets import toy_data
    except ImportError:  # run from a source checkout without installing mmsmlp
        sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
        from mmsmlp.datasets import toy_data
    return toy_data


def generate(name, args):
    """Generate one dataset; return its summary dict."""
    toy_data = _import_toy_data()
    kwargs = dict(seed=args.seed, min_size=args.min_size, max_size=args.max_size)
    out_dir = osp.join(args.out, f'toy_{name}')
    if name == 'imagenet':
        if args.num_train is not None:
            kwargs['num_train_per_class'] = args.num_train
        if args.num_val is not None:
            kwargs['num_val_per_class'] = args.num_val
        return toy_data.make_toy_imagenet(out_dir, **kwargs)
    if args.num_train is not None:
        kwargs['num_train'] = args.num_train
    if args.num_val is not None:
        kwargs['num_val'] = args.num_val
    make = toy_data.make_toy_coco if name == 'coco' else toy_data.make_toy_ade20k
    return make(out_dir, **kwargs)


def main(argv=None):
    args = parse_args(argv)
    names = DATASETS if args.dataset == 'all' else (args.dataset, )
    for name in names:
        start = time.perf_counter()
        try:
            summary = generate(name, args)
        except (TypeError, ValueError, OSError) as exc:
            print(f'make_toy_data.py: error: {name}: {exc}', file=sys.stderr)
            return 2
        counts = ', '.join(f"{split} {summary[split]['num_images']} images"
                           for split in ('train', 'val'))
        print(f'toy_{name}: {counts}, {len(summary["classes"])} classes '
              f'{summary["classes"]} -> {summary["root"]} '
              f'({time.perf_counter() - start:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
