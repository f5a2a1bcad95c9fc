"""Export the model of an mmdet / mmseg / mmpretrain config to ONNX or a
torch.export program and check it against the eager model.

    python tools/deployment/export.py CONFIG CHECKPOINT [--out FILE]
        [--format {onnx,export}] [--exporter {torchscript,dynamo}] [--dynamic]
        [--shape H W [--shape H W ...]] [--image PATH] [--opset N]
        [--tolerance T] [--no-check] [--cfg-options KEY=VALUE ...]

What is written (the config's ``default_scope`` says which codebase): a
classifier's logits and a segmentor's decode-head maps (their ``mode='tensor'``),
and a detector's backbone + neck maps (``extract_feat``: mmdet's heads need
per-image metadata and ops without an ONNX form here). The input is the
normalised batch ``(B, 3, H, W)`` that the model's data preprocessor makes. An
sMLPNet backbone is re-parameterised for inference first (``switch_to_deploy``).

``--dynamic`` writes one graph for any batch, height and width (at least 32);
otherwise one graph per ``--shape`` (default: 224x224 for classifiers, 512x512
for segmentors, 800x1333 for detectors), which refuses other sizes. The check
runs the written graph (onnxruntime, or the saved program) and the eager model
on a random input of the export size, on one of another size and padding pattern
(``--dynamic``) and on ``--image`` (read and preprocessed as the model's data
preprocessor does: mean / std, BGR -> RGB, padding; resized to the shape unless
``--dynamic``), prints the largest absolute and relative difference of every
output and fails above ``--tolerance``.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

PROG = 'tools/deployment/export.py'
FORMATS = ('onnx', 'export')
SUFFIXES = {'onnx': '.onnx', 'export': '.pt2'}


def parse_args(argv=None):
    from mmsmlp.deployment import ONNX_EXPORTERS
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file (mmdet, mmseg or mmpretrain)')
    parser.add_argument('checkpoint', help='checkpoint file of that model')
    parser.add_argument('--out', help='output file (default: work_dirs/<config '
                        'name>/<config name>.onnx or .pt2); with several --shape, '
                        '_<H>x<W> is added to its name')
    parser.add_argument('--format', choices=FORMATS, default='onnx',
                        help='onnx: an ONNX file for onnxruntime; export: a '
                        'torch.export program (torch.export.save)')
    parser.add_argument('--exporter', choices=ONNX_EXPORTERS, default='torchscript',
                        help='ONNX exporter of torch: torchscript (every torch) or '
                        'dynamo (torch >= 2.5 with onnxscript)')
    parser.add_argument('--dynamic', action='store_true',
                        help='one graph for any batch, height and width')
    parser.add_argument('--shape', type=int, nargs=2, action='append',
                        metavar=('H', 'W'), help='input size to export for (the '
                        'example size with --dynamic); repeat for several fixed '
                        'sizes')
    parser.add_argument('--image', help='check the graph against eager on this '
                        'image too')
    parser.add_argument('--opset', type=int, help='ONNX opset (default 17 for '
                        'torchscript, 18 for dynamo)')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='largest accepted relative difference to eager (max '
                        'abs difference / max abs eager value) per output')
    parser.add_argument('--no-check', action='store_true',
                        help='write the graph without running it')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.'
                        'img_size=256')
    return parser.parse_args(argv)


def check_args(args):
    """Refuse combinations that cannot work, before anything is built."""
    from mmsmlp.engine.launch import ConfigError
    shapes = args.shape or []
    if args.dynamic and len(shapes) > 1:
        raise ConfigError('--dynamic writes one graph for every size: give at most '
                          'one --shape (the example size)')
    for h, w in shapes:
        if h < 32 or w < 32:
            raise ConfigError(f'--shape {h} {w}: height and width must be at least 32')
    if not args.tolerance > 0:
        raise ConfigError(f'--tolerance {args.tolerance}: must be a positive number')
    if args.opset is not None and args.format != 'onnx':
        raise ConfigError('--opset applies to --format onnx only')
    if args.opset is not None and not 7 <= args.opset <= 23:
        raise ConfigError(f'--opset {args.opset}: accepted 7 to 23 (onnxruntime '
                          '1.23 runs opsets up to 23)')
    if args.format == 'onnx':
        import importlib.util
        needed = ['onnx'] + ([] if args.no_check else ['onnxruntime'])
        missing = [m for m in needed if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f'--format onnx needs {" and ".join(missing)}, which '
                              "is not installed: pip install 'mmsmlp[deploy]'")
    if args.image is not None and not osp.isfile(args.image):
        raise ConfigError(f'--image {args.image!r} does not exist')
    if not osp.isfile(args.checkpoint):
        raise ConfigError(f'checkpoint {args.checkpoint!r} does not exist')


def load_model(args):
    """The config's model in eval mode with the checkpoint loaded (refused unless
    every tensor fits), re-parameterised for inference; and its scope."""
    import torch
    from mmengine.runner import load_checkpoint

    from mmsmlp.engine import launch
    from mmsmlp.utils.complexity import build_from_config
    cfg = launch.load_config(args.config, args.cfg_options)
    launch.check_checkpoint(args.checkpoint, 'checkpoint')
    try:
        model, scope = build_from_config(cfg)
    except Exception as e:
        raise launch.ConfigError(f'cannot build the model of {args.config!r}: '
                                 f'{type(e).__name__}: {e}') from e
    try:
        load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True,
                        logger='current')
    except (RuntimeError, ValueError, KeyError) as e:
        raise launch.ConfigError(
            f'checkpoint {args.checkpoint!r} does not fit the model of '
            f'{args.config!r}: {str(e).strip().splitlines()[0][:500]}') from e
    model.eval()
    backbone = getattr(model, 'backbone', None)
    if hasattr(backbone, 'switch_to_deploy'):
        backbone.switch_to_deploy()
    torch.set_grad_enabled(False)
    return model, scope


def read_image(model, path, size=None):
    """``path`` as the model's data preprocessor makes it: ``(1, 3, h, w)`` float
    (BGR -> RGB, mean / std, padding as configured); resized to ``size`` (H, W)
    first when given."""
    import mmcv
    import numpy as np
    import torch

    from mmsmlp.engine.launch import ConfigError
    img = mmcv.imread(path)  # BGR, as LoadImageFromFile reads it
    if img is None:
        raise ConfigError(f'--image {path!r} cannot be read as an image')
    if size is not None:
        img = mmcv.imresize(img, (size[1], size[0]))
    inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    data = model.data_preprocessor(dict(inputs=[inputs]), training=False)
    return data['inputs'].float()


def out_paths(args, shapes):
    stem = osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join('work_dirs', stem, stem + SUFFIXES[args.format])
    if len(shapes) == 1:
        return [out]
    base, ext = osp.splitext(out)
    return [f'{base}_{h}x{w}{ext}' for h, w in shapes]


def describe(stats):
    return '; '.join(f'output {i} {s["shape"]}: max abs {s["max_abs"]:.3g}, '
                     f'relative {s["relative"]:.3g}' for i, s in enumerate(stats))


def export_one(args, module, scope, shape, path, image):
    """Export ``module`` for ``shape`` (the example size with --dynamic) to
    ``path`` and check it; returns the export time."""
    import torch
    from mmengine.logging import print_log

    from mmsmlp import deployment
    torch.manual_seed(0)
    if not args.dynamic and image is not None:
        example = image  # the graph's one size: what the preprocessor makes
    else:
        example = torch.randn(2 if args.dynamic else 1, 3, *shape)
    what = ('any batch, height and width (example '
            f'{tuple(example.shape)})') if args.dynamic else \
        f'input {tuple(example.shape)} only'
    tool = args.exporter + ' ONNX exporter' if args.format == 'onnx' else 'torch.export'
    print_log(f'exporting the {scope} model for {what} with the {tool} of torch '
              f'{torch.__version__} to {path}', logger='current')
    if args.format == 'onnx':
        seconds = deployment.export_onnx(module, example, path, dynamic=args.dynamic,
                                         exporter=args.exporter, opset=args.opset)
    else:
        _, seconds = deployment.export_torch_program(module, example, path,
                                                     dynamic=args.dynamic)
    print_log(f'exported in {seconds:.1f} s: {path}', logger='current')
    if args.no_check:
        return seconds
    if args.format == 'onnx':
        runner = deployment.OnnxRunner(path)
    else:
        runner = deployment.program_runner(torch.export.load(path))
    checks = [('example', example)]
    if args.dynamic:
        other = deployment.other_size(*example.shape[2:])
        checks.append(('other size', torch.randn(1, 3, *other)))
    if image is not None and args.dynamic:
        checks.append(('image', image))
    elif image is not None:
        checks[0] = ('image', image)
    for name, x in checks:
        stats = deployment.check_parity(module, runner, x, args.tolerance)
        print_log(f'parity with eager, {name} input {tuple(x.shape)}: '
                  f'{describe(stats)}', logger='current')
    return seconds


def main(argv=None):
    args = parse_args(argv)
    import warnings

    import torch
    from mmengine.logging import print_log

    # the TorchScript-based exporter warns about every Python value it records as
    # a constant (the backbones' input checks, sizes compared at trace time); the
    # check below runs the graph at other sizes, which is what those warnings ask
    warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)

    from mmsmlp.deployment import ExportError
    from mmsmlp.engine.launch import ConfigError
    try:
        check_args(args)
        model, scope = load_model(args)
        from mmsmlp.utils.complexity import DEFAULT_SHAPES, TensorForward
        module = TensorForward(model, scope).eval()
        if scope == 'mmdet':
            print_log('mmdet: exporting backbone + neck (extract_feat); the heads '
                      'of a detector need per-image metadata and mmcv ops that '
                      'have no ONNX form here', logger='current')
        shapes = [tuple(s) for s in args.shape] if args.shape else \
            [DEFAULT_SHAPES[scope]]
        image_cache = {}
        for shape, path in zip(shapes, out_paths(args, shapes)):
            image = None
            if args.image is not None:
                key = None if args.dynamic else shape
                if key not in image_cache:
                    image_cache[key] = read_image(model, args.image, key)
                image = image_cache[key]
            export_one(args, module, scope, shape, path, image)
    except (ConfigError, ExportError, ValueError) as e:
        sys.exit(f'{PROG}: error: {e}')


if __name__ == '__main__':
    main()
