"""Evaluate a checkpoint of a detector (mmdet), segmentor (mmseg) or classifier
(mmpretrain) on the config's test set; the config's ``default_scope`` says which.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR]
                         [--out FILE] [--cfg-options KEY=VALUE ...] [--launcher pytorch]
"""
import argparse
import os
import os.path as osp
import sys



def parse_args(argv=None):
    from mmsmlp.engine.launch import LAUNCHERS, CfgOptionsAction
    parser = argparse.ArgumentParser(prog=f'tools/{osp.basename(__file__)}',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where to save the evaluation log')
    parser.add_argument('--out', help='dump the predictions to this pickle file '
                        '(mmdet, mmpretrain) or folder (mmseg)')
    parser.add_argument('--show', action='store_true', help='show predictions')
    parser.add_argument('--show-dir', help='save pictures of the predictions here '
                        '(relative to the work dir\'s timestamped run folder)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per shown image')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, e.g. test_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def enable_visualization(cfg, scope, args):
    """Turn on the codebase's visualization hook for ``--show`` / ``--show-dir``."""
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise ValueError('--show/--show-dir need default_hooks.visualization in the '
                         'config')
    if scope == 'mmpretrain':
        hook.enable = True
        if args.show_dir:
            hook.out_dir = args.show_dir
    else:
        hook.draw = True
        if scope == 'mmdet' and args.show_dir:
            hook.test_out_dir = args.show_dir
        elif args.show_dir:  # mmseg saves through the visualizer
            cfg.visualizer.save_dir = osp.join(cfg.work_dir, args.show_dir)
            hook.interval = 1
    if args.show:
        hook.show = True
        hook.wait_time = args.wait_time


def add_dump(cfg, scope, out):
    if scope == 'mmseg':
        cfg.test_evaluator.output_dir = out
        cfg.test_evaluator.keep_results = True
        return
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out {out!r} must be a .pkl or .pickle file')
    metric = 'DumpDetResults' if scope == 'mmdet' else 'DumpResults'
    key = 'out_file_path'
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, list) \
        else [cfg.test_evaluator]
    cfg.test_evaluator = list(evaluators) + [dict(type=metric, **{key: out})]


def main(argv=None):
    args = parse_args(argv)
    from mmengine.runner import Runner

    from mmsmlp.engine import launch
    try:
        cfg = launch.load_config(args.config, args.cfg_options)
        cfg.launcher = args.launcher
        launch.set_work_dir(cfg, args.config, args.work_dir)
        if not osp.isfile(args.checkpoint):
            raise launch.ConfigError(f'checkpoint {args.checkpoint!r} does not exist')
        launch.check_checkpoint(args.checkpoint, 'checkpoint')
        launch.check_dataset_files(cfg, ['test_dataloader'])
        cfg.load_from = args.checkpoint
        scope = cfg.default_scope
        if args.show or args.show_dir:
            enable_visualization(cfg, scope, args)
        if args.out:
            add_dump(cfg, scope, args.out)
        launch.setup_cpu_distributed(cfg, args.launcher)
    except (launch.ConfigError, ValueError) as e:
        sys.exit(f'tools/test.py: error: {e}')

    runner = Runner.from_cfg(cfg)
    runner.test()


if __name__ == '__main__':
    main()
